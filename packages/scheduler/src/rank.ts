/**
 * Ranking of feasible candidates. Every candidate gets a key (lower is better), compared in order:
 *  0. penalty: the weights (rigidness) of the preferences it leaves unmet, plus half a rule's
 *     weight per connectivity rule it cannot be checked against (RTT unknown); 0 without any;
 *  1. anti-affinity: how many instances of the same job it already holds (replicas spread; a
 *     candidate already holding one is chosen only when no candidate without one is feasible);
 *  2. the strategy's primary score;
 *  3. the strategy's secondary score;
 *  4. id, then name (determinism: the same input always gives the same answer).
 *
 * Strategies (workers):
 *  - least-loaded (default): cpu load = max(measured cpu_percent, committed share of cores), plus
 *    the used share of memory; then most free cores.
 *  - best-fit: smallest share of cores + memory left after placing (tightest fit, bin packing).
 *  - spread: fewest instances of any job, then least-loaded.
 */
import type { Demand, Strategy, WorkerCandidate } from './types.ts';

export interface RankKey {
  /** see 0. above; set by the caller (workerKey leaves it as it is) */
  penalty: number;
  sameJob: number;
  primary: number;
  secondary: number;
}

export function share(part: number, total: number): number {
  return total > 0 ? part / total : 0;
}

export function countJob(jobs: readonly string[], job: string): number {
  let n = 0;
  for (let i = 0; i < jobs.length; i++) if (jobs[i] === job) n++;
  return n;
}

/** Load of a worker in [0, 2] (cpu + memory), accounting for reservations already subtracted. */
export function workerLoad(w: WorkerCandidate): number {
  const committed = 1 - share(w.cpu_cores_free, w.cpu_cores_total);
  const cpu = Math.max(w.cpu_percent / 100, committed);
  const mem = 1 - share(w.memory_free_mb, w.memory_total_mb);
  return clamp01(cpu) + clamp01(mem);
}

function clamp01(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : Number.isFinite(x) ? x : 1;
}

export function workerKey(w: WorkerCandidate, d: Demand, strategy: Strategy, out: RankKey): RankKey {
  out.sameJob = countJob(w.jobs, d.job_name);
  switch (strategy) {
    case 'best-fit':
      out.primary = share(w.cpu_cores_free - d.vcpus, w.cpu_cores_total) + share(w.memory_free_mb - d.memory_mb, w.memory_total_mb);
      out.secondary = 0;
      break;
    case 'spread':
      out.primary = w.jobs.length;
      out.secondary = workerLoad(w);
      break;
    default:
      out.primary = workerLoad(w);
      out.secondary = -w.cpu_cores_free;
  }
  return out;
}

/** Negative when a ranks before b. */
export function compareKeys(a: RankKey, aId: string, aName: string, b: RankKey, bId: string, bName: string): number {
  if (a.penalty !== b.penalty) return a.penalty < b.penalty ? -1 : 1;
  if (a.sameJob !== b.sameJob) return a.sameJob - b.sameJob;
  if (a.primary !== b.primary) return a.primary < b.primary ? -1 : 1;
  if (a.secondary !== b.secondary) return a.secondary < b.secondary ? -1 : 1;
  if (aId !== bId) return aId < bId ? -1 : 1;
  if (aName !== bName) return aName < bName ? -1 : 1;
  return 0;
}
