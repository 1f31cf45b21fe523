/**
 * The clusters of the `root-scale` benchmark, in a process of their own (so the root's CPU and RSS
 * are its own): N simulated cluster orchestrators, each speaking the real root link (the cluster's
 * own LinkClient: TLS pinned by the join token, hello, welcome, pings) with W fake workers behind
 * it. Each one does what a cluster does on the link, without a broker or real workers:
 *
 * - an `aggregate` every AGGREGATE_MS (as oak-cluster's default) and 50 ms after a change: its
 *   W workers with their free capacity (what its instances hold subtracted), and the usage reading
 *   of every running instance (as the cluster passes its workers' readings on);
 * - `deploy`: the instance goes on the worker with the most free memory that has its
 *   virtualization: NODE_SCHEDULED at once, CREATING 20-60 ms later, RUNNING 100-400 ms later
 *   (a probe's `healthy` for services with a health check; one instance in 200 fails once with
 *   FAILED instead, as a crashing image: the root keeps it FAILED, as in a real fleet; one in 50
 *   comes up after local restarts);
 * - `undeploy`: the instance goes (nothing is reported, as the cluster);
 * - `sync` (after every welcome): the root's full desired set: unknown instances are deployed,
 *   known ones reported again, the others dropped.
 *
 * Every RUNNING report is stamped with process.hrtime (CLOCK_MONOTONIC, the same clock in every
 * process of the machine) so the SSE clients can measure the lag from the cluster to them.
 *
 * argv: <config json>. stdin lines: `count` -> `count <running> <failed> <reports sent>`; `sent <file>` ->
 * writes {"<job>#<n>": <ns of the RUNNING report>} for every RUNNING sent since the last `sent`
 * and answers `sent <k>`; `pending` -> `pending <RUNNING sent since the last sent>`; `quit`. stdout: `ready` once every cluster is welcomed.
 */
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { consoleLogger } from '@oak/bus';
import { CLUSTER_VERSION, LinkClient } from '@oak/cluster';
import type { ClusterResources, ClusterToRoot, InstanceAssignment, InstanceUsage, RootToCluster, WorkerSummary } from '@oak/contracts';

interface Config {
  address: string;
  workers: number;
  clusters: { name: string; token: string; location: string }[];
  aggregateMs: number;
}

const cfg = JSON.parse((await import('node:fs')).readFileSync(process.argv[2] ?? '', 'utf8')) as Config;

const CORES = 8;
const MEMORY_MB = 16_384;
const VIRT = ['container', 'process'] as const;

/** a stable hash of a string (which instances fail once, restart, ...) */
function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

interface Worker {
  id: string;
  name: string;
  memUsed: number;
  cpuUsed: number;
  conn: string;
}

interface Held {
  a: InstanceAssignment;
  worker: Worker;
  status: 'NODE_SCHEDULED' | 'CREATING' | 'RUNNING' | 'FAILED';
  timers: NodeJS.Timeout[];
  restarts: number;
}

let running = 0;
/** instances that failed (FAILED is final at the root: they stay, as in a real fleet) */
let failed = 0;
let reports = 0;
let sentRunning: Record<string, number> = {};
const failedOnce = new Set<string>();

class SimCluster {
  readonly workers: Worker[];
  readonly held = new Map<string, Held>();
  readonly link: LinkClient;
  #aggSoon: NodeJS.Timeout | undefined;
  welcomed = false;

  constructor(readonly name: string, token: string, readonly location: string) {
    this.workers = Array.from({ length: cfg.workers }, (_, i) => ({ id: `${name}-w${String(i).padStart(3, '0')}`, name: `${name}-node-${i}`, memUsed: 0, cpuUsed: 0, conn: `c${hash(name + i).toString(16)}` }));
    this.link = new LinkClient({
      address: cfg.address,
      token,
      clusterName: name,
      clusterLocation: location,
      version: CLUSTER_VERSION,
      // warnings to stderr (the bench's log file of this process)
      log: consoleLogger(`sim ${name}`, 'warn'),
      handlers: {
        onWelcome: () => {
          this.welcomed = true;
          this.aggregate();
          check();
        },
        onMessage: (m) => this.onMessage(m),
      },
    });
  }

