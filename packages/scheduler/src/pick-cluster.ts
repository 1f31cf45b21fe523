/**
 * Root level: pick a cluster from cluster aggregates.
 *
 * Pipeline (one pass over the clusters):
 *   constraints (direct cluster by id or name; clusters.allowed: named in each list; addons: one
 *     worker offers them all, its own addons plus the cluster's; connectivity: one worker within
 *     the RTT threshold of the target's workers, or not measured; direct node: the cluster has that worker; geo: the
 *     cluster's location, or one of its workers' own locations, within the threshold; latency:
 *     measured `latency_ms` or estimated from the cluster's location, see geo.ts)
 *   -> active -> virtualization -> aggregate capacity
 *   -> one worker of the cluster's worker_summary holds the demand alone (4 free cores spread
 *      over 4 workers do not hold a 2-core instance, nor 2 free GPUs on 2 workers a 2-GPU one,
 *      when the summary reports GPUs); that worker must also support the
 *      virtualization, be the direct node if one is named, and be within every geo threshold
 *      (its own location, else the cluster's)
 *   -> rank: unmet preferences first (rigidness below 1: never a reason to exclude a cluster,
 *      see clusterPenalty), then the strategy (default best-fit: least capacity left, normalised by the largest free
 *      amounts among the feasible clusters), then fewer instances of the same job, then id.
 */
import type { WorkerSummary } from '@oak/contracts';
import { compileConstraints, describeAmounts, fmt, type CompiledConstraints } from './demand.ts';
import { EPS, UNKNOWN_RTT_PENALTY, fits, geoDistanceKm, latencyMs, matchesAllRefs, matchesRef, offersAll, peerStatus, supports, unmeasuredPeer, withinGeo, withinLatency } from './feasible.ts';
import { formatGeoPoint, parseGeoPointCached } from './geo.ts';
import { countJob, share } from './rank.ts';
import { shortfall } from './pick-worker.ts';
import type { ClusterCandidate, Demand, GeoPoint, PeerRule, PickClusterOptions, Placement, RttLookup } from './types.ts';

/** Cluster-level constraints (the per-worker part is workerHolds). */
export function clusterSatisfies(c: ClusterCandidate, cc: CompiledConstraints, rtt?: RttLookup): boolean {
  if (cc.none) return true;
  if (!matchesAllRefs(c, cc.clusters)) return false;
  for (const set of cc.allowed) if (!set.some((ref) => matchesRef(c, ref))) return false;
  for (const ref of cc.nodes) if (!c.workers.some((w) => matchesRef(w, ref))) return false;
  if (cc.needs.length > 0 && !c.workers.some((w) => offersAll(w.supported_addons, c.supported_addons, cc.needs))) return false;
  for (const g of cc.geo) if (!withinGeo(c.location, g) && !c.workers.some((w) => withinGeo(parseGeoPointCached(w.location), g))) return false;
  for (const l of cc.latency) if (!withinLatency(c.latency_ms, c.location, l)) return false;
  for (const p of cc.peers) if (!c.workers.some((w) => peerStatus(w.id, p, rtt) !== 'violated')) return false;
  return true;
}

/** Whether the worker (from a cluster's summary) matches the service, resources aside. */
export function summaryMatches(w: WorkerSummary, clusterLoc: GeoPoint | null, d: Demand, cc: CompiledConstraints, clusterAddons?: readonly string[], rtt?: RttLookup): boolean {
  if (!supports(w, d.virtualization)) return false;
  if (cc.none) return true;
  if (!matchesAllRefs(w, cc.nodes)) return false;
  if (cc.needs.length > 0 && !offersAll(w.supported_addons, clusterAddons, cc.needs)) return false;
  if (cc.geo.length > 0) {
    const loc = parseGeoPointCached(w.location) ?? clusterLoc;
    for (const g of cc.geo) if (!withinGeo(loc, g)) return false;
  }
  for (const p of cc.peers) if (peerStatus(w.id, p, rtt) === 'violated') return false;
  return true;
}

/** Whether one worker of the cluster holds the demand alone (and matches the service). */
export function workerHolds(c: ClusterCandidate, d: Demand, cc: CompiledConstraints, rtt?: RttLookup): boolean {
  for (const w of c.workers) if (fits(w, d) && summaryMatches(w, c.location, d, cc, c.supported_addons, rtt)) return true;
  return false;
}

/** The best status of a connectivity rule over the workers of `c` that could take the instance. */
function bestPeerStatus(c: ClusterCandidate, d: Demand, cc: CompiledConstraints, p: PeerRule, rtt: RttLookup | undefined): 'ok' | 'unknown' | 'violated' {
  let best: 'ok' | 'unknown' | 'violated' = 'violated';
  for (const w of c.workers) {
    if (!fits(w, d) || !summaryMatches(w, c.location, d, cc, c.supported_addons, rtt)) continue;
    const st = peerStatus(w.id, p, rtt);
    if (st === 'ok') return 'ok';
    if (st === 'unknown') best = 'unknown';
  }
  return best;
}

