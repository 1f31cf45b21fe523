/**
 * End-to-end deploy latency of a 1-DOC (root + cluster link + cluster + NodeEngine in this
 * process, startOakd): from `POST /api/service/{id}/instance` until the instance is RUNNING in the
 * API (the clock stops on the RUNNING event of `GET /api/events`, then one GET confirms it), image
 * already present. Baselines in the same run: a raw `ctr run -d` of the same image with the same
 * options (containers) and a bare child_process.spawn until its spawn event (processes), rounds
 * interleaved. Also the idle CPU and RSS of the oakd program (bundle and tsx launcher) as child
 * processes, against an empty node process measured the same way over the same window.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ApplicationDoc, InstanceDoc, OakEvent, ServiceDoc } from '@oak/contracts';
import { connectBus } from '@oak/bus';
import type { Bus, BusOptions } from '@oak/bus';
import { buildBusyboxImage, freePort, sleep, startContainerd, startRegistry, stopProcess, tmpDir, waitFor } from '@oak/testkit';
import type { ContainerdInstance, RegistryInstance, TmpDir } from '@oak/testkit';
import { parseConfig } from '../../apps/oakd/src/config.ts';
import { startOakd } from '../../apps/oakd/src/oakd.ts';
import type { Oakd } from '../../apps/oakd/src/oakd.ts';
import { bridgePlan } from '@oak/net';
import { removeInstanceNetwork } from '../../apps/node-engine/src/network.ts';
import { readEvents } from './sse.ts';
import { percentile, row } from './types.ts';
import type { Bench } from './types.ts';

const ROUNDS = 15;
const WARMUP = 2;
const MEMORY_MB = 32;
const PASSWORD = 'bench-deploy-secret';
/**
 * `sleep 600` as PID 1 ignores SIGTERM, so every undeploy would sit out the 10 s stop grace; a
 * shell that exits on SIGTERM keeps rounds short. Both sides run this same command.
 */
const CONTAINER_CMD = ['sh', '-c', 'trap "exit 0" TERM; sleep 600 & wait'];
const IDLE_SETTLE_MS = 10_000;
const IDLE_WINDOW_MS = 10_000;
/** milestones of one deploy, in the order they should happen */
const MILESTONES = [
  'root REQUESTED', 'root CLUSTER_SCHEDULED', 'root NODE_SCHEDULED', 'mqtt deploy command', 'mqtt worker CREATING',
  'root CREATING', 'mqtt worker RUNNING', 'root RUNNING', 'SSE RUNNING event',
] as const;
type Milestone = (typeof MILESTONES)[number];

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

// ------------------------------------------------------------------ REST + SSE

class Api {
  token = '';
  constructor(readonly base: string) {}

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.base + path, { method, headers, body: body === undefined ? null : JSON.stringify(body) });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path} -> ${res.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }
}

/** `GET /api/events` read with fetch; remembers when each (service, instance, status) first arrived. */
class EventStream {
  readonly #abort = new AbortController();
  readonly #seen = new Map<string, number>();
  readonly #waiters = new Map<string, (status: string, at: number) => void>();
  #closed: Promise<void> = Promise.resolve();

  static key(svc: string, n: number, status: string): string {
    return `${svc}/${n}/${status}`;
  }

  async open(url: string): Promise<void> {
    this.#closed = (await readEvents(url, this.#abort.signal, (e, at) => this.#onEvent(e, at))).done;
  }

  #onEvent(e: OakEvent, at: number): void {
    if (e.type !== 'instance') return;
    const k = EventStream.key(e.microserviceID, e.instance.instance_number, e.instance.status);
    if (this.#seen.has(k)) return;
    this.#seen.set(k, at);
    this.#waiters.get(`${e.microserviceID}/${e.instance.instance_number}`)?.(e.instance.status, at);
  }

