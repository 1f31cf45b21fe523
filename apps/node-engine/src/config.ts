/**
 * NodeEngine settings: one plain object, filled from flags (see flags.ts) or by an embedding
 * process (1-DOC), validated once.
 */
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_PORTS, VIRTUALIZATIONS } from '@oak/contracts';
import type { GpuDevice, Virtualization } from '@oak/contracts';

export const DEFAULT_CONTAINERD_SOCKET = '/run/containerd/containerd.sock';
export const DEFAULT_REPORT_INTERVAL_MS = 2000;

export interface NodeEngineConfig {
  /** cluster orchestrator address without port (Oakestra `-a`) */
  clusterAddress: string;
  /** cluster registration port (Oakestra `-p`, 10100) */
  clusterPort: number;
  /** worker join token (`-t` / OAK_JOIN_TOKEN, oak1.w....): pins the cluster's CA and authorises the registration */
  joinToken?: string | undefined;
  /** local NetManager port (Oakestra `-n`, 6000); null = no NetManager */
  netmanagerPort: number | null;
  /**
   * talk to the NetManager on `netmanagerPort` (the overlay): set when `-n` is given explicitly
   * (or by the 1-DOC); without it the port is only reported in the registration, as before
   */
  useNetManager?: boolean | undefined;
  /** where the NetManager writes its key `netmanager-<port>.key` (default /run/oak; env OAK_NETMANAGER_KEY_DIR) */
  netmanagerKeyDir?: string | undefined;
  /** how long the start waits for the NetManager's first answer before going on without it (default 10000 ms) */
  netmanagerWaitMs?: number | undefined;
  /** key-file check and retry interval of the NetManager link (default 1000 ms) */
  netmanagerCheckMs?: number | undefined;
  /** node name shown to users; default the host name */
  name: string;
  /** instance state and the persisted node id live here */
  dataDir: string;
  /** containerd socket path */
  containerdSocket: string;
  /** containerd namespace and cgroup parent of this worker's instances (default `oak`) */
  namespace?: string | undefined;
  /**
   * interval of `information` and `jobs/resources` reports; when undefined the cluster's
   * `report_interval_ms` from the registration answer is used, else 2000
   */
  reportIntervalMs?: number | undefined;
  /** `lat,long` (or free text) sent with the registration */
  location?: string | undefined;
  /** fleet upgrades: an executable run after restarting into a new version (non-zero: the upgrade failed) */
  upgradeCheck?: string | undefined;
  /** offer only these virtualizations (still probed) */
  runtimes?: Virtualization[] | undefined;
  /** addon labels this worker offers (`--addons`, OAK_ADDONS), sent as `supported_addons` for `addons` constraints */
  addons?: string[] | undefined;
  /** the broker URL instead of the one the cluster names (mainly for tests and NAT setups) */
  mqttUrl?: string | undefined;
  /**
   * a connection to the cluster's broker inside this process (the 1-DOC: the cluster's
   * `localBrokerStream`) instead of dialling the URL the cluster names; authenticated as usual
   */
  mqttStream?: (() => import('node:stream').Duplex) | undefined;
  /** address of this worker reported as `host`; default the host name */
  host?: string | undefined;
  /** cleanup of exited instances the cluster never deleted, default 10 minutes */
  exitedRetentionMs?: number | undefined;
  /**
   * the logs of ended (and undeployed) instances are kept in `<dataDir>/kept-logs` this long after
   * the instance ended (default 24 h; 0 keeps none), at most `logKeepInstanceBytes` per instance
   * (default 8 MiB, the newest part) and `logKeepTotalBytes` in all (default 256 MiB, the logs of
   * the instances that ended first are dropped first)
   */
  logRetentionMs?: number | undefined;
  logKeepInstanceBytes?: number | undefined;
  logKeepTotalBytes?: number | undefined;
  /** the clock of the kept logs (tests) */
  now?: (() => number) | undefined;
  /** first and maximum delay between registration attempts (default 500 ms and 10 s) */
  registerBackoffMs?: { initial: number; max: number } | undefined;
  /** first and maximum delay before a local restart of an instance (default 1 s doubling up to 30 s) */
  restartBackoffMs?: { initial: number; max: number } | undefined;
  /** where progress lines go, default console */
  log?: EngineLog | undefined;
  // ---- workload isolation (docs/security.md "Workloads are not the node")
  /**
   * user that `process` workloads run as when the NodeEngine runs as root (default
   * `oak-workload`; `root` only when given explicitly)
   */
  runAs?: string | undefined;
  /** honour `privileged: true` (default false: such instances FAIL with the reason) */
  allowPrivileged?: boolean | undefined;
  /** host directories `volumes` may bind-mount from (default none) */
  volumeAllow?: string[] | undefined;
  /**
   * every instance in its own network namespace behind the worker bridge: `on` (refuse to start
   * when the machine cannot), `off`, or `auto` (default: on when root with ip + nftables, else
   * off with a warning)
   */
  isolation?: 'auto' | 'on' | 'off' | undefined;
  /** subnet of the instance bridge (default from the namespace: 172.30.0.0/24 for `oak`) */
  bridgeSubnet?: string | undefined;
  /** how the worker's NVIDIA GPUs are read (default: nvidia-smi, else /proc/driver/nvidia; tests inject fixtures) */
  gpuReader?: (() => Promise<GpuDevice[]>) | undefined;
  /** CDI spec directories for containers' GPUs (default /etc/cdi, /var/run/cdi) */
  cdiDirs?: string[] | undefined;
  /** the microvm guest kernel: a `dpkg-deb -x` of linux-image-*-cloud-amd64 (default /var/cache/oak/microvm-kernel) */
  microvmKernel?: string | undefined;
  /** parent of the process workloads' working directories (default `<dataDir>-work`) */
  workDir?: string | undefined;
}