/**
 * The ranking penalty of a feasible cluster: the weight of each preference no worker of it meets
 * (judged one preference at a time), plus UNKNOWN_RTT_PENALTY (times the weight) per connectivity
 * rule whose best worker has an unmeasured RTT. 0 when every preference holds.
 */
export function clusterPenalty(c: ClusterCandidate, d: Demand, cc: CompiledConstraints, rtt?: RttLookup): number {
  if (!cc.scored) return 0;
  let pen = 0;
  for (const s of cc.soft) if (!clusterSatisfies(c, s.cc, rtt) || !workerHolds(c, d, s.cc, rtt)) pen += s.weight;
  for (const p of cc.softPeers) {
    const st = bestPeerStatus(c, d, cc, p, rtt);
    if (st === 'violated') pen += p.rigidness;
    else if (st === 'unknown') pen += UNKNOWN_RTT_PENALTY * p.rigidness;
  }
  for (const p of cc.peers) if (bestPeerStatus(c, d, cc, p, rtt) === 'unknown') pen += UNKNOWN_RTT_PENALTY;
  return pen;
}

function clusterWarnings(c: ClusterCandidate, d: Demand, cc: CompiledConstraints, rtt: RttLookup | undefined): string[] {
  if (!cc.scored) return [];
  const out: string[] = [];
  for (const p of [...cc.peers, ...cc.softPeers]) {
    const st = bestPeerStatus(c, d, cc, p, rtt);
    if (st === 'unknown') {
      const w = c.workers.find((x) => fits(x, d) && summaryMatches(x, c.location, d, cc, c.supported_addons, rtt) && peerStatus(x.id, p, rtt) === 'unknown');
      const t = w ? unmeasuredPeer(w.id, p, rtt) : undefined;
      out.push(`connectivity to ${p.target} (<= ${fmt(p.threshold_ms)} ms) not checked: the overlay has no RTT between cluster ${c.name}'s workers and worker ${t ?? '?'}`);
    } else if (st === 'violated') {
      out.push(`preference unmet: connectivity to ${p.target} <= ${fmt(p.threshold_ms)} ms (rigidness ${fmt(p.rigidness)})`);
    }
  }
  for (const s of cc.soft) if (!clusterSatisfies(c, s.cc, rtt) || !workerHolds(c, d, s.cc, rtt)) out.push(`preference unmet: ${s.text}`);
  return out;
}

const STAGE_CONSTRAINTS = 0;
const STAGE_ACTIVE = 1;
const STAGE_VIRT = 2;
const STAGE_AGGREGATE = 3;
const STAGE_WORKER = 4;
const STAGE_OK = 5;

function stageOf(c: ClusterCandidate, d: Demand, cc: CompiledConstraints, rtt: RttLookup | undefined): number {
  if (!clusterSatisfies(c, cc, rtt)) return STAGE_CONSTRAINTS;
  if (!c.active) return STAGE_ACTIVE;
  if (!supports(c, d.virtualization)) return STAGE_VIRT;
  if (!fits(c, d)) return STAGE_AGGREGATE;
  if (!workerHolds(c, d, cc, rtt)) return STAGE_WORKER;
  return STAGE_OK;
}

