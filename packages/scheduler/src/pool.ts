/**
 * WorkerPool: the workers of one cluster kept indexed between decisions, so that a decision costs
 * about the same at 10,000 workers as at 1,000 (issue 13). pickWorker scans every worker per
 * decision; the pool answers the same question from indexes plus a bounded sample.
 *
 * Indexes, updated on every upsert/remove (O(1) each, a worker sits in a handful of bags):
 *  - capacity: one bag per (virtualization offered, architecture, free-cpu class, free-memory
 *    class, free-GPU class); classes are powers of two, so a demand visits only the bags whose
 *    upper bound holds it (full workers and the wrong kind are never looked at);
 *  - addons: one bag per label a worker offers itself;
 *  - location: grid cells of 1 and 10 degrees (workers without a location of their own in one bag:
 *    their location is the cluster's);
 *  - id and name, for `direct` node constraints.
 *
 * A decision (pick):
 *  1. chooses the smallest of the candidate sets these indexes give for the demand (the capacity
 *     bags; the bag of each addon the cluster does not offer; the cells around each hard geo
 *     rule; the named worker of a direct rule): every worker outside it is infeasible;
 *  2. visits that set in a random order (an arithmetic walk with a random start and a stride
 *     coprime with its size: every member exactly once), running exactly pickWorker's checks, so a
 *     worker that does not satisfy every hard constraint is never chosen and, when any feasible
 *     worker exists, one is found (the walk goes on to the end if it must);
 *  3. stops once `limit` feasible workers of the best class were seen (class: no preference left
 *     unmet, and no more instances of the same job than the worker of the pool that holds the
 *     fewest: the lowest penalty and anti-affinity keys there can be; a per-job count of workers
 *     by instances held gives that floor), or, when such workers are rare, after `budget` visits
 *     with at least one feasible worker;
 *  4. ranks what it saw with pickWorker's key (rank.ts): the answer is the best of the sample.
 * Like Nomad's feasibility iterators over a shuffled node list with a limit of log2(n) scored
 * candidates; here the index first removes what cannot fit, and the limit counts only candidates
 * of the best class, so anti-affinity and preferences keep their exact meaning (a replica lands on
 * a worker without another replica whenever the sample can find one). With fewer than `exactBelow`
 * candidates in the chosen set the walk sees all of them, and a pool of fewer than `scanBelow`
 * workers is scanned whole: the answer is then pickWorker's, exactly.
 *
 * The random order comes from a seeded generator: the same sequence of calls gives the same answers.
 */
import type { Virtualization } from '@oak/contracts';
import { archAllowed, normalizeArch } from '@oak/contracts';
import { compileConstraints, type CompiledConstraints, type GeoRule } from './demand.ts';
import { EPS, fits, matchesRef, workerPenalty, workerSatisfies, workerWarnings, withinGeo } from './feasible.ts';
import { pickWorker } from './pick-worker.ts';
import { compareKeys, workerKey, type RankKey } from './rank.ts';
import { reserveWorker } from './reserve.ts';
import type { Demand, GeoPoint, PickWorkerOptions, Placement, RttLookup, Strategy, WorkerCandidate } from './types.ts';

export interface WorkerPoolOptions {
  /** seed of the random visiting order (default fixed: runs are reproducible) */
  seed?: number;
  /** candidates of the best class to rank before stopping, by pool size; default max(8, ceil(log2 n)) */
  limit?: (n: number) => number;
  /** visits after which a walk that found a feasible worker stops anyway; default max(128, 8 * limit) */
  budget?: (limit: number) => number;
  /** a candidate set smaller than this is visited whole (exact answer); default 64 */
  exactBelow?: number;
  /** a pool smaller than this is scanned whole without its indexes (exact answer); default 128 */
  scanBelow?: number;
}

export interface PoolPickOptions extends PickWorkerOptions {
  /** workers not to choose (an instance moving away, workers it failed on) */
  exclude?: (id: string) => boolean;
}

