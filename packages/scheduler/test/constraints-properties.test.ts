/**
 * Oakestra's constraint types in both schedulers (issue 12 point 4), as properties over random
 * workers, clusters, constraints (clusters, addons, direct, each hard or a preference) and
 * connectivity rules over a random, partly unknown RTT matrix:
 *  - no placement violates a hard constraint (checked by an oracle written apart from the code);
 *  - a placement exists iff some candidate meets the hard constraints: a preference never makes
 *    an otherwise feasible placement fail (dropping every preference changes nothing of ok);
 *  - among the feasible candidates, the one chosen leaves the least preference weight unmet.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Constraint, WorkerSummary } from '@oak/contracts';
import { EPS, pickCluster, pickWorker, type ClusterCandidate, type Demand, type PeerRule, type RttLookup, type WorkerCandidate } from '../src/index.ts';
import { cluster, summary, worker } from './helpers.ts';

const ADDONS = ['gpu-drv', 'image-builder', 'FLOps-learner'] as const;
const WORKERS = ['w0', 'w1', 'w2', 'w3', 'w4', 'w5', 'w6', 'w7'];
const CLUSTERS = ['c0', 'c1', 'c2', 'c3'];
const JOB = 'app.ns.svc.ns';

const rigidArb = fc.oneof(fc.constant(undefined), fc.constant(1), fc.double({ min: 0.05, max: 0.95, noNaN: true }));

function withRigidness<T extends object>(c: T, r: number | undefined): T {
  return r === undefined ? c : { ...c, rigidness: r };
}

const constraintArb: fc.Arbitrary<Constraint> = fc.oneof(
  fc.tuple(fc.subarray([...CLUSTERS, 'nowhere'], { minLength: 1 }), rigidArb).map(([allowed, r]) => withRigidness({ type: 'clusters' as const, allowed }, r)),
  fc.tuple(fc.subarray([...ADDONS], { minLength: 1 }), rigidArb).map(([needs, r]) => withRigidness({ type: 'addons' as const, needs }, r)),
  fc.tuple(fc.constantFrom(...WORKERS), rigidArb).map(([node, r]) => withRigidness({ type: 'direct' as const, node }, r)),
  fc.tuple(fc.constantFrom(...CLUSTERS), rigidArb).map(([c, r]) => withRigidness({ type: 'direct' as const, cluster: c }, r)),
);

const peerArb: fc.Arbitrary<PeerRule> = fc.record({
  target: fc.constant('app.ns.db.ns'),
  threshold_ms: fc.integer({ min: 1, max: 60 }),
  rigidness: fc.oneof(fc.constant(1), fc.double({ min: 0.05, max: 0.95, noNaN: true })),
  workers: fc.subarray(WORKERS, { maxLength: 3 }),
});

/** A symmetric RTT matrix over WORKERS where some pairs are unknown. */
const rttArb: fc.Arbitrary<Map<string, number>> = fc.array(fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined, freq: 3 }), { minLength: 64, maxLength: 64 }).map((cells) => {
  const m = new Map<string, number>();
  for (let i = 0; i < WORKERS.length; i++) {
    for (let j = i + 1; j < WORKERS.length; j++) {
      const v = cells[i * 8 + j];
      if (v !== undefined) m.set(`${WORKERS[i]} ${WORKERS[j]}`, v);
    }
  }
  return m;
});

function lookup(m: Map<string, number>): RttLookup {
  return (a, b) => m.get(`${a} ${b}`) ?? m.get(`${b} ${a}`);
}

const workerArb = (id: string): fc.Arbitrary<WorkerCandidate> =>
  fc.record({ free: fc.integer({ min: 0, max: 4 }), addons: fc.subarray([...ADDONS]), pct: fc.integer({ min: 0, max: 100 }), jobs: fc.array(fc.constantFrom(JOB, 'x.y.z.w'), { maxLength: 2 }) }).map((r) =>
    worker(id, { cpu_cores_free: r.free, cpu_percent: r.pct, supported_addons: r.addons, jobs: r.jobs }),
  );

const workersArb = fc.subarray(WORKERS, { minLength: 0 }).chain((ids) => fc.tuple(...ids.map(workerArb)));

const demandArb: fc.Arbitrary<Demand> = fc.record({
  vcpus: fc.integer({ min: 0, max: 3 }),
  constraints: fc.array(constraintArb, { maxLength: 3 }),
  peers: fc.array(peerArb, { maxLength: 2 }),
}).map((r) => ({ job_name: JOB, virtualization: 'container' as const, vcpus: r.vcpus, memory_mb: 64, gpus: 0, constraints: r.constraints, peers: r.peers }));

const hard = (c: { rigidness?: number }): boolean => c.rigidness === undefined || c.rigidness >= 1;

function withoutPreferences(d: Demand): Demand {
  return { ...d, constraints: d.constraints.filter(hard), peers: (d.peers ?? []).filter(hard) };
}

/** Oracle: a measured RTT over the threshold to any target worker violates a hard peer rule. */
function peerViolated(workerId: string, p: PeerRule, rtt: RttLookup): boolean {
  return p.workers.some((t) => t !== workerId && (rtt(workerId, t) ?? -1) > p.threshold_ms);
}

