/**
 * Documents of the root REST API (SPEC §3). Field names follow Oakestra's so that its users and
 * tools find what they expect.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FieldIssue } from './errors.ts';
import type { HealthState, InstanceState } from './states.ts';
import { AddonList, Virtualization, type Microservice } from './sla.ts';
import { WorkerNet } from './net.ts';
import { WorkerVersionFields } from './fleet.ts';

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
  /** what was accepted but not used (unknown fields...), on create/update answers only */
  warnings?: FieldIssue[];
}

export interface InstanceDoc {
  instance_number: number;
  status: InstanceState;
  status_detail: string;
  cluster_id: string | null;
  cluster_name?: string | null;
  worker_id: string | null;
  publicip: string | null;
  /** overlay addresses: the stable virtual instance IPs (root IPAM) */
  instance_ip?: string | null;
  instance_ip_v6?: string | null;
  /** the address of the instance's network namespace on its worker (reported by the worker) */
  nsip?: string | null;
  nsip_v6?: string | null;
  created_at: string;
  updated_at: string;
  /** every transition with its time */
  history?: { status: InstanceState; status_detail: string; at: string }[];
  /** the service version this instance runs or will run (issue 9; absent from roots before it) */
  service_version?: number;
  /** 'stop': undeploy asked, the root finishes it once its cluster confirms (listings leave such instances out) */
  desired?: 'run' | 'stop';
  /** + 1 at every placement on a cluster (0: never placed) */
  epoch?: number;
  /** the instance_number this one replaces (rolling update, lost cluster), or null */
  replaces?: number | null;
  /** the health probe's verdict (issue 10; null/absent: no probe) */
  health?: HealthState | null;
  /** local restarts on its worker (issue 10) */
  restarts?: number;
  /** Oakestra's usage fields (issue 12; docs/api.md): the last reading, null before one arrived */
  cpu_percent?: number | null;
  memory_percent?: number | null;
  /** no source here: always null */
  disk?: number | null;
  /** the readings the root keeps (oldest first, at most 100), `timestamp` ISO 8601 */
  cpu_history?: { value: number; timestamp: string }[];
  memory_history?: { value: number; timestamp: string }[];
  /** always "" (read logs with GET /api/service/{id}/instance/{n}/logs) */
  logs?: string;
  /** the worker's tunnel endpoint (NetManager NodePublicAddress / NodePublicPort), else publicip / null */
  host_ip?: string | null;
  host_port?: number | null;
  /** the location of the instance's cluster (CLUSTER_LOCATION), null while unplaced or unknown */
  cluster_location?: string | null;
}

/** One version of a service's SLA (GET /api/service/{id}/history). */
export interface ServiceVersionDoc {
  version: number;
  created_at: string;
  /** user id, or null when the root made it (auto rollback) */
  created_by: string | null;
  /** that user's name (null: the root, or a user that no longer exists) */
  created_by_name: string | null;
  /** 'created', 'updated', 'rollback to 3', 'auto rollback: ...' */
  reason: string;
  /** 'complete', 'stopped: ...', 'rolled back: ...', 'superseded', or null while rolling */
  outcome: string | null;
  /** true for the service's current version */
  current: boolean;
  sla: Microservice;
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
  /** the service's virtual addresses (root IPAM): round robin, closest, IPv4 and IPv6 */
  service_ip?: string | null;
  service_ip_v6?: string | null;
  closest_ip?: string | null;
  closest_ip_v6?: string | null;
  /** Oakestra's names on a service document: application name and namespace, round-robin IP */
  app_name?: string;
  app_ns?: string;
  RR_ip?: string | null;
  created_at: string;
  updated_at: string;
  /** the SLA's generation: + 1 at every change of the SLA and at every rollback (issue 9) */
  version?: number;
  /** what was accepted but not used (unknown fields...), on create/update answers only */
  warnings?: FieldIssue[];
}

/** Fields of a ServiceDoc that the root adds: not part of the service's SLA (every key of ServiceDoc beyond Microservice). */
export const SERVICE_DOC_ONLY: readonly (keyof ServiceDoc)[] = ['microserviceID', 'applicationID', 'job_name', 'application_name', 'application_namespace', 'organization_id', 'userId', 'instance_list', 'created_at', 'updated_at', 'service_ip', 'service_ip_v6', 'closest_ip', 'closest_ip_v6', 'version', 'warnings', 'app_name', 'app_ns', 'RR_ip'];

