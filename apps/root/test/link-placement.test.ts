import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ClusterResources } from '@oak/contracts';
import { demandOf, pickCluster, reserveCluster } from '@oak/scheduler';
import type { ClusterRow, InstanceRow, ServiceRow } from '@oak/store';
import { assignmentOf, clusterCandidates, holdsCluster } from '../src/placement.ts';
import { RootReservations, reservationKey } from '../src/reconcile/accounting.ts';
import { tokenMatches } from '../src/link/server.ts';

function resources(cpu: number, mem: number, workers = 1): ClusterResources {
  return {
    cpu_cores_free: cpu,
    cpu_cores_total: cpu,
    memory_free_mb: mem,
    memory_total_mb: mem,
    gpus_free: 0,
    virtualizations: ['container'],
    workers,
    worker_summary: Array.from({ length: workers }, (_, i) => ({ id: `w${i}`, name: `w${i}`, cpu_cores_free: cpu / workers, memory_free_mb: mem / workers, virtualizations: ['container' as const] })),
  };
}

function clusterRow(id: string, r: ClusterResources | null): ClusterRow {
  return { id, name: id, location: null, status: 'ACTIVE', last_seen: null, resources: r, created_at: '2025-01-01T00:00:00.000Z' };
}

const svc: ServiceRow = {
  id: 's1',
  application_id: 'a1',
  organization_id: 'o1',
  user_id: 'u1',
  job_name: 'a.b.c.d',
  name: 'c',
  namespace: 'd',
  sla: { microservice_name: 'c', microservice_namespace: 'd', virtualization: 'container', code: 'x', vcpus: 2, memory: 100 },
  created_at: '2025-01-01T00:00:00.000Z',
  updated_at: '2025-01-01T00:00:00.000Z',
  service_ip: null,
  service_ip_v6: null,
  closest_ip: null,
  closest_ip_v6: null,
  version: 1,
  next_instance: 0,
};

function row(patch: Partial<InstanceRow> = {}): InstanceRow {
  return {
    service_id: 's1',
    instance_number: 0,
    status: 'CLUSTER_SCHEDULED',
    status_detail: '',
    cluster_id: 'c1',
    worker_id: null,
    publicip: null,
    instance_ip: null,
    instance_ip_v6: null,
    net: null,
    created_at: '2025-01-01T00:00:00.000Z',
    updated_at: '2025-01-01T00:00:00.000Z',
    service_version: 1,
    desired: 'run',
    epoch: 0,
    replaces: null,
    status_at: '2025-01-01T00:00:00.000Z',
    last_cluster_id: null,
    lost_at: null,
    health: null,
    restarts: 0,
    ...patch,
  };
}

test('candidates: only connected clusters are active; a cluster without an aggregate has no capacity', () => {
  const rows = [clusterRow('c1', resources(4, 4096)), clusterRow('c2', null), clusterRow('c3', resources(8, 8192))];
  const cands = clusterCandidates(rows, (id) => id !== 'c3', new Map([['c1', ['a.b.c.d']]]));
  assert.deepEqual(cands.map((c) => [c.id, c.active, c.cpu_cores_free, c.jobs]), [['c1', true, 4, ['a.b.c.d']], ['c2', true, 0, []], ['c3', false, 8, []]]);
  const d = demandOf(svc.sla, svc.job_name);
  const r = pickCluster(d, cands);
  assert.ok(r.ok && r.target.id === 'c1');
  const none = pickCluster(d, clusterCandidates([rows[2] as ClusterRow], () => false, new Map()));
  assert.ok(!none.ok && none.reason === 'NoActiveClusterWithCapacity');
});

test('reservations subtract at once and settle with a later aggregate', () => {
  const res = new RootReservations();
  const d = demandOf(svc.sla, svc.job_name);
  const base = clusterCandidates([clusterRow('c1', resources(4, 4096))], () => true, new Map());
  res.reserve('k1', 'c1', d, 1000);
  res.reserve('k2', 'c1', d, 1900);
  assert.equal(res.apply(base)[0]?.cpu_cores_free, 0);
  assert.ok(!pickCluster(d, res.apply(base)).ok, 'full after two reservations');
  // an aggregate at t=2500 includes what was placed at least 1000 ms earlier, not the fresh one
  assert.equal(res.settle('c1', 2500, 1000), 1);
  assert.equal(res.apply(base)[0]?.cpu_cores_free, 2);
  res.release('k2');
  assert.equal(res.size, 0);
  res.reserve('k3', 'c1', d, 0);
  res.forgetCluster('c1');
  assert.equal(res.size, 0);
});

