/**
 * Fault injection for end-to-end tests (issue 9 point 6): a light topology of real processes in
 * network namespaces made for process workloads (no registry, no containerd), and the faults:
 * kill -9 and restart on the same data, packet loss (and delay where the kernel has sch_netem)
 * between two hosts, a partition of two hosts, an external Mosquitto that can be killed and
 * restarted on its port. `converge()` polls the API and the machine's process table until exactly
 * the desired instances run, once each, and says how long that took and what surplus it saw.
 *
 * Everything started here is undone by `FaultLab.close()` (processes, marked workloads, cgroups,
 * nft tables, qdiscs, brokers, namespaces), which a test calls from `t.after`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { copyFileSync, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { canConnectTcp, createNetwork, onProcessExit, run, shortId, tmpDir, waitFor, type NetHost, type TestNetwork } from '@oak/testkit';
import type { InstanceDoc, ServiceDoc } from '@oak/contracts';
import { Api, waitHealthy } from './api.ts';
import { Procs, bins, type Proc } from './procs.ts';

export const FAULT_PASSWORD = 'e2e-fault-password';

// ------------------------------------------------------------------------------ processes

/** kill -9 and wait until the process is gone */
export async function kill9(p: Proc | ChildProcess): Promise<void> {
  const child = 'child' in p ? p.child : p;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGKILL');
  await gone;
}

/** A process of the lab that can be killed and started again with the same arguments and data. */
export interface Restartable {
  name: string;
  proc: Proc;
  kill9(): Promise<void>;
  /** starts it again (same flags, same data dir) and waits until it is ready */
  restart(): Promise<void>;
}

export interface RootHandle extends Restartable {
  host: NetHost;
  api: Api;
  dataDir: string;
}

export interface WorkerHandle extends Restartable {
  host: NetHost;
  dataDir: string;
  /** --namespace of its NodeEngine: the cgroup parent of its process instances */
  namespace: string;
}

export interface Broker {
  host: NetHost;
  port: number;
  /** the URL the cluster uses (inside its namespace) */
  url: string;
  /** the URL handed to workers */
  publicUrl: string;
  kill9(): Promise<void>;
  restart(): Promise<void>;
}

export interface ClusterOptions {
  /** an external broker instead of the embedded one */
  broker?: Broker;
  location?: string;
  /** more environment of the cluster process (e.g. the NATS users file settings) */
  env?: Record<string, string>;
}

/**
 * Root, clusters and NodeEngines as real processes, each host a network namespace, the test
 * talking to the root through the network's gateway. Workers offer only the `process`
 * virtualization (their containerd socket does not exist) with --isolation off.
 */
export class FaultLab {
  readonly procs = new Procs();
  net!: TestNetwork;
  dir!: { path: string; remove(): Promise<void> };
  /** markers of the workloads of this lab: every process carrying one is killed by close() */
  readonly markers = new Set<string>();
  private readonly cleanups: (() => Promise<void>)[] = [];
  private readonly faults = new Set<Fault>();
  private rootApi: Api | undefined;
  private readonly clusterAt = new Map<string, string>();
  private readonly id = shortId(3);

  async init(name: string): Promise<void> {
    // workloads are detached from their NodeEngine: if the test process dies, take them along
    const unregister = onProcessExit(() => {
      for (const m of this.markers) killMarkedSync(m);
    });
    this.cleanups.push(async () => unregister());
    this.dir = await tmpDir(`oak-fault-${name}`);
    this.cleanups.push(() => this.dir.remove());
    this.net = await createNetwork(name, { gateway: true });
    this.cleanups.push(() => this.net.destroy());
  }

  /** a unique marker for the cmd of a workload (its processes are found and cleaned up by it) */
  marker(what: string): string {
    const m = `oakfault-${this.id}-${what}-${shortId(2)}`;
    this.markers.add(m);
    return m;
  }

  /**
   * A root on `host` (SQLite in its data dir, or `databaseUrl`), its API on :10000 and its link on
   * :50052 of the host, which it advertises (OAK_ADVERTISE_LINK) to roots sharing the database.
   */
  async root(host: NetHost, opts: { databaseUrl?: string } = {}): Promise<RootHandle> {
    const dataDir = `${this.dir.path}/root-${host.name}`;
    const base = `http://${host.ip}:10000`;
    const api = new Api(base);
    const env: Record<string, string> = {
      OAK_ADMIN_PASSWORD: FAULT_PASSWORD,
      OAK_ADVERTISE_LINK: `${host.ip}:50052`,
      ...(opts.databaseUrl ? { DATABASE_URL: opts.databaseUrl } : {}),
    };
    const start = (): Proc =>
      this.procs.spawn(`root-${host.name}`, bins.root, ['--data-dir', dataDir, '--log-level', 'warn'], {
        dir: this.dir.path,
        netns: host.ns,
        env,
      });
    const ready = async (): Promise<void> => {
      await waitHealthy(`${base}/healthz`, 60_000);
      await api.login('Admin', FAULT_PASSWORD);
    };
    const h: RootHandle = {
      name: `root-${host.name}`,
      host,
      api,
      dataDir,
      proc: start(),
      kill9: () => kill9(h.proc),
      restart: async () => {
        await kill9(h.proc);
        h.proc = start();
        await ready();
      },
    };
    await ready();
    this.rootApi = api;
    return h;
  }