/** A service document as its SLA microservice entry (what the root adds left out): what an update takes back. */
export function serviceSla(d: ServiceDoc | Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...d };
  for (const k of SERVICE_DOC_ONLY) delete out[k];
  return out;
}

const Free = (description: string) => Type.Number({ minimum: 0, description });

/** the most GPUs one worker reports (more are cut off by the worker) */
export const MAX_WORKER_GPUS = 64;

/** One NVIDIA GPU of a worker, as its NodeEngine detected it (nvidia-smi or the driver's /proc files). */
export const GpuDevice = Type.Object({
  /** the driver's index: /dev/nvidia<index>, CDI name nvidia.com/gpu=<index> */
  index: Type.Integer({ minimum: 0, maximum: 9999 }),
  /** the model, e.g. `NVIDIA A100-SXM4-40GB` */
  name: Type.String({ maxLength: 128 }),
  /** total memory in MiB; 0 when unknown */
  memory_mb: Type.Integer({ minimum: 0, maximum: 1024 * 1024 * 1024 }),
  /** `GPU-<uuid>`, '' when unknown */
  uuid: Type.String({ maxLength: 80 }),
});
export type GpuDevice = Static<typeof GpuDevice>;
export const GpuDevices = Type.Array(GpuDevice, { maxItems: MAX_WORKER_GPUS });

/** Per-worker summary, for constraints the root must judge (direct node, geo of a worker). */
export const WorkerSummary = Type.Object({
  id: Type.String(),
  name: Type.String(),
  cpu_cores_free: Free('cores'),
  memory_free_mb: Free('MB'),
  virtualizations: Type.Array(Virtualization),
  /** the worker's architecture (Go's names); absent from clusters that predate it */
  arch: Type.Optional(Type.String({ maxLength: 64 })),
  location: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  /** GPUs not held by an instance (placed or reserved); absent from clusters that predate GPU accounting */
  gpus_free: Type.Optional(Free('GPUs')),
  /** the worker's NVIDIA GPUs (count, model, memory); absent or [] without any */
  gpus: Type.Optional(GpuDevices),
  /** the worker's place in the overlay (subnet, tunnel endpoint, measured RTTs), when it runs a NetManager */
  net: Type.Optional(WorkerNet),
  /** the addon labels the worker offers (NodeEngine `--addons`), Oakestra's field name */
  supported_addons: Type.Optional(AddonList),
  /** measured load of the whole machine at its last report, 0..100 (issue 11: the dashboard's bars); absent from older clusters */
  cpu_percent: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
  cpu_cores_total: Type.Optional(Free('cores')),
  memory_total_mb: Type.Optional(Free('MB')),
  /** memory the machine reports free (measured, not what instances reserved) */
  memory_available_mb: Type.Optional(Free('MB')),
  /** the NodeEngine's data dir file system */
  disk_free_mb: Type.Optional(Free('MB')),
  disk_total_mb: Type.Optional(Free('MB')),
  os: Type.Optional(Type.String({ maxLength: 128 })),
  /** NodeEngine and NetManager versions, whether it can upgrade itself, its last upgrade (issue 14) */
  ...WorkerVersionFields,
  /** its NodeEngine process's connection nonce (a new one: it restarted) and its last report, ms since the epoch */
  conn: Type.Optional(Type.String({ maxLength: 64 })),
  reported_at: Type.Optional(Type.Number({ minimum: 0 })),
});
export type WorkerSummary = Static<typeof WorkerSummary>;

/** the most dead workers one aggregate lists (the cluster forgets the oldest beyond) */
export const MAX_DEAD_WORKERS = 1000;

/**
 * A worker its cluster declared dead (silent, or its broker connection lost) that nobody removed
 * (issue 11: the dashboard shows it as dead, not gone). It leaves the list when it comes back,
 * when it is removed (DELETE /api/cluster/:id/node/:nodeId, its token revoked), or when its
 * cluster restarts.
 */
export const DeadWorker = Type.Object({
  id: Type.String({ maxLength: 200 }),
  name: Type.String({ maxLength: 255 }),
  location: Type.Optional(Type.Union([Type.String({ maxLength: 255 }), Type.Null()])),
  /** when its cluster declared it dead (ISO 8601, the cluster's clock) */
  dead_since: Type.String({ maxLength: 40 }),
  /** its last registration or report before that (ISO 8601) */
  last_seen: Type.String({ maxLength: 40 }),
  /** why, e.g. `no report for 6 s`, `lost its connection to the broker` */
  reason: Type.String({ maxLength: 200 }),
});
export type DeadWorker = Static<typeof DeadWorker>;

