import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLogRequest, pumpLogs } from '../src/logs.ts';
import type { LogBatch } from '../src/logs.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('log requests are validated', () => {
  assert.deepEqual(parseLogRequest({ request_id: 'r1', job_name: 'a.b.c.d', instance_number: 0 }), { ok: true, req: { request_id: 'r1', job_name: 'a.b.c.d', instance_number: 0, follow: false, tail: undefined } });
  assert.deepEqual(parseLogRequest({ request_id: 'r1', job_name: 'j', instance_number: 1, follow: true, tail: 5 }), { ok: true, req: { request_id: 'r1', job_name: 'j', instance_number: 1, follow: true, tail: 5 } });
  assert.equal(parseLogRequest({ request_id: 'a/b', job_name: 'j', instance_number: 0 }).ok, false);
  const bad = parseLogRequest({ request_id: 'r2', job_name: 'j', instance_number: -1 });
  assert.ok(!bad.ok);
  assert.equal(bad.request_id, 'r2');
  assert.equal(parseLogRequest([]).ok, false);
});

test('lines are batched, the last batch says end', async () => {
  async function* src() {
    yield 'a';
    yield 'b';
    await sleep(150);
    yield 'c';
  }
  const got: LogBatch[] = [];
  await pumpLogs(src(), (b) => got.push(b), new AbortController().signal, { intervalMs: 50 });
  assert.deepEqual(got.flatMap((b) => b.lines), ['a', 'b', 'c']);
  assert.ok(got.length >= 2, 'the pause splits the batches');
  assert.equal(got.at(-1)?.end, true);
  assert.equal(got.slice(0, -1).some((b) => b.end === true), false);
});

test('a full batch goes out at once; errors end the stream with the reason', async () => {
  async function* many() {
    for (let i = 0; i < 25; i++) yield `l${i}`;
    throw new Error('boom');
  }
  const got: LogBatch[] = [];
  await pumpLogs(many(), (b) => got.push(b), new AbortController().signal, { intervalMs: 10_000, maxLines: 10 });
  assert.deepEqual(got.map((b) => b.lines.length), [10, 10, 5]);
  assert.deepEqual(got.at(-1), { lines: ['l20', 'l21', 'l22', 'l23', 'l24'], end: true, error: 'boom' });
});

test('abort ends a follow that waits for lines', async () => {
  async function* forever() {
    yield 'first';
    await new Promise(() => {});
  }
  const ac = new AbortController();
  const got: LogBatch[] = [];
  const done = pumpLogs(forever(), (b) => got.push(b), ac.signal, { intervalMs: 20 });
  await sleep(60);
  ac.abort();
  await done;
  assert.deepEqual(got.flatMap((b) => b.lines), ['first']);
  assert.equal(got.at(-1)?.end, true);
});
