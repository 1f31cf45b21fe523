/**
 * `container` virtualization on containerd. A hybrid driver, chosen by measurement (see the
 * package README / bench/src/runtime-containerd.ts):
 *   - images are pulled with `ctr images pull` (fetch + unpack in one step; only when absent),
 *   - everything else talks to containerd's gRPC API directly (no process spawn per call):
 *     Containers.Create with a generated OCI spec, Snapshots.Prepare, Tasks.Create with
 *     `file://` stdout/stderr, Tasks.Start, Tasks.Wait for exits, Kill/Delete for stop.
 *
 * State lives in containerd only (container labels), so a new instance of this class on the same
 * socket and namespace re-adopts everything (list()): running tasks keep running under their
 * shims, exits are watched again, and each exit is reported once (the verdict is written back to
 * the container's `io.oak.exit` label).
 */
import { existsSync, readFileSync } from 'node:fs';
import { access, mkdir, readFile, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { delimiter, join } from 'node:path';
import { Cgroup, cgroupInfo } from '@oak/sysinfo';
import type { PortMapping } from '@oak/contracts';
import { keepLogFile, readLines } from '../supervisor/logs.ts';
import { interpretExit } from '../supervisor/verdict.ts';
import { RuntimeError } from '../types.ts';
import type { InstanceExit, InstanceSpec, InstanceStats, InstanceStatus, LogOptions, ProbeResult, Runtime, StopOptions } from '../types.ts';
import { ALREADY_EXISTS, ContainerdClient, DEFAULT_PROTO_ROOT, NOT_FOUND, grpcCode } from './grpc.ts';
import type { Container, Process } from './grpc.ts';
import type { RegistryLogin } from './auth-relay.ts';
import { ctrPull, ctrPullWithLogin, isPlainHttp, registryHost, normalizeRef, resolveImage } from './image.ts';
import type { ResolvedImage } from './image.ts';
import { mappingsNeedingProxy, startPortProxy } from './ports.ts';
import type { PortProxy } from './ports.ts';
import { buildSpec, capsFromMask } from './spec.ts';
import { resolveGpuAccess, type GpuAccess } from './gpu.ts';

export interface ContainerdRuntimeOptions {
  /** containerd's gRPC socket (default /run/containerd/containerd.sock) */
  socket?: string;
  /** containerd namespace holding oak's containers (default `oak`) */
  namespace?: string;
  /** log files live in `<dataDir>/logs/<container id>.log` */
  dataDir: string;
  /** registries (`host[:port]`) reached over plain HTTP besides 127.0.0.1/localhost/::1 */
  plainHttpRegistries?: string[];
  /** default `overlayfs` */
  snapshotter?: string;
  /** default `io.containerd.runc.v2` */
  runtime?: string;
  /** SIGTERM -> SIGKILL grace period of stop() (default 10000 ms) */
  stopGraceMs?: number;
  /** address the port proxies listen on (default `0.0.0.0`; tests use `127.0.0.1`) */
  portBindAddress?: string;
  /** root of the containerd API .proto files (default Debian's /usr/share/gocode/src) */
  protoRoot?: string;
  /** CDI spec directories for GPU devices (default /etc/cdi, /var/run/cdi) */
  cdiDirs?: string[];
  /** where the NVIDIA container runtime hook may be (default /usr/bin and /usr/local/bin) */
  nvidiaHookPaths?: string[];
}

const L = {
  id: 'io.oak.id',
  job: 'io.oak.job_name',
  instance: 'io.oak.instance_number',
  oneShot: 'io.oak.one_shot',
  memory: 'io.oak.memory_mb',
  ports: 'io.oak.ports',
  log: 'io.oak.log',
  exit: 'io.oak.exit',
  netns: 'io.oak.netns',
} as const;
const INTERNAL_PREFIX = 'io.oak.';
const SPEC_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';
const CONTAINERD_ID = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;

/** containerd ids are at most 76 characters of `[A-Za-z0-9._-]`; longer/other ids get a hashed form */
export function containerIdFor(id: string): string {
  if (id.length <= 76 && CONTAINERD_ID.test(id)) return id;
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 16);
  const head = id.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 58).replace(/-+$/, '');
  return head ? `${head}-${hash}` : hash;
}


