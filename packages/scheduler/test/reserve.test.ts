import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger, likelyWorker, pickWorker, placeMany, release, reserve } from '../src/index.ts';
import { cluster, demand, summary, worker } from './helpers.ts';

test('reserve/release on a worker are immutable and inverse', () => {
  const w = worker('w', { jobs: ['x'] });
  const d = demand({ vcpus: 1.5, memory_mb: 1000, gpus: 0 });
  const r = reserve(w, d);
  assert.equal(w.cpu_cores_free, 4);
  assert.deepEqual(w.jobs, ['x']);
  assert.equal(r.cpu_cores_free, 2.5);
  assert.equal(r.memory_free_mb, 3096);
  assert.deepEqual(r.jobs, ['x', d.job_name]);
  assert.deepEqual(release(r, d), w);
  // release never gives more than the totals
  assert.equal(release(w, d).cpu_cores_free, 4);
});

test('reserve on a cluster subtracts the aggregate and the likely worker', () => {
  const c = cluster('c', { workers: [summary('a', { cpu_cores_free: 1 }), summary('b', { cpu_cores_free: 3 })] });
  const d = demand({ vcpus: 1 });
  assert.equal(likelyWorker(c, d)?.id, 'b');
  const r = reserve(c, d);
  assert.equal(r.cpu_cores_free, 3);
  assert.deepEqual(r.workers.map((w) => w.cpu_cores_free), [1, 2]);
  assert.deepEqual(r.jobs, [d.job_name]);
  const named = reserve(c, d, 'a');
  assert.deepEqual(named.workers.map((w) => w.cpu_cores_free), [0, 3]);
  assert.deepEqual(release(named, d, 'a'), c);
  assert.equal(c.cpu_cores_free, 4);
});

test('placeMany spreads replicas and accounts between them', () => {
  const ws = ['a', 'b', 'c'].map((id) => worker(id, { cpu_cores_free: 2, cpu_cores_total: 2 }));
  const r = placeMany(demand({ vcpus: 1 }), 3, ws);
  assert.deepEqual(r.placements.map((p) => (p.ok ? p.target.id : p.reason)).sort(), ['a', 'b', 'c']);
  const more = placeMany(demand({ vcpus: 1 }), 8, ws);
  const ids = more.placements.map((p) => (p.ok ? p.target.id : p.reason));
  assert.equal(ids.filter((x) => x === 'NO_WORKER_CAPACITY').length, 2);
  assert.ok(more.workers.every((w) => w.cpu_cores_free >= 0));
  assert.equal(ws[0]?.cpu_cores_free, 2, 'input unchanged');
});

test('ledger: reservations apply until the report lists the instance as running', () => {
  const ledger = new Ledger();
  const d = demand({ vcpus: 1, memory_mb: 512 });
  const report = worker('w1', { cpu_cores_free: 2 });
  assert.equal(ledger.apply(report), report);
  ledger.reserve('w1', 'j.instance.0', d, 100);
  ledger.reserve('w1', 'j.instance.1', d, 200);
  assert.equal(ledger.size, 2);
  const seen = ledger.apply(report);
  assert.equal(seen.cpu_cores_free, 0);
  assert.equal(seen.memory_free_mb, 4096 - 1024);
  assert.equal(seen.jobs.length, 2);
  assert.equal(pickWorker(d, ledger.applyAll([report])).ok, false);
  // the next report shows instance 0 running (its usage is inside the report now)
  assert.equal(ledger.observe(['j.instance.0', 'other.instance.3']), 1);
  assert.equal(ledger.apply(report).cpu_cores_free, 1);
  // moving a reservation to another worker
  ledger.reserve('w2', 'j.instance.1', d, 300);
  assert.equal(ledger.apply(report), report);
  assert.equal(ledger.onWorker('w2').length, 1);
  assert.equal(ledger.release('j.instance.1'), true);
  assert.equal(ledger.release('j.instance.1'), false);
  assert.equal(ledger.size, 0);
});

test('ledger: expire and forgetWorker', () => {
  const ledger = new Ledger();
  const d = demand();
  ledger.reserve('w1', 'a', d, 10);
  ledger.reserve('w1', 'b', d, 50);
  ledger.reserve('w2', 'c', d, 10);
  assert.deepEqual(ledger.expire(20).sort(), ['a', 'c']);
  assert.deepEqual(ledger.forgetWorker('w1'), ['b']);
  assert.equal(ledger.size, 0);
  assert.deepEqual(ledger.forgetWorker('w1'), []);
});