  /** forget what was seen for a service (instance numbers are reused after an undeploy) */
  reset(svc: string): void {
    for (const k of [...this.#seen.keys()]) if (k.startsWith(`${svc}/`)) this.#seen.delete(k);
  }

  /** the first of `statuses` seen for this instance, and performance.now() at which its event arrived */
  wait(svc: string, n: number, statuses: string[], timeoutMs: number): Promise<{ status: string; at: number }> {
    for (const s of statuses) {
      const at = this.#seen.get(EventStream.key(svc, n, s));
      if (at !== undefined) return Promise.resolve({ status: s, at });
    }
    const wk = `${svc}/${n}`;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.#waiters.delete(wk);
        reject(new Error(`no ${statuses.join('/')} event for ${svc} instance ${n} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.set(wk, (status, at) => {
        if (!statuses.includes(status)) return;
        clearTimeout(t);
        this.#waiters.delete(wk);
        resolve({ status, at });
      });
    });
  }

  async close(): Promise<void> {
    this.#abort.abort();
    await this.#closed;
  }
}

/**
 * A passive MQTT subscriber on the embedded broker: when the deploy command left the cluster and
 * when the worker's CREATING / RUNNING statuses went out (arrival here, performance.now()).
 */
class MqttTap {
  readonly seen = new Map<string, number>();
  #bus: Bus | undefined;

  async open(url: string, auth: Omit<BusOptions, 'clientId'> = {}): Promise<void> {
    this.#bus = await connectBus(url, { clientId: `oak-bench-tap-${process.pid}`, ...auth });
    const note = (kind: string) => (_topic: string, payload: Buffer): void => {
      const at = performance.now();
      try {
        const m = JSON.parse(payload.toString('utf8')) as { job_name?: string; instance_number?: number; status?: string };
        const k = `${m.job_name}/${m.instance_number}/${kind === 'job' ? m.status : kind}`;
        if (!this.seen.has(k)) this.seen.set(k, at);
      } catch {
        // not JSON: not ours to judge
      }
    };
    await this.#bus.subscribe('nodes/+/control/deploy', note('deploy'));
    await this.#bus.subscribe('nodes/+/job', note('job'));
  }

  reset(job: string): void {
    for (const k of [...this.seen.keys()]) if (k.startsWith(`${job}/`)) this.seen.delete(k);
  }

  at(job: string, n: number, what: string): number | undefined {
    return this.seen.get(`${job}/${n}/${what}`);
  }

  async close(): Promise<void> {
    await this.#bus?.close();
  }
}

// ------------------------------------------------------------------ helpers

interface Round {
  ms: number;
  /**
   * ms since the POST: `root X` = the instance history timestamp of status X (server clock, ms
   * resolution, against Date.now() at the POST); `mqtt ...` = arrival of that message at a passive
   * subscriber on the embedded broker.
   */
  at: Partial<Record<Milestone, number>>;
}

function readOr(path: string, fallback = ''): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** pids of `/bin/sleep 600` processes in the cgroups of this containerd namespace (what the process service runs) */
function processInstances(ns: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    if (readOr(`/proc/${d}/cmdline`) !== '/bin/sleep\u0000600\u0000') continue;
    if (readOr(`/proc/${d}/cgroup`).includes(`/${ns}/`)) out.push(Number(d));
  }
  return out;
}

interface ProcSample {
  rssKb: number;
  /** utime + stime in clock ticks */
  ticks: number;
  /** sum of se.sum_exec_runtime over the threads, ms (ns resolution) */
  execMs: number;
}

function procSample(pid: number): ProcSample {
  const rss = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // fields after "(comm)": state is field 3, utime 14, stime 15
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let execMs = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const m = /se\.sum_exec_runtime\s*:\s*([\d.]+)/.exec(readOr(`/proc/${pid}/task/${tid}/sched`));
    if (m) execMs += Number(m[1]);
  }
  return { rssKb: rss ? Number(rss[1]) : NaN, ticks: Number(rest[11]) + Number(rest[12]), execMs };
}

function clockTicks(): number {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
}

interface Child {
  name: string;
  child: ChildProcess;
  log: string;
}

function startChild(name: string, argv: string[], logDir: string, env: Record<string, string> = {}): Child {
  const log = join(logDir, `${name}.log`);
  const fd = openSync(log, 'a');
  const child = spawn(process.execPath, argv, { cwd: repoRoot, env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  return { name, child, log };
}

async function waitHealthy(url: string, timeoutMs: number): Promise<void> {
  await waitFor(async () => ((await fetch(url)).ok ? true : undefined), { timeoutMs, intervalMs: 100, message: `${url} healthy` });
}

function rmCgroups(name: string): void {
  for (const c of ['memory', 'cpu', 'cpuacct', 'pids', 'cpu,cpuacct', 'unified', '']) {
    try {
      rmdirSync(join('/sys/fs/cgroup', c, name));
    } catch {
      // not there, or not empty
    }
  }
}

function p(values: number[], q: number): number {
  return Math.round(percentile(values, q) * 10) / 10;
}

// ------------------------------------------------------------------ the bench

export const bench: Bench = async () => {
  const started = performance.now();
  let ctd: ContainerdInstance | undefined;
  let reg: RegistryInstance | undefined;
  let dir: TmpDir | undefined;
  let oakd: Oakd | undefined;
  let events: EventStream | undefined;
  let tap: MqttTap | undefined;
  let api: Api | undefined;
  const apps: string[] = [];
  const children: Child[] = [];
  const bareChildren = new Set<ChildProcess>();
  const rawIds = new Set<string>();
  const cleanupsLate: (() => unknown)[] = [];

  const ctrOurs: Round[] = [];
  const ctrRaw: number[] = [];
  /** `ctr run -d --with-ns network:<path>` into a namespace + veth made beforehand (not timed) */
  const ctrNs: number[] = [];
  /** the same, with making the namespace + veth (two `ip` runs) timed too */
  const ctrNsMade: number[] = [];
  let isolation = 'unknown';
  const procOurs: Round[] = [];
  const procBare: number[] = [];
  const undeployCtr: number[] = [];
  const undeployProc: number[] = [];
  let idle: Record<string, { rss_mb: number; cpu_pct: number; utime_stime_ticks: number; clk_tck: number }> = {};
  let pullMs = 0;

  try {
    ctd = await startContainerd();
    reg = await startRegistry();
    dir = await tmpDir('oak-bench-deploy');
    const image = await buildBusyboxImage(reg);
    const t = performance.now();
    await ctd.ctr(['images', 'pull', '--plain-http', image]);
    pullMs = performance.now() - t;
    const c = ctd;
    const d = dir;

    // ---------------------------------------------------------- idle CPU and RSS (child processes)
    const build = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: repoRoot, encoding: 'utf8' });
    const bundle = join(repoRoot, 'apps/oakd/dist/oakd.mjs');
    if (build.status !== 0 || !existsSync(bundle)) throw new Error(`node scripts/build.mjs failed: ${build.stderr}`);
    const idleFlags = async (name: string): Promise<string[]> => [
      '--host', '127.0.0.1', '--port', String(await freePort()), '--link-port', String(await freePort()),
      '--cluster-port', String(await freePort()), '--mqtt-port', String(await freePort()),
      '--data-dir', join(d.path, name), '--containerd', c.socket, '--namespace', `${c.namespace}-${name}`, '--log-level', 'warn',
      // a tunnel port of its own: two overlays on one VNI and port cannot both set up their device
      '--public-port', String(await freePort()),
    ];
    const bundleFlags = await idleFlags('idle-bundle');
    const tsxFlags = await idleFlags('idle-tsx');
    const idleEnv = { OAK_ADMIN_PASSWORD: PASSWORD };
    // started the way `make up` starts it (Makefile: OAKD_NODE_FLAGS)
    children.push(startChild('oakd-bundle', ['--max-semi-space-size=2', bundle, ...bundleFlags], dir.path, idleEnv));
    children.push(startChild('oakd-tsx', [join(repoRoot, 'apps/oakd/bin/oakd.mjs'), ...tsxFlags], dir.path, idleEnv));
    children.push(startChild('empty-node', ['-e', 'setInterval(()=>{},1000)'], dir.path));
    for (const [ch, flags] of [[children[0], bundleFlags], [children[1], tsxFlags]] as const) {
      await waitHealthy(`http://127.0.0.1:${flags[3]}/healthz`, 30_000).catch((err: unknown) => {
        throw new Error(`${ch?.name} did not come up: ${err instanceof Error ? err.message : String(err)}\n${readOr(ch?.log ?? '').slice(-2000)}`);
      });
    }
    await sleep(IDLE_SETTLE_MS);
    const before = children.map((ch) => procSample(ch.child.pid as number));
    await sleep(IDLE_WINDOW_MS);
    const after = children.map((ch) => procSample(ch.child.pid as number));
    const hz = clockTicks();
    idle = Object.fromEntries(
      children.map((ch, i) => {
        const b = before[i] as ProcSample;
        const a = after[i] as ProcSample;
        // utime+stime has a resolution of 1/CLK_TCK s (10 ms), too coarse for an empty process over
        // 10 s: the percentage comes from the scheduler's per-thread run time, the ticks are kept
        const cpu = Math.round(((a.execMs - b.execMs) / IDLE_WINDOW_MS) * 100 * 1000) / 1000;
        return [ch.name, { rss_mb: Math.round((a.rssKb / 1024) * 10) / 10, cpu_pct: cpu, utime_stime_ticks: a.ticks - b.ticks, clk_tck: hz }];
      }),
    );
    for (const ch of children.splice(0)) await stopProcess(ch.child, 10_000);
    for (const name of ['idle-bundle', 'idle-tsx']) await removeInstanceNetwork({ namespace: `${c.namespace}-${name}`, dataDir: join(d.path, name) });

    // ---------------------------------------------------------- 1-DOC in this process
    const port = await freePort();
    const cfg = parseConfig([
      '--host', '127.0.0.1', '--port', String(port), '--link-port', String(await freePort()),
      '--cluster-port', String(await freePort()), '--mqtt-port', String(await freePort()),
      '--data-dir', join(dir.path, 'oakd'), '--containerd', c.socket, '--namespace', c.namespace,
      '--report-interval', '500', '--log-level', 'warn', '--public-port', String(await freePort()),
    ], {});
    if (cfg === 'help') throw new Error('parseConfig answered help');
    cfg.adminPassword = PASSWORD;
    oakd = await startOakd(cfg, () => undefined);
    const planned = bridgePlan(c.namespace);
    isolation = spawnSync('ip', ['link', 'show', 'dev', planned.bridge]).status === 0
      ? `on: each instance in its own network namespace on ${planned.bridge} (${planned.cidr}), nftables table ip ${planned.table}`
      : 'off';
    cleanupsLate.push(() => removeInstanceNetwork({ namespace: c.namespace, dataDir: join(d.path, 'oakd') }));
    const base = `http://127.0.0.1:${port}`;
    const a = new Api(base);
    api = a;
    const login = await a.call<{ token: string }>('POST', '/api/auth/login', { username: 'Admin', password: PASSWORD });
    a.token = login.token;
    await waitFor(async () => {
      const cs = await a.call<{ resources: { workers: number } | null }[]>('GET', '/api/clusters/active');
      return cs.length === 1 && cs[0]?.resources?.workers === 1 ? true : undefined;
    }, { timeoutMs: 20_000, message: 'one active cluster with one worker' });
    const ev = new EventStream();
    events = ev;
    await ev.open(`${base}/api/events?types=instance&token=${encodeURIComponent(a.token)}`);
    const tp = new MqttTap();
    tap = tp;
    // the broker admits no anonymous client: the tap uses the cluster's own credentials (same process)
    await tp.open(oakd.cluster.mqttUrl, oakd.cluster.ownClientOptions());

    const makeService = async (name: string, virtualization: string, code: string, cmd: string[]): Promise<ServiceDoc> => {
      const created = await a.call<ApplicationDoc[] | ApplicationDoc>('POST', '/api/application/', {
        sla_version: 'v2.0',
        customerID: 'Admin',
        applications: [{
          application_name: name, application_namespace: 'bench', application_desc: 'deploy benchmark',
          microservices: [{ microservice_name: 'svc', microservice_namespace: 'bench', virtualization, code, cmd, memory: MEMORY_MB, vcpus: 0.1 }],
        }],
      });
      const app = (Array.isArray(created) ? created : [created])[0];
      if (!app) throw new Error('no application created');
      apps.push(app.applicationID);
      const [svc] = await a.call<ServiceDoc[]>('GET', `/api/services/${app.applicationID}`);
      if (!svc) throw new Error('no service created');
      return svc;
    };
    const ctrSvc = await makeService('benchctr', 'container', image, CONTAINER_CMD);
    const procSvc = await makeService('benchproc', 'process', '/bin/sleep', ['600']);

    const containerIds = async (): Promise<string[]> => (await c.ctr(['containers', 'ls', '-q'])).stdout.split('\n').filter((l) => l.trim() !== '');

    /** POST -> RUNNING event; GET confirms and gives the history; then DELETE and wait until gone */
    const deployRound = async (svc: ServiceDoc, gone: (n: number) => Promise<boolean>, undeploys: number[]): Promise<Round> => {
      ev.reset(svc.microserviceID);
      tp.reset(svc.job_name);
      const wall0 = Date.now();
      const t0 = performance.now();
      const inst = await a.call<InstanceDoc>('POST', `/api/service/${svc.microserviceID}/instance`);
      const n = inst.instance_number;
      const got = await ev.wait(svc.microserviceID, n, ['RUNNING', 'FAILED'], 30_000);
      if (got.status !== 'RUNNING') throw new Error(`${svc.job_name} instance ${n} is ${got.status}`);
      const ms = got.at - t0;
      const doc = await a.call<ServiceDoc>('GET', `/api/service/${svc.microserviceID}`);
      const mine = doc.instance_list.find((i) => i.instance_number === n);
      if (mine?.status !== 'RUNNING') throw new Error(`GET shows instance ${n} as ${mine?.status ?? 'missing'} after its RUNNING event`);
      const at: Partial<Record<Milestone, number>> = { 'SSE RUNNING event': ms };
      for (const h of mine.history ?? []) {
        const k = `root ${h.status}`;
        if ((MILESTONES as readonly string[]).includes(k) && at[k as Milestone] === undefined) at[k as Milestone] = Date.parse(h.at) - wall0;
      }
      const mq = (what: string): number | undefined => {
        const v = tp.at(svc.job_name, n, what);
        return v === undefined ? undefined : v - t0;
      };
      at['mqtt deploy command'] = mq('deploy');
      at['mqtt worker CREATING'] = mq('CREATING');
      at['mqtt worker RUNNING'] = mq('RUNNING');
      const round: Round = { ms, at };
      const t1 = performance.now();
      await a.call('DELETE', `/api/service/${svc.microserviceID}/instance/${n}`);
      await waitFor(async () => {
        const d = await a.call<ServiceDoc>('GET', `/api/service/${svc.microserviceID}`);
        return !d.instance_list.some((i) => i.instance_number === n) && (await gone(n)) ? true : undefined;
      }, { timeoutMs: 20_000, intervalMs: 25, message: `${svc.job_name} instance ${n} gone` });
      undeploys.push(performance.now() - t1);
      return round;
    };
    const ctrGone = async (n: number): Promise<boolean> => !(await containerIds()).includes(`${ctrSvc.job_name}.instance.${n}`);
    const procGone = async (): Promise<boolean> => processInstances(c.namespace).length === 0;

    let rawN = 0;
    const rawRun = async (): Promise<number> => {
      const id = `raw-${rawN++}`;
      rawIds.add(id);
      const t0 = performance.now();
      await c.ctr(['run', '-d', '--net-host', '--memory-limit', String(MEMORY_MB * 1024 * 1024),
        '--log-uri', `file://${d.path}/${id}.log`, image, id, ...CONTAINER_CMD]);
      const ms = performance.now() - t0;
      await removeRaw(c, id);
      rawIds.delete(id);
      return ms;
    };
    // a namespace with a veth on a bridge of its own, as the NodeEngine makes them
    const baseBridge = `oakbb${process.pid % 100000}`;
    const nsCmds = (name: string, k: number): [string, string] => [
      `netns add ${name}\nlink add ${name}h type veth peer name eth0 netns ${name}\nlink set ${name}h master ${baseBridge} up\n`,
      `link set lo up\naddr add 172.29.0.${2 + (k % 200)}/24 dev eth0\nlink set eth0 up\nroute add default via 172.29.0.1\n`,
    ];
    const ipBatch = (args: string[], input: string): void => {
      const r = spawnSync('ip', [...args, '-batch', '-'], { input, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`ip ${args.join(' ')} -batch: ${r.stderr}`);
    };
    const ipBatchAsync = (args: string[], input: string): Promise<void> => new Promise((resolve, reject) => {
      const ch = spawn('ip', [...args, '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      ch.stderr.on('data', (b: Buffer) => { err += b.toString(); });
      ch.once('error', reject);
      ch.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`ip -batch: ${err}`))));
      ch.stdin.end(input);
    });
    spawnSync('ip', ['link', 'del', baseBridge]);
    ipBatch([], `link add ${baseBridge} type bridge\naddr add 172.29.0.1/24 dev ${baseBridge}\nlink set ${baseBridge} up\n`);
    cleanupsLate.push(() => { spawnSync('ip', ['link', 'del', baseBridge]); });
    let nsN = 0;
    const rawNs = async (makeTimed: boolean): Promise<number> => {
      const k = nsN++;
      const id = `rawns-${k}`;
      const name = `oakbn${process.pid % 100000}-${k}`;
      cleanupsLate.push(() => { spawnSync('ip', ['netns', 'del', name]); });
      const [host, inside] = nsCmds(name, k);
      const t0 = performance.now();
      if (!makeTimed) {
        ipBatch([], host);
        ipBatch(['-n', name], inside);
      }
      const t1 = performance.now();
      if (makeTimed) {
        await ipBatchAsync([], host);
        await ipBatchAsync(['-n', name], inside);
      }
      rawIds.add(id);
      await c.ctr(['run', '-d', '--with-ns', `network:/run/netns/${name}`, '--memory-limit', String(MEMORY_MB * 1024 * 1024),
        '--log-uri', `file://${d.path}/${id}.log`, image, id, ...CONTAINER_CMD]);
      const ms = performance.now() - (makeTimed ? t0 : t1);
      await removeRaw(c, id);
      rawIds.delete(id);
      spawnSync('ip', ['netns', 'del', name]);
      return ms;
    };
    const bareSpawn = async (): Promise<number> => {
      const t0 = performance.now();
      const child = spawn('/bin/sleep', ['600'], { stdio: 'ignore' });
      bareChildren.add(child);
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
      const ms = performance.now() - t0;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
      bareChildren.delete(child);
      return ms;
    };

    for (let i = 0; i < WARMUP + ROUNDS; i++) {
      const warm = i < WARMUP;
      const r1 = await rawRun();
      const o1 = await deployRound(ctrSvc, ctrGone, warm ? [] : undeployCtr);
      const n1 = await rawNs(false);
      const n2 = await rawNs(true);
      const r2 = await bareSpawn();
      const o2 = await deployRound(procSvc, procGone, warm ? [] : undeployProc);
      if (warm) continue;
      ctrRaw.push(r1);
      ctrOurs.push(o1);
      ctrNs.push(n1);
      ctrNsMade.push(n2);
      procBare.push(r2);
      procOurs.push(o2);
    }
  } finally {
    await events?.close().catch(() => undefined);
    await tap?.close().catch(() => undefined);
    if (api && oakd) {
      const a = api;
      for (const id of apps) await a.call('DELETE', `/api/application/${id}`).catch(() => undefined);
      const c = ctd;
      if (c) {
        await waitFor(async () => ((await c.ctr(['containers', 'ls', '-q'])).stdout.trim() === '' ? true : undefined), { timeoutMs: 20_000, message: 'containers removed' }).catch(() => undefined);
      }
      const ns = ctd?.namespace ?? '';
      await waitFor(() => (processInstances(ns).length === 0 ? true : undefined), { timeoutMs: 10_000, message: 'processes stopped' }).catch(() => undefined);
    }
    await oakd?.close().catch(() => undefined);
    // a NetManager's close() keeps its tunnel device and nftables table (flows survive a restart);
    // the bench's NetManager is gone for good: remove them (issue 8 review: oakx<tag>/oakn_<tag> were left)
    await oakd?.netmanager?.clean().catch(() => undefined);
    for (const ch of children) await stopProcess(ch.child, 5000).catch(() => undefined);
    for (const ch of bareChildren) ch.kill('SIGKILL');
    if (ctd) for (const id of rawIds) await removeRaw(ctd, id).catch(() => undefined);
    for (const f of cleanupsLate.reverse()) {
      try {
        await f();
      } catch {
        // best effort
      }
    }
    const ns = ctd?.namespace;
    await ctd?.stop();
    if (ns) for (const suffix of ['', '-idle-bundle', '-idle-tsx']) rmCgroups(`${ns}${suffix}`);
    await reg?.stop();
    await dir?.remove();
  }

