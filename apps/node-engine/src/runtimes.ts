/**
 * Which virtualizations this worker offers: every driver is probed at start, and only available
 * ones (narrowed by --runtimes) are offered. The lines say which and why not.
 */
import { join } from 'node:path';
import { VIRTUALIZATIONS } from '@oak/contracts';
import type { Virtualization } from '@oak/contracts';
import { ContainerdRuntime, ProcessRuntime } from '@oak/runtimes';
import type { ProbeResult, Runtime } from '@oak/runtimes';
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
 * The drivers a standalone NodeEngine uses: containerd (containers) and native processes.
 * unikernel, microvm and wasm drivers plug in here when they exist.
 */
export function createDefaultRuntimes(cfg: NodeEngineConfig): Runtime[] {
  return [
    new ContainerdRuntime({ socket: cfg.containerdSocket, namespace: cfg.namespace ?? 'oak', dataDir: join(cfg.dataDir, 'runtimes', 'containerd') }),
    new ProcessRuntime({ dataDir: join(cfg.dataDir, 'runtimes', 'process'), cgroupParent: cfg.namespace ?? 'oak' }),
  ];
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
