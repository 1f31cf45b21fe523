import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClusterResources } from '@oak/contracts';
import { demandOf, pickCluster } from '@oak/scheduler';
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
