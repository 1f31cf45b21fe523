/**
 * Pure mappings between the protocol and the runtime drivers: DeployCommand -> InstanceSpec,
 * driver status / exit -> JobStatus, and labels back to the instance identity (re-adoption).
 */
import { archAllowed, instanceName, parseInstanceName, parsePorts } from '@oak/contracts';
import { arch as sysArch } from '@oak/sysinfo';
import type { DeployCommand, InstanceState, JobStatus, Virtualization } from '@oak/contracts';
import type { InstanceExit, InstanceSpec, InstanceStatus } from '@oak/runtimes';

export const LABEL_JOB = 'oak.job_name';
export const LABEL_INSTANCE = 'oak.instance_number';
export const LABEL_VIRTUALIZATION = 'oak.virtualization';
/** the SLA's arch list, comma-joined (the unikernel driver matches code URLs to it by index) */
export const LABEL_ARCH = 'oak.arch';
/**
 * local restarts so far (issue 10): set on the spec of each restarted copy, so every driver
 * persists it with the instance (the supervisor's state file, containerd's labels) and a
 * re-adopting NodeEngine counts on from it, with the backoff that follows from the count
 */
export const LABEL_RESTARTS = 'oak.restarts';

/** the restart count a driver kept in its labels (0 when absent or not a count) */
export function parseRestartsLabel(v: string | undefined): number {
  return v !== undefined && /^\d{1,6}$/.test(v) ? Number(v) : 0;
}

export interface InstanceIdentity {
  /** `<job_name>.instance.<n>` */
  id: string;
  job_name: string;
  instance_number: number;
}

export type SpecResult = { ok: true; spec: InstanceSpec } | { ok: false; reason: string };

/**
 * Builds what a driver needs from a (validated) deploy command; a bad `port` string is a reason,
 * and so is an arch list without this worker's architecture (the schedulers never send one here).
 */
export function deployToSpec(cmd: DeployCommand, hostArch: string = sysArch()): SpecResult {
  if (cmd.arch !== undefined && cmd.arch.length > 0 && !archAllowed(cmd.arch, hostArch)) {
    return { ok: false, reason: `this worker is ${hostArch}; the service runs only on ${cmd.arch.join(', ')}` };
  }
  let ports: InstanceSpec['ports'] = [];
  if (cmd.port !== undefined && cmd.port.trim() !== '') {
    try {
      ports = parsePorts(cmd.port);
    } catch (err) {
      return { ok: false, reason: `invalid port ${JSON.stringify(cmd.port)}: ${err instanceof Error ? err.message : String(err)}` };
    }
  }
  const env = cmd.environment ?? [];
  const badEnv = env.find((e) => !/^[^=\s]+=/.test(e));
  if (badEnv !== undefined) return { ok: false, reason: `invalid environment entry ${JSON.stringify(badEnv)}: write KEY=value` };
  const labels: Record<string, string> = {
    ...(cmd.labels ?? {}),
    [LABEL_JOB]: cmd.job_name,
    [LABEL_INSTANCE]: String(cmd.instance_number),
    [LABEL_VIRTUALIZATION]: cmd.virtualization,
  };
  if (cmd.arch !== undefined && cmd.arch.length > 0) labels[LABEL_ARCH] = cmd.arch.join(',');
  else delete labels[LABEL_ARCH];
  const spec: InstanceSpec = {
    id: instanceName(cmd.job_name, cmd.instance_number),
    job_name: cmd.job_name,
    instance_number: cmd.instance_number,
    virtualization: cmd.virtualization,
    code: cmd.code,
    cmd: cmd.cmd !== undefined && cmd.cmd.length > 0 ? [...cmd.cmd] : undefined,
    env: [...env],
    memory_mb: cmd.memory !== undefined && cmd.memory > 0 ? cmd.memory : undefined,
    vcpus: cmd.vcpus !== undefined && cmd.vcpus > 0 ? cmd.vcpus : undefined,
    ports,
    one_shot: cmd.one_shot === true,
    labels,
  };
  if (cmd.args !== undefined && cmd.args.length > 0) spec.args = [...cmd.args];
  // storage is a tmpfs work dir for processes; other runtimes cannot enforce it (the validator warned)
  if (cmd.virtualization === 'process' && cmd.storage !== undefined && cmd.storage > 0) spec.storage_mb = cmd.storage;
  // the login for the image's registry: for the pull only (the engine drops it once the driver started)
  if (cmd.registry_auth !== undefined) spec.registryAuth = { ...cmd.registry_auth };
  return { ok: true, spec };
}

/**
 * The job name may become part of file names, cgroup and containerd ids: letters, digits, `.`,
 * `_`, `-` only, and no MQTT wildcards. Undefined when fine.
 */
export function jobNameProblem(jobName: string): string | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/.test(jobName) || jobName.includes('..')) {
    return `job_name ${JSON.stringify(jobName)} may hold only letters, digits, ".", "_" and "-"`;
  }
  return undefined;
}

/** Job name and instance number of something a driver holds: from its labels, else its id. */
export function identityOf(status: Pick<InstanceStatus, 'id' | 'labels'>): InstanceIdentity | undefined {
  const job = status.labels[LABEL_JOB];
  const nText = status.labels[LABEL_INSTANCE];
  if (job !== undefined && nText !== undefined && /^\d+$/.test(nText)) {
    return { id: status.id, job_name: job, instance_number: Number(nText) };
  }
  const parsed = parseInstanceName(status.id);
  return parsed === undefined ? undefined : { id: status.id, ...parsed };
}

export function jobStatus(who: Pick<InstanceIdentity, 'job_name' | 'instance_number'>, status: InstanceState, detail: string, exitCode?: number): JobStatus {
  const s: JobStatus = { job_name: who.job_name, instance_number: who.instance_number, status, status_detail: detail };
  if (exitCode !== undefined) s.exit_code = exitCode;
  return s;
}

/** A driver's view of an instance as the state the cluster understands. */
export function statusToJobStatus(who: Pick<InstanceIdentity, 'job_name' | 'instance_number'>, st: Pick<InstanceStatus, 'state' | 'detail' | 'exit_code'>): JobStatus {
  return jobStatus(who, st.state, st.detail, st.state === 'COMPLETED' || st.state === 'FAILED' ? st.exit_code : undefined);
}

export function exitToJobStatus(who: Pick<InstanceIdentity, 'job_name' | 'instance_number'>, ex: InstanceExit): JobStatus {
  const detail = ex.detail !== '' ? ex.detail : ex.state === 'COMPLETED' ? 'exited with code 0' : `exited with code ${ex.exit_code}`;
  return jobStatus(who, ex.state, detail, ex.exit_code);
}

export function unavailableReason(v: Virtualization, offered: readonly Virtualization[]): string {
  return `virtualization ${v} not available on this worker${offered.length > 0 ? ` (it offers ${offered.join(', ')})` : ''}`;
}
