/**
 * The root's placement accounting (issue 9, moved out of placement.ts): what the root placed on a
 * cluster since that cluster's last aggregate was computed, subtracted from the aggregate so that
 * several placements between two aggregates do not overfill a cluster.
 *
 * A reservation is dropped by an aggregate received `settleMs` after it was made (the cluster had
 * the deploy by then, so the aggregate counts it), when the instance goes away, or with its
 * cluster. Keys are `service_id/instance_number` (numbers are never reused).
 */
import { reserveCluster } from '@oak/scheduler';
import type { ClusterCandidate, Demand } from '@oak/scheduler';

interface Reservation {
  cluster_id: string;
  demand: Demand;
  at: number;
}

/** The key of one instance in the reservations. */
export function reservationKey(serviceId: string, instanceNumber: number): string {
  return `${serviceId}/${instanceNumber}`;
}

export class RootReservations {
  readonly #byKey = new Map<string, Reservation>();

  reserve(key: string, clusterId: string, demand: Demand, at: number): void {
    this.#byKey.set(key, { cluster_id: clusterId, demand, at });
  }

  release(key: string): void {
    this.#byKey.delete(key);
  }

  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  /** An aggregate of `clusterId` arrived at `now`: reservations older than `settleMs` are in it. */
  settle(clusterId: string, now: number, settleMs: number): number {
    let n = 0;
    for (const [k, r] of this.#byKey) {
      if (r.cluster_id === clusterId && now - r.at >= settleMs) {
        this.#byKey.delete(k);
        n++;
      }
    }
    return n;
  }

  forgetCluster(clusterId: string): void {
    for (const [k, r] of this.#byKey) if (r.cluster_id === clusterId) this.#byKey.delete(k);
  }

  /** The candidates with every reservation subtracted. */
  apply(candidates: readonly ClusterCandidate[]): ClusterCandidate[] {
    const byId = new Map(candidates.map((c, i) => [c.id, i]));
    const out = [...candidates];
    for (const r of this.#byKey.values()) {
      const i = byId.get(r.cluster_id);
      if (i === undefined) continue;
      out[i] = reserveCluster(out[i] as ClusterCandidate, r.demand);
    }
    return out;
  }

  get size(): number {
    return this.#byKey.size;
  }
}
