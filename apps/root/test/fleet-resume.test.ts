/**
 * A fleet upgrade survives its root (issue 14 point 5): the rollout's state is in the store, so a
 * root that stops in the middle of a batch (its shell and its store closed) and starts again on
 * the same data dir resends the command its worker has said nothing about, then ends the rollout
 * once the worker is back healthy with the new version; a rollout that ended is not run again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RolloutDoc, RootToCluster, WorkerSummary } from '@oak/contracts';
import { createStore, type Store } from '@oak/store';
import { createRollout, startFleetShell, type FleetLink } from '../src/fleet/shell.ts';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const SHA = 'a'.repeat(64);

function link(sent: { cluster: string; msg: RootToCluster }[]): FleetLink {
  return { isConnected: () => true, send: (cluster, msg) => (sent.push({ cluster, msg }), true) };
}

async function report(store: Store, clusterId: string, w: Partial<WorkerSummary>): Promise<void> {
  const worker: WorkerSummary = { id: 'w1', name: 'pi-1', cpu_cores_free: 4, memory_free_mb: 4096, virtualizations: ['process'], arch: 'amd64', ...w };
  await store.updateCluster(clusterId, { status: 'ACTIVE', resources: { workers: 1, cpu_cores_total: 4, cpu_cores_free: 4, memory_total_mb: 4096, memory_free_mb: 4096, gpus_total: 0, gpus_free: 0, virtualizations: ['process'], worker_summary: [worker] } as never });
}

test('a rollout goes on after a root restart: the command in flight is resent, the healthy worker ends it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'oak-fleet-resume-'));
  const path = join(dir, 'oak.db');
  try {
    let store = await createStore({ sqlitePath: path });
    const cluster = await store.upsertCluster('edge', null);
    await report(store, cluster.id, { version: '0.1.0', conn: 'c-old', reported_at: Date.now() });
    await store.putFleetArtifact({ sha256: SHA, program: 'node-engine', version: '0.2.0', arch: 'amd64', size: 3, uploaded_at: new Date().toISOString(), uploaded_by: null }, Buffer.from('abc'));
    const r = await createRollout(store, link([]), { artifactSha: SHA, cluster: null, batch: 1, healthTimeoutS: 300, by: null });

    // the first root sends the upgrade, then stops before the worker answers
    const sentA: { cluster: string; msg: RootToCluster }[] = [];
    const a = startFleetShell({ store, link: link(sentA), log: quiet, intervalMs: 3_600_000, resendMs: 50 });
    await a.tick();
    a.close();
    assert.deepEqual(sentA.map((s) => s.msg.type === 'worker_upgrade' && [s.cluster, s.msg.worker_id, s.msg.command.action, s.msg.command.version]), [[cluster.id, 'w1', 'upgrade', '0.2.0']]);
    await store.close();

    // the next root on the same data dir: the worker said nothing, so the command goes again
    store = await createStore({ sqlitePath: path });
    const sentB: { cluster: string; msg: RootToCluster }[] = [];
    const b = startFleetShell({ store, link: link(sentB), log: quiet, intervalMs: 3_600_000, resendMs: 50 });
    try {
      await new Promise((res) => setTimeout(res, 80));
      await b.tick();
      assert.deepEqual(sentB.map((s) => s.msg.type === 'worker_upgrade' && [s.msg.worker_id, s.msg.command.action, s.msg.command.rollout_id]), [['w1', 'upgrade', r.id]], 'resent from the persisted state');
      const mid = JSON.parse((await store.getFleetRollout(r.id))?.state ?? '{}') as RolloutDoc;
      assert.equal(mid.status, 'running');

      // the worker comes back with the new version, a new connection, confirms, reports
      await report(store, cluster.id, { version: '0.2.0', conn: 'c-new', reported_at: Date.now() + 1000, upgrade: { rollout_id: r.id, action: 'upgrade', version: '0.2.0', phase: 'done', detail: '', at: Date.now() } });
      for (let i = 0; i < 5; i++) await b.tick();
      const end = JSON.parse((await store.getFleetRollout(r.id))?.state ?? '{}') as RolloutDoc;
      assert.equal(end.status, 'succeeded', JSON.stringify(end.workers));
      assert.equal(end.workers[0]?.phase, 'healthy');
      // nothing more is sent for an ended rollout, and no rollback
      const n = sentB.length;
      await b.tick();
      assert.equal(sentB.length, n);
      assert.ok(sentB.every((s) => s.msg.type === 'worker_upgrade' && s.msg.command.action === 'upgrade'));
    } finally {
      b.close();
      await store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
