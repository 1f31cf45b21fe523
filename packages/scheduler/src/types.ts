/**
 * Placement as pure functions: (demand, candidates) -> placement | reason. No I/O.
 * Root: pickCluster over cluster aggregates. Cluster: pickWorker over real-time worker reports.
 * Callers account at once: after a placement they subtract the demand from the chosen candidate
 * (see reserve()) so the next decision sees it, before any new report arrives.
 */
import type { Constraint, PendingReason, Virtualization, WorkerSummary } from '@oak/contracts';

export interface Demand {
  job_name: string;
  virtualization: Virtualization;
  vcpus: number;
  memory_mb: number;
  gpus: number;
  constraints: Constraint[];
  /**
   * Connectivity rules resolved by the caller (the SLA names the other service; the caller knows
   * where its instances run): see PeerRule.
   */
  peers?: PeerRule[];
}

/**
 * A `connectivity` latency rule between this service and another one: every worker running an
 * instance of `target` must be within `threshold_ms` RTT of the chosen worker (the same worker
 * counts as 0 ms). RTTs come from the overlay (RttLookup); an unknown RTT is not a violation, it
 * is ranked below a measured one and reported as a warning of the placement.
 */
export interface PeerRule {
  /** the other service, for messages (its job name or SLA name) */
  target: string;
  threshold_ms: number;
  /** 1: hard; below 1: a preference of that weight */
  rigidness: number;
  /** ids of the workers the target's instances run on now (empty: nothing to be near yet) */
  workers: string[];
}

/** Measured RTT in ms between two workers (either direction), undefined when not known. */
export type RttLookup = (a: string, b: string) => number | undefined;

export interface GeoPoint {
  lat: number;
  long: number;
  /** radius in km, when the location was given as lat,long,radius */
  radius_km?: number;
}

export interface WorkerCandidate {
  id: string;
  name: string;
  cpu_cores_total: number;
  cpu_cores_free: number;
  memory_total_mb: number;
  memory_free_mb: number;
  gpus_free: number;
  /** current load 0-100, for least-loaded ranking */
  cpu_percent: number;
  virtualizations: Virtualization[];
  location: GeoPoint | null;
  /** job names of the instances on this worker (replicas spread over workers) */
  jobs: string[];
  /** addon labels the worker offers (its NodeEngine's `--addons`), for `addons` constraints */
  supported_addons?: string[];
  /**
   * Measured round-trip times in ms, keyed by a latency constraint's `area` or `location` text as
   * written in the SLA. When a key is missing the latency is estimated from the location (see geo.ts).
   */
  latency_ms?: Record<string, number>;
}

export interface ClusterCandidate {
  id: string;
  name: string;
  active: boolean;
  location: GeoPoint | null;
  cpu_cores_free: number;
  memory_free_mb: number;
  gpus_free: number;
  virtualizations: Virtualization[];
  workers: WorkerSummary[];
  /** job names of instances already placed in this cluster */
  jobs: string[];
  /** measured round-trip times in ms by latency `area`/`location` text (see WorkerCandidate.latency_ms) */
  latency_ms?: Record<string, number>;
  /** addon labels the cluster offers to every one of its workers (its `--addons` setting) */
  supported_addons?: string[];
}

export type Strategy = 'least-loaded' | 'best-fit' | 'spread';

export type Placement<T> =
  /** warnings: what the choice could not check (an unknown RTT) or preferences it left unmet */
  | { ok: true; target: T; warnings?: string[] }
  | { ok: false; reason: PendingReason; detail: string };

export interface PickWorkerOptions {
  /** ranking after anti-affinity; default 'least-loaded' */
  strategy?: Strategy;
  /**
   * The cluster's own location: used for geo and latency constraints on workers that report no
   * location of their own (the same rule the root applies to a cluster's worker summary).
   */
  clusterLocation?: GeoPoint | null;
  /** addons the cluster offers to all its workers (added to each worker's own) */
  clusterAddons?: readonly string[];
  /** the overlay's measured RTTs between workers, for connectivity rules */
  rttMs?: RttLookup;
}

export interface PickClusterOptions {
  /** ranking of feasible clusters; default 'best-fit' (tie-break: fewer instances of the same job) */
  strategy?: Strategy;
  /** the overlay's measured RTTs between workers (of every cluster), for connectivity rules */
  rttMs?: RttLookup;
}
