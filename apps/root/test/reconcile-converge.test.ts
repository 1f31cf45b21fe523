/**
 * convergence_time across clusters (issue 12 point 4) in the root's pure reconciler: an instance
 * running on a cluster that leaves a preference unmet is moved to a cluster that meets more of
 * them once the convergence time has passed, with the reason in its history; never before, never
 * against a hard constraint, one instance per pass, and never back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Constraint, Microservice } from '@oak/contracts';
import type { ClusterCandidate } from '@oak/scheduler';
import type { InstanceRow, ServiceRow } from '@oak/store';
import { CONVERGENCE_DEFAULT_S, convergenceWindowMs, defaultReconcileConfig, reconcile } from '../src/reconcile/core.ts';
import type { Action, ClusterView, Plan } from '../src/reconcile/types.ts';
import { demandOf, parseGeoPoint } from '@oak/scheduler';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const JOB = 'app.ns.web.ns';
const iso = (t: number): string => new Date(t).toISOString();
const MUNICH = '48.1351,11.5820';
const BERLIN = '52.5200,13.4050';

function sla(constraints: Constraint[], patch: Partial<Microservice> = {}): Microservice {
  return { microservice_name: 'web', microservice_namespace: 'ns', virtualization: 'container', code: 'nginx:1', vcpus: 1, memory: 100, constraints, ...patch };
}

function service(s: Microservice): ServiceRow {
  return {
    id: 'svc', application_id: 'app', organization_id: 'org', user_id: 'u', job_name: JOB, name: 'web', namespace: 'ns', sla: s,
    created_at: iso(T0), updated_at: iso(T0), service_ip: null, service_ip_v6: null, closest_ip: null, closest_ip_v6: null, version: 1, next_instance: 9,
  };
}

function running(n: number, cluster: string | null, since = T0, status: InstanceRow['status'] = 'RUNNING'): InstanceRow {
  return {
    service_id: 'svc', instance_number: n, status, status_detail: '', cluster_id: cluster, worker_id: cluster === null ? null : `w-${cluster}`, publicip: null,
    instance_ip: null, created_at: iso(T0), updated_at: iso(since), instance_ip_v6: null, net: null, service_version: 1, desired: 'run', epoch: 1,
    replaces: null, status_at: iso(since), last_cluster_id: null, lost_at: null, health: null, restarts: 0,
  };
}

interface Spec { id: string; location?: string | null; cpu?: number; connected?: boolean; active?: boolean; virtualizations?: string[] }

function view(c: Spec): ClusterView {
  const cpu = c.cpu ?? 8;
  const candidate: ClusterCandidate = {
    id: c.id, name: `cluster-${c.id}`, active: c.active ?? true, location: c.location ? (parseGeoPoint(c.location) ?? null) : null, cpu_cores_free: cpu, memory_free_mb: 8192, gpus_free: 0,
    virtualizations: (c.virtualizations ?? ['container']) as ClusterCandidate['virtualizations'],
    workers: [{ id: `w-${c.id}`, name: `w-${c.id}`, cpu_cores_free: cpu, memory_free_mb: 8192, virtualizations: (c.virtualizations ?? ['container']) as ClusterCandidate['virtualizations'] }],
    jobs: [],
  };
  return { id: c.id, name: `cluster-${c.id}`, connected: c.connected ?? true, candidate };
}

function plan(s: Microservice, rows: InstanceRow[], clusters: Spec[], now: number): Plan {
  const svc = service(s);
  return reconcile({
    service: svc,
    versions: [{ service_id: 'svc', version: 1, sla: s, fingerprint: JSON.stringify(s), created_at: iso(T0), created_by: null, reason: 'created', outcome: null }],
    instances: rows,
    clusters: clusters.map(view),
    sent: new Map(),
    now,
    config: defaultReconcileConfig,
  });
}

const kinds = (p: Plan): string[] => p.actions.map((a) => `${a.kind}${'instance' in a ? ` ${a.instance}` : ''}${a.kind === 'place' ? ` on ${a.cluster_id}` : ''}`);
const prefB: Constraint = { type: 'direct', cluster: 'cluster-B', rigidness: 0.5, convergence_time: 60 };

test('the window: the smallest convergence_time of the preferences, 300 s by default, none for hard constraints only', () => {
  const d = (cs: Constraint[]) => convergenceWindowMs(demandOf(sla(cs), JOB));
  assert.equal(d([prefB]), 60_000);
  assert.equal(d([{ type: 'direct', cluster: 'x', rigidness: 0.4 }]), CONVERGENCE_DEFAULT_S * 1000);
  assert.equal(d([prefB, { type: 'geo', location: MUNICH, threshold: 50, rigidness: 0.9, convergence_time: 20 }]), 20_000);
  assert.equal(d([{ type: 'direct', cluster: 'cluster-B' }]), undefined);
  assert.equal(d([{ type: 'direct', cluster: 'cluster-B', rigidness: 1, convergence_time: 5 }]), undefined);
  assert.equal(d([]), undefined);
});

test('a direct cluster preference unmet on A: nothing before convergence_time (a pass is asked for then); after it the instance moves to B, reason in its history', () => {
  const s = sla([prefB]);
  const rows = [running(0, 'A')];
  const early = plan(s, rows, [{ id: 'A' }, { id: 'B' }], T0 + 59_000);
  assert.deepEqual(early.actions, []);
  assert.equal(early.next_at, T0 + 60_000, 'the reconciler looks again when the window ends');
  const late = plan(s, rows, [{ id: 'A' }, { id: 'B' }], T0 + 60_000);
  assert.deepEqual(kinds(late), ['requeue 0', 'place 0 on B']);
  const rq = late.actions[0] as Extract<Action, { kind: 'requeue' }>;
  assert.equal(rq.from_cluster, 'A');
  assert.equal(rq.lost, false);
  assert.match(rq.reason, /^moved to cluster cluster-B: on cluster cluster-A the preference .*cluster-B.* was unmet for 60 s \(convergence_time 60 s\)$/);
});

test('a geo preference met only by the other cluster moves the instance there; a latency area preference likewise', () => {
  const geo = sla([{ type: 'geo', location: MUNICH, threshold: 100, rigidness: 0.8, convergence_time: 30 }]);
  const clusters = [{ id: 'A', location: BERLIN }, { id: 'B', location: '48.20,11.60' }];
  assert.deepEqual(kinds(plan(geo, [running(0, 'A')], clusters, T0 + 30_000)), ['requeue 0', 'place 0 on B']);
  // already on the cluster that meets it: nothing, and no pass asked for
  const stay = plan(geo, [running(0, 'B')], clusters, T0 + 999_000);
  assert.deepEqual(stay.actions, []);
  assert.equal(stay.next_at, undefined);
  const lat = sla([{ type: 'latency', location: MUNICH, threshold: 3, rigidness: 0.6, convergence_time: 30 }]);
  assert.deepEqual(kinds(plan(lat, [running(0, 'A')], clusters, T0 + 30_000)), ['requeue 0', 'place 0 on B']);
});

test('nowhere better: no move, a look again one window later; a better cluster that breaks a hard constraint, is full, inactive or away is no target', () => {
  const s = sla([prefB]);
  const none = plan(s, [running(0, 'A')], [{ id: 'A' }, { id: 'C' }], T0 + 61_000);
  assert.deepEqual(none.actions, []);
  assert.equal(none.next_at, T0 + 61_000 + 60_000);
  for (const b of [{ id: 'B', cpu: 0 }, { id: 'B', active: false }, { id: 'B', connected: false }, { id: 'B', virtualizations: ['wasm'] }] as Spec[]) {
    assert.deepEqual(plan(s, [running(0, 'A')], [{ id: 'A' }, b], T0 + 61_000).actions, [], JSON.stringify(b));
  }
  // hard: only clusters A or C allowed; the preference for B can then never pull it there
  const hard = sla([prefB, { type: 'clusters', allowed: ['cluster-A', 'cluster-C'] } as Constraint]);
  assert.deepEqual(plan(hard, [running(0, 'A')], [{ id: 'A' }, { id: 'B' }, { id: 'C' }], T0 + 61_000).actions, []);
});

test('one instance per pass, and only while every instance runs: replicas move one at a time', () => {
  const s = sla([prefB]);
  const two = plan(s, [running(0, 'A'), running(1, 'A')], [{ id: 'A' }, { id: 'B' }], T0 + 60_000);
  assert.deepEqual(kinds(two), ['requeue 0', 'place 0 on B']);
  // instance 0 is on its way (CLUSTER_SCHEDULED on B): instance 1 waits
  const moving = plan(s, [running(0, 'B', T0 + 60_000, 'CLUSTER_SCHEDULED'), running(1, 'A')], [{ id: 'A' }, { id: 'B' }], T0 + 61_000);
  assert.deepEqual(moving.actions.filter((a) => a.kind === 'requeue' && a.instance === 1), []);
  // once it runs there, instance 1 follows
  const next = plan(s, [running(0, 'B', T0 + 62_000), running(1, 'A')], [{ id: 'A' }, { id: 'B' }], T0 + 63_000);
  assert.deepEqual(kinds(next), ['requeue 1', 'place 1 on B']);
});

test('property: a move always lowers the unmet preference weight, so after it no pass moves the instance again', () => {
  const locs = [MUNICH, BERLIN, '48.20,11.60', '50.11,8.68', null];
  fc.assert(fc.property(
    fc.array(fc.constantFrom(...locs), { minLength: 2, maxLength: 4 }),
    fc.integer({ min: 0, max: 3 }),
    fc.double({ min: 0.05, max: 0.95, noNaN: true }),
    fc.integer({ min: 10, max: 5000 }),
    (clusterLocs, at, rig, km) => {
      const specs: Spec[] = clusterLocs.map((location, i) => ({ id: String.fromCharCode(65 + i), location }));
      const start = specs[at % specs.length] as Spec;
      const s = sla([{ type: 'geo', location: MUNICH, threshold: km, rigidness: rig, convergence_time: 10 }]);
      let rows = [running(0, start.id)];
      let now = T0 + 10_000;
      const visited = [start.id];
      for (let i = 0; i < 4; i++) {
        const p = plan(s, rows, specs, now);
        const placed = p.actions.find((a): a is Extract<Action, { kind: 'place' }> => a.kind === 'place');
        if (!placed) break;
        visited.push(placed.cluster_id);
        now += 20_000;
        rows = [running(0, placed.cluster_id, now - 10_000)];
      }
      assert.ok(visited.length <= 2, `moved at most once: ${visited.join(' -> ')}`);
      assert.equal(new Set(visited).size, visited.length, 'never back');
    },
  ), { numRuns: 300 });
});
