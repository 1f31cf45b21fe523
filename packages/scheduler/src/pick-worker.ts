/**
 * Cluster level: pick a worker from real-time worker reports.
 *
 * Pipeline (one pass over the workers, no intermediate arrays):
 *   virtualization -> constraints (direct node, addons, geo, latency, connectivity) -> resources
 *   (vcpus, memory, GPUs) -> rank (unmet preferences, anti-affinity, then strategy; see rank.ts).
 * Constraints with rigidness below 1 never exclude a worker: they only add to its penalty.
 * The hot loop runs the checks cheapest first and the constraint checks lazily (only for a worker
 * that would rank above the best so far); the order matters only for the reason, which the
 * explain pass computes in pipeline order.
 * When no worker is feasible, a second pass explains why: the reason is the one of the stage the
 * furthest-getting worker failed at, with a detail naming the closest miss.
 */
import { compileConstraints, describeAmounts, fmt, type CompiledConstraints } from './demand.ts';
import { EPS, fits, geoDistanceKm, latencyMs, matchesRef, offersAll, peerStatus, supports, workerPenalty, workerSatisfies, workerWarnings } from './feasible.ts';
import { formatGeoPoint } from './geo.ts';
import { compareKeys, workerKey, type RankKey } from './rank.ts';
import type { Demand, GeoPoint, PickWorkerOptions, Placement, WorkerCandidate } from './types.ts';

/** The worker's own location, else the cluster's. */
function effectiveLocation(w: WorkerCandidate, clusterLocation: GeoPoint | null): GeoPoint | null {
  return w.location ?? clusterLocation;
}

/** Index of the best feasible worker, or -1. */
export function pickWorkerIndex(demand: Demand, workers: readonly WorkerCandidate[], opts: PickWorkerOptions = {}): number {
  const strategy = opts.strategy ?? 'least-loaded';
  const clusterLoc = opts.clusterLocation ?? null;
  const cc = compileConstraints(demand);
  const v = demand.virtualization;
  let best = -1;
  const addons = opts.clusterAddons;
  const rtt = opts.rttMs;
  let bestKey: RankKey = { penalty: 0, sameJob: 0, primary: 0, secondary: 0 };
  let key: RankKey = { penalty: 0, sameJob: 0, primary: 0, secondary: 0 };
  for (let i = 0; i < workers.length; i++) {
    const w = workers[i] as WorkerCandidate;
    // Cheap checks first; the constraint checks (trigonometry for geo and latency) only run for
    // a worker that would beat the best so far: the result is the same, the work much smaller.
    if (!fits(w, demand) || !supports(w, v)) continue;
    workerKey(w, demand, strategy, key);
    key.penalty = cc.scored ? workerPenalty(w, effectiveLocation(w, clusterLoc), cc, addons, rtt) : 0;
    if (best >= 0) {
      const b = workers[best] as WorkerCandidate;
      if (compareKeys(key, w.id, w.name, bestKey, b.id, b.name) >= 0) continue;
    }
    if (!cc.none && !workerSatisfies(w, effectiveLocation(w, clusterLoc), cc, true, addons, rtt)) continue;
    best = i;
    [bestKey, key] = [key, bestKey];
  }
  return best;
}

/** Picks the worker for one instance, or says why none fits. Pure; see the file comment. */
export function pickWorker(demand: Demand, workers: readonly WorkerCandidate[], opts: PickWorkerOptions = {}): Placement<WorkerCandidate> {
  const i = pickWorkerIndex(demand, workers, opts);
  if (i >= 0) {
    const target = workers[i] as WorkerCandidate;
    const cc = compileConstraints(demand);
    const warnings = workerWarnings(target, effectiveLocation(target, opts.clusterLocation ?? null), cc, opts.clusterAddons, opts.rttMs);
    return warnings.length > 0 ? { ok: true, target, warnings } : { ok: true, target };
  }
  return explainWorkers(demand, workers, opts);
}

const STAGE_VIRT = 0;
const STAGE_CONSTRAINTS = 1;
const STAGE_CAPACITY = 2;

