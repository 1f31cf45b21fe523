/**
 * cgroup v1 and v2: where the controllers are, and one small group per instance with a memory
 * limit, a CPU quota and usage readings. v1 (and the hybrid layout, whose v2 part holds no
 * controllers) uses one directory per controller (memory, cpu, cpuacct, pids); v2 one directory
 * under a parent whose `cgroup.subtree_control` delegates memory, cpu and pids.
 */
import { accessSync, constants, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, rmdir, writeFile, access } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import { parseCgroupMounts, parseFlatKeyed, parseProcCgroup } from './parse.ts';
import type { CgroupMount } from './parse.ts';

export type CgroupVersion = 1 | 2 | 'hybrid';
export type V1Controller = 'memory' | 'cpu' | 'cpuacct' | 'pids';
const V1_CONTROLLERS: readonly V1Controller[] = ['memory', 'cpu', 'cpuacct', 'pids'];
const V2_CONTROLLERS = ['memory', 'cpu', 'pids'] as const;

export interface CgroupInfo {
  /** 1: v1 controllers only; 2: pure v2; 'hybrid': v1 controllers plus a controller-less v2 */
  version: CgroupVersion | undefined;
  /** directory of the memory controller's root (v2: the unified root) */
  memoryController: string | undefined;
  cpuController: string | undefined;
  cpuacctController: string | undefined;
  pidsController: string | undefined;
  /** v2 mount point (also on hybrid) */
  unified: string | undefined;
  /** can this process create groups with memory and cpu limits? */
  writable: boolean;
  /** why not, or what was found */
  detail: string;
}

/** Reads /proc/self/mountinfo (a few kB) and checks write access. */
export function cgroupInfo(mountinfo?: string): CgroupInfo {
  let text = mountinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/mountinfo', 'utf8');
    } catch {
      text = '';
    }
  }
  return cgroupInfoFromMounts(parseCgroupMounts(text), mountinfo === undefined);
}

