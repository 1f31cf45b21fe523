/**
 * Pure parsers for the text of /proc and /sys files. No I/O: unit-tested with fixture text, so
 * the cgroup v2 shapes are covered on a v1 machine too.
 */

/** CPU time counters of the aggregate `cpu` line of /proc/stat, in clock ticks. */
export interface CpuTimes {
  /** all time, busy or not */
  total: number;
  /** idle + iowait */
  idle: number;
}

export function parseProcStat(text: string): CpuTimes {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (line === undefined) throw new Error('no aggregate cpu line in /proc/stat');
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice; guest* are already in user/nice
  const v = (i: number): number => (Number.isFinite(f[i]) ? (f[i] as number) : 0);
  const total = v(0) + v(1) + v(2) + v(3) + v(4) + v(5) + v(6) + v(7);
  return { total, idle: v(3) + v(4) };
}

/** Busy share of the time between two readings, 0..100 (of the whole machine). */
export function cpuPercentBetween(a: CpuTimes, b: CpuTimes): number {
  const total = b.total - a.total;
  if (total <= 0) return 0;
  const busy = total - (b.idle - a.idle);
  return Math.min(100, Math.max(0, (busy / total) * 100));
}

/** /proc/meminfo as a map of kB values (`MemTotal` -> 16318212). */
export function parseMeminfo(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    const r = /^([\w()]+):\s+(\d+)/.exec(line);
    if (r) m.set(r[1] as string, Number(r[2]));
  }
  return m;
}

/**
 * Flat keyed files: `key value` per line (cgroup v2 memory.events, cpu.stat, memory.stat;
 * v1 memory.oom_control, memory.stat, cpu.stat).
 */
export function parseFlatKeyed(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2) continue;
    const n = Number(parts[1]);
    if (Number.isFinite(n)) m.set(parts[0] as string, n);
  }
  return m;
}

/** A v2 limit file (`memory.max`, `pids.max`): a number, or Infinity for `max`. */
export function parseMax(text: string): number {
  const t = text.trim();
  if (t === 'max') return Infinity;
  const n = Number(t);
  if (!Number.isFinite(n)) throw new Error(`not a limit: ${JSON.stringify(t)}`);
  return n;
}

/** v2 `cpu.max`: `<quota|max> <period>` in microseconds; quota Infinity when unlimited. */
export function parseCpuMax(text: string): { quota_us: number; period_us: number } {
  const [q, p] = text.trim().split(/\s+/);
  const period = Number(p ?? '100000');
  return { quota_us: q === 'max' || q === undefined ? Infinity : Number(q), period_us: Number.isFinite(period) ? period : 100000 };
}

/** Quota and period (µs) that give `vcpus` cores of CPU time; the kernel wants quota >= 1000. */
export function cpuQuotaFor(vcpus: number, period_us = 100000): { quota_us: number; period_us: number } {
  return { quota_us: Math.max(1000, Math.round(vcpus * period_us)), period_us };
}

export interface ProcPidStat {
  pid: number;
  comm: string;
  /** R, S, D, Z, T, ... */
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
  utime: number;
  stime: number;
  /** clock ticks after boot: with the pid, identifies a process across pid reuse */
  starttime: number;
  rss_pages: number;
}

/** /proc/<pid>/stat. `comm` may hold spaces and parentheses: fields start after the last `)`. */
export function parseProcPidStat(text: string): ProcPidStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error('malformed /proc/<pid>/stat');
  const rest = text.slice(close + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state); field n is rest[n - 3]
  const f = (n: number): number => Number(rest[n - 3]);
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: rest[0] ?? '?',
    ppid: f(4),
    pgrp: f(5),
    session: f(6),
    utime: f(14),
    stime: f(15),
    starttime: f(22),
    rss_pages: f(24),
  };
}

export interface CgroupMount {
  mountPoint: string;
  /** `cgroup` (v1) or `cgroup2` */
  fsType: string;
  /** v1 controllers of this hierarchy (`cpu`, `cpuacct`, `name=systemd`, ...); empty for v2 */
  controllers: string[];
  readOnly: boolean;
}

/** The cgroup mounts of /proc/self/mountinfo. */
export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    const fsType = post[0];
    if (fsType !== 'cgroup' && fsType !== 'cgroup2') continue;
    const mountPoint = unescapeMount(pre[4] ?? '');
    const mountOpts = (pre[5] ?? '').split(',');
    const superOpts = (post[2] ?? '').split(',');
    const controllers = fsType === 'cgroup' ? superOpts.filter((o) => o !== 'rw' && o !== 'ro' && !o.startsWith('release_agent') && o !== 'clone_children' && o !== 'noprefix' && o !== 'xattr' && o !== 'cpuset_v2_mode') : [];
    out.push({ mountPoint, fsType, controllers, readOnly: mountOpts.includes('ro') });
  }
  return out;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** /proc/<pid>/cgroup: hierarchy id -> path (`0` is v2), also by controller name. */
export function parseProcCgroup(text: string): { v2?: string; byController: Map<string, string> } {
  const byController = new Map<string, string>();
  let v2: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, id, ctrls, path] = m as unknown as [string, string, string, string];
    if (id === '0' && ctrls === '') v2 = path;
    else for (const c of ctrls.split(',')) if (c) byController.set(c, path);
  }
  return v2 === undefined ? { byController } : { v2, byController };
}
