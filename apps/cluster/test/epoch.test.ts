/** Placement epochs (issue 9): carried from the root's assignments, echoed in every instance_status, guarding undeploys. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterCore } from '../src/core.ts';
import type { Effect, InstanceStatusMessage } from '../src/core.ts';
import type { InstanceAssignment, NodeRegistration } from '@oak/contracts';
import { assignment, information, registration } from './fixtures.ts';

const JOB = 'app.ns.web.ns';
const name = (n: number): string => `${JOB}.instance.${n}`;

function join(c: ClusterCore, id: string, reg: NodeRegistration, t: number): Effect[] {
  return [...c.register(id, reg, t), ...c.information(id, information([], reg.cpu_cores, reg.memory_mb, reg.virtualizations), t)];
}
const statuses = (e: Effect[]): InstanceStatusMessage[] => e.flatMap((x) => (x.type === 'status' ? [x.message] : []));
const deploys = (e: Effect[]): string[] => e.flatMap((x) => (x.type === 'deploy' ? [`${x.worker_id} ${x.command.job_name}.instance.${x.command.instance_number}`] : []));
const deletes = (e: Effect[]): string[] => e.flatMap((x) => (x.type === 'delete' ? [`${x.worker_id} ${x.command.job_name}.instance.${x.command.instance_number}`] : []));
const at = (n: number, epoch: number | undefined, opts: Parameters<typeof assignment>[2] = {}): InstanceAssignment => {
  const a = assignment(JOB, n, opts);
  if (epoch !== undefined) a.epoch = epoch;
  return a;
};

test('the epoch of a deploy is echoed in every instance_status of that instance (scheduling, worker reports, death)', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  const e = c.deploy(at(0, 3), 1);
  assert.deepEqual(statuses(e).map((s) => [s.status, s.epoch]), [['NODE_SCHEDULED', 3]]);
  const r = statuses(c.jobStatus('w1', { job_name: JOB, instance_number: 0, status: 'RUNNING', status_detail: '' }, 2));
  assert.deepEqual(r.map((s) => [s.status, s.epoch]), [['RUNNING', 3]]);
  // the worker goes silent: DEAD carries the epoch too
  const dead = statuses(c.tick(10_000)).filter((s) => s.status === 'DEAD');
  assert.deepEqual(dead.map((s) => s.epoch), [3]);
});

test('a waiting instance reports its reason with its epoch; an assignment without epoch reports none (older roots)', () => {
  const c = new ClusterCore();
  const e = c.deploy(at(0, 7, { virtualization: 'wasm' }), 1);
  assert.deepEqual(statuses(e).map((s) => [s.status, s.epoch]), [['CLUSTER_SCHEDULED', 7]]);
  join(c, 'w1', registration('w1'), 0);
  const old = statuses(c.deploy(at(1, undefined), 2));
  assert.equal(old.length, 1);
  assert.equal('epoch' in (old[0] as object), false, 'no epoch field at all');
});

test('sync carries epochs; its statuses of known instances echo them', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  const e = c.sync([at(0, 2), at(1, 5)], 1);
  const byN = new Map(statuses(e).map((s) => [s.instance_number, s.epoch]));
  assert.deepEqual([...byN.entries()].sort(), [[0, 2], [1, 5]]);
  assert.equal(c.epochOf(JOB, 0), 2);
  // a later sync with a higher epoch for a running instance replaces it; the copy keeps running
  c.information('w1', information([name(0), name(1)]), 2);
  const again = c.sync([at(0, 4), at(1, 5)], 3);
  assert.deepEqual(deletes(again), []);
  assert.deepEqual(deploys(again), []);
  assert.equal(c.epochOf(JOB, 0), 4);
  const s = statuses(again).find((x) => x.instance_number === 0);
  assert.equal(s?.epoch, 4);
});

test('undeploy with an epoch removes only the copy of that epoch; without one, or a copy without one, it goes', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  c.deploy(at(0, 2), 1);
  c.deploy(at(1, undefined), 1);
  c.deploy(at(2, 9), 1);
  // a stale undeploy (epoch 1) for a copy of epoch 2: nothing happens
  assert.deepEqual(c.undeploy(JOB, 0, 2, 1), []);
  assert.equal(c.epochOf(JOB, 0), 2);
  assert.ok(c.desired.has(name(0)));
  // the matching epoch: deleted on its worker
  assert.deepEqual(deletes(c.undeploy(JOB, 0, 3, 2)), [`w1 ${name(0)}`]);
  assert.equal(c.desired.has(name(0)), false);
  // a copy without an epoch goes whatever epoch the undeploy names
  assert.deepEqual(deletes(c.undeploy(JOB, 1, 3, 5)), [`w1 ${name(1)}`]);
  // an undeploy without epoch removes whatever copy there is
  assert.deepEqual(deletes(c.undeploy(JOB, 2, 3)), [`w1 ${name(2)}`]);
  // unknown instance: nothing
  assert.deepEqual(c.undeploy(JOB, 42, 3, 1), []);
});

test('a deploy with a higher epoch for an instance it runs replaces the epoch and keeps the copy; an older one is ignored', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  c.deploy(at(0, 2), 1);
  c.jobStatus('w1', { job_name: JOB, instance_number: 0, status: 'RUNNING', status_detail: '' }, 2);
  const up = c.deploy(at(0, 3), 3);
  assert.deepEqual(deploys(up), [], 'the running copy stays');
  assert.deepEqual(statuses(up).map((s) => [s.status, s.epoch]), [['RUNNING', 3]]);
  assert.equal(c.epochOf(JOB, 0), 3);
  // a late deploy of epoch 2 changes nothing; the status says epoch 3
  const late = c.deploy(at(0, 2), 4);
  assert.deepEqual(deploys(late), []);
  assert.deepEqual(statuses(late).map((s) => s.epoch), [3]);
  assert.equal(c.epochOf(JOB, 0), 3);
  // the undeploy of the old placement leaves the new one alone
  assert.deepEqual(c.undeploy(JOB, 0, 5, 2), []);
  assert.equal(c.epochOf(JOB, 0), 3);
});

test('hostile epochs: huge and zero values are carried as given (the link codec bounds them), compared exactly', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  c.deploy(at(0, Number.MAX_SAFE_INTEGER), 1);
  assert.deepEqual(c.undeploy(JOB, 0, 2, Number.MAX_SAFE_INTEGER - 1), []);
  assert.deepEqual(c.deploy(at(0, 0), 3).flatMap((e) => (e.type === 'status' ? [e.message.epoch] : [])), [Number.MAX_SAFE_INTEGER]);
  assert.equal(c.epochOf(JOB, 0), Number.MAX_SAFE_INTEGER);
  assert.equal(deletes(c.undeploy(JOB, 0, 4, Number.MAX_SAFE_INTEGER)).length, 1);
});
