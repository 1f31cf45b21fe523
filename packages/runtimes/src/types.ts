/**
 * One driver per virtualization behind one small interface (the shape of Nomad's task drivers):
 * fingerprint the host, start, stop, list what exists (re-adoption after a restart), logs, stats,
 * and exit notifications.
 */
import type { PortMapping, Virtualization } from '@oak/contracts';

/** Everything a driver needs to run one instance; built by the NodeEngine from a DeployCommand. */
export interface InstanceSpec {
  /** unique on the worker: the instance name `<job_name>.instance.<n>` */
  id: string;
  job_name: string;
  instance_number: number;
  virtualization: Virtualization;
  /** image reference, executable path/URL, kernel or wasm module */
  code: string;
  /** containers: replaces the image command (full argv); process/wasm: arguments to `code` */
  cmd?: string[] | undefined;
  /** appended to cmd (containers: to the image's entrypoint + cmd when there is no cmd) */
  args?: string[] | undefined;
  /**
   * files fetched by the NodeEngine (the SLA's added_files): `source` is a file on the worker;
   * containers bind-mount it at `target` (absolute), processes get a copy at `target` below
   * their work dir (relative)
   */
  files?: { source: string; target: string; mode: number }[] | undefined;
  /** processes: the work dir is a tmpfs of this size (MB); others: not enforced */
  storage_mb?: number | undefined;
  /** KEY=value entries */
  env: string[];
  memory_mb?: number | undefined;
  vcpus?: number | undefined;
  ports: PortMapping[];
  one_shot: boolean;
  /** path of a network namespace to join (the instance's own, see the NodeEngine); host network otherwise */
  netns?: string | undefined;
  /**
   * a file to show the instance as /etc/resolv.conf instead of the host's (the worker's overlay
   * resolver); containers bind-mount it read-only, processes get it in a private mount namespace
   */
  resolvConf?: string | undefined;
  /**
   * containers: every capability and device; processes: run as root instead of the unprivileged
   * user. The NodeEngine sets it only when the worker runs with --allow-privileged.
   */
  privileged?: boolean | undefined;
  /** host paths to bind-mount (containers), already checked against the worker's allow-list */
  mounts?: { source: string; target: string; readonly: boolean }[] | undefined;
  /**
   * the worker's GPUs this instance holds (chosen by the NodeEngine, none shared): containers get
   * their devices through CDI or the NVIDIA container hook; processes get CUDA_VISIBLE_DEVICES
   */
  gpus?: { index: number; uuid: string }[] | undefined;
  labels: Record<string, string>;
  /**
   * image virtualizations: the login for the image's registry host (private registries), used
   * for the pull only; never logged, never written to disk, dropped after the start
   */
  registryAuth?: { host: string; username: string; password: string } | undefined;
}

export type RuntimeState = 'CREATING' | 'CREATED' | 'RUNNING' | 'COMPLETED' | 'FAILED';

export interface InstanceStatus {
  id: string;
  state: RuntimeState;
  /** human-readable detail, e.g. the failure reason ("out of memory (limit 64 MB)") */
  detail: string;
  pid?: number | undefined;
  exit_code?: number | undefined;
  /** the labels given at start (job_name, instance_number, ... survive a NodeEngine restart) */
  labels: Record<string, string>;
}

export interface InstanceExit {
  id: string;
  exit_code: number;
  /** COMPLETED when a one-shot instance exited 0, FAILED otherwise (a service exiting is a failure) */
  state: 'COMPLETED' | 'FAILED';
  detail: string;
}

export interface InstanceStats {
  cpu_percent: number;
  memory_mb: number;
}

export interface ProbeResult {
  available: boolean;
  /** why not, or what was found ("containerd 1.6.20") */
  detail: string;
}

export interface LogOptions {
  follow?: boolean;
  /** last N lines only */
  tail?: number;
  signal?: AbortSignal;
}

export interface StopOptions {
  /**
   * move the instance's log file to this path instead of deleting it (the NodeEngine keeps the
   * logs of ended and undeployed instances, docs/operations.md); nothing is moved when there is none
   */
  keepLog?: string | undefined;
}

export interface Runtime {
  readonly virtualization: Virtualization;
  /** can this host run this kind of instance? */
  probe(): Promise<ProbeResult>;
  /**
   * Pulls/prepares, creates and starts. Resolves with the status once the instance runs (or has
   * already exited, for very short one-shots); rejects with RuntimeError when it cannot start.
   * Starting an id that already exists is a no-op that returns its status.
   */
  start(spec: InstanceSpec): Promise<InstanceStatus>;
  /** stops and removes everything of the instance; idempotent (unknown id is fine) */
  stop(id: string, opts?: StopOptions): Promise<void>;
  /** every instance this driver still holds (running or exited), e.g. after a NodeEngine restart;
   * instances found are watched again, so their exits reach onExit */
  list(): Promise<InstanceStatus[]>;
  status(id: string): Promise<InstanceStatus | undefined>;
  logs(id: string, opts?: LogOptions): AsyncIterable<string>;
  stats(id: string): Promise<InstanceStats | undefined>;
  /** called once for each exit of a started or adopted instance */
  onExit(listener: (exit: InstanceExit) => void): void;
  /** releases connections and watchers; running instances keep running */
  close(): Promise<void>;
}

export class RuntimeError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string, opts?: ErrorOptions) {
    super(message, opts);
    this.name = 'RuntimeError';
    this.reason = reason;
  }
}
