/**
 * Compile-time proof that the schema-derived payload types have exactly the shapes of the
 * interfaces they replaced (other packages were written against those). `tsc` checks this file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as C from '../src/index.ts';
import type { ClusterResources, InstanceState, Microservice, Virtualization } from '../src/index.ts';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expand<T> = T extends object ? { [K in keyof T]: T[K] } : T;
type Same<A, B> = Equal<Expand<A>, Expand<B>>;
function ok<T extends true>(): T | undefined {
  return undefined;
}

/** POST /api/node/register body (worker -> cluster). */
interface OldNodeRegistration {
  /** the id the worker had before, so that a restarted worker keeps its identity */
  id?: string;
  node_name: string;
  host: string;
  port?: number;
  cpu_cores: number;
  memory_mb: number;
  disk_mb?: number;
  gpus?: number;
  gpu_devices?: C.GpuDevice[];
  arch: string;
  os: string;
  virtualizations: Virtualization[];
  netmanager_port?: number | null;
  location?: string | null;
  token?: string;
  id_proof?: string;
  /** issue 9: the NodeEngine's connection nonce */
  conn?: string;
  /** issue 14 */
  version?: string;
  netmanager_version?: string | null;
  self_upgrade_blocker?: string | null;
  upgrade?: C.WorkerUpgradeState;
  /** issue 12: addon labels for `addons` constraints */
  supported_addons?: string[];
}

interface OldNodeRegistrationAnswer {
  id: string;
  MQTT_BROKER_PORT: number;
  /** the broker URL when it is not the cluster host at MQTT_BROKER_PORT */
  MQTT_BROKER_URL?: string;
  report_interval_ms: number;
  mqtt_username?: string;
  mqtt_password?: string;
  mqtt_tls?: boolean;
}

/** nodes/{id}/information, every 2 s. */
interface OldNodeInformation {
  cpu_percent: number;
  cpu_cores: number;
  /** cores not reserved and not used */
  memory_free_mb: number;
  memory_total_mb: number;
  disk_free_mb: number;
  gpus: number;
  gpu_devices?: C.GpuDevice[];
  virtualizations: Virtualization[];
  running_instances: string[];
  timestamp: number;
  conn?: string;
  /** issue 14 */
  version?: string;
  netmanager_version?: string | null;
  self_upgrade_blocker?: string | null;
  upgrade?: C.WorkerUpgradeState;
}

/** nodes/{id}/job: an instance changed state. */
interface OldJobStatus {
  job_name: string;
  instance_number: number;
  status: InstanceState;
  status_detail: string;
  publicip?: string | null;
  exit_code?: number | null;
  health?: 'starting' | 'healthy' | 'unhealthy';
  restarts?: number;
}

/** nodes/{id}/jobs/resources */
interface OldJobResources {
  instances: { job_name: string; instance_number: number; cpu_percent: number; memory_mb: number }[];
}

/** nodes/{id}/control/deploy: the service plus the instance number. */
interface OldDeployCommand extends Microservice {
  job_name: string;
  instance_number: number;
  overlay?: C.InstanceAddresses;
  organization_id?: string;
  registry_auth?: C.RegistryAuth;
}

/** nodes/{id}/control/delete */
interface OldDeleteCommand {
  job_name: string;
  virtualization: Virtualization;
  instance_number: number;
}
/** What a cluster must run: one instance of a service. */
interface OldInstanceAssignment {
  microserviceID: string;
  job_name: string;
  instance_number: number;
  service: Microservice;
  /** set when the root already knows the worker (re-sync after a reconnect) */
  worker_id?: string | null;
  overlay?: C.InstanceAddresses;
  epoch?: number;
  organization_id?: string;
  registry_auth?: C.RegistryAuth;
  /** issue 12 */
  peers?: { target: string; threshold_ms: number; rigidness: number; workers: string[] }[];
}

type OldClusterToRoot =
  | { type: 'hello'; token: string; cluster_name: string; cluster_location: string | null; version: string; public_key?: string }
  | { type: 'aggregate'; resources: ClusterResources }
  | {
      type: 'instance_status';
      job_name: string;
      instance_number: number;
      status: InstanceState;
      status_detail: string;
      worker_id: string | null;
      publicip?: string | null;
      net?: C.InstanceNet | null;
      epoch?: number;
      health?: 'starting' | 'healthy' | 'unhealthy';
      restarts?: number;
    }
  | { type: 'pong'; t: number };

