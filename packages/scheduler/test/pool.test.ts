/**
 * WorkerPool (issue 13): indexed, sampled placement. What must hold:
 *  - exactness of the index: with the walk forced to see every candidate, the pool answers
 *    exactly what pickWorker answers over the same workers, after any upserts and removals;
 *  - with sampling: a pick succeeds iff pickWorker's does, the target is feasible, and its
 *    penalty and anti-affinity keys are the best there are (unless the visit budget ran out);
 *  - rare feasible workers (one named node, one worker in a small area, one with an addon, one of
 *    an architecture, one with a GPU) are found among 10,000 without walking the pool;
 *  - no over-commit, and over many placements the load is spread close to the full scan's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { VIRTUALIZATIONS, type Constraint, type Virtualization } from '@oak/contracts';
import {
  WorkerPool,
  compileConstraints,
  defaultLimit,
  pickWorker,
  pickWorkerIndex,
  reserveWorker,
  workerLoad,
  workerPenalty,
  type Demand,
  type GeoPoint,
  type Strategy,
  type WorkerCandidate,
} from '../src/index.ts';

const JOB = 'app.ns.svc.ns';
const strategyArb = fc.constantFrom<Strategy>('least-loaded', 'best-fit', 'spread');
const virtsArb = fc.subarray([...VIRTUALIZATIONS], { minLength: 1 });
/** points anywhere, with a bias to a few places, the poles and the date line */
const pointArb: fc.Arbitrary<GeoPoint> = fc.oneof(
  fc.record({ lat: fc.double({ min: -90, max: 90, noNaN: true }), long: fc.double({ min: -180, max: 180, noNaN: true }) }),
  fc.constantFrom<GeoPoint>({ lat: 48.137, long: 11.575 }, { lat: 52.52, long: 13.405 }, { lat: 89.9, long: 10 }, { lat: -89.5, long: -170 }, { lat: 0, long: 179.9 }, { lat: 0.5, long: -179.8 }),
  fc.record({ lat: fc.double({ min: 47, max: 49, noNaN: true }), long: fc.double({ min: 10, max: 13, noNaN: true }) }),
);
const locArb = fc.option(
  fc.tuple(pointArb, fc.option(fc.integer({ min: 0, max: 300 }), { nil: undefined })).map(([p, r]) => (r === undefined ? p : { ...p, radius_km: r })),
  { nil: null, freq: 4 },
);
const fmtPoint = (p: GeoPoint) => `${p.lat.toFixed(4)},${p.long.toFixed(4)}`;

const workerArb = (i: number) =>
  fc
    .record({
      total: fc.integer({ min: 1, max: 16 }),
      free: fc.double({ min: -0.2, max: 1, noNaN: true }),
      mem: fc.integer({ min: 256, max: 16384 }),
      memShare: fc.double({ min: 0, max: 1, noNaN: true }),
      gpus: fc.constantFrom(0, 0, 0, 1, 2, 4),
      pct: fc.integer({ min: 0, max: 100 }),
      virts: virtsArb,
      arch: fc.constantFrom<string | undefined>('amd64', 'amd64', 'arm64', 'riscv64', undefined),
      loc: locArb,
      jobs: fc.array(fc.constantFrom(JOB, 'other.a.b.c'), { maxLength: 3 }),
      addons: fc.option(fc.subarray(['gpu-driver', 'image-builder', 'sensor']), { nil: undefined }),
      name: fc.constantFrom(`worker${i}`, `worker${i}`, 'shared-name'),
    })
    .map(
      (r): WorkerCandidate => ({
        id: `w${i}`,
        name: r.name,
        cpu_cores_total: r.total,
        cpu_cores_free: Math.round(r.total * r.free * 10) / 10,
        memory_total_mb: r.mem,
        memory_free_mb: Math.round(r.mem * r.memShare),
        gpus_free: r.gpus,
        cpu_percent: r.pct,
        virtualizations: r.virts,
        ...(r.arch !== undefined ? { arch: r.arch } : {}),
        location: r.loc,
        jobs: r.jobs,
        ...(r.addons !== undefined && r.addons.length > 0 ? { supported_addons: r.addons } : {}),
      }),
    );

const workersArb = (max: number) => fc.integer({ min: 0, max }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => workerArb(i))));

