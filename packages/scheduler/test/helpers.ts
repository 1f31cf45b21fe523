import type { Constraint, Virtualization, WorkerSummary } from '@oak/contracts';
import type { ClusterCandidate, Demand, WorkerCandidate } from '../src/index.ts';

export function demand(p: Partial<Demand> = {}): Demand {
  return { job_name: 'app.ns.svc.ns', virtualization: 'container', vcpus: 1, memory_mb: 256, gpus: 0, constraints: [], ...p };
}

export function worker(id: string, p: Partial<WorkerCandidate> = {}): WorkerCandidate {
  return {
    id,
    name: id,
    cpu_cores_total: 4,
    cpu_cores_free: 4,
    memory_total_mb: 4096,
    memory_free_mb: 4096,
    gpus_free: 0,
    cpu_percent: 10,
    virtualizations: ['container'],
    location: null,
    jobs: [],
    ...p,
  };
}

export function summary(id: string, p: Partial<WorkerSummary> = {}): WorkerSummary {
  return { id, name: id, cpu_cores_free: 4, memory_free_mb: 4096, virtualizations: ['container'], location: null, ...p };
}

export function cluster(id: string, p: Partial<ClusterCandidate> = {}): ClusterCandidate {
  const workers = p.workers ?? [summary(`${id}-w1`)];
  return {
    id,
    name: id,
    active: true,
    location: null,
    cpu_cores_free: workers.reduce((s, w) => s + w.cpu_cores_free, 0),
    memory_free_mb: workers.reduce((s, w) => s + w.memory_free_mb, 0),
    gpus_free: 0,
    virtualizations: [...new Set(workers.flatMap((w) => w.virtualizations))] as Virtualization[],
    workers,
    jobs: [],
    ...p,
  };
}

export const MUNICH = '48.137,11.575';
export const BERLIN = '52.52,13.405';
export const PARIS = '48.857,2.352';

export function geo(location: string, threshold: number): Constraint {
  return { type: 'geo', location, threshold };
}
