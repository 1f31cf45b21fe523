/**
 * Many instances on one worker (issue 13 point 4): root + cluster in this process (startOakd
 * --no-worker), one NodeEngine as shipped (its bundle, apps/node-engine/dist/NodeEngine.mjs) as a
 * child process with the process runtime, one service running `/bin/sleep 600`.
 *
 * - 500 instances deployed (POST /api/service/{id}/instance, 50 at a time) until every one is
 *   RUNNING on /api/events, then all undeployed (DELETE of each) until the root lists none and no
 *   sleep of the worker is left: the total time of each, against a plain node process that spawns
 *   the same 500 `/bin/sleep 600` (50 at a time) and kills them, measured in the same run.
 * - The NodeEngine's RSS growth per instance: its VmRSS idle after registration and with the 500
 *   RUNNING (each read after the same settle time), divided by 500; against the RSS growth of the
 *   plain node process holding its 500 children. The goal: at most 0.2 MB per instance.
 *
 * OAK_BENCH_MANY_N (default 500), OAK_BENCH_MANY_ISOLATION=on (default off: no network namespace per
 * instance, as the failover bench; on: each instance in its own namespace, the NodeEngine's default).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import type { ApplicationDoc, InstanceDoc, ServiceDoc } from '@oak/contracts';
import { sleep, stopProcess, tmpDir, waitFor } from '@oak/testkit';
import type { TmpDir } from '@oak/testkit';
import type { Oakd } from '../../apps/oakd/src/oakd.ts';
import { Events, startControlPlane } from './mdoc.ts';
import { removeInstanceNetwork } from '../../apps/node-engine/src/network.ts';
import { row } from './types.ts';
import type { Bench } from './types.ts';

const N = Number(process.env.OAK_BENCH_MANY_N ?? 500);
const BATCH = 50;
const REPORT_MS = 2000;
const SETTLE_MS = 8000;
const PASSWORD = 'bench-many-secret-1';
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** pids of the `/bin/sleep 600` processes in the cgroups of this NodeEngine namespace (what the service runs) */
function sleepersIn(ns: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8') !== '/bin/sleep\u0000600\u0000') continue;
      if (readFileSync(`/proc/${d}/cgroup`, 'utf8').includes(`/${ns}/`)) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

/** the baseline: a plain node process that spawns N sleeps (BATCH at a time), reports its RSS, kills them */
const BASELINE = `
const { spawn } = require('child_process');
const fs = require('fs');
const [n, batch, settle, marker] = process.argv.slice(1).map((v, i) => i < 3 ? Number(v) : v);
const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
(async () => {
  await new Promise((r) => setTimeout(r, settle));
  const before = rss();
  const kids = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => new Promise((res, rej) => {
      const c = spawn('/bin/sleep', ['600'], { stdio: 'ignore', detached: true, env: { PATH: '/usr/bin:/bin', OAK_BENCH_MARK: marker } });
      kids.push(c);
      c.once('spawn', res);
      c.once('error', rej);
    })));
  }
  const deployMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, settle));
  const after = rss();
  const t1 = performance.now();
  await Promise.all(kids.map((c) => new Promise((res) => { c.once('exit', res); c.kill('SIGKILL'); })));
  const undeployMs = performance.now() - t1;
  console.log(JSON.stringify({ before, after, deployMs, undeployMs }));
})();
`;

export const bench: Bench = async () => {
  const started = performance.now();
  const isolation = process.env.OAK_BENCH_MANY_ISOLATION === 'on' ? 'on' : 'off';
  const marker = `oak-bench-many-${process.pid}`;
  const namespace = `oakbm${process.pid % 100000}`;
  let dir: TmpDir | undefined;
  let oakd: Oakd | undefined;
  let worker: ChildProcess | undefined;
  let baseline: ChildProcess | undefined;
  let events: Events | undefined;
  const ours = { rss_idle_kb: NaN, rss_loaded_kb: NaN, deploy_ms: NaN, undeploy_ms: NaN };
  let bare = { before: NaN, after: NaN, deployMs: NaN, undeployMs: NaN };
  try {
    const build = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: repoRoot, encoding: 'utf8' });
    const bundle = join(repoRoot, 'apps/node-engine/dist/NodeEngine.mjs');
    if (build.status !== 0 || !existsSync(bundle)) throw new Error(`node scripts/build.mjs failed: ${build.stderr}`);
    dir = await tmpDir('oak-bench-many');
    const d = dir;
    const cp = await startControlPlane(d.path, REPORT_MS, PASSWORD);
    oakd = cp.oakd;
    const { base, token, clusterPort, call } = cp;
    const log = join(d.path, 'worker.log');
    const fd = openSync(log, 'a');
    worker = spawn(process.execPath, [
      bundle, '-a', '127.0.0.1', '-p', String(clusterPort), '-n', '0', '--name', 'many',
      '--data-dir', join(d.path, 'worker'), '--containerd', join(d.path, 'no-containerd.sock'), '--namespace', namespace,
      '--report-interval', String(REPORT_MS), '--isolation', isolation, '--runtimes', 'process',
    ], { cwd: d.path, env: { ...process.env, OAK_JOIN_TOKEN: oakd.tokens.worker, NO_COLOR: '1' }, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const w = worker;
    await waitFor(async () => {
      const cs = await call<{ resources: { workers?: number } | null }[]>('GET', '/api/clusters/active');
      return cs.some((c) => (c.resources?.workers ?? 0) >= 1) ? true : undefined;
    }, { timeoutMs: 60_000, intervalMs: 200, message: 'the worker in the cluster' }).catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n${readFileSync(log, 'utf8').slice(-2000)}`);
    });
    const created = await call<ApplicationDoc[] | ApplicationDoc>('POST', '/api/application/', {
      sla_version: 'v2.0',
      customerID: 'Admin',
      applications: [{
        application_name: 'benchmany', application_namespace: 'bench', application_desc: 'many instances on one worker',
        microservices: [{ microservice_name: 'svc', microservice_namespace: 'bench', virtualization: 'process', code: '/bin/sleep', cmd: ['600'], memory: 8, vcpus: 0.001 }],
      }],
    });
    const app = (Array.isArray(created) ? created : [created])[0];
    if (!app) throw new Error('no application created');
    const [svc] = await call<ServiceDoc[]>('GET', `/api/services/${app.applicationID}`);
    if (!svc) throw new Error('no service created');
    const sid = svc.microserviceID;
    const ev = new Events();
    events = ev;
    await ev.open(`${base}/api/events?types=instance&token=${encodeURIComponent(token)}`);
    const running = new Set<number>();
    let seen = 0;
    const runningNow = (): Set<number> => {
      for (; seen < ev.log.length; seen++) {
        const e = ev.log[seen];
        if (e !== undefined && e.svc === sid && e.status === 'RUNNING') running.add(e.n);
      }
      return running;
    };

    await sleep(SETTLE_MS);
    ours.rss_idle_kb = rssKb(w.pid as number);
    const numbers: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < N; i += BATCH) {
      const docs = await Promise.all(Array.from({ length: Math.min(BATCH, N - i) }, () => call<InstanceDoc>('POST', `/api/service/${sid}/instance`)));
      numbers.push(...docs.map((x) => x.instance_number));
    }
    await waitFor(() => (numbers.every((n) => runningNow().has(n)) ? true : undefined), {
      timeoutMs: 600_000, intervalMs: 50, message: `${N} instances RUNNING`,
    }).catch(async (err: unknown) => {
      const doc = await call<ServiceDoc>('GET', `/api/service/${sid}`).catch(() => undefined);
      const by = new Map<string, number>();
      for (const x of doc?.instance_list ?? []) by.set(x.status, (by.get(x.status) ?? 0) + 1);
      throw new Error(`${err instanceof Error ? err.message : String(err)}: ${JSON.stringify([...by])}\n${readFileSync(log, 'utf8').slice(-2000)}`);
    });
    ours.deploy_ms = performance.now() - t0;
    await sleep(SETTLE_MS);
    ours.rss_loaded_kb = rssKb(w.pid as number);
    const sleeping = sleepersIn(namespace).length;
    if (sleeping < N) throw new Error(`${N} RUNNING at the root but ${sleeping} sleeps of the worker`);
    const t1 = performance.now();
    for (let i = 0; i < numbers.length; i += BATCH) {
      await Promise.all(numbers.slice(i, i + BATCH).map((n) => call('DELETE', `/api/service/${sid}/instance/${n}`)));
    }
    await waitFor(async () => {
      const doc = await call<ServiceDoc>('GET', `/api/service/${sid}`);
      return doc.instance_list.every((x) => x.status === 'UNDEPLOYED') && sleepersIn(namespace).length === 0 ? true : undefined;
    }, { timeoutMs: 600_000, intervalMs: 200, message: `${N} instances undeployed and gone` });
    ours.undeploy_ms = performance.now() - t1;
    await call('DELETE', `/api/application/${app.applicationID}`).catch(() => undefined);
    await events.close();
    events = undefined;
    await stopProcess(w, 10_000);
    worker = undefined;
    await oakd.close();
    oakd = undefined;

    // ---------------------------------------------------------- the baseline, alone on the machine's share
    const bmark = `${marker}-bare`;
    const b = spawn(process.execPath, ['-e', BASELINE, String(N), String(BATCH), String(SETTLE_MS), bmark], { stdio: ['ignore', 'pipe', 'inherit'] });
    baseline = b;
    let out = '';
    b.stdout?.on('data', (x: Buffer) => { out += x.toString(); });
    await new Promise<void>((resolve, reject) => {
      b.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`baseline exited ${String(code)}`))));
    });
    baseline = undefined;
    bare = JSON.parse(out.trim()) as typeof bare;
  } finally {
    await events?.close().catch(() => undefined);
    baseline?.kill('SIGKILL');
    if (worker) await stopProcess(worker, 10_000).catch(() => undefined);
    await oakd?.close().catch(() => undefined);
    // whatever is left of the instances (a failed run): their sleeps go
    for (const pid of sleepersIn(namespace)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    if (dir) await removeInstanceNetwork({ namespace, dataDir: join(dir.path, 'worker') }).catch(() => undefined);
    await dir?.remove().catch(() => undefined);
  }
  const mbPer = (kb: number): number => Math.round((kb / 1024 / N) * 1000) / 1000;
  const oursPer = mbPer(ours.rss_loaded_kb - ours.rss_idle_kb);
  const barePer = mbPer(bare.after - bare.before);
  const s = (ms: number): number => Math.round(ms / 10) / 100;
  return {
    name: 'many',
    description:
      `one NodeEngine (bundle, process runtime, isolation ${isolation}, report interval ${REPORT_MS} ms) under root + cluster in the bench process: ${N} process instances (/bin/sleep 600) deployed ${BATCH} at a time until all RUNNING on /api/events, then undeployed until gone; ` +
      `against a plain node process spawning and killing the same ${N} sleeps ${BATCH} at a time. RSS (VmRSS) read ${SETTLE_MS / 1000} s after registration and ${SETTLE_MS / 1000} s after the last RUNNING. Goal (issue 13): RSS growth at most 0.2 MB per instance.`,
    rows: [
      row(`${N} process instances: all RUNNING (s)`, s(ours.deploy_ms), s(bare.deployMs), `${N} bare spawns from a node process`, 's'),
      row(`${N} process instances: all undeployed and gone (s)`, s(ours.undeploy_ms), s(bare.undeployMs), `${N} kills from that node process`, 's'),
      row('NodeEngine RSS growth per instance (MB)', oursPer, barePer, 'a node process holding its children', 'MB'),
    ],
    extra: {
      n: N,
      batch: BATCH,
      isolation,
      nodeengine_rss_mb: { idle: Math.round(ours.rss_idle_kb / 102.4) / 10, loaded: Math.round(ours.rss_loaded_kb / 102.4) / 10 },
      baseline_rss_mb: { idle: Math.round(bare.before / 102.4) / 10, loaded: Math.round(bare.after / 102.4) / 10 },
      goal_mb_per_instance: 0.2,
      total_s: s(performance.now() - started),
    },
  };
};