  /** p50 of each milestone (ms since the POST) */
  const milestones = (rounds: Round[]): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const m of MILESTONES) {
      const vals = rounds.map((r) => r.at[m]).filter((v): v is number => v !== undefined && Number.isFinite(v));
      if (vals.length > 0) out[m] = p(vals, 50);
    }
    return out;
  };
  const ms = (rs: Round[]): number[] => rs.map((r) => r.ms);
  const bundleIdle = idle['oakd-bundle'] ?? { rss_mb: NaN, cpu_pct: NaN };
  const emptyIdle = idle['empty-node'] ?? { rss_mb: NaN, cpu_pct: NaN };
  return {
    name: 'deploy',
    description:
      `1-DOC (startOakd in the bench process, report interval 500 ms): POST /api/service/{id}/instance until the RUNNING event on /api/events (then confirmed by one GET), image already pulled; ` +
      `container (busybox \`${CONTAINER_CMD.join(' ')}\`, ${MEMORY_MB} MB) vs raw \`ctr run -d --net-host --memory-limit --log-uri\` of the same image and command; ` +
      `process (/bin/sleep 600) vs bare child_process.spawn until its spawn event; ${ROUNDS} interleaved rounds after ${WARMUP} warm-up rounds, each instance undeployed and gone before the next. ` +
      `Idle: the bundled oakd (apps/oakd/dist/oakd.mjs, default report interval, private containerd) as a child process, VmRSS, and CPU over a ${IDLE_WINDOW_MS / 1000} s window after ${IDLE_SETTLE_MS / 1000} s (threads' scheduler run time; utime+stime ticks in extra), vs an empty node process measured alongside`,
    rows: [
      row('container deploy p50 (ms)', p(ms(ctrOurs), 50), p(ctrRaw, 50), 'ctr run -d', 'ms'),
      row('container deploy p90 (ms)', p(ms(ctrOurs), 90), p(ctrRaw, 90), 'ctr run -d', 'ms'),
      row('container deploy p50 (ms), vs own netns', p(ms(ctrOurs), 50), p(ctrNs, 50), 'ctr run -d --with-ns (netns + veth made beforehand)', 'ms'),
      row('container deploy p50 (ms), vs netns made', p(ms(ctrOurs), 50), p(ctrNsMade, 50), 'ip netns add + veth + ctr run -d --with-ns', 'ms'),
      row('process deploy p50 (ms)', p(ms(procOurs), 50), p(procBare, 50), 'bare child_process.spawn', 'ms'),
      row('process deploy p90 (ms)', p(ms(procOurs), 90), p(procBare, 90), 'bare child_process.spawn', 'ms'),
      row('oakd idle RSS (MB)', bundleIdle.rss_mb, emptyIdle.rss_mb, 'empty node process', 'MB'),
      row('oakd idle CPU (% of one core)', bundleIdle.cpu_pct, emptyIdle.cpu_pct, 'empty node process', '%'),
    ],
    extra: {
      rounds: ROUNDS,
      warmup_rounds: WARMUP,
      container_ms: ms(ctrOurs).map(Math.round),
      ctr_run_ms: ctrRaw.map(Math.round),
      ctr_run_with_ns_ms: ctrNs.map(Math.round),
      ip_netns_plus_ctr_run_with_ns_ms: ctrNsMade.map(Math.round),
      isolation,
      process_ms: ms(procOurs).map((v) => Math.round(v * 10) / 10),
      bare_spawn_ms: procBare.map((v) => Math.round(v * 10) / 10),
      container_milestones_p50_ms: milestones(ctrOurs),
      process_milestones_p50_ms: milestones(procOurs),
      milestones_note: 'ms since the POST, p50 per milestone: root X = instance history timestamp of status X (server clock, ms resolution); mqtt ... = arrival at a passive subscriber on the embedded broker (deploy command cluster->worker, worker status worker->cluster)',
      undeploy_until_gone_p50_ms: { container: p(undeployCtr, 50), process: p(undeployProc, 50) },
      ctr_images_pull_ms: Math.round(pullMs),
      idle,
      idle_note: 'oakd-bundle = node --max-semi-space-size=2 apps/oakd/dist/oakd.mjs (node scripts/build.mjs; as make up runs it), oakd-tsx = node apps/oakd/bin/oakd.mjs (tsx loader); both root + cluster + worker with embedded broker and SQLite, nothing deployed',
      total_s: Math.round((performance.now() - started) / 100) / 10,
    },
  };
};

async function removeRaw(ctd: ContainerdInstance, id: string): Promise<void> {
  await ctd.ctr(['tasks', 'kill', '-s', 'SIGKILL', id], { check: false });
  await ctd.ctr(['tasks', 'delete', '-f', id], { check: false });
  await ctd.ctr(['containers', 'rm', id], { check: false });
}
