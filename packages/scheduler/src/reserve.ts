/**
 * Accounting: a placement reserves its demand on the chosen candidate at once, so the next
 * decision sees it before the next resource report arrives (Oakestra only learns from reports).
 * All functions return a new candidate; the input is never changed.
 *
 * Free amounts may go negative when a caller reserves more than is free (a forced placement):
 * that is honest accounting and the candidate then fits nothing until released.
 */
import { compileConstraints } from './demand.ts';
import { fits } from './feasible.ts';
import { summaryMatches } from './pick-cluster.ts';
import type { ClusterCandidate, Demand, WorkerCandidate } from './types.ts';
import type { WorkerSummary } from '@oak/contracts';

function withoutOne(jobs: readonly string[], job: string): string[] {
  const i = jobs.lastIndexOf(job);
  if (i < 0) return [...jobs];
  return [...jobs.slice(0, i), ...jobs.slice(i + 1)];
}

export function reserveWorker(w: WorkerCandidate, d: Demand): WorkerCandidate {
  return {
    ...w,
    cpu_cores_free: w.cpu_cores_free - d.vcpus,
    memory_free_mb: w.memory_free_mb - d.memory_mb,
    gpus_free: w.gpus_free - d.gpus,
    jobs: [...w.jobs, d.job_name],
  };
}

/** Gives the demand back (never above the worker's totals) and forgets one instance of the job. */
export function releaseWorker(w: WorkerCandidate, d: Demand): WorkerCandidate {
  return {
    ...w,
    cpu_cores_free: Math.min(w.cpu_cores_total, w.cpu_cores_free + d.vcpus),
    memory_free_mb: Math.min(w.memory_total_mb, w.memory_free_mb + d.memory_mb),
    gpus_free: w.gpus_free + d.gpus,
    jobs: withoutOne(w.jobs, d.job_name),
  };
}

/**
 * The worker of a cluster's summary the cluster will most likely choose: among the workers that
 * hold the demand and match the service, the one with the most free cores (then memory, then id).
 * It is a guess (the cluster decides from fresher data), good enough to keep the root from
 * counting the same free worker twice before the next aggregate arrives.
 */
export function likelyWorker(c: ClusterCandidate, d: Demand): WorkerSummary | undefined {
  const cc = compileConstraints(d);
  let best: WorkerSummary | undefined;
  for (const w of c.workers) {
    if (!fits(w, d) || !summaryMatches(w, c.location, d, cc, c.supported_addons)) continue;
    if (
      !best ||
      w.cpu_cores_free > best.cpu_cores_free ||
      (w.cpu_cores_free === best.cpu_cores_free && (w.memory_free_mb > best.memory_free_mb || (w.memory_free_mb === best.memory_free_mb && w.id < best.id)))
    ) {
      best = w;
    }
  }
  return best;
}

function adjustWorkers(c: ClusterCandidate, workerId: string | undefined, sign: 1 | -1, d: Demand): WorkerSummary[] {
  if (workerId === undefined) return c.workers;
  return c.workers.map((w) =>
    w.id === workerId || w.name === workerId
      ? {
          ...w,
          cpu_cores_free: w.cpu_cores_free + sign * d.vcpus,
          memory_free_mb: w.memory_free_mb + sign * d.memory_mb,
          // GPUs only where the summary reports them (clusters before issue 10 do not)
          ...(w.gpus_free !== undefined ? { gpus_free: w.gpus_free + sign * d.gpus } : {}),
        }
      : w,
  );
}

/**
 * Reserves the demand on a cluster aggregate and on one worker of its summary: `workerRef` (id or
 * name) when the cluster already told which worker it chose, else likelyWorker().
 */
export function reserveCluster(c: ClusterCandidate, d: Demand, workerRef?: string): ClusterCandidate {
  const ref = workerRef ?? likelyWorker(c, d)?.id;
  return {
    ...c,
    cpu_cores_free: c.cpu_cores_free - d.vcpus,
    memory_free_mb: c.memory_free_mb - d.memory_mb,
    gpus_free: c.gpus_free - d.gpus,
    jobs: [...c.jobs, d.job_name],
    workers: adjustWorkers(c, ref, -1, d),
  };
}

/** Gives the demand back to the aggregate and, when `workerRef` is given, to that worker. */
export function releaseCluster(c: ClusterCandidate, d: Demand, workerRef?: string): ClusterCandidate {
  return {
    ...c,
    cpu_cores_free: c.cpu_cores_free + d.vcpus,
    memory_free_mb: c.memory_free_mb + d.memory_mb,
    gpus_free: c.gpus_free + d.gpus,
    jobs: withoutOne(c.jobs, d.job_name),
    workers: adjustWorkers(c, workerRef, 1, d),
  };
}

function isCluster(c: WorkerCandidate | ClusterCandidate): c is ClusterCandidate {
  return 'workers' in c && Array.isArray(c.workers);
}

/** reserveWorker or reserveCluster, by the kind of candidate. */
export function reserve(c: WorkerCandidate, d: Demand): WorkerCandidate;
export function reserve(c: ClusterCandidate, d: Demand, workerRef?: string): ClusterCandidate;
export function reserve(c: WorkerCandidate | ClusterCandidate, d: Demand, workerRef?: string): WorkerCandidate | ClusterCandidate {
  return isCluster(c) ? reserveCluster(c, d, workerRef) : reserveWorker(c, d);
}

/** releaseWorker or releaseCluster, by the kind of candidate. */
export function release(c: WorkerCandidate, d: Demand): WorkerCandidate;
export function release(c: ClusterCandidate, d: Demand, workerRef?: string): ClusterCandidate;
export function release(c: WorkerCandidate | ClusterCandidate, d: Demand, workerRef?: string): WorkerCandidate | ClusterCandidate {
  return isCluster(c) ? releaseCluster(c, d, workerRef) : releaseWorker(c, d);
}