/** Oracle for one worker (cluster addons given): the hard constraints at worker level. */
function workerOk(w: { id: string; name: string; supported_addons?: readonly string[] | undefined }, d: Demand, clusterAddons: readonly string[], rtt: RttLookup): boolean {
  for (const c of d.constraints.filter(hard)) {
    if (c.type === 'direct' && c.node !== undefined && c.node !== w.id && c.node !== w.name) return false;
    if (c.type === 'addons' && !c.needs.every((n) => (w.supported_addons ?? []).includes(n) || clusterAddons.includes(n))) return false;
  }
  return !(d.peers ?? []).filter(hard).some((p) => peerViolated(w.id, p, rtt));
}

function workerFeasible(w: WorkerCandidate, d: Demand, rtt: RttLookup): boolean {
  return w.cpu_cores_free + EPS >= d.vcpus && w.memory_free_mb + EPS >= d.memory_mb && workerOk(w, d, [], rtt);
}

/** Oracle for a cluster: its own hard constraints, and one worker of its summary that holds the instance and meets the worker ones. */
function clusterFeasible(c: ClusterCandidate, d: Demand, rtt: RttLookup): boolean {
  if (!c.active) return false;
  for (const k of d.constraints.filter(hard)) {
    if (k.type === 'clusters' && !k.allowed.includes(c.id)) return false;
    if (k.type === 'direct' && k.cluster !== undefined && k.cluster !== c.id) return false;
  }
  return c.workers.some((w: WorkerSummary) => w.cpu_cores_free + EPS >= d.vcpus && w.memory_free_mb + EPS >= d.memory_mb && workerOk(w, d, c.supported_addons ?? [], rtt));
}

const clustersArb: fc.Arbitrary<ClusterCandidate[]> = fc.tuple(
  ...CLUSTERS.map((id, ci) =>
    fc.record({
      present: fc.boolean(),
      active: fc.boolean(),
      addons: fc.subarray([...ADDONS], { maxLength: 1 }),
      workers: fc.subarray([WORKERS[ci * 2] as string, WORKERS[ci * 2 + 1] as string]).chain((ids) =>
        fc.tuple(...ids.map((wid) => fc.record({ free: fc.integer({ min: 0, max: 4 }), addons: fc.subarray([...ADDONS]) }).map((r) => summary(wid, { cpu_cores_free: r.free, supported_addons: r.addons })))),
      ),
    }).map((r) => ({ present: r.present, c: cluster(id, { active: r.active, workers: r.workers, ...(r.addons.length > 0 ? { supported_addons: r.addons } : {}) }) })),
  ),
).map((xs) => xs.filter((x) => x.present).map((x) => x.c));

test('pickWorker: never against a hard constraint, ok iff a worker meets them, preferences never block', () => {
  fc.assert(
    fc.property(demandArb, workersArb, rttArb, fc.constantFrom('least-loaded', 'best-fit', 'spread') as fc.Arbitrary<'least-loaded'>, (d, ws, m, strategy) => {
      const rtt = lookup(m);
      const p = pickWorker(d, ws, { strategy, rttMs: rtt });
      assert.equal(p.ok, ws.some((w) => workerFeasible(w, d, rtt)));
      if (p.ok) assert.ok(workerFeasible(p.target, d, rtt), `target ${p.target.id} breaks a hard constraint`);
      const plain = pickWorker(withoutPreferences(d), ws, { strategy, rttMs: rtt });
      assert.equal(plain.ok, p.ok);
    }),
    { numRuns: 1500 },
  );
});

test('pickWorker: the chosen worker leaves the least preference weight unmet', () => {
  fc.assert(
    fc.property(demandArb, workersArb, rttArb, (d, ws, m) => {
      const rtt = lookup(m);
      const p = pickWorker(d, ws, { rttMs: rtt });
      if (!p.ok) return;
      const unmet = (w: WorkerCandidate): number => {
        let pen = 0;
        for (const c of d.constraints) {
          if (hard(c)) continue;
          const r = c.rigidness ?? 1;
          if (c.type === 'direct' && c.node !== undefined && c.node !== w.id) pen += r;
          if (c.type === 'addons' && !c.needs.every((n) => (w.supported_addons ?? []).includes(n))) pen += r;
        }
        for (const q of d.peers ?? []) {
          const unknown = q.workers.some((t) => t !== w.id && rtt(w.id, t) === undefined);
          const weight = hard(q) ? 1 : q.rigidness;
          if (!hard(q) && peerViolated(w.id, q, rtt)) pen += weight;
          else if (unknown) pen += 0.5 * weight;
        }
        return pen;
      };
      const best = Math.min(...ws.filter((w) => workerFeasible(w, d, rtt)).map(unmet));
      assert.ok(Math.abs(unmet(p.target) - best) < 1e-9, `chose ${p.target.id} with ${unmet(p.target)} unmet, best is ${best}`);
    }),
    { numRuns: 1500 },
  );
});

test('pickCluster: never against a hard constraint, ok iff a cluster meets them, preferences never block', () => {
  fc.assert(
    fc.property(demandArb, clustersArb, rttArb, fc.constantFrom('least-loaded', 'best-fit', 'spread') as fc.Arbitrary<'best-fit'>, (d, cs, m, strategy) => {
      const rtt = lookup(m);
      const p = pickCluster(d, cs, { strategy, rttMs: rtt });
      assert.equal(p.ok, cs.some((c) => clusterFeasible(c, d, rtt)), p.ok ? `chose ${p.target.id}` : `${p.reason}: ${p.detail}`);
      if (p.ok) assert.ok(clusterFeasible(p.target, d, rtt), `target ${p.target.id} breaks a hard constraint`);
      assert.equal(pickCluster(withoutPreferences(d), cs, { strategy, rttMs: rtt }).ok, p.ok);
    }),
    { numRuns: 1500 },
  );
});
