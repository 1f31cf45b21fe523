/**
 * Pure helpers of the root's placement (no I/O): cluster candidates from stored cluster rows and
 * the assignment sent over the link. The root's reservations are reconcile/accounting.ts (still
 * exported here), how a report changes a stored instance is reconcile/intake.ts (judgeReport).
 */
import { TERMINAL_STATES } from '@oak/contracts';
import type { InstanceAssignment, InstanceState } from '@oak/contracts';
import { clusterCandidateOf } from '@oak/scheduler';
import type { ClusterCandidate, PeerRule } from '@oak/scheduler';
import type { ClusterRow, InstanceRow, ServiceRow } from '@oak/store';
import { clusterDoc } from './docs.ts';
import { overlayOf } from './overlay.ts';

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

export { RootReservations } from './reconcile/accounting.ts';

export function assignmentOf(service: ServiceRow, row: InstanceRow, peers?: readonly PeerRule[]): InstanceAssignment {
  const a: InstanceAssignment = {
    microserviceID: service.id,
    job_name: service.job_name,
    instance_number: row.instance_number,
    service: { ...service.sla, microserviceID: service.id },
    worker_id: row.worker_id,
    overlay: overlayOf(service, row),
    organization_id: service.organization_id,
  };
  // the cluster needs the connectivity rules for its worker pick (it knows the RTTs between its workers)
  if (peers && peers.length > 0) a.peers = peers.slice(0, 100).map((p) => ({ target: p.target, threshold_ms: p.threshold_ms, rigidness: p.rigidness, workers: p.workers.slice(0, 1000) }));
  return a;
}