/** Picks the cluster for one instance, or says why none fits. Pure; see the file comment. */
export function pickCluster(demand: Demand, clusters: readonly ClusterCandidate[], opts: PickClusterOptions = {}): Placement<ClusterCandidate> {
  const cc = compileConstraints(demand);
  const rtt = opts.rttMs;
  const feasible: number[] = [];
  let maxCpu = 0;
  let maxMem = 0;
  for (let i = 0; i < clusters.length; i++) {
    const c = clusters[i] as ClusterCandidate;
    // cheapest checks first; stageOf (pipeline order) only matters for the reason
    if (!c.active || !fits(c, demand) || !supports(c, demand.virtualization) || !clusterSatisfies(c, cc, rtt) || !workerHolds(c, demand, cc, rtt)) continue;
    feasible.push(i);
    if (c.cpu_cores_free > maxCpu) maxCpu = c.cpu_cores_free;
    if (c.memory_free_mb > maxMem) maxMem = c.memory_free_mb;
  }
  if (feasible.length === 0) {
    let furthest = -1;
    for (const c of clusters) furthest = Math.max(furthest, stageOf(c, demand, cc, rtt));
    return explainClusters(demand, clusters, cc, furthest, rtt);
  }
  const strategy = opts.strategy ?? 'best-fit';
  let best: ClusterCandidate | undefined;
  let bp = 0;
  let bj = -1; // same-job count of best, computed lazily (-1: not yet)
  let bs = 0;
  let bpen = 0;
  for (const i of feasible) {
    const c = clusters[i] as ClusterCandidate;
    // preferences first: a cluster that meets more of them (by weight) wins whatever the strategy says
    const pen = cc.scored ? clusterPenalty(c, demand, cc, rtt) : 0;
    if (best && pen !== bpen) {
      if (pen > bpen) continue;
      best = undefined;
    }
    const freeShare = share(c.cpu_cores_free, maxCpu) + share(c.memory_free_mb, maxMem);
    let p: number;
    let s = 0;
    let sameJob = -1;
    if (strategy === 'best-fit') p = share(c.cpu_cores_free - demand.vcpus, maxCpu) + share(c.memory_free_mb - demand.memory_mb, maxMem);
    else if (strategy === 'spread') {
      sameJob = countJob(c.jobs, demand.job_name);
      p = sameJob;
      s = -freeShare;
    } else p = -freeShare;
    let better = !best || p < bp;
    if (best && p === bp) {
      // tie on the strategy: fewer instances of the same job, then the secondary score, then id
      if (sameJob < 0) sameJob = countJob(c.jobs, demand.job_name);
      if (bj < 0) bj = countJob(best.jobs, demand.job_name);
      better = sameJob < bj || (sameJob === bj && (s < bs || (s === bs && (c.id < best.id || (c.id === best.id && c.name < best.name)))));
    }
    if (better) {
      best = c;
      bp = p;
      bj = sameJob;
      bs = s;
      bpen = pen;
    }
  }
  const target = best as ClusterCandidate;
  const warnings = clusterWarnings(target, demand, cc, rtt);
  return warnings.length > 0 ? { ok: true, target, warnings } : { ok: true, target };
}

function list(names: string[], max = 5): string {
  return names.length <= max ? names.join(', ') : `${names.slice(0, max).join(', ')} and ${names.length - max} more`;
}

function explainClusters(d: Demand, clusters: readonly ClusterCandidate[], cc: CompiledConstraints, furthest: number, rtt: RttLookup | undefined): Placement<ClusterCandidate> & { ok: false } {
  const need = describeAmounts(d.vcpus, d.memory_mb, d.gpus, d.gpus > 0);
  if (clusters.length === 0) return { ok: false, reason: 'NoActiveClusterWithCapacity', detail: `needs ${need}; no cluster is registered` };
  const at = (stage: number) => clusters.filter((c) => stageOf(c, d, cc, rtt) >= stage);
  switch (furthest) {
    case STAGE_CONSTRAINTS:
      return { ok: false, reason: 'NoClusterMatchesConstraints', detail: diagnoseClusterConstraints(clusters, cc, rtt) };
    case STAGE_ACTIVE: {
      const names = at(STAGE_ACTIVE).map((c) => c.name);
      if (cc.clusters.length > 0) {
        return { ok: false, reason: 'TargetClusterNotActive', detail: `cluster ${list(names)} is not active; the instance waits until it reconnects` };
      }
      const detail = cc.none
        ? `none of the ${clusters.length} registered cluster${clusters.length === 1 ? ' is' : 's is'} active`
        : `the clusters matching the constraints are not active: ${list(names)}`;
      return { ok: false, reason: 'NoActiveClusterWithCapacity', detail };
    }
    case STAGE_VIRT: {
      const offers = at(STAGE_VIRT).map((c) => `${c.name}: ${[...c.virtualizations].sort().join(', ') || 'nothing'}`);
      return { ok: false, reason: 'NoWorkerWithVirtualization', detail: `no active cluster offers ${d.virtualization} (${list(offers)})` };
    }
    case STAGE_AGGREGATE: {
      const best = closest(at(STAGE_AGGREGATE), d);
      const has = describeAmounts(best.cpu_cores_free, best.memory_free_mb, best.gpus_free, d.gpus > 0);
      return { ok: false, reason: 'NoActiveClusterWithCapacity', detail: `needs ${need}; best cluster ${best.name} has ${has} free` };
    }
    default: {
      // Some cluster has the capacity in total, but no single worker holds the instance.
      const candidates = at(STAGE_WORKER);
      let bestW: WorkerSummary | undefined;
      let bestC: ClusterCandidate | undefined;
      let bestGap = Infinity;
      for (const c of candidates) {
        for (const w of c.workers) {
          if (!summaryMatches(w, c.location, d, cc, c.supported_addons, rtt)) continue;
          const gap = shortfall(w.cpu_cores_free, d.vcpus) + shortfall(w.memory_free_mb, d.memory_mb) + (w.gpus_free !== undefined ? shortfall(w.gpus_free, d.gpus) : 0);
          if (gap < bestGap) {
            bestGap = gap;
            bestW = w;
            bestC = c;
          }
        }
      }
      if (!bestW || !bestC) {
        return {
          ok: false,
          reason: 'NoClusterMatchesConstraints',
          detail: `no worker of ${list(candidates.map((c) => c.name))} supports ${d.virtualization} and satisfies the constraints`,
        };
      }
      const withGpus = d.gpus > 0;
      const total = describeAmounts(bestC.cpu_cores_free, bestC.memory_free_mb, bestC.gpus_free, withGpus);
      const has = describeAmounts(bestW.cpu_cores_free, bestW.memory_free_mb, bestW.gpus_free ?? 0, withGpus);
      return {
        ok: false,
        reason: 'NoActiveClusterWithCapacity',
        detail: `needs ${need}; cluster ${bestC.name} has ${total} free in total but no single worker holds it (best: ${bestW.name} with ${has} free)`,
      };
    }
  }
}

