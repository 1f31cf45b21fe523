import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseGeoPoint, pickWorker, type Placement, type WorkerCandidate } from '../src/index.ts';
import { BERLIN, MUNICH, PARIS, demand, geo, worker } from './helpers.ts';

function target(p: Placement<WorkerCandidate>): string {
  assert.ok(p.ok, p.ok ? '' : `${p.reason}: ${p.detail}`);
  return p.target.id;
}
function failure(p: Placement<WorkerCandidate>) {
  assert.ok(!p.ok, 'expected no placement');
  return p;
}

test('no workers: NO_WORKER_CAPACITY', () => {
  const f = failure(pickWorker(demand(), []));
  assert.equal(f.reason, 'NO_WORKER_CAPACITY');
  assert.match(f.detail, /no workers/);
});

test('virtualization filter: NoWorkerWithVirtualization names what is offered', () => {
  const ws = [worker('w1'), worker('w2', { virtualizations: ['process'] })];
  const f = failure(pickWorker(demand({ virtualization: 'wasm' }), ws));
  assert.equal(f.reason, 'NoWorkerWithVirtualization');
  assert.match(f.detail, /no worker supports wasm .*container, process/);
  assert.equal(target(pickWorker(demand({ virtualization: 'process' }), ws)), 'w2');
});

test('arch filter: only workers of a listed architecture; the reason names what they offer', () => {
  const ws = [worker('w1', { arch: 'amd64' }), worker('w2', { arch: 'arm64' }), worker('w3')];
  assert.equal(target(pickWorker(demand({ arch: ['aarch64'] }), ws)), 'w2', 'aarch64 is arm64');
  assert.equal(target(pickWorker(demand({ arch: ['x86_64', 'riscv64'] }), ws)), 'w1');
  const f = failure(pickWorker(demand({ arch: ['riscv64'] }), ws));
  assert.equal(f.reason, 'NoWorkerWithVirtualization');
  assert.match(f.detail, /no worker supports container on riscv64 \(3 workers offer: container on amd64, container on an unknown architecture, container on arm64\)/);
  // without an arch list a worker that reported none is as good as any
  assert.ok(pickWorker(demand({ arch: [] }), [worker('w3')]).ok);
  const named = failure(pickWorker(demand({ arch: ['arm64'], constraints: [{ type: 'direct', node: 'w1' }] }), ws));
  assert.match(named.detail, /worker w1 does not support container on arm64/);
});

test('capacity filter: NO_WORKER_CAPACITY with the closest worker in the detail', () => {
  const ws = [worker('w1', { cpu_cores_free: 1, memory_free_mb: 300 }), worker('w2', { cpu_cores_free: 0.5, memory_free_mb: 100 })];
  const f = failure(pickWorker(demand({ vcpus: 2, memory_mb: 512 }), ws));
  assert.equal(f.reason, 'NO_WORKER_CAPACITY');
  assert.equal(f.detail, 'needs 2 vcpus, 512 MB; best worker w1 has 1 vcpu, 300 MB free');
});

test('GPUs are checked and named when asked for', () => {
  const ws = [worker('w1'), worker('w2', { gpus_free: 1 })];
  assert.equal(target(pickWorker(demand({ gpus: 1 }), ws)), 'w2');
  const f = failure(pickWorker(demand({ gpus: 2 }), ws));
  assert.equal(f.reason, 'NO_WORKER_CAPACITY');
  assert.match(f.detail, /2 GPUs/);
});

test('direct node constraint by name or id', () => {
  const ws = [worker('id1', { name: 'alpha' }), worker('id2', { name: 'beta', cpu_percent: 90 })];
  assert.equal(target(pickWorker(demand({ constraints: [{ type: 'direct', node: 'beta' }] }), ws)), 'id2');
  assert.equal(target(pickWorker(demand({ constraints: [{ type: 'direct', node: 'id2' }] }), ws)), 'id2');
  // the cluster part of a direct constraint was the root's business
  assert.equal(target(pickWorker(demand({ constraints: [{ type: 'direct', cluster: 'c1', node: 'beta' }] }), ws)), 'id2');
  const f = failure(pickWorker(demand({ constraints: [{ type: 'direct', node: 'gamma' }] }), ws));
  assert.equal(f.reason, 'NoWorkerMatchesConstraints');
  assert.match(f.detail, /no worker named 'gamma'/);
});

test('direct node that is full: NO_WORKER_CAPACITY, not another worker', () => {
  const ws = [worker('w1', { cpu_cores_free: 0 }), worker('w2')];
  const f = failure(pickWorker(demand({ constraints: [{ type: 'direct', node: 'w1' }] }), ws));
  assert.equal(f.reason, 'NO_WORKER_CAPACITY');
  assert.match(f.detail, /best worker w1/);
});

test('direct node without the virtualization says so', () => {
  const ws = [worker('w1', { virtualizations: ['process'] }), worker('w2', { virtualizations: ['wasm'] })];
  const f = failure(pickWorker(demand({ virtualization: 'wasm', constraints: [{ type: 'direct', node: 'w1' }] }), ws));
  assert.equal(f.reason, 'NoWorkerMatchesConstraints');
  assert.match(f.detail, /w1 does not support wasm/);
});

