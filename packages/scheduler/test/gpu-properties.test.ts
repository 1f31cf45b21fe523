/**
 * GPU accounting (issue 10): both schedulers treat `vgpus` like cpu and memory. Properties over
 * random fleets and random sequences of mixed demands: placement never over-commits a worker's
 * GPUs, a GPU demand is placed iff some worker holds it alone, and the root picks a cluster only
 * when one worker of its summary has the GPUs free.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ClusterDoc, WorkerSummary } from '@oak/contracts';
import { clusterCandidateOf, demandOf, Ledger, pickCluster, pickWorker, reserveCluster, type ClusterCandidate, type Demand, type WorkerCandidate } from '../src/index.ts';
import { cluster, demand, summary, worker } from './helpers.ts';

const RUNS = { numRuns: 300 };

/** workers with plenty of cpu and memory, so that GPUs decide */
const gpuWorkersArb = fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 0, maxLength: 6 }).map((gs) =>
  gs.map((g, i) => worker(`w${i}`, { gpus_free: g, cpu_cores_total: 64, cpu_cores_free: 64, memory_total_mb: 1 << 20, memory_free_mb: 1 << 20 })),
);
const gpuDemandsArb = fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 25 });

test('pickWorker + Ledger: a sequence of mixed GPU demands never over-commits any worker, and is placed iff one worker has the GPUs free', () => {
  fc.assert(
    fc.property(gpuWorkersArb, gpuDemandsArb, (ws, gpuList) => {
      const ledger = new Ledger();
      const used = new Map<string, number>();
      gpuList.forEach((g, i) => {
        const d = demand({ job_name: `job${i}.a.b.c`, gpus: g, vcpus: 0.1, memory_mb: 1 });
        const view = ledger.applyAll(ws);
        const p = pickWorker(d, view);
        const someone = view.some((w) => w.gpus_free >= g);
        assert.equal(p.ok, someone, `placed=${p.ok} while a worker with ${g} free GPUs ${someone ? 'exists' : 'does not exist'}`);
        if (!p.ok) {
          assert.equal(p.reason, 'NO_WORKER_CAPACITY');
          if (g > 0) assert.match(p.detail, /GPU/);
          return;
        }
        assert.ok(p.target.gpus_free >= g, 'the chosen worker has the GPUs free');
        ledger.reserve(p.target.id, `job${i}.a.b.c.instance.0`, d, i);
        used.set(p.target.id, (used.get(p.target.id) ?? 0) + g);
      });
      for (const w of ws) assert.ok((used.get(w.id) ?? 0) <= w.gpus_free, `${w.id}: ${used.get(w.id)} GPUs placed on ${w.gpus_free}`);
      for (const w of ledger.applyAll(ws)) assert.ok(w.gpus_free >= 0);
    }),
    RUNS,
  );
});

test('a worker without GPUs never gets a GPU instance, whatever else it has free', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 4 }), (n, g) => {
      const ws = Array.from({ length: n }, (_, i) => worker(`w${i}`, { cpu_cores_free: 64, cpu_cores_total: 64 }));
      const p = pickWorker(demand({ gpus: g }), ws);
      assert.equal(p.ok, false);
      if (!p.ok) assert.match(p.detail, new RegExp(`needs 1 vcpu, 256 MB, ${g} GPUs?; best worker w\\d+ has .* 0 GPUs free`));
    }),
  );
});

const summaryArb = (c: number, i: number) =>
  fc.record({ gpus: fc.integer({ min: 0, max: 3 }), cpu: fc.integer({ min: 0, max: 8 }) }).map((r): WorkerSummary => summary(`c${c}-w${i}`, { gpus_free: r.gpus, cpu_cores_free: r.cpu, memory_free_mb: 8192 }));
const clustersArb = fc
  .array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 5 })
  .chain((sizes) => fc.tuple(...sizes.map((n, c) => fc.tuple(...Array.from({ length: n }, (_, i) => summaryArb(c, i))))))
  .map((groups) => groups.map((ws, c) => cluster(`c${c}`, { workers: ws, gpus_free: ws.reduce((s, w) => s + (w.gpus_free ?? 0), 0) })));

function holder(c: ClusterCandidate, d: Demand): WorkerSummary | undefined {
  return c.workers.find((w) => (w.gpus_free ?? 0) >= d.gpus && w.cpu_cores_free >= d.vcpus && w.memory_free_mb >= d.memory_mb);
}

test('pickCluster + reserveCluster: the chosen cluster always has one worker with the GPUs free, and no summary worker goes below 0', () => {
  fc.assert(
    fc.property(clustersArb, fc.array(fc.record({ g: fc.integer({ min: 0, max: 3 }), cpu: fc.integer({ min: 0, max: 2 }) }), { minLength: 1, maxLength: 20 }), (cs0, ds) => {
      let cs = cs0;
      for (const [i, x] of ds.entries()) {
        const d = demand({ job_name: `j${i}.a.b.c`, gpus: x.g, vcpus: x.cpu, memory_mb: 1 });
        const p = pickCluster(d, cs);
        const any = cs.some((c) => holder(c, d) !== undefined);
        assert.equal(p.ok, any, `placed=${p.ok}; a cluster with one worker holding ${x.g} GPUs and ${x.cpu} cores ${any ? 'exists' : 'does not'}`);
        if (!p.ok) continue;
        assert.ok(holder(p.target, d), `${p.target.id} has no single worker with ${x.g} GPUs free`);
        cs = cs.map((c) => (c.id === p.target.id ? reserveCluster(c, d) : c));
      }
      for (const c of cs) {
        assert.ok(c.gpus_free >= 0, `${c.id} aggregate ${c.gpus_free}`);
        for (const w of c.workers) assert.ok((w.gpus_free ?? 0) >= 0, `${w.id} has ${w.gpus_free} GPUs free`);
      }
    }),
    RUNS,
  );
});

