import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { pickClosest } from '../src/index.ts';

const i = (n: number, w: string) => ({ instance_number: n, worker_id: w, nsip: `10.18.0.${n + 2}` });

test('a local instance first (lowest number), else the lowest RTT, ties by instance number, unmeasured last', () => {
  const rtt = new Map<string, number | null>([['b', 5], ['c', 2], ['d', 2], ['e', null]]);
  assert.equal(pickClosest([i(3, 'b'), i(7, 'a'), i(5, 'a'), i(0, 'c')], 'a', rtt)?.instance_number, 5);
  assert.equal(pickClosest([i(3, 'b'), i(4, 'd'), i(1, 'c'), i(0, 'e')], 'a', rtt)?.instance_number, 1);
  assert.equal(pickClosest([i(3, 'b'), i(0, 'e'), i(2, 'x')], 'a', rtt)?.instance_number, 3);
  assert.equal(pickClosest([i(4, 'e'), i(2, 'x')], 'a', rtt)?.instance_number, 2, 'all unmeasured: by instance number');
  assert.equal(pickClosest([], 'a', rtt), undefined);
  assert.equal(pickClosest([i(3, 'b'), i(1, 'c')], 'a', { b: 1, c: 9 })?.instance_number, 3, 'a plain object works too');
});

test('hostile RTTs and entries are ignored, never chosen over good ones', () => {
  const rtt = { b: NaN, c: -1, d: Infinity, e: '3' as unknown as number, f: 4 };
  assert.equal(pickClosest([i(0, 'b'), i(1, 'c'), i(2, 'd'), i(3, 'e'), i(9, 'f')], 'a', rtt)?.instance_number, 9);
  assert.equal(pickClosest([i(5, '__proto__'), i(6, 'f')], 'a', rtt)?.instance_number, 6);
  assert.equal(pickClosest([null as never, { instance_number: NaN, worker_id: 'a' }, i(2, 'z')], 'a', rtt)?.instance_number, 2);
});

test('property: the choice does not depend on the order of the list', () => {
  const arb = fc.array(fc.record({ instance_number: fc.nat(20), worker_id: fc.constantFrom('a', 'b', 'c', 'd') }), { maxLength: 8 });
  const rtts = fc.record({ b: fc.option(fc.nat(5)), c: fc.option(fc.nat(5)) });
  fc.assert(fc.property(arb, rtts, (list, rtt) => {
    const uniq = [...new Map(list.map((x) => [x.instance_number, x])).values()];
    const a = pickClosest(uniq, 'a', rtt);
    const b = pickClosest([...uniq].reverse(), 'a', rtt);
    assert.equal(a?.instance_number, b?.instance_number);
    if (uniq.some((x) => x.worker_id === 'a')) assert.equal(a?.worker_id, 'a');
  }), { numRuns: 500 });
});
