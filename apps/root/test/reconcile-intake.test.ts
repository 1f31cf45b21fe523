/**
 * Status intake (apps/root/src/reconcile/intake.ts), pure: what one instance_status from a
 * cluster does to the stored row, by (cluster, epoch), with the disconnect.reconcile policies for
 * a lost copy that comes back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DisconnectPolicy, InstanceState } from '@oak/contracts';
import type { InstanceRow } from '@oak/store';
import { fastPathStatus, foldProgress, judgeReport } from '../src/reconcile/intake.ts';
import type { InstanceStatusReport, QueuedReport } from '../src/reconcile/intake.ts';

const NOW = Date.parse('2026-01-01T00:10:00.000Z');
const AT = '2026-01-01T00:00:00.000Z';

function row(patch: Partial<InstanceRow> = {}): InstanceRow {
  return {
    service_id: 's1',
    instance_number: 0,
    status: 'RUNNING',
    status_detail: '',
    cluster_id: 'A',
    worker_id: 'w1',
    publicip: null,
    instance_ip: '10.30.0.2',
    created_at: AT,
    updated_at: AT,
    instance_ip_v6: null,
    net: null,
    service_version: 1,
    desired: 'run',
    epoch: 1,
    replaces: null,
    status_at: AT,
    last_cluster_id: null,
    lost_at: null,
    health: null,
    restarts: 0,
    ...patch,
  };
}

function report(status: InstanceState, patch: Partial<InstanceStatusReport> = {}): InstanceStatusReport {
  return { type: 'instance_status', job_name: 'a.b.c.d', instance_number: 0, status, status_detail: '', worker_id: 'w1', ...patch };
}

function policy(reconcile: Required<DisconnectPolicy>['reconcile']): Required<DisconnectPolicy> {
  return { lost_after_s: 30, replace: true, reconcile };
}

const ctx = { policy: policy('best_score'), now: NOW };

test('unknown instance: stale (undeploy it there); an UNDEPLOYED report about it: ended', () => {
  assert.deepEqual(judgeReport(undefined, 'A', report('RUNNING', { epoch: 1 }), ctx), { kind: 'stale', reason: 'the root has no such instance' });
  assert.deepEqual(judgeReport(undefined, 'A', report('UNDEPLOYED'), ctx), { kind: 'ended' });
});

test('a copy on another cluster, or of another epoch, is stale', () => {
  const foreign = judgeReport(row({ cluster_id: 'B', epoch: 2 }), 'A', report('RUNNING', { epoch: 1 }), ctx);
  assert.equal(foreign.kind, 'stale');
  assert.match(foreign.kind === 'stale' ? foreign.reason : '', /placed on another cluster now \(epoch 2\)/);
  const unplaced = judgeReport(row({ cluster_id: null, status: 'REQUESTED', epoch: 2 }), 'A', report('RUNNING', { epoch: 1 }), ctx);
  assert.match(unplaced.kind === 'stale' ? unplaced.reason : '', /not placed now/);
  const old = judgeReport(row({ epoch: 3 }), 'A', report('RUNNING', { epoch: 2 }), ctx);
  assert.deepEqual(old, { kind: 'stale', reason: 'this copy is of epoch 2; the instance is at epoch 3' });
  assert.equal(judgeReport(row({ epoch: 3 }), 'A', report('RUNNING', { epoch: 4 }), ctx).kind, 'stale', 'a different epoch, higher too');
  assert.deepEqual(judgeReport(row({ epoch: 3 }), 'A', report('UNDEPLOYED', { epoch: 2 }), ctx), { kind: 'ended' }, 'a stale copy that is gone: nothing to do');
});

test('reports without an epoch (clusters of before issue 9) are judged by cluster alone', () => {
  assert.deepEqual(judgeReport(row({ epoch: 5, status: 'CREATING' }), 'A', report('RUNNING'), ctx), { kind: 'apply', patch: { status: 'RUNNING' } });
  assert.equal(judgeReport(row({ epoch: 5 }), 'B', report('RUNNING'), ctx).kind, 'stale');
});

test('a stored instance that ended: a late report changes nothing', () => {
  for (const status of ['FAILED', 'COMPLETED', 'UNDEPLOYED'] as const) {
    assert.deepEqual(judgeReport(row({ status }), 'A', report('RUNNING', { epoch: 1 }), ctx), { kind: 'ended' });
  }
});

test('a stopped instance finished while its cluster was away: a copy still running there is stale', () => {
  const finished = row({ desired: 'stop', status: 'UNDEPLOYED' });
  assert.deepEqual(judgeReport(finished, 'A', report('RUNNING', { epoch: 1 }), ctx), { kind: 'stale', reason: 'the instance was stopped' });
  assert.deepEqual(judgeReport(finished, 'A', report('UNDEPLOYED', { epoch: 1 }), ctx), { kind: 'ended' });
});

test('the patch: status, detail, worker, publicip; net undefined is kept, null clears', () => {
  const r = row({ status: 'CREATING', net: { nsip: '10.18.0.5', host_ip: '192.168.1.2', host_port: 50103, subnet: '10.18.0.0/26' } });
  assert.deepEqual(judgeReport(r, 'A', report('CREATING', { epoch: 1, net: { host_ip: '192.168.1.2', nsip: '10.18.0.5', host_port: 50103, subnet: '10.18.0.0/26' } }), ctx), { kind: 'same' }, 'the same net');
  assert.deepEqual(judgeReport(r, 'A', report('CREATING', { epoch: 1 }), ctx), { kind: 'same' });
  const v = judgeReport(r, 'A', report('RUNNING', { epoch: 1, status_detail: 'up', worker_id: 'w2', publicip: '1.2.3.4' }), ctx);
  assert.deepEqual(v, { kind: 'apply', patch: { status: 'RUNNING', status_detail: 'up', worker_id: 'w2', publicip: '1.2.3.4' } });
  assert.deepEqual(judgeReport(r, 'A', report('CREATING', { epoch: 1, net: null }), ctx), { kind: 'apply', patch: { net: null } });
  assert.deepEqual(judgeReport(row({ publicip: '1.1.1.1' }), 'A', report('RUNNING', { epoch: 1, publicip: null }), ctx), { kind: 'apply', patch: { publicip: null } });
  assert.deepEqual(judgeReport(row({ publicip: '1.1.1.1' }), 'A', report('RUNNING', { epoch: 1 }), ctx), { kind: 'same' }, 'publicip not said: kept');
});

test('a stopping instance still takes its cluster\'s reports (UNDEPLOYED confirms the stop)', () => {
  assert.deepEqual(judgeReport(row({ desired: 'stop' }), 'A', report('UNDEPLOYED', { epoch: 1 }), ctx), { kind: 'apply', patch: { status: 'UNDEPLOYED' } });
});

// ------------------------------------------------------------------------------ a lost copy comes back

/** instance 0 was on A (epoch 1); A was lost; it was requeued (epoch 2) and placed on B (epoch 3) */
function requeued(patch: Partial<InstanceRow> = {}): InstanceRow {
  return row({ cluster_id: 'B', epoch: 3, status: 'CLUSTER_SCHEDULED', last_cluster_id: 'A', lost_at: AT, ...patch });
}