/** Statistics of the last pick, for tests and the bench. */
export interface PickStats {
  /** size of the candidate set the indexes gave */
  candidates: number;
  /** members of it visited */
  visited: number;
  /** feasible workers among them (in a walk that sees every candidate: those that became the best so far) */
  feasible: number;
  /** which index the set came from */
  index: 'node' | 'capacity' | 'addon' | 'geo' | 'all';
}

/** The state of one decision's walk (or two: preferences first). */
interface Walk {
  demand: Demand;
  cc: CompiledConstraints;
  strategy: Strategy;
  clusterLoc: GeoPoint | null;
  addons: readonly string[] | undefined;
  rtt: RttLookup | undefined;
  exclude: ((id: string) => boolean) | undefined;
  /** the demand's architectures, normalised (undefined: any) */
  archs: Set<string> | undefined;
  limit: number;
  budget: number;
  floorJob: number;
  best: WorkerCandidate | undefined;
  bestKey: RankKey;
  key: RankKey;
  good: number;
  feasible: number;
  visited: number;
}

interface Entry {
  w: WorkerCandidate;
  /** the worker's architecture, normalised ('' when it reported none: no arch list admits it) */
  arch: string;
  /** the bags it is in, and its position in each (parallel arrays) */
  bags: Bag[];
  pos: number[];
  /** keys of the capacity and location bags, to skip re-filing when they did not change */
  capKey: string;
  geoKey: string;
}

class Bag {
  readonly items: Entry[] = [];

  add(e: Entry): void {
    e.bags.push(this);
    e.pos.push(this.items.length);
    this.items.push(e);
  }

  /** removes the member at `i` (swap with the last; the moved member's position is updated) */
  removeAt(i: number): void {
    const last = this.items.pop() as Entry;
    if (i >= this.items.length) return;
    this.items[i] = last;
    const k = last.bags.indexOf(this);
    last.pos[k] = i;
  }
}

class CapBag extends Bag {
  constructor(
    readonly arch: string | undefined,
    /** every member's free amount is below these (exclusive), or the class is the last one */
    readonly cpuUpper: number,
    readonly memUpper: number,
    readonly gpuUpper: number,
  ) {
    super();
  }
}

const CPU_UNIT = 0.125;
const MEM_UNIT = 64;
const TOP = 30;

/** power-of-two class of a free amount: 0 below one unit (or negative), c for [unit*2^(c-1), unit*2^c) */
function classOf(free: number, unit: number): number {
  if (!(free >= unit)) return 0;
  let c = Math.min(TOP, Math.floor(Math.log2(free / unit)) + 1);
  // log2 may round at a boundary: the class must hold upperOf(c - 1) <= free < upperOf(c)
  while (c < TOP && free >= upperOf(c, unit)) c++;
  while (c > 1 && free < upperOf(c - 1, unit)) c--;
  return c;
}

/** the exclusive upper bound of a class (Infinity for the last one) */
function upperOf(c: number, unit: number): number {
  return c >= TOP ? Infinity : unit * 2 ** c;
}

function gpuClass(g: number): number {
  return g >= 3 ? 3 : g >= 2 ? 2 : g >= 1 ? 1 : 0;
}

const GPU_UPPER = [1, 2, 3, Infinity];

const EARTH_RADIUS_KM = 6371.0088;
const DEG = 180 / Math.PI;
const FINE_DEG = 1;
const COARSE_DEG = 10;
/** a geo rule whose cells would be more than this many is not looked up in that grid */
const MAX_CELLS = 160;

