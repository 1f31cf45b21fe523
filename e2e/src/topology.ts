/**
 * Topologies of the seed guide made of network-namespace hosts: each host runs the real binaries
 * inside its own namespace (so default ports are fine there), workers get a private containerd
 * each (its own namespace of containers), and the test talks to the root through the gateway.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { buildBusyboxImage, createNetwork, run, startContainerd, startRegistry, tmpDir, waitFor, type ContainerdInstance, type NetHost, type TestNetwork } from '@oak/testkit';
import { bridgePlan, tagOf } from '@oak/net';
import { removeInstanceNetwork } from '../../apps/node-engine/src/network.ts';
import type { ClusterDoc } from '@oak/contracts';
import { Api, waitHealthy } from './api.ts';
import { Procs, bins, type Proc } from './procs.ts';

export const PASSWORD = 'e2e-admin-password';
/**
 * The NetManager's local API port inside each worker host's namespace: Oakestra's default 6000
 * (OAK_E2E_NET_PORT to try another; 6000 is on the Fetch standard's list of blocked ports, so a
 * client using fetch() cannot reach it: it fails with "bad port").
 */
export const NET_PORT = Number(process.env.OAK_E2E_NET_PORT ?? 6000);
/** the NodeEngine flag naming the directory of the NetManager's key file */
export const NODE_ENGINE_KEY_DIR_FLAG = '--netmanager-key-dir';

export interface Worker {
  host: NetHost;
  ctd: ContainerdInstance;
  proc: Proc;
  dataDir: string;
  /** the worker's NetManager (overlay workers only) */
  net: Proc | undefined;
  /** starts the NodeEngine again (after a kill) */
  start(): Proc;
  /** starts the NetManager again (overlay workers only) */
  startNet(): Promise<Proc>;
  /** RUNNING container tasks on this worker */
  tasks(): Promise<string[]>;
}

export class Topology {
  readonly procs = new Procs();
  net!: TestNetwork;
  dir!: { path: string; remove(): Promise<void> };
  image = '';
  private readonly cleanups: (() => Promise<void>)[] = [];
  /** one per worker (its containerd, instance namespaces, NetManager state): independent of each other */
  private readonly workerCleanups: (() => Promise<void>)[] = [];
  /** the root's API, logged in as Admin (join tokens are created through it) */
  rootApi: Api | undefined;
  /** the NodeEngine --namespace of every worker started (instance namespaces derive from it) */
  private readonly workerNamespaces: string[] = [];
  /** cluster name by the address of its host (workers join the cluster they are pointed at) */
  private readonly clusterAt = new Map<string, string>();

  async init(name: string): Promise<void> {
    this.dir = await tmpDir(`oak-e2e-${name}`);
    // searchable (not readable) by others: the workers' work dirs are in it, and a wasm runner
    // (dropped to oak-workload) opens its files there by path; the data dirs inside stay 0700
    await chmod(this.dir.path, 0o711);
    this.cleanups.push(() => this.dir.remove());
    // the registry with its image and the network are independent: made side by side
    const image = (async () => {
      const reg = await startRegistry();
      this.cleanups.push(() => reg.stop());
      this.image = await buildBusyboxImage(reg);
    })();
    const net = (async () => {
      this.net = await createNetwork(name, { gateway: true });
      this.cleanups.push(() => this.net.destroy());
    })();
    const made = await Promise.allSettled([image, net]);
    for (const r of made) if (r.status === 'rejected') throw r.reason;
  }

  /** `env`: more settings of the root (e.g. OAK_EXTRA_SERVICE_RANGES) */
  async root(host: NetHost, env: Record<string, string> = {}): Promise<Api> {
    this.procs.spawn(`root-${host.name}`, bins.root, ['--data-dir', `${this.dir.path}/root-${host.name}`, '--log-level', 'warn'], {
      dir: this.dir.path,
      netns: host.ns,
      env: { ...env, OAK_ADMIN_PASSWORD: PASSWORD },
    });
    const base = `http://${host.ip}:10000`;
    await waitHealthy(`${base}/healthz`);
    const api = new Api(base);
    await api.login('Admin', PASSWORD);
    this.rootApi = api;
    return api;
  }

  /** A join token from the root (POST /api/tokens), as an operator would create it. */
  async joinToken(body: { kind: 'cluster'; name: string } | { kind: 'worker'; cluster: string }): Promise<string> {
    if (!this.rootApi) throw new Error('start the root first');
    return (await this.rootApi.call<{ token: string }>('POST', '/api/tokens', body)).token;
  }