type OldRootToCluster =
  | { type: 'welcome'; cluster_id: string }
  | { type: 'reject'; reason: string }
  /** the full desired set for this cluster, sent after welcome: anything else must go */
  | { type: 'sync'; instances: OldInstanceAssignment[] }
  | { type: 'deploy'; instance: OldInstanceAssignment }
  | { type: 'undeploy'; job_name: string; instance_number: number; epoch?: number }
  | { type: 'ping'; t: number };

interface OldWorkerSummary {
  id: string;
  name: string;
  cpu_cores_free: number;
  memory_free_mb: number;
  virtualizations: Virtualization[];
  arch?: string;
  location?: string | null;
  gpus_free?: number;
  gpus?: C.GpuDevice[];
  net?: C.WorkerNet;
  /** issue 12 */
  supported_addons?: string[];
  // measured readings (issue 11), optional: older clusters do not send them
  cpu_percent?: number;
  cpu_cores_total?: number;
  memory_total_mb?: number;
  memory_available_mb?: number;
  disk_free_mb?: number;
  disk_total_mb?: number;
  os?: string;
  /** issue 14 */
  version?: string;
  netmanager_version?: string | null;
  self_upgrade_blocker?: string | null;
  upgrade?: C.WorkerUpgradeState;
  conn?: string;
  reported_at?: number;
}
interface OldClusterResources {
  cpu_cores_free: number;
  cpu_cores_total: number;
  memory_free_mb: number;
  memory_total_mb: number;
  gpus_free: number;
  virtualizations: Virtualization[];
  workers: number;
  worker_summary: OldWorkerSummary[];
  /** issue 12 */
  supported_addons?: string[];
  /** issue 11 */
  dead_workers?: { id: string; name: string; location?: string | null; dead_since: string; last_seen: string; reason: string }[];
  /** issue 14 */
  version?: string;
}

test('schema types keep the shapes of the former interfaces', () => {
  ok<Same<C.NodeRegistration, OldNodeRegistration>>();
  ok<Same<C.NodeRegistrationAnswer, OldNodeRegistrationAnswer>>();
  ok<Same<C.NodeInformation, OldNodeInformation>>();
  ok<Same<C.JobStatus, OldJobStatus>>();
  ok<Same<C.JobResources, OldJobResources>>();
  ok<Same<C.DeployCommand, OldDeployCommand>>();
  ok<Same<C.DeleteCommand, OldDeleteCommand>>();
  ok<Same<C.InstanceAssignment, OldInstanceAssignment>>();
  ok<Same<C.WorkerSummary, OldWorkerSummary>>();
  ok<Same<ClusterResources, OldClusterResources>>();
  ok<Equal<C.ClusterToRoot['type'], OldClusterToRoot['type'] | 'logs_data' | 'logs_end' | 'token_check' | 'subnet_request' | 'table_query' | 'interest_remove' | 'artifact_request'>>();
  ok<Equal<C.RootToCluster['type'], OldRootToCluster['type'] | 'logs' | 'logs_cancel' | 'token_result' | 'revoke_workers' | 'subnet_result' | 'table_result' | 'table_update' | 'peers' | 'redirect' | 'worker_upgrade' | 'artifact_chunk'>>();
  ok<Same<Extract<C.ClusterToRoot, { type: 'instance_status' }>, Extract<OldClusterToRoot, { type: 'instance_status' }>>>();
  ok<Same<Extract<C.ClusterToRoot, { type: 'hello' }>, Extract<OldClusterToRoot, { type: 'hello' }>>>();
  ok<Same<Extract<C.RootToCluster, { type: 'sync' }>, Extract<OldRootToCluster, { type: 'sync' }>>>();
  ok<Same<Extract<C.RootToCluster, { type: 'undeploy' }>, Extract<OldRootToCluster, { type: 'undeploy' }>>>();
  ok<Equal<C.Virtualization, Virtualization>>();
  const s: InstanceState = 'RUNNING';
  assert.equal(s, 'RUNNING');
});