export interface EngineLog {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export const consoleLog: EngineLog = {
  info: (m) => console.log(`[NodeEngine] ${m}`),
  warn: (m) => console.warn(`[NodeEngine] ${m}`),
  error: (m) => console.error(`[NodeEngine] ${m}`),
};

export const silentLog: EngineLog = { info: () => {}, warn: () => {}, error: () => {} };

/** OAK_DATA_DIR, else ~/.local/share/oak (or /var/lib/oak for root). */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['OAK_DATA_DIR'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (process.getuid?.() === 0) return '/var/lib/oak';
  const xdg = env['XDG_DATA_HOME'];
  return join(xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.local', 'share'), 'oak');
}

/** A complete config from a partial one (for embedding: `{ clusterAddress, clusterPort, dataDir }`). */
export function withDefaults(partial: Partial<NodeEngineConfig>, env: NodeJS.ProcessEnv = process.env): NodeEngineConfig {
  return {
    clusterAddress: partial.clusterAddress ?? 'localhost',
    clusterPort: partial.clusterPort ?? DEFAULT_PORTS.cluster,
    joinToken: partial.joinToken,
    netmanagerPort: partial.netmanagerPort === undefined ? DEFAULT_PORTS.netmanager : partial.netmanagerPort,
    useNetManager: partial.useNetManager,
    netmanagerKeyDir: partial.netmanagerKeyDir ?? (env['OAK_NETMANAGER_KEY_DIR'] || undefined),
    netmanagerWaitMs: partial.netmanagerWaitMs,
    netmanagerCheckMs: partial.netmanagerCheckMs,
    name: partial.name ?? hostname(),
    dataDir: partial.dataDir ?? defaultDataDir(env),
    containerdSocket: partial.containerdSocket ?? DEFAULT_CONTAINERD_SOCKET,
    namespace: partial.namespace,
    reportIntervalMs: partial.reportIntervalMs,
    location: partial.location,
    upgradeCheck: partial.upgradeCheck,
    runtimes: partial.runtimes,
    addons: partial.addons,
    mqttUrl: partial.mqttUrl,
    mqttStream: partial.mqttStream,
    host: partial.host,
    exitedRetentionMs: partial.exitedRetentionMs,
    registerBackoffMs: partial.registerBackoffMs,
    restartBackoffMs: partial.restartBackoffMs,
    logRetentionMs: partial.logRetentionMs,
    logKeepInstanceBytes: partial.logKeepInstanceBytes,
    logKeepTotalBytes: partial.logKeepTotalBytes,
    now: partial.now,
    log: partial.log,
    runAs: partial.runAs ?? (env['OAK_RUN_AS'] || undefined),
    allowPrivileged: partial.allowPrivileged,
    volumeAllow: partial.volumeAllow,
    isolation: partial.isolation ?? isolationFromEnv(env['OAK_ISOLATION']),
    bridgeSubnet: partial.bridgeSubnet,
    workDir: partial.workDir,
    gpuReader: partial.gpuReader,
    cdiDirs: partial.cdiDirs,
    microvmKernel: partial.microvmKernel,
  };
}

function isolationFromEnv(v: string | undefined): 'auto' | 'on' | 'off' | undefined {
  return v === 'auto' || v === 'on' || v === 'off' ? v : undefined;
}

export function isVirtualization(s: string): s is Virtualization {
  return (VIRTUALIZATIONS as readonly string[]).includes(s);
}