test('geo constraint on worker locations, falling back to the cluster location', () => {
  const ws = [worker('berlin', { location: parseGeoPoint(BERLIN) }), worker('munich', { location: parseGeoPoint(MUNICH), cpu_percent: 90 })];
  assert.equal(target(pickWorker(demand({ constraints: [geo(MUNICH, 50)] }), ws)), 'munich');
  const f = failure(pickWorker(demand({ constraints: [geo(PARIS, 100)] }), ws));
  assert.equal(f.reason, 'NoWorkerMatchesConstraints');
  assert.match(f.detail, /no container worker within 100 km of 48.857,2.352 \(nearest: munich at \d+ km\)/);
  const nowhere = [worker('w1')];
  assert.match(failure(pickWorker(demand({ constraints: [geo(MUNICH, 50)] }), nowhere)).detail, /no container worker has a known location/);
  assert.equal(target(pickWorker(demand({ constraints: [geo(MUNICH, 50)] }), nowhere, { clusterLocation: parseGeoPoint(MUNICH) })), 'w1');
});

test('unreadable geo location is a constraint failure that says so', () => {
  const f = failure(pickWorker(demand({ constraints: [geo('Munich', 50)] }), [worker('w1', { location: parseGeoPoint(MUNICH) })]));
  assert.equal(f.reason, 'NoWorkerMatchesConstraints');
  assert.match(f.detail, /cannot read geo location 'Munich'/);
});

test('latency: a measurement wins over the estimate', () => {
  const m = parseGeoPoint(MUNICH);
  const ws = [worker('far', { location: parseGeoPoint(BERLIN) }), worker('near', { location: m, cpu_percent: 80 })];
  // Berlin is ~504 km from Munich: ~6 ms estimated; Munich itself 1 ms.
  assert.equal(target(pickWorker(demand({ constraints: [{ type: 'latency', location: MUNICH, threshold: 3 }] }), ws)), 'near');
  assert.equal(target(pickWorker(demand({ constraints: [{ type: 'latency', location: MUNICH, threshold: 7 }] }), ws)), 'far');
  const measured = [worker('far', { location: parseGeoPoint(BERLIN), latency_ms: { [MUNICH]: 2 } }), worker('near', { location: m, cpu_percent: 80, latency_ms: { [MUNICH]: 20 } })];
  assert.equal(target(pickWorker(demand({ constraints: [{ type: 'latency', location: MUNICH, threshold: 3 }] }), measured)), 'far');
  const byArea = [worker('w1', { latency_ms: { eu: 4 } })];
  assert.equal(target(pickWorker(demand({ constraints: [{ type: 'latency', area: 'eu', threshold: 5 }] }), byArea)), 'w1');
  const f = failure(pickWorker(demand({ constraints: [{ type: 'latency', area: 'eu', threshold: 3 }] }), byArea));
  assert.equal(f.reason, 'NoWorkerMatchesConstraints');
  assert.match(f.detail, /within 3 ms of eu \(lowest: w1 at 4 ms\)/);
  assert.match(failure(pickWorker(demand({ constraints: [{ type: 'latency', area: 'us', threshold: 3 }] }), byArea)).detail, /no container worker has a latency measurement or location for 'us'/);
});

test('constraints satisfiable alone but not together', () => {
  const ws = [worker('w1', { location: parseGeoPoint(MUNICH) }), worker('w2', { location: parseGeoPoint(BERLIN) })];
  const f = failure(pickWorker(demand({ constraints: [geo(MUNICH, 50), { type: 'direct', node: 'w2' }] }), ws));
  assert.equal(f.reason, 'NoWorkerMatchesConstraints');
});

test('least-loaded (default) picks the lowest load; reservations count as load', () => {
  const ws = [worker('busy', { cpu_percent: 80 }), worker('idle', { cpu_percent: 5 }), worker('reserved', { cpu_percent: 0, cpu_cores_free: 1 })];
  assert.equal(target(pickWorker(demand(), ws)), 'idle');
});

test('best-fit picks the tightest fit', () => {
  const ws = [worker('big', { cpu_cores_free: 4 }), worker('tight', { cpu_cores_free: 1.5, memory_free_mb: 512 }), worker('small', { cpu_cores_free: 0.5 })];
  assert.equal(target(pickWorker(demand(), ws, { strategy: 'best-fit' })), 'tight');
});

test('spread picks the worker with the fewest instances', () => {
  const ws = [worker('w1', { jobs: ['x', 'y'], cpu_percent: 0 }), worker('w2', { jobs: ['z'], cpu_percent: 50 })];
  assert.equal(target(pickWorker(demand(), ws, { strategy: 'spread' })), 'w2');
});

test('anti-affinity beats every strategy; stacking only when nothing else fits', () => {
  const job = 'app.ns.svc.ns';
  const ws = [worker('has', { jobs: [job], cpu_percent: 0 }), worker('hasnt', { cpu_percent: 95 })];
  for (const strategy of ['least-loaded', 'best-fit', 'spread'] as const) {
    assert.equal(target(pickWorker(demand(), ws, { strategy })), 'hasnt', strategy);
  }
  const full = [worker('has', { jobs: [job] }), worker('hasnt', { cpu_cores_free: 0 })];
  assert.equal(target(pickWorker(demand(), full)), 'has');
});

test('ties break by id, whatever the order', () => {
  const ws = [worker('b'), worker('a'), worker('c')];
  assert.equal(target(pickWorker(demand(), ws)), 'a');
  assert.equal(target(pickWorker(demand(), [...ws].reverse())), 'a');
});

test('fractional vcpus fit exactly despite float rounding', () => {
  const w = worker('w', { cpu_cores_free: 0.1 + 0.2 });
  assert.equal(target(pickWorker(demand({ vcpus: 0.3 }), [w])), 'w');
});
