/**
 * NVIDIA GPUs of this machine: from `nvidia-smi --query-gpu=...` when the tool is installed, else
 * from the driver's /proc/driver/nvidia/gpus/<bus id>/information files (no memory size there),
 * else none. A machine without the driver or the tool has no GPUs; that is never an error.
 * The parsers are pure and bounded: at most MAX_GPUS devices, names cut at MAX_GPU_NAME.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface GpuDevice {
  /** the driver's index (nvidia-smi `index`, /proc `Device Minor`): /dev/nvidia<index> */
  index: number;
  /** the model, e.g. `NVIDIA A100-SXM4-40GB` */
  name: string;
  /** total memory in MiB (0 when unknown: the /proc source does not say) */
  memory_mb: number;
  /** `GPU-<uuid>` ('' when unknown) */
  uuid: string;
}

export const MAX_GPUS = 64;
export const MAX_GPU_NAME = 128;
/** what a report says at most of one GPU's memory (1 PiB in MiB) */
const MAX_GPU_MEMORY_MB = 1024 * 1024 * 1024;

export const NVIDIA_SMI_ARGS: readonly string[] = ['--query-gpu=index,name,memory.total,uuid', '--format=csv,noheader,nounits'];

function cleanName(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]/g, '').trim().slice(0, MAX_GPU_NAME);
}

function cleanUuid(s: string): string {
  const t = s.trim();
  return /^GPU-[0-9A-Za-z-]{1,64}$/.test(t) ? t : '';
}

function byIndex(list: GpuDevice[]): GpuDevice[] {
  const seen = new Set<number>();
  const out: GpuDevice[] = [];
  for (const g of list.sort((a, b) => a.index - b.index)) {
    if (seen.has(g.index)) continue;
    seen.add(g.index);
    out.push(g);
    if (out.length >= MAX_GPUS) break;
  }
  return out;
}

/**
 * `nvidia-smi --query-gpu=index,name,memory.total,uuid --format=csv,noheader,nounits` output:
 * one line per GPU, `0, NVIDIA A100-SXM4-40GB, 40960, GPU-…`. A name holding commas is kept
 * whole (index first, memory and uuid last); lines that do not read are skipped; `[N/A]` memory is 0.
 */
export function parseNvidiaSmi(text: string): GpuDevice[] {
  const out: GpuDevice[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const f = line.split(',').map((x) => x.trim());
    if (f.length < 4) continue;
    const idx = f[0] as string;
    if (!/^\d{1,4}$/.test(idx)) continue;
    const memText = f[f.length - 2] as string;
    const mem = /^\d{1,10}$/.test(memText) ? Math.min(Number(memText), MAX_GPU_MEMORY_MB) : 0;
    out.push({ index: Number(idx), name: cleanName(f.slice(1, -2).join(', ')), memory_mb: mem, uuid: cleanUuid(f[f.length - 1] as string) });
    if (out.length >= MAX_GPUS * 4) break;
  }
  return byIndex(out);
}

/** One /proc/driver/nvidia/gpus/<bus id>/information file (`Model:`, `GPU UUID:`, `Device Minor:`). */
export function parseNvidiaProcInformation(text: string): GpuDevice | undefined {
  const fields = new Map<string, string>();
  for (const line of text.split('\n').slice(0, 200)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    fields.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  const minor = fields.get('Device Minor');
  if (minor === undefined || !/^\d{1,4}$/.test(minor)) return undefined;
  return { index: Number(minor), name: cleanName(fields.get('Model') ?? ''), memory_mb: 0, uuid: cleanUuid(fields.get('GPU UUID') ?? '') };
}

export interface GpuDetectOptions {
  /** the nvidia-smi executable (default `nvidia-smi`, looked up on PATH) */
  nvidiaSmi?: string;
  /** the driver's per-GPU folder (default /proc/driver/nvidia/gpus) */
  procDir?: string;
  /** nvidia-smi gets this long (default 5000 ms) */
  timeoutMs?: number;
}

function runNvidiaSmi(bin: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(bin, [...NVIDIA_SMI_ARGS], { timeout: timeoutMs, maxBuffer: 256 * 1024, encoding: 'utf8', windowsHide: true }, (err, stdout) => {
      resolve(err ? undefined : stdout);
    });
  });
}

async function fromProc(dir: string): Promise<GpuDevice[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: GpuDevice[] = [];
  for (const n of names.slice(0, MAX_GPUS * 2)) {
    try {
      const g = parseNvidiaProcInformation((await readFile(join(dir, n, 'information'), 'utf8')).slice(0, 64 * 1024));
      if (g) out.push(g);
    } catch {
      /* not a GPU folder */
    }
  }
  return byIndex(out);
}

/**
 * The machine's NVIDIA GPUs: nvidia-smi first (it knows memory sizes), the driver's /proc files
 * when the tool is missing or fails. Never throws; none found is [].
 */
export async function detectGpus(opts: GpuDetectOptions = {}): Promise<GpuDevice[]> {
  const out = await runNvidiaSmi(opts.nvidiaSmi ?? 'nvidia-smi', opts.timeoutMs ?? 5000);
  if (out !== undefined) {
    const list = parseNvidiaSmi(out);
    if (list.length > 0) return list;
  }
  return fromProc(opts.procDir ?? '/proc/driver/nvidia/gpus');
}
