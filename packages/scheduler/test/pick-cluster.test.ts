import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClusterDoc } from '@oak/contracts';
import { clusterCandidateOf, parseGeoPoint, pickCluster, type ClusterCandidate, type Placement } from '../src/index.ts';
import { BERLIN, MUNICH, PARIS, cluster, demand, geo, summary } from './helpers.ts';

function target(p: Placement<ClusterCandidate>): string {
  assert.ok(p.ok, p.ok ? '' : `${p.reason}: ${p.detail}`);
  return p.target.id;
}
function failure(p: Placement<ClusterCandidate>) {
  assert.ok(!p.ok, 'expected no placement');
  return p;
}

test('no cluster registered: NoActiveClusterWithCapacity', () => {
  const f = failure(pickCluster(demand(), []));
  assert.equal(f.reason, 'NoActiveClusterWithCapacity');
  assert.match(f.detail, /no cluster is registered/);
});

test('inactive clusters are skipped; all inactive says so', () => {
  assert.equal(target(pickCluster(demand(), [cluster('c1', { active: false }), cluster('c2')])), 'c2');
  const f = failure(pickCluster(demand(), [cluster('c1', { active: false })]));
  assert.equal(f.reason, 'NoActiveClusterWithCapacity');
  assert.match(f.detail, /none of the 1 registered cluster is active/);
});

test('direct cluster by name or id; inactive target: TargetClusterNotActive', () => {
  const cs = [cluster('id1', { name: 'edge' }), cluster('id2', { name: 'cloud' })];
  assert.equal(target(pickCluster(demand({ constraints: [{ type: 'direct', cluster: 'cloud' }] }), cs)), 'id2');
  assert.equal(target(pickCluster(demand({ constraints: [{ type: 'direct', cluster: 'id2' }] }), cs)), 'id2');
  const f = failure(pickCluster(demand({ constraints: [{ type: 'direct', cluster: 'edge' }] }), [cluster('id1', { name: 'edge', active: false }), cs[1] as ClusterCandidate]));
  assert.equal(f.reason, 'TargetClusterNotActive');
  assert.match(f.detail, /cluster edge is not active/);
  const g = failure(pickCluster(demand({ constraints: [{ type: 'direct', cluster: 'fog' }] }), cs));
  assert.equal(g.reason, 'NoClusterMatchesConstraints');
  assert.match(g.detail, /no cluster named 'fog'/);
});

test('direct node: the cluster must have that worker', () => {
  const cs = [cluster('c1', { workers: [summary('a')] }), cluster('c2', { workers: [summary('b', { name: 'bee' })] })];
  assert.equal(target(pickCluster(demand({ constraints: [{ type: 'direct', node: 'bee' }] }), cs)), 'c2');
  assert.equal(target(pickCluster(demand({ constraints: [{ type: 'direct', node: 'b' }] }), cs)), 'c2');
  const f = failure(pickCluster(demand({ constraints: [{ type: 'direct', node: 'zed' }] }), cs));
  assert.equal(f.reason, 'NoClusterMatchesConstraints');
  assert.match(f.detail, /no cluster has a worker named 'zed'/);
  const g = failure(pickCluster(demand({ constraints: [{ type: 'direct', cluster: 'c1', node: 'b' }] }), cs));
  assert.match(g.detail, /cluster c1 has no worker named 'b'/);
  // the named worker is full even though its cluster has room elsewhere
  const full = [cluster('c1', { workers: [summary('a', { cpu_cores_free: 0 }), summary('b')] })];
  const h = failure(pickCluster(demand({ constraints: [{ type: 'direct', node: 'a' }] }), full));
  assert.equal(h.reason, 'NoActiveClusterWithCapacity');
  assert.match(h.detail, /best: a with 0 vcpus/);
});

