/**
 * The reconciler's keyed work queue (reconcile/queue.ts): one pass per key at a time, a request
 * during a pass runs once more after, bounded concurrency, errors logged and never thrown out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyedQueue } from '../src/reconcile/queue.ts';

interface Gate {
  promise: Promise<void>;
  open(): void;
}
function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('one pass per key at a time; requests during a pass make exactly one more pass', async () => {
  const gates: Gate[] = [];
  let running = 0;
  let maxRunning = 0;
  const passes: string[] = [];
  const q = new KeyedQueue({
    run: async (k) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      passes.push(k);
      const g = gate();
      gates.push(g);
      await g.promise;
      running--;
    },
  });
  q.request('a');
  q.request('a'); // merged with the waiting one... which started at once: it is "again"
  await tick();
  assert.equal(passes.length, 1);
  q.request('a');
  q.request('a');
  q.request('a');
  gates[0]!.open();
  await tick();
  await tick();
  assert.equal(passes.length, 2, 'requests during the pass: one more pass');
  gates[1]!.open();
  await q.idle();
  assert.deepEqual(passes, ['a', 'a']);
  assert.equal(maxRunning, 1);
});

test('waiting requests of a key are merged', async () => {
  const passes: string[] = [];
  const first = gate();
  const q = new KeyedQueue({
    concurrency: 1,
    run: async (k) => {
      passes.push(k);
      if (k === 'x') await first.promise;
    },
  });
  q.request('x');
  for (let i = 0; i < 10; i++) q.request('y');
  q.request('z');
  first.open();
  await q.idle();
  assert.deepEqual(passes, ['x', 'y', 'z']);
});

test('bounded concurrency across keys', async () => {
  let running = 0;
  let max = 0;
  const q = new KeyedQueue({
    concurrency: 4,
    run: async () => {
      running++;
      max = Math.max(max, running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
    },
  });
  for (let i = 0; i < 20; i++) q.request(`k${i}`);
  assert.equal(q.size, 20);
  await q.idle();
  assert.equal(max, 4);
  assert.equal(q.size, 0);
});

test('a pass that throws is logged; the queue goes on; close drops the waiting ones', async () => {
  const errors: unknown[] = [];
  const passes: string[] = [];
  const q = new KeyedQueue({
    concurrency: 1,
    log: { error: (o) => errors.push(o) },
    run: async (k) => {
      passes.push(k);
      if (k === 'bad') throw new Error('boom');
    },
  });
  q.request('bad');
  q.request('good');
  await q.idle();
  assert.deepEqual(passes, ['bad', 'good']);
  assert.equal(errors.length, 1);
  const slow = gate();
  const q2 = new KeyedQueue({
    concurrency: 1,
    run: async (k) => {
      passes.push(k);
      if (k === 's') await slow.promise;
    },
  });
  q2.request('s');
  q2.request('never');
  const closed = q2.close();
  q2.request('after');
  slow.open();
  await closed;
  assert.deepEqual(passes.slice(2), ['s']);
  assert.equal(q2.size, 0);
});
