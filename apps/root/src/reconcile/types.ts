/**
 * The root's reconciler (issue 9): types shared by the pure core (core.ts: reconcile) and its
 * shell (shell.ts: the keyed work queue that reads the store, runs reconcile for one service and
 * carries out the plan: store writes first, then link messages).
 *
 * The model, in one paragraph: the store holds the desired state (a service's current version and
 * SLA; per instance `desired` run/stop, the `service_version` it should run, the placement
 * `epoch`); clusters report the actual state (instance_status with the epoch they run). For one
 * service at a time, `reconcile(input)` compares both and answers a plan; nothing in the core
 * reads a clock, a store or a socket. A missed event is healed by the next pass (the shell runs
 * one per service on every change and on a periodic resync), so every action must be safe to
 * compute again from the same state (idempotent: a pass that sees its own earlier action already
 * applied plans nothing new).
 */
import type { DisconnectPolicy, InstanceState, UpdatePolicy } from '@oak/contracts';
import type { ClusterCandidate, PeerRule, Strategy } from '@oak/scheduler';
import type { InstanceRow, ServiceRow, ServiceVersionRow } from '@oak/store';

/** Defaults of the policies and deadlines (the shell passes them, tests override them). */
export interface ReconcileConfig {
  /** deadline per transitional state (ms in that state, from status_at), after which the instance is placed again */
  deadlines: { CLUSTER_SCHEDULED: number; NODE_SCHEDULED: number; CREATING: number };
  /** defaults of the SLA's `update` block (UpdatePolicy fields, seconds as in the SLA) */
  update: Required<UpdatePolicy>;
  /** defaults of the SLA's `disconnect` block */
  disconnect: Required<DisconnectPolicy>;
  /** an undeploy not confirmed this long is sent again (ms) */
  undeployResendMs: number;
  /** stopped instances whose end was confirmed are purged this long after (ms) */
  purgeAfterMs: number;
  strategy?: Strategy;
}

/** One cluster as the reconciler sees it. */
export interface ClusterView {
  id: string;
  name: string;
  /** its link is up now */
  connected: boolean;
  /** ms epoch since when its link is down (undefined while connected or never seen) */
  disconnected_since?: number;
  /** for pickCluster, with the root's own reservations already subtracted */
  candidate: ClusterCandidate;
}

export interface ReconcileInput {
  service: ServiceRow;
  /** every stored version of the service (oldest first); the current one is service.version */
  versions: readonly ServiceVersionRow[];
  /** every stored instance of the service, desired run and stop */
  instances: readonly InstanceRow[];
  clusters: readonly ClusterView[];
  /** the service's connectivity rules with the workers of the other services (connectivity.ts); absent: none */
  peers?: readonly PeerRule[];
  /**
   * What the shell knows of each instance that the store does not say, by instance_number:
   * when it last sent an undeploy (ms), the jobs on each cluster (anti-affinity) are in the candidates.
   */
  sent: ReadonlyMap<number, { undeploy_at?: number }>;
  now: number;
  config: ReconcileConfig;
}

/** The steps of a plan, applied in order by the shell (store write first, then the message). */
export type Action =
  /** REQUESTED (desired run) → CLUSTER_SCHEDULED on `cluster_id` with epoch + 1; the deploy goes out; note: the placement's warnings (status_detail) */
  | { kind: 'place'; instance: number; cluster_id: string; epoch: number; note?: string }
  /** it cannot be placed (or must wait): status_detail = reason, nothing else changes */
  | { kind: 'wait'; instance: number; reason: string }
  /**
   * Back to REQUESTED with epoch + 1 (a deadline passed, or its cluster is lost and the policy
   * replaces): the copy on `from_cluster` (if any and connected) gets an undeploy for the old
   * epoch; last_cluster_id = from_cluster; lost_at set when `lost`. The reason goes to its history.
   */
  | { kind: 'requeue'; instance: number; from_cluster: string | null; reason: string; lost: boolean }
  /** a new instance row (rolling update replacement; service_version given), REQUESTED */
  | { kind: 'create'; service_version: number; replaces: number | null; reason: string }
  /** desired = stop; an undeploy goes to its cluster when it has one and it is connected */
  | { kind: 'stop'; instance: number; reason: string }
  /** an undeploy of a stopping instance again (not confirmed within undeployResendMs) */
  | { kind: 'resend_undeploy'; instance: number; cluster_id: string }
  /** a stopping instance is gone (confirmed, never placed, or its cluster lost): status UNDEPLOYED, addresses released */
  | { kind: 'finish'; instance: number; reason: string }
  /** a finished stopped row is deleted (numbers are never reused, so this is safe) */
  | { kind: 'purge'; instance: number }
  /** a REQUESTED instance of an older version simply takes the current one (it was never placed) */
  | { kind: 'retag'; instance: number; service_version: number }
  /** the rollout of `failed_version` failed and auto_rollback is on: store version `to_version`'s SLA as a new version */
  | { kind: 'rollback'; failed_version: number; to_version: number; reason: string }
  /** the outcome of a version's rollout ('complete', 'stopped: …', 'rolled back: …') */
  | { kind: 'outcome'; version: number; outcome: string };

export interface Plan {
  actions: Action[];
  /** when this service needs a pass again even if nothing happens (a deadline, a grace); undefined: only on change */
  next_at?: number;
  /** one line per waiting reason, for logs and tests */
  notes: string[];
}

/** How a report (instance_status) from a cluster relates to the stored instance (status intake). */
export type ReportVerdict =
  | { kind: 'apply'; patch: Partial<Pick<InstanceRow, 'status' | 'status_detail' | 'worker_id' | 'publicip' | 'net' | 'health' | 'restarts'>> }
  | { kind: 'same' }
  /** the stored instance is not this cluster's, or this copy is of an older epoch: undeploy it there (once) */
  | { kind: 'stale'; reason: string }
  /** the lost original came back while its replacement exists: switch the instance back to this cluster (keep_original / best_score) */
  | { kind: 'adopt'; epoch: number; reason: string }
  /** the stored instance has ended; a late message changes nothing */
  | { kind: 'ended' };

export type { InstanceState };
