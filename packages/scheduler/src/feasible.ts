/**
 * Feasibility checks: each one a small predicate over one candidate, used by pickWorker and
 * pickCluster in a single pass (no intermediate arrays) and, when nothing is feasible, by the
 * explain functions that turn the failure into a reason a user understands.
 */
import type { Virtualization } from '@oak/contracts';
import type { CompiledConstraints, GeoRule, LatencyRule } from './demand.ts';
import { distanceToAreaKm, estimateRttMs } from './geo.ts';
import type { Demand, GeoPoint, PeerRule, RttLookup } from './types.ts';

/** Tolerance for fractional vcpus: 0.1 + 0.2 reserved on 0.3 free still fits. */
export const EPS = 1e-9;

export interface Named {
  id: string;
  name: string;
}

/** A direct constraint names a cluster or worker by id or by name. */
export function matchesRef(c: Named, ref: string): boolean {
  return c.id === ref || c.name === ref;
}

export function matchesAllRefs(c: Named, refs: readonly string[]): boolean {
  for (const r of refs) if (!matchesRef(c, r)) return false;
  return true;
}

export function supports(c: { virtualizations: readonly Virtualization[] }, v: Virtualization): boolean {
  const vs = c.virtualizations;
  return vs[0] === v || vs.includes(v);
}

export interface FreeAmounts {
  cpu_cores_free: number;
  memory_free_mb: number;
  /** absent: GPUs are not reported at this level and are not checked */
  gpus_free?: number;
}

/** Whether the free amounts hold the demand (vcpus, memory and, when reported, GPUs). */
export function fits(free: FreeAmounts, d: Demand): boolean {
  return (
    free.cpu_cores_free + EPS >= d.vcpus &&
    free.memory_free_mb + EPS >= d.memory_mb &&
    (free.gpus_free === undefined || d.gpus <= 0 || free.gpus_free + EPS >= d.gpus)
  );
}

/** Distance in km from the rule's location to `loc`; undefined when either is unknown. */
export function geoDistanceKm(loc: GeoPoint | null, rule: GeoRule): number | undefined {
  if (!loc || !rule.point) return undefined;
  return distanceToAreaKm(rule.point, loc);
}

/** A geo rule holds when the location is known and within the threshold. */
export function withinGeo(loc: GeoPoint | null, rule: GeoRule): boolean {
  const d = geoDistanceKm(loc, rule);
  return d !== undefined && d <= rule.threshold_km + EPS;
}

/**
 * Round-trip latency in ms to the rule's area/location: a measurement when the candidate carries
 * one under the rule's area or location text, else the geo estimate; undefined when unknowable.
 */
export function latencyMs(measured: Record<string, number> | undefined, loc: GeoPoint | null, rule: LatencyRule): number | undefined {
  if (measured) {
    for (const k of rule.keys) {
      const v = measured[k];
      if (typeof v === 'number' && Number.isFinite(v)) return v;
    }
  }
  if (loc && rule.point) return estimateRttMs(distanceToAreaKm(rule.point, loc));
  return undefined;
}

export function withinLatency(measured: Record<string, number> | undefined, loc: GeoPoint | null, rule: LatencyRule): boolean {
  const v = latencyMs(measured, loc, rule);
  return v !== undefined && v <= rule.threshold_ms + EPS;
}

/** Whether `own` plus `extra` (the cluster's addons) hold every label of `needs`. */
export function offersAll(own: readonly string[] | undefined, extra: readonly string[] | undefined, needs: readonly string[]): boolean {
  for (const n of needs) if (!(own?.includes(n) ?? false) && !(extra?.includes(n) ?? false)) return false;
  return true;
}

export type PeerStatus = 'ok' | 'unknown' | 'violated';

/**
 * A connectivity rule for one worker: violated when a measured RTT to a worker of the target is
 * over the threshold; unknown when one is not measured (and none is over); else ok. The same
 * worker is 0 ms away.
 */
