/**
 * Topologies of the seed guide made of network-namespace hosts: each host runs the real binaries
 * inside its own namespace (so default ports are fine there), workers get a private containerd
 * each (its own namespace of containers), and the test talks to the root through the gateway.
 */
import { buildBusyboxImage, createNetwork, startContainerd, startRegistry, tmpDir, type ContainerdInstance, type NetHost, type TestNetwork } from '@oak/testkit';
import { removeInstanceNetwork } from '../../apps/node-engine/src/network.ts';
import { Api, waitHealthy } from './api.ts';
import { Procs, bins, type Proc } from './procs.ts';

export const PASSWORD = 'e2e-admin-password';

export interface Worker {
  host: NetHost;
  ctd: ContainerdInstance;
  proc: Proc;
  dataDir: string;
  start(): Proc;
  /** RUNNING container tasks on this worker */
  tasks(): Promise<string[]>;
}

export class Topology {
  readonly procs = new Procs();
  net!: TestNetwork;
  dir!: { path: string; remove(): Promise<void> };
  image = '';
  private readonly cleanups: (() => Promise<void>)[] = [];
  /** the root's API, logged in as Admin (join tokens are created through it) */
  rootApi: Api | undefined;
  /** cluster name by the address of its host (workers join the cluster they are pointed at) */
  private readonly clusterAt = new Map<string, string>();

  async init(name: string): Promise<void> {
    this.dir = await tmpDir(`oak-e2e-${name}`);
    this.cleanups.push(() => this.dir.remove());
    const reg = await startRegistry();
    this.cleanups.push(() => reg.stop());
    this.image = await buildBusyboxImage(reg);
    this.net = await createNetwork(name, { gateway: true });
    this.cleanups.push(() => this.net.destroy());
  }

  async root(host: NetHost): Promise<Api> {
    this.procs.spawn(`root-${host.name}`, bins.root, ['--data-dir', `${this.dir.path}/root-${host.name}`, '--log-level', 'warn'], {
      dir: this.dir.path,
      netns: host.ns,
      env: { OAK_ADMIN_PASSWORD: PASSWORD },
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

  /** A NodeEngine on `host` joining the cluster at `clusterIp` with a worker token of its own. */
  async worker(host: NetHost, clusterIp: string, cluster = this.clusterAt.get(clusterIp)): Promise<Worker> {
    if (cluster === undefined) throw new Error(`no cluster started at ${clusterIp}: start it first or name it`);
    const token = await this.joinToken({ kind: 'worker', cluster });
    const ctd = await startContainerd();
    this.cleanups.push(() => ctd.stop());
    // the registry listens on the machine's loopback, which a worker namespace cannot reach: the
    // image is pulled ahead (pulling itself is covered by the runtime tests and the 1-DOC test)
    await ctd.ctr(['images', 'pull', '--plain-http', this.image]);
    const dataDir = `${this.dir.path}/worker-${host.name}`;
    // instance namespaces live in /run/netns, outside the host namespace that the network removes
    this.cleanups.push(() => removeInstanceNetwork({ namespace: ctd.namespace, dataDir }));
    const start = (): Proc =>
      this.procs.spawn(`worker-${host.name}`, bins.nodeEngine, ['-a', clusterIp, '-p', '10100', '-n', '0', '--name', host.name, '--data-dir', dataDir, '--containerd', ctd.socket, '--namespace', ctd.namespace, '--report-interval', '500'], {
        dir: this.dir.path,
        netns: host.ns,
        env: { OAK_JOIN_TOKEN: token },
      });
    const w: Worker = {
      host,
      ctd,
      dataDir,
      proc: start(),
      start: () => (w.proc = start()),
      tasks: async () => (await ctd.ctr(['tasks', 'ls'])).stdout.split('\n').filter((l) => /\sRUNNING\b/.test(l)),
    };
    return w;
  }

  async close(): Promise<void> {
    await this.procs.stopAll();
    for (const c of this.cleanups.reverse()) await c().catch(() => undefined);
  }
}
