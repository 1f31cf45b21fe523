/**
 * Feasibility checks: each one a small predicate over one candidate, used by pickWorker and
 * pickCluster in a single pass (no intermediate arrays) and, when nothing is feasible, by the
 * explain functions that turn the failure into a reason a user understands.
 */
import { archAllowed } from '@oak/contracts';
import type { Virtualization } from '@oak/contracts';
import type { CompiledConstraints, GeoRule, LatencyRule } from './demand.ts';
import { distanceToAreaKm, estimateRttMs } from './geo.ts';
import type { Demand, GeoPoint } from './types.ts';

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

/** The worker offers the demand's virtualization, on one of its architectures (when it lists any). */
export function offers(w: { virtualizations: readonly Virtualization[]; arch?: string | undefined }, d: Pick<Demand, 'virtualization' | 'arch'>): boolean {
  return supports(w, d.virtualization) && (d.arch === undefined || d.arch.length === 0 || archAllowed(d.arch, w.arch));
}

/** `unikernel`, or `unikernel on arm64/riscv64` when the service lists architectures */
export function describeOffer(d: Pick<Demand, 'virtualization' | 'arch'>): string {
  return d.arch !== undefined && d.arch.length > 0 ? `${d.virtualization} on ${d.arch.join('/')}` : d.virtualization;
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

/** Worker-level constraints: direct node, geo and latency on the worker's (effective) location. */
export function workerSatisfies(
  w: Named & { latency_ms?: Record<string, number> },
  loc: GeoPoint | null,
  cc: CompiledConstraints,
  withLatency: boolean,
): boolean {
  if (cc.none) return true;
  if (!matchesAllRefs(w, cc.nodes)) return false;
  for (const g of cc.geo) if (!withinGeo(loc, g)) return false;
  if (withLatency) for (const l of cc.latency) if (!withinLatency(w.latency_ms, loc, l)) return false;
  return true;
}
