/**
 * `npm run bench -- fleet` (issue 13 point 2): one cluster orchestrator, up to 10,000 workers.
 *
 * The cluster is the shipped bundle (apps/cluster/dist/oak-cluster.mjs, the flags of `make up`) in
 * a process of its own, joined with a cluster token to a stand-in root in this process
 * (bench/src/fleet/link-root.ts: welcome with certificate and MQTT secret, worker token checks,
 * deploys). The workers are simulated in child processes (bench/src/fleet/workers.ts,
 * OAK_BENCH_FLEET_PER_PROC each, default 2,500) as real clients: registration over HTTPS with a
 * join token each, their own MQTT credentials and will, a report every 2 s, deploys answered with
 * CREATING and RUNNING. With each broker (OAK_BENCH_FLEET_BROKERS, default embedded,mosquitto,nats:
 * the embedded aedes broker over TLS; a private Mosquitto with dynamic security; a private NATS
 * server's MQTT listener with JetStream) and at each size (OAK_BENCH_FLEET_SIZES, default
 * 1000,5000,10000):
 *
 * - the cluster's CPU (share of one core, every thread's run time from /proc/<pid>/task/<tid>/schedstat over a
 *   window) and RSS, against the same cluster idle with 0 workers measured first in the same run;
 * - deploy latency (the root's deploy until the cluster's RUNNING reaches the root), sequential,
 *   during the load, against the same with 10 workers and no load before it;
 * - at the largest size: a worker that stops reporting (its connection stays up), from its first
 *   missed report until the root gets DEAD for its instance, against 3 report intervals;
 * - at the largest size: a cluster restart (SIGTERM, start again on the same ports): time until
 *   every worker is registered again and reporting (the cluster's aggregate counts them all),
 *   against 30 s, and how bunched the workers came back (the most registrations in any 100 ms).
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { canConnectTcp, createTestJoin, freePort, startMosquitto, startNats, stopProcess, waitFor } from '@oak/testkit';
import type { MosquittoInstance, NatsInstance, TestJoin } from '@oak/testkit';
import { fleetAssignment, startLinkRoot } from './fleet/link-root.ts';
import type { LinkRoot } from './fleet/link-root.ts';
import type { SimConfig } from './fleet/workers.ts';
import { percentile, row } from './types.ts';
import type { Bench, BenchRow } from './types.ts';
import { sample } from './proc.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const here = fileURLToPath(new URL('.', import.meta.url));
const NODE_FLAGS = ['--max-semi-space-size=2'];
const REPORT_MS = 2000;
const BROKERS = (process.env.OAK_BENCH_FLEET_BROKERS ?? 'embedded,mosquitto,nats').split(',').map((s) => s.trim()).filter((s) => s !== '') as Broker[];
const SIZES = (process.env.OAK_BENCH_FLEET_SIZES ?? '1000,5000,10000').split(',').map(Number).filter((n) => n > 0).sort((a, b) => a - b);
const PER_PROC = Number(process.env.OAK_BENCH_FLEET_PER_PROC ?? 2500);
const WINDOW_MS = Number(process.env.OAK_BENCH_FLEET_WINDOW_MS ?? 20_000);
const SETTLE_MS = Number(process.env.OAK_BENCH_FLEET_SETTLE_MS ?? 8000);
const DEPLOYS = Number(process.env.OAK_BENCH_FLEET_DEPLOYS ?? 20);
const PROBE_WORKERS = 10;
const RESTART = process.env.OAK_BENCH_FLEET_RESTART !== '0';
/** OAK_BENCH_FLEET_PROFILE=<dir>: the cluster and the simulated workers' processes (sims.<pid>.cpuprofile) run with --cpu-prof into that directory */
const PROFILE_DIR = process.env.OAK_BENCH_FLEET_PROFILE;
/** OAK_BENCH_FLEET_DUMP=<file>: the restart's registrations, failures and connects (ms from the restart) and the restarted cluster's log, as JSON */
const DUMP = process.env.OAK_BENCH_FLEET_DUMP;

