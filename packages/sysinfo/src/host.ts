/**
 * Host readings from /proc and /sys, cheap enough to take every 2 s on a Raspberry Pi: each is one
 * small file read or one syscall, no child processes.
 */
import { readFileSync, readdirSync, existsSync, statfsSync } from 'node:fs';
import { readFile, statfs } from 'node:fs/promises';
import os from 'node:os';
import { cpuPercentBetween, parseMeminfo, parseProcPidStat, parseProcStat } from './parse.ts';
import type { CpuTimes, ProcPidStat } from './parse.ts';

/** CPUs this process may use (affinity-aware). */
export function cpuCount(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

export function readCpuTimes(): CpuTimes {
  return parseProcStat(readFileSync('/proc/stat', 'utf8'));
}

/**
 * Machine-wide CPU use between calls. The first `percent()` covers the time since the sampler
 * was made (or since boot with `{ sinceBoot: true }`).
 */
export class CpuSampler {
  #last: CpuTimes;
  constructor(opts: { sinceBoot?: boolean } = {}) {
    this.#last = opts.sinceBoot === true ? { total: 0, idle: 0 } : readCpuTimes();
  }
  /** busy share of all CPUs since the last call, 0..100 */
  percent(): number {
    const now = readCpuTimes();
    const p = cpuPercentBetween(this.#last, now);
    this.#last = now;
    return p;
  }
}

let defaultSampler: CpuSampler | undefined;
/** Machine CPU use since the previous call of this function (since boot on the first call). */
export function cpuPercent(): number {
  defaultSampler ??= new CpuSampler({ sinceBoot: true });
  return defaultSampler.percent();
}

export interface MemoryInfo {
  total_mb: number;
  /** MemAvailable: what new work can get without swapping */
  free_mb: number;
}

export function memory(): MemoryInfo {
  const m = parseMeminfo(readFileSync('/proc/meminfo', 'utf8'));
  const total = m.get('MemTotal') ?? os.totalmem() / 1024;
  // kernels before 3.14 lack MemAvailable
  const avail = m.get('MemAvailable') ?? (m.get('MemFree') ?? 0) + (m.get('Cached') ?? 0) + (m.get('Buffers') ?? 0);
  return { total_mb: Math.floor(total / 1024), free_mb: Math.floor(avail / 1024) };
}

export interface DiskInfo {
  total_mb: number;
  /** available to unprivileged users (bavail) */
  free_mb: number;
}

export function diskSync(path = '/'): DiskInfo {
  const s = statfsSync(path);
  return { total_mb: Math.floor((s.blocks * s.bsize) / 1048576), free_mb: Math.floor((s.bavail * s.bsize) / 1048576) };
}

export async function disk(path = '/'): Promise<DiskInfo> {
  const s = await statfs(path);
  return { total_mb: Math.floor((s.blocks * s.bsize) / 1048576), free_mb: Math.floor((s.bavail * s.bsize) / 1048576) };
}

/** NVIDIA GPUs seen as /dev/nvidia<N> device nodes; 0 when there are none. */
export function gpus(devDir = '/dev'): number {
  try {
    return readdirSync(devDir).filter((n) => /^nvidia\d+$/.test(n)).length;
  } catch {
    return 0;
  }
}

/** Go-style architecture names, as Oakestra's NodeEngine reports them (amd64, arm64, arm, ...). */
export function arch(): string {
  const a = process.arch;
  const map: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', riscv64: 'riscv64', ppc64: 'ppc64le', s390x: 's390x', mips: 'mips', mipsel: 'mipsle', loong64: 'loong64' };
  return map[a] ?? a;
}

/** Go-style OS name (`linux`). */
export function osName(): string {
  return process.platform === 'win32' ? 'windows' : process.platform;
}
export { osName as os };

export function hostname(): string {
  return os.hostname();
}

/** Kernel release, e.g. `6.1.0-18-amd64`. */
export function kernel(): string {
  return os.release();
}

/** Parsed /proc/<pid>/stat, or undefined when the process is gone. */
export async function procStat(pid: number): Promise<ProcPidStat | undefined> {
  try {
    return parseProcPidStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Start time of a process (clock ticks after boot); with the pid it survives pid reuse. */
export async function processStartTime(pid: number): Promise<number | undefined> {
  return (await procStat(pid))?.starttime;
}

/**
 * Is this the same live process? False for gone pids, zombies, and pids reused by another
 * process (different start time).
 */
export async function isSameProcessAlive(pid: number, starttime: number | undefined): Promise<boolean> {
  const s = await procStat(pid);
  if (s === undefined || s.state === 'Z' || s.state === 'X') return false;
  return starttime === undefined || s.starttime === starttime;
}

let cachedBootId: string | undefined;
/** Changes on every boot: with a pid and start time, tells a process of an earlier boot apart. */
export function bootId(): string {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      cachedBootId = '';
    }
  }
  return cachedBootId;
}

/** USER_HZ; 100 on every mainstream Linux build. */
export const CLOCK_TICKS = 100;

export function hasNvidiaSmi(): boolean {
  return ['/usr/bin/nvidia-smi', '/usr/local/bin/nvidia-smi'].some((p) => existsSync(p));
}
