/** Two streams read at once during a switch (src/lib/overlap.ts): each event once, repeats kept. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OverlapDedupe } from '../src/lib/overlap.ts';

test('an event on both streams is handed over once, whichever comes first', () => {
  const d = new OverlapDedupe<string>();
  assert.equal(d.take('old', 'a'), true);
  assert.equal(d.take('new', 'a'), false);
  assert.equal(d.take('new', 'b'), true);
  assert.equal(d.take('old', 'b'), false);
});

test('the same text twice (a service updated, then rolled back) is handed over twice', () => {
  const d = new OverlapDedupe<string>();
  const updated = '{"type":"service","action":"updated","microserviceID":"s1","applicationID":"a1"}';
  assert.equal(d.take('old', updated), true);
  assert.equal(d.take('new', updated), false);
  // the second, identical event
  assert.equal(d.take('new', updated), true);
  assert.equal(d.take('old', updated), false);
  // a third comes on one stream before the other
  assert.equal(d.take('old', updated), true);
  assert.equal(d.take('old', updated), true, 'two in a row on one stream are two events');
  assert.equal(d.take('new', updated), false);
  assert.equal(d.take('new', updated), false);
});

test('an event only one stream carries (published before the other subscribed, or readings) is handed over', () => {
  const d = new OverlapDedupe<string>();
  assert.equal(d.take('old', 'early'), true);
  assert.equal(d.take('new', 'metrics'), true);
  assert.equal(d.take('new', 'metrics'), true);
  assert.equal(d.take('old', 'late'), true);
  assert.equal(d.take('new', 'late'), false);
});
