/**
 * Builds the OCI runtime spec of a container from the image config and the InstanceSpec: the same
 * defaults containerd's own client uses on Linux (mounts, capabilities, masked paths, namespaces),
 * plus the SLA's command, environment and resource limits, and GPU devices resolved from CDI or
 * the NVIDIA hook (gpu.ts). Pure: no I/O.
 */
import type { GpuAccess } from './gpu.ts';

/** the part of an OCI image config used here */
export interface ImageConfig {
  Env?: string[] | null;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  User?: string;
}

export interface SpecInput {
  id: string;
  namespace: string;
  image: ImageConfig;
  /** replaces entrypoint + cmd when given (full argv) */
  cmd?: string[] | undefined;
  /** appended to cmd, or to the image's entrypoint + cmd when there is no cmd */
  args?: string[] | undefined;
  /** single files bind-mounted at their target (the SLA's added_files, fetched per instance) */
  files?: readonly { source: string; target: string }[] | undefined;
  /** KEY=value, override the image's entries */
  env: string[];
  memoryBytes?: number | undefined;
  /** also limit memory+swap (only when the kernel accounts swap: memory.memsw.* exists) */
  limitSwap: boolean;
  vcpus?: number | undefined;
  /** path of a network namespace to join; host network when undefined */
  netns?: string | undefined;
  /** file shown as /etc/resolv.conf (read-only) instead of the host's (the worker's overlay resolver) */
  resolvConf?: string | undefined;
  /** every capability, all devices, no masked paths (only when the worker allows it) */
  privileged?: boolean | undefined;
  /** host paths bind-mounted into the container (already checked against the allow-list) */
  mounts?: readonly BindMount[] | undefined;
  /** what "every capability" means for privileged containers: the runtime's own bounding set */
  allCaps?: readonly string[] | undefined;
  /** the instance's GPUs: CDI edits or the NVIDIA hook (resolveGpuAccess in gpu.ts) */
  gpu?: GpuAccess | undefined;
}

/** the capabilities the NVIDIA hook is asked for when the SLA's environment names none */
export const NVIDIA_DEFAULT_CAPABILITIES = 'compute,utility';

export interface BindMount {
  source: string;
  target: string;
  readonly: boolean;
}

/**
 * containerd's default capability set (oci.DefaultSpec, Linux) without CAP_NET_RAW: no raw or
 * packet sockets, so a container can neither forge packets nor sniff the bridge (ping, which
 * needs it, is the price; unprivileged ICMP sockets remain where net.ipv4.ping_group_range allows).
 */
export const DEFAULT_CAPS: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];
/** capability names by bit number (linux/capability.h) */
export const CAP_NAMES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW',
  'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD',
  'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG',
  'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];
/** every capability of this kernel's range (fallback when the bounding set is unknown) */
export const ALL_CAPS: readonly string[] = CAP_NAMES;

/** the names in a capability mask (e.g. /proc/self/status CapBnd), known bits only */
export function capsFromMask(mask: bigint): string[] {
  return CAP_NAMES.filter((_, bit) => (mask & (1n << BigInt(bit))) !== 0n);
}

export const CPU_PERIOD_US = 100_000;

/** merges KEY=value lists; later entries win, order of first appearance kept */
export function mergeEnv(...lists: string[][]): string[] {
  const m = new Map<string, string>();
  for (const list of lists) {
    for (const e of list) {
      const i = e.indexOf('=');
      const k = i < 0 ? e : e.slice(0, i);
      m.set(k, e);
    }
  }
  return [...m.values()];
}

export function processArgs(image: ImageConfig, cmd?: string[], args?: readonly string[]): string[] {
  const base = cmd && cmd.length > 0 ? cmd : [...(image.Entrypoint ?? []), ...(image.Cmd ?? [])];
  return args !== undefined && args.length > 0 && base.length > 0 ? [...base, ...args] : base;
}

/** numeric `uid[:gid]` or root; user names would need the image's /etc/passwd */
export function parseUser(user: string | undefined): { uid: number; gid: number } | undefined {
  if (!user || user === 'root' || user === '0') return { uid: 0, gid: 0 };
  const m = /^(\d+)(?::(\d+))?$/.exec(user);
  if (!m) return undefined;
  return { uid: Number(m[1]), gid: Number(m[2] ?? m[1]) };
}

export function hostnameFor(id: string): string {
  return id.replace(/[^a-zA-Z0-9.-]/g, '-').slice(0, 63) || 'oak';
}

