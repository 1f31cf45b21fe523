/** clusters, addons, rigidness and connectivity in pickCluster and pickWorker: examples with their reasons and warnings. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { demandOf, pickCluster, pickWorker, rttLookupOf, type RttLookup } from '../src/index.ts';
import { cluster, demand, summary, worker } from './helpers.ts';

const rtt = (pairs: Record<string, number>): RttLookup => (a, b) => pairs[`${a}-${b}`] ?? pairs[`${b}-${a}`];

test('clusters.allowed: only the named clusters; the reason names the list', () => {
  const cs = [cluster('c1'), cluster('c2'), cluster('c3')];
  const p = pickCluster(demand({ constraints: [{ type: 'clusters', allowed: ['c3', 'c2'] }] }), [cs[0]!, cs[2]!]);
  assert.ok(p.ok && p.target.id === 'c3');
  const none = pickCluster(demand({ constraints: [{ type: 'clusters', allowed: ['east', 'west'] }] }), cs);
  assert.equal(none.ok, false);
  if (!none.ok) {
    assert.equal(none.reason, 'NoClusterMatchesConstraints');
    assert.match(none.detail, /allowed list east, west/);
  }
});

test('addons: a worker offers its own labels plus its cluster\'s; the reason lists what is offered', () => {
  const d = demand({ constraints: [{ type: 'addons', needs: ['image-builder', 'gpu-drv'] }] });
  const ws = [worker('a', { supported_addons: ['image-builder'] }), worker('b', { supported_addons: ['image-builder', 'gpu-drv'], cpu_percent: 90 })];
  const p = pickWorker(d, ws);
  assert.ok(p.ok && p.target.id === 'b');
  const viaCluster = pickWorker(d, [ws[0]!], { clusterAddons: ['gpu-drv'] });
  assert.ok(viaCluster.ok && viaCluster.target.id === 'a');
  const none = pickWorker(d, [ws[0]!]);
  assert.equal(none.ok, false);
  if (!none.ok) assert.match(none.detail, /addons image-builder, gpu-drv \(offered here: image-builder\)/);
  // the root: the cluster's summary (with the cluster-wide addons) must have one such worker
  const c1 = cluster('c1', { workers: [summary('x', { supported_addons: ['image-builder'] })] });
  const c2 = cluster('c2', { workers: [summary('y', { supported_addons: ['image-builder'] })], supported_addons: ['gpu-drv'] });
  const pc = pickCluster(d, [c1, c2]);
  assert.ok(pc.ok && pc.target.id === 'c2');
  const nc = pickCluster(d, [c1]);
  assert.ok(!nc.ok && /offers the addons image-builder, gpu-drv/.test(nc.detail));
});

test('rigidness below 1: a preference ranks first but never excludes; unmet ones are warnings', () => {
  const ws = [worker('a', { cpu_percent: 0 }), worker('b', { cpu_percent: 90 })];
  const prefer = demand({ constraints: [{ type: 'direct', node: 'b', rigidness: 0.6 }] });
  const p = pickWorker(prefer, ws);
  assert.ok(p.ok && p.target.id === 'b' && p.warnings === undefined);
  const missing = demand({ constraints: [{ type: 'direct', node: 'zz', rigidness: 0.6 }] });
  const q = pickWorker(missing, ws);
  assert.ok(q.ok && q.target.id === 'a');
  assert.deepEqual(q.ok ? q.warnings : [], ['preference unmet: direct node zz (rigidness 0.6)']);
  // heavier preference wins over a lighter one
  const two = demand({ constraints: [{ type: 'direct', node: 'a', rigidness: 0.3 }, { type: 'addons', needs: ['x'], rigidness: 0.8 }] });
  const r = pickWorker(two, [ws[0]!, worker('b', { supported_addons: ['x'] })]);
  assert.ok(r.ok && r.target.id === 'b');
  // the root ranks by preferences before its strategy
  const pc = pickCluster(demand({ constraints: [{ type: 'clusters', allowed: ['small'], rigidness: 0.9 }] }), [
    cluster('big', { workers: [summary('b1', { cpu_cores_free: 16 })] }),
    cluster('small', { workers: [summary('s1', { cpu_cores_free: 1 })] }),
  ], { strategy: 'least-loaded' });
  assert.ok(pc.ok && pc.target.id === 'small');
  // rigidness 0 weighs nothing, and the absence of rigidness is hard
  assert.ok(pickWorker(demand({ constraints: [{ type: 'direct', node: 'zz', rigidness: 0 }] }), ws).ok);
  assert.equal(pickWorker(demand({ constraints: [{ type: 'direct', node: 'zz' }] }), ws).ok, false);
});

test('connectivity: a hard rule keeps the instance within the RTT of the target\'s workers', () => {
  const peers = [{ target: 'app.ns.db.ns', threshold_ms: 10, rigidness: 1, workers: ['db1'] }];
  const d = demand({ peers });
  const ws = [worker('a', { cpu_percent: 0 }), worker('b', { cpu_percent: 50 }), worker('db1', { cpu_percent: 99 })];
  const p = pickWorker(d, ws, { rttMs: rtt({ 'a-db1': 40, 'b-db1': 5 }) });
  assert.ok(p.ok && p.target.id === 'b' && p.warnings === undefined);
  // the target's own worker is 0 ms away
  const own = pickWorker(d, [ws[0]!, ws[2]!], { rttMs: rtt({ 'a-db1': 40 }) });
  assert.ok(own.ok && own.target.id === 'db1');
  const none = pickWorker(d, [ws[0]!], { rttMs: rtt({ 'a-db1': 40 }) });
  assert.ok(!none.ok && none.reason === 'NoWorkerMatchesConstraints' && /10 ms RTT of every worker running app.ns.db.ns/.test(none.detail));
});

test('connectivity: an unknown RTT is said, not pretended; a measured one ranks first', () => {
  const d = demand({ peers: [{ target: 'db', threshold_ms: 10, rigidness: 1, workers: ['db1'] }] });
  const p = pickWorker(d, [worker('a', { cpu_percent: 0 })]);
  assert.ok(p.ok);
  assert.deepEqual(p.ok ? p.warnings : [], ['connectivity to db (<= 10 ms) not checked: the overlay has no RTT between a and worker db1']);
  const measured = pickWorker(d, [worker('a', { cpu_percent: 0 }), worker('b', { cpu_percent: 80 })], { rttMs: rtt({ 'b-db1': 3 }) });
  assert.ok(measured.ok && measured.target.id === 'b' && measured.warnings === undefined);
  // nothing to be near yet: no warning
  assert.deepEqual(pickWorker(demand({ peers: [{ target: 'db', threshold_ms: 10, rigidness: 1, workers: [] }] }), [worker('a')]), { ok: true, target: worker('a') });
});

test('connectivity at the root: RTTs from the worker summaries, either direction, silent peers unknown', () => {
  const c1 = cluster('c1', { workers: [summary('a', { net: { subnet: null, rtt: [{ worker_id: 'db1', rtt_ms: 80 }] } })] });
  const c2 = cluster('c2', { workers: [summary('db1', { cpu_cores_free: 0, net: { subnet: null, rtt: [{ worker_id: 'b', rtt_ms: 4 }, { worker_id: 'a', rtt_ms: null }] } }), summary('b')] });
  const lookup = rttLookupOf([...c1.workers, ...c2.workers]);
  assert.equal(lookup('a', 'db1'), 80);
  assert.equal(lookup('b', 'db1'), 4);
  assert.equal(lookup('db1', 'b'), 4);
  assert.equal(lookup('a', 'b'), undefined);
  const d = demand({ peers: [{ target: 'db', threshold_ms: 10, rigidness: 1, workers: ['db1'] }] });
  const p = pickCluster(d, [c1, c2], { rttMs: lookup });
  assert.ok(p.ok && p.target.id === 'c2');
  const n = pickCluster(d, [c1], { rttMs: lookup });
  assert.ok(!n.ok && /within 10 ms RTT/.test(n.detail));
  const soft = pickCluster(demand({ peers: [{ target: 'db', threshold_ms: 10, rigidness: 0.5, workers: ['db1'] }] }), [c1], { rttMs: lookup });
  assert.ok(soft.ok && soft.warnings?.[0] === 'preference unmet: connectivity to db <= 10 ms (rigidness 0.5)');
});

test('demandOf carries the resolved connectivity rules (copied)', () => {
  const peers = [{ target: 'db', threshold_ms: 5, rigidness: 1, workers: ['w1'] }];
  const d = demandOf({ microservice_name: 's', microservice_namespace: 'n', virtualization: 'container', code: 'x' }, 'a.b.s.n', peers);
  assert.deepEqual(d.peers, peers);
  peers[0]!.workers.push('w2');
  assert.deepEqual(d.peers?.[0]?.workers, ['w1']);
  assert.equal(demandOf({ microservice_name: 's', microservice_namespace: 'n', virtualization: 'container', code: 'x' }, 'j').peers, undefined);
});