  send(m: ClusterToRoot): void {
    if (this.link.send(m)) reports++;
  }

  onMessage(m: RootToCluster): void {
    switch (m.type) {
      case 'deploy':
        this.deploy(m.instance);
        return;
      case 'undeploy': {
        const key = `${m.job_name}#${m.instance_number}`;
        const h = this.held.get(key);
        if (!h || (m.epoch !== undefined && h.a.epoch !== undefined && h.a.epoch !== m.epoch)) return;
        this.drop(key, h);
        this.aggregateSoon();
        return;
      }
      case 'sync': {
        const wanted = new Map(m.instances.map((a) => [`${a.job_name}#${a.instance_number}`, a]));
        for (const [key, h] of [...this.held]) if (!wanted.has(key)) this.drop(key, h);
        for (const [key, a] of wanted) {
          const h = this.held.get(key);
          if (h) {
            h.a = a;
            this.report(key, h);
          } else this.deploy(a);
        }
        this.aggregateSoon();
        return;
      }
      default:
        // peers, table updates, subnet answers, logs: nothing a fake worker needs
        return;
    }
  }

  drop(key: string, h: Held): void {
    for (const t of h.timers) clearTimeout(t);
    if (h.status === 'RUNNING') running--;
    if (h.status === 'FAILED') failed--;
    h.worker.memUsed -= h.a.service.memory ?? 0;
    h.worker.cpuUsed -= h.a.service.vcpus ?? 0;
    this.held.delete(key);
  }

  deploy(a: InstanceAssignment): void {
    const key = `${a.job_name}#${a.instance_number}`;
    const had = this.held.get(key);
    if (had) {
      // the same placement again (or a newer epoch): the running copy stays, reported again
      if (a.epoch === undefined || had.a.epoch === undefined || a.epoch >= had.a.epoch) had.a = a;
      this.report(key, had);
      return;
    }
    const mem = a.service.memory ?? 0;
    const cpu = a.service.vcpus ?? 0;
    let best: Worker | undefined;
    const byId = a.worker_id ?? null;
    if (byId !== null) best = this.workers.find((w) => w.id === byId);
    if (!best) {
      for (const w of this.workers) if (w.memUsed + mem <= MEMORY_MB && w.cpuUsed + cpu <= CORES && (!best || w.memUsed < best.memUsed)) best = w;
    }
    if (!best) {
      this.send({ type: 'instance_status', job_name: a.job_name, instance_number: a.instance_number, status: 'CLUSTER_SCHEDULED', status_detail: 'NO_WORKER_CAPACITY', worker_id: null });
      return;
    }
    best.memUsed += mem;
    best.cpuUsed += cpu;
    const h: Held = { a, worker: best, status: 'NODE_SCHEDULED', timers: [], restarts: 0 };
    this.held.set(key, h);
    this.report(key, h);
    const fails = hash(key) % 200 === 7 && !failedOnce.has(key);
    h.timers.push(setTimeout(() => {
      h.status = 'CREATING';
      this.report(key, h);
    }, 20 + Math.random() * 40));
    h.timers.push(setTimeout(() => {
      if (fails) {
        failedOnce.add(key);
        h.status = 'FAILED';
        failed++;
      } else {
        h.status = 'RUNNING';
        running++;
        if (hash(key) % 50 === 3) h.restarts = 1 + (hash(key) % 3);
      }
      this.report(key, h);
    }, 100 + Math.random() * 300));
    this.aggregateSoon();
  }

