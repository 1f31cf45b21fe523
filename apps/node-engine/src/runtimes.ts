/**
 * Which virtualizations this worker offers: every driver is probed at start, and only available
 * ones (narrowed by --runtimes) are offered. The lines say which and why not.
 */
import { join } from 'node:path';
import { VIRTUALIZATIONS } from '@oak/contracts';
import type { Virtualization } from '@oak/contracts';
import { ContainerdRuntime, DEFAULT_RUN_AS, MicrovmRuntime, ProcessRuntime, UnikernelRuntime, WasmRuntime, createUserHint, lookupUser } from '@oak/runtimes';
import type { ProbeResult, RunAs, Runtime } from '@oak/runtimes';
import type { NodeEngineConfig } from './config.ts';

export interface Choice {
  offered: Virtualization[];
  /** one line per virtualization, for the log */
  lines: string[];
}

/** Pure: probe results (+ forced list) to what is offered and why. */
export function chooseVirtualizations(probes: readonly { virtualization: Virtualization; result: ProbeResult }[], forced?: readonly Virtualization[]): Choice {
  const offered: Virtualization[] = [];
  const lines: string[] = [];
  for (const v of VIRTUALIZATIONS) {
    const p = probes.find((x) => x.virtualization === v);
    if (p === undefined) {
      lines.push(`${v}: unavailable (no driver in this NodeEngine yet)${forced?.includes(v) === true ? '; asked for by --runtimes' : ''}`);
      continue;
    }
    if (!p.result.available) {
      lines.push(`${v}: unavailable (${p.result.detail})`);
      continue;
    }
    if (forced !== undefined && !forced.includes(v)) {
      lines.push(`${v}: available (${p.result.detail}) but not offered (--runtimes ${forced.join(',')})`);
      continue;
    }
    lines.push(`${v}: available (${p.result.detail})`);
    offered.push(v);
  }
  lines.push(offered.length > 0 ? `offering: ${offered.join(', ')}` : 'offering: nothing');
  return { offered, lines };
}

/**
 * The drivers a standalone NodeEngine uses: containerd (containers), native processes, WASI
 * modules (wasm, run as the same unprivileged user as processes, in the same work root) and
 * unikernels and microVMs (qemu; their probes say unavailable without qemu-system-x86_64, and
 * microvm also without its kernel, see --microvm-kernel).
 */
export function createDefaultRuntimes(cfg: NodeEngineConfig): Runtime[] {
  const user = resolveRunAs(cfg.runAs);
  const process: Runtime = user.problem !== undefined
    ? new Unavailable('process', user.problem)
    : new ProcessRuntime({ dataDir: join(cfg.dataDir, 'runtimes', 'process'), cgroupParent: cfg.namespace ?? 'oak', runAs: user.runAs, workRoot: workDirOf(cfg) });
  const wasm: Runtime = user.problem !== undefined
    ? new Unavailable('wasm', user.problem)
    : new WasmRuntime({ dataDir: join(cfg.dataDir, 'runtimes', 'wasm'), cgroupParent: cfg.namespace ?? 'oak', runAs: user.runAs, workRoot: workDirOf(cfg) });
  return [
    new ContainerdRuntime({
      socket: cfg.containerdSocket,
      namespace: cfg.namespace ?? 'oak',
      dataDir: join(cfg.dataDir, 'runtimes', 'containerd'),
      ...(cfg.cdiDirs !== undefined ? { cdiDirs: [...cfg.cdiDirs] } : {}),
    }),
    process,
    wasm,
    new UnikernelRuntime({ dataDir: join(cfg.dataDir, 'runtimes', 'unikernel'), cgroupParent: cfg.namespace ?? 'oak' }),
    new MicrovmRuntime({ dataDir: join(cfg.dataDir, 'runtimes', 'microvm'), cgroupParent: cfg.namespace ?? 'oak', kernelDir: cfg.microvmKernel }),
  ];
}

/** where process workloads get their working directories: outside the 0700 data dir */
export function workDirOf(cfg: Pick<NodeEngineConfig, 'dataDir' | 'workDir'>): string {
  return cfg.workDir ?? `${cfg.dataDir.replace(/\/+$/, '')}-work`;
}

export interface RunAsChoice {
  /** undefined: processes run as the NodeEngine's own user */
  runAs?: RunAs | undefined;
  /** why process workloads cannot be offered */
  problem?: string | undefined;
}

/**
 * Who process workloads run as. Not root: as the NodeEngine's own user (it cannot switch).
 * Root: the given user (default `oak-workload`); a missing user disables processes with the
 * command that creates it, never a silent fallback to root; `root` only when asked for.
 */
export function resolveRunAs(wanted: string | undefined, uid: number | undefined = process.getuid?.(), lookup: (name: string) => RunAs | undefined = lookupUser): RunAsChoice {
  if (uid !== 0) return {};
  const name = wanted ?? DEFAULT_RUN_AS;
  if (name === 'root' || name === '0') return {};
  const u = lookup(name);
  if (u === undefined) {
    return {
      problem: `the user ${name} that process workloads run as does not exist; create it with \`${createUserHint(name)}\` (make up and scripts/install-deps.sh do), or pass --run-as <user>; --run-as root runs them as root (not recommended)`,
    };
  }
  if (u.uid === 0) return {};
  return { runAs: u };
}

/** A driver that only says why it cannot run anything. */
class Unavailable implements Runtime {
  readonly virtualization: Virtualization;
  readonly #reason: string;
  constructor(v: Virtualization, reason: string) {
    this.virtualization = v;
    this.#reason = reason;
  }
  probe(): Promise<ProbeResult> {
    return Promise.resolve({ available: false, detail: this.#reason });
  }
  start(): Promise<never> {
    return Promise.reject(new Error(this.#reason));
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
  list(): Promise<never[]> {
    return Promise.resolve([]);
  }
  status(): Promise<undefined> {
    return Promise.resolve(undefined);
  }
  async *logs(): AsyncIterable<string> {
    throw new Error(this.#reason);
  }
  stats(): Promise<undefined> {
    return Promise.resolve(undefined);
  }
  onExit(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
}

export async function probeAll(runtimes: readonly Runtime[]): Promise<{ virtualization: Virtualization; result: ProbeResult }[]> {
  return Promise.all(
    runtimes.map(async (r) => {
      try {
        return { virtualization: r.virtualization, result: await r.probe() };
      } catch (err) {
        return { virtualization: r.virtualization, result: { available: false, detail: `probe failed: ${err instanceof Error ? err.message : String(err)}` } };
      }
    }),
  );
}
