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
