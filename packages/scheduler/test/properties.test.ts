import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PENDING_REASONS, VIRTUALIZATIONS, type Constraint, type Virtualization } from '@oak/contracts';
import {
  EPS,
  haversineKm,
  parseGeoPoint,
  pickCluster,
  pickWorker,
  placeMany,
  reserve,
  type ClusterCandidate,
  type Demand,
  type GeoPoint,
  type Strategy,
  type WorkerCandidate,
} from '../src/index.ts';

const RUNS = { numRuns: 300 };
const PLACES = ['48.137,11.575', '52.52,13.405', '48.857,2.352', '40.4,-3.7', '48.2,16.37'];

const virtArb = fc.constantFrom<Virtualization>(...VIRTUALIZATIONS);
const virtsArb = fc.subarray([...VIRTUALIZATIONS], { minLength: 1 });
const locArb = fc.option(fc.constantFrom(...PLACES), { nil: null });
const amount = (max: number) => fc.oneof(fc.integer({ min: 0, max }), fc.double({ min: 0, max, noNaN: true }).map((x) => Math.round(x * 10) / 10));
const strategyArb = fc.constantFrom<Strategy>('least-loaded', 'best-fit', 'spread');
const JOB = 'app.ns.svc.ns';

const workerArb = (i: number) =>
  fc
    .record({
      total: fc.integer({ min: 1, max: 16 }),
      freeShare: fc.double({ min: 0, max: 1, noNaN: true }),
      mem: fc.integer({ min: 256, max: 16384 }),
      memShare: fc.double({ min: 0, max: 1, noNaN: true }),
      gpus: fc.integer({ min: 0, max: 2 }),
      pct: fc.integer({ min: 0, max: 100 }),
      virts: virtsArb,
      loc: locArb,
      jobs: fc.array(fc.constantFrom(JOB, 'other.a.b.c'), { maxLength: 3 }),
    })
    .map(
      (r): WorkerCandidate => ({
        id: `w${i}`,
        name: `worker${i}`,
        cpu_cores_total: r.total,
        cpu_cores_free: Math.round(r.total * r.freeShare * 10) / 10,
        memory_total_mb: r.mem,
        memory_free_mb: Math.round(r.mem * r.memShare),
        gpus_free: r.gpus,
        cpu_percent: r.pct,
        virtualizations: r.virts,
        location: parseGeoPoint(r.loc),
        jobs: r.jobs,
      }),
    );

const workersArb = fc.integer({ min: 0, max: 12 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => workerArb(i))));

const constraintArb: fc.Arbitrary<Constraint> = fc.oneof(
  fc.record({ type: fc.constant('direct' as const), node: fc.constantFrom('w0', 'worker1', 'w2', 'nobody') }),
  fc.record({ type: fc.constant('geo' as const), location: fc.constantFrom(...PLACES), threshold: fc.integer({ min: 0, max: 1500 }) }),
  fc.record({ type: fc.constant('latency' as const), location: fc.constantFrom(...PLACES), threshold: fc.integer({ min: 1, max: 15 }) }),
);

const demandArb = (constraints: boolean): fc.Arbitrary<Demand> =>
  fc.record({
    job_name: fc.constant(JOB),
    virtualization: virtArb,
    vcpus: amount(4),
    memory_mb: fc.integer({ min: 0, max: 4096 }),
    gpus: fc.constantFrom(0, 0, 0, 1),
    constraints: constraints ? fc.array(constraintArb, { maxLength: 2 }) : fc.constant([]),
  });

/** An independent oracle: does worker w satisfy the demand's constraints, virtualization, resources? */
function feasible(w: WorkerCandidate, d: Demand): boolean {
  if (!w.virtualizations.includes(d.virtualization)) return false;
  if (w.cpu_cores_free + EPS < d.vcpus || w.memory_free_mb + EPS < d.memory_mb || (d.gpus > 0 && w.gpus_free + EPS < d.gpus)) return false;
  return d.constraints.every((c) => {
    if (c.type === 'direct') return !c.node || c.node === w.id || c.node === w.name;
    if (c.type !== 'geo' && c.type !== 'latency') throw new Error(`the arbitrary makes no ${c.type} constraint`);
    const p = parseGeoPoint(c.location) as GeoPoint;
    if (!w.location) return false;
    const km = haversineKm(p, w.location);
    return c.type === 'geo' ? km <= c.threshold + EPS : km / 100 + 1 <= c.threshold + EPS;
  });
}

const reasons: readonly string[] = PENDING_REASONS;

