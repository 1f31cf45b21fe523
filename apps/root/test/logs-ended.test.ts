/**
 * The root's log relay for ended instances (issue 10 point 9): a COMPLETED one-shot and a FAILED
 * service are asked of the worker that ran them (worker_id on the request, no follow); the
 * worker's "gone" is a 410 OAK_LOGS_GONE with its words, an unreachable cluster a 503 that names
 * the worker, the cluster and since when; a never-placed instance has no logs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OakError } from '@oak/contracts';
import type { RootToCluster } from '@oak/contracts';
import type { ServiceRow } from '@oak/store';
import { LogRelay } from '../src/reconcile/logs.ts';
import type { LogTarget } from '../src/reconcile/logs.ts';

const service = { id: 's1', job_name: 'batch.n.job.n' } as ServiceRow;

function setup(connected = true): { relay: LogRelay; sent: RootToCluster[] } {
  const sent: RootToCluster[] = [];
  const relay = new LogRelay(
    { isConnected: () => connected, send: (_c, m) => (sent.push(m), true) },
    { name: async () => 'edge-cluster', disconnectedSince: () => Date.UTC(2026, 0, 1, 10, 0, 0) },
  );
  return { relay, sent };
}

const target = (o: Partial<LogTarget>): LogTarget => ({ instance_number: 0, status: 'FAILED', status_detail: 'exited with code 3', status_at: '2026-01-01T09:00:00.000Z', cluster_id: 'c1', worker_id: 'w1', ...o });

async function drain(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const l of it) out.push(l);
  return out;
}

/** the request the relay sent, once it has */
async function requestOf(sent: RootToCluster[]): Promise<Extract<RootToCluster, { type: 'logs' }>> {
  for (let i = 0; i < 100 && sent.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  const m = sent.find((x) => x.type === 'logs');
  assert.ok(m && m.type === 'logs');
  return m;
}

for (const [what, t] of [
  ['a FAILED service', target({})],
  ['a COMPLETED one-shot, removed since (what the store remembers)', target({ instance_number: 4, status: 'COMPLETED', status_detail: 'completed', removed: true })],
] as const) {
  test(`${what}: asked of its worker, follow off, its kept lines relayed`, async () => {
    const { relay, sent } = setup();
    const ac = new AbortController();
    const pending = relay.logs(service, t, { follow: true, tail: 10, signal: ac.signal });
    const req = await requestOf(sent);
    assert.deepEqual(req, { type: 'logs', request_id: req.request_id, job_name: 'batch.n.job.n', instance_number: t.instance_number, follow: false, tail: 10, worker_id: 'w1' });
    relay.onMessage('c1', { type: 'logs_data', request_id: req.request_id, lines: ['# oak: kept', 'last words'] });
    const it = await pending;
    relay.onMessage('c1', { type: 'logs_end', request_id: req.request_id });
    assert.deepEqual(await drain(it), ['# oak: kept', 'last words']);
    assert.equal(relay.size, 0);
  });
}

test('the worker says the logs are gone: 410 OAK_LOGS_GONE with its words, before any line', async () => {
  const { relay, sent } = setup();
  const pending = relay.logs(service, target({}), { follow: false, signal: new AbortController().signal });
  const req = await requestOf(sent);
  relay.onMessage('c1', { type: 'logs_end', request_id: req.request_id, error: 'the logs of batch.n.job.n.instance.0 (ended 2026-01-01T09:00:00Z) were dropped on worker w1 at 2026-01-02T09:00:00Z: this worker keeps the logs of ended instances for 24 h', gone: true });
  await assert.rejects(pending, (e: unknown) => e instanceof OakError && e.code === 'OAK_LOGS_GONE' && e.status === 410 && /were dropped on worker w1 at 2026-01-02T09:00:00Z/.test(e.message) && /--log-retention/.test(e.hint ?? ''));
  // a worker that cannot be asked (its cluster said so, no gone flag): 503
  const p2 = relay.logs(service, target({}), { follow: false, signal: new AbortController().signal });
  const r2 = await (async () => {
    for (let i = 0; i < 100 && sent.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
    return sent[1] as Extract<RootToCluster, { type: 'logs' }>;
  })();
  relay.onMessage('c1', { type: 'logs_end', request_id: r2.request_id, error: 'the logs of batch.n.job.n.instance.0 are kept on worker w1, which is not connected to this cluster since 2026-01-01T10:00:00Z' });
  await assert.rejects(p2, (e: unknown) => e instanceof OakError && e.code === 'OAK_UNAVAILABLE' && /not connected to this cluster since/.test(e.message));
  assert.equal(relay.size, 0);
});

test('its cluster is not connected: 503 naming the worker, the cluster and since when; never placed: 410', async () => {
  const { relay, sent } = setup(false);
  await assert.rejects(relay.logs(service, target({}), { follow: false, signal: new AbortController().signal }), (e: unknown) =>
    e instanceof OakError && e.code === 'OAK_UNAVAILABLE' &&
    e.message === 'the logs of batch.n.job.n.instance.0 (FAILED since 2026-01-01T09:00:00Z) are kept on worker w1 of cluster edge-cluster, which is not connected to this root since 2026-01-01T10:00:00Z');
  await assert.rejects(relay.logs(service, target({ status: 'UNDEPLOYED', cluster_id: null, worker_id: null }), { follow: false, signal: new AbortController().signal }), (e: unknown) =>
    e instanceof OakError && e.code === 'OAK_LOGS_GONE' && e.message === 'batch.n.job.n.instance.0 is UNDEPLOYED and never ran on a worker: it has no logs');
  await assert.rejects(relay.logs(service, target({ status: 'REQUESTED', cluster_id: null, worker_id: null }), { follow: false, signal: new AbortController().signal }), (e: unknown) =>
    e instanceof OakError && e.code === 'OAK_UNAVAILABLE' && /not placed on a worker yet/.test(e.message));
  assert.equal(sent.length, 0);
});

test('a live instance is still followed from whatever worker its cluster knows (no worker_id)', async () => {
  const { relay, sent } = setup();
  const ac = new AbortController();
  const it = await relay.logs(service, target({ status: 'RUNNING' }), { follow: true, signal: ac.signal });
  const req = await requestOf(sent);
  assert.equal(req.follow, true);
  assert.equal(req.worker_id, undefined);
  relay.onMessage('c1', { type: 'logs_data', request_id: req.request_id, lines: ['a'] });
  const first = await it[Symbol.asyncIterator]().next();
  assert.equal(first.value, 'a');
  ac.abort();
});
