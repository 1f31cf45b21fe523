/**
 * Shared parts of the NetManager's broker tests: an aedes broker on port 0 that records who
 * connects, a fake cluster (subnets, table queries by job or address, recorded messages), and
 * an authenticated client for the local API.
 */
import mqtt from 'mqtt';
import { connectBus, silentLogger, startEmbeddedBroker } from '@oak/bus';
import type { Bus, EmbeddedBroker } from '@oak/bus';
import { netTopics } from '@oak/contracts';
import type { OverlayPeer, ServiceTable, TableEntry, TableQueryRequest } from '@oak/contracts';
import { tmpDir } from '@oak/testkit';
import type { TmpDir } from '@oak/testkit';
import type { ConnectionOptions } from 'node:tls';
import { CLUSTER_SERVICE_NAME, pinnedTlsOptions } from '@oak/trust/tls';
import type { NetManagerHandle, NetManagerOptions } from '../src/netmanager.ts';

export const WEB = 'app.ns.web.default';
export const DB = 'app.ns.db.default';
export const CACHE = 'app.ns.cache.default';

export function entry(n: number, worker: string, nsip: string): TableEntry {
  return {
    instance_number: n, instance_ip: `10.30.1.${10 + n}`, nsip, worker_id: worker, host_ip: worker === 'w1' ? '127.0.0.1' : '127.0.0.2', host_port: 50103,
    subnet: worker === 'w1' ? '10.18.0.64/26' : '10.18.0.128/26',
  };
}

interface Received { topic: string; payload: unknown }

/** the cluster's side: subnets, tables, updates */
export class FakeCluster {
  bus!: Bus;
  received: Received[] = [];
  tables = new Map<string, ServiceTable>();
  byIp = new Map<string, string>();
  answerSubnets = true;

  async start(url: string, tls?: ConnectionOptions): Promise<void> {
    this.bus = await connectBus(url, { clientId: 'fake-cluster', log: silentLogger, ...(tls !== undefined ? { tls } : {}) });
    await this.bus.subscribe('nodes/+/net/#', (topic, payload) => {
      if (topic.endsWith('/result')) return;
      const msg = JSON.parse(payload.toString('utf8')) as unknown;
      this.received.push({ topic, payload: msg });
      const id = topic.split('/')[1] as string;
      if (topic === netTopics.subnet(id) && this.answerSubnets) {
        void this.bus.publishJson(netTopics.subnetResult(id), { subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64' });
      }
      if (topic === netTopics.tableQueryRequest(id)) {
        const q = msg as TableQueryRequest;
        const job = q.job_name ?? this.byIp.get(q.ip ?? '');
        const t = job === undefined ? undefined : this.tables.get(job);
        void this.bus.publishJson(netTopics.tableQueryResult(id), t === undefined ? { request_id: q.request_id, error: 'no such service' } : { request_id: q.request_id, table: t });
      }
    });
  }

  of(topic: string): unknown[] {
    return this.received.filter((r) => r.topic === topic).map((r) => r.payload);
  }
}

export interface Env {
  broker: EmbeddedBroker;
  cluster: FakeCluster;
  dir: TmpDir;
  clients: Array<{ clientId: string; username: string | undefined }>;
}

/** `tls`: the broker speaks MQTT over TLS with this identity; `ca` is what the fake cluster trusts */
export async function withEnv(fn: (env: Env) => Promise<void>, opts: { tls?: { cert: string; key: string }; ca?: string } = {}): Promise<void> {
  const clients: Env['clients'] = [];
  // the broker records who connects; everyone may do everything (the cluster's ACLs are H5's)
  const broker = await startEmbeddedBroker({
    port: 0,
    ...(opts.tls !== undefined ? { tls: opts.tls } : {}),
    auth: (clientId, username) => {
      clients.push({ clientId, username });
      return { role: 'admin', name: username ?? clientId };
    },
  });
  const cluster = new FakeCluster();
  const dir = await tmpDir('h2-nm');
  try {
    await cluster.start(broker.url, opts.ca !== undefined ? pinnedTlsOptions(opts.ca, CLUSTER_SERVICE_NAME) : undefined);
    await fn({ broker, cluster, dir, clients });
  } finally {
    await cluster.bus?.close();
    await broker.close();
    await dir.remove();
  }
}

export async function api(nm: NetManagerHandle, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`http://127.0.0.1:${nm.port}${path}`, {
    method,
    headers: { authorization: `Bearer ${nm.key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text === '' ? undefined : (JSON.parse(text) as unknown) };
}

export function options(env: Env, extra: Partial<NetManagerOptions> = {}): NetManagerOptions {
  return {
    port: 0,
    keyDir: `${env.dir.path}/run`,
    dataDir: `${env.dir.path}/data`,
    publicAddress: '127.0.0.1',
    publicPort: 50103,
    // no tunnel in these tests: probes to the peers' gateways would leave through the host's routes
    probe: false,
    tickMs: 50,
    log: silentLogger,
    ...extra,
  };
}

export const register = (env: Env) => ({ worker_id: 'w1', mqtt_url: env.broker.url, mqtt_username: 'w1', mqtt_password: 'secret', namespace: 'h2t', bridge: 'oakbh2t' });


/** publishes the retained peer list the way the cluster does */
export async function publishPeers(env: Env, peers: OverlayPeer[]): Promise<void> {
  const raw = await mqtt.connectAsync(env.broker.url, { clientId: `peers-${Math.random().toString(16).slice(2, 8)}`, username: 'c', password: 'c' });
  await raw.publishAsync(netTopics.peers, JSON.stringify({ peers }), { qos: 1, retain: true });
  await raw.endAsync();
}