function cellKey(latIdx: number, longIdx: number): number {
  return (latIdx + 1000) * 4000 + (longIdx + 2000);
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

export function defaultLimit(n: number): number {
  return Math.max(8, Math.ceil(Math.log2(Math.max(1, n))));
}

export class WorkerPool {
  readonly #byId = new Map<string, Entry>();
  readonly #byName = new Map<string, Bag>();
  readonly #all = new Bag();
  readonly #cap = new Map<string, CapBag>();
  readonly #capByVirt = new Map<Virtualization, CapBag[]>();
  readonly #addons = new Map<string, Bag>();
  readonly #fine = new Map<number, Bag>();
  readonly #coarse = new Map<number, Bag>();
  readonly #noLocation = new Bag();
  /** per job: how many workers hold exactly k of its instances (k >= 1), and how many hold any */
  readonly #jobHist = new Map<string, Map<number, number>>();
  readonly #jobHolders = new Map<string, number>();
  /** the largest radius of any worker's location seen (never lowered: a safe bound for the cells) */
  #maxRadiusKm = 0;
  readonly #rand: () => number;
  readonly #limit: (n: number) => number;
  readonly #budget: (limit: number) => number;
  readonly #exactBelow: number;
  readonly #scanBelow: number;
  /** statistics of the last pick */
  lastPick: PickStats = { candidates: 0, visited: 0, feasible: 0, index: 'capacity' };
  /** picks where the pool found nothing and the full scan found a worker (a bug if ever above 0) */
  misses = 0;

  constructor(workers: Iterable<WorkerCandidate> = [], opts: WorkerPoolOptions = {}) {
    this.#rand = mulberry32(opts.seed ?? 0x5eed);
    this.#limit = opts.limit ?? defaultLimit;
    this.#budget = opts.budget ?? ((l) => Math.max(128, 8 * l));
    this.#exactBelow = opts.exactBelow ?? 64;
    this.#scanBelow = opts.scanBelow ?? 128;
    for (const w of workers) this.upsert(w);
  }

  get size(): number {
    return this.#all.items.length;
  }

  get(id: string): WorkerCandidate | undefined {
    return this.#byId.get(id)?.w;
  }

  has(id: string): boolean {
    return this.#byId.has(id);
  }

  /** every worker, in no particular order (a new array) */
  values(): WorkerCandidate[] {
    return this.#all.items.map((e) => e.w);
  }

  /** Adds a worker or replaces the one with its id (its report changed, or a reservation). */
  upsert(w: WorkerCandidate): void {
    const capKey = this.#capKeyOf(w);
    const geoKey = w.location === null ? '' : `${w.location.lat},${w.location.long}`;
    const e = this.#byId.get(w.id);
    if (e) {
      if (e.w.jobs !== w.jobs) {
        this.#countJobs(e.w.jobs, -1);
        this.#countJobs(w.jobs, 1);
      }
      if (e.geoKey === geoKey && e.w.name === w.name && sameList(e.w.supported_addons, w.supported_addons) && (e.w.location?.radius_km ?? 0) === (w.location?.radius_km ?? 0)) {
        // only its capacity (or kind) may have changed: the other bags stay
        if (e.capKey !== capKey) {
          this.#unfileCap(e);
          e.w = w;
          e.arch = archOf(w);
          e.capKey = capKey;
          this.#fileCap(e);
        } else e.w = w;
        return;
      }
      this.#unfile(e);
      e.w = w;
      e.arch = archOf(w);
      e.capKey = capKey;
      e.geoKey = geoKey;
      this.#file(e);
      return;
    }
    this.#countJobs(w.jobs, 1);
    const fresh: Entry = { w, arch: archOf(w), bags: [], pos: [], capKey, geoKey };
    this.#byId.set(w.id, fresh);
    this.#file(fresh);
  }

  /** Forgets a worker (it left, died or stopped reporting). True when it was there. */
  remove(id: string): boolean {
    const e = this.#byId.get(id);
    if (!e) return false;
    this.#countJobs(e.w.jobs, -1);
    this.#unfile(e);
    this.#byId.delete(id);
    return true;
  }

  /** Reserves the demand on a worker of the pool (see reserveWorker); returns the new candidate. */
  reserve(id: string, d: Demand): WorkerCandidate | undefined {
    const w = this.get(id);
    if (!w) return undefined;
    const next = reserveWorker(w, d);
    this.upsert(next);
    return next;
  }

  /** Picks the worker for one instance, or says why none fits (see the file comment). */
  pick(demand: Demand, opts: PoolPickOptions = {}): Placement<WorkerCandidate> {
    const w = this.pickCandidate(demand, opts);
    if (w) {
      const cc = compileConstraints(demand);
      const warnings = workerWarnings(w, w.location ?? opts.clusterLocation ?? null, cc, opts.clusterAddons, opts.rttMs);
      return warnings.length > 0 ? { ok: true, target: w, warnings } : { ok: true, target: w };
    }
    // nothing is feasible: the reason is the one the full scan gives
    const ex = opts.exclude;
    const all = ex === undefined ? this.values() : this.values().filter((x) => !ex(x.id));
    const r = pickWorker(demand, all, opts);
    // never expected (every feasible worker is in the set walked to its end): counted for the tests
    if (r.ok) this.misses++;
    return r;
  }

  /** The chosen worker, or undefined when none is feasible. */
  pickCandidate(demand: Demand, opts: PoolPickOptions = {}): WorkerCandidate | undefined {
    const cc = compileConstraints(demand);
    // a small pool costs less to scan than to look up
    const set = this.size < this.#scanBelow ? setOf([this.#all], 'all') : this.#candidateSet(demand, cc, opts);
    const n = set.total;
    const exact = n < this.#exactBelow || set.index === 'all';
    const limit = exact ? Infinity : this.#limit(this.size);
    const walk: Walk = {
      demand,
      cc,
      strategy: opts.strategy ?? 'least-loaded',
      clusterLoc: opts.clusterLocation ?? null,
      addons: opts.clusterAddons,
      rtt: opts.rttMs,
      exclude: opts.exclude,
      archs: demand.arch !== undefined && demand.arch.length > 0 ? new Set(demand.arch.map(normalizeArch)) : undefined,
      limit,
      budget: exact ? Infinity : this.#budget(limit),
      // the best anti-affinity key any worker has: a feasible worker there is as good as it gets
      floorJob: this.minSameJob(demand.job_name),
      best: undefined,
      bestKey: { penalty: 0, sameJob: 0, primary: 0, secondary: 0 },
      key: { penalty: 0, sameJob: 0, primary: 0, secondary: 0 },
      good: 0,
      feasible: 0,
      visited: 0,
    };
    // Preferences: the workers that meet them all are in the index set of each one; when such a
    // set is smaller than the candidate set, it is walked first (its members then count as good).
    if (!exact && cc.soft.length > 0) {
      let pref: CandidateSet | undefined;
      for (const s of cc.soft) {
        const ps = this.#indexSet(s.cc, opts);
        if (ps !== undefined && ps.total < (pref?.total ?? n)) pref = ps;
      }
      if (pref !== undefined) this.#walk(pref, walk);
    }
    if (walk.good < walk.limit && !(walk.best !== undefined && walk.visited >= walk.budget)) this.#walk(set, walk);
    this.lastPick = { candidates: n, visited: walk.visited, feasible: walk.feasible, index: set.index };
    return walk.best;
  }

  /** Visits `set` in a random order, updating the walk's best, until it is good enough (see the file comment). */
  #walk(set: CandidateSet, st: Walk): void {
    const n = set.total;
    if (n === 0) return;
    const start = Math.floor(this.#rand() * n);
    let stride = 1;
    if (n > 2) {
      do stride = 1 + Math.floor(this.#rand() * (n - 1));
      while (gcd(stride, n) !== 1);
    }
    const { bags, ends } = set;
    const { demand, cc, exclude, addons, rtt, archs } = st;
    const v = demand.virtualization;
    const lazy = st.limit === Infinity && st.budget === Infinity;
    let g = start;
    for (let i = 0; i < n; i++) {
      if (i > 0) {
        g += stride;
        if (g >= n) g -= n;
      }
      st.visited++;
      const e = memberAt(bags, ends, g);
      const w = e.w;
      if ((exclude === undefined || !exclude(w.id)) && fits(w, demand) && (w.virtualizations[0] === v || w.virtualizations.includes(v)) && (archs === undefined || (e.arch !== '' && archs.has(e.arch)))) {
        const loc = w.location ?? st.clusterLoc;
        if (lazy) {
          // a walk that sees everything needs no counts: as pickWorker, the constraint checks run
          // only for a worker that would rank above the best so far
          const key = workerKey(w, demand, st.strategy, st.key);
          key.penalty = cc.scored ? workerPenalty(w, loc, cc, addons, rtt) : 0;
          const best = st.best;
          if ((best === undefined || compareKeys(key, w.id, w.name, st.bestKey, best.id, best.name) < 0) && (cc.none || workerSatisfies(w, loc, cc, true, addons, rtt))) {
            st.feasible++;
            st.best = w;
            st.key = st.bestKey;
            st.bestKey = key;
          }
        } else if (cc.none || workerSatisfies(w, loc, cc, true, addons, rtt)) {
          st.feasible++;
          const key = workerKey(w, demand, st.strategy, st.key);
          key.penalty = cc.scored ? workerPenalty(w, loc, cc, addons, rtt) : 0;
          if (key.penalty === 0 && key.sameJob <= st.floorJob) st.good++;
          const best = st.best;
          if (best === undefined || compareKeys(key, w.id, w.name, st.bestKey, best.id, best.name) < 0) {
            st.best = w;
            st.key = st.bestKey;
            st.bestKey = key;
          }
          if (st.good >= st.limit) return;
        }
      }
      if (st.best !== undefined && st.visited >= st.budget) return;
    }
  }

  // ---------------------------------------------------------------- indexes

  /** The fewest instances of `job` any worker of the pool holds (anti-affinity's best key). */
  minSameJob(job: string): number {
    const holders = this.#jobHolders.get(job) ?? 0;
    if (holders < this.size) return 0;
    let min = Infinity;
    for (const [k, n] of this.#jobHist.get(job) ?? []) if (n > 0 && k < min) min = k;
    return min === Infinity ? 0 : min;
  }

  #countJobs(jobs: readonly string[], sign: 1 | -1): void {
    if (jobs.length === 0) return;
    if (jobs.length === 1) {
      this.#countJob(jobs[0] as string, 1, sign);
      return;
    }
    const seen = new Map<string, number>();
    for (const j of jobs) seen.set(j, (seen.get(j) ?? 0) + 1);
    for (const [j, k] of seen) this.#countJob(j, k, sign);
  }

  /** one worker holding k instances of job j comes (sign 1) or goes (-1) */
  #countJob(j: string, k: number, sign: 1 | -1): void {
    {
      let h = this.#jobHist.get(j);
      if (!h) {
        h = new Map();
        this.#jobHist.set(j, h);
      }
      const next = (h.get(k) ?? 0) + sign;
      if (next > 0) h.set(k, next);
      else h.delete(k);
      const holders = (this.#jobHolders.get(j) ?? 0) + sign;
      if (holders > 0) this.#jobHolders.set(j, holders);
      else {
        this.#jobHolders.delete(j);
        this.#jobHist.delete(j);
      }
    }
  }

  #capKeyOf(w: WorkerCandidate): string {
    return `${w.virtualizations.join(',')}|${w.arch ?? ''}|${classOf(w.cpu_cores_free + EPS, CPU_UNIT)}|${classOf(w.memory_free_mb + EPS, MEM_UNIT)}|${gpuClass(w.gpus_free + EPS)}`;
  }

  /** files the entry in its capacity bags (one per virtualization it offers) */
  #fileCap(e: Entry): void {
    const w = e.w;
    const cpuC = classOf(w.cpu_cores_free + EPS, CPU_UNIT);
    const memC = classOf(w.memory_free_mb + EPS, MEM_UNIT);
    const gpuC = gpuClass(w.gpus_free + EPS);
    for (const v of new Set(w.virtualizations)) {
      const k = `${v}|${w.arch ?? ''}|${cpuC}|${memC}|${gpuC}`;
      let b = this.#cap.get(k);
      if (!b) {
        b = new CapBag(w.arch, upperOf(cpuC, CPU_UNIT), upperOf(memC, MEM_UNIT), GPU_UPPER[gpuC] as number);
        this.#cap.set(k, b);
        let list = this.#capByVirt.get(v);
        if (!list) {
          list = [];
          this.#capByVirt.set(v, list);
        }
        list.push(b);
      }
      b.add(e);
    }
  }

  /** takes the entry out of its capacity bags only */
  #unfileCap(e: Entry): void {
    for (let k = e.bags.length - 1; k >= 0; k--) {
      const b = e.bags[k] as Bag;
      if (!(b instanceof CapBag)) continue;
      b.removeAt(e.pos[k] as number);
      e.bags.splice(k, 1);
      e.pos.splice(k, 1);
    }
  }

  #file(e: Entry): void {
    const w = e.w;
    this.#all.add(e);
    let named = this.#byName.get(w.name);
    if (!named) {
      named = new Bag();
      this.#byName.set(w.name, named);
    }
    named.add(e);
    this.#fileCap(e);
    for (const a of new Set(w.supported_addons ?? [])) {
      let b = this.#addons.get(a);
      if (!b) {
        b = new Bag();
        this.#addons.set(a, b);
      }
      b.add(e);
    }
    const loc = w.location;
    if (loc === null) this.#noLocation.add(e);
    else {
      this.#maxRadiusKm = Math.max(this.#maxRadiusKm, loc.radius_km ?? 0);
      for (const [grid, size] of [
        [this.#fine, FINE_DEG],
        [this.#coarse, COARSE_DEG],
      ] as const) {
        const k = cellKey(Math.floor(loc.lat / size), Math.floor(normLong(loc.long) / size));
        let b = grid.get(k);
        if (!b) {
          b = new Bag();
          grid.set(k, b);
        }
        b.add(e);
      }
    }
  }

  #unfile(e: Entry): void {
    for (let k = e.bags.length - 1; k >= 0; k--) (e.bags[k] as Bag).removeAt(e.pos[k] as number);
    e.bags.length = 0;
    e.pos.length = 0;
  }

  /** The smallest set the indexes give that holds every feasible worker (see the file comment). */
  #candidateSet(d: Demand, cc: CompiledConstraints, opts: PoolPickOptions): CandidateSet {
    const capBags: Bag[] = [];
    for (const b of this.#capByVirt.get(d.virtualization) ?? []) {
      if (b.items.length === 0) continue;
      // members hold free + EPS < upper, and fitting needs free + EPS >= demand
      if (b.cpuUpper <= d.vcpus || b.memUpper <= d.memory_mb || (d.gpus > 0 && b.gpuUpper <= d.gpus)) continue;
      if (d.arch !== undefined && d.arch.length > 0 && !archAllowed(d.arch, b.arch)) continue;
      capBags.push(b);
    }
    const cap = setOf(capBags, 'capacity');
    const other = this.#indexSet(cc, opts);
    return other !== undefined && other.total < cap.total ? other : cap;
  }

  /**
   * The smallest set the node, addon and geo indexes give for the constraints (every worker that
   * satisfies them is in it), or undefined when they give none.
   */
  #indexSet(cc: CompiledConstraints, opts: PoolPickOptions): CandidateSet | undefined {
    // a direct node rule names one worker (by id or name): only it can be chosen
    if (cc.nodes.length > 0) {
      const ref = cc.nodes[0] as string;
      const bags: Bag[] = [];
      const byId = this.#byId.get(ref);
      if (byId) {
        const one = new Bag();
        one.items.push(byId);
        bags.push(one);
      }
      const named = this.#byName.get(ref);
      if (named) {
        // the same worker may match by id and by name: drop the duplicate
        const rest = new Bag();
        for (const e of named.items) if (e !== byId && matchesRef(e.w, ref)) rest.items.push(e);
        bags.push(rest);
      }
      return setOf(bags, 'node');
    }
    let best: CandidateSet | undefined;
    for (const label of cc.needs) {
      if (opts.clusterAddons?.includes(label)) continue;
      const b = this.#addons.get(label);
      const s = setOf(b ? [b] : [], 'addon');
      if (best === undefined || s.total < best.total) best = s;
    }
    for (const g of cc.geo) {
      const s = this.#geoSet(g, opts.clusterLocation ?? null);
      if (s !== undefined && (best === undefined || s.total < best.total)) best = s;
    }
    return best;
  }

  /** The cells that may hold a worker satisfying the geo rule (undefined: too many to look up). */
  #geoSet(g: GeoRule, clusterLoc: GeoPoint | null): CandidateSet | undefined {
    const bags: Bag[] = [];
    // workers without a location of their own are where the cluster is: all in, or all out
    if (this.#noLocation.items.length > 0 && withinGeo(clusterLoc, g)) bags.push(this.#noLocation);
    const p = g.point;
    if (p === null) return setOf(bags, 'geo');
    // a worker within the rule is at most this far from the rule's point (centre to centre)
    const reachKm = (g.threshold_km + this.#maxRadiusKm + (p.radius_km ?? 0)) * 1.001 + 1;
    const reach = reachKm / EARTH_RADIUS_KM;
    if (reach >= Math.PI) return undefined;
    const dLatDeg = reach * DEG;
    const latLo = Math.max(-90, p.lat - dLatDeg);
    const latHi = Math.min(90, p.lat + dLatDeg);
    const maxAbsLat = Math.max(Math.abs(latLo), Math.abs(latHi));
    // haversine: sin(d/2) >= cos(lat_max) * sin(dLong/2), so dLong <= 2 asin(sin(d/2) / cos(lat_max))
    const cosMax = Math.cos(maxAbsLat / DEG);
    const s = Math.sin(reach / 2) / cosMax;
    const dLongDeg = cosMax <= 1e-6 || s >= 1 ? 180 : 2 * Math.asin(s) * DEG;
    for (const [grid, size] of [
      [this.#fine, FINE_DEG],
      [this.#coarse, COARSE_DEG],
    ] as const) {
      const la0 = Math.floor(latLo / size);
      const la1 = Math.floor(latHi / size);
      const perRow = Math.round(360 / size);
      let lo0: number;
      let lo1: number;
      if (dLongDeg >= 180) {
        lo0 = 0;
        lo1 = perRow - 1;
      } else {
        lo0 = Math.floor((normLong(p.long) - dLongDeg) / size);
        lo1 = Math.floor((normLong(p.long) + dLongDeg) / size);
        if (lo1 - lo0 + 1 >= perRow) {
          lo0 = 0;
          lo1 = perRow - 1;
        }
      }
      if ((la1 - la0 + 1) * (lo1 - lo0 + 1) > MAX_CELLS) continue;
      for (let la = la0; la <= la1; la++) {
        for (let lo = lo0; lo <= lo1; lo++) {
          const b = grid.get(cellKey(la, ((lo % perRow) + perRow) % perRow));
          if (b && b.items.length > 0) bags.push(b);
        }
      }
      return setOf(bags, 'geo');
    }
    return undefined;
  }
}

function archOf(w: WorkerCandidate): string {
  return w.arch === undefined || w.arch === '' ? '' : normalizeArch(w.arch);
}

/** longitude in [0, 360) */
function normLong(long: number): number {
  const x = long % 360;
  const y = x < 0 ? x + 360 : x;
  // -1e-300 + 360 rounds to 360
  return y >= 360 ? 0 : y;
}

function sameList(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === b) return true;
  const x = a ?? [];
  const y = b ?? [];
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

interface CandidateSet {
  bags: Bag[];
  /** ends[i]: the members of bags[0..i] together */
  ends: number[];
  total: number;
  index: PickStats['index'];
}

function setOf(bags: Bag[], index: PickStats['index']): CandidateSet {
  const ends: number[] = [];
  let total = 0;
  for (const b of bags) {
    total += b.items.length;
    ends.push(total);
  }
  return { bags, ends, total, index };
}

/** the g-th member of the bags taken together (binary search over the running totals) */
function memberAt(bags: readonly Bag[], ends: readonly number[], g: number): Entry {
  let lo = 0;
  let hi = ends.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((ends[mid] as number) > g) hi = mid;
    else lo = mid + 1;
  }
  const before = lo === 0 ? 0 : (ends[lo - 1] as number);
  return (bags[lo] as Bag).items[g - before] as Entry;
}