test('holdsCluster, reservationKey, assignmentOf', () => {
  assert.ok(holdsCluster('CLUSTER_SCHEDULED') && holdsCluster('RUNNING') && holdsCluster('DEAD'));
  assert.ok(!holdsCluster('REQUESTED') && !holdsCluster('FAILED') && !holdsCluster('UNDEPLOYED') && !holdsCluster('COMPLETED'));
  assert.equal(reservationKey('s1', 3), 's1/3', 'numbers are never reused: service and number name an instance');
  const a = assignmentOf(svc, row({ worker_id: 'w9' }));
  assert.deepEqual([a.microserviceID, a.job_name, a.instance_number, a.worker_id, a.service.microserviceID, a.service.vcpus], ['s1', 'a.b.c.d', 0, 'w9', 's1', 2]);
});

test('tokenMatches: exact, never empty', () => {
  assert.ok(tokenMatches('abc', 'abc'));
  assert.ok(!tokenMatches('abc', 'abd'));
  assert.ok(!tokenMatches('abc', ''));
  assert.ok(!tokenMatches('', ''));
});

test('reservations: apply() is reserveCluster() of every reservation in turn, and leaves its input alone', () => {
  // clusters of a few workers with GPUs on some, demands of cores, memory and GPUs on two jobs
  const clusterArb = fc.record({
    workers: fc.array(fc.record({ cpu: fc.integer({ min: 0, max: 8 }), mem: fc.integer({ min: 0, max: 4096 }), gpus: fc.option(fc.integer({ min: 0, max: 2 }), { nil: undefined }) }), { minLength: 1, maxLength: 5 }),
  });
  const demandArb = fc.record({ cluster: fc.integer({ min: 0, max: 2 }), vcpus: fc.integer({ min: 0, max: 4 }), memory: fc.integer({ min: 0, max: 2048 }), vgpus: fc.integer({ min: 0, max: 1 }), job: fc.constantFrom('a.b.c.d', 'e.f.g.h') });
  fc.assert(
    fc.property(fc.array(clusterArb, { minLength: 1, maxLength: 3 }), fc.array(demandArb, { maxLength: 12 }), (cs, ds) => {
      const rows = cs.map((c, i) => {
        const r = resources(0, 0, 0);
        // some names are another worker's id: a reference matches by id or by name, both are adjusted
        r.worker_summary = c.workers.map((w, k) => ({ id: `c${i}w${k}`, name: k % 2 === 0 ? `n${k}` : `c${i}w${(k + 1) % c.workers.length}`, cpu_cores_free: w.cpu, memory_free_mb: w.mem, virtualizations: ['container' as const], ...(w.gpus !== undefined ? { gpus_free: w.gpus } : {}) }));
        r.workers = c.workers.length;
        r.cpu_cores_free = r.cpu_cores_total = c.workers.reduce((s, w) => s + w.cpu, 0);
        r.memory_free_mb = r.memory_total_mb = c.workers.reduce((s, w) => s + w.mem, 0);
        r.gpus_free = c.workers.reduce((s, w) => s + (w.gpus ?? 0), 0);
        return clusterRow(`c${i}`, r);
      });
      const base = clusterCandidates(rows, () => true, new Map([['c0', ['a.b.c.d']]]));
      const before = structuredClone(base);
      const res = new RootReservations();
      let expected = base;
      ds.forEach((x, k) => {
        const d = demandOf({ ...svc.sla, vcpus: x.vcpus, memory: x.memory, vgpus: x.vgpus }, x.job);
        // a reservation for a cluster that is not a candidate (removed meanwhile) changes nothing
        const id = `c${x.cluster}`;
        res.reserve(`k${k}`, id, d, 0);
        expected = expected.map((c) => (c.id === id ? reserveCluster(c, d) : c));
      });
      assert.deepEqual(res.apply(base), expected);
      assert.deepEqual(base, before, 'the candidates given are not changed');
    }),
    { numRuns: 300 },
  );
});
