/**
 * The cluster places through a WorkerPool (issue 13) that it keeps up to date from registrations,
 * reports, deaths, removals and reservations: at a size where the pool samples (2,000 workers),
 * nothing is over-committed, replicas spread, and a worker whose report shrank, that died or was
 * removed is not chosen.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterCore } from '../src/core.ts';
import type { Effect } from '../src/core.ts';
import { assignment, information, registration } from './fixtures.ts';

function deploys(effects: Effect[]): { worker: string; name: string }[] {
  return effects.flatMap((e) => (e.type === 'deploy' ? [{ worker: e.worker_id, name: `${e.command.job_name}.instance.${e.command.instance_number}` }] : []));
}

test('2,000 workers: every instance placed within capacity, replicas spread, the pool follows reports, deaths and removals', () => {
  const n = 2000;
  const c = new ClusterCore({ reportIntervalMs: 60_000 });
  for (let i = 0; i < n; i++) {
    const id = `w${i}`;
    c.register(id, registration(id, 4, 4096), 0);
    c.information(id, information([], 4, 4096), 0);
  }
  const where = new Map<string, string>();
  const used = new Map<string, number>();
  const place = (job: string, k: number, vcpus: number, t: number): string | undefined => {
    const d = deploys(c.deploy(assignment(job, k, { vcpus, memory: 64 }), t));
    if (d.length === 0) return undefined;
    assert.equal(d.length, 1);
    const w = (d[0] as { worker: string }).worker;
    where.set(`${job}.instance.${k}`, w);
    used.set(w, (used.get(w) ?? 0) + vcpus);
    return w;
  };
  // 40 services x 100 replicas of 1 vcpu: half the fleet's cores
  for (let k = 0; k < 100; k++) for (let j = 0; j < 40; j++) assert.ok(place(`job${j}.a.b.c`, k, 1, 1), `job${j} #${k} not placed`);
  for (const [w, v] of used) assert.ok(v <= 4, `${w} holds ${v} vcpus of 4`);
  for (let j = 0; j < 40; j++) {
    const ws = new Set([...where].filter(([name]) => name.startsWith(`job${j}.`)).map(([, w]) => w));
    assert.equal(ws.size, 100, `job${j}: replicas on ${ws.size} workers`);
  }
  // w0..w9 report that they have 1 core only, w10..w19 die, w20..w29 are removed
  for (let i = 0; i < 10; i++) c.information(`w${i}`, information([], 1, 4096), 2);
  for (let i = 20; i < 30; i++) c.removeWorker(`w${i}`, 2);
  for (let i = 10; i < 20; i++) c.connectionLost(`w${i}`, undefined, 2);
  c.tick(2 + 1000);
  const shrunk = new Set(Array.from({ length: 10 }, (_, i) => `w${i}`));
  const gone = new Set(Array.from({ length: 20 }, (_, i) => `w${i + 10}`));
  // fill the rest with 2-vcpu instances, reports in between from the living
  let placed = 0;
  for (let k = 0; k < 3 * n; k++) {
    const w = place('big.a.b.c', k, 2, 1003 + k);
    if (w === undefined) break;
    placed++;
    assert.ok(!gone.has(w), `placed on ${w}, which is gone`);
    assert.ok(!shrunk.has(w) || (used.get(w) ?? 0) <= 1, `placed on ${w}, which has 1 core`);
  }
  // every live worker with 2 cores left took one: what is left is at most 1 vcpu of free cores per worker
  assert.ok(placed > 0);
  const left = deploys(c.deploy(assignment('big.a.b.c', 99_999, { vcpus: 2, memory: 64 }), 99_999));
  assert.deepEqual(left, []);
  for (const [w, v] of used) if (!gone.has(w) && !shrunk.has(w)) assert.ok(v <= 4, `${w} holds ${v} vcpus of 4`);
});