const rigidArb = fc.option(fc.constantFrom(1, 0.5, 0.2), { nil: undefined, freq: 2 });
const constraintArb: fc.Arbitrary<Constraint> = fc.oneof(
  fc.record({ type: fc.constant('direct' as const), node: fc.constantFrom('w0', 'worker1', 'w2', 'shared-name', 'nobody'), rigidness: rigidArb }),
  fc.record({ type: fc.constant('geo' as const), location: pointArb.map(fmtPoint), threshold: fc.constantFrom(0, 5, 50, 200, 800, 3000, 15000), rigidness: rigidArb }),
  fc.record({ type: fc.constant('geo' as const), location: fc.constant('not a place'), threshold: fc.constant(100) }),
  fc.record({ type: fc.constant('latency' as const), location: pointArb.map(fmtPoint), threshold: fc.integer({ min: 1, max: 40 }), rigidness: rigidArb }),
  fc.record({ type: fc.constant('addons' as const), needs: fc.subarray(['gpu-driver', 'image-builder', 'sensor', 'cluster-only'], { minLength: 1 }), rigidness: rigidArb }),
);

const demandArb: fc.Arbitrary<Demand> = fc.record({
  job_name: fc.constant(JOB),
  virtualization: fc.constantFrom<Virtualization>(...VIRTUALIZATIONS),
  vcpus: fc.constantFrom(0, 0.1, 0.125, 0.25, 0.5, 1, 2, 4, 8),
  memory_mb: fc.constantFrom(0, 64, 128, 1000, 4096),
  gpus: fc.constantFrom(0, 0, 0, 1, 2),
  constraints: fc.array(constraintArb, { maxLength: 2 }),
  arch: fc.option(fc.subarray(['amd64', 'x86_64', 'arm64', 'aarch64', 'riscv64'], { maxLength: 2 }), { nil: undefined }),
});

const optsArb = fc.record({
  strategy: strategyArb,
  clusterLocation: fc.option(pointArb, { nil: null }),
  clusterAddons: fc.option(fc.constant(['cluster-only']), { nil: undefined }),
});

/** A change of a worker's report: it moves, fills up, changes its kind or its addons, or leaves. */
const changeArb = (n: number) =>
  fc.record({
    i: fc.integer({ min: 0, max: Math.max(0, n - 1) }),
    w: workerArb(0),
    remove: fc.boolean(),
    /** only the free amounts change (a reservation, a report): the other indexes stay */
    capacityOnly: fc.option(fc.record({ cpu: fc.double({ min: -1, max: 16, noNaN: true }), mem: fc.integer({ min: -100, max: 16384 }), gpus: fc.constantFrom(0, 1, 3) }), { nil: undefined }),
  });

function clean<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

test('exact mode: the pool answers what pickWorker answers, after upserts and removals', () => {
  fc.assert(
    fc.property(workersArb(40), demandArb, optsArb, fc.array(changeArb(40), { maxLength: 12 }), (ws0, d, o, changes) => {
      const opts = clean(o);
      const pool = new WorkerPool(ws0, { exactBelow: Infinity, scanBelow: 0 });
      const cur = new Map(ws0.map((w) => [w.id, w]));
      for (const c of changes) {
        const id = `w${c.i}`;
        if (c.remove) {
          pool.remove(id);
          cur.delete(id);
        } else if (c.capacityOnly !== undefined) {
          const old = cur.get(id);
          if (!old) continue;
          const w = { ...old, cpu_cores_free: c.capacityOnly.cpu, memory_free_mb: c.capacityOnly.mem, gpus_free: c.capacityOnly.gpus };
          pool.upsert(w);
          cur.set(id, w);
        } else {
          const w = { ...c.w, id };
          pool.upsert(w);
          cur.set(id, w);
        }
      }
      const list = [...cur.values()];
      const want = pickWorker(d, list, opts);
      const got = pool.pick(d, opts);
      assert.equal(pool.misses, 0);
      assert.equal(got.ok, want.ok);
      if (got.ok && want.ok) assert.equal(got.target.id, want.target.id);
      if (!got.ok && !want.ok) {
        assert.equal(got.reason, want.reason);
        // the detail may name the first of several workers: the full scan over the pool's order
        assert.deepEqual(got, pickWorker(d, pool.values(), opts));
      }
      assert.equal(pool.size, list.length);
      // a small pool is scanned whole by default: the same answer
      const small = new WorkerPool(pool.values());
      const s2 = small.pick(d, opts);
      assert.equal(small.lastPick.index, 'all');
      assert.equal(s2.ok, want.ok);
      if (s2.ok && want.ok) assert.equal(s2.target.id, want.target.id);
    }),
    { numRuns: Number(process.env.POOL_RUNS ?? 600) },
  );
});

