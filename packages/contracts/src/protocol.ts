/**
 * Cluster <-> worker protocol (SPEC §5): HTTP registration plus MQTT 3.1.1 topics as in Oakestra.
 * Each payload is a TypeBox schema and the type of the same name; wire.ts parses them on arrival.
 * Extra fields are allowed (a newer peer may send more).
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { HealthState, InstanceState } from './states.ts';
import { AddonList, Microservice, Virtualization } from './sla.ts';
import { InstanceAddresses } from './net.ts';
import { GpuDevices } from './api.ts';
import { RegistryAuth } from './registry.ts';
import { WorkerVersionFields } from './fleet.ts';

export const DEFAULT_PORTS = {
  root: 10000,
  rootLink: 50052,
  cluster: 10100,
  clusterMqtt: 10003,
  netmanager: 6000,
  tunnel: 50103,
} as const;

export const topics = {
  information: (id: string) => `nodes/${id}/information`,
  job: (id: string) => `nodes/${id}/job`,
  jobResources: (id: string) => `nodes/${id}/jobs/resources`,
  deploy: (id: string) => `nodes/${id}/control/deploy`,
  delete: (id: string) => `nodes/${id}/control/delete`,
  netSubnet: (id: string) => `nodes/${id}/net/subnet`,
  netTableQueryRequest: (id: string) => `nodes/${id}/net/tablequery/request`,
  netTableQueryResult: (id: string) => `nodes/${id}/net/tablequery/result`,
  netServiceDeployed: (id: string) => `nodes/${id}/net/service/deployed`,
  jobUpdates: (jobName: string) => `jobs/${jobName}/updates_available`,
  /** cluster -> worker: send an instance's log lines (LogRequest) */
  logsRequest: (id: string) => `nodes/${id}/control/logs`,
  /** cluster -> worker: stop a log request (LogCancel) */
  logsCancel: (id: string) => `nodes/${id}/control/logs/cancel`,
  /** cluster -> worker: install this NodeEngine release, or go back to the previous one (WorkerUpgradeCommand, issue 14) */
  upgrade: (id: string) => `nodes/${id}/control/upgrade`,
  /** cluster -> worker: you are not registered here (any more): register again (e.g. after a cluster restart) */
  registerRequest: (id: string) => `nodes/${id}/control/register`,
  /** worker -> cluster: batches of lines for one request (LogBatch) */
  logsAnswer: (id: string, requestId: string) => `nodes/${id}/logs/${requestId}`,
  /**
   * worker -> cluster: this worker's connection is gone (NodeGone). The NodeEngine's last will
   * (retain false, QoS 1): the broker publishes it when the connection drops without a clean
   * disconnect. A worker may set a will on its own `nodes/<id>/gone` only (the broker ACL).
   */
  gone: (id: string) => `nodes/${id}/gone`,
  /** wildcard subscriptions for the cluster side */
  all: {
    information: 'nodes/+/information',
    gone: 'nodes/+/gone',
    job: 'nodes/+/job',
    jobResources: 'nodes/+/jobs/resources',
    logs: 'nodes/+/logs/+',
  },
} as const;

/** Splits `nodes/<id>/<rest>` into id and rest. */
export function parseNodeTopic(topic: string): { nodeId: string; rest: string } | undefined {
  const m = /^nodes\/([^/]+)\/(.+)$/.exec(topic);
  if (!m || !m[1] || !m[2]) return undefined;
  return { nodeId: m[1], rest: m[2] };
}

const NonNeg = (description?: string) => Type.Number(description === undefined ? { minimum: 0 } : { minimum: 0, description });
const Count = () => Type.Integer({ minimum: 0 });
const PortNumber = () => Type.Integer({ minimum: 1, maximum: 65535 });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
/** a connection nonce: a few random URL-safe characters */
const ConnNonce = () => Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' });

