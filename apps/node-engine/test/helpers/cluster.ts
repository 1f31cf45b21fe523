/**
 * A tiny stand-in cluster for NodeEngine tests, with the real trust boundary: HTTPS registration
 * with a certificate of a CA made here (SAN oak-cluster), worker join tokens carrying that CA's
 * fingerprint, per-worker MQTT credentials on an aedes broker over TLS with the ACLs, and a
 * recorder of everything the worker publishes.
 */
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import { readdirSync, readFileSync } from 'node:fs';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { connectBus, startEmbeddedBroker, workerOfClient } from '@oak/bus';
import type { Bus, EmbeddedBroker } from '@oak/bus';
import type { NodeRegistration } from '@oak/contracts';
import { createTestJoin, waitFor } from '@oak/testkit';
import type { TestJoin } from '@oak/testkit';

export interface Received {
  topic: string;
  payload: Record<string, unknown>;
  at: number;
}

export class FakeCluster {
  broker!: EmbeddedBroker;
  brokerPort = 0;
  http!: Server;
  httpPort = 0;
  observer!: Bus;
  join!: TestJoin;
  /** a valid worker join token for this cluster */
  token = '';
  readonly registrations: NodeRegistration[] = [];
  /** registrations refused (bad token) */
  readonly refused: NodeRegistration[] = [];
  readonly messages: Received[] = [];
  /** workers holding credentials now (a restart forgets them) */
  readonly creds = new Set<string>();
  readonly admin = { user: `fake-cluster-${randomBytes(3).toString('hex')}`, password: randomBytes(16).toString('hex') };
  /** answer registrations with 503 while true */
  down = false;
  /** called after each accepted registration's answer is sent */
  onRegistration: ((reg: NodeRegistration) => void) | undefined;

  password(id: string): string {
    return createHmac('sha256', this.join.mqttSecret).update(id).digest('base64url');
  }

  static async start(): Promise<FakeCluster> {
    const c = new FakeCluster();
    c.join = await createTestJoin();
    c.token = c.join.workerToken();
    await c.startBroker(0);
    c.http = createServer({ cert: c.join.clusterTls.cert, key: c.join.clusterTls.key }, (req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => { body += d.toString(); });
      req.on('end', () => {
        void (async () => {
          const send = (status: number, obj: unknown): void => { res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(obj)); };
          if (req.method !== 'POST' || req.url !== '/api/node/register') return send(404, {});
          if (c.down) return send(503, { error: { code: 'OAK_UNAVAILABLE', message: 'starting' } });
          const reg = JSON.parse(body) as NodeRegistration;
          const verdict = await c.join.tokenCheck(reg.token ?? '', reg.id ?? '');
          if (!verdict.ok) {
            c.refused.push(reg);
            return send(401, { error: { code: 'OAK_JOIN_TOKEN_INVALID', message: `the worker token was refused: ${verdict.reason}`, hint: 'oak token create worker --cluster <name>' } });
          }
          c.registrations.push(reg);
          const id = reg.id !== undefined && reg.id_proof === c.password(reg.id) ? reg.id : `node-${randomUUID().slice(0, 8)}`;
          c.creds.add(id);
          send(200, { id, MQTT_BROKER_PORT: c.brokerPort, report_interval_ms: 2000, mqtt_username: id, mqtt_password: c.password(id), mqtt_tls: true });
          c.onRegistration?.(reg);
        })();
      });
    });
    await new Promise<void>((r) => c.http.listen(0, '127.0.0.1', r));
    const addr = c.http.address();
    c.httpPort = typeof addr === 'object' && addr !== null ? addr.port : 0;
    await c.connectObserver();
    return c;
  }

  async startBroker(port: number): Promise<void> {
    this.broker = await startEmbeddedBroker({
      port,
      tls: { cert: this.join.clusterTls.cert, key: this.join.clusterTls.key },
      auth: (clientId, user, pw) => {
        if (user === this.admin.user && pw?.toString() === this.admin.password) return { role: 'admin', name: user };
        // the NodeEngine (<id>) and its NetManager (<id>-net), the cluster's own rule
        const worker = user === undefined ? null : workerOfClient(clientId, user, (id) => this.creds.has(id));
        if (worker !== null && pw?.toString() === this.password(worker)) return { role: 'worker', workerId: worker };
        return null;
      },
    });
    this.brokerPort = this.broker.port;
  }

  async connectObserver(): Promise<void> {
    this.observer = await connectBus(this.broker.url, { clientId: `observer-${randomUUID().slice(0, 8)}`, username: this.admin.user, password: this.admin.password, tls: this.join.clientTls() });
    await this.observer.subscribe('nodes/#', (topic, buf) => {
      this.messages.push({ topic, payload: JSON.parse(buf.toString()) as Record<string, unknown>, at: Date.now() });
    });
  }

  /** restarts the broker on the same port and forgets every worker (a cluster restart, as the worker sees it) */
  async restartBroker(): Promise<void> {
    await this.stopBroker();
    this.creds.clear();
    await this.startBroker(this.brokerPort);
    await this.connectObserver();
  }

  /** closes the broker (and the observer); startBroker(brokerPort) and connectObserver() bring it back */
  async stopBroker(): Promise<void> {
    await this.observer.close();
    await this.broker.close();
  }

  /** drops a worker's credentials and its connection (revocation) */
  revoke(id: string): void {
    this.creds.delete(id);
    this.broker.disconnect((p) => p.role === 'worker' && p.workerId === id);
  }

  publish(topic: string, obj: unknown): Promise<void> {
    return this.observer.publishJson(topic, obj, 1);
  }

  jobs(nodeId: string, job?: string): Record<string, unknown>[] {
    return this.messages.filter((m) => m.topic === `nodes/${nodeId}/job` && (job === undefined || m.payload['job_name'] === job)).map((m) => m.payload);
  }

  states(nodeId: string, job: string): string[] {
    return this.jobs(nodeId, job).map((p) => String(p['status']));
  }

  waitJob(nodeId: string, job: string, status: string, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    return waitFor(() => this.jobs(nodeId, job).find((p) => p['status'] === status), { timeoutMs, message: `${job} ${status}` });
  }

  async close(): Promise<void> {
    await this.observer.close().catch(() => {});
    await this.broker.close();
    await new Promise<void>((r) => this.http.close(() => r()));
  }
}

/** pids of live processes whose argv is exactly `argv` */
export function pidsWithArgv(argv: string[]): number[] {
  const want = argv.join('\0');
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0$/, '');
      if (cmd !== want) continue;
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state !== 'Z') out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}