test('keep_original: the lost copy is adopted, even when its replacement runs', () => {
  const p = { policy: policy('keep_original'), now: NOW };
  const v = judgeReport(requeued(), 'A', report('RUNNING', { epoch: 1 }), p);
  assert.equal(v.kind, 'adopt');
  assert.equal(v.kind === 'adopt' ? v.epoch : -1, 1, 'back with the epoch it runs');
  assert.match(v.kind === 'adopt' ? v.reason : '', /keep_original/);
  assert.equal(judgeReport(requeued({ status: 'RUNNING' }), 'A', report('RUNNING', { epoch: 1 }), p).kind, 'adopt');
  assert.equal(judgeReport(requeued({ status: 'REQUESTED', cluster_id: null, epoch: 2 }), 'A', report('RUNNING', { epoch: 1 }), p).kind, 'adopt', 'not placed again yet');
});

test('keep_replacement: the lost copy is stale', () => {
  const p = { policy: policy('keep_replacement'), now: NOW };
  assert.equal(judgeReport(requeued(), 'A', report('RUNNING', { epoch: 1 }), p).kind, 'stale');
  assert.equal(judgeReport(requeued({ status: 'RUNNING' }), 'A', report('RUNNING', { epoch: 1 }), p).kind, 'stale');
});

test('best_score: the original stays unless its replacement is RUNNING already', () => {
  const p = { policy: policy('best_score'), now: NOW };
  const v = judgeReport(requeued({ status: 'CREATING' }), 'A', report('RUNNING', { epoch: 1 }), p);
  assert.equal(v.kind, 'adopt');
  assert.match(v.kind === 'adopt' ? v.reason : '', /best_score: the replacement is CREATING/);
  assert.equal(judgeReport(requeued({ status: 'RUNNING' }), 'A', report('RUNNING', { epoch: 1 }), p).kind, 'stale');
  // the replacement as another row (replaces = 0): its state decides
  const other = row({ instance_number: 7, replaces: 0, cluster_id: 'B', status: 'RUNNING' });
  assert.equal(judgeReport(requeued({ status: 'REQUESTED', cluster_id: null, epoch: 2 }), 'A', report('RUNNING', { epoch: 1 }), { ...p, replacement: other }).kind, 'stale');
});