interface Watch {
  cid: string;
  id: string;
  abort: AbortController;
  exited: boolean;
}

interface Verdict { exit_code: number; state: 'COMPLETED' | 'FAILED'; detail: string }

export class ContainerdRuntime implements Runtime {
  readonly virtualization = 'container' as const;
  readonly socket: string;
  readonly namespace: string;
  readonly #dataDir: string;
  readonly #plainHttp: string[];
  readonly #snapshotter: string;
  readonly #runtime: string;
  readonly #graceMs: number;
  readonly #bind: string;
  readonly #protoRoot: string;
  #client: ContainerdClient | undefined;
  readonly #listeners: Array<(e: InstanceExit) => void> = [];
  readonly #watches = new Map<string, Watch>();
  readonly #proxies = new Map<string, Promise<PortProxy | undefined>>();
  readonly #starting = new Map<string, Promise<InstanceStatus>>();
  readonly #stopping = new Map<string, Promise<void>>();
  readonly #pulls = new Map<string, Promise<void>>();
  readonly #images = new Map<string, ResolvedImage>();
  readonly #cpu = new Map<string, { usage_us: number; at: number }>();
  #closed = false;
  readonly #gpuOpts: { cdiDirs: string[] | undefined; hookPaths: string[] | undefined };

  constructor(opts: ContainerdRuntimeOptions) {
    this.#gpuOpts = { cdiDirs: opts.cdiDirs, hookPaths: opts.nvidiaHookPaths };
    this.socket = opts.socket ?? '/run/containerd/containerd.sock';
    this.namespace = opts.namespace ?? 'oak';
    this.#dataDir = opts.dataDir;
    this.#plainHttp = opts.plainHttpRegistries ?? [];
    this.#snapshotter = opts.snapshotter ?? 'overlayfs';
    this.#runtime = opts.runtime ?? 'io.containerd.runc.v2';
    this.#graceMs = opts.stopGraceMs ?? 10_000;
    this.#bind = opts.portBindAddress ?? '0.0.0.0';
    this.#protoRoot = opts.protoRoot ?? DEFAULT_PROTO_ROOT;
  }

  get #c(): ContainerdClient {
    if (this.#closed) throw new RuntimeError('closed', 'the containerd runtime is closed');
    this.#client ??= new ContainerdClient(this.socket, this.namespace, this.#protoRoot);
    return this.#client;
  }

  // ---------------------------------------------------------------- probe

  async probe(): Promise<ProbeResult> {
    if (!existsSync(this.socket)) return { available: false, detail: `containerd socket ${this.socket} not found` };
    let version: string;
    try {
      const v = await this.#c.call('version.Version', {}, { timeoutMs: 3000 });
      version = v.version.replace(/[~+].*$/, '');
    } catch (e) {
      return { available: false, detail: `containerd at ${this.socket} not reachable: ${(e as Error).message}` };
    }
    const runc = await findExecutable('runc');
    if (!runc) return { available: false, detail: `containerd ${version} found, but no runc on PATH` };
    return { available: true, detail: `containerd ${version}` };
  }

  // ---------------------------------------------------------------- start

  start(spec: InstanceSpec): Promise<InstanceStatus> {
    const cid = containerIdFor(spec.id);
    const running = this.#starting.get(cid);
    if (running) return running;
    const p = this.#start(spec, cid).finally(() => this.#starting.delete(cid));
    this.#starting.set(cid, p);
    return p;
  }

  async #start(spec: InstanceSpec, cid: string): Promise<InstanceStatus> {
    const c = this.#c;
    const pending = this.#stopping.get(cid);
    if (pending) await pending;
    const existing = await this.status(spec.id);
    if (existing) return existing;

