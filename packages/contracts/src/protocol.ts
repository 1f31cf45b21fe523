/**
 * Cluster <-> worker protocol (SPEC §5): HTTP registration plus MQTT 3.1.1 topics as in Oakestra.
 */
import type { InstanceState } from './states.ts';
import type { Microservice, Virtualization } from './sla.ts';

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
  /** wildcard subscriptions for the cluster side */
  all: {
    information: 'nodes/+/information',
    job: 'nodes/+/job',
    jobResources: 'nodes/+/jobs/resources',
  },
} as const;

/** Splits `nodes/<id>/<rest>` into id and rest. */
export function parseNodeTopic(topic: string): { nodeId: string; rest: string } | undefined {
  const m = /^nodes\/([^/]+)\/(.+)$/.exec(topic);
  if (!m || !m[1] || !m[2]) return undefined;
  return { nodeId: m[1], rest: m[2] };
}

/** POST /api/node/register body (worker -> cluster). */
export interface NodeRegistration {
  /** the id the worker had before, so that a restarted worker keeps its identity */
  id?: string;
  node_name: string;
  host: string;
  port?: number;
  cpu_cores: number;
  memory_mb: number;
  disk_mb?: number;
  gpus?: number;
  arch: string;
  os: string;
  virtualizations: Virtualization[];
  netmanager_port?: number | null;
  location?: string | null;
}

export interface NodeRegistrationAnswer {
  id: string;
  MQTT_BROKER_PORT: number;
  /** the broker URL when it is not the cluster host at MQTT_BROKER_PORT */
  MQTT_BROKER_URL?: string;
  report_interval_ms: number;
}

/** nodes/{id}/information, every 2 s. */
export interface NodeInformation {
  cpu_percent: number;
  cpu_cores: number;
  /** cores not reserved and not used */
  memory_free_mb: number;
  memory_total_mb: number;
  disk_free_mb: number;
  gpus: number;
  virtualizations: Virtualization[];
  running_instances: string[];
  timestamp: number;
}

/** nodes/{id}/job: an instance changed state. */
export interface JobStatus {
  job_name: string;
  instance_number: number;
  status: InstanceState;
  status_detail: string;
  publicip?: string | null;
  exit_code?: number | null;
}

/** nodes/{id}/jobs/resources */
export interface JobResources {
  instances: { job_name: string; instance_number: number; cpu_percent: number; memory_mb: number }[];
}

/** nodes/{id}/control/deploy: the service plus the instance number. */
export interface DeployCommand extends Microservice {
  job_name: string;
  instance_number: number;
}

/** nodes/{id}/control/delete */
export interface DeleteCommand {
  job_name: string;
  virtualization: Virtualization;
  instance_number: number;
}