export function buildSpec(input: SpecInput): Record<string, unknown> {
  const args = processArgs(input.image, input.cmd, input.args);
  if (args.length === 0) throw new Error('no command: the image has no entrypoint/cmd and the SLA gives no cmd');
  const user = parseUser(input.image.User);
  if (!user) throw new Error(`image user "${input.image.User}" is not numeric (uid[:gid]); user names are not supported`);
  const gpu = input.gpu;
  // GPU environment: CDI's edits (or what the NVIDIA hook reads) come before the SLA's, which win
  const gpuEnv = gpu === undefined ? [] : gpu.kind === 'cdi' ? gpu.env : [`NVIDIA_VISIBLE_DEVICES=${gpu.visible}`, `NVIDIA_DRIVER_CAPABILITIES=${NVIDIA_DEFAULT_CAPABILITIES}`];
  const env = mergeEnv(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], input.image.Env ?? [], gpuEnv, input.env);
  if (gpu?.kind === 'hook') {
    // the hook reads the devices to expose from the spec: the SLA may not widen them
    for (let i = 0; i < env.length; i++) if ((env[i] as string).startsWith('NVIDIA_VISIBLE_DEVICES=')) env[i] = `NVIDIA_VISIBLE_DEVICES=${gpu.visible}`;
  }
  const hostNet = input.netns === undefined;

  const mounts: Record<string, unknown>[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  ];
  // the host's name resolution (read-only), in its own namespace too: outbound traffic is NATed;
  // with the overlay the NodeEngine's resolv.conf naming the worker's resolver on the gateway
  if (input.resolvConf !== undefined && (!input.resolvConf.startsWith('/') || input.resolvConf.split('/').includes('..'))) {
    throw new Error(`resolv.conf ${JSON.stringify(input.resolvConf)} is not an absolute path`);
  }
  mounts.push({ destination: '/etc/hosts', type: 'bind', source: '/etc/hosts', options: ['rbind', 'ro'] });
  mounts.push({ destination: '/etc/resolv.conf', type: 'bind', source: input.resolvConf ?? '/etc/resolv.conf', options: ['rbind', 'ro'] });
  for (const m of input.mounts ?? []) {
    mounts.push({ destination: m.target, type: 'bind', source: m.source, options: ['rbind', m.readonly ? 'ro' : 'rw', 'nosuid', 'nodev'] });
  }
  if (gpu?.kind === 'cdi') {
    for (const m of gpu.mounts) {
      mounts.push({ destination: m.containerPath, type: m.type ?? 'bind', source: m.hostPath, options: m.options !== undefined && m.options.length > 0 ? [...m.options] : ['rbind', 'ro', 'nosuid', 'nodev'] });
    }
  }
  for (const f of input.files ?? []) {
    if (!f.target.startsWith('/') || f.target.split('/').includes('..') || !f.source.startsWith('/')) {
      throw new Error(`added file target ${JSON.stringify(f.target)} is not an absolute path without ".."`);
    }
    mounts.push({ destination: f.target, type: 'bind', source: f.source, options: ['rbind', 'rw', 'nosuid', 'nodev'] });
  }
  const privileged = input.privileged === true;
  const caps = privileged ? (input.allCaps ?? ALL_CAPS) : DEFAULT_CAPS;
  if (privileged) {
    const sys = mounts.find((m) => m.destination === '/sys');
    if (sys) sys.options = ['nosuid', 'noexec', 'nodev'];
  }

  const namespaces: Record<string, string>[] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (!hostNet) namespaces.push({ type: 'network', path: input.netns as string });

  const deviceRules: Record<string, unknown>[] = [{ allow: privileged, access: 'rwm' }];
  const linuxDevices: Record<string, unknown>[] = [];
  if (gpu?.kind === 'cdi') {
    for (const d of gpu.devices) {
      const dev: Record<string, unknown> = { path: d.path, type: d.type, major: d.major, minor: d.minor };
      if (d.fileMode !== undefined) dev.fileMode = d.fileMode;
      if (d.uid !== undefined) dev.uid = d.uid;
      if (d.gid !== undefined) dev.gid = d.gid;
      linuxDevices.push(dev);
      deviceRules.push({ allow: true, type: d.type, major: d.major, minor: d.minor, access: d.permissions });
    }
  }
  const hooks: Record<string, Record<string, unknown>[]> = {};
  if (gpu?.kind === 'cdi') {
    for (const h of gpu.hooks) {
      const hook: Record<string, unknown> = { path: h.path };
      if (h.args !== undefined) hook.args = [...h.args];
      if (h.env !== undefined) hook.env = [...h.env];
      if (h.timeout !== undefined) hook.timeout = h.timeout;
      (hooks[h.hookName] ??= []).push(hook);
    }
  } else if (gpu?.kind === 'hook') {
    hooks.prestart = [{ path: gpu.path, args: ['nvidia-container-runtime-hook', 'prestart'] }];
  }
  const resources: Record<string, unknown> = { devices: deviceRules };
  if (input.memoryBytes !== undefined && input.memoryBytes > 0) {
    resources.memory = input.limitSwap ? { limit: input.memoryBytes, swap: input.memoryBytes } : { limit: input.memoryBytes };
  }
  if (input.vcpus !== undefined && input.vcpus > 0) {
    resources.cpu = { quota: Math.max(1000, Math.round(input.vcpus * CPU_PERIOD_US)), period: CPU_PERIOD_US };
  }

  const spec: Record<string, unknown> = {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: { uid: user.uid, gid: user.gid },
      args,
      env,
      cwd: input.image.WorkingDir || '/',
      capabilities: { bounding: [...caps], effective: [...caps], permitted: [...caps] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: !privileged,
    },
    root: { path: 'rootfs' },
    hostname: hostnameFor(input.id),
    mounts,
    linux: {
      resources,
      cgroupsPath: `/${input.namespace}/${input.id}`,
      namespaces,
      maskedPaths: privileged ? [] : [
        '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
        '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi',
      ],
      readonlyPaths: privileged ? [] : ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
  if (linuxDevices.length > 0) (spec.linux as Record<string, unknown>).devices = linuxDevices;
  if (Object.keys(hooks).length > 0) spec.hooks = hooks;
  return spec;
}