/** the most per-instance readings one aggregate carries (more are cut off by the cluster) */
export const MAX_USAGE_READINGS = 5000;

/**
 * One instance's measured CPU and memory, as its NodeEngine reported it (nodes/{id}/jobs/resources),
 * passed on by its cluster in the aggregate (issue 11: per-instance charts).
 */
export const InstanceUsage = Type.Object({
  job_name: Type.String({ minLength: 1, maxLength: 255 }),
  instance_number: Type.Integer({ minimum: 0, maximum: 1_000_000 }),
  worker_id: Type.String({ minLength: 1, maxLength: 200 }),
  /** percent of one core (a container using two cores reads 200) */
  cpu_percent: Type.Number({ minimum: 0, maximum: 1_000_000 }),
  memory_mb: Type.Number({ minimum: 0, maximum: 1024 * 1024 * 1024 }),
});
export type InstanceUsage = Static<typeof InstanceUsage>;

/** One reading of an instance kept by the root (GET /api/service/:id/metrics, metrics events). */
export interface UsageSample {
  /** ms since the epoch, when the root received it */
  at: number;
  cpu_percent: number;
  memory_mb: number;
}

/** A cluster's aggregate, sent up the root link (SPEC §6). */
export const ClusterResources = Type.Object({
  cpu_cores_free: Free('cores'),
  cpu_cores_total: Free('cores'),
  memory_free_mb: Free('MB'),
  memory_total_mb: Free('MB'),
  gpus_free: Free('GPUs'),
  virtualizations: Type.Array(Virtualization),
  workers: Type.Integer({ minimum: 0 }),
  /** per-worker summary, for constraints the root must judge (direct node, geo of a worker) */
  worker_summary: Type.Array(WorkerSummary),
  /** the addon labels the cluster offers to all its workers (cluster `--addons`, CLUSTER_ADDONS) */
  supported_addons: Type.Optional(AddonList),
  /** workers declared dead and not removed (not capacity: never in worker_summary); absent from older clusters */
  dead_workers: Type.Optional(Type.Array(DeadWorker, { maxItems: MAX_DEAD_WORKERS })),
  /** the cluster orchestrator's version (issue 14) */
  version: Type.Optional(Type.String({ maxLength: 64 })),
});
export type ClusterResources = Static<typeof ClusterResources>;

export interface ClusterDoc {
  _id: string;
  cluster_name: string;
  cluster_location: string | null;
  status: 'ACTIVE' | 'INACTIVE';
  last_seen: string | null;
  resources: ClusterResources | null;
  created_at: string;
  /** Oakestra's flat fields, read by its clients (CLI, dashboard) */
  active?: boolean;
  active_nodes?: number;
  total_cpu_cores?: number;
  memory_in_mb?: number;
  virtualization?: string[];
  /** seconds since the epoch of last_seen (0 when never seen) */
  last_modified_timestamp?: number;
  /** the cluster orchestrator's version (its last aggregate) */
  version?: string | null;
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
  | { type: 'cluster'; action: 'connected' | 'disconnected' | 'updated'; cluster_id: string; cluster_name: string }
  /**
   * readings of some instances of one service (issue 11), at every aggregate of their cluster;
   * only sent to streams that ask for them (`?types=metrics`)
   */
  | { type: 'metrics'; microserviceID: string; applicationID: string; job_name: string; at: number; instances: { instance_number: number; cpu_percent: number; memory_mb: number }[] };

/** One audited request or account event. No request body, query string or secret is ever stored. */
export interface AuditEntryDoc {
  /** newest entries have the largest seq (paging cursor) */
  seq: number;
  at: string;
  user_id: string | null;
  user_name: string | null;
  /** `auth.login`, `auth.login_failed`, `auth.login_blocked`, `auth.logout`, or `<METHOD> <route pattern>` */
  action: string;
  method: string;
  /** the route pattern, e.g. `/api/application/:id` (never the URL with its query) */
  route: string;
  /** the id the request acted on (path parameters, or the id of what it created) */
  target: string | null;
  status: number;
  /** the OAK_* code of a refused request */
  error_code: string | null;
  address: string | null;
}
