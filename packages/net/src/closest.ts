/**
 * `closest_ip` (issue 8): which instance of a service a worker sends its closest-IP traffic to.
 * Pure and deterministic: an instance on this worker first (the lowest instance number), else the
 * lowest RTT measured over the tunnel to the instance's worker, ties broken by instance number;
 * instances on workers without a measurement (no answer yet) come last, by instance number.
 */

export interface ClosestCandidate {
  instance_number: number;
  worker_id: string;
}

/**
 * @param rttByWorker RTT in milliseconds per worker id; a missing, null, negative or non-finite
 *                    value counts as "not measured"
 * @returns the chosen instance, or undefined when there is none
 */
export function pickClosest<T extends ClosestCandidate>(
  instances: readonly T[],
  selfWorkerId: string,
  rttByWorker: ReadonlyMap<string, number | null | undefined> | Readonly<Record<string, number | null | undefined>>,
): T | undefined {
  const rttOf = (w: string): number | undefined => {
    const v = rttByWorker instanceof Map ? rttByWorker.get(w) : Object.prototype.hasOwnProperty.call(rttByWorker, w)
      ? (rttByWorker as Readonly<Record<string, number | null | undefined>>)[w] : undefined;
    return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
  };
  let best: { inst: T; rank: number; rtt: number } | undefined;
  for (const inst of instances) {
    if (typeof inst !== 'object' || inst === null || typeof inst.instance_number !== 'number' || !Number.isFinite(inst.instance_number)) continue;
    // rank 0: local, 1: measured, 2: not measured
    const local = inst.worker_id === selfWorkerId;
    const rtt = local ? 0 : rttOf(inst.worker_id);
    const rank = local ? 0 : rtt === undefined ? 2 : 1;
    const r = rtt ?? 0;
    if (!best || rank < best.rank || (rank === best.rank && (r < best.rtt || (r === best.rtt && inst.instance_number < best.inst.instance_number)))) {
      best = { inst, rank, rtt: r };
    }
  }
  return best?.inst;
}
