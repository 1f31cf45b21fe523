/**
 * Pure helpers of the root's placement (no I/O): cluster candidates from stored cluster rows,
 * reservations made by the root between two aggregates of a cluster, the assignment sent over the
 * link, and how a cluster's instance_status changes a stored instance.
 */
import { TERMINAL_STATES } from '@oak/contracts';
import type { ClusterToRoot, InstanceAssignment, InstanceState } from '@oak/contracts';
import { clusterCandidateOf, reserveCluster } from '@oak/scheduler';
import type { ClusterCandidate, Demand } from '@oak/scheduler';
import type { ClusterRow, InstancePatch, InstanceRow, ServiceRow } from '@oak/store';
import { clusterDoc } from './docs.ts';

/** Statuses in which an instance belongs to a cluster (sent in its sync, re-placed when it is lost). */
export function holdsCluster(status: InstanceState): boolean {
  return !TERMINAL_STATES.has(status) && status !== 'REQUESTED';
}

/** Candidates for pickCluster: every stored cluster, active only while its link is up. */
export function clusterCandidates(rows: readonly ClusterRow[], connected: (id: string) => boolean, jobsByCluster: ReadonlyMap<string, string[]>): ClusterCandidate[] {
  return rows.map((r) => {
    const c = clusterCandidateOf(clusterDoc(r), jobsByCluster.get(r.id) ?? []);
    c.active = connected(r.id);
    return c;
  });
}

interface Reservation {
  cluster_id: string;
  demand: Demand;
  at: number;
}

/**
 * What the root placed on a cluster since that cluster's aggregate was computed. A reservation
 * is dropped by an aggregate received `settleMs` after it was made (the cluster had the deploy
 * by then, so the aggregate counts it), or when the instance goes away.
 */
export class RootReservations {
  readonly #byKey = new Map<string, Reservation>();

  reserve(key: string, clusterId: string, demand: Demand, at: number): void {
    this.#byKey.set(key, { cluster_id: clusterId, demand, at });
  }

  release(key: string): void {
    this.#byKey.delete(key);
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

/** A stable key for one stored instance (a re-created instance number gets a new key). */
export function instanceKey(row: Pick<InstanceRow, 'service_id' | 'instance_number' | 'created_at'>): string {
  return `${row.service_id}/${row.instance_number}/${row.created_at}`;
}

export function assignmentOf(service: ServiceRow, row: InstanceRow): InstanceAssignment {
  return {
    microserviceID: service.id,
    job_name: service.job_name,
    instance_number: row.instance_number,
    service: { ...service.sla, microserviceID: service.id },
    worker_id: row.worker_id,
  };
}

export type InstanceStatusMessage = Extract<ClusterToRoot, { type: 'instance_status' }>;

export type StatusVerdict =
  | { kind: 'apply'; patch: InstancePatch }
  | { kind: 'same' }
  /** the instance is no longer this cluster's: tell it to undeploy */
  | { kind: 'foreign' }
  /** the stored instance has ended; a late message changes nothing */
  | { kind: 'ended' };

/** What an instance_status from cluster `clusterId` does to the stored instance. */
export function judgeStatus(row: InstanceRow, clusterId: string, m: InstanceStatusMessage): StatusVerdict {
  if (row.cluster_id !== clusterId) return { kind: 'foreign' };
  if (TERMINAL_STATES.has(row.status)) return { kind: 'ended' };
  const patch: InstancePatch = {};
  if (row.status !== m.status) patch.status = m.status;
  if (row.status_detail !== m.status_detail) patch.status_detail = m.status_detail;
  if (row.worker_id !== m.worker_id) patch.worker_id = m.worker_id;
  if (m.publicip !== undefined && row.publicip !== m.publicip) patch.publicip = m.publicip;
  return Object.keys(patch).length === 0 ? { kind: 'same' } : { kind: 'apply', patch };
}
