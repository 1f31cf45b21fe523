/**
 * Scheduler throughput and quality, against a naive Oakestra-like scheduler measured in the same
 * run. The naive one (below) does what Oakestra's calculation step does per decision: scan every
 * worker document, recompute its free resources and parse its location, filter, sort the
 * survivors, take the first; it keeps no accounting between decisions, so a burst of placements
 * all see the same stale report.
 *
 * Ours: pickWorker/pickCluster on candidates the cluster keeps up to date as reports arrive, plus
 * reserve() of the chosen candidate after every decision (accounting is included in the time).
 */
import { haversineKm, parseGeoPoint, pickCluster, pickWorker, reserveCluster, reserveWorker, type ClusterCandidate, type Demand, type WorkerCandidate } from '@oak/scheduler';
import type { Virtualization, WorkerSummary } from '@oak/contracts';
import { row, type Bench, type BenchRow } from './types.ts';

/** Deterministic PRNG (mulberry32) so that every run measures the same inputs. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SITES = ['48.137,11.575', '52.52,13.405', '48.857,2.352', '40.4,-3.7', '48.2,16.37', '59.33,18.07'];

/** A worker as the naive scheduler sees it: the raw report fields, nothing precomputed. */
interface RawWorker {
  _id: string;
  node_name: string;
  cpu_cores: number;
  current_cpu_percent: number;
  current_cpu_cores_free: number;
  memory_mb: number;
  current_memory_free_in_MB: number;
  gpus: number;
  virtualization: string[];
  location: string | null;
  instances: string[];
}

interface RawJob {
  job_name: string;
  virtualization: string;
  vcpus: number;
  memory: number;
  geo?: { location: string; threshold: number };
}

function rawWorkers(n: number, seed: number): RawWorker[] {
  const r = prng(seed);
  return Array.from({ length: n }, (_, i) => {
    const cores = [2, 4, 8, 16][Math.floor(r() * 4)] as number;
    const mem = cores * 2048;
    return {
      _id: `w${i}`,
      node_name: `worker-${i}`,
      cpu_cores: cores,
      current_cpu_percent: Math.round(r() * 90),
      current_cpu_cores_free: Math.round(cores * (0.2 + 0.8 * r()) * 10) / 10,
      memory_mb: mem,
      current_memory_free_in_MB: Math.round(mem * (0.2 + 0.8 * r())),
      gpus: r() < 0.1 ? 1 : 0,
      virtualization: r() < 0.8 ? ['container'] : ['container', 'process'],
      location: SITES[Math.floor(r() * SITES.length)] as string,
      instances: r() < 0.3 ? ['other.app.svc.ns.instance.0'] : [],
    };
  });
}

function candidateOf(w: RawWorker): WorkerCandidate {
  return {
    id: w._id,
    name: w.node_name,
    cpu_cores_total: w.cpu_cores,
    cpu_cores_free: w.current_cpu_cores_free,
    memory_total_mb: w.memory_mb,
    memory_free_mb: w.current_memory_free_in_MB,
    gpus_free: w.gpus,
    cpu_percent: w.current_cpu_percent,
    virtualizations: w.virtualization as Virtualization[],
    location: parseGeoPoint(w.location),
    jobs: w.instances.map((x) => x.replace(/\.instance\.\d+$/, '')),
  };
}

/** The naive baseline: per decision, scan and recompute everything, sort, take the first. */
function naivePickWorker(job: RawJob, workers: readonly RawWorker[]): RawWorker | undefined {
  const candidates: { w: RawWorker; load: number }[] = [];
  for (const w of workers) {
    if (!w.virtualization.includes(job.virtualization)) continue;
    const free = { cpu: w.current_cpu_cores_free, mem: w.current_memory_free_in_MB };
    if (free.cpu < job.vcpus || free.mem < job.memory) continue;
    if (job.geo) {
      const [lat, long] = (w.location ?? '').split(',').map(Number);
      const [clat, clong] = job.geo.location.split(',').map(Number);
      if (lat === undefined || long === undefined || clat === undefined || clong === undefined) continue;
      if (haversineKm({ lat, long }, { lat: clat, long: clong }) > job.geo.threshold) continue;
    }
    candidates.push({ w, load: w.current_cpu_percent / 100 + 1 - free.mem / w.memory_mb });
  }
  candidates.sort((a, b) => a.load - b.load);
  return candidates[0]?.w;
}