test('geo: cluster location (with radius) or a worker location within the threshold', () => {
  const cs = [cluster('berlin', { location: parseGeoPoint(BERLIN) }), cluster('munich', { location: parseGeoPoint(MUNICH) })];
  assert.equal(target(pickCluster(demand({ constraints: [geo(MUNICH, 10)] }), cs)), 'munich');
  assert.equal(target(pickCluster(demand({ constraints: [geo(BERLIN, 10)] }), cs)), 'berlin');
  const f = failure(pickCluster(demand({ constraints: [geo(PARIS, 100)] }), cs));
  assert.equal(f.reason, 'NoClusterMatchesConstraints');
  assert.match(f.detail, /no cluster within 100 km of 48.857,2.352 \(nearest: munich at 684 km\)/);
  // a cluster whose area (radius 700 km) reaches Paris
  const wide = [cluster('wide', { location: parseGeoPoint(`${MUNICH},700`) })];
  assert.equal(target(pickCluster(demand({ constraints: [geo(PARIS, 100)] }), wide)), 'wide');
  // no cluster location, but a worker in Paris: only that worker counts
  const mixed = [cluster('c', { workers: [summary('far', { location: BERLIN }), summary('paris', { location: PARIS, cpu_cores_free: 0.5 })] })];
  const g = failure(pickCluster(demand({ constraints: [geo(PARIS, 10)] }), mixed));
  assert.equal(g.reason, 'NoActiveClusterWithCapacity');
  assert.match(g.detail, /best: paris/);
  assert.equal(target(pickCluster(demand({ vcpus: 0.5, constraints: [geo(PARIS, 10)] }), mixed)), 'c');
  assert.match(failure(pickCluster(demand({ constraints: [geo(PARIS, 10)] }), [cluster('x')])).detail, /no cluster has a known location/);
});

test('latency: measured per area, else estimated from the location', () => {
  const cs = [cluster('berlin', { location: parseGeoPoint(BERLIN) }), cluster('munich', { location: parseGeoPoint(MUNICH) })];
  assert.equal(target(pickCluster(demand({ constraints: [{ type: 'latency', location: MUNICH, threshold: 2 }] }), cs)), 'munich');
  const f = failure(pickCluster(demand({ constraints: [{ type: 'latency', location: PARIS, threshold: 5 }] }), cs));
  assert.equal(f.reason, 'NoClusterMatchesConstraints');
  assert.match(f.detail, /within 5 ms of 48.857,2.352 \(lowest: munich, about 7.84 ms\)/);
  const measured = [cluster('a', { latency_ms: { eu: 12 } }), cluster('b', { latency_ms: { eu: 3 } })];
  assert.equal(target(pickCluster(demand({ constraints: [{ type: 'latency', area: 'eu', threshold: 5 }] }), measured)), 'b');
  assert.match(failure(pickCluster(demand({ constraints: [{ type: 'latency', area: 'us', threshold: 5 }] }), measured)).detail, /no cluster has a latency measurement or location for 'us'/);
});

test('virtualization: NoWorkerWithVirtualization lists what clusters offer', () => {
  const f = failure(pickCluster(demand({ virtualization: 'wasm' }), [cluster('c1')]));
  assert.equal(f.reason, 'NoWorkerWithVirtualization');
  assert.match(f.detail, /no active cluster offers wasm \(c1: container\)/);
});

test('aggregate capacity: NoActiveClusterWithCapacity with the best cluster named', () => {
  const cs = [cluster('c1', { workers: [summary('w', { cpu_cores_free: 1, memory_free_mb: 300 })] }), cluster('c2', { workers: [summary('v', { cpu_cores_free: 0.25, memory_free_mb: 100 })] })];
  const f = failure(pickCluster(demand({ vcpus: 2, memory_mb: 512 }), cs));
  assert.equal(f.reason, 'NoActiveClusterWithCapacity');
  assert.equal(f.detail, 'needs 2 vcpus, 512 MB; best cluster c1 has 1 vcpu, 300 MB free');
});

test('4 free cores over 4 workers do not hold a 2-core instance', () => {
  const c = cluster('c1', { workers: ['a', 'b', 'c', 'd'].map((id) => summary(id, { cpu_cores_free: 1 })) });
  assert.equal(c.cpu_cores_free, 4);
  const f = failure(pickCluster(demand({ vcpus: 2 }), [c]));
  assert.equal(f.reason, 'NoActiveClusterWithCapacity');
  assert.match(f.detail, /4 vcpus, 16384 MB free in total but no single worker holds it/);
  assert.equal(target(pickCluster(demand({ vcpus: 1 }), [c])), 'c1');
});