test('adoption only of a live copy from the lost cluster, of an older epoch, for an instance still wanted', () => {
  const p = { policy: policy('keep_original'), now: NOW };
  assert.equal(judgeReport(requeued(), 'C', report('RUNNING', { epoch: 1 }), p).kind, 'stale', 'another cluster');
  assert.deepEqual(judgeReport(requeued(), 'A', report('UNDEPLOYED', { epoch: 1 }), p), { kind: 'ended' }, 'gone already');
  assert.equal(judgeReport(requeued(), 'A', report('FAILED', { epoch: 1 }), p).kind, 'stale', 'an ended copy is not adopted');
  assert.equal(judgeReport(requeued({ desired: 'stop' }), 'A', report('RUNNING', { epoch: 1 }), p).kind, 'stale', 'the instance is stopping');
  assert.equal(judgeReport(requeued({ lost_at: null }), 'A', report('RUNNING', { epoch: 1 }), p).kind, 'stale', 'requeued by a deadline, not lost');
  assert.equal(judgeReport(requeued(), 'A', report('RUNNING', { epoch: 3 }), p).kind, 'stale', 'not an older epoch');
  const noEpoch = judgeReport(requeued(), 'A', report('RUNNING'), p);
  assert.deepEqual(noEpoch.kind === 'adopt' ? noEpoch.epoch : -1, 3, 'an old cluster: the row keeps its epoch');
});

test('health and local restarts (issue 10): stored from the report; absent means none (a new copy starts at 0)', () => {
  const r = row({ epoch: 1, status: 'RUNNING', cluster_id: 'A' });
  assert.deepEqual(judgeReport(r, 'A', report('RUNNING', { epoch: 1, health: 'unhealthy', restarts: 2 }), ctx), { kind: 'apply', patch: { health: 'unhealthy', restarts: 2 } });
  const sick = row({ epoch: 1, status: 'RUNNING', cluster_id: 'A', health: 'unhealthy', restarts: 2 });
  assert.deepEqual(judgeReport(sick, 'A', report('RUNNING', { epoch: 1, health: 'unhealthy', restarts: 2 }), ctx), { kind: 'same' });
  assert.deepEqual(judgeReport(sick, 'A', report('NODE_SCHEDULED', { epoch: 1, status_detail: 'moved off worker w1', worker_id: 'w2' }), ctx), {
    kind: 'apply',
    patch: { status: 'NODE_SCHEDULED', status_detail: 'moved off worker w1', worker_id: 'w2', health: null, restarts: 0 },
  });
});

test('the root\'s service table (issue 10): an instance whose probe is not healthy is left out', async () => {
  const { tableEntryOf } = await import('../src/link/net.ts');
  const net = { nsip: '10.18.0.66', nsip_v6: null, host_ip: '192.0.2.10', host_port: 50103, subnet: '10.18.0.64/26', subnet_v6: null };
  const base = row({ status: 'RUNNING', cluster_id: 'A', worker_id: 'w1', net });
  assert.equal(tableEntryOf(base)?.nsip, '10.18.0.66', 'no probe: served');
  assert.equal(tableEntryOf({ ...base, health: 'healthy' })?.nsip, '10.18.0.66');
  assert.equal(tableEntryOf({ ...base, health: 'unhealthy' }), undefined);
  assert.equal(tableEntryOf({ ...base, health: 'starting' }), undefined);
});

