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
}

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
}

export type Strategy = 'least-loaded' | 'best-fit' | 'spread';

export type Placement<T> =
  | { ok: true; target: T }
  | { ok: false; reason: PendingReason; detail: string };