  async cluster(host: NetHost, rootIp: string, name: string, location?: string): Promise<Proc> {
    const token = await this.joinToken({ kind: 'cluster', name });
    this.clusterAt.set(host.ip, name);
    return this.procs.spawn(`cluster-${name}`, bins.cluster, [], {
      dir: this.dir.path,
      netns: host.ns,
      env: {
        SYSTEM_MANAGER_URL: rootIp,
        CLUSTER_NAME: name,
        ...(location ? { CLUSTER_LOCATION: location } : {}),
        OAK_JOIN_TOKEN: token,
        OAK_REPORT_INTERVAL_MS: '500',
        OAK_DEAD_AFTER_INTERVALS: '8',
      },
    });
  }

  /**
   * A NodeEngine on `host` joining the cluster at `clusterIp` with a worker token of its own.
   * With `net`, the host also runs a real NetManager (started first, `-p 6000` inside the host's
   * namespace, netcfg.json in the worker's data dir with NodePublicAddress = the host's address
   * and ClusterUrl = the cluster host) and the NodeEngine is started with `-n 6000`. The API key
   * file goes to a key dir of this worker (the default /run/oak is shared by every namespace of
   * the kernel, and each worker's NetManager listens on port 6000 of its own namespace).
   */
  async worker(host: NetHost, clusterIp: string, cluster = this.clusterAt.get(clusterIp), opts: { net?: boolean; args?: string[] } = {}): Promise<Worker> {
    if (cluster === undefined) throw new Error(`no cluster started at ${clusterIp}: start it first or name it`);
    const token = await this.joinToken({ kind: 'worker', cluster });
    // this worker's cleanups, undone in reverse order; close() undoes the workers side by side
    const steps: (() => Promise<void>)[] = [];
    this.workerCleanups.push(async () => {
      for (const c of steps.splice(0).reverse()) await c().catch(() => undefined);
    });
    const ctd = await startContainerd();
    steps.push(() => ctd.stop());
    this.workerNamespaces.push(ctd.namespace);
    // the registry listens on the machine's loopback, which a worker namespace cannot reach: the
    // image is pulled ahead (pulling itself is covered by the runtime tests and the 1-DOC test)
    await ctd.ctr(['images', 'pull', '--plain-http', this.image]);
    const dataDir = `${this.dir.path}/worker-${host.name}`;
    // instance namespaces live in /run/netns, outside the host namespace that the network removes
    steps.push(() => removeInstanceNetwork({ namespace: ctd.namespace, dataDir }));
    const keyDir = `${dataDir}/keys`;
    const netDir = `${dataDir}/netmanager`;
    const netcfg = `${dataDir}/netcfg.json`;
    if (opts.net) {
      mkdirSync(keyDir, { recursive: true, mode: 0o700 });
      mkdirSync(netDir, { recursive: true });
      writeFileSync(netcfg, JSON.stringify({ NodePublicAddress: host.ip, NodePublicPort: '50103', ClusterUrl: clusterIp, ClusterMqttPort: 10003 }, null, 2));
      // whatever a NetManager killed in a test leaves behind goes with --clean (tunnel, table, state)
      steps.push(async () => {
        await run('nsenter', [`--net=/run/netns/${host.ns}`, '--', process.execPath, bins.netManager, '--clean', '-p', String(NET_PORT), '-c', netcfg, '--data-dir', netDir, '--key-dir', keyDir], { check: false, timeoutMs: 20_000 });
      });
    }
    const startNet = async (): Promise<Proc> => {
      const p = this.procs.spawn(`netmanager-${host.name}`, bins.netManager, ['-p', String(NET_PORT), '-c', netcfg, '--data-dir', netDir, '--key-dir', keyDir, '--dns-upstream', '127.0.0.1', '--probe-interval-ms', '1000'], {
        dir: this.dir.path,
        netns: host.ns,
      });
      // the NodeEngine registers with it as soon as it starts: wait until its API key is written
      await waitFor(() => existsSync(`${keyDir}/netmanager-${NET_PORT}.key`) || p.child.exitCode !== null, { timeoutMs: 20_000, message: `NetManager on ${host.name} ready` });
      if (p.child.exitCode !== null) throw new Error(`NetManager on ${host.name} exited: ${p.log()}`);
      return p;
    };
    const net = opts.net ? await startNet() : undefined;
    const netArgs = opts.net ? ['-n', String(NET_PORT), NODE_ENGINE_KEY_DIR_FLAG, keyDir] : ['-n', '0'];
    const start = (): Proc =>
      this.procs.spawn(`worker-${host.name}`, bins.nodeEngine, ['-a', clusterIp, '-p', '10100', ...netArgs, '--name', host.name, '--data-dir', dataDir, '--containerd', ctd.socket, '--namespace', ctd.namespace, '--report-interval', '500', ...(opts.args ?? [])], {
        dir: this.dir.path,
        netns: host.ns,
        env: { OAK_JOIN_TOKEN: token },
      });
    const w: Worker = {
      host,
      ctd,
      dataDir,
      net,
      proc: start(),
      start: () => (w.proc = start()),
      startNet: async () => (w.net = await startNet()),
      tasks: async () => (await ctd.ctr(['tasks', 'ls'])).stdout.split('\n').filter((l) => /\sRUNNING\b/.test(l)),
    };
    if (opts.net) {
      // overlay-ready: the NodeEngine registered with its NetManager and moved its bridge onto the
      // worker subnet the root gave (10.18.0.0/16), so instances deployed from now on join the overlay
      const bridge = bridgePlan(ctd.namespace).bridge;
      const ready = await waitFor(async () => {
        // Node's fetch() refuses the Fetch standard's "bad ports", 6000 among them: say so at once
        if (w.proc.log().includes('bad port')) return 'bad-port';
        return /inet 10\.18\./.test((await run('ip', ['-n', host.ns, '-o', '-4', 'addr', 'show', 'dev', bridge], { check: false })).stdout) ? 'ok' : undefined;
      }, {
        timeoutMs: 60_000,
        intervalMs: 200,
        message: `the bridge ${bridge} of ${host.name} on its overlay subnet (NodeEngine registered with its NetManager)`,
      }).catch((err: unknown) => {
        throw new Error(`${err instanceof Error ? err.message : String(err)}\n${w.proc.log().slice(-3000)}\n${w.net?.log().slice(-3000) ?? ''}`);
      });
      if (ready === 'bad-port') {
        throw new Error(`the NodeEngine cannot reach its NetManager on port ${NET_PORT}: fetch() refuses it as a "bad port" (the Fetch standard blocks 6000); the NodeEngine's client must use node:http\n${w.proc.log().slice(-2000)}`);
      }
    }
    return w;
  }