  report(key: string, h: Held): void {
    const m: Extract<ClusterToRoot, { type: 'instance_status' }> = {
      type: 'instance_status',
      job_name: h.a.job_name,
      instance_number: h.a.instance_number,
      status: h.status,
      status_detail: h.status === 'FAILED' ? 'the container exited with code 1' : h.restarts > 0 && h.status === 'RUNNING' ? `restarted ${h.restarts} times on the worker` : '',
      worker_id: h.worker.id,
      publicip: `10.${hash(this.name) % 250}.${Math.floor(this.workers.indexOf(h.worker) / 250)}.${this.workers.indexOf(h.worker) % 250}`,
    };
    if (h.a.epoch !== undefined) m.epoch = h.a.epoch;
    if (h.status === 'RUNNING' && h.a.service.health !== undefined) m.health = 'healthy';
    if (h.restarts > 0) m.restarts = h.restarts;
    this.send(m);
    if (h.status === 'RUNNING') sentRunning[key] = Number(process.hrtime.bigint());
  }

  aggregateSoon(): void {
    if (this.#aggSoon) return;
    this.#aggSoon = setTimeout(() => this.aggregate(), 50);
  }

  aggregate(): void {
    clearTimeout(this.#aggSoon);
    this.#aggSoon = undefined;
    if (!this.welcomed) return;
    const now = Date.now();
    const summary: WorkerSummary[] = this.workers.map((w, i) => ({
      id: w.id,
      name: w.name,
      cpu_cores_free: Math.max(0, Math.round((CORES - w.cpuUsed) * 100) / 100),
      memory_free_mb: Math.max(0, MEMORY_MB - w.memUsed),
      virtualizations: [...VIRT],
      arch: 'amd64',
      location: `${this.location.split(',')[0]},${(Number(this.location.split(',')[1]) + i / 1000).toFixed(3)}`,
      cpu_percent: Math.round((w.cpuUsed / CORES) * 60 * 10) / 10,
      cpu_cores_total: CORES,
      memory_total_mb: MEMORY_MB,
      memory_available_mb: Math.max(0, MEMORY_MB - w.memUsed * 0.7),
      disk_free_mb: 80_000,
      disk_total_mb: 120_000,
      os: 'linux',
      version: CLUSTER_VERSION,
      conn: w.conn,
      reported_at: now - (i % 20) * 100,
    }));
    const resources: ClusterResources = {
      cpu_cores_free: summary.reduce((s, w) => s + w.cpu_cores_free, 0),
      cpu_cores_total: CORES * this.workers.length,
      memory_free_mb: summary.reduce((s, w) => s + w.memory_free_mb, 0),
      memory_total_mb: MEMORY_MB * this.workers.length,
      gpus_free: 0,
      virtualizations: [...VIRT],
      workers: this.workers.length,
      worker_summary: summary,
      version: CLUSTER_VERSION,
    };
    const usage: InstanceUsage[] = [];
    for (const h of this.held.values()) {
      if (h.status !== 'RUNNING') continue;
      usage.push({ job_name: h.a.job_name, instance_number: h.a.instance_number, worker_id: h.worker.id, cpu_percent: Math.round(Math.random() * 2000) / 100, memory_mb: Math.round((h.a.service.memory ?? 64) * (0.4 + Math.random() * 0.4)) });
    }
    this.send(usage.length > 0 ? { type: 'aggregate', resources, usage } : { type: 'aggregate', resources });
  }
}

const sims = cfg.clusters.map((c) => new SimCluster(c.name, c.token, c.location));
let ready = false;
function check(): void {
  if (!ready && sims.every((s) => s.welcomed)) {
    ready = true;
    process.stdout.write('ready\n');
  }
}
for (const s of sims) s.link.start();
const timer = setInterval(() => {
  for (const s of sims) s.aggregate();
}, cfg.aggregateMs);

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = line.trim();
  if (cmd === 'quit') break;
  if (cmd === 'count') process.stdout.write(`count ${running} ${failed} ${reports}\n`);
  if (cmd === 'pending') process.stdout.write(`pending ${Object.keys(sentRunning).length}\n`);
  const m = /^sent (.+)$/.exec(cmd);
  if (m?.[1] !== undefined) {
    writeFileSync(m[1], JSON.stringify(sentRunning));
    process.stdout.write(`sent ${Object.keys(sentRunning).length}\n`);
    sentRunning = {};
  }
}
clearInterval(timer);
await Promise.all(sims.map((s) => s.link.close()));
process.exit(0);
