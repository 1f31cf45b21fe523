/**
 * `npm run bench -- root-scale` (issue 13 point 3): one root with 10 clusters x 100 workers and
 * 10,000 instances, on SQLite and on PostgreSQL.
 *
 * - The root is the bundle as shipped (apps/root/dist/oak-root.mjs, the flags of `make up`), in a
 *   process of its own: its RSS and CPU are its own.
 * - The clusters are simulated in another process (bench/src/root-scale/clusters.ts): 10 cluster
 *   orchestrators speaking the real link (join tokens, TLS, hello/welcome, pings, aggregates every
 *   5 s with 100 workers and the usage readings of their instances, instance statuses), each with
 *   100 fake workers that take deploys (NODE_SCHEDULED, CREATING, RUNNING; one in 200 fails once
 *   and stays FAILED, as in a real fleet; one in 50 reports local restarts; probed services are
 *   healthy).
 * - The 10,000 instances are deployed through the API, as users do: 100 applications of 5
 *   services with 20 replicas each (POST /api/application/?deploy=true), placed by the root's
 *   reconciler on the clusters, until every one is RUNNING.
 * - The reads come from a load generator in a third process (bench/src/root-scale/load.ts):
 *   open loop at 200 requests/s, latency from the time each request was due (no coordinated
 *   omission), one route at a time: GET /api/applications/ (list applications), GET
 *   /api/services/{appId} (list the services of an application, with their instances), GET
 *   /api/service/{id}/instances (list instances) and GET /api/service/{id}, each over every
 *   application or service in turn. Baseline: GET /healthz (no auth, one store read) at the same
 *   rate on the same loaded root, in the same run. Goal (issue 13): p99 at most 50 ms.
 * - Root RSS with the 10,000 instances, against the same root empty just after start.
 * - Events: 50 SSE clients (GET /api/events?types=instance, 10 users with 5 streams each: the root
 *   allows 16 per user) in a fourth process while 500 more instances are deployed at once (25
 *   services x 20, then undeployed): every client must get every instance's RUNNING; its lag is
 *   from the simulated cluster sending RUNNING to the client reading it (both stamp
 *   CLOCK_MONOTONIC). Baseline: the same burst with one client.
 *
 * PostgreSQL: OAK_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test); the bench
 * creates a database of its own there and drops it after. OAK_BENCH_RS_BACKENDS=sqlite,postgres
 * (default both), OAK_BENCH_RS_APPS (default 100 applications of 5 x 20 instances),
 * OAK_BENCH_RS_SECONDS (measured seconds per route, default 20), OAK_BENCH_RS_ROOT_FLAGS (extra
 * node flags for the root, e.g. --cpu-prof --cpu-prof-dir=/tmp/prof).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { freePort, waitFor } from '@oak/testkit';
import { percentile, row, type BenchResult, type BenchRow } from './types.ts';
import { sample } from './proc.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const here = fileURLToPath(new URL('.', import.meta.url));
const PASSWORD = 'bench-root-scale-1';
const NODE_FLAGS = ['--max-semi-space-size=2'];
const CLUSTERS = 10;
const WORKERS = 100;
const APPS = Number(process.env.OAK_BENCH_RS_APPS ?? 100);
const SERVICES_PER_APP = 5;
const REPLICAS = 20;
const INSTANCES = APPS * SERVICES_PER_APP * REPLICAS;
const RATE = 200;
const WARMUP_MS = 3000;
const MEASURE_MS = Number(process.env.OAK_BENCH_RS_SECONDS ?? 20) * 1000;
const SSE_CLIENTS = 50;
const SSE_USERS = 10;
const BURST_SERVICES = 25;
const BURST_PER_SERVICE = 20;
const AGGREGATE_MS = 5000;
/** applications whose instances may still be on their way when the next one is posted */
const IN_FLIGHT_APPS = 5;
const PG_URL = process.env.OAK_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** a child process speaking lines on stdin/stdout */
class LineChild {
  readonly lines: Interface;
  readonly #waiting: ((l: string) => void)[] = [];
  readonly #early: string[] = [];