  /**
   * What this topology left on the machine after close(): network namespaces of its hosts or of
   * its workers' instances, links and nftables tables in the machine's own namespace named after
   * them. Empty when everything was cleaned up.
   */
  async leftovers(): Promise<string[]> {
    const out: string[] = [];
    // host namespaces are oak<run id>-<network>-<host>, the switch oak<run id>-<network>-sw
    const prefix = this.net ? this.net.switchNs.slice(0, -'sw'.length) : undefined;
    const tags = this.workerNamespaces.map((n) => tagOf(n));
    const netns = (await run('ip', ['netns', 'ls'], { check: false })).stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter(Boolean);
    for (const n of netns) {
      if ((prefix && n.startsWith(prefix)) || tags.some((t) => n.startsWith(`oak-${t}-`))) out.push(`netns ${n}`);
    }
    const links = (await run('ip', ['-o', 'link', 'show'], { check: false })).stdout;
    for (const t of tags) if (links.includes(t)) out.push(`link with ${t} in the machine's namespace`);
    const tables = (await run('nft', ['list', 'tables'], { check: false })).stdout;
    for (const t of tags) if (tables.includes(t)) out.push(`nftables table with ${t} in the machine's namespace`);
    return out;
  }

  async close(): Promise<void> {
    await this.procs.stopAll();
    // idempotent: a test may close early (to check what is left) and again in its after() hook;
    // the workers first (side by side), then the network, the registry and the directory
    await Promise.all(this.workerCleanups.splice(0).map((c) => c()));
    for (const c of this.cleanups.splice(0).reverse()) await c().catch(() => undefined);
  }
}

/** The only active cluster once it reports `workers` workers (the M-DOC tests: one cluster, its workers). */
export async function soleClusterWith(api: Api, workers: number): Promise<ClusterDoc> {
  const cs = await waitFor(async () => {
    const l = await api.call<ClusterDoc[]>('GET', '/api/clusters/active');
    return l.length === 1 && l[0]?.resources?.workers === workers ? l : undefined;
  }, { timeoutMs: 40_000, message: `one cluster with ${workers} workers` });
  return cs[0] as ClusterDoc;
}
