/**
 * The seam between the root's REST API and whatever places instances (the cluster link and the
 * root scheduler). The API persists first, then tells the control plane; the control plane
 * updates instances through the store and publishes what changed on the EventHub.
 */
import type { InstanceRow, ServiceRow } from '@oak/store';

export interface ControlPlane {
  /** new instances were stored as REQUESTED */
  instancesRequested(service: ServiceRow, instances: InstanceRow[]): void;
  /** instances were removed from the store (undeploy); rows are as they were before removal */
  instancesUndeployed(service: ServiceRow, instances: InstanceRow[]): void;
  /** a service's SLA changed (rolling update hooks in here) */
  serviceUpdated?(service: ServiceRow): void;
  close?(): Promise<void>;
}

/** Used when no clusters are wired in: instances stay REQUESTED. */
export const noControlPlane: ControlPlane = {
  instancesRequested() {},
  instancesUndeployed() {},
};
