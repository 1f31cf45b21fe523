/**
 * Documents of the root REST API (SPEC §3). Field names follow Oakestra's so that its users and
 * tools find what they expect.
 */
import type { InstanceState } from './states.ts';
import type { Microservice, Virtualization } from './sla.ts';

export const ROLES = ['Admin', 'Organization_Admin', 'Application_Provider', 'Infrastructure_Provider'] as const;
export type Role = (typeof ROLES)[number];

export interface OrganizationDoc {
  _id: string;
  name: string;
  created_at: string;
}

export interface UserDoc {
  _id: string;
  name: string;
  email?: string;
  roles: Role[];
  organization_id: string;
  organization?: string;
  created_at: string;
}

export interface ApplicationDoc {
  applicationID: string;
  application_name: string;
  application_namespace: string;
  application_desc: string;
  userId: string;
  organization_id: string;
  /** ids of the application's services */
  microservices: string[];
  created_at: string;
  updated_at: string;
}

export interface InstanceDoc {
  instance_number: number;
  status: InstanceState;
  status_detail: string;
  cluster_id: string | null;
  cluster_name?: string | null;
  worker_id: string | null;
  publicip: string | null;
  /** overlay addresses, once the network plugs in */
  instance_ip?: string | null;
  instance_ip_v6?: string | null;
  created_at: string;
  updated_at: string;
  /** every transition with its time */
  history?: { status: InstanceState; status_detail: string; at: string }[];
}

export interface ServiceDoc extends Microservice {
  microserviceID: string;
  applicationID: string;
  job_name: string;
  application_name: string;
  application_namespace: string;
  organization_id: string;
  userId: string;
  instance_list: InstanceDoc[];
  created_at: string;
  updated_at: string;
}

export interface ClusterResources {
  cpu_cores_free: number;
  cpu_cores_total: number;
  memory_free_mb: number;
  memory_total_mb: number;
  gpus_free: number;
  virtualizations: Virtualization[];
  workers: number;
  /** per-worker summary, for constraints the root must judge (direct node, geo of a worker) */
  worker_summary: WorkerSummary[];
}

export interface WorkerSummary {
  id: string;
  name: string;
  cpu_cores_free: number;
  memory_free_mb: number;
  virtualizations: Virtualization[];
  location?: string | null;
}

export interface ClusterDoc {
  _id: string;
  cluster_name: string;
  cluster_location: string | null;
  status: 'ACTIVE' | 'INACTIVE';
  last_seen: string | null;
  resources: ClusterResources | null;
  created_at: string;
}

export interface TokenPair {
  token: string;
  refresh_token: string;
  expires_in: number;
}

/** An event on GET /api/events (server-sent events, `event:` = type). */
export type OakEvent =
  | { type: 'instance'; microserviceID: string; applicationID: string; job_name: string; instance: InstanceDoc }
  | { type: 'application'; action: 'created' | 'updated' | 'deleted'; applicationID: string }
  | { type: 'service'; action: 'created' | 'updated' | 'deleted'; microserviceID: string; applicationID: string }
  | { type: 'cluster'; action: 'connected' | 'disconnected' | 'updated'; cluster_id: string; cluster_name: string };