/** Pure part of cgroupInfo; `checkAccess` false skips the filesystem checks (tests). */
export function cgroupInfoFromMounts(mounts: CgroupMount[], checkAccess = false): CgroupInfo {
  const v1 = mounts.filter((m) => m.fsType === 'cgroup');
  const v2 = mounts.find((m) => m.fsType === 'cgroup2');
  const find = (c: string): CgroupMount | undefined => v1.find((m) => m.controllers.includes(c));
  const mem = find('memory');
  const info: CgroupInfo = {
    version: undefined,
    memoryController: undefined,
    cpuController: undefined,
    cpuacctController: undefined,
    pidsController: undefined,
    unified: v2?.mountPoint,
    writable: false,
    detail: '',
  };
  if (mem !== undefined || find('cpu') !== undefined) {
    info.version = v2 !== undefined ? 'hybrid' : 1;
    info.memoryController = mem?.mountPoint;
    info.cpuController = find('cpu')?.mountPoint;
    info.cpuacctController = find('cpuacct')?.mountPoint;
    info.pidsController = find('pids')?.mountPoint;
    const missing = ['memory', 'cpu'].filter((c) => find(c) === undefined);
    const ro = [mem, find('cpu')].some((m) => m?.readOnly === true);
    if (missing.length > 0) info.detail = `cgroup v1 without the ${missing.join(' and ')} controller`;
    else if (ro) info.detail = 'cgroup v1 mounted read-only';
    else if (checkAccess && !canWrite(info.memoryController) ) info.detail = 'no write access to the cgroup v1 memory controller (not root?)';
    else if (checkAccess && !canWrite(info.cpuController)) info.detail = 'no write access to the cgroup v1 cpu controller (not root?)';
    else {
      info.writable = true;
      info.detail = `cgroup v1 (memory${info.pidsController ? ', pids' : ''}, cpu${info.cpuacctController ? ', cpuacct' : ''})`;
    }
    return info;
  }
  if (v2 !== undefined) {
    info.version = 2;
    info.memoryController = v2.mountPoint;
    info.cpuController = v2.mountPoint;
    info.cpuacctController = v2.mountPoint;
    info.pidsController = v2.mountPoint;
    if (v2.readOnly) info.detail = 'cgroup v2 mounted read-only';
    else if (!checkAccess) {
      info.writable = true;
      info.detail = 'cgroup v2';
    } else {
      let ctrls: string[] = [];
      try {
        ctrls = readFileSync(join(v2.mountPoint, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
      } catch {
        /* unreadable */
      }
      const missing = ['memory', 'cpu'].filter((c) => !ctrls.includes(c));
      if (missing.length > 0) info.detail = `cgroup v2 without the ${missing.join(' and ')} controller`;
      else if (!canWrite(v2.mountPoint)) info.detail = 'no write access to the cgroup v2 hierarchy (not root and not delegated)';
      else {
        info.writable = true;
        info.detail = `cgroup v2 (${ctrls.join(', ')})`;
      }
    }
    return info;
  }
  info.detail = 'no cgroup filesystem mounted';
  return info;
}

function canWrite(dir: string | undefined): boolean {
  if (dir === undefined) return false;
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Where a group lives; JSON-serializable so that a restarted process can open it again. */
export type CgroupRef =
  | { version: 1; dirs: Partial<Record<V1Controller, string>> }
  | { version: 2; dir: string };

export interface CgroupCreateOptions {
  /** parent path inside each hierarchy, e.g. `oak` (default) or `oak/workers`; created if needed */
  parent?: string;
  info?: CgroupInfo;
}

/** Path checks: names and parents are relative, with no `..`. */
function safeRel(p: string, what: string): string {
  const n = normalize(p).replace(/^\/+/, '').replace(/\/+$/, '');
  if (n === '' || n === '.' || n.split('/').some((s) => s === '..' || s === '.')) throw new Error(`invalid cgroup ${what}: ${JSON.stringify(p)}`);
  return n;
}

export class Cgroup {
  readonly ref: CgroupRef;

  private constructor(ref: CgroupRef) {
    this.ref = ref;
  }

  /** Opens an existing group from its ref (e.g. read back from a state file). */
  static open(ref: CgroupRef): Cgroup {
    return new Cgroup(ref);
  }

  /**
   * Creates (or reuses) the group `<parent>/<name>` in every needed hierarchy. v1: memory, cpu,
   * cpuacct and pids directories; v2: one directory, after enabling memory/cpu/pids in the
   * `cgroup.subtree_control` of every ancestor below the root.
   */
  static async create(name: string, opts: CgroupCreateOptions = {}): Promise<Cgroup> {
    const info = opts.info ?? cgroupInfo();
    const rel = join(safeRel(opts.parent ?? 'oak', 'parent'), safeRel(name, 'name'));
    if (!info.writable) throw new Error(`cgroups not usable: ${info.detail}`);
    if (info.version === 2) {
      const root = info.unified as string;
      const parts = rel.split('/');
      let dir = root;
      for (let i = 0; i < parts.length; i++) {
        await enableV2Controllers(dir);
        dir = join(dir, parts[i] as string);
        await mkdir(dir).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'EEXIST') throw e;
        });
      }
      return new Cgroup({ version: 2, dir });
    }
    const dirs: Partial<Record<V1Controller, string>> = {};
    const seen = new Map<string, string>();
    for (const c of V1_CONTROLLERS) {
      const mount = { memory: info.memoryController, cpu: info.cpuController, cpuacct: info.cpuacctController, pids: info.pidsController }[c];
      if (mount === undefined) continue;
      // co-mounted controllers (cpu,cpuacct) share one directory
      let real = mount;
      try {
        real = realpathSync(mount);
      } catch {
        /* keep */
      }
      const dir = seen.get(real) ?? join(mount, rel);
      if (!seen.has(real)) {
        await mkdir(dir, { recursive: true });
        seen.set(real, dir);
      }
      dirs[c] = dir;
    }
    return new Cgroup({ version: 1, dirs });
  }

  /**
   * create() without awaits, for a start path where every event-loop turn counts (each of these
   * writes is a few µs; its async form waits for a thread-pool round trip and a loop turn, ms
   * under load). `fresh`: no directory of the group existed before (else it may hold leftovers).
   */
  static createSync(name: string, opts: CgroupCreateOptions = {}): { cgroup: Cgroup; fresh: boolean } {
    const info = opts.info ?? cgroupInfo();
    const rel = join(safeRel(opts.parent ?? 'oak', 'parent'), safeRel(name, 'name'));
    if (!info.writable) throw new Error(`cgroups not usable: ${info.detail}`);
    let fresh = true;
    const made = (dir: string): void => {
      try {
        mkdirSync(dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        fresh = false;
      }
    };
    if (info.version === 2) {
      const root = info.unified as string;
      const parts = rel.split('/');
      let dir = root;
      for (let i = 0; i < parts.length; i++) {
        enableV2ControllersSync(dir);
        dir = join(dir, parts[i] as string);
        if (i < parts.length - 1) mkdirSync(dir, { recursive: true });
        else made(dir);
      }
      return { cgroup: new Cgroup({ version: 2, dir }), fresh };
    }
    const dirs: Partial<Record<V1Controller, string>> = {};
    const seen = new Map<string, string>();
    for (const c of V1_CONTROLLERS) {
      const mount = { memory: info.memoryController, cpu: info.cpuController, cpuacct: info.cpuacctController, pids: info.pidsController }[c];
      if (mount === undefined) continue;
      let real = mount;
      try {
        real = realpathSync(mount);
      } catch {
        /* keep */
      }
      const dir = seen.get(real) ?? join(mount, rel);
      if (!seen.has(real)) {
        mkdirSync(join(dir, '..'), { recursive: true });
        made(dir);
        seen.set(real, dir);
      }
      dirs[c] = dir;
    }
    return { cgroup: new Cgroup({ version: 1, dirs }), fresh };
  }

  /** setMemoryLimit() without awaits (see createSync). */
  setMemoryLimitSync(mb: number): void {
    const bytes = String(Math.floor(mb * 1048576));
    if (this.ref.version === 2) {
      writeFileSync(join(this.ref.dir, 'memory.max'), bytes);
      try {
        writeFileSync(join(this.ref.dir, 'memory.swap.max'), '0');
      } catch {
        /* no swap accounting */
      }
      return;
    }
    const d = this.ref.dirs.memory;
    if (d === undefined) throw new Error('no memory controller');
    const memsw = join(d, 'memory.memsw.limit_in_bytes');
    if (existsSync(memsw)) {
      // memsw must stay >= the limit: when lowering, the plain limit first; when raising, memsw first
      try {
        writeFileSync(join(d, 'memory.limit_in_bytes'), bytes);
        writeFileSync(memsw, bytes);
      } catch {
        writeFileSync(memsw, bytes);
        writeFileSync(join(d, 'memory.limit_in_bytes'), bytes);
      }
    } else {
      writeFileSync(join(d, 'memory.limit_in_bytes'), bytes);
    }
  }

  /** setCpuQuota() without awaits (see createSync). */
  setCpuQuotaSync(vcpus: number): void {
    const period = 100000;
    const quota = Math.max(1000, Math.round(vcpus * period));
    if (this.ref.version === 2) {
      writeFileSync(join(this.ref.dir, 'cpu.max'), `${quota} ${period}`);
      return;
    }
    const d = this.ref.dirs.cpu;
    if (d === undefined) throw new Error('no cpu controller');
    writeFileSync(join(d, 'cpu.cfs_period_us'), String(period));
    writeFileSync(join(d, 'cpu.cfs_quota_us'), String(quota));
  }

  /** The `cgroup.procs` files of this group: writing a pid into each moves that process in. */
  procsFiles(): string[] {
    return this.dirs().map((d) => join(d, 'cgroup.procs'));
  }

  /** Directories of this group, one per hierarchy, without duplicates. */
  dirs(): string[] {
    return this.ref.version === 2 ? [this.ref.dir] : [...new Set(Object.values(this.ref.dirs))];
  }

  #dir(c: V1Controller): string | undefined {
    return this.ref.version === 2 ? this.ref.dir : this.ref.dirs[c];
  }

  /** Sets the memory limit (and, where the kernel offers it, the same limit on memory+swap). */
  async setMemoryLimit(mb: number): Promise<void> {
    const bytes = Math.floor(mb * 1048576);
    if (this.ref.version === 2) {
      await writeFile(join(this.ref.dir, 'memory.max'), String(bytes));
      await writeFile(join(this.ref.dir, 'memory.swap.max'), '0').catch(() => undefined);
      return;
    }
    const d = this.ref.dirs.memory;
    if (d === undefined) throw new Error('no memory controller');
    // memsw must stay >= the limit: when lowering, set the plain limit first; when raising, memsw first
    const memsw = join(d, 'memory.memsw.limit_in_bytes');
    const hasMemsw = await access(memsw).then(() => true, () => false);
    if (hasMemsw) {
      try {
        await writeFile(join(d, 'memory.limit_in_bytes'), String(bytes));
        await writeFile(memsw, String(bytes));
      } catch {
        await writeFile(memsw, String(bytes));
        await writeFile(join(d, 'memory.limit_in_bytes'), String(bytes));
      }
    } else {
      await writeFile(join(d, 'memory.limit_in_bytes'), String(bytes));
    }
  }

  /** Limits CPU time to `vcpus` cores (CFS quota over a 100 ms period). */
  async setCpuQuota(vcpus: number): Promise<void> {
    const period = 100000;
    const quota = Math.max(1000, Math.round(vcpus * period));
    if (this.ref.version === 2) {
      await writeFile(join(this.ref.dir, 'cpu.max'), `${quota} ${period}`);
      return;
    }
    const d = this.ref.dirs.cpu;
    if (d === undefined) throw new Error('no cpu controller');
    await writeFile(join(d, 'cpu.cfs_period_us'), String(period));
    await writeFile(join(d, 'cpu.cfs_quota_us'), String(quota));
  }

  /** Moves a process (and its future children) into every hierarchy of the group. */
  async addPid(pid: number): Promise<void> {
    // in parallel: on v1 each move may wait for an RCU grace period
    await Promise.all(this.dirs().map((d) => writeFile(join(d, 'cgroup.procs'), String(pid))));
  }

  /** Pids in the group (of the memory hierarchy on v1). */
  async pids(): Promise<number[]> {
    const d = this.#dir('memory') ?? this.#dir('pids') ?? this.dirs()[0];
    if (d === undefined) return [];
    try {
      const t = await readFile(join(d, 'cgroup.procs'), 'utf8');
      return t.split('\n').filter((l) => l.trim() !== '').map(Number);
    } catch {
      return [];
    }
  }

  /** Memory in use in bytes, without inactive file cache (what `docker stats` shows). */
  async memoryUsage(): Promise<number> {
    const d = this.#dir('memory');
    if (d === undefined) return 0;
    const usage = Number((await readFile(join(d, this.ref.version === 2 ? 'memory.current' : 'memory.usage_in_bytes'), 'utf8')).trim());
    let inactive = 0;
    try {
      const st = parseFlatKeyed(await readFile(join(d, 'memory.stat'), 'utf8'));
      inactive = (this.ref.version === 2 ? st.get('inactive_file') : st.get('total_inactive_file')) ?? 0;
    } catch {
      /* no memory.stat */
    }
    return Math.max(0, usage - inactive);
  }

  /** Memory limit in bytes; Infinity when unlimited. */
  async memoryLimit(): Promise<number> {
    const d = this.#dir('memory');
    if (d === undefined) return Infinity;
    const t = (await readFile(join(d, this.ref.version === 2 ? 'memory.max' : 'memory.limit_in_bytes'), 'utf8')).trim();
    if (t === 'max') return Infinity;
    const n = Number(t);
    // v1 "unlimited" is a page-aligned LONG_MAX
    return n >= 2 ** 62 ? Infinity : n;
  }

  /** CPU time used by the group so far, in microseconds. */
  async cpuUsage(): Promise<number> {
    if (this.ref.version === 2) {
      const st = parseFlatKeyed(await readFile(join(this.ref.dir, 'cpu.stat'), 'utf8'));
      return st.get('usage_usec') ?? 0;
    }
    const d = this.ref.dirs.cpuacct;
    if (d === undefined) return 0;
    return Number((await readFile(join(d, 'cpuacct.usage'), 'utf8')).trim()) / 1000;
  }

  /** How many processes the OOM killer killed in this group (v1 memory.oom_control, v2 memory.events). */
  async oomKills(): Promise<number> {
    const d = this.#dir('memory');
    if (d === undefined) return 0;
    try {
      const t = await readFile(join(d, this.ref.version === 2 ? 'memory.events' : 'memory.oom_control'), 'utf8');
      return parseFlatKeyed(t).get('oom_kill') ?? 0;
    } catch {
      return 0;
    }
  }

  /** Sends a signal to every process in the group (v2 SIGKILL uses cgroup.kill where present). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.ref.version === 2 && signal === 'SIGKILL') {
      try {
        await writeFile(join(this.ref.dir, 'cgroup.kill'), '1');
        return;
      } catch {
        /* kernel < 5.14: fall through */
      }
    }
    for (const pid of await this.pids()) {
      try {
        process.kill(pid, signal);
      } catch {
        /* gone */
      }
    }
  }

  /**
   * Removes the group's directories. Fails (EBUSY) while processes remain; retries for up to
   * `waitMs` since killed processes leave the group asynchronously. Missing directories are fine.
   */
  async remove(waitMs = 2000): Promise<void> {
    const deadline = Date.now() + waitMs;
    for (const d of this.dirs()) {
      for (;;) {
        try {
          await rmdir(d);
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
  }
}

/** Enables memory, cpu and pids for the children of a v2 directory (those its own parent offers). */
async function enableV2Controllers(dir: string): Promise<void> {
  let available: string[];
  let enabled: string[];
  try {
    available = (await readFile(join(dir, 'cgroup.controllers'), 'utf8')).trim().split(/\s+/);
    enabled = (await readFile(join(dir, 'cgroup.subtree_control'), 'utf8')).trim().split(/\s+/);
  } catch {
    return;
  }
  const want = V2_CONTROLLERS.filter((c) => available.includes(c) && !enabled.includes(c));
  if (want.length === 0) return;
  try {
    await writeFile(join(dir, 'cgroup.subtree_control'), want.map((c) => `+${c}`).join(' '));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // EBUSY: the directory holds processes itself ("no internal processes" rule of v2)
    throw new Error(`cannot delegate ${want.join(', ')} in ${dir}: ${code === 'EBUSY' ? 'it holds processes (move them to a leaf group first)' : String(e)}`, { cause: e });
  }
}

/** enableV2Controllers() without awaits. */
function enableV2ControllersSync(dir: string): void {
  let available: string[];
  let enabled: string[];
  try {
    available = readFileSync(join(dir, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
    enabled = readFileSync(join(dir, 'cgroup.subtree_control'), 'utf8').trim().split(/\s+/);
  } catch {
    return;
  }
  const want = V2_CONTROLLERS.filter((c) => available.includes(c) && !enabled.includes(c));
  if (want.length === 0) return;
  try {
    writeFileSync(join(dir, 'cgroup.subtree_control'), want.map((c) => `+${c}`).join(' '));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`cannot delegate ${want.join(', ')} in ${dir}: ${code === 'EBUSY' ? 'it holds processes (move them to a leaf group first)' : String(e)}`, { cause: e });
  }
}

/** The cgroup paths of a process (v1 by controller, v2 as `v2`). */
export async function processCgroups(pid: number | 'self'): Promise<{ v2?: string; byController: Map<string, string> }> {
  return parseProcCgroup(await readFile(`/proc/${pid}/cgroup`, 'utf8'));
}