  async joinToken(body: { kind: 'cluster'; name: string } | { kind: 'worker'; cluster: string }): Promise<string> {
    if (!this.rootApi) throw new Error('start the root first');
    return (await this.rootApi.call<{ token: string }>('POST', '/api/tokens', body)).token;
  }

  /** A cluster orchestrator on `host` dialing the root at `rootAddr` (host or host:port of its link). */
  async cluster(host: NetHost, rootAddr: string, name: string, opts: ClusterOptions = {}): Promise<Restartable> {
    const token = await this.joinToken({ kind: 'cluster', name });
    this.clusterAt.set(host.ip, name);
    const env: Record<string, string> = {
      SYSTEM_MANAGER_URL: rootAddr,
      CLUSTER_NAME: name,
      OAK_JOIN_TOKEN: token,
      OAK_REPORT_INTERVAL_MS: '500',
      OAK_DEAD_AFTER_INTERVALS: '8',
      ...(opts.location ? { CLUSTER_LOCATION: opts.location } : {}),
      ...(opts.broker ? { MQTT_URL: opts.broker.url, OAK_MQTT_PUBLIC_URL: opts.broker.publicUrl } : {}),
      ...opts.env,
    };
    const start = (): Proc => this.procs.spawn(`cluster-${name}`, bins.cluster, [], { dir: this.dir.path, netns: host.ns, env });
    // ready: its worker registration port answers inside its namespace
    const ready = (): Promise<unknown> =>
      waitFor(() => canConnectTcp(host.ip, 10100, 500), {
        timeoutMs: 30_000,
        intervalMs: 100,
        message: `cluster ${name} listening`,
      });
    const h: Restartable = {
      name: `cluster-${name}`,
      proc: start(),
      kill9: () => kill9(h.proc),
      restart: async () => {
        await kill9(h.proc);
        h.proc = start();
        await ready();
      },
    };
    return h;
  }

  /** A NodeEngine (process workloads only) on `host` joining the cluster at `clusterIp`. */
  async worker(host: NetHost, clusterIp: string, cluster = this.clusterAt.get(clusterIp)): Promise<WorkerHandle> {
    if (cluster === undefined) throw new Error(`no cluster started at ${clusterIp}`);
    const token = await this.joinToken({ kind: 'worker', cluster });
    const dataDir = `${this.dir.path}/worker-${host.name}`;
    const namespace = `oakf${this.id}${host.name}`;
    this.cleanups.push(async () => removeCgroupParent(namespace));
    const args = [
      '-a', clusterIp, '-p', '10100', '-n', '0', '--name', host.name, '--data-dir', dataDir,
      '--containerd', `${this.dir.path}/no-containerd.sock`, '--namespace', namespace, '--report-interval', '500', '--isolation', 'off',
    ];
    const start = (): Proc => this.procs.spawn(`worker-${host.name}`, bins.nodeEngine, args, { dir: this.dir.path, netns: host.ns, env: { OAK_JOIN_TOKEN: token } });
    const h: WorkerHandle = {
      name: `worker-${host.name}`,
      host,
      dataDir,
      namespace,
      proc: start(),
      kill9: () => kill9(h.proc),
      restart: async () => {
        await kill9(h.proc);
        h.proc = start();
      },
    };
    return h;
  }

