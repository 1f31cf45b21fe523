/**
 * The seam between the root's REST API and whatever places instances (the cluster link and the
 * root scheduler). The API persists first, then tells the control plane; the control plane
 * updates instances through the store and publishes what changed on the EventHub.
 */
import type { InstanceRow, ServiceRow } from '@oak/store';
import type { LogTarget } from './reconcile/logs.ts';

export interface LogOptions {
  /** keep streaming new lines until `signal` aborts */
  follow: boolean;
  /** only the last N lines of what exists so far */
  tail?: number;
  signal: AbortSignal;
}

export interface ControlPlane {
  /** new instances were stored as REQUESTED */
  instancesRequested(service: ServiceRow, instances: InstanceRow[]): void;
  /**
   * Instances go (API undeploy, scale down, service delete). Since issue 9 the API sets
   * `desired = 'stop'` on the rows and the reconciler stops them; rows deleted at once (a
   * deleted service, or callers of before) still have their copies undeployed from the rows
   * given here.
   */
  instancesUndeployed(service: ServiceRow, instances: InstanceRow[]): void;
  /** a service's SLA changed (the rolling update runs from the stored versions) */
  serviceUpdated?(service: ServiceRow): void;
  /** anything else of a service changed in the store (a pass of that service soon) */
  serviceChanged?(serviceId: string): void;
  /**
   * Log lines of one instance (GET /api/service/{id}/instance/{n}/logs). Optional: without it the
   * API answers 503 OAK_UNAVAILABLE. The iterable ends when the logs end (follow=false) or when
   * `signal` aborts (the client went away). `instance` is its row, or what the store remembers of
   * a removed one (ended_instances): ended instances are asked of the worker that ran them.
   */
  logs?(service: ServiceRow, instance: LogTarget, opts: LogOptions): AsyncIterable<string> | Promise<AsyncIterable<string>>;
  close?(): Promise<void>;
}

/** Used when no clusters are wired in: instances stay REQUESTED. */
export const noControlPlane: ControlPlane = {
  instancesRequested() {},
  instancesUndeployed() {},
};