test('fast path: only progress to NODE_SCHEDULED/CREATING of a current desired=run row skips the plan', () => {
  const placed = row({ status: 'CLUSTER_SCHEDULED', worker_id: null });
  assert.equal(fastPathStatus(placed, { status: 'NODE_SCHEDULED', worker_id: 'w1' }, 1), true);
  assert.equal(fastPathStatus(row({ status: 'NODE_SCHEDULED' }), { status: 'CREATING' }, 1), true);
  // ends and failures may change the plan (replacements, restarts elsewhere); RUNNING only during a rollout
  for (const st of ['RUNNING', 'FAILED', 'DEAD', 'COMPLETED', 'UNDEPLOYED'] as const) assert.equal(fastPathStatus(placed, { status: st }, 1), false, st);
  for (const st of ['FAILED', 'DEAD', 'COMPLETED', 'UNDEPLOYED'] as const) assert.equal(fastPathStatus(placed, { status: st }, 1, false), false, st);
  assert.equal(fastPathStatus(placed, { status: 'RUNNING' }, 1, false), true, 'RUNNING with no rollout under way');
  assert.equal(fastPathStatus(placed, { status: 'RUNNING' }, 1, true), false, 'RUNNING during a rollout');
  assert.equal(fastPathStatus(row({ status: 'CREATING', replaces: 0, instance_number: 3 }), { status: 'RUNNING' }, 1, false), false, 'a successor');
  // a row of an older version (a rollout), a stopping row, a lost one: always planned
  assert.equal(fastPathStatus(row({ status: 'CLUSTER_SCHEDULED', service_version: 1 }), { status: 'NODE_SCHEDULED' }, 2), false);
  assert.equal(fastPathStatus(row({ status: 'CLUSTER_SCHEDULED', desired: 'stop' }), { status: 'NODE_SCHEDULED' }, 1), false);
  assert.equal(fastPathStatus(row({ status: 'CLUSTER_SCHEDULED', lost_at: AT }), { status: 'NODE_SCHEDULED' }, 1), false);
  // health or restarts changed, or no status change: planned
  assert.equal(fastPathStatus(placed, { status: 'CREATING', health: 'unhealthy' }, 1), false);
  assert.equal(fastPathStatus(placed, { status: 'CREATING', restarts: 1 }, 1), false);
  assert.equal(fastPathStatus(placed, { status_detail: 'x' }, 1), false);
});

const q = (clusterId: string, status: InstanceState, at: number, patch: Partial<InstanceStatusReport> = {}): QueuedReport => ({ clusterId, m: report(status, { epoch: 2, ...patch }), at });
const shape = (list: QueuedReport[]): string[] => list.map((r) => `${r.clusterId}:${r.m.instance_number}:${r.m.status}<${(r.passed ?? []).map((p) => `${p.m.status}@${p.at}`).join(',')}>`);

test('foldProgress: NODE_SCHEDULED and CREATING of a copy fold into its next report, in order, with their times', () => {
  const list = [q('A', 'NODE_SCHEDULED', 1, { publicip: '192.0.2.9' }), q('A', 'CREATING', 2), q('A', 'RUNNING', 3)];
  const out = foldProgress(list);
  assert.deepEqual(shape(out), ['A:0:RUNNING<NODE_SCHEDULED@1,CREATING@2>']);
  // the later report keeps what an earlier one said and it does not
  assert.equal(out[0]!.m.publicip, '192.0.2.9');
  assert.equal(out[0]!.at, 3);
  // a progress report with nothing after it stays as it is; other instances are not touched
  assert.deepEqual(shape(foldProgress([q('A', 'NODE_SCHEDULED', 1), q('A', 'CREATING', 2, { instance_number: 1 })])), ['A:0:NODE_SCHEDULED<>', 'A:1:CREATING<>']);
  assert.deepEqual(shape(foldProgress([q('A', 'RUNNING', 1), q('A', 'RUNNING', 2)])), ['A:0:RUNNING<>', 'A:0:RUNNING<>']);
});

test('foldProgress: no fold across another copy of the instance, into an end, or between clusters and epochs', () => {
  // another cluster's copy in between: order matters, nothing folds
  assert.deepEqual(shape(foldProgress([q('A', 'CREATING', 1), q('B', 'RUNNING', 2), q('A', 'RUNNING', 3)])), ['A:0:CREATING<>', 'B:0:RUNNING<>', 'A:0:RUNNING<>']);
  // another epoch is another copy
  assert.deepEqual(shape(foldProgress([q('A', 'CREATING', 1, { epoch: 1 }), q('A', 'RUNNING', 2)])), ['A:0:CREATING<>', 'A:0:RUNNING<>']);
  // an end or a failure is applied after the progress, not folded
  for (const end of ['FAILED', 'UNDEPLOYED', 'DEAD'] as const) assert.deepEqual(shape(foldProgress([q('A', 'CREATING', 1), q('A', end, 2)])), ['A:0:CREATING<>', `A:0:${end}<>`]);
  // another instance of the service in between does not stop the fold
  assert.deepEqual(shape(foldProgress([q('A', 'CREATING', 1), q('A', 'RUNNING', 2, { instance_number: 1 }), q('A', 'RUNNING', 3)])), ['A:1:RUNNING<>', 'A:0:RUNNING<CREATING@1>']);
});