/** POST /api/node/register body (worker -> cluster). */
export const NodeRegistration = Type.Object({
  /** the id the worker had before, so that a restarted worker keeps its identity */
  id: Type.Optional(Type.String({ minLength: 1 })),
  node_name: Type.String({ minLength: 1 }),
  host: Type.String({ minLength: 1 }),
  port: Type.Optional(PortNumber()),
  cpu_cores: NonNeg('cores'),
  memory_mb: NonNeg('MB'),
  disk_mb: Type.Optional(NonNeg('MB')),
  gpus: Type.Optional(Count()),
  /** the GPUs behind `gpus`: index, model, memory, uuid (issue 10) */
  gpu_devices: Type.Optional(GpuDevices),
  arch: Type.String(),
  os: Type.String(),
  virtualizations: Type.Array(Virtualization),
  /** the addon labels this worker offers (`--addons`, config key `addons`), for `addons` constraints */
  supported_addons: Type.Optional(AddonList),
  netmanager_port: Type.Optional(Nullable(PortNumber())),
  location: Type.Optional(Nullable(Type.String())),
  /** the worker join token (oak1.w....), see join-token.ts */
  token: Type.Optional(Type.String({ maxLength: 512 })),
  /**
   * proof that the worker owns `id`: the MQTT password the cluster gave it for that id. Without
   * it a worker that asks for an id gets a fresh one (nobody can take another worker's identity).
   */
  id_proof: Type.Optional(Type.String({ maxLength: 256 })),
  /** the NodeEngine's connection nonce (the one in its last will, NodeGone.conn) */
  conn: Type.Optional(ConnNonce()),
  /** versions and fleet-upgrade state (issue 14) */
  ...WorkerVersionFields,
});
export type NodeRegistration = Static<typeof NodeRegistration>;

export const NodeRegistrationAnswer = Type.Object({
  id: Type.String({ minLength: 1 }),
  MQTT_BROKER_PORT: PortNumber(),
  /** the broker URL when it is not the cluster host at MQTT_BROKER_PORT */
  MQTT_BROKER_URL: Type.Optional(Type.String({ minLength: 1 })),
  report_interval_ms: Type.Integer({ minimum: 1 }),
  /** MQTT credentials for this worker alone (user name = worker id) */
  mqtt_username: Type.Optional(Type.String({ minLength: 1 })),
  mqtt_password: Type.Optional(Type.String({ minLength: 1 })),
  /** the broker speaks MQTT over TLS (verify it against the CA of the join token) */
  mqtt_tls: Type.Optional(Type.Boolean()),
});
export type NodeRegistrationAnswer = Static<typeof NodeRegistrationAnswer>;

/** nodes/{id}/information, every 2 s. */
export const NodeInformation = Type.Object({
  cpu_percent: NonNeg('percent of the whole machine'),
  cpu_cores: NonNeg('cores'),
  /** cores not reserved and not used */
  memory_free_mb: NonNeg('MB'),
  memory_total_mb: NonNeg('MB'),
  disk_free_mb: NonNeg('MB'),
  gpus: Count(),
  /** the GPUs behind `gpus` (the registration's list can be out of date after a driver change) */
  gpu_devices: Type.Optional(GpuDevices),
  virtualizations: Type.Array(Virtualization),
  running_instances: Type.Array(Type.String()),
  timestamp: Type.Number(),
  /** the NodeEngine's connection nonce (the one in its last will, NodeGone.conn) */
  conn: Type.Optional(ConnNonce()),
  /** versions and fleet-upgrade state (issue 14) */
  ...WorkerVersionFields,
});
export type NodeInformation = Static<typeof NodeInformation>;

/** the largest NodeGone payload the cluster reads */
export const NODE_GONE_MAX_BYTES = 1024;

/**
 * nodes/{id}/gone (worker -> cluster): the last will of a NodeEngine's MQTT connection, or
 * published by a NodeEngine that stops for good. `id` must equal the topic's id; `conn` is the
 * nonce of the NodeEngine process that set the will (it also sends it in its registration and
 * reports), so that the will of an older process is told apart from the current one.
 */