  constructor(readonly child: ChildProcess, readonly name: string) {
    if (!child.stdout || !child.stdin) throw new Error(`${name}: no pipes`);
    this.lines = createInterface({ input: child.stdout });
    this.lines.on('line', (l) => {
      const w = this.#waiting.shift();
      if (w) w(l);
      else this.#early.push(l);
    });
  }

  next(timeoutMs = 600_000): Promise<string> {
    const e = this.#early.shift();
    if (e !== undefined) return Promise.resolve(e);
    return new Promise((resolve, reject) => {
      const onExit = (): void => reject(new Error(`${this.name} exited (${String(this.child.exitCode ?? this.child.signalCode)})`));
      const t = setTimeout(() => reject(new Error(`${this.name}: no answer within ${timeoutMs} ms`)), timeoutMs);
      this.#waiting.push((l) => {
        clearTimeout(t);
        this.child.off('exit', onExit);
        resolve(l);
      });
      this.child.once('exit', onExit);
    });
  }

  async ask(cmd: string, timeoutMs?: number): Promise<string> {
    this.child.stdin?.write(`${cmd}\n`);
    return this.next(timeoutMs);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin?.write('quit\n');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(t);
  }
}

function tsxChild(file: string, args: string[], log: string): LineChild {
  const fd = openSync(log, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'root-scale', file), ...args], { cwd: repoRoot, stdio: ['pipe', 'pipe', fd] });
  closeSync(fd);
  return new LineChild(child, file);
}

const mb = (kb: number): number => Math.round(kb / 102.4) / 10;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface RouteResult {
  name: string;
  requests: number;
  ok: number;
  statuses: Record<string, number>;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
  mean_ms: number;
  body_bytes: number;
  send_lag_max_ms: number;
  /** the root's CPU over the run, % of one core */
  root_cpu_pct?: number;
}

interface BurstResult {
  clients: number;
  instances: number;
  /** RUNNING events every client should have got, and what the one that got the fewest got */
  expected_per_client: number;
  fewest_received: number;
  all_received: boolean;
  events_per_client: { min: number; max: number };
  lag_ms: { p50: number; p95: number; p99: number; max: number };
  /** from the first POST to the last client having every RUNNING */
  burst_ms: number;
}

interface ScenarioResult {
  backend: 'sqlite' | 'postgres';
  seed: { apps: number; services: number; instances: number; deploy_s: number; states: Record<string, number>; history_rows: number };
  rss_mb: { empty: number; loaded: number; peak_under_reads: number; after_bursts: number };
  routes: RouteResult[];
  all_services_dump: { requests: number; p50_ms: number; max_ms: number; body_mb: number };
  bursts: BurstResult[];
  root_cpu_idle_pct: number;
}

