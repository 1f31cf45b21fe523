/**
 * `npm run bench -- footprint` (issue 13 point 1): the idle footprint of each program as shipped
 * (the bundles, started with the flags of `make up`: --max-semi-space-size=2) in an M-DOC on
 * loopback: oak-root, oak-cluster (joined with a cluster token) and a NodeEngine (joined with a
 * worker token, no NetManager, no containerd), each idle after registration with nothing
 * deployed; against an empty Node.js process measured in the same window. RSS at the end of the
 * window (which starts after V8's memory reducer has run, 16-18 s after start), CPU over the window (the scheduler's run time of every thread, /proc/<pid>/schedstat).
 * The 1-DOC `oakd` idle figures are in the deploy bench. OAK_BENCH_NODE_ENGINE=<file> measures
 * another NodeEngine bundle (to compare build options).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from '@oak/testkit';
import { row, type BenchResult } from './types.ts';
import { sample } from './proc.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const PASSWORD = 'bench-footprint-1';
const SETTLE_MS = Number(process.env.OAK_BENCH_IDLE_SETTLE_MS ?? 25_000);
const WINDOW_MS = Number(process.env.OAK_BENCH_IDLE_WINDOW_MS ?? 20_000);
const NODE_FLAGS = ['--max-semi-space-size=2'];

interface Child {
  name: string;
  child: ChildProcess;
  log: string;
}

async function api<T>(base: string, method: string, path: string, token?: string, body?: unknown): Promise<T> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

export async function bench(): Promise<BenchResult> {
  const build = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: repoRoot, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`node scripts/build.mjs failed: ${build.stderr}`);
  const dir = mkdtempSync(join(tmpdir(), 'oak-bench-footprint-'));
  const children: Child[] = [];
  const start = (name: string, argv: string[], env: Record<string, string> = {}): Child => {
    const log = join(dir, `${name}.log`);
    const fd = openSync(log, 'a');
    const child = spawn(process.execPath, argv, { cwd: dir, env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const c = { name, child, log };
    children.push(c);
    return c;
  };
  const tail = (c: Child): string => (existsSync(c.log) ? readFileSync(c.log, 'utf8').slice(-1500) : '');
  try {
    const [apiPort, linkPort, clusterPort, mqttPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const base = `http://127.0.0.1:${apiPort}`;
    const root = start('root', [...NODE_FLAGS, join(repoRoot, 'apps/root/dist/oak-root.mjs'), '--host', '127.0.0.1', '-p', String(apiPort), '--link-port', String(linkPort), '--data-dir', join(dir, 'root'), '--log-level', 'warn'], { OAK_ADMIN_PASSWORD: PASSWORD });
    await waitFor(async () => ((await fetch(`${base}/healthz`).catch(() => undefined))?.ok ? true : undefined), { timeoutMs: 30_000, intervalMs: 100, message: `the root up\n${tail(root)}` });
    const { token } = await api<{ token: string }>(base, 'POST', '/api/auth/login', undefined, { username: 'Admin', password: PASSWORD });
    const clusterToken = (await api<{ token: string }>(base, 'POST', '/api/tokens', token, { kind: 'cluster', name: 'fp' })).token;
    const workerToken = (await api<{ token: string }>(base, 'POST', '/api/tokens', token, { kind: 'worker', cluster: 'fp' })).token;
    const cluster = start('cluster', [...NODE_FLAGS, join(repoRoot, 'apps/cluster/dist/oak-cluster.mjs'), '--host', '127.0.0.1', '-n', 'fp', '-r', `127.0.0.1:${linkPort}`, '-p', String(clusterPort), '--mqtt-port', String(mqttPort)], { OAK_JOIN_TOKEN: clusterToken });
    const worker = start('node-engine', [
      ...NODE_FLAGS, process.env.OAK_BENCH_NODE_ENGINE ?? join(repoRoot, 'apps/node-engine/dist/NodeEngine.mjs'), '-a', '127.0.0.1', '-p', String(clusterPort), '-n', '0', '--name', 'fp-w1',
      '--data-dir', join(dir, 'worker'), '--containerd', join(dir, 'no-containerd.sock'), '--namespace', `oakfp${process.pid % 10000}`, '--isolation', 'off',
    ], { OAK_JOIN_TOKEN: workerToken });
    start('empty-node', ['-e', 'setInterval(() => {}, 1000)']);
    await waitFor(async () => {
      const cs = await api<{ cluster_name: string; resources: { workers: number } | null }[]>(base, 'GET', '/api/clusters/active', token);
      return cs.some((c) => c.cluster_name === 'fp' && c.resources?.workers === 1) ? true : undefined;
    }, { timeoutMs: 60_000, intervalMs: 200, message: `the cluster active with its worker\n${tail(cluster)}\n${tail(worker)}` });
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const before = children.map((c) => sample(c.child.pid as number));
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const after = children.map((c) => sample(c.child.pid as number));
    const idle = new Map(children.map((c, i) => {
      const a = after[i] as { execMs: number; rssKb: number };
      const b = before[i] as { execMs: number; rssKb: number };
      return [c.name, { rss_mb: Math.round((a.rssKb / 1024) * 10) / 10, cpu_pct: Math.round(((a.execMs - b.execMs) / WINDOW_MS) * 100 * 1000) / 1000 }];
    }));
    const empty = idle.get('empty-node') as { rss_mb: number; cpu_pct: number };
    const rows = [];
    for (const [name, label] of [['node-engine', 'NodeEngine'], ['cluster', 'cluster orchestrator'], ['root', 'root orchestrator']] as const) {
      const m = idle.get(name) as { rss_mb: number; cpu_pct: number };
      rows.push(row(`${label} idle RSS (MB)`, m.rss_mb, empty.rss_mb, 'empty node process', 'MB'));
      rows.push(row(`${label} idle CPU (% of one core)`, m.cpu_pct, empty.cpu_pct, 'empty node process', '%'));
    }
    return {
      name: 'footprint',
      description: `M-DOC on loopback from the bundles (${NODE_FLAGS.join(' ')}): root, cluster (embedded broker), one NodeEngine (no NetManager, no containerd, report every 2 s), idle ${SETTLE_MS / 1000} s after registration, then measured over ${WINDOW_MS / 1000} s; against an empty node process in the same window.`,
      rows,
      extra: Object.fromEntries(idle),
    };
  } finally {
    for (const c of children.reverse()) {
      c.child.kill('SIGTERM');
      await new Promise<void>((resolve) => {
        if (c.child.exitCode !== null || c.child.signalCode !== null) return resolve();
        const t = setTimeout(() => {
          c.child.kill('SIGKILL');
          resolve();
        }, 10_000);
        c.child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