export const NodeGone = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 200 }),
  conn: Type.Optional(ConnNonce()),
  /** ms since the epoch (informative: a will is written when the connection opens) */
  at: Type.Optional(Type.Number()),
});
export type NodeGone = Static<typeof NodeGone>;

/** nodes/{id}/job: an instance changed state. */
export const JobStatus = Type.Object({
  job_name: Type.String({ minLength: 1 }),
  instance_number: Count(),
  status: InstanceState,
  status_detail: Type.String(),
  publicip: Type.Optional(Nullable(Type.String())),
  exit_code: Type.Optional(Nullable(Type.Integer())),
  /** the health probe's verdict (issue 10): starting until the first answer; absent without a probe */
  health: Type.Optional(HealthState),
  /** local restarts of this instance on its worker so far */
  restarts: Type.Optional(Count()),
});
export type JobStatus = Static<typeof JobStatus>;

/** nodes/{id}/jobs/resources */
export const JobResources = Type.Object({
  instances: Type.Array(
    Type.Object({
      job_name: Type.String({ minLength: 1 }),
      instance_number: Count(),
      cpu_percent: NonNeg('percent'),
      memory_mb: NonNeg('MB'),
    }),
  ),
});
export type JobResources = Static<typeof JobResources>;

/** nodes/{id}/control/deploy: the service plus the instance number. */
export const DeployCommand = Type.Composite(
  [
    Microservice,
    Type.Object({
      job_name: Type.String({ minLength: 1 }),
      instance_number: Count(),
      /** the virtual addresses the root gave the service and this instance (net.ts); `addresses` stays the SLA's request */
      overlay: Type.Optional(InstanceAddresses),
      /** the owning organisation (set by the root, never by the SLA): scope of named volumes */
      organization_id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' })),
      /** the organisation's login to the image's registry host, when it has one (never logged or kept) */
      registry_auth: Type.Optional(RegistryAuth),
    }),
  ],
  { additionalProperties: true },
);
export type DeployCommand = Static<typeof DeployCommand>;

/** nodes/{id}/control/delete */
export const DeleteCommand = Type.Object({
  job_name: Type.String({ minLength: 1 }),
  virtualization: Virtualization,
  instance_number: Count(),
});
export type DeleteCommand = Static<typeof DeleteCommand>;

/** A log request id: what may appear as one topic level. */
export const LOG_REQUEST_ID_PATTERN = '^[A-Za-z0-9_.-]{1,128}$';

/** nodes/{id}/control/logs (cluster -> worker); answered on nodes/{id}/logs/{request_id}. */
export const LogRequest = Type.Object({
  request_id: Type.String({ pattern: LOG_REQUEST_ID_PATTERN }),
  job_name: Type.String({ minLength: 1 }),
  instance_number: Count(),
  /** keep sending new lines until cancelled or the instance ends */
  follow: Type.Boolean(),
  /** only the last N lines of what exists so far */
  tail: Type.Optional(Nullable(Count())),
});
export type LogRequest = Static<typeof LogRequest>;

/** nodes/{id}/control/logs/cancel (cluster -> worker) */
export const LogCancel = Type.Object({ request_id: Type.String({ pattern: LOG_REQUEST_ID_PATTERN }) });
export type LogCancel = Static<typeof LogCancel>;

/** nodes/{id}/logs/{request_id} (worker -> cluster): lines in order; the last batch has end: true. */
export const LogBatch = Type.Object({
  lines: Type.Array(Type.String()),
  end: Type.Optional(Type.Boolean()),
  error: Type.Optional(Type.String()),
  /** with `error`: the logs are gone for good (expired, dropped for room, never kept), not just unreachable */
  gone: Type.Optional(Type.Boolean()),
});
export type LogBatch = Static<typeof LogBatch>;
