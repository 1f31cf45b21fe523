/**
 * The one supervisor of every child-process driver (issue 10; anchor: Nomad's
 * `drivers/shared/executor`): process, unikernel and microvm (qemu) and wasm instances are
 * supervised children that survive a NodeEngine restart and are re-adopted with their exact exit
 * status. A driver is a `Launcher` (launcher.ts) that says what to run; everything else is here.
 *
 * On disk, per instance, `<dataDir>/instances/<id>/`:
 *   state.json  pid + start time (detects pid reuse), spec, labels, cgroup ref, recorded exit
 *   log         stdout and stderr
 *   exit        written by the wrapper (see wrapper.ts) when the workload ends
 * and `<workRoot>/<id>/`, the working directory and HOME of the workload.
 *
 * Unprivileged: with `runAs` (the NodeEngine, as root, passes the system user `oak-workload`), the
 * wrapper stays root (it must write the exit file and cannot be signalled or ptraced by the
 * workload), and the workload is exec'd through `setpriv` as that user with no supplementary
 * groups, no capabilities (also none inheritable or in the bounding set) and no_new_privs, so
 * setuid binaries cannot give root back. Its working directory is the only place it owns; the
 * data dir (state files with the SLA's environment, the node id, keys) stays root's, mode 0700.
 * In its own network namespace (spec.netns) the wrapper runs `nsenter --net=<path>` first (as
 * root), then `setpriv`.
 *
 * resolv.conf (spec.resolvConf, the worker's overlay resolver): before `setpriv` the workload
 * gets a private mount namespace (`unshare --mount --propagation private`) in which the file is
 * bind-mounted read-only over /etc/resolv.conf; the host's mount table never sees it, and the
 * workload still runs as the unprivileged user without capabilities (it cannot unmount it, and
 * the data dir stays 0700: only the one file is visible, at /etc/resolv.conf).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, watch, writeFileSync } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { readFile, readdir, rename, rm, writeFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { Cgroup, bootId, cgroupInfo, isSameProcessAlive, parseProcPidStat, procStat } from '@oak/sysinfo';
import type { CgroupInfo, CgroupRef } from '@oak/sysinfo';
import { RuntimeError } from '../types.ts';
import type { InstanceExit, InstanceSpec, InstanceStats, InstanceStatus, LogOptions, ProbeResult, Runtime, StopOptions } from '../types.ts';
import { MINIMAL_PATH, resolveCode } from '../process/code.ts';
import type { Launch, Launcher, RunAs } from './launcher.ts';
import { keepLogFile, readLines } from './logs.ts';
import { interpretExit } from './verdict.ts';
import type { ExitVerdict, RawExit } from './verdict.ts';
import { wrapperArgs } from './wrapper.ts';
import { sharedForker } from './forker.ts';
import { mountStorage, placeFiles, removeWorkDir, unreachableBy } from './workdir.ts';

export interface SupervisorOptions {
  /** instances, logs and downloaded executables live here */
  dataDir: string;
  /**
   * parent of the instances' groups inside each cgroup hierarchy (default `oak`, i.e.
   * `/sys/fs/cgroup/memory/oak/<id>` on v1, `/sys/fs/cgroup/oak/<id>` on v2)
   */
  cgroupParent?: string;
  /** SIGTERM -> SIGKILL grace period of stop() (default 5000 ms) */
  stopGraceMs?: number;
  /** how often adopted instances are checked for an exit (default 500 ms) */
  pollMs?: number;
  /** test seam: pretend cgroups are (not) usable */
  cgroupInfo?: CgroupInfo;
  /**
   * run workloads as this user (the runtime must run as root); undefined: as the runtime's own
   * user. A privileged spec runs as the runtime's user.
   */
  runAs?: RunAs | undefined;
  /**
   * parent of the workloads' working directories and of downloaded executables (default
   * `<dataDir>/work`); with `runAs` it must be outside the 0700 data dir, reachable by that user
   */
  workRoot?: string | undefined;
  /**
   * start wrappers through the process's fork helper (forker.ts; default true): this process
   * never forks on the start path. false: child_process.spawn, as where the helper is not usable.
   */
  forkHelper?: boolean | undefined;
}

interface RecordedExit extends ExitVerdict {
  at: string;
}

interface StateFile {
  v: 1;
  id: string;
  pid: number;
  /** clock ticks after boot, from /proc/<pid>/stat */
  starttime: number;
  /** /proc/sys/kernel/random/boot_id at start: after a reboot, nothing of the instance runs */
  boot_id: string;
  started_at: string;
  executable: string;
  spec: InstanceSpec;
  cgroup: CgroupRef | null;
  exit?: RecordedExit | undefined;
}