test('sampling mode: succeeds iff pickWorker does, the target is feasible, its penalty and anti-affinity are the best there are', () => {
  fc.assert(
    fc.property(workersArb(160), demandArb, optsArb, fc.integer(), (ws, d, o, seed) => {
      const opts = clean(o);
      // a small limit and threshold so that the sample is much smaller than the pool
      const pool = new WorkerPool(ws, { seed, exactBelow: 4, scanBelow: 0, limit: () => 2 });
      const want = pickWorker(d, ws, opts);
      const got = pool.pick(d, opts);
      assert.equal(pool.misses, 0);
      assert.equal(got.ok, want.ok);
      if (!got.ok || !want.ok) return;
      // feasible: pickWorker over that one worker places it
      assert.ok(pickWorker(d, [got.target], opts).ok, 'target infeasible');
      if (pool.lastPick.visited >= 128) return; // the budget ran out
      const cc = compileConstraints(d);
      const pen = (w: WorkerCandidate) => workerPenalty(w, w.location ?? opts.clusterLocation ?? null, cc, opts.clusterAddons);
      const same = (w: WorkerCandidate) => w.jobs.filter((j) => j === d.job_name).length;
      assert.ok(pen(got.target) <= pen(want.target) + 1e-12, 'a preference left unmet that the full scan meets');
      if (pen(got.target) === pen(want.target)) assert.ok(same(got.target) <= same(want.target), 'anti-affinity worse than the full scan');
    }),
    { numRuns: Number(process.env.POOL_RUNS ?? 500) },
  );
});

/** n workers, alike except for what each test makes rare */
function fleet(n: number, p: (i: number) => Partial<WorkerCandidate> = () => ({})): WorkerCandidate[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `w${i}`,
    name: `worker-${i}`,
    cpu_cores_total: 8,
    cpu_cores_free: 4 + (i % 5),
    memory_total_mb: 16384,
    memory_free_mb: 8192 + (i % 7) * 512,
    gpus_free: 0,
    cpu_percent: (i * 37) % 90,
    virtualizations: ['container'],
    arch: 'amd64',
    location: { lat: 40 + (i % 20) * 0.7, long: -5 + ((i * 7) % 30) },
    jobs: [],
    ...p(i),
  }));
}

const base: Demand = { job_name: JOB, virtualization: 'container', vcpus: 0.5, memory_mb: 256, gpus: 0, constraints: [] };

test('rare feasible workers among 10,000 are found from the indexes, not by walking the pool', () => {
  const n = 10_000;
  const cases: { what: string; ws: WorkerCandidate[]; d: Demand; want: string }[] = [
    { what: 'direct node by name', ws: fleet(n), d: { ...base, constraints: [{ type: 'direct', node: 'worker-7777' }] }, want: 'w7777' },
    { what: 'direct node by id', ws: fleet(n), d: { ...base, constraints: [{ type: 'direct', node: 'w42' }] }, want: 'w42' },
    {
      what: 'small geo area',
      ws: fleet(n, (i) => (i === 1234 ? { location: { lat: 60.17, long: 24.94 } } : {})),
      d: { ...base, constraints: [{ type: 'geo', location: '60.2,24.9', threshold: 20 }] },
      want: 'w1234',
    },
    { what: 'addon', ws: fleet(n, (i) => (i === 9001 ? { supported_addons: ['image-builder'] } : {})), d: { ...base, constraints: [{ type: 'addons', needs: ['image-builder'] }] }, want: 'w9001' },
    { what: 'architecture', ws: fleet(n, (i) => (i === 5 ? { arch: 'riscv64' } : {})), d: { ...base, arch: ['riscv64'] }, want: 'w5' },
    { what: 'virtualization', ws: fleet(n, (i) => (i === 6060 ? { virtualizations: ['container', 'unikernel'] } : {})), d: { ...base, virtualization: 'unikernel' }, want: 'w6060' },
    { what: 'gpu', ws: fleet(n, (i) => (i === 3333 ? { gpus_free: 1 } : {})), d: { ...base, gpus: 1 }, want: 'w3333' },
    { what: 'large demand', ws: fleet(n, (i) => (i === 4321 ? { cpu_cores_total: 64, cpu_cores_free: 64 } : {})), d: { ...base, vcpus: 32 }, want: 'w4321' },
  ];
  for (const c of cases) {
    const pool = new WorkerPool(c.ws);
    const p = pool.pick(c.d);
    assert.ok(p.ok, c.what);
    assert.equal(p.target.id, c.want, c.what);
    assert.ok(pool.lastPick.visited <= 20, `${c.what}: visited ${pool.lastPick.visited} of ${n}`);
  }
  // and an infeasible one says why, as the full scan does
  const pool = new WorkerPool(fleet(n));
  const d: Demand = { ...base, constraints: [{ type: 'addons', needs: ['nowhere'] }] };
  assert.deepEqual(pool.pick(d), pickWorker(d, pool.values()));
});