test('pickWorker places iff some worker is feasible, and the target is feasible', () => {
  fc.assert(
    fc.property(demandArb(true), workersArb, strategyArb, (d, ws, strategy) => {
      const p = pickWorker(d, ws, { strategy });
      const any = ws.some((w) => feasible(w, d));
      assert.equal(p.ok, any);
      if (p.ok) assert.ok(feasible(p.target, d));
      else {
        assert.ok(reasons.includes(p.reason), p.reason);
        assert.ok(p.detail.length > 0);
      }
    }),
    RUNS,
  );
});

test('placing many with reserve() never over-commits a worker', () => {
  fc.assert(
    fc.property(demandArb(true), workersArb, fc.integer({ min: 1, max: 30 }), strategyArb, (d, ws, n, strategy) => {
      const { placements, workers } = placeMany(d, n, ws, { strategy });
      assert.equal(placements.length, n);
      const count = new Map<string, number>();
      for (const p of placements) {
        if (p.ok) count.set(p.target.id, (count.get(p.target.id) ?? 0) + 1);
        else assert.ok(reasons.includes(p.reason));
      }
      for (const w of ws) {
        const k = count.get(w.id) ?? 0;
        assert.ok(k * d.vcpus <= w.cpu_cores_free + 1e-6, `cpu over-committed on ${w.id}`);
        assert.ok(k * d.memory_mb <= w.memory_free_mb + 1e-6, `memory over-committed on ${w.id}`);
        assert.ok(k * d.gpus <= w.gpus_free + 1e-6, `gpus over-committed on ${w.id}`);
      }
      assert.equal(workers.length, ws.length);
    }),
    RUNS,
  );
});

test('the same loop by hand: pick, reserve, pick again never over-commits either', () => {
  fc.assert(
    fc.property(fc.array(demandArb(false), { minLength: 1, maxLength: 20 }), workersArb, (ds, ws0) => {
      let ws = [...ws0];
      const used = new Map<string, { cpu: number; mem: number }>();
      for (const d of ds) {
        const p = pickWorker(d, ws);
        if (!p.ok) continue;
        ws = ws.map((w) => (w.id === p.target.id ? reserve(w, d) : w));
        const u = used.get(p.target.id) ?? { cpu: 0, mem: 0 };
        used.set(p.target.id, { cpu: u.cpu + d.vcpus, mem: u.mem + d.memory_mb });
      }
      for (const w of ws0) {
        const u = used.get(w.id);
        if (!u) continue;
        assert.ok(u.cpu <= w.cpu_cores_free + 1e-6);
        assert.ok(u.mem <= w.memory_free_mb + 1e-6);
      }
    }),
    RUNS,
  );
});

test('N replicas on at least N fitting workers land on N distinct workers', () => {
  fc.assert(
    fc.property(demandArb(false), workersArb, strategyArb, (d, ws0, strategy) => {
      // no replica of the job placed yet (pre-existing replicas are balanced, not avoided)
      const ws = ws0.map((w) => ({ ...w, jobs: w.jobs.filter((j) => j !== JOB) }));
      const n = ws.filter((w) => feasible(w, d)).length;
      if (n === 0) return;
      const { placements } = placeMany(d, n, ws, { strategy });
      const ids = placements.map((p) => (p.ok ? p.target.id : '!'));
      assert.ok(!ids.includes('!'));
      assert.equal(new Set(ids).size, n);
    }),
    RUNS,
  );
});

test('deterministic: same input, same answer; worker order does not change the target', () => {
  fc.assert(
    fc.property(demandArb(true), workersArb, strategyArb, fc.integer(), (d, ws, strategy, seed) => {
      const a = pickWorker(d, ws, { strategy });
      assert.deepEqual(pickWorker(d, ws, { strategy }), a);
      const shuffled = [...ws].sort((x, y) => ((x.id.charCodeAt(1) * 31 + seed) % 7) - ((y.id.charCodeAt(1) * 31 + seed) % 7));
      const b = pickWorker(d, shuffled, { strategy });
      assert.equal(b.ok, a.ok);
      if (a.ok && b.ok) assert.equal(b.target.id, a.target.id);
      if (!a.ok && !b.ok) assert.equal(b.reason, a.reason);
    }),
    RUNS,
  );
});

const summaryArb = (c: number, i: number) =>
  fc.record({ cpu: amount(8), mem: fc.integer({ min: 0, max: 8192 }), virts: virtsArb, loc: locArb }).map((r) => ({
    id: `c${c}w${i}`,
    name: `c${c}w${i}`,
    cpu_cores_free: r.cpu,
    memory_free_mb: r.mem,
    virtualizations: r.virts,
    location: r.loc,
  }));