interface Tracked {
  st: StateFile;
  dir: string;
  cgroup: Cgroup | undefined;
  child?: ChildProcess | undefined;
  watcher?: FSWatcher | undefined;
  /** set while the exit is being recorded, or once stop() began: no further exit handling */
  finishing?: Promise<void> | undefined;
  stopping?: Promise<void> | undefined;
  lastCpu?: { usage_us: number; at: number } | undefined;
  /** started through the fork helper, its pid not known yet: no exit handling meanwhile */
  forking?: boolean | undefined;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export class SupervisedRuntime implements Runtime {
  readonly virtualization: Launcher['virtualization'];
  readonly #launcher: Launcher;
  readonly #dataDir: string;
  readonly #instancesDir: string;
  readonly #cgroupParent: string;
  readonly #graceMs: number;
  readonly #pollMs: number;
  readonly #cgInfoOverride: CgroupInfo | undefined;
  readonly #runAs: RunAs | undefined;
  readonly #workRoot: string;
  readonly #useForker: boolean;
  /** poll ticks since the last full check of every watched instance */
  #ticks = 0;
  readonly #tracked = new Map<string, Tracked>();
  readonly #starting = new Map<string, Promise<InstanceStatus>>();
  readonly #listeners: Array<(e: InstanceExit) => void> = [];
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #cgUsable: { ok: boolean; detail: string } | undefined;
  #cgProbe: Promise<{ ok: boolean; detail: string }> | undefined;
  #cgInfoCached: CgroupInfo | undefined;
  /** the instances dir and the work root exist (made at the first start) */
  #dirsReady = false;
  readonly #tools = new Map<string, Promise<string>>();

  constructor(launcher: Launcher, opts: SupervisorOptions) {
    this.#launcher = launcher;
    this.virtualization = launcher.virtualization;
    this.#dataDir = opts.dataDir;
    this.#instancesDir = join(opts.dataDir, 'instances');
    this.#cgroupParent = opts.cgroupParent ?? 'oak';
    this.#graceMs = opts.stopGraceMs ?? 5000;
    this.#pollMs = opts.pollMs ?? 500;
    this.#cgInfoOverride = opts.cgroupInfo;
    this.#runAs = opts.runAs;
    this.#workRoot = opts.workRoot ?? join(opts.dataDir, 'work');
    this.#useForker = opts.forkHelper ?? true;
  }

  /** who the workloads run as (for the NodeEngine's start lines) */
  get runAs(): RunAs | undefined {
    return this.#runAs;
  }

  get workRoot(): string {
    return this.#workRoot;
  }

  // ---------------------------------------------------------------- probe

  #cgInfo(): CgroupInfo {
    // the mounts do not change while the runtime runs: read once
    this.#cgInfoCached ??= this.#cgInfoOverride ?? cgroupInfo();
    return this.#cgInfoCached;
  }

