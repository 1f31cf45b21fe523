/**
 * The root's placement accounting (issue 9, moved out of placement.ts): what the root placed on a
 * cluster since that cluster's last aggregate was computed, subtracted from the aggregate so that
 * several placements between two aggregates do not overfill a cluster.
 *
 * A reservation is dropped by an aggregate received `settleMs` after it was made (the cluster had
 * the deploy by then, so the aggregate counts it), when the instance goes away, or with its
 * cluster. Keys are `service_id/instance_number` (numbers are never reused).
 */
import { likelyWorker } from '@oak/scheduler';
import type { ClusterCandidate, Demand } from '@oak/scheduler';
import type { WorkerSummary } from '@oak/contracts';

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

  /**
   * The candidates with every reservation subtracted: the same as reserveCluster() for each
   * reservation in turn (aggregate, jobs and the likely worker), but each cluster is copied once
   * and then changed in place. reserveCluster copies the cluster's job list and worker summary
   * at every call, and a pass applies every reservation not yet settled: thousands of them
   * during a large deploy, on clusters of hundreds of workers and thousands of jobs, at every
   * pass of every service.
   */
  apply(candidates: readonly ClusterCandidate[]): ClusterCandidate[] {
    const out = [...candidates];
    if (this.#byKey.size === 0) return out;
    const byId = new Map(candidates.map((c, i) => [c.id, i]));
    /** per copied cluster: its workers by id and by name (reserveCluster adjusts every worker whose id or name is the reference) */
    const copied = new Map<number, Map<string, WorkerSummary[]>>();
    for (const r of this.#byKey.values()) {
      const i = byId.get(r.cluster_id);
      if (i === undefined) continue;
      let c = out[i] as ClusterCandidate;
      let byRef = copied.get(i);
      if (byRef === undefined) {
        c = { ...c, jobs: [...c.jobs], workers: c.workers.map((w) => ({ ...w })) };
        out[i] = c;
        byRef = new Map();
        for (const w of c.workers) {
          for (const k of w.id === w.name ? [w.id] : [w.id, w.name]) {
            const list = byRef.get(k);
            if (list) list.push(w);
            else byRef.set(k, [w]);
          }
        }
        copied.set(i, byRef);
      }
      const d = r.demand;
      const ref = likelyWorker(c, d)?.id;
      c.cpu_cores_free -= d.vcpus;
      c.memory_free_mb -= d.memory_mb;
      c.gpus_free -= d.gpus;
      c.jobs.push(d.job_name);
      if (ref === undefined) continue;
      for (const w of byRef.get(ref) ?? []) {
        w.cpu_cores_free -= d.vcpus;
        w.memory_free_mb -= d.memory_mb;
        // GPUs only where the summary reports them (clusters before issue 10 do not)
        if (w.gpus_free !== undefined) w.gpus_free -= d.gpus;
      }
    }
    return out;
  }

  get size(): number {
    return this.#byKey.size;
  }
}
