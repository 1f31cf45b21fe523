/**
 * Places N replicas of one service at once, with accounting between them: each placement
 * reserves its demand before the next decision, and anti-affinity spreads the replicas over
 * distinct workers while enough workers fit.
 */
import { pickWorker, pickWorkerIndex } from './pick-worker.ts';
import { reserveWorker } from './reserve.ts';
import type { Demand, PickWorkerOptions, Placement, WorkerCandidate } from './types.ts';

export interface PlaceManyResult {
  /** one entry per replica, in order: the chosen worker (as it was before this replica's reservation), or why none */
  placements: Placement<WorkerCandidate>[];
  /** the workers after all reservations (the input array is not changed) */
  workers: WorkerCandidate[];
}

export function placeMany(demand: Demand, replicas: number, workers: readonly WorkerCandidate[], opts: PickWorkerOptions = {}): PlaceManyResult {
  const current = [...workers];
  const placements: Placement<WorkerCandidate>[] = [];
  for (let r = 0; r < replicas; r++) {
    const i = pickWorkerIndex(demand, current, opts);
    if (i < 0) {
      // Reservations only take capacity away: every later replica fails for the same reason.
      const failed = pickWorker(demand, current, opts);
      while (placements.length < replicas) placements.push(failed);
      break;
    }
    const w = current[i] as WorkerCandidate;
    placements.push({ ok: true, target: w });
    current[i] = reserveWorker(w, demand);
  }
  return { placements, workers: current };
}