export function peerStatus(workerId: string, rule: PeerRule, rtt: RttLookup | undefined): PeerStatus {
  let unknown = false;
  for (const t of rule.workers) {
    if (t === workerId) continue;
    const ms = rtt?.(workerId, t);
    if (ms === undefined || !Number.isFinite(ms)) unknown = true;
    else if (ms > rule.threshold_ms + EPS) return 'violated';
  }
  return unknown ? 'unknown' : 'ok';
}

/** The first worker of the rule's target whose RTT is unknown (for warnings). */
export function unmeasuredPeer(workerId: string, rule: PeerRule, rtt: RttLookup | undefined): string | undefined {
  for (const t of rule.workers) {
    if (t === workerId) continue;
    const ms = rtt?.(workerId, t);
    if (ms === undefined || !Number.isFinite(ms)) return t;
  }
  return undefined;
}

/** An unknown RTT ranks below a measured one by this share of the rule's weight (hard rules: weight 1). */
export const UNKNOWN_RTT_PENALTY = 0.5;

export interface WorkerLike extends Named {
  latency_ms?: Record<string, number>;
  supported_addons?: readonly string[] | undefined;
}

/**
 * Worker-level constraints: direct node, geo and latency on the worker's (effective) location,
 * the addons it offers (its own plus the cluster's), hard connectivity rules (measured RTTs).
 */
export function workerSatisfies(
  w: WorkerLike,
  loc: GeoPoint | null,
  cc: CompiledConstraints,
  withLatency: boolean,
  clusterAddons?: readonly string[],
  rtt?: RttLookup,
): boolean {
  if (cc.none) return true;
  if (!matchesAllRefs(w, cc.nodes)) return false;
  if (cc.needs.length > 0 && !offersAll(w.supported_addons, clusterAddons, cc.needs)) return false;
  for (const g of cc.geo) if (!withinGeo(loc, g)) return false;
  if (withLatency) for (const l of cc.latency) if (!withinLatency(w.latency_ms, loc, l)) return false;
  for (const p of cc.peers) if (peerStatus(w.id, p, rtt) === 'violated') return false;
  return true;
}

/**
 * The ranking penalty of a worker that satisfies the hard constraints: the weights of the
 * preferences it leaves unmet, plus UNKNOWN_RTT_PENALTY per connectivity rule it cannot be
 * checked against (times the rule's weight). 0 when everything holds; lower ranks first.
 */
export function workerPenalty(w: WorkerLike, loc: GeoPoint | null, cc: CompiledConstraints, clusterAddons?: readonly string[], rtt?: RttLookup): number {
  if (!cc.scored) return 0;
  let pen = 0;
  for (const s of cc.soft) if (!workerSatisfies(w, loc, s.cc, true, clusterAddons, rtt)) pen += s.weight;
  for (const p of cc.softPeers) {
    const st = peerStatus(w.id, p, rtt);
    if (st === 'violated') pen += p.rigidness;
    else if (st === 'unknown') pen += UNKNOWN_RTT_PENALTY * p.rigidness;
  }
  for (const p of cc.peers) if (peerStatus(w.id, p, rtt) === 'unknown') pen += UNKNOWN_RTT_PENALTY;
  return pen;
}

/** What a placement on this worker leaves unchecked or unmet, in words (Placement.warnings). */
export function workerWarnings(w: WorkerLike, loc: GeoPoint | null, cc: CompiledConstraints, clusterAddons?: readonly string[], rtt?: RttLookup): string[] {
  if (!cc.scored) return [];
  const out: string[] = [];
  for (const p of [...cc.peers, ...cc.softPeers]) {
    const st = peerStatus(w.id, p, rtt);
    if (st === 'unknown') {
      out.push(`connectivity to ${p.target} (<= ${p.threshold_ms} ms) not checked: the overlay has no RTT between ${w.name} and worker ${unmeasuredPeer(w.id, p, rtt) ?? '?'}`);
    } else if (st === 'violated') {
      out.push(`preference unmet: connectivity to ${p.target} <= ${p.threshold_ms} ms (rigidness ${p.rigidness})`);
    }
  }
  for (const s of cc.soft) if (!workerSatisfies(w, loc, s.cc, true, clusterAddons, rtt)) out.push(`preference unmet: ${s.text}`);
  return out;
}