test('the single worker must support the virtualization too', () => {
  const c = cluster('c1', { workers: [summary('a', { virtualizations: ['wasm'], cpu_cores_free: 0.1 }), summary('b', { virtualizations: ['container'] })] });
  const f = failure(pickCluster(demand({ virtualization: 'wasm', vcpus: 1 }), [c]));
  assert.equal(f.reason, 'NoActiveClusterWithCapacity');
  assert.match(f.detail, /best: a/);
});

test('best fit, then fewer instances of the same job, then id', () => {
  const small = cluster('small', { workers: [summary('s', { cpu_cores_free: 2, memory_free_mb: 1024 })] });
  const big = cluster('big', { workers: [summary('b', { cpu_cores_free: 16, memory_free_mb: 65536 })] });
  assert.equal(target(pickCluster(demand(), [big, small])), 'small');
  assert.equal(target(pickCluster(demand(), [big, small], { strategy: 'least-loaded' })), 'big');
  const twinA = cluster('a', { jobs: ['app.ns.svc.ns'] });
  const twinB = cluster('b');
  assert.equal(target(pickCluster(demand(), [twinA, twinB])), 'b');
  assert.equal(target(pickCluster(demand(), [cluster('y'), cluster('x')])), 'x');
  assert.equal(target(pickCluster(demand(), [twinA, twinB, small], { strategy: 'spread' })), 'b');
});

test('clusterCandidateOf reads a cluster document', () => {
  const doc: ClusterDoc = {
    _id: 'c1',
    cluster_name: 'edge',
    cluster_location: '48.1,11.5,30',
    status: 'ACTIVE',
    last_seen: null,
    created_at: '',
    resources: { cpu_cores_free: 2, cpu_cores_total: 4, memory_free_mb: 100, memory_total_mb: 200, gpus_free: 0, virtualizations: ['container'], workers: 1, worker_summary: [summary('w')] },
  };
  const c = clusterCandidateOf(doc, ['j']);
  assert.deepEqual(c.location, { lat: 48.1, long: 11.5, radius_km: 30 });
  assert.equal(c.active, true);
  assert.equal(c.workers.length, 1);
  const none = clusterCandidateOf({ ...doc, resources: null, status: 'INACTIVE', cluster_location: 'Munich' });
  assert.equal(none.location, null);
  assert.equal(none.cpu_cores_free, 0);
  assert.equal(none.active, false);
});

test('arch: only a cluster with a worker of a listed architecture (that also holds the instance)', () => {
  const cs = [
    cluster('c1', { workers: [summary('c1-w1', { arch: 'amd64' })] }),
    cluster('c2', { workers: [summary('c2-w1', { arch: 'arm64', cpu_cores_free: 0.5 }), summary('c2-w2', { arch: 'amd64' })] }),
    cluster('c3', { workers: [summary('c3-w1')] }),
  ];
  // c2's arm64 worker is too small: the arm64 instance finds no place
  const f = pickCluster(demand({ arch: ['aarch64'] }), cs);
  assert.ok(!f.ok);
  assert.match(f.detail, /no single worker holds it \(best: c2-w1 /, 'the closest worker is the arm64 one');
  const none = pickCluster(demand({ arch: ['riscv64'] }), cs);
  assert.ok(!none.ok);
  assert.match(none.detail, /supports container on riscv64/);
  const big = cs.map((c) => (c.id === 'c2' ? cluster('c2', { workers: [summary('c2-w1', { arch: 'arm64' })] }) : c));
  const p = pickCluster(demand({ arch: ['arm64'] }), big);
  assert.ok(p.ok && p.target.id === 'c2', JSON.stringify(p));
  // a cluster whose workers report no architecture never gets a service that lists one
  const q = pickCluster(demand({ arch: ['amd64'] }), [cs[2] as ClusterCandidate]);
  assert.ok(!q.ok);
});
