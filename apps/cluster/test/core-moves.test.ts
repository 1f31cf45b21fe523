/**
 * Issue 10: a service instance FAILED on its worker after its local restarts is moved to another
 * worker (at most maxMoves times, the reason in the status that goes to the root's history);
 * health and restarts travel with the status.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterCore } from '../src/core.ts';
import type { Effect, InstanceStatusMessage } from '../src/core.ts';
import type { InstanceAssignment, NodeRegistration } from '@oak/contracts';
import { assignment, information, registration } from './fixtures.ts';

const JOB = 'app.ns.web.ns';

function join(c: ClusterCore, id: string, reg: NodeRegistration, t: number): Effect[] {
  return [...c.register(id, reg, t), ...c.information(id, information([], reg.cpu_cores, reg.memory_mb, reg.virtualizations), t)];
}
const deploys = (effects: Effect[]): string[] => effects.flatMap((e) => (e.type === 'deploy' ? [e.worker_id] : []));
const deletes = (effects: Effect[]): string[] => effects.flatMap((e) => (e.type === 'delete' ? [e.worker_id] : []));
const statuses = (effects: Effect[]): InstanceStatusMessage[] => effects.flatMap((e) => (e.type === 'status' ? [e.message] : []));

function withService(a: InstanceAssignment, extra: Record<string, unknown>): InstanceAssignment {
  return { ...a, service: { ...a.service, ...extra } };
}

function failedAfterRestarts(restarts: number) {
  return { job_name: JOB, instance_number: 0, status: 'FAILED' as const, status_detail: `unhealthy: 3 health probes failed; gave up after ${restarts} local restart(s) (restart_max 3)`, restarts, health: 'unhealthy' as const };
}

test('FAILED after its local restarts: deleted there, placed on another worker with the reason; at most twice, then FAILED', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  for (const w of ['w1', 'w2', 'w3']) join(c, w, registration(w), 0);
  c.deploy(assignment(JOB, 0), 1);
  const first = c.workerOf(JOB, 0) as string;
  // health and restarts go up to the root with the status
  const run = statuses(c.jobStatus(first, { job_name: JOB, instance_number: 0, status: 'RUNNING', status_detail: 'running (local restart 1 of 3)', restarts: 1, health: 'starting' }, 2));
  assert.equal(run[0]?.restarts, 1);
  assert.equal(run[0]?.health, 'starting');

  const e1 = c.jobStatus(first, failedAfterRestarts(3), 3);
  assert.deepEqual(deletes(e1), [first], 'the failed copy goes from its worker');
  const second = deploys(e1)[0] as string;
  assert.ok(second !== undefined && second !== first, `placed elsewhere: ${second}`);
  const s1 = statuses(e1);
  assert.equal(s1.some((s) => s.status === 'FAILED'), false, 'the root never sees it FAILED while it moves');
  const placed = s1.find((s) => s.status === 'NODE_SCHEDULED');
  assert.equal(placed?.worker_id, second);
  assert.match(placed?.status_detail ?? '', /^moved off worker w\d \(move 1 of 2\) after 3 local restart\(s\): unhealthy/);
  assert.equal(placed?.restarts, undefined, 'a fresh copy: no restarts yet');

  const e2 = c.jobStatus(second, failedAfterRestarts(3), 4);
  const third = deploys(e2)[0] as string;
  assert.ok(third !== undefined && third !== first && third !== second, 'a worker it has not failed on');
  assert.match(statuses(e2).find((s) => s.status === 'NODE_SCHEDULED')?.status_detail ?? '', /move 2 of 2/);

  // moves used up: FAILED goes to the root as it is
  const e3 = c.jobStatus(third, failedAfterRestarts(3), 5);
  assert.deepEqual(deploys(e3), []);
  assert.deepEqual(deletes(e3), []);
  assert.deepEqual(statuses(e3).map((s) => [s.status, s.restarts]), [['FAILED', 3]]);
  // the old workers' late reports (UNDEPLOYED of the deleted copies) change nothing
  assert.deepEqual(c.jobStatus(first, { job_name: JOB, instance_number: 0, status: 'UNDEPLOYED', status_detail: 'undeployed' }, 6), []);
});

test('no other worker: FAILED with the reason', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'only', registration('only'), 0);
  c.deploy(assignment(JOB, 0), 1);
  const e = c.jobStatus('only', failedAfterRestarts(3), 2);
  assert.deepEqual(deploys(e), []);
  const s = statuses(e);
  assert.equal(s.at(-1)?.status, 'FAILED');
  assert.match(s.at(-1)?.status_detail ?? '', /moved off worker only .*no other worker can take it/);
});

test('not moved: one_shot jobs, restart never, restarts below restart_max, workers that report no restarts', () => {
  const cases: [Record<string, unknown>, number | undefined][] = [
    [{ one_shot: true }, 3],
    [{ restart: 'never' }, 0],
    [{ restart_max: 5 }, 3],
    [{}, undefined],
  ];
  for (const [extra, restarts] of cases) {
    const c = new ClusterCore({ reportIntervalMs: 100 });
    for (const w of ['w1', 'w2']) join(c, w, registration(w), 0);
    c.deploy(withService(assignment(JOB, 0), extra), 1);
    const w = c.workerOf(JOB, 0) as string;
    const js = { job_name: JOB, instance_number: 0, status: 'FAILED' as const, status_detail: 'exited with code 1', ...(restarts !== undefined ? { restarts } : {}) };
    const e = c.jobStatus(w, js, 2);
    assert.deepEqual(deploys(e), [], JSON.stringify(extra));
    assert.deepEqual(statuses(e).map((s) => s.status), ['FAILED'], JSON.stringify(extra));
  }
  // restart_max 0 with on-failure: FAILED at once on the worker, moved
  const c = new ClusterCore({ reportIntervalMs: 100 });
  for (const w of ['w1', 'w2']) join(c, w, registration(w), 0);
  c.deploy(withService(assignment(JOB, 0), { restart_max: 0 }), 1);
  const w = c.workerOf(JOB, 0) as string;
  assert.equal(deploys(c.jobStatus(w, { job_name: JOB, instance_number: 0, status: 'FAILED', status_detail: 'exited with code 1', restarts: 0 }, 2)).length, 1);
});
