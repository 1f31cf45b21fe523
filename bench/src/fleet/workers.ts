/**
 * Simulated workers for the `fleet` benchmark, in a process of their own (several of them, so that
 * the cluster's CPU is its own): each worker is a real client as a NodeEngine is one. It registers
 * over HTTPS with its join token (the NodeEngine's own registerWithRetry), connects to the broker
 * the answer names with its own credentials and last will, subscribes to its control topics,
 * reports `information` every report interval (a random phase each), answers a deploy with
 * CREATING then RUNNING and a delete with UNDEPLOYED, and, like a NodeEngine, registers again when
 * the broker refuses it, when the cluster asks, and after a reconnect.
 *
 * argv: <config json file>. stdin lines: `silence <id>`, `stats`, `quit`. stdout: one JSON object a
 * line: {ev:'ready'}, {ev:'silenced'}, {ev:'stats'}, {ev:'error'}.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { connectBus, silentLogger } from '@oak/bus';
import type { Bus } from '@oak/bus';
import { OakError, instanceName, topics } from '@oak/contracts';
import type { DeleteCommand, DeployCommand, NodeRegistration, NodeRegistrationAnswer } from '@oak/contracts';
import { pinnedTlsOptions } from '@oak/trust';
import { brokerUrl, registeredSince, registerWithRetry } from '../../../apps/node-engine/src/register.ts';

export interface SimConfig {
  /** https://host:port/api/node/register */
  registrationUrl: string;
  /** the cluster's CA (what a NodeEngine pins from its token) */
  caPem: string;
  /** one join token per worker */
  tokens: string[];
  /** names are fleet-<first + i> */
  first: number;
  /** registrations in flight at once in this process */
  concurrency: number;
}

interface Sim {
  name: string;
  token: string;
  conn: string;
  id: string;
  password: string;
  bus?: Bus;
  running: Set<string>;
  timer?: NodeJS.Timeout;
  lastReport: number;
  lastRegistration: number;
  /** when its broker connection last dropped */
  lostAt: number;
  registering?: Promise<void>;
  silenced: boolean;
}

const cfg = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as SimConfig;
const tls = pinnedTlsOptions(cfg.caPem, 'oak-cluster');
const clusterHost = new URL(cfg.registrationUrl).hostname;
const out = (o: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};

/** event times (ms since epoch) the parent turns into rates: registrations sent, connects made */
const events = { registrations: [] as number[], connects: [] as number[], failures: [] as [number, string][], refused: 0, reports: 0, reportErrors: 0, deploys: 0 };
const sims: Sim[] = [];
let reportIntervalMs = 2000;

function body(s: Sim, i: number): NodeRegistration {
  return {
    node_name: s.name,
    host: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    cpu_cores: 4,
    memory_mb: 4096,
    disk_mb: 50_000,
    arch: 'x86_64',
    os: 'linux',
    virtualizations: ['container', 'process'],
    netmanager_port: null,
    location: null,
    token: s.token,
    conn: s.conn,
  };
}

async function register(s: Sim, i: number, withId: boolean): Promise<NodeRegistrationAnswer> {
  const answer = await registerWithRetry(cfg.registrationUrl, () => {
    events.registrations.push(Date.now());
    return { ...body(s, i), ...(withId ? { id: s.id, id_proof: s.password } : {}) };
  }, () => Promise.resolve(tls), {
    initialMs: 500,
    maxMs: 10_000,
    onFailure: (_attempt, err) => { events.failures.push([Date.now(), err instanceof OakError ? err.code : err instanceof Error ? err.message.slice(0, 60) : String(err)]); },
  });
  s.lastRegistration = Date.now();
  return answer;
}

function reregister(s: Sim, i: number): Promise<void> {
  s.registering ??= (async () => {
    try {
      const a = await register(s, i, true);
      s.id = a.id;
      s.password = a.mqtt_password ?? '';
      s.bus?.setCredentials(a.mqtt_username ?? a.id, s.password, a.id);
    } finally {
      s.registering = undefined;
    }
  })();
  return s.registering;
}

const information = (s: Sim): Record<string, unknown> => ({
  cpu_percent: 3 + (s.running.size % 7),
  cpu_cores: 4,
  memory_free_mb: 3000,
  memory_total_mb: 4096,
  disk_free_mb: 40_000,
  gpus: 0,
  virtualizations: ['container', 'process'],
  running_instances: [...s.running].sort(),
  timestamp: Date.now(),
  conn: s.conn,
});

function report(s: Sim): void {
  if (s.silenced || s.bus === undefined || !s.bus.connected) return;
  s.lastReport = Date.now();
  // QoS 0, as the NodeEngine reports
  s.bus.publishJson(topics.information(s.id), information(s), 0).then(() => { events.reports++; }, () => { events.reportErrors++; });
}