test('the index follows upserts: a worker that moved, filled up or lost an addon is not chosen', () => {
  const ws = fleet(2000, (i) => (i < 3 ? { supported_addons: ['sensor'], location: { lat: 10, long: 10 } } : {}));
  const pool = new WorkerPool(ws);
  const d: Demand = { ...base, constraints: [{ type: 'addons', needs: ['sensor'] }, { type: 'geo', location: '10,10', threshold: 10 }] };
  pool.upsert({ ...(ws[0] as WorkerCandidate), location: { lat: 50, long: 10 } });
  pool.upsert({ ...(ws[1] as WorkerCandidate), cpu_cores_free: 0.1 });
  const p = pool.pick(d);
  assert.ok(p.ok);
  assert.equal(p.target.id, 'w2');
  pool.upsert({ ...(ws[2] as WorkerCandidate), supported_addons: [] });
  assert.equal(pool.pick(d).ok, false);
  pool.remove('w2');
  pool.upsert({ ...(ws[1] as WorkerCandidate), cpu_cores_free: 2 });
  const q = pool.pick(d);
  assert.ok(q.ok);
  assert.equal(q.target.id, 'w1');
  assert.equal(pool.misses, 0);
  // excluded workers are never chosen
  assert.equal(pool.pick(d, { exclude: (id) => id === 'w1' }).ok, false);
});

/** A heterogeneous fleet as the bench uses: 2-16 cores, loads 0-60 %, a few sites. */
function mixed(n: number, seed: number): WorkerCandidate[] {
  let a = seed >>> 0;
  const r = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: n }, (_, i) => {
    const cores = [2, 4, 8, 16][Math.floor(r() * 4)] as number;
    return {
      id: `w${i}`,
      name: `worker-${i}`,
      cpu_cores_total: cores,
      cpu_cores_free: cores,
      memory_total_mb: cores * 2048,
      memory_free_mb: cores * 2048,
      gpus_free: 0,
      cpu_percent: Math.round(r() * 60),
      virtualizations: ['container'],
      location: { lat: 40 + r() * 20, long: -5 + r() * 30 },
      jobs: [],
    };
  });
}

function loads(ws: readonly WorkerCandidate[], of: (w: WorkerCandidate) => number = workerLoad): { max: number; sd: number } {
  const l = ws.map(of);
  const mean = l.reduce((s, x) => s + x, 0) / l.length;
  return { max: Math.max(...l), sd: Math.sqrt(l.reduce((s, x) => s + (x - mean) ** 2, 0) / l.length) };
}