function closest(cs: ClusterCandidate[], d: Demand): ClusterCandidate {
  let best = cs[0] as ClusterCandidate;
  let gap = Infinity;
  for (const c of cs) {
    const g = shortfall(c.cpu_cores_free, d.vcpus) + shortfall(c.memory_free_mb, d.memory_mb) + shortfall(c.gpus_free, d.gpus);
    if (g < gap) {
      gap = g;
      best = c;
    }
  }
  return best;
}

function diagnoseClusterConstraints(clusters: readonly ClusterCandidate[], cc: CompiledConstraints, rtt: RttLookup | undefined): string {
  let pool = [...clusters];
  for (const ref of cc.clusters) {
    pool = pool.filter((c) => matchesRef(c, ref));
    if (pool.length === 0) return `no cluster named '${ref}' (or with that id)`;
  }
  for (const set of cc.allowed) {
    pool = pool.filter((c) => set.some((ref) => matchesRef(c, ref)));
    if (pool.length === 0) return `no registered cluster is in the allowed list ${list(set)}${cc.allowed.length > 1 || cc.clusters.length > 0 ? ' (together with the other cluster constraints)' : ''}`;
  }
  if (cc.needs.length > 0) {
    const next = pool.filter((c) => c.workers.some((w) => offersAll(w.supported_addons, c.supported_addons, cc.needs)));
    if (next.length === 0) return `no worker of ${pool.length === clusters.length ? 'any cluster' : list(pool.map((c) => c.name))} offers the addons ${cc.needs.join(', ')}`;
    pool = next;
  }
  for (const p of cc.peers) {
    const next = pool.filter((c) => c.workers.some((w) => peerStatus(w.id, p, rtt) !== 'violated'));
    if (next.length === 0) return `no worker of ${list(pool.map((c) => c.name))} is within ${fmt(p.threshold_ms)} ms RTT of every worker running ${p.target}`;
    pool = next;
  }
  for (const ref of cc.nodes) {
    const next = pool.filter((c) => c.workers.some((w) => matchesRef(w, ref)));
    if (next.length === 0) {
      return cc.clusters.length > 0 ? `cluster ${list(pool.map((c) => c.name))} has no worker named '${ref}'` : `no cluster has a worker named '${ref}'`;
    }
    pool = next;
  }
  for (const g of cc.geo) {
    if (!g.point) return `cannot read geo location '${g.text}' (expected "lat,long")`;
    let nearest: ClusterCandidate | undefined;
    let km = Infinity;
    for (const c of pool) {
      const locs = [c.location, ...c.workers.map((w) => parseGeoPointCached(w.location))];
      for (const loc of locs) {
        const dist = geoDistanceKm(loc, g);
        if (dist !== undefined && dist < km) {
          km = dist;
          nearest = c;
        }
      }
    }
    if (!nearest) return `no cluster has a known location to compare with ${g.text}`;
    if (km > g.threshold_km + EPS) {
      return `no cluster within ${fmt(g.threshold_km)} km of ${formatGeoPoint(g.point)} (nearest: ${nearest.name} at ${Math.round(km)} km)`;
    }
    pool = pool.filter((c) => withinGeo(c.location, g) || c.workers.some((w) => withinGeo(parseGeoPointCached(w.location), g)));
  }
  for (const l of cc.latency) {
    let lowest: ClusterCandidate | undefined;
    let ms = Infinity;
    for (const c of pool) {
      const v = latencyMs(c.latency_ms, c.location, l);
      if (v !== undefined && v < ms) {
        ms = v;
        lowest = c;
      }
    }
    if (!lowest) return `no cluster has a latency measurement or location for '${l.text}'`;
    if (ms > l.threshold_ms + EPS) return `no cluster within ${fmt(l.threshold_ms)} ms of ${l.text} (lowest: ${lowest.name}, about ${fmt(ms)} ms)`;
    pool = pool.filter((c) => withinLatency(c.latency_ms, c.location, l));
  }
  return 'no cluster satisfies all constraints together';
}
