/**
 * The seam between the one supervisor and its drivers (issue 10; anchor: Nomad's
 * `drivers/shared/executor`). The supervisor (supervisor.ts, `SupervisedRuntime`) owns everything
 * a supervised child needs: the instance and work directories, the cgroup, the sh wrapper that
 * writes the exact exit status, the state file written before the workload runs, re-adoption after
 * a NodeEngine restart, stop (TERM -> KILL over the process group and the cgroup), logs, stats and
 * the one exit verdict. A driver (process, unikernel, microvm, wasm) is a `Launcher`: it probes the
 * host and turns a spec into the argv the wrapper runs, preparing whatever that argv needs first.
 */
import type { Virtualization } from '@oak/contracts';
import type { InstanceSpec, ProbeResult } from '../types.ts';
import type { ExitVerdict, RawExit } from './verdict.ts';

/** the user workloads run as (the supervisor runs as root and drops to it) */
export interface RunAs {
  name: string;
  uid: number;
  gid: number;
}

/** What the supervisor gives a launcher for one start. */
export interface LaunchContext {
  /** the instance's private directory (0700, root's): state.json, log, exit; the launcher may add files */
  dir: string;
  /** the workload's working directory and HOME (owned by `runAs` when set) */
  work: string;
  /** who the workload will run as (undefined: the supervisor's own user) */
  runAs: RunAs | undefined;
  /** the absolute path of a helper program on the minimal PATH (nsenter, ip, qemu-system-x86_64...), looked up once */
  tool(name: string): Promise<string>;
  /** where launchers keep things shared between instances (downloads, unpacked images): `<dataDir>/cache` */
  cacheDir: string;
}

/** What the wrapper runs, decided by the launcher. */
export interface Launch {
  /** the workload's argv, before the supervisor adds nsenter (spec.netns), unshare (resolv.conf) and setpriv (runAs) */
  argv: string[];
  /** recorded in the state file and shown by the probe/logs ("/usr/bin/qemu-system-x86_64") */
  executable: string;
  /** extra environment (the SLA's env is added by the supervisor unless `ownEnv`) */
  env?: Record<string, string> | undefined;
  /** the launcher passed the SLA's env its own way (e.g. to the guest): the supervisor does not add it */
  ownEnv?: boolean | undefined;
  /** run as the supervisor's user even with runAs (qemu needs /dev/kvm and the tap) */
  keepUser?: boolean | undefined;
  /** the resolv.conf bind mount is pointless here (a VM has its own /etc) */
  noResolvConf?: boolean | undefined;
  /** the cgroup memory limit in MB, when it is not spec.memory_mb (a VM: guest memory + qemu's own) */
  cgroupMemoryMb?: number | undefined;
}

export interface Launcher {
  readonly virtualization: Virtualization;
  /**
   * where below the work dir the SLA's added files go (made by the supervisor, owned by the
   * workload user): the directory the workload sees, e.g. wasm's preopened `scratch`; default the
   * work dir itself
   */
  readonly filesDir?: string | undefined;
  /**
   * can this host run it? `host` is what the supervisor found (sh, cgroups, setpriv; `workDir`:
   * why the workload user cannot reach its work dir by path, when it cannot)
   */
  probe(host: { cgroups: boolean; detail: string; workDir?: string | undefined }): Promise<ProbeResult>;
  /**
   * Prepares the instance (download, unpack, tap device...) and says what to run. Throws
   * RuntimeError with a clear reason when it cannot. Everything it makes lives under ctx.dir /
   * ctx.work or is undone by release().
   */
  launch(spec: InstanceSpec, ctx: LaunchContext): Promise<Launch>;
  /**
   * The raw exit facts to the verdict (default: `interpretExit(raw)`); e.g. qemu's isa-debug-exit
   * makes a guest's `v` the host exit code (v << 1) | 1.
   */
  verdict?(raw: RawExit, spec: InstanceSpec): ExitVerdict;
  /** undoes what launch() made outside the instance's directories (a tap device, a cache pin); idempotent */
  release?(spec: InstanceSpec): Promise<void>;
}