interface RawCluster {
  _id: string;
  active: boolean;
  cluster_location: string;
  workers: WorkerSummary[];
}

function naivePickCluster(job: RawJob, clusters: readonly RawCluster[]): RawCluster | undefined {
  const candidates: { c: RawCluster; left: number }[] = [];
  for (const c of clusters) {
    if (!c.active) continue;
    // recompute the aggregate from the worker documents, every decision
    let cpu = 0;
    let mem = 0;
    let virt = false;
    for (const w of c.workers) {
      cpu += w.cpu_cores_free;
      mem += w.memory_free_mb;
      if (w.virtualizations.includes(job.virtualization as Virtualization)) virt = true;
    }
    if (!virt || cpu < job.vcpus || mem < job.memory) continue;
    if (job.geo) {
      const [lat, long] = c.cluster_location.split(',').map(Number);
      const [clat, clong] = job.geo.location.split(',').map(Number);
      if (lat === undefined || long === undefined || clat === undefined || clong === undefined) continue;
      if (haversineKm({ lat, long }, { lat: clat, long: clong }) > job.geo.threshold) continue;
    }
    candidates.push({ c, left: cpu - job.vcpus + (mem - job.memory) / 1024 });
  }
  candidates.sort((a, b) => a.left - b.left);
  return candidates[0]?.c;
}

/** Runs `step` for about `budgetMs` and returns the rate per second. */
function rate(step: (i: number) => void, budgetMs: number): number {
  for (let i = 0; i < 20; i++) step(i);
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < budgetMs) {
    for (let k = 0; k < 16; k++) step(n++);
    t = performance.now();
  }
  return (n * 1000) / (t - t0);
}

const JOB = 'bench.app.svc.ns';
const demand: Demand = {
  job_name: JOB,
  virtualization: 'container',
  vcpus: 0.1,
  memory_mb: 64,
  gpus: 0,
  constraints: [{ type: 'geo', location: '50.1,8.68', threshold: 1200 }],
};
const rawJob: RawJob = { job_name: JOB, virtualization: 'container', vcpus: 0.1, memory: 64, geo: { location: '50.1,8.68', threshold: 1200 } };

function workerRows(n: number, budgetMs: number): BenchRow[] {
  const raw = rawWorkers(n, n);
  const initial = raw.map(candidateOf);
  let current = [...initial];
  // Ours: decide, then reserve on the chosen worker. Every n decisions the state is reset to the
  // last report (as when fresh reports arrive), so the pool never runs dry.
  const ours = rate((i) => {
    if (i % n === 0) current = [...initial];
    const p = pickWorker(demand, current);
    if (p.ok) {
      const k = current.indexOf(p.target);
      current[k] = reserveWorker(p.target, demand);
    }
  }, budgetMs);
  const naive = rate(() => {
    naivePickWorker(rawJob, raw);
  }, budgetMs);
  return [row(`pickWorker, ${n.toLocaleString('en')} workers`, ours, naive, 'naive scan+sort, no accounting', 'decisions/s', 'higher')];
}

function clustersOf(n: number, workersPer: number): ClusterCandidate[] {
  const r = prng(7 + n);
  return Array.from({ length: n }, (_, c) => {
    const workers: WorkerSummary[] = Array.from({ length: workersPer }, (_, i) => ({
      id: `c${c}w${i}`,
      name: `c${c}w${i}`,
      cpu_cores_free: Math.round(r() * 80) / 10,
      memory_free_mb: Math.round(r() * 16384),
      virtualizations: ['container'],
      location: null,
    }));
    return {
      id: `c${c}`,
      name: `cluster-${c}`,
      active: r() < 0.95,
      location: parseGeoPoint(SITES[c % SITES.length]),
      cpu_cores_free: workers.reduce((s, w) => s + w.cpu_cores_free, 0),
      memory_free_mb: workers.reduce((s, w) => s + w.memory_free_mb, 0),
      gpus_free: 0,
      virtualizations: ['container'],
      workers,
      jobs: [],
    };
  });
}

