/**
 * The cost of the wire's security (issue 7): 1,000 worker registrations with a join token over
 * HTTPS against the same registrations over plain HTTP, and ACL-checked `information` reports
 * of 1,000 authenticated workers on the embedded broker over TLS against the same reports on an
 * open, plain broker, measured in the same run. The broker runs in this process alone; the
 * workers run in a child process (bench/src/wire/clients.ts), so the CPU time of this process is
 * the broker's.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { isTopicSafeId, silentLogger, startEmbeddedBroker } from '@oak/bus';
import type { BrokerPrincipal, EmbeddedBrokerOptions } from '@oak/bus';
import { startCluster, workerPassword } from '@oak/cluster';
import { createTestJoin, tmpDir } from '@oak/testkit';
import type { TestJoin } from '@oak/testkit';
import { row } from './types.ts';
import type { Bench, BenchRow } from './types.ts';

const WORKERS = 1000;
const ROUNDS = 10;
const here = fileURLToPath(new URL('.', import.meta.url));

const registration = (i: number, token: string): Record<string, unknown> => ({
  node_name: `bench-${i}`, host: `10.0.${i >> 8}.${i & 255}`, cpu_cores: 4, memory_mb: 4096, arch: 'x86_64', os: 'linux', virtualizations: ['container', 'process'], token,
});

function post(url: URL, body: string, agent: Agent | HttpAgent, tls: object): Promise<{ status: number; json: Record<string, unknown> }> {
  const req = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const r = req(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, ...tls }, (res) => {
      let t = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { t += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(t) as Record<string, unknown> }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

/** 1,000 registrations, 20 at a time; registrations per second and the credentials handed out */
async function registrations(join: TestJoin, useTls: boolean): Promise<{ perS: number; creds: { id: string; password: string }[] }> {
  const cluster = await startCluster({
    name: 'bench', host: '127.0.0.1', port: 0, mqttPort: 0, log: silentLogger,
    tokenCheck: join.tokenCheck, mqttSecret: join.mqttSecret, tls: useTls ? join.clusterTls : false,
  });
  try {
    const url = new URL(cluster.registrationUrl);
    const tls = useTls ? join.clientTls() : {};
    const agent = useTls ? new Agent({ keepAlive: true, maxSockets: 20, ...tls }) : new HttpAgent({ keepAlive: true, maxSockets: 20 });
    const token = join.workerToken();
    const creds: { id: string; password: string }[] = [];
    let next = 0;
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: 20 }, async () => {
      for (let i = next++; i < WORKERS; i = next++) {
        const r = await post(url, JSON.stringify(registration(i, token)), agent, tls);
        if (r.status !== 200) throw new Error(`registration ${i}: ${r.status} ${JSON.stringify(r.json)}`);
        creds.push({ id: String(r.json['id']), password: String(r.json['mqtt_password']) });
      }
    }));
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    agent.destroy();
    if (cluster.credentials().size !== WORKERS) throw new Error(`expected ${WORKERS} credentials, have ${cluster.credentials().size}`);
    return { perS: WORKERS / s, creds };
  } finally {
    await cluster.close();
  }
}

interface ReportRun { cpuUsPerReport: number; delivered: number; wallMs: number }