const clusterArb = (c: number) =>
  fc
    .record({
      active: fc.boolean(),
      loc: locArb,
      n: fc.integer({ min: 0, max: 4 }),
      gpus: fc.integer({ min: 0, max: 2 }),
    })
    .chain((r) =>
      fc.tuple(...Array.from({ length: r.n }, (_, i) => summaryArb(c, i))).map(
        (workers): ClusterCandidate => ({
          id: `c${c}`,
          name: `cluster${c}`,
          active: r.active,
          location: parseGeoPoint(r.loc),
          cpu_cores_free: workers.reduce((s, w) => s + w.cpu_cores_free, 0),
          memory_free_mb: workers.reduce((s, w) => s + w.memory_free_mb, 0),
          gpus_free: r.gpus,
          virtualizations: [...new Set(workers.flatMap((w) => w.virtualizations))],
          workers,
          jobs: [],
        }),
      ),
    );

const clustersArb = fc.integer({ min: 0, max: 6 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => clusterArb(i))));

const clusterConstraintArb: fc.Arbitrary<Constraint> = fc.oneof(
  fc.record({ type: fc.constant('direct' as const), cluster: fc.constantFrom('c0', 'cluster1', 'nowhere') }),
  fc.record({ type: fc.constant('direct' as const), node: fc.constantFrom('c0w0', 'c1w1', 'nobody') }),
  fc.record({ type: fc.constant('geo' as const), location: fc.constantFrom(...PLACES), threshold: fc.integer({ min: 0, max: 1500 }) }),
);

test('pickCluster honours active, direct, geo, virtualization and single-worker capacity', () => {
  const demandC = fc.record({
    job_name: fc.constant(JOB),
    virtualization: virtArb,
    vcpus: amount(4),
    memory_mb: fc.integer({ min: 0, max: 4096 }),
    gpus: fc.constantFrom(0, 0, 1),
    constraints: fc.array(clusterConstraintArb, { maxLength: 2 }),
  });
  fc.assert(
    fc.property(demandC, clustersArb, (d, cs) => {
      const p = pickCluster(d, cs);
      const ok = (c: ClusterCandidate) => {
        if (!c.active || !c.virtualizations.includes(d.virtualization)) return false;
        if (c.cpu_cores_free + EPS < d.vcpus || c.memory_free_mb + EPS < d.memory_mb || (d.gpus > 0 && c.gpus_free < d.gpus)) return false;
        for (const k of d.constraints) if (k.type === 'direct' && k.cluster && k.cluster !== c.id && k.cluster !== c.name) return false;
        return c.workers.some((w) => {
          if (!w.virtualizations.includes(d.virtualization)) return false;
          if (w.cpu_cores_free + EPS < d.vcpus || w.memory_free_mb + EPS < d.memory_mb) return false;
          return d.constraints.every((k) => {
            if (k.type === 'direct') return !k.node || k.node === w.id || k.node === w.name;
            if (k.type !== 'geo') return true;
            const loc = parseGeoPoint(w.location) ?? c.location;
            return loc !== null && haversineKm(parseGeoPoint(k.location) as GeoPoint, loc) <= k.threshold + EPS;
          });
        });
      };
      assert.equal(p.ok, cs.some(ok));
      if (p.ok) assert.ok(ok(p.target));
      else assert.ok(reasons.includes(p.reason), p.reason);
      assert.deepEqual(pickCluster(d, cs), p);
    }),
    RUNS,
  );
});

test('root accounting: reserving on the chosen cluster never admits more than its workers hold', () => {
  fc.assert(
    fc.property(demandArb(false), clustersArb, fc.integer({ min: 1, max: 20 }), (d0, cs0, n) => {
      const d = { ...d0, gpus: 0 };
      let cs = [...cs0];
      const placed = new Map<string, number>();
      for (let i = 0; i < n; i++) {
        const p = pickCluster(d, cs);
        if (!p.ok) break;
        cs = cs.map((c) => (c.id === p.target.id ? reserve(c, d) : c));
        placed.set(p.target.id, (placed.get(p.target.id) ?? 0) + 1);
      }
      for (const c of cs0) {
        const k = placed.get(c.id) ?? 0;
        if (k === 0 || (d.vcpus === 0 && d.memory_mb === 0)) continue;
        // how many instances the workers can hold, one worker at a time
        const capacity = c.workers
          .filter((w) => w.virtualizations.includes(d.virtualization))
          .reduce((s, w) => s + Math.floor(Math.min(d.vcpus > 0 ? (w.cpu_cores_free + EPS) / d.vcpus : Infinity, d.memory_mb > 0 ? (w.memory_free_mb + EPS) / d.memory_mb : Infinity)), 0);
        assert.ok(k <= capacity, `${k} placed on ${c.id}, room for ${capacity}`);
      }
    }),
    RUNS,
  );
});