  /**
   * A Mosquitto of its own inside `host`'s namespace on `port` (anonymous, no persistence), for a
   * cluster started with `{ broker }`. kill9() and restart() keep the port.
   */
  async broker(host: NetHost, port = 18830): Promise<Broker> {
    const conf = `${this.dir.path}/mosquitto-${host.name}.conf`;
    writeFileSync(conf, [`listener ${port} 0.0.0.0`, 'allow_anonymous true', 'persistence false', 'log_dest stderr', 'log_type error', 'log_type warning', 'user root', ''].join('\n'));
    const logFile = join(this.dir.path, `mosquitto-${host.name}.log`);
    let child: ChildProcess | undefined;
    const start = async (): Promise<void> => {
      const out = createWriteStream(logFile, { flags: 'a' });
      const c = spawn('nsenter', [`--net=/run/netns/${host.ns}`, '--', 'mosquitto', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
      c.stdout?.pipe(out);
      c.stderr?.pipe(out);
      child = c;
      await waitFor(async () => {
        if (c.exitCode !== null) throw new Error(`mosquitto exited: ${readFileSync(logFile, 'utf8').slice(-500)}`);
        return canConnectTcp(host.ip, port, 500);
      }, { timeoutMs: 10_000, intervalMs: 50, message: `mosquitto on ${host.name}:${port}` });
    };
    const stop = async (): Promise<void> => {
      if (child) await kill9(child);
    };
    this.cleanups.push(stop);
    await start();
    return {
      host,
      port,
      url: `mqtt://127.0.0.1:${port}`,
      publicUrl: `mqtt://${host.ip}:${port}`,
      kill9: stop,
      restart: async () => {
        await stop();
        await start();
      },
    };
  }

  /**
   * A PostgreSQL schema of its own on the machine's server (127.0.0.1:5432, database `test`) and a
   * DATABASE_URL for roots inside the namespaces: they reach it through a relay on the gateway,
   * the schema set as search_path. Both go with close().
   */
  async postgres(base = process.env.OAK_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'): Promise<string> {
    const schema = `oakfault_${this.id}_${shortId(2)}`;
    const psql = (sql: string): Promise<{ code: number; stdout: string; stderr: string }> => run('psql', [base, '-v', 'ON_ERROR_STOP=1', '-qtAc', sql], { check: false, timeoutMs: 20_000 });
    this.pg = async (sql) => {
      const r = await psql(`set search_path to ${schema}; ${sql}`);
      return r.code === 0 ? r.stdout.trim() : undefined;
    };
    const made = await psql(`create schema ${schema}`);
    if (made.code !== 0) throw new Error(`PostgreSQL at ${base}: ${made.stderr}`);
    this.cleanups.push(async () => void (await psql(`drop schema if exists ${schema} cascade`)));
    const u = new URL(base);
    const relay = await relayServer(u.hostname, Number(u.port || 5432), 0, this.net.gatewayIp as string);
    this.cleanups.push(() => relay.close());
    u.hostname = this.net.gatewayIp as string;
    u.port = String(relay.port);
    u.search = `?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
    return u.toString();
  }

  /** after postgres(): runs a query in the lab's schema (psql -tA); undefined when it fails */
  pg: (sql: string) => Promise<string | undefined> = () => Promise.resolve(undefined);

  /** runs `fn` at close() (before the namespaces go) */
  onClose(fn: () => Promise<void>): void {
    this.cleanups.push(fn);
  }

  /** registers a fault so that close() heals it when the test did not */
  track<F extends Fault>(f: F): F {
    this.faults.add(f);
    const heal = f.heal.bind(f);
    f.heal = async () => {
      this.faults.delete(f);
      await heal();
    };
    return f;
  }

  logs(): string {
    return this.procs.logs();
  }

  /**
   * Copies every log of the lab (processes, brokers) to a directory that outlives it
   * ($OAK_FAULT_LOG_DIR or <tmp>/oak-fault-logs/<name>) and returns its path; for a fault that
   * did not converge.
   */
  saveLogs(name: string): string {
    const dest = join(process.env.OAK_FAULT_LOG_DIR ?? join(tmpdir(), 'oak-fault-logs'), `${name}-${this.id}`);
    mkdirSync(dest, { recursive: true });
    for (const f of readdirSync(this.dir.path)) if (f.endsWith('.log')) copyFileSync(join(this.dir.path, f), join(dest, f));
    return dest;
  }

  async close(): Promise<void> {
    for (const f of [...this.faults]) await f.heal().catch(() => undefined);
    await this.procs.stopAll();
    for (const m of this.markers) await killMarked(m);
    for (const c of this.cleanups.splice(0).reverse()) await c().catch(() => undefined);
  }
}

/** removes the cgroups a process runtime made under `parent` in every hierarchy (v1 and v2) */
export function removeCgroupParent(parent: string): void {
  const roots = existsSync('/sys/fs/cgroup/cgroup.controllers') ? ['/sys/fs/cgroup'] : readdirSync('/sys/fs/cgroup').map((d) => join('/sys/fs/cgroup', d));
  const rmTree = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmTree(join(dir, e.name));
    try {
      rmdirSync(dir);
    } catch {
      // busy (a process still inside) or gone
    }
  };
  for (const r of roots) rmTree(join(r, parent));
}

// ------------------------------------------------------------------------------ workloads on the machine

export interface WorkloadProc {
  pid: number;
  /** the instance it belongs to: the wrapper's instance directory name, `<job>.instance.<n>` */
  instance: string;
  argv: string[];
}

function cmdline(pid: string): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`);
    if (raw.length === 0) return undefined;
    return raw.toString('utf8').replace(/\0$/, '').split('\0');
  } catch {
    return undefined;
  }
}

function sessionLeader(pid: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // pid (comm) state ppid pgrp session ...: comm may hold spaces, so split after the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[3] === pid;
  } catch {
    return false;
  }
}

/**
 * The supervised process instances carrying `marker` on this machine (every namespace shares the
 * pid namespace): one per process wrapper (`/bin/sh -c <script> oak-wrap <dir>/exit <cmd...>`),
 * so a copy of an instance running twice (two workers, or a stale copy) counts twice.
 */
export function workloads(marker: string): WorkloadProc[] {
  const out: WorkloadProc[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const argv = cmdline(pid);
    if (!argv) continue;
    const at = argv.indexOf('oak-wrap');
    if (at < 0 || argv[0] !== '/bin/sh' || !argv.slice(at + 2).some((a) => a.includes(marker))) continue;
    // the wrapper leads its session (spawned detached); its subshell, between fork and exec, has
    // the same command line and is not counted
    if (!sessionLeader(pid)) continue;
    const exitFile = argv[at + 1] ?? '';
    out.push({ pid: Number(pid), instance: basename(dirname(exitFile)), argv: argv.slice(at + 2) });
  }
  return out;
}

