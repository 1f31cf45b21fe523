/**
 * Which of the worker's GPUs an instance holds (issue 10). Decided here, on the worker: an
 * instance with `vgpus` N gets N whole GPUs that no other instance holds (a GPU is never shared;
 * a fractional `vgpus` holds the next whole number). The choice rides on the instance as the
 * label `oak.gpus` (`0,2`), which the drivers keep (containerd labels, the supervisor's state
 * file), so a restarted NodeEngine reads it back when it re-adopts the instance. Pure, no I/O.
 */
import type { GpuDevice, Virtualization } from '@oak/contracts';
import type { InstanceSpec } from '@oak/runtimes';

export const LABEL_GPUS = 'oak.gpus';
/** virtualizations that can be given GPUs */
export const GPU_VIRTUALIZATIONS: readonly Virtualization[] = ['container', 'process'];

/** whole GPUs an SLA's `vgpus` asks for */
export function gpusNeeded(vgpus: number | undefined): number {
  if (vgpus === undefined || !Number.isFinite(vgpus) || vgpus <= 0) return 0;
  return Math.ceil(vgpus - 1e-9);
}

export type GpuAssignment = { ok: true; indices: number[] } | { ok: false; reason: string };

/**
 * The `need` lowest-indexed GPUs of `devices` not in `held`, or why there are not enough (the
 * reason names what the worker has and who holds what).
 */
export function assignGpus(need: number, virtualization: Virtualization, devices: readonly GpuDevice[], held: ReadonlyMap<string, readonly number[]>): GpuAssignment {
  if (need <= 0) return { ok: true, indices: [] };
  const want = `needs ${need} GPU${need === 1 ? '' : 's'}`;
  if (!GPU_VIRTUALIZATIONS.includes(virtualization)) {
    return { ok: false, reason: `${want}: GPUs are given to container and process instances only, not ${virtualization}` };
  }
  if (devices.length === 0) return { ok: false, reason: `${want}: no NVIDIA GPU on this worker (nvidia-smi found none)` };
  const taken = new Set<number>();
  for (const l of held.values()) for (const i of l) taken.add(i);
  const free = devices.map((d) => d.index).filter((i) => !taken.has(i)).sort((a, b) => a - b);
  if (free.length < need) {
    const holders = [...held.entries()].filter(([, l]) => l.length > 0).map(([id, l]) => `${id}: ${l.join(',')}`);
    return {
      ok: false,
      reason: `${want}: this worker has ${devices.length} GPU${devices.length === 1 ? '' : 's'}, ${free.length} free${holders.length > 0 ? ` (held by ${holders.slice(0, 4).join('; ')}${holders.length > 4 ? '; ...' : ''})` : ''}`,
    };
  }
  return { ok: true, indices: free.slice(0, need) };
}

export function formatGpuLabel(indices: readonly number[]): string {
  return indices.join(',');
}

/** The label back to indices; anything else than a short list of small numbers is no GPUs. */
export function parseGpuLabel(text: string | undefined): number[] {
  if (text === undefined || text === '' || text.length > 512 || !/^\d{1,4}(,\d{1,4})*$/.test(text)) return [];
  return [...new Set(text.split(',').map(Number))].slice(0, 64);
}

/**
 * The environment a process instance gets for its GPUs: CUDA and NVIDIA's tools see only
 * those, by UUID when known (indices can be renumbered by CUDA_DEVICE_ORDER), else by index.
 */
export function gpuEnv(indices: readonly number[], devices: readonly Pick<GpuDevice, 'index' | 'uuid'>[]): string[] {
  if (indices.length === 0) return [];
  const ids = indices.map((i) => devices.find((d) => d.index === i)?.uuid || String(i)).join(',');
  return [`CUDA_VISIBLE_DEVICES=${ids}`, `NVIDIA_VISIBLE_DEVICES=${ids}`];
}

/**
 * Gives `spec` its GPUs: the label the drivers keep, the devices (containers), the environment
 * (processes). The same at the first start and at a restart after re-adoption (from the run record).
 */
export function giveGpus(spec: InstanceSpec, gpus: readonly { index: number; uuid: string }[]): void {
  if (gpus.length === 0) return;
  const indices = gpus.map((g) => g.index);
  spec.labels[LABEL_GPUS] = formatGpuLabel(indices);
  spec.gpus = gpus.map((g) => ({ index: g.index, uuid: g.uuid }));
  if (spec.virtualization === 'process') spec.env.push(...gpuEnv(indices, gpus));
}