function explainWorkers(demand: Demand, workers: readonly WorkerCandidate[], opts: PickWorkerOptions): Placement<WorkerCandidate> & { ok: false } {
  const clusterLoc = opts.clusterLocation ?? null;
  const cc = compileConstraints(demand);
  const need = describeAmounts(demand.vcpus, demand.memory_mb, demand.gpus, demand.gpus > 0);
  if (workers.length === 0) {
    return { ok: false, reason: 'NO_WORKER_CAPACITY', detail: `needs ${need}; the cluster has no workers` };
  }
  let furthest = STAGE_VIRT;
  const atCapacity: WorkerCandidate[] = [];
  for (const w of workers) {
    if (!supports(w, demand.virtualization)) continue;
    furthest = Math.max(furthest, STAGE_CONSTRAINTS);
    if (!workerSatisfies(w, effectiveLocation(w, clusterLoc), cc, true, opts.clusterAddons, opts.rttMs)) continue;
    furthest = STAGE_CAPACITY;
    atCapacity.push(w);
  }
  if (furthest === STAGE_VIRT) {
    const offered = [...new Set(workers.flatMap((w) => w.virtualizations))].sort();
    return {
      ok: false,
      reason: 'NoWorkerWithVirtualization',
      detail: `no worker supports ${demand.virtualization} (${workers.length} worker${workers.length === 1 ? '' : 's'} offer: ${offered.join(', ') || 'nothing'})`,
    };
  }
  if (furthest === STAGE_CONSTRAINTS) {
    const capable = workers.filter((w) => supports(w, demand.virtualization));
    return { ok: false, reason: 'NoWorkerMatchesConstraints', detail: diagnoseWorkerConstraints(demand, cc, workers, capable, clusterLoc, opts) };
  }
  // Closest miss: the smallest relative shortfall over vcpus, memory and GPUs.
  let closest = atCapacity[0] as WorkerCandidate;
  let closestGap = Infinity;
  for (const w of atCapacity) {
    const gap = shortfall(w.cpu_cores_free, demand.vcpus) + shortfall(w.memory_free_mb, demand.memory_mb) + shortfall(w.gpus_free, demand.gpus);
    if (gap < closestGap || (gap === closestGap && w.id < closest.id)) {
      closest = w;
      closestGap = gap;
    }
  }
  const has = describeAmounts(closest.cpu_cores_free, closest.memory_free_mb, closest.gpus_free, demand.gpus > 0);
  const n = atCapacity.length;
  const scope = n === workers.length ? '' : ` (${n} of ${workers.length} workers match the service)`;
  return { ok: false, reason: 'NO_WORKER_CAPACITY', detail: `needs ${need}; best worker ${closest.name} has ${has} free${scope}` };
}

export function shortfall(free: number, need: number): number {
  return need > EPS && free + EPS < need ? (need - Math.max(0, free)) / need : 0;
}

function diagnoseWorkerConstraints(
  demand: Demand,
  cc: CompiledConstraints,
  all: readonly WorkerCandidate[],
  capable: readonly WorkerCandidate[],
  clusterLoc: GeoPoint | null,
  opts: PickWorkerOptions,
): string {
  const v = demand.virtualization;
  for (const ref of cc.nodes) {
    const named = all.find((w) => matchesRef(w, ref));
    if (!named) return `no worker named '${ref}' (or with that id) in this cluster`;
    if (!supports(named, v)) return `worker ${named.name} does not support ${v}`;
  }
  let pool = capable.filter((w) => cc.nodes.every((r) => matchesRef(w, r)));
  if (cc.needs.length > 0) {
    const next = pool.filter((w) => offersAll(w.supported_addons, opts.clusterAddons, cc.needs));
    if (next.length === 0) {
      const offered = [...new Set([...pool.flatMap((w) => w.supported_addons ?? []), ...(opts.clusterAddons ?? [])])].sort();
      return `no ${v} worker offers the addons ${cc.needs.join(', ')} (offered here: ${offered.join(', ') || 'none'})`;
    }
    pool = next;
  }
  for (const p of cc.peers) {
    const next = pool.filter((w) => peerStatus(w.id, p, opts.rttMs) !== 'violated');
    if (next.length === 0) return `no ${v} worker is within ${fmt(p.threshold_ms)} ms RTT of every worker running ${p.target} (${p.workers.join(', ')})`;
    pool = next;
  }
  for (const g of cc.geo) {
    if (!g.point) return `cannot read geo location '${g.text}' (expected "lat,long")`;
    let nearest: WorkerCandidate | undefined;
    let nearestKm = Infinity;
    for (const w of pool) {
      const d = geoDistanceKm(effectiveLocation(w, clusterLoc), g);
      if (d !== undefined && (d < nearestKm || (d === nearestKm && nearest && w.id < nearest.id))) {
        nearest = w;
        nearestKm = d;
      }
    }
    if (!nearest) return `no ${v} worker has a known location to compare with ${g.text}`;
    if (nearestKm > g.threshold_km + EPS) {
      return `no ${v} worker within ${fmt(g.threshold_km)} km of ${formatGeoPoint(g.point)} (nearest: ${nearest.name} at ${Math.round(nearestKm)} km)`;
    }
  }
  for (const l of cc.latency) {
    let lowest: WorkerCandidate | undefined;
    let lowestMs = Infinity;
    for (const w of pool) {
      const ms = latencyMs(w.latency_ms, effectiveLocation(w, clusterLoc), l);
      if (ms !== undefined && (ms < lowestMs || (ms === lowestMs && lowest && w.id < lowest.id))) {
        lowest = w;
        lowestMs = ms;
      }
    }
    if (!lowest) return `no ${v} worker has a latency measurement or location for '${l.text}'`;
    if (lowestMs > l.threshold_ms + EPS) {
      return `no ${v} worker within ${fmt(l.threshold_ms)} ms of ${l.text} (lowest: ${lowest.name} at ${fmt(lowestMs)} ms)`;
    }
  }
  return `no ${v} worker satisfies all constraints together`;
}
