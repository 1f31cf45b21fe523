/**
 * A service's demand, and its constraints compiled once per decision (locations parsed, direct
 * references collected) so that the per-candidate checks are plain comparisons.
 */
import type { Constraint, Microservice } from '@oak/contracts';
import { parseGeoPoint } from './geo.ts';
import type { Demand, GeoPoint, PeerRule } from './types.ts';

function nonNeg(x: number | undefined): number {
  return typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : 0;
}

/** whole GPUs for a vgpus amount: 0.5 holds one GPU, 2 hold two (1e-9 of float noise forgiven) */
export function wholeGpus(vgpus: number): number {
  return vgpus > 1e-9 ? Math.ceil(vgpus - 1e-9) : 0;
}

/** The demand of one instance of `service`; absent or invalid amounts count as 0. */
export function demandOf(service: Microservice, jobName: string, peers?: readonly PeerRule[]): Demand {
  const d: Demand = {
    job_name: jobName,
    virtualization: service.virtualization,
    vcpus: nonNeg(service.vcpus),
    memory_mb: nonNeg(service.memory),
    // a GPU is never shared between instances: a fractional vgpus holds the next whole GPU
    gpus: wholeGpus(nonNeg(service.vgpus)),
    constraints: service.constraints ? [...service.constraints] : [],
  };
  if (peers && peers.length > 0) d.peers = peers.map((p) => ({ ...p, workers: [...p.workers] }));
  return d;
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
  /** every `clusters.allowed` list: the cluster must be named (id or name) in each of them */
  allowed: string[][];
  /** every addon label of the `addons` constraints: the worker must offer all of them */
  needs: string[];
  /** connectivity rules with rigidness 1 */
  peers: PeerRule[];
  /** true when there is no hard constraint at all (fast path) */
  none: boolean;
  /** constraints with rigidness below 1: each one compiled alone, weighed by its rigidness */
  soft: SoftRule[];
  /** connectivity rules with rigidness below 1 */
  softPeers: PeerRule[];
  /** true when the ranking has to score preferences or connectivity (soft rules or any peer rule) */
  scored: boolean;
}

export interface SoftRule {
  /** the constraint's rigidness, in (0, 1) */
  weight: number;
  /** for messages: `latency munich-1 <= 100 ms (rigidness 0.99)` */
  text: string;
  /** the constraint alone, as a hard one (its `soft` is empty) */
  cc: CompiledConstraints;
}

const compiled = new WeakMap<Demand, CompiledConstraints>();

function empty(): CompiledConstraints {
  return { clusters: [], nodes: [], geo: [], latency: [], allowed: [], needs: [], peers: [], none: true, soft: [], softPeers: [], scored: false };
}

/** Rigidness as a number in [0, 1]; absent (or not a number) is 1: hard, as before Oakestra's field existed here. */
export function rigidnessOf(c: { rigidness?: number | undefined }): number {
  const r = c.rigidness;
  return typeof r === 'number' && Number.isFinite(r) ? Math.min(1, Math.max(0, r)) : 1;
}

function addHard(out: CompiledConstraints, c: Constraint): void {
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
  } else if (c.type === 'clusters') {
    out.allowed.push([...c.allowed]);
  } else if (c.type === 'addons') {
    for (const n of c.needs) if (!out.needs.includes(n)) out.needs.push(n);
  }
}

function settle(out: CompiledConstraints): CompiledConstraints {
  out.none = out.clusters.length + out.nodes.length + out.geo.length + out.latency.length + out.allowed.length + out.needs.length + out.peers.length === 0;
  out.scored = out.soft.length + out.softPeers.length + out.peers.length > 0;
  return out;
}

/** `latency munich-1 <= 100 ms`, `addons image-builder`: a constraint in a few words. */
export function describeConstraint(c: Constraint): string {
  switch (c.type) {
    case 'direct':
      return `direct ${[c.cluster && `cluster ${c.cluster}`, c.node && `node ${c.node}`].filter(Boolean).join(' ')}`;
    case 'geo':
      return `geo within ${fmt(c.threshold)} km of ${c.location}`;
    case 'latency':
      return `latency ${c.area ?? c.location ?? ''} <= ${fmt(c.threshold)} ms`;
    case 'clusters':
      return `clusters ${c.allowed.join(', ')}`;
    case 'addons':
      return `addons ${c.needs.join(', ')}`;
  }
}

/** Compiles (and memoises per demand object) the demand's constraints. */
export function compileConstraints(demand: Demand): CompiledConstraints {
  const hit = compiled.get(demand);
  if (hit) return hit;
  const out = empty();
  for (const c of demand.constraints) {
    const r = rigidnessOf(c);
    if (r >= 1) addHard(out, c);
    else if (r > 0) {
      // rigidness 0 weighs nothing: it changes no ranking (the validator warns about it)
      const one = empty();
      addHard(one, c);
      out.soft.push({ weight: r, text: `${describeConstraint(c)} (rigidness ${fmt(r)})`, cc: settle(one) });
    }
  }
  for (const p of demand.peers ?? []) {
    const r = rigidnessOf(p);
    if (r >= 1) out.peers.push(p);
    else if (r > 0) out.softPeers.push(p);
  }
  settle(out);
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
