/** The cluster's worker pick with addons (worker's and cluster's), preferences and connectivity over the workers' RTTs (issue 12). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { InstanceAssignment, NodeRegistration } from '@oak/contracts';
import { ClusterCore } from '../src/core.ts';
import type { Effect, InstanceStatusMessage } from '../src/core.ts';
import { configFromArgs, parseAddons } from '../src/main.ts';
import { assignment, information, registration } from './fixtures.ts';

function join(c: ClusterCore, id: string, reg: NodeRegistration, t: number): Effect[] {
  return [...c.register(id, reg, t), ...c.information(id, information([], reg.cpu_cores, reg.memory_mb, reg.virtualizations), t)];
}
const placedOn = (effects: Effect[]): string[] => effects.flatMap((e) => (e.type === 'deploy' ? [e.worker_id] : []));
const statuses = (effects: Effect[]): InstanceStatusMessage[] => effects.flatMap((e) => (e.type === 'status' ? [e.message] : []));

function withSla(a: InstanceAssignment, extra: Partial<InstanceAssignment['service']>): InstanceAssignment {
  return { ...a, service: { ...a.service, ...extra } };
}

test('addons: only a worker offering them (its own labels or the cluster\'s); the aggregate reports both', () => {
  const c = new ClusterCore({ reportIntervalMs: 100, clusterAddons: ['cluster-db'] });
  join(c, 'w1', registration('w1'), 0);
  join(c, 'w2', { ...registration('w2'), supported_addons: ['image-builder'] }, 0);
  const needs = (n: number, labels: string[]) => withSla(assignment('a.a.img.a', n), { constraints: [{ type: 'addons', needs: labels }] });
  assert.deepEqual(placedOn(c.deploy(needs(0, ['image-builder']), 1)), ['w2']);
  assert.deepEqual(placedOn(c.deploy(needs(1, ['image-builder', 'cluster-db']), 1)), ['w2']);
  const none = c.deploy(needs(2, ['FLOps-learner']), 1);
  assert.deepEqual(placedOn(none), []);
  assert.equal(statuses(none)[0]?.status_detail, 'NoWorkerMatchesConstraints');
  const agg = c.aggregate();
  assert.deepEqual(agg.supported_addons, ['cluster-db']);
  assert.deepEqual(agg.worker_summary.map((w) => [w.id, w.supported_addons]), [['w1', undefined], ['w2', ['image-builder']]]);
});

test('a preference picks its worker when it can and is said when it cannot', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  join(c, 'w2', registration('w2'), 0);
  const e = c.deploy(withSla(assignment('a.a.p.a', 0), { constraints: [{ type: 'direct', node: 'w2', rigidness: 0.7 }] }), 1);
  assert.deepEqual(placedOn(e), ['w2']);
  const f = c.deploy(withSla(assignment('a.a.q.a', 0), { constraints: [{ type: 'direct', node: 'elsewhere', rigidness: 0.7 }] }), 1);
  assert.equal(placedOn(f).length, 1);
  assert.equal(statuses(f)[0]?.status_detail, 'preference unmet: direct node elsewhere (rigidness 0.7)');
});

test('connectivity: within the RTT of the target\'s workers (the root\'s list and the cluster\'s own placements); unknown RTTs said', () => {
  const rtt: Record<string, number> = { 'w1-w3': 2, 'w2-w3': 40 };
  const c = new ClusterCore({ reportIntervalMs: 100, rttMs: (a, b) => rtt[`${a}-${b}`] ?? rtt[`${b}-${a}`] });
  // w1 is the smallest: least-loaded alone would pick w2
  join(c, 'w1', registration('w1', 2, 4096), 0);
  join(c, 'w2', registration('w2', 8, 4096), 0);
  join(c, 'w3', registration('w3', 8, 4096), 0);
  // the db runs on w3 (placed here by a direct constraint)
  assert.deepEqual(placedOn(c.deploy(withSla(assignment('a.a.db.a', 0), { constraints: [{ type: 'direct', node: 'w3' }] }), 1)), ['w3']);
  // w3 is loaded with the db: without the rule the api would go elsewhere; the rule allows w1 (2 ms) and w3 (0 ms), not w2 (40 ms)
  const api = (n: number, workers: string[], threshold = 10): InstanceAssignment => ({ ...assignment('a.a.api.a', n, { vcpus: 1 }), peers: [{ target: 'a.a.db.a', threshold_ms: threshold, rigidness: 1, workers }] });
  const e = c.deploy(api(0, []), 2);
  assert.deepEqual(placedOn(e), ['w1']);
  assert.equal(statuses(e)[0]?.status_detail, '');
  // a target worker the cluster does not know RTTs for: placed, and said
  const u = c.deploy(api(1, ['far-away']), 3);
  assert.equal(placedOn(u).length, 1);
  assert.match(statuses(u)[0]?.status_detail ?? '', /connectivity to a\.a\.db\.a \(<= 10 ms\) not checked: the overlay has no RTT between w\d and worker far-away/);
  // 1 ms: only w3 itself
  assert.deepEqual(placedOn(c.deploy(api(2, [], 1), 4)), ['w3']);
});

test('--addons / CLUSTER_ADDONS: labels checked like the SLA\'s needs', () => {
  assert.deepEqual(parseAddons('a, b,a'), ['a', 'b']);
  assert.throws(() => parseAddons('a,b c'), /"b c" is not an addon label/);
  assert.throws(() => parseAddons(Array.from({ length: 65 }, (_, i) => `x${i}`).join(',')), /at most 64/);
  const cfg = configFromArgs([], { CLUSTER_ADDONS: 'image-builder' });
  assert.ok(cfg !== 'help' && cfg.addons?.[0] === 'image-builder');
  const flag = configFromArgs(['--addons', 'x,y'], {});
  assert.ok(flag !== 'help' && flag.addons?.length === 2);
});

test('convergence_time: a RUNNING instance whose preference is unmet moves after that time to a worker that meets it, once', () => {
  const c = new ClusterCore({ reportIntervalMs: 1000, deadAfterMs: 1e9, placeholderGraceMs: 1e9 });
  join(c, 'w1', registration('w1'), 0);
  const a = withSla(assignment('a.a.pref.a', 0), { constraints: [{ type: 'addons', needs: ['image-builder'], rigidness: 0.8, convergence_time: 60 }] });
  assert.deepEqual(placedOn(c.deploy(a, 1)), ['w1']);
  const name = 'a.a.pref.a.instance.0';
  c.jobStatus('w1', { job_name: 'a.a.pref.a', instance_number: 0, status: 'RUNNING', status_detail: '' }, 2);
  c.information('w1', information([name]), 2);
  // a worker with the addon comes: nothing moves before the 60 s are over
  join(c, 'w2', { ...registration('w2'), supported_addons: ['image-builder'] }, 10);
  assert.deepEqual(placedOn(c.tick(30_000)), []);
  const moved = c.tick(61_000);
  assert.deepEqual(placedOn(moved), ['w2']);
  assert.deepEqual(moved.flatMap((e) => (e.type === 'delete' ? [e.worker_id] : [])), ['w1']);
  assert.match(statuses(moved)[0]?.status_detail ?? '', /moved from worker w1 to w2: a preference was unmet there for 60 s \(convergence_time\)/);
  // met now: it stays, however long
  c.jobStatus('w2', { job_name: 'a.a.pref.a', instance_number: 0, status: 'RUNNING', status_detail: '' }, 62_000);
  c.information('w2', information([name]), 62_000);
  c.information('w1', information([]), 62_000);
  assert.deepEqual(placedOn(c.tick(200_000)), []);
  assert.deepEqual(placedOn(c.tick(400_000)), []);
});

test('convergence_time: no better worker, or a hard preference: the instance stays', () => {
  const c = new ClusterCore({ reportIntervalMs: 1000, deadAfterMs: 1e9, placeholderGraceMs: 1e9 });
  join(c, 'w1', registration('w1'), 0);
  join(c, 'w2', registration('w2'), 0);
  const a = withSla(assignment('a.a.p.a', 0), { constraints: [{ type: 'addons', needs: ['none-has-it'], rigidness: 0.5 }] });
  const first = placedOn(c.deploy(a, 1));
  assert.equal(first.length, 1);
  const w = first[0] as string;
  c.jobStatus(w, { job_name: 'a.a.p.a', instance_number: 0, status: 'RUNNING', status_detail: '' }, 2);
  c.information(w, information(['a.a.p.a.instance.0']), 2);
  // default 300 s; no worker meets it: nothing moves
  assert.deepEqual(placedOn(c.tick(301_000)), []);
  assert.deepEqual(placedOn(c.tick(700_000)), []);
});
