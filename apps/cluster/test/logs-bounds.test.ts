/** The cluster's log relay is bounded (issue 7): batches cut with a note, sessions capped per worker. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '@oak/bus';
import { LOG_LIMITS, type ClusterToRoot } from '@oak/contracts';
import { LogRelay } from '../src/logs.ts';

function relay(maxPerWorker = 2, maxSessions = 3): { r: LogRelay; toRoot: ClusterToRoot[]; published: string[] } {
  const toRoot: ClusterToRoot[] = [];
  const published: string[] = [];
  const r = new LogRelay({
    workerOf: (job) => (job.startsWith('b.') ? 'wb' : 'wa'),
    isAlive: () => true,
    publish: (topic) => published.push(topic),
    toRoot: (m) => toRoot.push(m),
    log: silentLogger,
    timeoutMs: 60_000,
    maxPerWorker,
    maxSessions,
  });
  return { r, toRoot, published };
}

test('a batch of 250,000 lines is cut to the limit with a note; lines are never spread', () => {
  const { r, toRoot } = relay();
  r.request({ type: 'logs', request_id: 'r1', job_name: 'a.x.y.z', instance_number: 0, follow: true });
  const lines = Array.from({ length: 250_000 }, (_, i) => `l${i}`);
  r.batch('wa', 'r1', { lines });
  const data = toRoot.filter((m) => m.type === 'logs_data');
  assert.equal(data.length, 1);
  const sent = (data[0] as Extract<ClusterToRoot, { type: 'logs_data' }>).lines;
  assert.equal(sent.length, LOG_LIMITS.batchLines);
  assert.match(sent[sent.length - 1] ?? '', /^# oak: 249001 log lines dropped/);
  // long lines are cut, too many bytes are cut
  r.batch('wa', 'r1', { lines: ['x'.repeat(100_000)] });
  const cut = (toRoot[toRoot.length - 1] as Extract<ClusterToRoot, { type: 'logs_data' }>).lines[0] ?? '';
  assert.ok(cut.length < LOG_LIMITS.lineLength + 100);
  r.batch('wa', 'r1', { lines: Array.from({ length: 500 }, () => 'y'.repeat(10_000)) });
  const bytes = (toRoot[toRoot.length - 1] as Extract<ClusterToRoot, { type: 'logs_data' }>).lines.reduce((n, l) => n + l.length, 0);
  assert.ok(bytes <= LOG_LIMITS.batchBytes, `${bytes} bytes`);
  r.cancelAll();
});

test('log sessions are capped per worker and in all: the next request ends at once with the reason', () => {
  const { r, toRoot, published } = relay(2, 3);
  for (const id of ['a1', 'a2', 'a3']) r.request({ type: 'logs', request_id: id, job_name: 'a.x.y.z', instance_number: 0, follow: true });
  assert.equal(r.size, 2);
  const refused = toRoot.find((m) => m.type === 'logs_end' && m.request_id === 'a3') as Extract<ClusterToRoot, { type: 'logs_end' }> | undefined;
  assert.match(refused?.error ?? '', /worker wa serves 2 log streams already \(at most 2\)/);
  assert.equal(published.length, 2, 'the third request never reached the worker');
  r.request({ type: 'logs', request_id: 'b1', job_name: 'b.x.y.z', instance_number: 0, follow: true });
  r.request({ type: 'logs', request_id: 'b2', job_name: 'b.x.y.z', instance_number: 0, follow: true });
  assert.equal(r.size, 3);
  assert.match((toRoot.find((m) => m.type === 'logs_end' && m.request_id === 'b2') as { error?: string }).error ?? '', /at most 3/);
  r.cancel('a1');
  r.request({ type: 'logs', request_id: 'a4', job_name: 'a.x.y.z', instance_number: 0, follow: true });
  assert.equal(r.size, 3);
  r.cancelAll();
});

test('an ended instance: asked of the worker the root names, even when this cluster no longer tracks it; gone passes through', () => {
  const toRoot: ClusterToRoot[] = [];
  const published: { topic: string; payload: unknown }[] = [];
  const workers: Record<string, { name: string; alive: boolean; since: number | null }> = {
    wa: { name: 'edge-a', alive: true, since: null },
    wd: { name: 'edge-d', alive: false, since: Date.UTC(2026, 0, 2, 3, 4, 5) },
  };
  const r = new LogRelay({
    workerOf: () => null,
    isAlive: (id) => workers[id]?.alive === true,
    workerFacts: (id) => workers[id],
    publish: (topic, payload) => published.push({ topic, payload }),
    toRoot: (m) => toRoot.push(m),
    log: silentLogger,
    timeoutMs: 60_000,
  });
  r.request({ type: 'logs', request_id: 'e1', job_name: 'a.x.y.z', instance_number: 3, follow: false, worker_id: 'wa' });
  assert.equal(published[0]?.topic, 'nodes/wa/control/logs');
  assert.deepEqual(published[0]?.payload, { request_id: 'e1', job_name: 'a.x.y.z', instance_number: 3, follow: false });
  r.batch('wa', 'e1', { lines: [], end: true, error: 'the logs of a.x.y.z.instance.3 were dropped', gone: true });
  assert.deepEqual(toRoot.at(-1), { type: 'logs_end', request_id: 'e1', error: 'the logs of a.x.y.z.instance.3 were dropped', gone: true });

  r.request({ type: 'logs', request_id: 'e2', job_name: 'a.x.y.z', instance_number: 4, follow: false, worker_id: 'wd' });
  assert.deepEqual(toRoot.at(-1), { type: 'logs_end', request_id: 'e2', error: 'the logs of a.x.y.z.instance.4 are kept on worker edge-d (wd), which is not connected to this cluster since 2026-01-02T03:04:05Z' });
  r.request({ type: 'logs', request_id: 'e3', job_name: 'a.x.y.z', instance_number: 5, follow: false, worker_id: 'wx' });
  assert.match((toRoot.at(-1) as { error?: string }).error ?? '', /^the logs of a\.x\.y\.z\.instance\.5 are kept on worker wx, which this cluster does not know/);
  r.request({ type: 'logs', request_id: 'e4', job_name: 'a.x.y.z', instance_number: 6, follow: true });
  assert.match((toRoot.at(-1) as { error?: string }).error ?? '', /does not run on a live worker of this cluster/);
  assert.equal(published.length, 1, 'nothing was published for the workers that cannot answer');
  assert.equal(r.size, 0);
});
