/** issue 9: a worker whose connection drops (its last will, nodes/<id>/gone) is declared lost within the grace, not after 3 report intervals. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterCore } from '../src/core.ts';
import type { Effect, InstanceStatusMessage } from '../src/core.ts';
import { assignment, information, registration } from './fixtures.ts';

const JOB = 'app.ns.web.ns';

function statuses(effects: Effect[]): InstanceStatusMessage[] {
  return effects.flatMap((e) => (e.type === 'status' ? [e.message] : []));
}
function deploys(effects: Effect[]): string[] {
  return effects.flatMap((e) => (e.type === 'deploy' ? [e.worker_id] : []));
}

/** two workers with nonces c1/c2, one instance on whichever the core picks; returns its worker and the other */
function setup(grace: number): { c: ClusterCore; on: string; other: string; conn: (id: string) => string } {
  const c = new ClusterCore({ reportIntervalMs: 1000, goneGraceMs: grace });
  const conn = (id: string): string => `n-${id}`;
  for (const id of ['w1', 'w2']) {
    c.register(id, { ...registration(id), conn: conn(id) }, 0);
    c.information(id, { ...information([]), conn: conn(id) }, 0);
  }
  const e = c.deploy(assignment(JOB, 0), 1);
  const on = deploys(e)[0];
  assert.ok(on !== undefined);
  c.jobStatus(on, { job_name: JOB, instance_number: 0, status: 'RUNNING', status_detail: '' }, 2);
  return { c, on, other: on === 'w1' ? 'w2' : 'w1', conn };
}

test('connectionLost with the current nonce: lost after the grace (long before 3 report intervals), instance rescheduled like a silent worker', () => {
  const { c, on, other, conn } = setup(200);
  assert.deepEqual(c.connectionLost(on, conn(on), 100), [], 'nothing during the grace');
  assert.equal(c.nextGoneAt(), 300);
  assert.deepEqual(statuses(c.tick(299)), []);
  const e = c.tick(300);
  const s = statuses(e);
  assert.equal(s[0]?.status, 'DEAD');
  assert.match(s[0]?.status_detail ?? '', /lost its connection to the broker; rescheduling/);
  assert.deepEqual(deploys(e), [other], 're-placed on the other worker');
  assert.equal(c.workers.get(on)?.alive, false);
  assert.equal(c.nextGoneAt(), null);
  // the worker comes back: it registers and reports again, and is alive
  c.register(on, { ...registration(on), conn: 'fresh' }, 400);
  assert.equal(c.workers.get(on)?.alive, true);
});

test('connectionLost with grace 0 declares the worker lost at once', () => {
  const { c, on, other, conn } = setup(0);
  const e = c.connectionLost(on, conn(on), 100);
  assert.equal(statuses(e)[0]?.status, 'DEAD');
  assert.deepEqual(deploys(e), [other]);
});

test('a quick reconnect (a report or registration after the will, within the grace) cancels it', () => {
  const { c, on, conn } = setup(200);
  c.connectionLost(on, conn(on), 100);
  c.information(on, { ...information([`${JOB}.instance.0`]), conn: conn(on) }, 150);
  assert.deepEqual(statuses(c.tick(1000)), []);
  assert.equal(c.workers.get(on)?.alive, true);
  c.connectionLost(on, conn(on), 1100);
  c.register(on, { ...registration(on), conn: conn(on) }, 1150);
  assert.deepEqual(statuses(c.tick(2000)), []);
  assert.equal(c.workers.get(on)?.alive, true);
});

test('a will of another process (nonce differs), of an unknown or dead worker, or without the nonce the worker sent is ignored', () => {
  const { c, on } = setup(0);
  assert.deepEqual(c.connectionLost(on, 'an-older-process', 100), []);
  assert.deepEqual(c.connectionLost(on, undefined, 100), []);
  assert.deepEqual(c.connectionLost('nobody', undefined, 100), []);
  assert.equal(c.workers.get(on)?.alive, true);
  assert.equal(c.nextGoneAt(), null);
  // a worker that sent no nonce (an older NodeEngine) may still be declared lost by a will without one
  const d = new ClusterCore({ goneGraceMs: 0 });
  d.register('old', registration('old'), 0);
  assert.deepEqual(d.connectionLost('old', 'x', 1), []);
  d.connectionLost('old', undefined, 1);
  assert.equal(d.workers.get('old')?.alive, false);
  // already dead: nothing more
  assert.deepEqual(d.connectionLost('old', undefined, 2), []);
});