test('quality: no over-commit, the same number placed, and the load spread within 0.05 of the full scan', (t) => {
  const n = 1000;
  const ws = mixed(n, 11);
  const pool = new WorkerPool(ws);
  const cur = [...ws];
  const jobs = Array.from({ length: 40 }, (_, i) => ({ ...base, job_name: `job${i}`, vcpus: 0.25, memory_mb: 256 }));
  let placedPool = 0;
  let placedFull = 0;
  // three placements per worker (about a quarter of the fleet's cores), then until full
  for (let i = 0; i < 3 * n; i++) {
    const d = jobs[i % jobs.length] as Demand;
    const w = pool.pickCandidate(d);
    if (w) {
      pool.reserve(w.id, d);
      placedPool++;
    }
    const k = pickWorkerIndex(d, cur);
    if (k >= 0) {
      cur[k] = reserveWorker(cur[k] as WorkerCandidate, d);
      placedFull++;
    }
  }
  const a = loads(pool.values());
  const b = loads(cur);
  // the share of its memory each worker has given to placements (the strategy balances cpu load plus this)
  const memShare = (w: WorkerCandidate) => 1 - w.memory_free_mb / w.memory_total_mb;
  const am = loads(pool.values(), memShare);
  const bm = loads(cur, memShare);
  t.diagnostic(`load after ${3 * n} placements: pool max ${a.max.toFixed(3)} sd ${a.sd.toFixed(3)}; full scan max ${b.max.toFixed(3)} sd ${b.sd.toFixed(3)}`);
  t.diagnostic(`memory given: pool max ${am.max.toFixed(3)} sd ${am.sd.toFixed(3)}; full scan max ${bm.max.toFixed(3)} sd ${bm.sd.toFixed(3)}`);
  assert.ok(am.max <= bm.max + 0.1, `memory given: max ${am.max.toFixed(3)} vs full scan ${bm.max.toFixed(3)}`);
  assert.equal(placedPool, placedFull);
  assert.ok(a.max <= b.max + 0.05, `max load ${a.max.toFixed(3)} vs full scan ${b.max.toFixed(3)}`);
  assert.ok(a.sd <= b.sd + 0.05, `load sd ${a.sd.toFixed(3)} vs full scan ${b.sd.toFixed(3)}`);
  // replicas of one job spread over distinct workers (anti-affinity holds exactly)
  for (const j of jobs) {
    const holders = pool.values().filter((w) => w.jobs.includes(j.job_name));
    const count = pool.values().reduce((s, w) => s + w.jobs.filter((x) => x === j.job_name).length, 0);
    assert.equal(holders.length, count, `${j.job_name}: two replicas on one worker`);
  }
  // fill up: never below zero free, and nothing left that fits
  const big: Demand = { ...base, job_name: 'fill', vcpus: 1, memory_mb: 1024 };
  for (let guard = 0; guard < 40 * n; guard++) {
    const w = pool.pickCandidate(big);
    if (!w) break;
    pool.reserve(w.id, big);
  }
  for (const w of pool.values()) {
    assert.ok(w.cpu_cores_free >= -1e-9 && w.memory_free_mb >= -1e-9, `${w.id} over-committed`);
    assert.ok(w.cpu_cores_free + 1e-9 < 1 || w.memory_free_mb + 1e-9 < 1024, `${w.id} still fits but the pool found nothing`);
  }
  assert.equal(pool.pick(big).ok, false);
  assert.equal(pool.misses, 0);
});

test('more replicas than workers: anti-affinity evens them out within one, decisions stay bounded', () => {
  const n = 1000;
  const pool = new WorkerPool(mixed(n, 5));
  const d: Demand = { ...base, job_name: 'many', vcpus: 0.01, memory_mb: 1 };
  let maxVisited = 0;
  for (let i = 0; i < 3 * n; i++) {
    const w = pool.pickCandidate(d) as WorkerCandidate;
    maxVisited = Math.max(maxVisited, pool.lastPick.visited);
    pool.reserve(w.id, d);
  }
  const per = pool.values().map((w) => w.jobs.length);
  const hist = new Map<number, number>();
  for (const k of per) hist.set(k, (hist.get(k) ?? 0) + 1);
  // the last workers at the fewest replicas of a round are rare: a walk that misses them within its
  // budget takes a worker one above (measured: 988 of 1,000 workers at 3, 6 at 2 and 6 at 4)
  assert.ok((hist.get(3) ?? 0) >= 0.97 * n, `replicas per worker: ${JSON.stringify([...hist])}`);
  assert.ok(Math.min(...per) >= 2 && Math.max(...per) <= 4, `replicas per worker: ${JSON.stringify([...hist])}`);
  assert.ok(maxVisited <= Math.max(256, 16 * defaultLimit(n)), `visited ${maxVisited}`);
});