type Broker = 'embedded' | 'mosquitto' | 'nats';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** a child speaking JSON lines on stdout */
class Sims {
  child: ChildProcess;
  lines: Interface;
  ids: string[] = [];
  private queue: Record<string, unknown>[] = [];
  private wake: (() => void) | undefined;
  constructor(file: string, log: string) {
    const fd = openSync(log, 'a');
    const prof = PROFILE_DIR !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, '--cpu-prof-name=sims.${pid}.cpuprofile'] : [];
    this.child = spawn(process.execPath, ['--import', 'tsx', ...NODE_FLAGS, ...prof, join(here, 'fleet', 'workers.ts'), file], { cwd: repoRoot, stdio: ['pipe', 'pipe', fd] });
    closeSync(fd);
    this.lines = createInterface({ input: this.child.stdout as NodeJS.ReadableStream });
    this.lines.on('line', (l) => {
      try {
        this.queue.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        return;
      }
      this.wake?.();
    });
    this.child.on('exit', () => this.wake?.());
  }

  async next(ev: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const i = this.queue.findIndex((m) => m['ev'] === ev || m['ev'] === 'error');
      if (i >= 0) {
        const [m] = this.queue.splice(i, 1);
        if (m?.['ev'] === 'error') throw new Error(`simulated workers: ${String(m['message'])}`);
        return m as Record<string, unknown>;
      }
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`a simulated worker process ended (${this.child.exitCode ?? this.child.signalCode ?? "?"})`);
      if (Date.now() > until) throw new Error(`no ${ev} from the simulated workers within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 200);
      });
      this.wake = undefined;
    }
  }

  send(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }

  async stats(since = 0): Promise<{ connected: number; registered: number; registrations: number[]; connects: number[]; failures: [number, string][]; lastReports: number[]; refused: number; reports: number }> {
    this.send(`stats ${since}`);
    return (await this.next('stats', 60_000)) as never;
  }

  async stop(): Promise<void> {
    this.send('quit');
    await stopProcess(this.child, 10_000);
  }
}

interface ClusterProc {
  child: ChildProcess;
  args: string[];
  log: string;
}

function startClusterProc(dir: string, args: string[], tag: string): ClusterProc {
  const log = join(dir, `cluster-${tag}.log`);
  const fd = openSync(log, 'a');
  const prof = PROFILE_DIR !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : [];
  const child = spawn(process.execPath, [...NODE_FLAGS, ...prof, join(repoRoot, 'apps/cluster/dist/oak-cluster.mjs'), ...args], { cwd: repoRoot, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  return { child, args, log };
}

async function deployOnce(root: LinkRoot, job: string): Promise<{ ms: number; worker: string | null }> {
  const t0 = performance.now();
  const running = root.waitStatus(job, (m) => m.status === 'RUNNING', 60_000);
  root.send({ type: 'deploy', instance: fleetAssignment(job) });
  const m = await running;
  return { ms: performance.now() - t0, worker: m.worker_id };
}

async function deploys(root: LinkRoot, tag: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let k = 0; k < n; k++) {
    out.push((await deployOnce(root, `fleet.${tag}.${k}.d`)).ms);
    await sleep(100);
  }
  return out;
}

interface Level {
  workers: number;
  cpuPct: number;
  rssMb: number;
  deployP50: number;
  deployP95: number;
  registerS: number;
}

interface BrokerRun {
  broker: Broker;
  idle: { cpuPct: number; rssMb: number; deployP50: number; deployP95: number };
  levels: Level[];
  detection?: { fromLastReportMs: number; fromMissedReportMs: number };
  restart?: { allBackMs: number; peakRegistrationsPer100ms: number; peakConnectsPer100ms: number; spreadP10P90Ms: number; workers: number; clusterCpuPct: number; simCpuPct: number };
  error?: string;
}

function peakPer(ts: number[], binMs: number): number {
  const bins = new Map<number, number>();
  for (const t of ts) bins.set(Math.floor(t / binMs), (bins.get(Math.floor(t / binMs)) ?? 0) + 1);
  return Math.max(0, ...bins.values());
}

async function runBroker(broker: Broker, tj: TestJoin, dir: string): Promise<BrokerRun> {
  const root = await startLinkRoot(tj);
  let mosq: MosquittoInstance | undefined;
  let nats: NatsInstance | undefined;
  let cluster: ClusterProc | undefined;
  const sims: Sims[] = [];
  const run: BrokerRun = { broker, idle: { cpuPct: NaN, rssMb: NaN, deployP50: NaN, deployP95: NaN }, levels: [] };
  try {
    const port = await freePort();
    const args = ['--name', 'fleet', '--host', '127.0.0.1', '--port', String(port), '--root', '127.0.0.1', '--root-link-port', String(root.port), '--token', root.token, '--report-interval', String(REPORT_MS)];
    if (broker === 'embedded') args.push('--mqtt-port', String(await freePort()));
    if (broker === 'mosquitto') {
      mosq = await startMosquitto({ dynsec: { adminUser: 'oak-admin', adminPassword: `dyn-${Date.now()}` }, extraConfig: 'max_connections -1\nmax_queued_messages 10000' });
      args.push('--mqtt-url', mosq.adminUrl ?? '');
    }
    if (broker === 'nats') {
      nats = await startNats();
      args.push('--mqtt-url', nats.adminUrl, '--nats-users-file', nats.usersFile, '--nats-pid-file', nats.pidFile, '--nats-monitor-url', nats.monitorUrl);
    }
    cluster = startClusterProc(dir, args, broker);
    const c0 = cluster;
    await waitFor(async () => {
      if (c0.child.exitCode !== null) throw new Error(`the cluster ended: ${readFileSync(c0.log, 'utf8').slice(-2000)}`);
      return root.connected && (await canConnectTcp('127.0.0.1', port));
    }, { timeoutMs: 30_000, intervalMs: 100, message: 'the cluster up and joined' });
    const registrationUrl = `https://127.0.0.1:${port}/api/node/register`;
    const pid = cluster.child.pid ?? 0;

    // ---- baseline: the same cluster idle, 0 workers
    await sleep(SETTLE_MS);
    const i0 = sample(pid);
    await sleep(WINDOW_MS);
    const i1 = sample(pid);
    const idleCpu = ((i1.execMs - i0.execMs) / WINDOW_MS) * 100;
    let total = 0;
    const spawnSims = async (n: number): Promise<void> => {
      const started: Sims[] = [];
      while (n > 0) {
        const k = Math.min(n, PER_PROC);
        const file = join(dir, `sims-${broker}-${total}.json`);
        const cfg: SimConfig = { registrationUrl, caPem: tj.ca.certPem, tokens: Array.from({ length: k }, () => tj.workerToken()), first: total, concurrency: 10 };
        writeFileSync(file, JSON.stringify(cfg));
        started.push(new Sims(file, join(dir, `sims-${broker}.log`)));
        total += k;
        n -= k;
      }
      for (const s of started) s.ids = (await s.next('ready', 600_000))['ids'] as string[];
      sims.push(...started);
    };
    const aggregateWorkers = (): number => root.aggregate?.resources.workers ?? 0;
    // ---- baseline deploys: 10 workers, no load
    await spawnSims(PROBE_WORKERS);
    await waitFor(() => aggregateWorkers() >= PROBE_WORKERS, { timeoutMs: 30_000, intervalMs: 100, message: 'the probe workers in the aggregate' });
    await deploys(root, `${broker}.warm`, 5);
    const idleDeploys = await deploys(root, `${broker}.idle`, DEPLOYS);
    console.log(`fleet ${broker}: idle deploys ${idleDeploys.map((x) => x.toFixed(0)).join(" ")}`);
    run.idle = { cpuPct: idleCpu, rssMb: i1.rssKb / 1024, deployP50: percentile(idleDeploys, 50), deployP95: percentile(idleDeploys, 95) };
    console.log(`fleet ${broker}: idle ${idleCpu.toFixed(2)} % CPU, ${(i1.rssKb / 1024).toFixed(0)} MB; deploy p50 ${run.idle.deployP50.toFixed(1)} ms p95 ${run.idle.deployP95.toFixed(1)} ms`);

    // ---- load levels
    for (const size of SIZES) {
      const t0 = Date.now();
      await spawnSims(size - (total - PROBE_WORKERS));
      await waitFor(() => aggregateWorkers() >= total, { timeoutMs: 120_000, intervalMs: 200, message: `${total} workers in the cluster's aggregate (have ${aggregateWorkers()})` });
      const registerS = (Date.now() - t0) / 1000;
      await sleep(SETTLE_MS);
      const s0 = sample(pid);
      await sleep(WINDOW_MS);
      const s1 = sample(pid);
      if (aggregateWorkers() < total) throw new Error(`only ${aggregateWorkers()} of ${total} workers alive after the window`);
      const ds = await deploys(root, `${broker}.${size}`, DEPLOYS);
      const lv: Level = { workers: size, cpuPct: ((s1.execMs - s0.execMs) / WINDOW_MS) * 100, rssMb: Math.max(s1.rssKb, sample(pid).rssKb) / 1024, deployP50: percentile(ds, 50), deployP95: percentile(ds, 95), registerS };
      run.levels.push(lv);
      console.log(`fleet ${broker}: ${size} workers (registered in ${registerS.toFixed(1)} s): ${lv.cpuPct.toFixed(1)} % CPU, ${lv.rssMb.toFixed(0)} MB; deploy p50 ${lv.deployP50.toFixed(1)} ms p95 ${lv.deployP95.toFixed(1)} ms`);
    }

    // ---- a worker that stops reporting, at the largest size
    const job = `fleet.${broker}.silent.d`;
    const placed = await deployOnce(root, job);
    const owner = sims.find((s) => s.ids.includes(placed.worker ?? ''));
    if (owner === undefined) throw new Error(`the instance went to ${placed.worker ?? '?'}, not one of ours`);
    const dead = root.waitStatus(job, (m) => m.status === 'DEAD' || m.status === 'FAILED', 60_000);
    owner.send(`silence ${placed.worker ?? ''}`);
    const silenced = await owner.next('silenced', 30_000);
    const lastReport = Number(silenced['lastReport']);
    const d = await dead;
    run.detection = { fromLastReportMs: d.at - lastReport, fromMissedReportMs: d.at - (lastReport + REPORT_MS) };
    console.log(`fleet ${broker}: silent worker declared dead ${run.detection.fromLastReportMs} ms after its last report`);

    // ---- a cluster restart under the load
    if (RESTART) {
      const want = total - 1; // the silenced worker registers again but never reports
      await stopProcess(cluster.child, 15_000);
      const t0 = Date.now();
      // the load generator's CPU over the restart as well as the cluster's: on a small machine the
      // simulated workers' own TLS handshakes may be what bounds the time, not the cluster
      const simCpu0 = sims.reduce((a, s) => a + sample(s.child.pid ?? 0).execMs, 0);
      cluster = startClusterProc(dir, args, `${broker}-restart`);
      const c1 = cluster;
      let back = NaN;
      await waitFor(async () => {
        if (c1.child.exitCode !== null) throw new Error(`the restarted cluster ended: ${readFileSync(c1.log, 'utf8').slice(-2000)}`);
        const a = root.aggregate;
        if (a !== undefined && a.at > t0 && a.resources.workers >= want) {
          back = a.at - t0;
          return true;
        }
        return false;
      }, { timeoutMs: 180_000, intervalMs: 100, message: `every worker back after the restart (have ${aggregateWorkers()})` });
      const simCpuMs = sims.reduce((a, s) => a + sample(s.child.pid ?? 0).execMs, 0) - simCpu0;
      const clusterCpuMs = sample(c1.child.pid ?? 0).execMs;
      const stats = await Promise.all(sims.map((s) => s.stats(t0)));
      const regs = stats.flatMap((s) => s.registrations);
      const conns = stats.flatMap((s) => s.connects);
      const sorted = [...regs].sort((a, b) => a - b);
      if (DUMP !== undefined) {
        writeFileSync(DUMP, JSON.stringify({ t0, back, registrations: sorted.map((t) => t - t0), connects: conns.map((t) => t - t0).sort((a, b) => a - b), failures: stats.flatMap((s) => s.failures).map(([t, why]) => [t - t0, why]).sort((a, b) => Number(a[0]) - Number(b[0])), clusterLog: readFileSync(c1.log, 'utf8').slice(0, 200_000) }));
      }
      run.restart = {
        allBackMs: back,
        peakRegistrationsPer100ms: peakPer(regs, 100),
        peakConnectsPer100ms: peakPer(conns, 100),
        spreadP10P90Ms: sorted.length > 0 ? percentile(sorted, 90) - percentile(sorted, 10) : 0,
        workers: want,
        clusterCpuPct: (clusterCpuMs / back) * 100,
        simCpuPct: (simCpuMs / back) * 100,
      };
      console.log(`fleet ${broker}: restart: all ${want} back after ${back} ms; ${regs.length} registrations (peak ${run.restart.peakRegistrationsPer100ms} in 100 ms), ${conns.length} connects (peak ${run.restart.peakConnectsPer100ms} in 100 ms); CPU over it: cluster ${run.restart.clusterCpuPct.toFixed(0)} %, simulated workers ${run.restart.simCpuPct.toFixed(0)} % of one core`);
    }
  } catch (err) {
    run.error = err instanceof Error ? err.message : String(err);
    console.error(`fleet ${broker}: ${run.error}`);
  } finally {
    await Promise.all(sims.map((s) => s.stop().catch(() => undefined)));
    if (cluster) await stopProcess(cluster.child, 10_000);
    await root.close();
    await mosq?.stop();
    await nats?.stop();
  }
  return run;
}