/** one pass: SIGKILLs every process whose command line carries `marker`; how many were found */
function killMarkedSync(marker: string): number {
  let found = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const argv = cmdline(pid);
    if (!argv?.some((a) => a.includes(marker))) continue;
    found++;
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone
    }
  }
  return found;
}

/** SIGKILLs every process whose command line carries `marker` (wrappers, workloads), until none is left */
export async function killMarked(marker: string): Promise<void> {
  for (let round = 0; round < 5; round++) {
    if (killMarkedSync(marker) === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A process workload: `/bin/sh -c 'while :; do sleep 1; done' <marker> [tag]`. The marker (and the
 * optional tag, e.g. a version) are arguments of the shell, so they are in its command line.
 */
export function processWorkload(marker: string, tag?: string): { virtualization: 'process'; code: string; cmd: string[]; memory: number; vcpus: number } {
  return { virtualization: 'process', code: '/bin/sh', cmd: ['-c', 'while :; do sleep 1; done', marker, ...(tag ? [tag] : [])], memory: 0, vcpus: 0 };
}

// ------------------------------------------------------------------------------ network faults

export interface Fault {
  what: string;
  heal(): Promise<void>;
}

async function nft(host: NetHost, script: string): Promise<void> {
  const r = await run('ip', ['netns', 'exec', host.ns, 'nft', '-f', '-'], { input: script, check: false });
  if (r.code !== 0) throw new Error(`nft in ${host.name} failed: ${r.stderr}\n${script}`);
}

async function dropTable(host: NetHost, table: string): Promise<void> {
  await run('ip', ['netns', 'exec', host.ns, 'nft', 'delete', 'table', 'inet', table], { check: false });
}

let netemProbe: Promise<boolean> | undefined;

/** whether `tc qdisc ... netem` works on this kernel (tried once, in a scratch namespace) */
export function netemAvailable(): Promise<boolean> {
  netemProbe ??= (async () => {
    const ns = `oakfprobe${shortId(3)}`;
    try {
      await run('ip', ['netns', 'add', ns]);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      return (await run('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'], { check: false })).code === 0;
    } finally {
      await run('ip', ['netns', 'del', ns], { check: false });
    }
  })();
  return netemProbe;
}

export interface NetemOptions {
  lossPct: number;
  delayMs: number;
  /** only traffic with this peer (default: everything on the host's eth0) */
  peer?: NetHost;
  /**
   * without sch_netem: TCP ports of `peer` that `host` dials whose streams get the delay through
   * a relay (e.g. the root's link port 50052, a cluster's MQTT port 10003); others get loss only
   */
  ports?: number[];
}

export interface NetemFault extends Fault {
  /** how it was done: 'netem'; 'nft' (loss only: this kernel has no sch_netem); 'nft+proxy' (loss by nft, delay by a relay) */
  mode: 'netem' | 'nft' | 'nft+proxy';
  /** packets dropped so far (nft mode; undefined with netem) */
  dropped(): Promise<number | undefined>;
  /** connections that went through the delay relay (nft+proxy mode; else 0) */
  relayed(): number;
}

/**
 * Loss and delay on `host`'s link (eth0), both directions: with sch_netem, a netem qdisc on the
 * host's eth0 (egress) and on its switch port (the host's ingress); without it, an nft table in
 * the host's namespace dropping lossPct % of the packets each way (`numgen random`); delay is then
 * not emulated (said by `mode: 'nft'`). With `peer`, only traffic with that host is affected.
 */
export async function netem(host: NetHost, o: NetemOptions): Promise<NetemFault> {
  const table = `oakfault_loss_${shortId(2)}`;
  if (await netemAvailable()) {
    const args = ['delay', `${o.delayMs}ms`, 'loss', `${o.lossPct}%`];
    if (o.peer) {
      // a prio qdisc whose band 3 carries netem, selected by a u32 filter on the peer's address
      await run('ip', ['netns', 'exec', host.ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'handle', '1:', 'prio']);
      await run('ip', ['netns', 'exec', host.ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'parent', '1:3', 'handle', '30:', 'netem', ...args]);
      await run('ip', ['netns', 'exec', host.ns, 'tc', 'filter', 'add', 'dev', 'eth0', 'protocol', 'ip', 'parent', '1:0', 'prio', '3', 'u32', 'match', 'ip', 'dst', `${o.peer.ip}/32`, 'flowid', '1:3']);
      await run('ip', ['netns', 'exec', o.peer.ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'handle', '1:', 'prio']);
      await run('ip', ['netns', 'exec', o.peer.ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'parent', '1:3', 'handle', '30:', 'netem', ...args]);
      await run('ip', ['netns', 'exec', o.peer.ns, 'tc', 'filter', 'add', 'dev', 'eth0', 'protocol', 'ip', 'parent', '1:0', 'prio', '3', 'u32', 'match', 'ip', 'dst', `${host.ip}/32`, 'flowid', '1:3']);
    } else {
      await run('ip', ['netns', 'exec', host.ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'netem', ...args]);
    }
    return {
      what: `netem ${o.lossPct}% ${o.delayMs}ms on ${host.name}${o.peer ? `<->${o.peer.name}` : ''}`,
      mode: 'netem',
      dropped: () => Promise.resolve(undefined),
      relayed: () => 0,
      heal: async () => {
        for (const h of o.peer ? [host, o.peer] : [host]) await run('ip', ['netns', 'exec', h.ns, 'tc', 'qdisc', 'del', 'dev', 'eth0', 'root'], { check: false });
      },
    };
  }
  // the flows with the peer, by their conntrack original tuple (so flows through a delay proxy,
  // whose packets carry the gateway's address, count too)
  const flows = o.peer ? [`ct original ip daddr ${o.peer.ip} `, `ct original ip saddr ${o.peer.ip} `] : [''];
  const drop = (dev: string): string[] => flows.map((f) => `    ${dev} "eth0" ${f}numgen random mod 100 < ${o.lossPct} counter drop`);
  let proxies: DelayProxy[] = [];
  if (o.delayMs > 0 && o.peer && o.ports && o.ports.length > 0) {
    const peer = o.peer;
    proxies = await Promise.all(o.ports.map((port) => delayProxy(host, peer, port, o.delayMs)));
  }
  try {
    await nft(host, [
      `table inet ${table} {`,
      '  chain in { type filter hook input priority -5; policy accept;',
      ...drop('iifname'),
      '  }',
      '  chain out { type filter hook output priority -5; policy accept;',
      ...drop('oifname'),
      '  }',
      '}',
      '',
    ].join('\n'));
  } catch (err) {
    for (const p of proxies) await p.close();
    throw err;
  }
  const delayed = proxies.length > 0 ? `+${o.delayMs}ms each way by a proxy on port(s) ${o.ports?.join(',')}` : 'no delay (no sch_netem)';
  return {
    what: `nft loss ${o.lossPct}% ${delayed} on ${host.name}${o.peer ? `<->${o.peer.name}` : ''}`,
    mode: proxies.length > 0 ? 'nft+proxy' : 'nft',
    relayed: () => proxies.reduce((a, p) => a + p.relayed(), 0),
    dropped: async () => {
      const out = (await run('ip', ['netns', 'exec', host.ns, 'nft', 'list', 'table', 'inet', table], { check: false })).stdout;
      return [...out.matchAll(/counter packets (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
    },
    heal: async () => {
      await dropTable(host, table);
      for (const p of proxies) await p.close();
    },
  };
}

interface DelayProxy {
  /** connections relayed so far */
  relayed(): number;
  close(): Promise<void>;
}

/**
 * TCP from `host` to `peer:port` goes through a relay in the test process that holds every chunk
 * `delayMs` before passing it on, both ways (the delay of netem, at the stream level): in `host`'s
 * namespace, new connections to peer:port are DNATed to the relay on the gateway, and the ones
 * already open are reset (so they reconnect through it). close() removes the rules and cuts the
 * relayed connections (they reconnect directly).
 */
async function delayProxy(host: NetHost, peer: NetHost, port: number, delayMs: number, gateway = gatewayOf(host)): Promise<DelayProxy> {
  const relay = await relayServer(peer.ip, port, delayMs, gateway);
  const relayPort = relay.port;
  const table = `oakfault_delay_${port}_${shortId(2)}`;
  await nftOrClose(relay, host, [
    `table ip ${table} {`,
    `  chain nat_out { type nat hook output priority -100; policy accept; ip daddr ${peer.ip} tcp dport ${port} dnat to ${gateway}:${relayPort}; }`,
    // what is still open to peer:port directly (not DNATed) is reset, so it reconnects through the relay
    `  chain out { type filter hook output priority 0; policy accept; ip daddr ${peer.ip} tcp dport ${port} reject with tcp reset; }`,
    '}',
    '',
  ]);
  return {
    relayed: () => relay.relayed(),
    close: async () => {
      await run('ip', ['netns', 'exec', host.ns, 'nft', 'delete', 'table', 'ip', table], { check: false });
      await relay.close();
    },
  };
}

async function nftOrClose(relay: Relay, host: NetHost, script: string[]): Promise<void> {
  try {
    await nft(host, script.join('\n'));
  } catch (err) {
    await relay.close();
    throw err;
  }
}

interface Relay {
  port: number;
  relayed(): number;
  /** stops listening and cuts the relayed connections */
  close(): Promise<void>;
}

/** A TCP relay in the test process on `listen`:<free port> to target:port, holding each chunk delayMs. */
async function relayServer(target: string, targetPort: number, delayMs: number, listen: string): Promise<Relay> {
  const sockets = new Set<Socket>();
  let relayed = 0;
  const later = (fn: () => void): void => {
    if (delayMs > 0) setTimeout(fn, delayMs);
    else fn();
  };
  const server = createServer((down) => {
    relayed++;
    const up = connect({ host: target, port: targetPort });
    sockets.add(down);
    sockets.add(up);
    const pipe = (from: Socket, to: Socket): void => {
      from.on('data', (chunk) => later(() => {
        if (!to.destroyed) to.write(chunk);
      }));
      from.on('end', () => later(() => to.end()));
      from.on('error', () => undefined);
      from.on('close', () => {
        sockets.delete(from);
        later(() => to.destroy());
      });
    };
    pipe(down, up);
    pipe(up, down);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, listen, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    relayed: () => relayed,
    close: async () => {
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface Balancer {
  /** host:port to dial (on the gateway) */
  address: string;
  /** the targets (ip:port) of the connections open now */
  open(): string[];
  close(): Promise<void>;
}

/**
 * A TCP balancer in the test process on the gateway of `net` across `targets` (ip:port): each
 * connection goes to the first target that accepts it (tried in order, 1 s each), as a TCP load
 * balancer in front of several roots' link ports would do. Goes with close() of the lab.
 */
export async function balancer(lab: FaultLab, targets: string[]): Promise<Balancer> {
  const gateway = lab.net.gatewayIp as string;
  const live = new Map<Socket, string>();
  const server = createServer((down) => {
    down.pause();
    down.on('error', () => undefined);
    const attempt = (i: number): void => {
      const target = targets[i];
      if (target === undefined || down.destroyed) {
        down.destroy();
        return;
      }
      const [host, port] = target.split(':') as [string, string];
      const up = connect({ host, port: Number(port), timeout: 1000 });
      const fail = (): void => {
        up.destroy();
        attempt(i + 1);
      };
      up.once('timeout', fail);
      up.once('error', fail);
      up.once('connect', () => {
        up.off('timeout', fail);
        up.off('error', fail);
        up.setTimeout(0);
        up.on('error', () => undefined);
        live.set(up, target);
        up.pipe(down);
        down.pipe(up);
        down.resume();
        const end = (): void => {
          live.delete(up);
          up.destroy();
          down.destroy();
        };
        up.once('close', end);
        down.once('close', end);
      });
    };
    attempt(0);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, gateway, () => resolve());
  });
  const close = async (): Promise<void> => {
    for (const sock of live.keys()) sock.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  lab.onClose(close);
  return { address: `${gateway}:${(server.address() as AddressInfo).port}`, open: () => [...live.values()], close };
}

/** the address of the root `host` (one of `roots`) whose link the cluster on `clusterHost` holds, if any */
export async function linkedRoot<T extends { host: NetHost }>(clusterHost: NetHost, roots: T[]): Promise<T | undefined> {
  const out = (await run('ip', ['netns', 'exec', clusterHost.ns, 'ss', '-Htn', 'state', 'established', '( dport = :50052 )'], { check: false })).stdout;
  return roots.find((r) => out.includes(` ${r.host.ip}:50052`));
}

/** the gateway address of a host's network (its default route) */
function gatewayOf(host: NetHost): string {
  return host.ip.replace(/\.\d+$/, '.1');
}

/** Drops every packet between `a` and `b` (silently, both ways) until heal(). */
export async function partition(a: NetHost, b: NetHost): Promise<Fault> {
  const table = `oakfault_part_${shortId(2)}`;
  const rules = (peer: NetHost): string =>
    [
      `table inet ${table} {`,
      `  chain in { type filter hook input priority -10; policy accept; ip saddr ${peer.ip} drop; }`,
      `  chain out { type filter hook output priority -10; policy accept; ip daddr ${peer.ip} drop; }`,
      '}',
      '',
    ].join('\n');
  await nft(a, rules(b));
  try {
    await nft(b, rules(a));
  } catch (err) {
    await dropTable(a, table);
    throw err;
  }
  return {
    what: `partition ${a.name}<->${b.name}`,
    heal: async () => {
      await dropTable(a, table);
      await dropTable(b, table);
    },
  };
}

// ------------------------------------------------------------------------------ convergence

const TRANSITIONAL = new Set(['REQUESTED', 'CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING']);
const ENDED = new Set(['UNDEPLOYED', 'FAILED', 'COMPLETED', 'DEAD']);

export interface Expectation {
  serviceId: string;
  /**
   * how many instances must run: a number, or 'listed' (whatever the API lists, at least
   * `atLeast`, e.g. after a fault during deploys some accepted requests may have no answer)
   */
  running: number | 'listed';
  atLeast?: number;
  /** instance numbers that must be among the running ones (acknowledged deploys: none lost) */
  include?: number[];
  /** the workload marker: the machine must run exactly one supervised copy per running instance */
  marker?: string;
  /** every copy's command line carries this (the version of the SLA it runs) */
  tag?: string;
  /** every running instance is on this cluster (id) */
  onCluster?: string;
}

export interface ConvergeOptions {
  timeoutMs: number;
  /** the moment the fault began (Date.now()); converge_ms is counted from it (default: the call) */
  from?: number;
  /** the desired state must hold this long (consecutive polls) to count (default 2000) */
  stableMs?: number;
  intervalMs?: number;
}

export interface ConvergeResult {
  ok: boolean;
  /** from the call until the desired state was first seen (and then held for stableMs) */
  ms: number;
  /** surplus copies in the last poll: extra copies of an instance + copies of no listed instance + surplus rows */
  duplicates: number;
  /** the most surplus copies seen in any poll on the way */
  maxDuplicates: number;
  /** why the last poll was not converged ('' when ok) */
  detail: string;
}

interface Poll {
  problems: string[];
  duplicates: number;
}

type InstanceView = InstanceDoc & { desired?: string; service_version?: number };
type ServiceView = ServiceDoc & { version?: number };

async function pollOne(api: Api, e: Expectation): Promise<Poll> {
  const problems: string[] = [];
  let duplicates = 0;
  const svc = await api.call<ServiceView>('GET', `/api/service/${e.serviceId}`);
  const listed = (svc.instance_list as InstanceView[]).filter((i) => i.desired !== 'stop');
  const want = e.running === 'listed' ? listed.length : e.running;
  if (e.running === 'listed' && e.atLeast !== undefined && listed.length < e.atLeast) problems.push(`${listed.length} listed < ${e.atLeast} acknowledged`);
  const notRunning = listed.filter((i) => i.status !== 'RUNNING');
  if (notRunning.length > 0) {
    const by = new Map<string, number>();
    for (const i of notRunning) by.set(i.status, (by.get(i.status) ?? 0) + 1);
    const transitional = notRunning.filter((i) => TRANSITIONAL.has(i.status)).length;
    const some = notRunning.slice(0, 3).map((i) => `#${i.instance_number} ${i.status}${i.status_detail ? ` (${i.status_detail.slice(0, 60)})` : ''}`).join(', ');
    problems.push(`not RUNNING: ${[...by].map(([s, n]) => `${s}x${n}`).join(' ')}${transitional ? ` (${transitional} transitional)` : ''}: ${some}`);
  }
  if (listed.length !== want) problems.push(`${listed.length} listed, want ${want}`);
  if (listed.length > want) duplicates += listed.length - want;
  const numbers = listed.map((i) => i.instance_number);
  if (new Set(numbers).size !== numbers.length) {
    duplicates += numbers.length - new Set(numbers).size;
    problems.push('an instance number is listed twice');
  }
  if (e.onCluster !== undefined) {
    const elsewhere = listed.filter((i) => i.cluster_id !== e.onCluster).length;
    if (elsewhere > 0) problems.push(`${elsewhere} instance(s) not on cluster ${e.onCluster}`);
  }
  const missing = (e.include ?? []).filter((n) => !numbers.includes(n));
  if (missing.length > 0) problems.push(`acknowledged instances missing: ${missing.join(',')}`);
  if (svc.version !== undefined) {
    const stale = listed.filter((i) => i.service_version !== undefined && i.service_version !== svc.version);
    if (stale.length > 0) problems.push(`${stale.length} instance(s) not on version ${svc.version}`);
  }
  if (e.marker) {
    const copies = workloads(e.marker);
    const name = (i: InstanceDoc): string => `${svc.job_name}.instance.${i.instance_number}`;
    // a listed instance in an end state (UNDEPLOYED, FAILED, ...) must have no process either
    const ended = new Set(listed.filter((i) => ENDED.has(i.status)).map(name));
    const names = new Set(listed.filter((i) => !ENDED.has(i.status)).map(name));
    const per = new Map<string, number>();
    for (const c of copies) per.set(c.instance, (per.get(c.instance) ?? 0) + 1);
    const extra = [...per].reduce((a, [, n]) => a + n - 1, 0);
    const orphans = [...per.keys()].filter((k) => !names.has(k) && !ended.has(k));
    const zombies = [...per.keys()].filter((k) => ended.has(k));
    duplicates += zombies.reduce((a, k) => a + (per.get(k) ?? 0), 0);
    if (zombies.length > 0) problems.push(`${zombies.length} instance(s) listed as ended still run a process (${zombies.slice(0, 3).join(', ')})`);
    const absent = [...names].filter((k) => !per.has(k));
    duplicates += extra + orphans.reduce((a, k) => a + (per.get(k) ?? 0), 0);
    if (extra > 0) problems.push(`${extra} extra process copies`);
    if (orphans.length > 0) problems.push(`${orphans.length} process(es) of no listed instance (${orphans.slice(0, 3).join(', ')})`);
    if (absent.length > 0) problems.push(`${absent.length} listed instance(s) without a process`);
    if (e.tag) {
      const wrong = copies.filter((c) => !c.argv.includes(e.tag as string)).length;
      if (wrong > 0) problems.push(`${wrong} process(es) without ${e.tag}`);
    }
  }
  return { problems: problems.map((p) => `${e.serviceId.slice(-6)}: ${p}`), duplicates };
}

/**
 * Polls the API (and the process table for expectations with a marker) until every expectation
 * holds for `stableMs`: exactly the desired instances listed, all RUNNING (none transitional),
 * on the service's current version when the API tells versions, one supervised process each and
 * none for any other instance. Never throws for a miss: the result says ok or why not.
 */
export async function converge(api: Api, expectations: Expectation[], o: ConvergeOptions): Promise<ConvergeResult> {
  const called = Date.now();
  const t0 = o.from ?? called;
  const stableMs = o.stableMs ?? 2000;
  const intervalMs = o.intervalMs ?? 250;
  let since: number | undefined;
  let maxDuplicates = 0;
  let last: Poll = { problems: ['not polled yet'], duplicates: 0 };
  for (;;) {
    try {
      const polls = await Promise.all(expectations.map((e) => pollOne(api, e)));
      last = { problems: polls.flatMap((p) => p.problems), duplicates: polls.reduce((a, p) => a + p.duplicates, 0) };
    } catch (err) {
      last = { problems: [`API: ${err instanceof Error ? err.message : String(err)}`], duplicates: last.duplicates };
    }
    maxDuplicates = Math.max(maxDuplicates, last.duplicates);
    const now = Date.now();
    if (last.problems.length === 0) {
      since ??= now;
      if (now - since >= stableMs) return { ok: true, ms: since - t0, duplicates: 0, maxDuplicates, detail: '' };
    } else {
      since = undefined;
    }
    if (now - called > o.timeoutMs) return { ok: false, ms: now - t0, duplicates: last.duplicates, maxDuplicates, detail: last.problems.join('; ') };
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** the line the closing note's table is made of */
export function report(name: string, r: ConvergeResult, extra = ''): string {
  const line = `FAULT ${name} converge_ms=${r.ok ? r.ms : `timeout(${r.ms})`} duplicates=${r.duplicates} max_duplicates_seen=${r.maxDuplicates}${extra ? ` ${extra}` : ''}${r.ok ? '' : ` not_converged="${r.detail.slice(0, 1000)}"`}`;
  console.log(line);
  return line;
}

// ------------------------------------------------------------------------------ load

export interface Burst {
  /** instance numbers the API answered for (acknowledged deploys) */
  acked: number[];
  /** requests that failed (status or network error) */
  failed: string[];
}

/**
 * Fires `n` concurrent POST /api/service/{id}/instance; `midway` is called once `after` of them
 * were answered (e.g. to kill a process in the middle of the burst).
 */
export async function deployBurst(api: Api, serviceId: string, n: number, midway?: { after: number; run: () => Promise<void> }): Promise<Burst> {
  const acked: number[] = [];
  const failed: string[] = [];
  let answered = 0;
  let fired: Promise<void> | undefined;
  const one = async (): Promise<void> => {
    try {
      const doc = await api.deployInstance(serviceId);
      acked.push(doc.instance_number);
    } catch (err) {
      failed.push(err instanceof Error ? err.message.slice(0, 200) : String(err));
    }
    answered++;
    if (midway && !fired && answered >= midway.after) fired = midway.run();
  };
  await Promise.all(Array.from({ length: n }, one));
  if (midway && !fired) fired = midway.run();
  await fired;
  return { acked, failed };
}

/**
 * Deletes the application (DELETE /api/application/{id}) and waits up to 60 s (a worker whose MQTT connection was just reset reconnects and re-registers first; under a loaded CI machine that took more than 30 s once) for the processes
 * carrying `marker` to end; what is left then is logged, killed, and its count answered (0: the
 * deletion converged too).
 */
export async function deleteApp(api: Api, appId: string, marker: string, name: string): Promise<number> {
  const from = Date.now();
  await api.call('DELETE', `/api/application/${appId}`).catch((err: unknown) => console.log(`FAULT ${name} delete: ${err instanceof Error ? err.message : String(err)}`));
  const gone = await waitFor(() => workloads(marker).length === 0, { timeoutMs: 60_000, intervalMs: 250, message: 'processes gone' }).then(() => true, () => false);
  if (gone) return 0;
  const left = workloads(marker).length;
  console.log(`FAULT ${name} delete: ${left} process(es) still run ${Date.now() - from} ms after the application was deleted`);
  await killMarked(marker);
  return left;
}

/** waits until the clusters (by name) are active with the given number of workers each */
export async function clustersActive(api: Api, workers: Record<string, number>, timeoutMs = 60_000): Promise<Map<string, string>> {
  return waitFor(async () => {
    const cs = await api.call<{ _id: string; cluster_name: string; resources: { workers: number } | null }[]>('GET', '/api/clusters/active');
    const ok = Object.entries(workers).every(([name, n]) => cs.some((c) => c.cluster_name === name && c.resources?.workers === n));
    return ok ? new Map(cs.map((c) => [c.cluster_name, c._id])) : undefined;
  }, { timeoutMs, intervalMs: 200, message: `active clusters ${JSON.stringify(workers)}` });
}

/** true when something accepts TCP on host:port from here (the gateway side) */
export function reachable(host: NetHost, port: number): Promise<boolean> {
  return canConnectTcp(host.ip, port, 500);
}