/** the broker (this process) under ROUNDS rounds of reports from WORKERS workers (child process) */
async function reports(join: TestJoin, mode: 'secure' | 'acl-plain' | 'open', creds: { id: string; password: string }[]): Promise<ReportRun> {
  const known = new Set(creds.map((c) => c.id));
  const admin = { user: `oak-cluster-${randomBytes(4).toString('hex')}`, password: randomBytes(16).toString('hex') };
  // the cluster's rule (cluster.ts): a worker is admitted when it registered and its password is the HMAC of its id
  const auth = (clientId: string, user: string | undefined, pw: Buffer | undefined): BrokerPrincipal | null => {
    if (user === undefined || pw === undefined) return null;
    if (user === admin.user) return pw.toString() === admin.password ? { role: 'admin', name: user } : null;
    return clientId === user && known.has(user) && isTopicSafeId(user) && pw.toString() === workerPassword(join.mqttSecret, user) ? { role: 'worker', workerId: user } : null;
  };
  const opts: EmbeddedBrokerOptions = { port: 0 };
  if (mode !== 'open') opts.auth = auth;
  if (mode === 'secure') opts.tls = { cert: join.clusterTls.cert, key: join.clusterTls.key };
  const broker = await startEmbeddedBroker(opts);
  const dir = await tmpDir('oak-bench-wire');
  try {
    const file = join_(dir.path, 'clients.json');
    writeFileSync(file, JSON.stringify({
      url: broker.url,
      ...(mode === 'secure' ? { ca: join.ca.certPem } : {}),
      ...(mode !== 'open' ? { admin } : {}),
      workers: creds.map((c) => (mode === 'open' ? { id: c.id } : c)),
      payload: { cpu_percent: 12.5, cpu_cores: 4, memory_free_mb: 3000, memory_total_mb: 4096, disk_free_mb: 50_000, gpus: 0, virtualizations: ['container', 'process'], running_instances: ['app.ns.web.ns.instance.0'], timestamp: Date.now() },
    }));
    const child = spawn(process.execPath, ['--import', 'tsx', join_(here, 'wire', 'clients.ts'), file], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout });
    const nextLine = (): Promise<string> => new Promise((resolve, reject) => {
      const onLine = (l: string): void => { cleanup(); resolve(l); };
      const onExit = (): void => { cleanup(); reject(new Error('the client process ended')); };
      const cleanup = (): void => { lines.off('line', onLine); child.off('exit', onExit); };
      lines.on('line', onLine);
      child.once('exit', onExit);
    });
    try {
      if ((await nextLine()) !== 'ready') throw new Error('clients not ready');
      // one warm-up round, then the measured ones
      child.stdin.write('go 1\n');
      await nextLine();
      const cpu0 = process.cpuUsage();
      const t0 = Date.now();
      child.stdin.write(`go ${ROUNDS}\n`);
      const done = await nextLine();
      const wallMs = Date.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      const delivered = Number(/^done (\d+)$/.exec(done)?.[1] ?? 0);
      if (delivered < ROUNDS * creds.length) throw new Error(`only ${delivered} of ${ROUNDS * creds.length} reports delivered (${mode})`);
      if (mode !== 'open' && (broker.refusals.publish > 0 || broker.refusals.connect > 0)) throw new Error(`refusals in the ${mode} run: ${JSON.stringify(broker.refusals)}`);
      child.stdin.write('quit\n');
      await new Promise((r) => child.once('exit', r));
      return { cpuUsPerReport: (cpu.user + cpu.system) / delivered, delivered, wallMs };
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  } finally {
    await broker.close();
    await dir.remove();
  }
}

const join_ = join;

export const bench: Bench = async () => {
  const tj = await createTestJoin();
  // registrations: warm-up of both paths first (JIT, TLS session setup code)
  await registrations(tj, true);
  await registrations(tj, false);
  const regRuns = { https: [] as { perS: number; creds: { id: string; password: string }[] }[], http: [] as { perS: number }[] };
  for (let k = 0; k < 2; k++) {
    regRuns.https.push(await registrations(tj, true));
    regRuns.http.push(await registrations(tj, false));
  }
  const secureReg = regRuns.https.reduce((a, b) => (b.perS > a.perS ? b : a));
  const plainReg = regRuns.http.reduce((a, b) => (b.perS > a.perS ? b : a));
  const creds = secureReg.creds;
  // alternate the modes (the machine is shared: load drifts) and keep each mode's best run
  const runs: Record<'open' | 'acl-plain' | 'secure', ReportRun[]> = { open: [], 'acl-plain': [], secure: [] };
  for (let k = 0; k < 3; k++) for (const m of ['open', 'acl-plain', 'secure'] as const) runs[m].push(await reports(tj, m, creds));
  const best = (m: keyof typeof runs): ReportRun => runs[m].reduce((a, b) => (b.cpuUsPerReport < a.cpuUsPerReport ? b : a));
  const open = best('open');
  const aclPlain = best('acl-plain');
  const secure = best('secure');
  const rows: BenchRow[] = [
    row('1,000 worker registrations with a token, HTTPS', secureReg.perS, plainReg.perS, 'the same over plain HTTP', 'registrations/s', 'higher'),
    row('broker CPU per report, 1,000 workers, auth + ACL + TLS', secure.cpuUsPerReport, open.cpuUsPerReport, 'open broker, plain MQTT', 'µs', 'lower'),
    row('broker CPU per report, 1,000 workers, auth + ACL (plain MQTT)', aclPlain.cpuUsPerReport, open.cpuUsPerReport, 'open broker, plain MQTT', 'µs', 'lower'),
  ];
  return {
    name: 'wire',
    description: `${WORKERS} registrations (20 concurrent, keep-alive; best of 2 after a warm-up) and, best of 3 alternating runs, ${ROUNDS} rounds of information reports from ${WORKERS} workers (QoS 1) through the embedded aedes broker`,
    rows,
    extra: {
      registrations_per_s: { https: secureReg.perS, http: plainReg.perS },
      reports: { secure, acl_plain: aclPlain, open },
      report_runs_cpu_us: Object.fromEntries(Object.entries(runs).map(([m, r]) => [m, r.map((x) => Math.round(x.cpuUsPerReport * 10) / 10)])),
    },
  };
};