async function scenario(backend: 'sqlite' | 'postgres', dir: string): Promise<ScenarioResult> {
  const [apiPort, linkPort] = [await freePort(), await freePort()];
  const base = `http://127.0.0.1:${apiPort}`;
  const rootLog = join(dir, `root-${backend}.log`);
  const dbName = `oak_bench_rs_${process.pid}_${Date.now() % 100000}`;
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', OAK_ADMIN_PASSWORD: PASSWORD };
  delete env.DATABASE_URL;
  if (backend === 'postgres') {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    try {
      await c.query(`create database ${dbName}`);
    } finally {
      await c.end();
    }
    const u = new URL(PG_URL);
    u.pathname = `/${dbName}`;
    env.DATABASE_URL = u.toString();
  }
  const extra = (process.env.OAK_BENCH_RS_ROOT_FLAGS ?? '').split(' ').filter((x) => x !== '');
  const fd = openSync(rootLog, 'a');
  const root = spawn(process.execPath, [...NODE_FLAGS, ...extra, join(repoRoot, 'apps/root/dist/oak-root.mjs'), '--host', '127.0.0.1', '-p', String(apiPort), '--link-port', String(linkPort), '--data-dir', join(dir, `root-${backend}`), '--log-level', 'warn'], { cwd: dir, env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const rootPid = root.pid as number;
  const tail = (): string => (existsSync(rootLog) ? readFileSync(rootLog, 'utf8').slice(-2000) : '');
  let clusters: LineChild | undefined;
  let load: LineChild | undefined;
  let sse: LineChild | undefined;
  try {
    await waitFor(async () => ((await fetch(`${base}/healthz`).catch(() => undefined))?.ok ? true : undefined), { timeoutMs: 60_000, intervalMs: 100, message: `the root up\n${tail()}` });
    const api = async <T>(method: string, path: string, token: string | undefined, body?: unknown): Promise<T> => {
      const res = await fetch(base + path, {
        method,
        headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
      return (text ? JSON.parse(text) : undefined) as T;
    };
    const login = async (username: string, password: string): Promise<string> => (await api<{ token: string }>('POST', '/api/auth/login', undefined, { username, password })).token;
    let admin = await login('Admin', PASSWORD);

    // ------------------------------------------------------------------ empty root
    await sleep(5000);
    const empty = sample(rootPid);

    // ------------------------------------------------------------------ clusters
    const clusterCfg = {
      address: `127.0.0.1:${linkPort}`,
      workers: WORKERS,
      aggregateMs: AGGREGATE_MS,
      clusters: [] as { name: string; token: string; location: string }[],
    };
    for (let c = 0; c < CLUSTERS; c++) {
      const name = `edge${c}`;
      const { token } = await api<{ token: string }>('POST', '/api/tokens', admin, { kind: 'cluster', name });
      clusterCfg.clusters.push({ name, token, location: `${(48 + c * 0.3).toFixed(3)},${(11 + c * 0.2).toFixed(3)}` });
    }
    const cfgFile = join(dir, `clusters-${backend}.json`);
    writeFileSync(cfgFile, JSON.stringify(clusterCfg));
    clusters = tsxChild('clusters.ts', [cfgFile], join(dir, `clusters-${backend}.log`));
    const cl = clusters;
    if ((await cl.next(120_000)) !== 'ready') throw new Error('the simulated clusters did not come up');
    await waitFor(async () => {
      const cs = await api<{ resources: { workers?: number } | null }[]>('GET', '/api/clusters/active', admin);
      return cs.filter((c) => (c.resources?.workers ?? 0) === WORKERS).length === CLUSTERS ? true : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, message: `${CLUSTERS} clusters active with ${WORKERS} workers each` });

    // ------------------------------------------------------------------ 10,000 instances
    const appIds: string[] = [];
    const serviceIds: string[] = [];
    const t0 = performance.now();
    let nextApp = 0;
    let running = 0;
    let failed = 0;
    const counted = async (): Promise<number> => {
      const m = /^count (\d+) (\d+)/.exec(await cl.ask('count'));
      running = Number(m?.[1] ?? 0);
      failed = Number(m?.[2] ?? 0);
      return running + failed;
    };
    await Promise.all(Array.from({ length: 2 }, async () => {
      for (let a = nextApp++; a < APPS; a = nextApp++) {
        // as users deploy: a few applications at a time, not ten thousand instances in one go
        await waitFor(async () => ((a - IN_FLIGHT_APPS) * SERVICES_PER_APP * REPLICAS <= (await counted()) ? true : undefined), { timeoutMs: 600_000, intervalMs: 250, message: `the instances of application ${a - IN_FLIGHT_APPS} placed` });
        const created = await api<{ applicationID: string; microservices: string[] }[]>('POST', '/api/application/?deploy=true', admin, {
          sla_version: 'v2.0',
          customerID: 'Admin',
          applications: [{
            application_name: `app${a}`,
            application_namespace: `ns${a % 10}`,
            application_desc: `application ${a} of the root-scale bench`,
            microservices: Array.from({ length: SERVICES_PER_APP }, (_, s) => ({
              microservice_name: ['web', 'api', 'db', 'cache', 'worker'][s] ?? `s${s}`,
              microservice_namespace: `ns${a % 10}`,
              virtualization: s === 4 ? 'process' : 'container',
              code: s === 4 ? '/usr/bin/worker' : `registry.example.com/team${a % 7}/${['web', 'api', 'db', 'cache'][s] ?? 'svc'}:1.${a % 5}`,
              ...(s === 4 ? { cmd: ['--queue', `q${a}`] } : {}),
              memory: [128, 256, 512, 64, 96][s] ?? 128,
              vcpus: [0.25, 0.5, 0.5, 0.1, 0.2][s] ?? 0.1,
              replicas: REPLICAS,
              ...(s < 2 ? { port: s === 0 ? '80:8080' : '9000' } : {}),
              environment: [`APP=${a}`, `ROLE=${s}`],
              ...(s < 2 ? { health: { type: 'http', port: s === 0 ? 8080 : 9000, path: '/healthz' } } : {}),
              ...(a % 10 === 0 && s === 0 ? { constraints: [{ type: 'geo', location: '48.500,11.200', threshold: 500, rigidness: 0.5 }] } : {}),
            })),
          }],
        });
        const doc = created[0];
        if (!doc) throw new Error('no application created');
        appIds.push(doc.applicationID);
        serviceIds.push(...doc.microservices);
      }
    }));
    await waitFor(async () => ((await counted()) >= INSTANCES ? true : undefined), { timeoutMs: 30 * 60_000, intervalMs: 1000, message: `${INSTANCES} instances RUNNING or FAILED (have ${running} + ${failed})` });
    const deployS = (performance.now() - t0) / 1000;
    // the root agrees: every service with every instance (Oakestra's GET /api/services/)
    const states: Record<string, number> = {};
    let historyRows = 0;
    await waitFor(async () => {
      const all = await api<{ instance_list: { status: string; desired: string }[] }[]>('GET', '/api/services/', admin);
      for (const k of Object.keys(states)) delete states[k];
      for (const s of all) {
        for (const i of s.instance_list) {
          const k = `${i.desired}:${i.status}`;
          states[k] = (states[k] ?? 0) + 1;
        }
      }
      return (states['run:RUNNING'] ?? 0) >= running && (states['run:RUNNING'] ?? 0) + (states['run:FAILED'] ?? 0) >= INSTANCES ? true : undefined;
    }, { timeoutMs: 120_000, intervalMs: 2000, message: `the root listing ${running} RUNNING and ${failed} FAILED` });
    historyRows = Object.values(states).reduce((s, x) => s + x, 0);

    // ------------------------------------------------------------------ settled, loaded
    await sleep(10_000);
    const idle0 = sample(rootPid);
    await sleep(10_000);
    const loaded = sample(rootPid);
    const idleCpu = ((loaded.execMs - idle0.execMs) / 10_000) * 100;

    // ------------------------------------------------------------------ reads at 200/s
    load = tsxChild('load.ts', [], join(dir, `load-${backend}.log`));
    const ld = load;
    let peakKb = loaded.rssKb;
    const routes: RouteResult[] = [];
    const readRun = async (name: string, paths: string[], token: string | undefined, rate = RATE, measureMs = MEASURE_MS): Promise<RouteResult> => {
      const before = sample(rootPid);
      const t0 = performance.now();
      const rssTimer = setInterval(() => {
        peakKb = Math.max(peakKb, sample(rootPid).rssKb);
      }, 500);
      try {
        const line = await ld.ask(`run ${JSON.stringify({ name, base, ...(token !== undefined ? { token } : {}), rate, warmupMs: WARMUP_MS, durationMs: measureMs, paths })}`, 600_000);
        const after = sample(rootPid);
        const m = /^result (.+)$/.exec(line);
        if (!m?.[1]) throw new Error(`load generator: ${line}`);
        const r = JSON.parse(m[1]) as RouteResult;
        // over the whole run (longer than warm-up + measure when the answers fall behind)
        r.root_cpu_pct = Math.round(((after.execMs - before.execMs) / (performance.now() - t0)) * 100 * 10) / 10;
        if (r.ok < r.requests) throw new Error(`${name}: ${r.requests - r.ok} of ${r.requests} requests failed: ${JSON.stringify(r.statuses)}`);
        console.log(`  ${backend} ${name}: p50 ${r.p50_ms} p95 ${r.p95_ms} p99 ${r.p99_ms} ms, ${r.body_bytes} B, root CPU ${r.root_cpu_pct}%`);
        return r;
      } finally {
        clearInterval(rssTimer);
      }
    };
    admin = await login('Admin', PASSWORD);
    routes.push(await readRun('GET /healthz', ['/healthz'], undefined));
    routes.push(await readRun('GET /api/applications/', ['/api/applications/'], admin));
    routes.push(await readRun('GET /api/services/{appId}', appIds.map((id) => `/api/services/${id}`), admin));
    routes.push(await readRun('GET /api/service/{id}/instances', serviceIds.map((id) => `/api/service/${id}/instances`), admin));
    routes.push(await readRun('GET /api/service/{id}', serviceIds.map((id) => `/api/service/${id}`), admin));
    routes.push(await readRun('GET /healthz (again)', ['/healthz'], undefined));
    // Oakestra's GET /api/services/: every service with every instance (10,000), a few times
    const dump = await readRun('GET /api/services/ (all)', ['/api/services/'], admin, 1, 10_000);

    // ------------------------------------------------------------------ SSE bursts
    admin = await login('Admin', PASSWORD);
    const viewerTokens: string[] = [];
    for (let u = 0; u < SSE_USERS; u++) {
      await api('POST', '/api/user/', admin, { name: `viewer${u}`, password: `${PASSWORD}-viewer`, roles: ['Application_Provider'] });
      viewerTokens.push(await login(`viewer${u}`, `${PASSWORD}-viewer`));
    }
    sse = tsxChild('sse.ts', [], join(dir, `sse-${backend}.log`));
    const ss = sse;
    const bursts: BurstResult[] = [];
    let burstNo = 0;
    const burst = async (clients: number): Promise<BurstResult> => {
      if ((await ss.ask('close')) !== 'closed') throw new Error('sse close');
      const opened = await ss.ask(`open ${JSON.stringify({ base, tokens: viewerTokens, n: clients })}`, 60_000);
      if (opened !== `opened ${clients}`) throw new Error(`sse: ${opened}`);
      const sentFile = join(dir, `sent-${backend}-${burstNo}.json`);
      const gotFile = join(dir, `got-${backend}-${burstNo}.json`);
      await cl.ask(`sent ${sentFile}`); // forget what was sent before
      await ss.ask(`dump ${gotFile}`);
      const targets = serviceIds.slice(burstNo * BURST_SERVICES, (burstNo + 1) * BURST_SERVICES);
      burstNo++;
      const want = targets.length * BURST_PER_SERVICE;
      const before = await counted();
      const tb = performance.now();
      const added: { sid: string; n: number }[] = [];
      await Promise.all(targets.map(async (sid) => {
        for (let k = 0; k < BURST_PER_SERVICE; k++) {
          const doc = await api<{ instance_number: number }>('POST', `/api/service/${sid}/instance`, admin);
          added.push({ sid, n: doc.instance_number });
        }
      }));
      // every new instance RUNNING (or FAILED, one in 200) at the clusters, then every client with each RUNNING
      await waitFor(async () => ((await counted()) >= before + want - 2 * Math.ceil(want / 200) ? true : undefined), { timeoutMs: 300_000, intervalMs: 100, message: `${want} more instances at the clusters` }).catch(() => undefined);
      await waitFor(async () => ((await counted()) >= before + want ? true : undefined), { timeoutMs: 10_000, intervalMs: 100, message: 'the last of the burst' }).catch(() => undefined);
      const sentNow = Number(/^pending (\d+)/.exec(await cl.ask('pending'))?.[1] ?? 0);
      await waitFor(async () => (Number(/^stat (\d+)/.exec(await ss.ask('stat'))?.[1] ?? 0) >= sentNow ? true : undefined), { timeoutMs: 120_000, intervalMs: 100, message: `${clients} SSE clients with ${sentNow} RUNNING each` }).catch(() => undefined);
      const burstMs = performance.now() - tb;
      await cl.ask(`sent ${sentFile}`);
      await ss.ask(`dump ${gotFile}`);
      // the burst's own instances: numbers from REPLICAS on (numbers are never reused); a cluster that
      // reconnected meanwhile reports RUNNING again for the others
      const sent = Object.fromEntries(Object.entries(JSON.parse(readFileSync(sentFile, 'utf8')) as Record<string, number>).filter(([k]) => Number(k.split('#')[1]) >= REPLICAS));
      const got = JSON.parse(readFileSync(gotFile, 'utf8')) as { events: number; running: Record<string, number> }[];
      const lags: number[] = [];
      let least = Infinity;
      for (const g of got) {
        let n = 0;
        for (const [key, at] of Object.entries(g.running)) {
          const s = sent[key];
          if (s === undefined) continue;
          n++;
          lags.push((at - s) / 1e6);
        }
        least = Math.min(least, n);
      }
      const r2 = (x: number): number => Math.round(x * 100) / 100;
      const res: BurstResult = {
        clients,
        instances: want,
        expected_per_client: Object.keys(sent).length,
        fewest_received: least,
        all_received: least >= Object.keys(sent).length && Object.keys(sent).length >= want,
        events_per_client: { min: Math.min(...got.map((g) => g.events)), max: Math.max(...got.map((g) => g.events)) },
        lag_ms: { p50: r2(percentile(lags, 50)), p95: r2(percentile(lags, 95)), p99: r2(percentile(lags, 99)), max: r2(Math.max(...lags)) },
        burst_ms: Math.round(burstMs),
      };
      console.log(`  ${backend} burst to ${clients} SSE clients: ${JSON.stringify(res)}`);
      // and gone again: back to the 10,000
      await Promise.all(targets.map(async (sid) => {
        for (const a of added.filter((x) => x.sid === sid)) await api('DELETE', `/api/service/${sid}/instance/${a.n}`, admin);
      }));
      await waitFor(async () => ((await counted()) <= before + 2 * Math.ceil(want / 200) ? true : undefined), { timeoutMs: 300_000, intervalMs: 250, message: 'the burst undeployed' });
      return res;
    };
    bursts.push(await burst(1));
    bursts.push(await burst(SSE_CLIENTS));
    const after = sample(rootPid);
    return {
      backend,
      seed: { apps: APPS, services: serviceIds.length, instances: INSTANCES, deploy_s: Math.round(deployS * 10) / 10, states, history_rows: historyRows },
      rss_mb: { empty: mb(empty.rssKb), loaded: mb(loaded.rssKb), peak_under_reads: mb(peakKb), after_bursts: mb(after.rssKb) },
      routes,
      all_services_dump: { requests: dump.requests, p50_ms: dump.p50_ms, max_ms: dump.max_ms, body_mb: Math.round(dump.body_bytes / 1024 / 102.4) / 10 },
      bursts,
      root_cpu_idle_pct: Math.round(idleCpu * 10) / 10,
    };
  } finally {
    await sse?.stop().catch(() => undefined);
    await load?.stop().catch(() => undefined);
    await clusters?.stop().catch(() => undefined);
    if (root.exitCode === null && root.signalCode === null) {
      const gone = new Promise<void>((r) => root.once('exit', () => r()));
      root.kill('SIGTERM');
      const t = setTimeout(() => root.kill('SIGKILL'), 15_000);
      await gone;
      clearTimeout(t);
    }
    if (backend === 'postgres') {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        await c.query(`drop database if exists ${dbName} with (force)`);
      } finally {
        await c.end();
      }
    }
  }
}

export async function bench(): Promise<BenchResult> {
  const build = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: repoRoot, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`node scripts/build.mjs failed: ${build.stderr}`);
  const backends = (process.env.OAK_BENCH_RS_BACKENDS ?? 'sqlite,postgres').split(',').map((b) => b.trim()) as ('sqlite' | 'postgres')[];
  const dir = mkdtempSync(join(tmpdir(), 'oak-bench-root-scale-'));
  const results: ScenarioResult[] = [];
  try {
    for (const b of backends) {
      console.log(`  ${b}: ${CLUSTERS} clusters x ${WORKERS} workers, ${INSTANCES} instances`);
      results.push(await scenario(b, dir));
    }
  } catch (err) {
    const logs = readdirSync(dir).filter((f) => f.endsWith('.log')).map((f) => `--- ${f}\n${readFileSync(join(dir, f), 'utf8').slice(-3000)}`).join('\n');
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${logs}`);
  } finally {
    if (process.env.OAK_BENCH_RS_KEEP === undefined) rmSync(dir, { recursive: true, force: true });
    else console.log(`  kept ${dir}`);
  }
  const rows: BenchRow[] = [];
  for (const r of results) {
    const base = r.routes[0] as RouteResult;
    for (const route of r.routes.slice(1)) {
      if (route.name.startsWith('GET /healthz')) continue;
      rows.push(row(`${r.backend}: ${route.name} p50 at ${RATE}/s (ms)`, route.p50_ms, base.p50_ms, `GET /healthz at ${RATE}/s, same root`, 'ms'));
      rows.push(row(`${r.backend}: ${route.name} p99 at ${RATE}/s (ms)`, route.p99_ms, base.p99_ms, `GET /healthz at ${RATE}/s, same root`, 'ms'));
    }
    rows.push(row(`${r.backend}: root RSS with ${INSTANCES} instances, ${CLUSTERS * WORKERS} workers (MB)`, r.rss_mb.loaded, r.rss_mb.empty, 'the same root empty after start', 'MB'));
    const one = r.bursts.find((b) => b.clients === 1);
    const many = r.bursts.find((b) => b.clients === SSE_CLIENTS);
    if (one && many) {
      rows.push(row(`${r.backend}: ${many.instances} deploys to ${SSE_CLIENTS} SSE clients, RUNNING lag p99 (ms)`, many.lag_ms.p99, one.lag_ms.p99, 'the same burst to 1 client', 'ms'));
      rows.push(row(`${r.backend}: RUNNING events the worst of ${SSE_CLIENTS} SSE clients got`, many.fewest_received, many.expected_per_client, 'RUNNING reports the clusters sent', 'events', 'higher'));
    }
  }
  return {
    name: 'root-scale',
    description:
      `the root bundle (${NODE_FLAGS.join(' ')}) in its own process with ${CLUSTERS} simulated clusters x ${WORKERS} workers on the real link (another process) and ${INSTANCES} instances deployed through the API (${APPS} applications x ${SERVICES_PER_APP} services x ${REPLICAS}), on ${backends.join(' and ')}; ` +
      `reads from an open-loop load generator in a third process at ${RATE} requests/s (latency from each request's due time, ${WARMUP_MS / 1000} s warm-up, ${MEASURE_MS / 1000} s measured per route), against GET /healthz at the same rate on the same root; ` +
      `RSS against the same root empty; ${BURST_SERVICES * BURST_PER_SERVICE} instances deployed at once with ${SSE_CLIENTS} SSE clients (10 users) in a fourth process, lag from the cluster's RUNNING report to each client, against the same burst to one client. Goal (issue 13): p99 at most 50 ms.`,
    rows,
    extra: { goal_p99_ms: 50, scenarios: results },
  };
}