  /** Can we create groups here? Checked once by creating and removing a probe group. */
  #cgroups(): Promise<{ ok: boolean; detail: string }> {
    // one probe group at a time: concurrent first starts would create and remove the same group
    this.#cgProbe ??= this.#probeCgroups();
    return this.#cgProbe;
  }

  async #probeCgroups(): Promise<{ ok: boolean; detail: string }> {
    if (this.#cgUsable !== undefined) return this.#cgUsable;
    const info = this.#cgInfo();
    if (!info.writable) {
      this.#cgUsable = { ok: false, detail: info.detail };
      return this.#cgUsable;
    }
    // The parent may be shared (the NodeEngine's namespace is containerd's too, whose cleanup can
    // remove an empty /<ns> between our mkdirs: ENOENT), and every supervisor of the process probes
    // it: a name of this supervisor's own, a few tries, and a failure that is not kept, so that
    // one unlucky moment does not turn the limits off for the rest of the NodeEngine's life.
    let last: Error | undefined;
    for (let i = 0; i < 3; i++) {
      try {
        const cg = await Cgroup.create(`probe-${process.pid}-${this.virtualization}`, { parent: this.#cgroupParent, info });
        await cg.remove();
        this.#cgUsable = { ok: true, detail: info.detail };
        return this.#cgUsable;
      } catch (e) {
        last = e as Error;
      }
    }
    this.#cgProbe = undefined;
    return { ok: false, detail: `cannot create a cgroup: ${last?.message ?? 'unknown error'}` };
  }

  async probe(): Promise<ProbeResult> {
    try {
      await access('/bin/sh');
    } catch {
      return { available: false, detail: '/bin/sh not found (needed to supervise processes)' };
    }
    const cg = await this.#cgroups();
    if (this.#runAs !== undefined) {
      if (process.getuid?.() !== 0) return { available: false, detail: `running processes as ${this.#runAs.name} needs root` };
      try {
        await access('/usr/bin/setpriv');
      } catch {
        return { available: false, detail: 'setpriv (util-linux) not found: cannot drop privileges' };
      }
    }
    const workDir = this.#runAs === undefined ? undefined : unreachableBy(this.#workRoot, this.#runAs);
    // the fork helper starts now (one fork of this process), not on the first deploy
    if (this.#useForker) await sharedForker()?.usable();
    return this.#launcher.probe({ cgroups: cg.ok, detail: cg.detail, workDir });
  }

  // ---------------------------------------------------------------- start

  async start(spec: InstanceSpec): Promise<InstanceStatus> {
    if (this.#closed) throw new RuntimeError('closed', `the ${this.virtualization} runtime is closed`);
    if (!ID_RE.test(spec.id)) throw new RuntimeError('invalid_spec', `instance id ${JSON.stringify(spec.id)} must match ${ID_RE.source}`);
    if (spec.virtualization !== this.virtualization) throw new RuntimeError('invalid_spec', `the ${this.virtualization} runtime cannot run virtualization ${JSON.stringify(spec.virtualization)}`);
    const pending = this.#starting.get(spec.id);
    if (pending !== undefined) return pending;
    const existing = await this.status(spec.id);
    if (existing !== undefined) return existing;
    const p = this.#start(spec).finally(() => this.#starting.delete(spec.id));
    this.#starting.set(spec.id, p);
    return p;
  }

  /**
   * The start path is one event-loop turn plus the spawn: its file operations (a few directories,
   * the cgroup, the state file) are synchronous, each a few µs, where their async forms wait for a
   * thread-pool round trip and a loop turn each (1-5 ms under load, ~25 ms in all, measured in the
   * 1-DOC deploy bench). Only a code download or a directory left by an earlier life of the same id
   * goes through async I/O.
   */
  async #start(spec: InstanceSpec): Promise<InstanceStatus> {
    const mem = spec.memory_mb ?? 0;
    const cpus = spec.vcpus ?? 0;
    if (!(mem >= 0) || !(cpus >= 0)) throw new RuntimeError('invalid_spec', 'memory_mb and vcpus must be non-negative numbers');
    const cgs = await this.#cgroups();
    if (!cgs.ok && (mem > 0 || cpus > 0)) {
      const what = [mem > 0 ? `memory ${mem} MB` : '', cpus > 0 ? `vcpus ${cpus}` : ''].filter(Boolean).join(' and ');
      throw new RuntimeError('limits_unavailable', `cannot enforce ${what}: cgroups are not usable here (${cgs.detail})`);
    }
    if (spec.netns !== undefined && !existsSync(spec.netns)) {
      throw new RuntimeError('netns_not_found', `network namespace ${spec.netns} does not exist`);
    }
    const dir = join(this.#instancesDir, spec.id);
    const work = join(this.#workRoot, spec.id);
    const runAs = spec.privileged === true ? undefined : this.#runAs;
    // instance numbers are not reused: these exist only after a crash in the middle of a start
    if (existsSync(dir)) await rm(dir, { recursive: true, force: true });
    if (existsSync(work)) await removeWorkDir(work);
    if (!this.#dirsReady) {
      mkdirSync(this.#instancesDir, { recursive: true, mode: 0o700 });
      mkdirSync(this.#workRoot, { recursive: true, mode: 0o711 });
      if (runAs !== undefined) chmodSync(this.#workRoot, 0o711);
      this.#dirsReady = true;
    }
    let cgroup: Cgroup | undefined;
    let child: ChildProcess | undefined;
    try {
      mkdirSync(dir, { mode: 0o700 });
      mkdirSync(work, { mode: 0o700 });
      if (runAs !== undefined) chownSync(work, runAs.uid, runAs.gid);
      if (spec.storage_mb !== undefined && spec.storage_mb > 0) await mountStorage(work, spec.storage_mb, runAs);
      if (spec.files !== undefined && spec.files.length > 0) {
        const sub = this.#launcher.filesDir;
        let into = work;
        if (sub !== undefined) {
          into = join(work, sub);
          mkdirSync(into, { mode: 0o700 });
          if (runAs !== undefined) chownSync(into, runAs.uid, runAs.gid);
        }
        await placeFiles(into, spec.files, runAs);
      }
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      await removeWorkDir(work);
      if (e instanceof RuntimeError) throw e;
      throw new RuntimeError('spawn_failed', `cannot make the directories of ${spec.id}: ${(e as Error).message}`, { cause: e });
    }
    try {
      if (cgs.ok) {
        const made = Cgroup.createSync(spec.id, { parent: this.#cgroupParent, info: this.#cgInfo() });
        cgroup = made.cgroup;
        if (!made.fresh && ((await cgroup.pids()).length > 0 || (await cgroup.oomKills()) > 0)) {
          // a stale group of an earlier life of this id: its leftovers and OOM count must not leak in
          await cgroup.kill('SIGKILL');
          await cgroup.remove();
          cgroup = Cgroup.createSync(spec.id, { parent: this.#cgroupParent, info: this.#cgInfo() }).cgroup;
        }
        if (cpus > 0) cgroup.setCpuQuotaSync(cpus);
      }
    } catch (e) {
      await cgroup?.remove().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      await removeWorkDir(work);
      throw new RuntimeError('cgroup_failed', `cannot set up the cgroup of ${spec.id}: ${(e as Error).message}`, { cause: e });
    }
    let launch: Launch;
    let argv: string[];
    let user: RunAs | undefined;
    try {
      launch = await this.#launcher.launch(spec, { dir, work, runAs, tool: (n) => this.#tool(n), cacheDir: join(this.#dataDir, 'cache') });
      user = launch.keepUser === true ? undefined : runAs;
      const limitMb = launch.cgroupMemoryMb ?? mem;
      if (cgroup !== undefined && limitMb > 0) cgroup.setMemoryLimitSync(limitMb);
      argv = await this.#wrap(spec, launch, user);
    } catch (e) {
      await this.#launcher.release?.(spec).catch(() => undefined);
      await cgroup?.remove().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      await removeWorkDir(work);
      if (e instanceof RuntimeError) throw e;
      throw new RuntimeError('spawn_failed', `cannot prepare ${spec.id}: ${(e as Error).message}`, { cause: e });
    }
    const executable = launch.executable;
    let forked: Tracked | undefined;

    try {
      const env: Record<string, string> = { PATH: MINIMAL_PATH, HOME: work };
      if (user !== undefined) {
        env['USER'] = user.name;
        env['LOGNAME'] = user.name;
      }
      if (launch.ownEnv !== true) {
        for (const kv of spec.env) {
          const i = kv.indexOf('=');
          if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
        }
      }
      Object.assign(env, launch.env);
      const procs = cgroup?.procsFiles() ?? [];
      const forker = this.#useForker ? sharedForker() : null;
      if (forker !== null && (await forker.usable())) {
        // the fork helper (forker.ts): this loop does not fork. The state is persisted before the
        // fork, without a pid; the wrapper writes its pid file first thing, so a NodeEngine that
        // dies before it learns the pid finds the wrapper on restart (see #get).
        // the log exists from the start (logs() may follow it at once; the helper's redirect
        // only opens it once the fork ran)
        closeSync(openSync(join(dir, 'log'), 'a'));
        const st = this.#newState(spec, 0, 0, executable, cgroup);
        const t: Tracked = { st, dir, cgroup, forking: true };
        this.#tracked.set(spec.id, t);
        this.#writeStateSync(dir, st);
        // exits are seen by the exit file (fs.watch) and the poll, as for adopted instances
        this.#watch(t);
        forked = t;
        const pid = await forker.spawn({ argv: ['/bin/sh', ...wrapperArgs(join(dir, 'exit'), argv, procs, join(dir, 'pid'))], cwd: work, env, log: join(dir, 'log') });
        st.pid = pid;
        st.starttime = startTimeOf(pid);
        this.#writeStateSync(dir, st);
        t.forking = false;
        // a wrapper that ended already (it could not join its cgroup, a workload that exits at
        // once) wrote its exit file while the pid was unknown (one stat, no read on the way)
        if (existsSync(join(dir, 'exit'))) void this.#check(t);
        return this.#statusOf(t);
      }
      const logFd = openSync(join(dir, 'log'), 'a');
      try {
        // the wrapper moves itself into the cgroup (see wrapper.ts) while the state is persisted
        child = spawn('/bin/sh', wrapperArgs(join(dir, 'exit'), argv, procs), {
          cwd: work,
          env,
          detached: true,
          stdio: ['pipe', logFd, logFd],
        });
      } finally {
        closeSync(logFd);
      }
      const c = child;
      await new Promise<void>((resolve, reject) => {
        c.once('spawn', resolve);
        c.once('error', reject);
      });
      const pid = c.pid as number;
      const st = this.#newState(spec, pid, startTimeOf(pid), executable, cgroup);
      const t: Tracked = { st, dir, cgroup, child: c };
      this.#tracked.set(spec.id, t);
      // persisted before the workload runs: a restarted NodeEngine always finds what it started
      this.#writeStateSync(dir, st);
      c.on('exit', (_code, signal) => {
        t.child = undefined;
        void this.#finish(t, signal ?? undefined);
      });
      // a wrapper that could not join its cgroup exits before it reads `go`: the EPIPE is not
      // an error of ours (its 125 reaches the exit file), and unhandled it would end the NodeEngine
      c.stdin?.once('error', () => undefined);
      c.stdin?.end('go\n');
      c.unref();
      return this.#statusOf(t);
    } catch (e) {
      const pid = child?.pid ?? (forked !== undefined ? forked.st.pid || readPidFile(dir) : undefined);
      if (pid !== undefined && pid > 0) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      if (forked !== undefined) {
        forked.watcher?.close();
        forked.watcher = undefined;
        forked.forking = false;
        // no exit handling for a start that failed: its error is the answer
        forked.stopping = Promise.resolve();
      }
      this.#tracked.delete(spec.id);
      await this.#launcher.release?.(spec).catch(() => undefined);
      await cgroup?.kill('SIGKILL').catch(() => undefined);
      await cgroup?.remove().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      await removeWorkDir(work);
      if (e instanceof RuntimeError) throw e;
      throw new RuntimeError('spawn_failed', `cannot start ${spec.id}: ${(e as Error).message}`, { cause: e });
    }
  }

  #newState(spec: InstanceSpec, pid: number, starttime: number, executable: string, cgroup: Cgroup | undefined): StateFile {
    return {
      v: 1,
      id: spec.id,
      pid,
      starttime,
      boot_id: bootId(),
      started_at: new Date().toISOString(),
      executable,
      // the registry login served the pull: it is never written to disk
      spec: { ...spec, registryAuth: undefined },
      cgroup: cgroup?.ref ?? null,
    };
  }

  /** the launcher's argv inside setpriv (its user), unshare (resolv.conf) and nsenter (its network namespace) */
  async #wrap(spec: InstanceSpec, launch: Launch, user: RunAs | undefined): Promise<string[]> {
    const argv = [...launch.argv];
    if (user !== undefined) {
      argv.unshift('/usr/bin/setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--');
    }
    if (spec.resolvConf !== undefined && launch.noResolvConf !== true) {
      if (!spec.resolvConf.startsWith('/') || spec.resolvConf.split('/').includes('..')) throw new RuntimeError('invalid_spec', `resolv.conf ${JSON.stringify(spec.resolvConf)} is not an absolute path`);
      if (!existsSync(spec.resolvConf)) throw new RuntimeError('invalid_spec', `resolv.conf ${spec.resolvConf} does not exist`);
      const tools = await Promise.all(['unshare', 'mount'].map((t) => this.#tool(t))).catch(() => {
        throw new RuntimeError('mount_unavailable', 'a private /etc/resolv.conf needs unshare and mount (util-linux)');
      });
      const [unshare, mount] = tools as [string, string];
      argv.unshift(unshare, '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', `${mount} --bind -o ro "$0" /etc/resolv.conf && exec "$@"`, spec.resolvConf);
    }
    if (spec.netns !== undefined) {
      const nsenter = await this.#tool('nsenter').catch(() => {
        throw new RuntimeError('netns_unavailable', 'joining a network namespace needs nsenter (util-linux)');
      });
      argv.unshift(nsenter, `--net=${spec.netns}`, '--');
    }

    return argv;
  }

  /** a helper program (nsenter, unshare, mount) on the minimal PATH, looked up once */
  #tool(name: string): Promise<string> {
    let p = this.#tools.get(name);
    if (p === undefined) {
      p = resolveCode(name, this.#dataDir);
      p.catch(() => this.#tools.delete(name));
      this.#tools.set(name, p);
    }
    return p;
  }

  // ---------------------------------------------------------------- exits

  /**
   * The instance has ended (the wrapper exited or wrote its exit file): record the verdict once,
   * end leftovers in its cgroup, remove the cgroup, tell the listeners.
   */
  #finish(t: Tracked, wrapperSignal?: string): Promise<void> {
    if (t.finishing !== undefined || t.stopping !== undefined || t.st.exit !== undefined) return t.finishing ?? Promise.resolve();
    t.finishing = (async () => {
      t.watcher?.close();
      t.watcher = undefined;
      if (t.child === undefined) void reapWhenDead(t.st.pid, t.st.starttime);
      let code = await this.#readExitFile(t);
      if (code === undefined && wrapperSignal === undefined) {
        // the wrapper may be between writing the file and exiting; give it a moment
        await new Promise((r) => setTimeout(r, 50));
        code = await this.#readExitFile(t);
      }
      const oomKills = (await t.cgroup?.oomKills().catch(() => 0)) ?? 0;
      const lostReason = t.st.boot_id !== bootId() ? 'the host restarted while it ran' : undefined;
      const raw: RawExit = { code, wrapperSignal, oomKills, memoryLimitMb: t.st.spec.memory_mb, oneShot: t.st.spec.one_shot, lostReason };
      const verdict = this.#launcher.verdict?.(raw, t.st.spec) ?? interpretExit(raw);
      if (t.stopping !== undefined) return;
      // daemons the workload left behind end with it (as in a container)
      if (t.cgroup !== undefined) {
        await t.cgroup.kill('SIGKILL').catch(() => undefined);
        await t.cgroup.remove().catch(() => undefined);
      }
      t.st.exit = { ...verdict, at: new Date().toISOString() };
      await this.#writeState(t.dir, t.st).catch(() => undefined);
      if (t.stopping !== undefined || this.#closed) return;
      const ev: InstanceExit = { id: t.st.id, exit_code: verdict.exit_code, state: verdict.state, detail: verdict.detail };
      for (const l of this.#listeners) {
        try {
          l(ev);
        } catch {
          /* a listener's problem */
        }
      }
    })();
    return t.finishing;
  }

  async #readExitFile(t: Tracked): Promise<number | undefined> {
    try {
      const s = (await readFile(join(t.dir, 'exit'), 'utf8')).trim();
      if (s === '') return undefined;
      const n = Number(s);
      return Number.isInteger(n) ? n : undefined;
    } catch {
      return undefined;
    }
  }

  /** Watches an adopted instance (not our child): fs.watch on its directory plus a poll. */
  #watch(t: Tracked): void {
    if (this.#closed) return;
    try {
      t.watcher = watch(t.dir, (_ev, name) => {
        if (name === 'exit') void this.#check(t);
      });
      t.watcher.on('error', () => undefined);
      t.watcher.unref();
    } catch {
      /* polling alone */
    }
    if (this.#timer === undefined) {
      // The exit file is seen by the watcher at once; the poll is for a wrapper that died without
      // writing it (killed). Every instance is watched, so a tick only asks the kernel whether the
      // pid exists (kill 0, no file read); every 10th tick checks fully (start time, zombies).
      this.#timer = setInterval(() => {
        const full = ++this.#ticks % 10 === 0;
        for (const x of this.#tracked.values()) {
          if (x.child !== undefined || x.st.exit !== undefined || x.forking === true) continue;
          if (full || x.watcher === undefined || !pidExists(x.st.pid)) void this.#check(x);
        }
      }, this.#pollMs);
      this.#timer.unref();
    }
  }

  /** Is the instance's wrapper still the process we started (same boot, pid and start time)? */
  async #alive(t: Tracked): Promise<boolean> {
    return t.st.exit === undefined && t.st.boot_id === bootId() && (await isSameProcessAlive(t.st.pid, t.st.starttime));
  }

  async #check(t: Tracked): Promise<void> {
    if (t.st.exit !== undefined || t.finishing !== undefined || t.stopping !== undefined || t.forking === true) return;
    const code = await this.#readExitFile(t);
    if (code !== undefined || !(await this.#alive(t))) await this.#finish(t);
  }

  onExit(listener: (exit: InstanceExit) => void): void {
    this.#listeners.push(listener);
  }

  // ---------------------------------------------------------------- state

  #writeStateSync(dir: string, st: StateFile): void {
    const tmp = join(dir, 'state.json.tmp');
    writeFileSync(tmp, JSON.stringify(st));
    renameSync(tmp, join(dir, 'state.json'));
  }

  async #writeState(dir: string, st: StateFile): Promise<void> {
    const tmp = join(dir, 'state.json.tmp');
    await writeFile(tmp, JSON.stringify(st));
    await rename(tmp, join(dir, 'state.json'));
  }

  /** The tracked instance, adopting it from its state file if this runtime has not seen it yet. */
  async #get(id: string): Promise<Tracked | undefined> {
    const known = this.#tracked.get(id);
    if (known !== undefined) return known;
    if (!ID_RE.test(id)) return undefined;
    const dir = join(this.#instancesDir, id);
    // the common answer on the start path (a new id), without a thread-pool round trip
    if (!existsSync(join(dir, 'state.json'))) return undefined;
    let st: StateFile;
    try {
      st = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as StateFile;
    } catch {
      return undefined;
    }
    if (st.v !== 1 || st.id !== id) return undefined;
    if (st.pid === 0 && st.exit === undefined) {
      // persisted before a fork whose pid never reached the state: the wrapper's pid file says it
      const pid = readPidFile(dir);
      if (pid !== undefined && isWrapperOf(pid, join(dir, 'exit'))) {
        st.pid = pid;
        st.starttime = startTimeOf(pid);
      }
    }
    const again = this.#tracked.get(id); // adopted meanwhile by a concurrent call
    if (again !== undefined) return again;
    const t: Tracked = { st, dir, cgroup: st.cgroup === null ? undefined : Cgroup.open(st.cgroup) };
    this.#tracked.set(id, t);
    if (st.exit === undefined) {
      this.#watch(t);
      await this.#check(t);
      if (t.finishing !== undefined) await t.finishing;
    }
    return t;
  }

  #statusOf(t: Tracked): InstanceStatus {
    const labels = { ...t.st.spec.labels };
    const e = t.st.exit;
    if (e !== undefined) return { id: t.st.id, state: e.state, detail: e.detail, pid: t.st.pid, exit_code: e.exit_code, labels };
    return { id: t.st.id, state: 'RUNNING', detail: `pid ${t.st.pid}`, pid: t.st.pid, labels };
  }

  async status(id: string): Promise<InstanceStatus | undefined> {
    const t = await this.#get(id);
    return t === undefined ? undefined : this.#statusOf(t);
  }

  async list(): Promise<InstanceStatus[]> {
    let names: string[] = [];
    try {
      names = await readdir(this.#instancesDir);
    } catch {
      /* nothing yet */
    }
    const out: InstanceStatus[] = [];
    for (const id of names.sort()) {
      if (this.#starting.has(id)) continue;
      const t = await this.#get(id);
      if (t !== undefined) out.push(this.#statusOf(t));
    }
    return out;
  }

  // ---------------------------------------------------------------- stop

  async stop(id: string, opts: StopOptions = {}): Promise<void> {
    const pending = this.#starting.get(id);
    if (pending !== undefined) await pending.catch(() => undefined);
    const t = await this.#get(id);
    if (t === undefined) {
      if (ID_RE.test(id)) {
        await rm(join(this.#instancesDir, id), { recursive: true, force: true });
        await removeWorkDir(join(this.#workRoot, id));
      }
      return;
    }
    t.stopping ??= this.#stop(t, opts.keepLog);
    return t.stopping;
  }

  async #stop(t: Tracked, keepLog: string | undefined): Promise<void> {
    t.watcher?.close();
    t.watcher = undefined;
    const { pid } = t.st;
    const wrapperAlive = (): Promise<boolean> => this.#alive(t);
    const signalAll = async (sig: NodeJS.Signals): Promise<void> => {
      // the process group (setsid made the wrapper its leader) ...
      if (pid > 0 && (await wrapperAlive())) {
        try {
          process.kill(-pid, sig);
        } catch {
          // just forked by the helper, not yet its own process group (setsid runs before the
          // wrapper): the process itself
          try {
            process.kill(pid, sig);
          } catch {
            /* gone */
          }
        }
      }
      // ... and whatever left the group but not the cgroup
      await t.cgroup?.kill(sig).catch(() => undefined);
    };
    const empty = async (): Promise<boolean> => !(await wrapperAlive()) && (t.cgroup === undefined || (await t.cgroup.pids()).length === 0);
    const waitEmpty = async (ms: number): Promise<boolean> => {
      const end = Date.now() + ms;
      for (;;) {
        if (await empty()) return true;
        if (Date.now() >= end) return false;
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    if (!(await empty())) {
      await signalAll('SIGTERM');
      if (!(await waitEmpty(this.#graceMs))) {
        await signalAll('SIGKILL');
        await waitEmpty(2000);
      }
    }
    // a wrapper of the fork helper is the helper's child: dead, it is a zombie until the helper
    // reaps it. stop() returns when no trace of the process is left (bounded: a wrapper adopted
    // from an earlier life is init's, and an init may take its time).
    if (pid > 0 && t.child === undefined && existsSync(`/proc/${pid}`)) {
      sharedForker()?.reap();
      const end = Date.now() + 500;
      while (existsSync(`/proc/${pid}`) && Date.now() < end && !(await this.#alive(t))) await new Promise((r) => setTimeout(r, 2));
    }
    await t.cgroup?.remove().catch(() => undefined);
    await this.#launcher.release?.(t.st.spec).catch(() => undefined);
    this.#tracked.delete(t.st.id);
    if (keepLog !== undefined) await keepLogFile(join(t.dir, 'log'), keepLog).catch(() => undefined);
    await rm(t.dir, { recursive: true, force: true });
    await removeWorkDir(join(this.#workRoot, t.st.id));
  }

  // ---------------------------------------------------------------- logs, stats

  async *logs(id: string, opts: LogOptions = {}): AsyncIterable<string> {
    const t = await this.#get(id);
    if (t === undefined) throw new RuntimeError('not_found', `no ${this.virtualization} instance ${id}`);
    yield* readLines(join(t.dir, 'log'), {
      tail: opts.tail,
      follow: opts.follow,
      signal: opts.signal,
      isDone: () => t.st.exit !== undefined || !this.#tracked.has(id),
    });
  }

  async stats(id: string): Promise<InstanceStats | undefined> {
    const t = await this.#get(id);
    if (t === undefined || t.st.exit !== undefined) return undefined;
    const now = performance.now();
    let usage_us: number;
    let memory_bytes: number;
    if (t.cgroup !== undefined) {
      try {
        [usage_us, memory_bytes] = await Promise.all([t.cgroup.cpuUsage(), t.cgroup.memoryUsage()]);
      } catch {
        return undefined;
      }
    } else {
      [usage_us, memory_bytes] = await sessionUsage(t.st.pid);
    }
    const last = t.lastCpu;
    t.lastCpu = { usage_us, at: now };
    // 100 = one full core, as `docker stats` shows it
    const cpu_percent = last === undefined || now <= last.at ? 0 : Math.max(0, ((usage_us - last.usage_us) / 1000 / (now - last.at)) * 100);
    return { cpu_percent, memory_mb: memory_bytes / 1048576 };
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await Promise.all([...this.#starting.values()].map((p) => p.catch(() => undefined)));
    for (const t of this.#tracked.values()) {
      t.watcher?.close();
      t.child?.removeAllListeners('exit');
    }
    this.#tracked.clear();
  }
}

/** Without a cgroup: CPU time (µs) and resident memory of the processes in the wrapper's session. */
async function sessionUsage(sid: number): Promise<[number, number]> {
  let ticks = 0;
  let pages = 0;
  let names: string[] = [];
  try {
    names = await readdir('/proc');
  } catch {
    return [0, 0];
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    const s = await procStat(Number(n));
    if (s === undefined || s.session !== sid) continue;
    ticks += s.utime + s.stime;
    pages += s.rss_pages;
  }
  return [(ticks / 100) * 1e6, pages * 4096];
}

/**
 * A wrapper of the fork helper that ended (it wrote its exit file and exits, or was seen dead) is
 * collected by the helper as soon as it is dead; an instance that is not the helper's (adopted)
 * makes this a no-op command of the helper.
 */
async function reapWhenDead(pid: number, starttime: number): Promise<void> {
  const forker = sharedForker();
  if (forker === null || !(pid > 0)) return;
  const end = Date.now() + 2000;
  while (Date.now() < end && (await isSameProcessAlive(pid, starttime))) await new Promise((r) => setTimeout(r, 5));
  forker.reap();
}

/** start time (clock ticks after boot) of a live pid; 0 when it is gone already */
function startTimeOf(pid: number): number {
  try {
    return parseProcPidStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).starttime;
  } catch {
    return 0;
  }
}

/** the pid a wrapper started by the fork helper wrote into its instance directory */
function readPidFile(dir: string): number | undefined {
  try {
    const n = Number(readFileSync(join(dir, 'pid'), 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** is `pid` the wrapper of this exit file (not a process that reused the pid)? */
function isWrapperOf(pid: number, exitFile: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`\u0000oak-wrap\u0000${exitFile}\u0000`);
  } catch {
    return false;
  }
}

/** does the pid exist (zombies included)? one syscall */
function pidExists(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
