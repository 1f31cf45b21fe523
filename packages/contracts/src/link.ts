/**
 * Root <-> cluster link (SPEC §6). The cluster dials out to the root (gRPC bidirectional stream on
 * port 50052, JSON messages) and authenticates with a registration token. Both directions are
 * discriminated unions; every message is validated on arrival.
 */
import type { ClusterResources } from './api.ts';
import type { InstanceState } from './states.ts';
import type { Microservice } from './sla.ts';

export const LINK_SERVICE_PATH = '/oak.ClusterLink/Connect';

/** What a cluster must run: one instance of a service. */
export interface InstanceAssignment {
  microserviceID: string;
  job_name: string;
  instance_number: number;
  service: Microservice;
  /** set when the root already knows the worker (re-sync after a reconnect) */
  worker_id?: string | null;
}

export type ClusterToRoot =
  | { type: 'hello'; token: string; cluster_name: string; cluster_location: string | null; version: string }
  | { type: 'aggregate'; resources: ClusterResources }
  | {
      type: 'instance_status';
      job_name: string;
      instance_number: number;
      status: InstanceState;
      status_detail: string;
      worker_id: string | null;
      publicip?: string | null;
    }
  | { type: 'pong'; t: number };

export type RootToCluster =
  | { type: 'welcome'; cluster_id: string }
  | { type: 'reject'; reason: string }
  /** the full desired set for this cluster, sent after welcome: anything else must go */
  | { type: 'sync'; instances: InstanceAssignment[] }
  | { type: 'deploy'; instance: InstanceAssignment }
  | { type: 'undeploy'; job_name: string; instance_number: number }
  | { type: 'ping'; t: number };