test('pickCluster: GPUs spread over two workers do not hold a two-GPU instance, and the reason says so', () => {
  const c = cluster('edge', { workers: [summary('a', { gpus_free: 1 }), summary('b', { gpus_free: 1 })], gpus_free: 2 });
  const p = pickCluster(demand({ gpus: 2 }), [c]);
  assert.equal(p.ok, false);
  if (!p.ok) {
    assert.equal(p.reason, 'NoActiveClusterWithCapacity');
    assert.match(p.detail, /needs 1 vcpu, 256 MB, 2 GPUs; cluster edge has .*2 GPUs free in total but no single worker holds it \(best: a with .*1 GPU free\)/);
  }
  assert.equal(pickCluster(demand({ gpus: 1 }), [c]).ok, true);
  // a GPU-less cluster (summaries say 0) is never chosen for a GPU instance
  const none = cluster('cpu-only', { workers: [summary('x', { gpus_free: 0, cpu_cores_free: 64 })] });
  const q = pickCluster(demand({ gpus: 1 }), [none]);
  assert.equal(q.ok, false);
  if (!q.ok) assert.match(q.detail, /needs 1 vcpu, 256 MB, 1 GPU; best cluster cpu-only has .* 0 GPUs free/);
});

test('reserveCluster takes the GPUs from the worker it reserves on (when the summary reports GPUs)', () => {
  const c = cluster('edge', { workers: [summary('a', { gpus_free: 2 }), summary('b')], gpus_free: 2 });
  const r = reserveCluster(c, demand({ gpus: 2 }));
  assert.equal(r.gpus_free, 0);
  assert.equal(r.workers.find((w) => w.id === 'a')?.gpus_free, 0);
  assert.equal(r.workers.find((w) => w.id === 'b')?.gpus_free, undefined, 'a summary without GPUs stays without');
  assert.equal(pickCluster(demand({ gpus: 1 }), [r]).ok, false);
});

test('workers as candidates: reports with running GPU instances count them as held (Ledger.apply subtracts reservations)', () => {
  const ledger = new Ledger();
  const w: WorkerCandidate = worker('w', { gpus_free: 2 });
  ledger.reserve('w', 'a.b.c.d.instance.0', demand({ gpus: 2 }));
  assert.equal(ledger.apply(w).gpus_free, 0);
  assert.equal(pickWorker(demand({ gpus: 1 }), ledger.applyAll([w])).ok, false);
  ledger.observe(['a.b.c.d.instance.0']);
  assert.equal(ledger.apply(w).gpus_free, 2, 'once reported running, the report itself holds it');
});

test('the root, from cluster documents: a vgpus service goes to the cluster whose worker has the GPUs, twice in a row only where two are free', () => {
  const doc = (id: string, workers: WorkerSummary[]): ClusterDoc => ({
    _id: id,
    cluster_name: id,
    cluster_location: null,
    status: 'ACTIVE',
    last_seen: null,
    created_at: '2026-01-01T00:00:00Z',
    resources: {
      cpu_cores_free: workers.reduce((x, w) => x + w.cpu_cores_free, 0),
      cpu_cores_total: 64,
      memory_free_mb: workers.reduce((x, w) => x + w.memory_free_mb, 0),
      memory_total_mb: 1 << 20,
      gpus_free: workers.reduce((x, w) => x + (w.gpus_free ?? 0), 0),
      virtualizations: ['container'],
      workers: workers.length,
      worker_summary: workers,
    },
  });
  const big = doc('big-cpu', [summary('b1', { cpu_cores_free: 32, memory_free_mb: 65536, gpus_free: 0 })]);
  const gpu = doc('gpu', [summary('g1', { cpu_cores_free: 2, memory_free_mb: 4096, gpus_free: 1, gpus: [{ index: 0, name: 'NVIDIA T4', memory_mb: 15360, uuid: 'GPU-a' }] })]);
  const svc = { microservice_name: 'train', microservice_namespace: 'ml', virtualization: 'container' as const, code: 'trainer', vcpus: 1, memory: 512, vgpus: 1 };
  const d = demandOf(svc, 'app.ns.train.ml');
  let cs = [clusterCandidateOf(big), clusterCandidateOf(gpu)];
  const first = pickCluster(d, cs);
  assert.ok(first.ok && first.target.id === 'gpu', 'the GPU cluster, though the other has far more cpu and memory');
  cs = cs.map((c) => (c.id === 'gpu' ? reserveCluster(c, d) : c));
  const second = pickCluster(d, cs);
  assert.equal(second.ok, false, 'its one GPU is reserved by the first placement');
  // without vgpus the same service may go anywhere (best-fit picks the tighter cluster)
  assert.equal(pickCluster(demandOf({ ...svc, vgpus: 0 }, 'j'), cs).ok, true);
});