export const bench: Bench = async () => {
  const build = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: repoRoot, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`node scripts/build.mjs failed: ${build.stderr}`);
  const dir = mkdtempSync(join(tmpdir(), 'oak-bench-fleet-'));
  const tj = await createTestJoin();
  const runs: BrokerRun[] = [];
  try {
    for (const b of BROKERS) runs.push(await runBroker(b, tj, dir));
  } finally {
    if (runs.every((r) => r.error === undefined)) rmSync(dir, { recursive: true, force: true });
    else console.error(`fleet: logs kept in ${dir}`);
  }
  const rows: BenchRow[] = [];
  for (const r of runs) {
    for (const lv of r.levels) {
      const n = lv.workers.toLocaleString('en-US');
      rows.push(row(`${r.broker}: cluster CPU, ${n} workers`, lv.cpuPct, r.idle.cpuPct, 'the same cluster idle, 0 workers', '% of a core'));
      rows.push(row(`${r.broker}: cluster RSS, ${n} workers`, lv.rssMb, r.idle.rssMb, 'the same cluster idle, 0 workers', 'MB'));
      rows.push(row(`${r.broker}: deploy p95 during the load, ${n} workers`, lv.deployP95, r.idle.deployP95, `deploy p95 before the load (${PROBE_WORKERS} workers)`, 'ms'));
    }
    if (r.detection) rows.push(row(`${r.broker}: silent worker declared dead, from its first missed report`, r.detection.fromMissedReportMs, 3 * REPORT_MS, '3 report intervals', 'ms'));
    if (r.restart) rows.push(row(`${r.broker}: cluster restart, every worker back`, r.restart.allBackMs, 30_000, 'the goal, 30 s', 'ms'));
  }
  return {
    name: 'fleet',
    description: `one cluster orchestrator (the bundle) with ${SIZES.join(', ')} simulated workers (${PER_PROC} a process, real registration and MQTT credentials, a report every ${REPORT_MS} ms) on ${BROKERS.join(', ')}; CPU over ${WINDOW_MS / 1000} s after ${SETTLE_MS / 1000} s of settling; ${DEPLOYS} sequential deploys per level`,
    rows,
    extra: { runs },
  };
};