async function start(s: Sim, i: number): Promise<void> {
  const a = await register(s, i, false);
  s.id = a.id;
  s.password = a.mqtt_password ?? '';
  reportIntervalMs = a.report_interval_ms;
  const url = brokerUrl(clusterHost, a);
  const secure = url.startsWith('mqtts:');
  // like a NodeEngine: not waiting for the connect, so that a refusal (a NATS server that has
  // not reloaded its users file yet) is retried after registering again, not final
  let first: () => void = () => {};
  const connected = new Promise<void>((r) => { first = r; });
  const bus = await connectBus(url, {
    waitForConnect: false,
    clientId: s.id,
    ...(a.mqtt_username !== undefined && a.mqtt_password !== undefined ? { username: a.mqtt_username, password: a.mqtt_password } : {}),
    ...(secure ? { tls } : {}),
    connectTimeoutMs: 30_000,
    reconnectPeriodMs: 1000,
    // its connection errors (refused, reset, timed out) go to the failures the parent may dump
    log: { ...silentLogger, debug: (m: string) => {
      if (m.includes(' error: ') && events.failures.length < 200_000) events.failures.push([Date.now(), `mqtt: ${m.slice(m.indexOf(' error: ') + 8, m.indexOf(' error: ') + 60)}`]);
    } },
    will: { topic: topics.gone(s.id), payload: JSON.stringify({ id: s.id, conn: s.conn }), qos: 1 },
    onConnect: (reconnect) => {
      events.connects.push(Date.now());
      if (!reconnect) {
        first();
        return;
      }
      void (async () => {
        // the NodeEngine's rule (engine.ts onReconnect)
        if (s.registering !== undefined) await s.registering.catch(() => undefined);
        else if (!registeredSince(s.lastRegistration, s.lostAt)) await reregister(s, i).catch(() => undefined);
        for (const n of s.running) {
          const [job, num] = splitName(n);
          void publishStatus(s, job, num, 'RUNNING');
        }
        report(s);
      })();
    },
    onDisconnect: () => { s.lostAt = Date.now(); },
    onRefused: () => {
      events.refused++;
      void reregister(s, i).catch(() => undefined);
    },
  });
  s.bus = bus;
  await connected;
  await bus.subscribe(topics.registerRequest(s.id), () => {
    if (Date.now() - s.lastRegistration > 5000) void reregister(s, i).catch(() => undefined);
  });
  await bus.subscribe(topics.deploy(s.id), (_t, p) => {
    const cmd = JSON.parse(p.toString()) as DeployCommand;
    events.deploys++;
    const n = instanceName(cmd.job_name, cmd.instance_number);
    const fresh = !s.running.has(n);
    s.running.add(n);
    if (fresh) void publishStatus(s, cmd.job_name, cmd.instance_number, 'CREATING').then(() => publishStatus(s, cmd.job_name, cmd.instance_number, 'RUNNING'));
    else void publishStatus(s, cmd.job_name, cmd.instance_number, 'RUNNING');
  });
  await bus.subscribe(topics.delete(s.id), (_t, p) => {
    const cmd = JSON.parse(p.toString()) as DeleteCommand;
    if (s.running.delete(instanceName(cmd.job_name, cmd.instance_number))) void publishStatus(s, cmd.job_name, cmd.instance_number, 'UNDEPLOYED');
  });
  report(s);
  // a random phase, as real workers that started at different times have
  setTimeout(() => {
    report(s);
    s.timer = setInterval(() => report(s), reportIntervalMs);
  }, Math.random() * reportIntervalMs);
}

function splitName(n: string): [string, number] {
  const m = /^(.*)\.instance\.(\d+)$/.exec(n);
  return [m?.[1] ?? n, Number(m?.[2] ?? 0)];
}

function publishStatus(s: Sim, job: string, n: number, status: string): Promise<void> {
  return s.bus?.publishJson(topics.job(s.id), { job_name: job, instance_number: n, status, status_detail: '', publicip: '127.0.0.1' }).catch(() => undefined) ?? Promise.resolve();
}

const t0 = Date.now();
cfg.tokens.forEach((token, k) => {
  sims.push({ name: `fleet-${cfg.first + k}`, token, conn: randomBytes(6).toString('base64url'), id: '', password: '', running: new Set(), lastReport: 0, lastRegistration: 0, lostAt: 0, silenced: false });
});
let next = 0;
try {
  await Promise.all(Array.from({ length: Math.max(1, cfg.concurrency) }, async () => {
    for (let k = next++; k < sims.length; k = next++) await start(sims[k] as Sim, cfg.first + k);
  }));
} catch (err) {
  out({ ev: 'error', message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}
out({ ev: 'ready', workers: sims.length, ms: Date.now() - t0, ids: sims.map((s) => s.id) });

for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'quit') break;
  if (cmd === 'silence') {
    const s = sims.find((x) => x.id === arg);
    if (s === undefined) {
      out({ ev: 'silenced', id: arg, found: false });
      continue;
    }
    s.silenced = true;
    clearInterval(s.timer);
    out({ ev: 'silenced', id: arg, found: true, lastReport: s.lastReport, intervalMs: reportIntervalMs });
  } else if (cmd === 'stats') {
    const since = Number(arg ?? 0);
    out({
      ev: 'stats',
      connected: sims.filter((s) => s.bus?.connected === true).length,
      registered: sims.filter((s) => s.registering === undefined && s.id !== '').length,
      reports: events.reports,
      reportErrors: events.reportErrors,
      refused: events.refused,
      deploys: events.deploys,
      registrations: events.registrations.filter((t) => t >= since),
      connects: events.connects.filter((t) => t >= since),
      failures: events.failures.filter(([t]) => t >= since),
      // the last report each worker published (the parent checks that all are back after a restart)
      lastReports: sims.map((s) => s.lastReport),
      now: Date.now(),
    });
  }
}
for (const s of sims) {
  clearInterval(s.timer);
  await s.bus?.close().catch(() => undefined);
}
process.exit(0);