function clusterRows(n: number, budgetMs: number): BenchRow[] {
  const initial = clustersOf(n, 20);
  let current = [...initial];
  const ours = rate((i) => {
    if (i % (n * 20) === 0) current = [...initial];
    const p = pickCluster(demand, current);
    if (p.ok) {
      const k = current.indexOf(p.target);
      current[k] = reserveCluster(p.target, demand);
    }
  }, budgetMs);
  const raw: RawCluster[] = initial.map((c, i) => ({ _id: c.id, active: c.active, cluster_location: SITES[i % SITES.length] as string, workers: c.workers }));
  const naive = rate(() => {
    naivePickCluster(rawJob, raw);
  }, budgetMs);
  return [row(`pickCluster, ${n} clusters x 20 workers`, ours, naive, 'naive scan+sort, no accounting', 'decisions/s', 'higher')];
}

/** A burst of placements before any new report: how many land beyond a worker's capacity. */
function burstRows(): BenchRow[] {
  const n = 100;
  const raw = rawWorkers(n, 42).map((w) => ({ ...w, current_cpu_cores_free: 1, current_memory_free_in_MB: 4096 }));
  const job: RawJob = { job_name: JOB, virtualization: 'container', vcpus: 1, memory: 256 };
  const d: Demand = { job_name: JOB, virtualization: 'container', vcpus: 1, memory_mb: 256, gpus: 0, constraints: [] };
  const burst = 2 * n;
  // naive: every decision sees the same report
  const naiveCount = new Map<string, number>();
  for (let i = 0; i < burst; i++) {
    const w = naivePickWorker(job, raw);
    if (w) naiveCount.set(w._id, (naiveCount.get(w._id) ?? 0) + 1);
  }
  const naiveOver = [...naiveCount.values()].reduce((s, k) => s + Math.max(0, k - 1), 0);
  let ws = raw.map(candidateOf);
  const ourCount = new Map<string, number>();
  for (let i = 0; i < burst; i++) {
    const p = pickWorker(d, ws);
    if (!p.ok) continue;
    ourCount.set(p.target.id, (ourCount.get(p.target.id) ?? 0) + 1);
    ws = ws.map((w) => (w === p.target ? reserveWorker(w, d) : w));
  }
  const ourOver = [...ourCount.values()].reduce((s, k) => s + Math.max(0, k - 1), 0);
  // 10 replicas of one service: on how many distinct workers?
  const free = raw.map((w) => ({ ...w, current_cpu_cores_free: 8 }));
  const naiveSpread = new Set(Array.from({ length: 10 }, () => naivePickWorker(job, free)?._id)).size;
  let ws2 = free.map(candidateOf);
  const ourSpread = new Set<string>();
  for (let i = 0; i < 10; i++) {
    const p = pickWorker(d, ws2);
    if (!p.ok) continue;
    ourSpread.add(p.target.id);
    ws2 = ws2.map((w) => (w === p.target ? reserveWorker(w, d) : w));
  }
  return [
    row(`instances over capacity after a burst of ${burst} on ${n} one-core workers`, ourOver, naiveOver, 'naive scan+sort, no accounting', 'instances', 'lower'),
    row('distinct workers for 10 replicas', ourSpread.size, naiveSpread, 'naive scan+sort, no accounting', 'workers', 'higher'),
  ];
}

export const bench: Bench = async () => {
  const budgetMs = Number(process.env.OAK_BENCH_SCHED_MS ?? 400);
  const rows: BenchRow[] = [];
  for (const n of [100, 1_000, 10_000]) rows.push(...workerRows(n, budgetMs));
  for (const n of [10, 100]) rows.push(...clusterRows(n, budgetMs));
  rows.push(...burstRows());
  return {
    name: 'scheduler',
    description:
      'Scheduling decisions per second (ours: feasibility + ranking + anti-affinity + geo constraint + reserve() after each decision) ' +
      'against a naive Oakestra-like scheduler measured in the same run (scan every worker, recompute, sort, no accounting); ' +
      'plus placement quality in a burst before the next resource report.',
    rows,
    extra: { budget_ms_per_measurement: budgetMs, demand: { vcpus: demand.vcpus, memory_mb: demand.memory_mb, geo_threshold_km: 1200 } },
  };
};