    // GPUs first: a container that cannot get them fails before its image is pulled
    let gpu: GpuAccess | undefined;
    if (spec.gpus !== undefined && spec.gpus.length > 0) gpu = await resolveGpuAccess(spec.gpus, this.#gpuOpts);

    const ref = normalizeRef(spec.code);
    let image: ResolvedImage;
    try {
      image = await this.#ensureImage(ref, loginFor(ref, spec.registryAuth));
    } catch (e) {
      throw new RuntimeError('image_pull_failed', `cannot pull image ${spec.code}: ${(e as Error).message}`, { cause: e });
    }

    const memoryBytes = spec.memory_mb !== undefined && spec.memory_mb > 0 ? Math.round(spec.memory_mb * 1024 * 1024) : undefined;
    let ociSpec: Record<string, unknown>;
    try {
      ociSpec = buildSpec({
        id: cid,
        namespace: this.namespace,
        image: image.config,
        cmd: spec.cmd,
        args: spec.args,
        files: spec.files,
        env: spec.env,
        memoryBytes,
        limitSwap: swapAccounted(),
        vcpus: spec.vcpus,
        netns: spec.netns,
        resolvConf: spec.resolvConf,
        privileged: spec.privileged,
        mounts: spec.mounts,
        allCaps: spec.privileged === true ? boundingCaps() : undefined,
        gpu,
      });
    } catch (e) {
      throw new RuntimeError('invalid_spec', (e as Error).message, { cause: e });
    }

    const logDir = join(this.#dataDir, 'logs');
    const log = join(logDir, `${cid}.log`);
    await mkdir(logDir, { recursive: true });
    await rm(log, { force: true });

    const labels: Record<string, string> = {
      ...spec.labels,
      [L.id]: spec.id,
      [L.job]: spec.job_name,
      [L.instance]: String(spec.instance_number),
      [L.oneShot]: spec.one_shot ? '1' : '0',
      [L.ports]: JSON.stringify(spec.ports),
      [L.log]: log,
    };
    // in its own namespace the NodeEngine maps the ports (nftables DNAT); no proxy here
    if (spec.netns !== undefined) labels[L.netns] = spec.netns;
    if (spec.memory_mb !== undefined) labels[L.memory] = String(spec.memory_mb);

    try {
      await c.call('containers.Create', {
        container: {
          id: cid,
          labels,
          image: image.name,
          runtime: { name: this.#runtime },
          spec: { type_url: SPEC_TYPE, value: Buffer.from(JSON.stringify(ociSpec)) },
          snapshotter: this.#snapshotter,
          snapshot_key: cid,
        },
      });
    } catch (e) {
      if (grpcCode(e) === ALREADY_EXISTS) {
        const st = await this.status(spec.id);
        if (st) return st;
      }
      throw new RuntimeError('create_failed', `cannot create container ${cid}: ${(e as Error).message}`, { cause: e });
    }

    let pid: number;
    try {
      let mounts;
      try {
        mounts = (await c.call('snapshots.Prepare', { snapshotter: this.#snapshotter, key: cid, parent: image.chainId })).mounts;
      } catch (e) {
        if (grpcCode(e) !== ALREADY_EXISTS) throw e;
        mounts = (await c.call('snapshots.Mounts', { snapshotter: this.#snapshotter, key: cid })).mounts;
      }
      await c.call('tasks.Create', { container_id: cid, rootfs: mounts, stdout: `file://${log}`, stderr: `file://${log}` });
      // watch before starting, so that even an instant exit is seen
      this.#watch(cid, spec.id);
      pid = (await c.call('tasks.Start', { container_id: cid })).pid;
    } catch (e) {
      this.#unwatch(cid);
      await this.#remove(cid).catch(() => undefined);
      throw new RuntimeError('start_failed', `cannot start container ${cid}: ${grpcMessage(e)}`, { cause: e });
    }

    if (spec.netns === undefined && mappingsNeedingProxy(spec.ports).length > 0) {
      try {
        await this.#armProxy(cid, spec.ports);
      } catch (e) {
        await this.stop(spec.id).catch(() => undefined);
        throw new RuntimeError('port_unavailable', `cannot map ports of ${spec.id}: ${(e as Error).message}`, { cause: e });
      }
    }
    // a very short one-shot may already be gone: then ask containerd; else we know the answer
    if (this.#watches.get(cid)?.exited !== false) {
      const st = await this.status(spec.id);
      if (st) return st;
    }
    return { id: spec.id, state: 'RUNNING', detail: `pid ${pid}`, pid, labels: { ...spec.labels } };
  }

  async #ensureImage(ref: string, login?: RegistryLogin): Promise<ResolvedImage> {
    const c = this.#c;
    const get = async (): Promise<{ digest: string; media_type: string } | undefined> => {
      try {
        const img = (await c.call('images.Get', { name: ref })).image;
        return img ? img.target : undefined;
      } catch (e) {
        if (grpcCode(e) === NOT_FOUND) return undefined;
        throw e;
      }
    };
    let target = await get();
    let pulled = false;
    if (!target) {
      await this.#pull(ref, login);
      pulled = true;
      target = await get();
      if (!target) throw new Error(`image ${ref} missing after pull`);
    }
    const key = `${ref}@${target.digest}`;
    const cached = this.#images.get(key);
    if (cached) return cached;
    const resolved = await resolveImage(c, ref, target.digest, target.media_type);
    if (!pulled && resolved.chainId !== '') {
      // present in the image store, but is it unpacked for our snapshotter?
      try {
        await c.call('snapshots.Stat', { snapshotter: this.#snapshotter, key: resolved.chainId });
      } catch (e) {
        if (grpcCode(e) !== NOT_FOUND) throw e;
        await this.#pull(ref, login);
      }
    }
    this.#images.set(key, resolved);
    return resolved;
  }

  #pull(ref: string, login?: RegistryLogin): Promise<void> {
    // a pull with a login is not shared with one without (nor with another organisation's login)
    const key = login === undefined ? ref : `${ref}\u0000${login.username}\u0000${login.password}`;
    let p = this.#pulls.get(key);
    if (!p) {
      const plain = isPlainHttp(ref, this.#plainHttp);
      p = (login === undefined ? ctrPull(this.socket, this.namespace, ref, plain) : ctrPullWithLogin(this.socket, this.namespace, ref, plain, login)).finally(() =>
        this.#pulls.delete(key),
      );
      this.#pulls.set(key, p);
    }
    return p;
  }

  // ---------------------------------------------------------------- exits

  #watch(cid: string, id: string): void {
    if (this.#closed || this.#watches.has(cid)) return;
    const w: Watch = { cid, id, abort: new AbortController(), exited: false };
    this.#watches.set(cid, w);
    void this.#waitLoop(w);
  }

  #unwatch(cid: string): void {
    const w = this.#watches.get(cid);
    if (w) {
      w.abort.abort();
      this.#watches.delete(cid);
    }
  }

  async #waitLoop(w: Watch): Promise<void> {
    let backoff = 250;
    while (!w.abort.signal.aborted && !this.#closed) {
      try {
        const res = await this.#c.call('tasks.Wait', { container_id: w.cid }, { timeoutMs: 0, signal: w.abort.signal });
        w.exited = true;
        if (w.abort.signal.aborted || this.#stopping.has(w.cid)) return;
        await this.#onExit(w, res.exit_status);
        return;
      } catch (e) {
        if (w.abort.signal.aborted || this.#closed) return;
        if (grpcCode(e) === NOT_FOUND) {
          // the task is gone (deleted by someone): nothing more to wait for
          w.exited = true;
          return;
        }
        // containerd restarting: shims keep the tasks; wait again
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }

  async #onExit(w: Watch, exitStatus: number): Promise<void> {
    const proxy = this.#proxies.get(w.cid);
    this.#proxies.delete(w.cid);
    void proxy?.then((p) => p?.close());
    let container: Container;
    try {
      container = (await this.#c.call('containers.Get', { id: w.cid })).container;
    } catch {
      return; // removed meanwhile
    }
    if (container.labels[L.exit] !== undefined) return; // already reported (by an earlier NodeEngine)
    const verdict = await this.#verdict(w.cid, container.labels, exitStatus);
    try {
      await this.#c.call('containers.Update', {
        container: { id: w.cid, labels: { [L.exit]: JSON.stringify(verdict) } },
        update_mask: { paths: [`labels.${L.exit}`] },
      });
    } catch {
      /* reporting matters more than remembering it */
    }
    if (this.#stopping.has(w.cid)) return;
    const exit: InstanceExit = { id: w.id, exit_code: verdict.exit_code, state: verdict.state, detail: verdict.detail };
    for (const l of this.#listeners) {
      try {
        l(exit);
      } catch {
        /* a listener's problem */
      }
    }
  }

  /** the one verdict of every driver (../supervisor/verdict.ts) from the shim's exit status and the cgroup's OOM count */
  async #verdict(cid: string, labels: Record<string, string>, code: number): Promise<Verdict> {
    const cg = this.#cgroup(cid);
    let oomKills = cg ? await cg.oomKills().catch(() => 0) : 0;
    if (oomKills === 0 && code === 137 && labels[L.memory] !== undefined && (await this.#hitLimit(cid))) oomKills = 1;
    const mb = Number(labels[L.memory]);
    const v = interpretExit({ code, oomKills, memoryLimitMb: Number.isFinite(mb) && mb > 0 ? mb : undefined, oneShot: labels[L.oneShot] === '1' });
    return { exit_code: v.exit_code, state: v.state, detail: v.detail };
  }

  /** v1 fallback when oom_kill is not reported: the group's memory.failcnt grew */
  async #hitLimit(cid: string): Promise<boolean> {
    const cg = this.#cgroup(cid);
    if (!cg || cg.ref.version !== 1 || !cg.ref.dirs.memory) return false;
    try {
      return Number((await readFile(join(cg.ref.dirs.memory, 'memory.failcnt'), 'utf8')).trim()) > 0;
    } catch {
      return false;
    }
  }

  #cgroup(cid: string): Cgroup | undefined {
    const info = cgroupInfo();
    const rel = join(this.namespace, cid);
    if (info.version === 2 && info.unified) return Cgroup.open({ version: 2, dir: join(info.unified, rel) });
    if (!info.memoryController) return undefined;
    const dirs: Partial<Record<'memory' | 'cpu' | 'cpuacct' | 'pids', string>> = { memory: join(info.memoryController, rel) };
    if (info.cpuController) dirs.cpu = join(info.cpuController, rel);
    if (info.cpuacctController) dirs.cpuacct = join(info.cpuacctController, rel);
    if (info.pidsController) dirs.pids = join(info.pidsController, rel);
    return Cgroup.open({ version: 1, dirs });
  }

  onExit(listener: (exit: InstanceExit) => void): void {
    this.#listeners.push(listener);
  }

  // ---------------------------------------------------------------- ports

  #armProxy(cid: string, ports: PortMapping[]): Promise<PortProxy | undefined> {
    let p = this.#proxies.get(cid);
    if (!p) {
      p = startPortProxy(ports, this.#bind);
      this.#proxies.set(cid, p);
      p.catch(() => this.#proxies.delete(cid));
    }
    return p;
  }

  // ---------------------------------------------------------------- status, list

  async status(id: string): Promise<InstanceStatus | undefined> {
    const cid = containerIdFor(id);
    let container: Container;
    try {
      container = (await this.#c.call('containers.Get', { id: cid })).container;
    } catch (e) {
      if (grpcCode(e) === NOT_FOUND) return undefined;
      throw new RuntimeError('containerd_unavailable', `containerd: ${grpcMessage(e)}`, { cause: e });
    }
    let task: Process | undefined;
    try {
      task = (await this.#c.call('tasks.Get', { container_id: cid })).process;
    } catch (e) {
      if (grpcCode(e) !== NOT_FOUND) throw new RuntimeError('containerd_unavailable', `containerd: ${grpcMessage(e)}`, { cause: e });
    }
    return this.#toStatus(container, task);
  }

  async #toStatus(container: Container, task: Process | undefined): Promise<InstanceStatus> {
    const labels = userLabels(container.labels);
    const id = container.labels[L.id] ?? container.id;
    const recorded = parseVerdict(container.labels[L.exit]);
    if (recorded) return { id, state: recorded.state, detail: recorded.detail, exit_code: recorded.exit_code, labels };
    if (!task) return { id, state: 'CREATED', detail: 'container without a task', labels };
    switch (task.status) {
      case 'RUNNING':
      case 'PAUSED':
      case 'PAUSING':
        return { id, state: 'RUNNING', detail: task.status === 'RUNNING' ? `pid ${task.pid}` : task.status.toLowerCase(), pid: task.pid, labels };
      case 'STOPPED': {
        const v = await this.#verdict(container.id, container.labels, task.exit_status);
        return { id, state: v.state, detail: v.detail, exit_code: v.exit_code, labels };
      }
      default:
        return { id, state: 'CREATED', detail: `task ${task.status.toLowerCase()}`, pid: task.pid, labels };
    }
  }

  async list(): Promise<InstanceStatus[]> {
    const c = this.#c;
    let containers: Container[];
    let tasks: Process[];
    try {
      [containers, tasks] = await Promise.all([
        c.call('containers.List', { filters: [] }).then((r) => r.containers),
        c.call('tasks.List', { filter: '' }).then((r) => r.tasks),
      ]);
    } catch (e) {
      throw new RuntimeError('containerd_unavailable', `containerd: ${grpcMessage(e)}`, { cause: e });
    }
    const byId = new Map(tasks.map((t) => [t.id || t.container_id, t]));
    const out: InstanceStatus[] = [];
    for (const ct of containers) {
      const task = byId.get(ct.id);
      const st = await this.#toStatus(ct, task);
      out.push(st);
      if (task && ct.labels[L.exit] === undefined && !this.#stopping.has(ct.id)) {
        // re-adopt: watch the exit (reported once), re-arm port proxies
        this.#watch(ct.id, st.id);
        if (st.state === 'RUNNING' && ct.labels[L.netns] === undefined) {
          const ports = parsePorts(ct.labels[L.ports]);
          if (mappingsNeedingProxy(ports).length > 0) await this.#armProxy(ct.id, ports).catch(() => undefined);
        }
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- stop

  stop(id: string, opts: StopOptions = {}): Promise<void> {
    const cid = containerIdFor(id);
    let p = this.#stopping.get(cid);
    if (!p) {
      p = this.#stop(cid, opts.keepLog).finally(() => this.#stopping.delete(cid));
      this.#stopping.set(cid, p);
    }
    return p;
  }

  async #stop(cid: string, keepLog?: string): Promise<void> {
    const starting = this.#starting.get(cid);
    if (starting) await starting.catch(() => undefined);
    const c = this.#c;
    let task: Process | undefined;
    try {
      task = (await c.call('tasks.Get', { container_id: cid })).process;
    } catch (e) {
      if (grpcCode(e) !== NOT_FOUND) throw new RuntimeError('containerd_unavailable', `containerd: ${grpcMessage(e)}`, { cause: e });
    }
    if (task && task.status !== 'STOPPED' && task.status !== 'CREATED') {
      await this.#kill(cid, 15);
      if (!(await this.#waitExit(cid, this.#graceMs))) {
        await this.#kill(cid, 9);
        await this.#waitExit(cid, 10_000);
      }
    }
    this.#unwatch(cid);
    await this.#remove(cid, keepLog);
  }

  async #kill(cid: string, signal: number): Promise<void> {
    try {
      await this.#c.call('tasks.Kill', { container_id: cid, signal, all: true });
    } catch (e) {
      if (grpcCode(e) !== NOT_FOUND) throw e;
    }
  }

  async #waitExit(cid: string, timeoutMs: number): Promise<boolean> {
    try {
      await this.#c.call('tasks.Wait', { container_id: cid }, { timeoutMs });
      return true;
    } catch (e) {
      return grpcCode(e) === NOT_FOUND;
    }
  }

  /** deletes task, container, snapshot, proxy and log; every step tolerates "not found" */
  async #remove(cid: string, keepLog?: string): Promise<void> {
    const c = this.#c;
    const ignoreNotFound = (e: unknown): void => {
      if (grpcCode(e) !== NOT_FOUND) throw e;
    };
    let log: string | undefined;
    try {
      log = (await c.call('containers.Get', { id: cid })).container.labels[L.log];
    } catch (e) {
      ignoreNotFound(e);
    }
    await c.call('tasks.Delete', { container_id: cid }).catch(ignoreNotFound);
    await c.call('containers.Delete', { id: cid }).catch(ignoreNotFound);
    await c.call('snapshots.Remove', { snapshotter: this.#snapshotter, key: cid }).catch(ignoreNotFound);
    const proxy = this.#proxies.get(cid);
    this.#proxies.delete(cid);
    await proxy?.then((p) => p?.close()).catch(() => undefined);
    this.#cpu.delete(cid);
    const logPath = log ?? join(this.#dataDir, 'logs', `${cid}.log`);
    if (keepLog !== undefined) await keepLogFile(logPath, keepLog).catch(() => undefined);
    await rm(logPath, { force: true });
  }

  // ---------------------------------------------------------------- logs, stats

  async *logs(id: string, opts: LogOptions = {}): AsyncIterable<string> {
    const cid = containerIdFor(id);
    let container: Container;
    try {
      container = (await this.#c.call('containers.Get', { id: cid })).container;
    } catch (e) {
      if (grpcCode(e) === NOT_FOUND) throw new RuntimeError('not_found', `no container instance ${id}`);
      throw new RuntimeError('containerd_unavailable', `containerd: ${grpcMessage(e)}`, { cause: e });
    }
    const path = container.labels[L.log] ?? join(this.#dataDir, 'logs', `${cid}.log`);
    yield* readLines(path, {
      tail: opts.tail,
      follow: opts.follow,
      signal: opts.signal,
      isDone: async () => {
        const w = this.#watches.get(cid);
        if (w) return w.exited;
        try {
          const t = (await this.#c.call('tasks.Get', { container_id: cid })).process;
          return t.status === 'STOPPED';
        } catch {
          return true;
        }
      },
    });
  }

  async stats(id: string): Promise<InstanceStats | undefined> {
    const cid = containerIdFor(id);
    const cg = this.#cgroup(cid);
    if (!cg) return undefined;
    const sample = async (): Promise<{ usage_us: number; memory: number; at: number } | undefined> => {
      try {
        const [usage_us, memory] = await Promise.all([cg.cpuUsage(), cg.memoryUsage()]);
        return { usage_us, memory, at: performance.now() };
      } catch {
        return undefined;
      }
    };
    let prev = this.#cpu.get(cid);
    let now = await sample();
    if (!now) return undefined;
    if (!prev) {
      prev = { usage_us: now.usage_us, at: now.at };
      await new Promise((r) => setTimeout(r, 100));
      now = (await sample()) ?? now;
    }
    this.#cpu.set(cid, { usage_us: now.usage_us, at: now.at });
    const wallUs = (now.at - prev.at) * 1000;
    const cpu = wallUs > 0 ? Math.max(0, ((now.usage_us - prev.usage_us) / wallUs) * 100) : 0;
    return { cpu_percent: Math.round(cpu * 10) / 10, memory_mb: Math.round((now.memory / (1024 * 1024)) * 10) / 10 };
  }

  // ---------------------------------------------------------------- close

  async close(): Promise<void> {
    if (this.#closed) return;
    for (const w of this.#watches.values()) w.abort.abort();
    this.#watches.clear();
    const proxies = [...this.#proxies.values()];
    this.#proxies.clear();
    await Promise.all(proxies.map((p) => p.then((x) => x?.close()).catch(() => undefined)));
    this.#closed = true;
    this.#client?.close();
    this.#client = undefined;
  }
}

function userLabels(labels: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) if (!k.startsWith(INTERNAL_PREFIX)) out[k] = v;
  return out;
}

function parseVerdict(text: string | undefined): Verdict | undefined {
  if (!text) return undefined;
  try {
    const v = JSON.parse(text) as Verdict;
    return typeof v.exit_code === 'number' && (v.state === 'COMPLETED' || v.state === 'FAILED') ? v : undefined;
  } catch {
    return undefined;
  }
}

function parsePorts(text: string | undefined): PortMapping[] {
  if (!text) return [];
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) ? (v as PortMapping[]) : [];
  } catch {
    return [];
  }
}

function grpcMessage(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.replace(/^\d+ [A-Z_]+: /, '');
}

let bounding: string[] | undefined;
/** the capabilities this process may hand on (a container inside a VM or container has fewer) */
function boundingCaps(): string[] | undefined {
  if (bounding === undefined) {
    try {
      const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
      if (m) bounding = capsFromMask(BigInt(`0x${m[1] as string}`));
    } catch {
      /* unknown: the full list */
    }
  }
  return bounding;
}

let swapCache: boolean | undefined;
function swapAccounted(): boolean {
  if (swapCache === undefined) {
    const info = cgroupInfo();
    swapCache = info.version !== 2 && info.memoryController !== undefined && existsSync(join(info.memoryController, 'memory.memsw.limit_in_bytes'));
  }
  return swapCache;
}

async function findExecutable(name: string): Promise<string | undefined> {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin']);
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, name);
    try {
      await access(p, 1);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** the login of a spec, when it is for the registry of `ref` */
function loginFor(ref: string, auth: InstanceSpec['registryAuth']): RegistryLogin | undefined {
  if (auth === undefined || auth.host !== registryHost(ref)) return undefined;
  return { username: auth.username, password: auth.password };
}
