/**
 * A service's demand, and its constraints compiled once per decision (locations parsed, direct
 * references collected) so that the per-candidate checks are plain comparisons.
 */
import type { Microservice } from '@oak/contracts';
import { parseGeoPoint } from './geo.ts';
import type { Demand, GeoPoint } from './types.ts';

function nonNeg(x: number | undefined): number {
  return typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : 0;
}

/** whole GPUs for a vgpus amount: 0.5 holds one GPU, 2 hold two (1e-9 of float noise forgiven) */
export function wholeGpus(vgpus: number): number {
  return vgpus > 1e-9 ? Math.ceil(vgpus - 1e-9) : 0;
}

/** The demand of one instance of `service`; absent or invalid amounts count as 0. */
export function demandOf(service: Microservice, jobName: string): Demand {
  return {
    job_name: jobName,
    virtualization: service.virtualization,
    vcpus: nonNeg(service.vcpus),
    memory_mb: nonNeg(service.memory),
    // a GPU is never shared between instances: a fractional vgpus holds the next whole GPU
    gpus: wholeGpus(nonNeg(service.vgpus)),
    constraints: service.constraints ? [...service.constraints] : [],
    ...(Array.isArray(service.arch) && service.arch.length > 0 ? { arch: [...service.arch] } : {}),
  };
}

export interface GeoRule {
  /** the location as written, for messages */
  text: string;
  /** null when the text does not parse: then nothing satisfies the rule */
  point: GeoPoint | null;
  threshold_km: number;
}

export interface LatencyRule {
  /** keys to look up a measured latency with: area, then location */
  keys: string[];
  /** for messages */
  text: string;
  point: GeoPoint | null;
  threshold_ms: number;
}

export interface CompiledConstraints {
  /** every `direct.cluster` (id or name); a candidate must match all of them */
  clusters: string[];
  /** every `direct.node` (id or name) */
  nodes: string[];
  geo: GeoRule[];
  latency: LatencyRule[];
  /** true when there is no constraint at all (fast path) */
  none: boolean;
}

const compiled = new WeakMap<Demand, CompiledConstraints>();

/** Compiles (and memoises per demand object) the demand's constraints. */
export function compileConstraints(demand: Demand): CompiledConstraints {
  const hit = compiled.get(demand);
  if (hit) return hit;
  const out: CompiledConstraints = { clusters: [], nodes: [], geo: [], latency: [], none: true };
  for (const c of demand.constraints) {
    if (c.type === 'direct') {
      if (c.cluster) out.clusters.push(c.cluster);
      if (c.node) out.nodes.push(c.node);
    } else if (c.type === 'geo') {
      out.geo.push({ text: c.location, point: parseGeoPoint(c.location), threshold_km: c.threshold });
    } else if (c.type === 'latency') {
      const keys: string[] = [];
      if (c.area) keys.push(c.area);
      if (c.location) keys.push(c.location);
      const text = c.area ?? c.location ?? '(nowhere)';
      out.latency.push({ keys, text, point: parseGeoPoint(c.location), threshold_ms: c.threshold });
    }
  }
  out.none = out.clusters.length + out.nodes.length + out.geo.length + out.latency.length === 0;
  compiled.set(demand, out);
  return out;
}

/** "2 vcpus, 512 MB" (and GPUs when asked for), for reason details. */
export function describeAmounts(vcpus: number, memory_mb: number, gpus: number, withGpus: boolean): string {
  const parts = [`${fmt(vcpus)} vcpu${vcpus === 1 ? '' : 's'}`, `${fmt(memory_mb)} MB`];
  if (withGpus) parts.push(`${fmt(gpus)} GPU${gpus === 1 ? '' : 's'}`);
  return parts.join(', ');
}

export function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : String(Math.round(x * 100) / 100);
}
