/**
 * A tiny stand-in cluster for NodeEngine tests: an aedes broker, a node:http server answering
 * `POST /api/node/register`, and a recorder of everything the worker publishes.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { connectBus, startEmbeddedBroker } from '@oak/bus';
import type { Bus, EmbeddedBroker } from '@oak/bus';
import type { NodeRegistration } from '@oak/contracts';
import { waitFor } from '@oak/testkit';

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
  readonly registrations: NodeRegistration[] = [];
  readonly messages: Received[] = [];
  /** answer registrations with 503 while true */
  down = false;

  static async start(): Promise<FakeCluster> {
    const c = new FakeCluster();
    c.broker = await startEmbeddedBroker({ port: 0 });
    c.brokerPort = c.broker.port;
    c.http = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => { body += d.toString(); });
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== '/api/node/register') {
          res.writeHead(404).end('{}');
          return;
        }
        if (c.down) {
          res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'OAK_UNAVAILABLE', message: 'starting' } }));
          return;
        }
        const reg = JSON.parse(body) as NodeRegistration;
        c.registrations.push(reg);
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({ id: reg.id ?? `node-${randomUUID().slice(0, 8)}`, MQTT_BROKER_PORT: c.brokerPort, report_interval_ms: 2000 }),
        );
      });
    });
    await new Promise<void>((r) => c.http.listen(0, '127.0.0.1', r));
    const addr = c.http.address();
    c.httpPort = typeof addr === 'object' && addr !== null ? addr.port : 0;
    await c.connectObserver();
    return c;
  }

  async connectObserver(): Promise<void> {
    this.observer = await connectBus(this.broker.url, { clientId: `observer-${randomUUID().slice(0, 8)}` });
    await this.observer.subscribe('nodes/#', (topic, buf) => {
      this.messages.push({ topic, payload: JSON.parse(buf.toString()) as Record<string, unknown>, at: Date.now() });
    });
  }

  /** restarts the broker on the same port (a cluster restart, as the worker sees it) */
  async restartBroker(): Promise<void> {
    await this.observer.close();
    await this.broker.close();
    this.broker = await startEmbeddedBroker({ port: this.brokerPort });
    await this.connectObserver();
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
