/**
 * `npm run bench -- idle-mem` (issue 10): the memory one idle instance costs on the worker, for
 * each virtualization, against the same workload started by hand in the same run.
 *
 * Ours: the driver (ContainerdRuntime, or the supervisor with the process, wasm, unikernel or
 * microvm launcher) runs in this process, as in a NodeEngine, and starts K instances. Each
 * instance's processes are its session (the supervisor's sh wrapper and what it runs) or, for a
 * container, its containerd shim and everything under it; per instance: their PSS (shared pages
 * split among their users) and RSS from /proc/<pid>/smaps_rollup, its cgroup's memory
 * (memory.usage_in_bytes on v1, memory.current on v2: anonymous memory plus page cache and kernel
 * memory charged to it), and this process's own growth (V8 heap in use + external, after full
 * GCs) divided by K: what the driver keeps per instance.
 * Baseline: the workload alone, started by hand, K at a time: `ctr run -d` of the same image
 * with the same memory limit, and for the others the argv the driver's own child runs (read from
 * /proc: /bin/sleep, the wasm runner, qemu with the same arguments), its files copied, spawned
 * as a bare detached child with the environment the driver gave it. Each side is measured alone (PSS depends on who else maps a page),
 * a few seconds after its workload said it was up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  ContainerdRuntime, DEFAULT_MICROVM_KERNEL_DIR, MicrovmRuntime, ProcessRuntime, UnikernelRuntime, WasmRuntime, containerIdFor,
} from '@oak/runtimes';
import type { InstanceSpec, Runtime } from '@oak/runtimes';
import { buildBusyboxImage, buildTestKernel, buildWasiModule, startContainerd, startRegistry, waitFor } from '@oak/testkit';
import type { ContainerdInstance, RegistryInstance } from '@oak/testkit';
import { row } from './types.ts';
import type { Bench, BenchRow } from './types.ts';

const K = Number(process.env['OAK_BENCH_IDLE_K'] ?? 3);
const SETTLE_MS = Number(process.env['OAK_BENCH_IDLE_SETTLE_MS'] ?? 3000);
const ONLY = (process.env['OAK_BENCH_IDLE_ONLY'] ?? '').split(',').filter((s) => s !== '');
const UP = 'oak-bench-idle-up';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

// ------------------------------------------------------------------ /proc readings

interface Proc { pid: number; ppid: number; sid: number }

function procs(): Proc[] {
  const out: Proc[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      if (f[0] === 'Z') continue;
      out.push({ pid: Number(d), ppid: Number(f[1]), sid: Number(f[3]) });
    } catch {
      /* gone */
    }
  }
  return out;
}

/** the session led by `sid` (a supervised instance, or a detached child started by hand) */
function sessionOf(sid: number): number[] {
  return procs().filter((p) => p.sid === sid).map((p) => p.pid);
}

/** `root` and all its descendants */
function treeOf(root: number): number[] {
  const all = procs();
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const p of all) if (p.ppid === out[i]) out.push(p.pid);
  return out;
}

function argvOf(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
}

/** the shim of container `cid` (containerd-shim-runc-v2 ... -id <cid>) */
function shimOf(cid: string): number | undefined {
  for (const p of procs()) {
    try {
      const a = argvOf(p.pid);
      if ((a[0] ?? '').includes('containerd-shim') && a[a.indexOf('-id') + 1] === cid) return p.pid;
    } catch {
      /* gone */
    }
  }
  return undefined;
}

interface Mem { pssKb: number; rssKb: number; cgroupKb: number | undefined; procs: number }

function memOf(pids: number[], cgroupOf: number | undefined): Mem {
  let pss = 0;
  let rss = 0;
  let n = 0;
  for (const pid of pids) {
    try {
      const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      pss += Number(/^Pss:\s+(\d+)/m.exec(t)?.[1] ?? 0);
      rss += Number(/^Rss:\s+(\d+)/m.exec(t)?.[1] ?? 0);
      n++;
    } catch {
      /* gone */
    }
  }
  return { pssKb: pss, rssKb: rss, cgroupKb: cgroupOf !== undefined ? cgroupKb(cgroupOf) : undefined, procs: n };
}

/** the memory charged to the memory cgroup of `pid`, when it is not the root group */
function cgroupKb(pid: number): number | undefined {
  try {
    const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
    const v1 = lines.find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
    if (v1 !== undefined) {
      const path = v1.slice(v1.indexOf(':', v1.indexOf(':') + 1) + 1);
      if (path === '/' || path === '') return undefined;
      return Number(readFileSync(`/sys/fs/cgroup/memory${path}/memory.usage_in_bytes`, 'utf8').trim()) / 1024;
    }
    const v2 = lines.find((l) => l.startsWith('0::'));
    if (v2 === undefined || v2 === '0::/') return undefined;
    return Number(readFileSync(`/sys/fs/cgroup${v2.slice(3)}/memory.current`, 'utf8').trim()) / 1024;
  } catch {
    return undefined;
  }
}

/**
 * what this process holds for its instances (kB): V8's heap in use plus memory outside it that
 * V8 tracks (buffers), after full GCs; its RSS moves by megabytes as V8 gives pages back and is
 * no measure of a few objects per instance
 */
function selfHeldKb(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return (m.heapUsed + m.external) / 1024;
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, SETTLE_MS));
const avg = (xs: number[]): number => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);

// ------------------------------------------------------------------ one virtualization

interface Side { pssMb: number; rssMb: number; cgroupMb: number | undefined; procs: number }

interface Measured {
  virtualization: string;
  workload: string;
  baselineName: string;
  ours: Side;
  /** this process's growth per instance (MB): V8 heap + external */
  driverMb: number;
  bare: Side;
}

function side(ms: Mem[]): Side {
  const cg = ms.map((m) => m.cgroupKb).filter((x): x is number => x !== undefined);
  return { pssMb: avg(ms.map((m) => m.pssKb)) / 1024, rssMb: avg(ms.map((m) => m.rssKb)) / 1024, cgroupMb: cg.length === ms.length ? avg(cg) / 1024 : undefined, procs: avg(ms.map((m) => m.procs)) };
}

interface Supervised {
  virtualization: InstanceSpec['virtualization'];
  workload: string;
  rt: Runtime;
  dataDir: string;
  spec: (id: string) => InstanceSpec;
  /** the workload said it is up (ours: its log; by hand: its stdout) */
  upLine: string | undefined;
}

/** ours, then the same argv by hand, for a driver on the supervisor */
async function supervised(s: Supervised, scratch: string): Promise<Measured> {
  const logOf = (id: string): string => {
    try {
      return readFileSync(join(s.dataDir, 'instances', id, 'log'), 'utf8');
    } catch {
      return '';
    }
  };
  const startOurs = async (id: string): Promise<number> => {
    const st = await s.rt.start(s.spec(id));
    if (st.state !== 'RUNNING' && st.state !== 'CREATED') throw new Error(`${id} is ${st.state}: ${st.detail}`);
    if (s.upLine !== undefined) await waitFor(() => logOf(id).includes(s.upLine as string), { timeoutMs: 180_000, intervalMs: 20, message: `${id} up: ${logOf(id).slice(-300)}` });
    const pid = st.pid ?? (await s.rt.status(id))?.pid;
    if (pid === undefined) throw new Error(`${id} has no pid`);
    return pid;
  };
  // warm-up: code paths loaded, images pulled and packed, and the argv the driver's child runs
  const warm = `bench.idle.${s.virtualization}.warm.instance.0`;
  const wpid = await startOurs(warm);
  const leaf = await waitFor(() => sessionOf(wpid).find((p) => p !== wpid && !argvOf(p)[0]?.endsWith('sh')), { timeoutMs: 10_000, message: `${warm}: its workload process` });
  const byHand = await copyArgv(argvOf(leaf), [s.dataDir], join(scratch, s.virtualization));
  // and its environment (the supervisor's minimal one, HOME made anew), not this process's
  const env = Object.fromEntries(readFileSync(`/proc/${leaf}/environ`, 'utf8').split('\0').filter((kv) => kv.includes('=')).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  if (env['HOME'] !== undefined) {
    env['HOME'] = join(scratch, s.virtualization, 'home');
    await mkdir(env['HOME'], { recursive: true });
  }
  await s.rt.stop(warm);

  const before = selfHeldKb();
  const ids = Array.from({ length: K }, (_, i) => `bench.idle.${s.virtualization}.x.instance.${i}`);
  const pids: number[] = [];
  for (const id of ids) pids.push(await startOurs(id));
  await settle();
  const after = selfHeldKb();
  const ours = pids.map((p) => {
    const session = sessionOf(p);
    return memOf(session, session.find((x) => x !== p) ?? p);
  });
  for (const id of ids) await s.rt.stop(id);

  const children: ChildProcess[] = [];
  try {
    for (let i = 0; i < K; i++) children.push(await spawnByHand(byHand, env, s.upLine));
    await settle();
    const bare = children.map((c) => memOf(sessionOf(c.pid as number), undefined));
    return {
      virtualization: s.virtualization, workload: s.workload, baselineName: baselineNameOf(s.virtualization),
      ours: side(ours), driverMb: (after - before) / 1024 / K, bare: side(bare),
    };
  } finally {
    for (const c of children) killGroup(c);
  }
}

function baselineNameOf(v: string): string {
  if (v === 'process') return 'bare spawn of the same executable';
  if (v === 'wasm') return 'the wasm runner run directly, same argv';
  return 'qemu by hand, same arguments';
}

/** the argv with every file under `roots` copied into `into` and every directory made anew there */
async function copyArgv(argv: string[], roots: string[], into: string): Promise<string[]> {
  await mkdir(into, { recursive: true });
  const out: string[] = [];
  for (const [i, a] of argv.entries()) {
    const root = roots.find((r) => a.startsWith(`${r}/`));
    if (root === undefined) {
      out.push(a);
      continue;
    }
    const dest = join(into, `${i}-${a.slice(root.length + 1).replace(/\//g, '_')}`);
    const st = await stat(a).catch(() => undefined);
    // a file the workload writes (the wasm runner's end file) is not there yet: only its name
    if (st?.isDirectory() === true) await mkdir(dest, { recursive: true });
    else if (st !== undefined) await copyFile(a, dest);
    out.push(dest);
  }
  return out;
}

async function spawnByHand(argv: string[], env: Record<string, string>, upLine: string | undefined): Promise<ChildProcess> {
  const c = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env });
  let out = '';
  const collect = (d: Buffer): void => {
    out = (out + d.toString()).slice(-8192);
  };
  c.stdout?.on('data', collect);
  c.stderr?.on('data', collect);
  await new Promise<void>((resolve, reject) => {
    c.once('spawn', resolve);
    c.once('error', reject);
  });
  if (upLine !== undefined) {
    await waitFor(() => out.includes(upLine) || c.exitCode !== null, { timeoutMs: 180_000, intervalMs: 20, message: `by hand: ${upLine}` });
    if (c.exitCode !== null) throw new Error(`by hand: ${argv[0] ?? ''} exited with ${c.exitCode}: ${out.slice(-400)}`);
  }
  return c;
}

function killGroup(c: ChildProcess): void {
  try {
    process.kill(-(c.pid as number), 'SIGKILL');
  } catch {
    /* gone */
  }
}

// ------------------------------------------------------------------ containers

async function containers(image: string, ctd: ContainerdInstance, dataDir: string): Promise<Measured> {
  const rt = new ContainerdRuntime({ socket: ctd.socket, namespace: ctd.namespace, dataDir, stopGraceMs: 300, portBindAddress: '127.0.0.1' });
  const spec = (id: string): InstanceSpec => ({
    id, job_name: 'bench.idle.container.x', instance_number: 0, virtualization: 'container', code: image,
    cmd: ['sleep', '3600'], env: [], memory_mb: 64, ports: [], one_shot: false, labels: {},
  });
  const measureContainer = (cid: string): Mem => {
    const shim = shimOf(cid);
    if (shim === undefined) throw new Error(`no shim for ${cid}`);
    const tree = treeOf(shim);
    return memOf(tree, tree.find((p) => p !== shim));
  };
  try {
    await rt.start(spec('bench.idle.container.warm.instance.0'));
    await rt.stop('bench.idle.container.warm.instance.0');
    await ctd.ctr(['run', '-d', '--net-host', image, 'idle-raw-warm', 'sleep', '3600']);
    await removeRaw(ctd, 'idle-raw-warm');

    const before = selfHeldKb();
    const ids = Array.from({ length: K }, (_, i) => `bench.idle.container.x.instance.${i}`);
    for (const id of ids) {
      const st = await rt.start(spec(id));
      if (st.state !== 'RUNNING') throw new Error(`${id} is ${st.state}: ${st.detail}`);
    }
    await settle();
    const after = selfHeldKb();
    const ours = ids.map((id) => measureContainer(containerIdFor(id)));
    for (const id of ids) await rt.stop(id);

    const raw = Array.from({ length: K }, (_, i) => `idle-raw-${i}`);
    try {
      for (const r of raw) {
        await ctd.ctr(['run', '-d', '--net-host', '--memory-limit', String(64 * 1024 * 1024), '--log-uri', `file://${dataDir}/${r}.log`, image, r, 'sleep', '3600']);
      }
      await settle();
      const bare = raw.map(measureContainer);
      return {
        virtualization: 'container', workload: 'busybox sleep, 64 MB limit', baselineName: 'ctr run -d, same image and limit',
        ours: side(ours), driverMb: (after - before) / 1024 / K, bare: side(bare),
      };
    } finally {
      for (const r of raw) await removeRaw(ctd, r);
    }
  } finally {
    for (const s of await rt.list().catch(() => [])) await rt.stop(s.id).catch(() => undefined);
    await rt.close();
  }
}

async function removeRaw(ctd: ContainerdInstance, id: string): Promise<void> {
  await ctd.ctr(['tasks', 'kill', '-s', 'SIGKILL', id], { check: false });
  await ctd.ctr(['tasks', 'delete', '-f', id], { check: false });
  await ctd.ctr(['containers', 'rm', id], { check: false });
}

// ------------------------------------------------------------------ the bench

export const bench: Bench = async () => {
  const scratch = await mkdtemp(join(tmpdir(), 'oak-bench-idle-'));
  const parent = `oak-bench-idle-${process.pid}`;
  const results: Measured[] = [];
  const skipped: Record<string, string> = {};
  const want = (v: string): boolean => ONLY.length === 0 || ONLY.includes(v);
  let ctd: ContainerdInstance | undefined;
  let reg: RegistryInstance | undefined;
  const runtimes: Runtime[] = [];
  try {
    reg = await startRegistry();
    const image = await buildBusyboxImage(reg);
    if (want('container')) {
      ctd = await startContainerd();
      results.push(await containers(image, ctd, join(scratch, 'ctd')));
      await ctd.stop();
      ctd = undefined;
    }
    const sup = (name: string): { dataDir: string; cgroupParent: string; stopGraceMs: number } => ({ dataDir: join(scratch, name), cgroupParent: parent, stopGraceMs: 1000 });
    const plans: (() => Promise<Supervised | string>)[] = [
      async () => {
        const o = sup('process');
        const rt = new ProcessRuntime(o);
        runtimes.push(rt);
        return { virtualization: 'process', workload: '/bin/sleep', rt, dataDir: o.dataDir, upLine: undefined, spec: (id) => base(id, 'process', '/bin/sleep', ['3600']) };
      },
      async () => {
        const o = sup('wasm');
        const rt = new WasmRuntime(o);
        runtimes.push(rt);
        const p = await rt.probe();
        if (!p.available) return p.detail;
        const mod = join(scratch, 'idle.wasm');
        await writeFile(mod, await buildWasiModule({ text: UP, then: 'sleep' }));
        return { virtualization: 'wasm', workload: 'a WASI module that prints a line and sleeps, 64 MB', rt, dataDir: o.dataDir, upLine: UP, spec: (id) => base(id, 'wasm', mod, []) };
      },
      async () => {
        const o = sup('unikernel');
        const rt = new UnikernelRuntime(o);
        runtimes.push(rt);
        const p = await rt.probe();
        if (!p.available) return p.detail;
        const k = await buildTestKernel();
        return { virtualization: 'unikernel', workload: `the test kernel, halted, 64 MB (${p.detail})`, rt, dataDir: o.dataDir, upLine: 'oak-test-kernel: idle', spec: (id) => base(id, 'unikernel', k.archive, ['idle']) };
      },
      async () => {
        const o = sup('microvm');
        const rt = new MicrovmRuntime({ ...o, kernelDir: process.env['OAK_MICROVM_KERNEL'] ?? DEFAULT_MICROVM_KERNEL_DIR });
        runtimes.push(rt);
        const p = await rt.probe();
        if (!p.available) return p.detail;
        return {
          virtualization: 'microvm', workload: `the busybox image, a shell loop of sleep 1, 128 MB (${p.detail})`, rt, dataDir: o.dataDir, upLine: UP,
          spec: (id) => ({ ...base(id, 'microvm', image, ['sh', '-c', `echo ${UP}; while :; do sleep 1; done`]), memory_mb: 128 }),
        };
      },
    ];
    for (const plan of plans) {
      const s = await plan();
      if (typeof s === 'string') {
        skipped[String(runtimes.at(-1)?.virtualization)] = s;
        continue;
      }
      if (!want(s.virtualization)) continue;
      results.push(await supervised(s, scratch));
    }
  } finally {
    for (const rt of runtimes) {
      for (const s of await rt.list().catch(() => [])) await rt.stop(s.id).catch(() => undefined);
      await rt.close();
    }
    await ctd?.stop();
    await reg?.stop();
    await rm(scratch, { recursive: true, force: true });
    for (const c of ['memory', 'cpu', 'cpuacct', 'pids', '']) await rmdir(join('/sys/fs/cgroup', c, parent)).catch(() => undefined);
  }
  const rows: BenchRow[] = [];
  for (const m of results) {
    rows.push(row(`${m.virtualization}: idle PSS of its processes (MB)`, m.ours.pssMb, m.bare.pssMb, m.baselineName, 'MB'));
    rows.push(row(`${m.virtualization}: idle RSS of its processes (MB)`, m.ours.rssMb, m.bare.rssMb, m.baselineName, 'MB'));
    rows.push(row(`${m.virtualization}: idle memory on the worker, PSS + driver growth (MB)`, m.ours.pssMb + Math.max(0, m.driverMb), m.bare.pssMb, m.baselineName, 'MB'));
    if (m.ours.cgroupMb !== undefined && m.bare.cgroupMb !== undefined) rows.push(row(`${m.virtualization}: idle memory of its cgroup (MB)`, m.ours.cgroupMb, m.bare.cgroupMb, m.baselineName, 'MB'));
  }
  return {
    name: 'idle-mem',
    description: `memory of one idle instance per virtualization (mean of ${K} started together, measured ${SETTLE_MS} ms after up): PSS of its processes (supervisor wrapper or containerd shim included), plus the driver's own growth per instance in this process (V8 heap + external after GC); against the same workload started by hand ${K} at a time`,
    rows,
    extra: {
      k: K,
      settle_ms: SETTLE_MS,
      skipped,
      per_virtualization: Object.fromEntries(results.map((m) => [m.virtualization, {
        workload: m.workload,
        ours: { pss_mb: round(m.ours.pssMb), rss_mb: round(m.ours.rssMb), cgroup_mb: m.ours.cgroupMb !== undefined ? round(m.ours.cgroupMb) : null, processes: m.ours.procs, driver_growth_mb: round(m.driverMb) },
        by_hand: { pss_mb: round(m.bare.pssMb), rss_mb: round(m.bare.rssMb), cgroup_mb: m.bare.cgroupMb !== undefined ? round(m.bare.cgroupMb) : null, processes: m.bare.procs },
      }])),
    },
  };
};

function base(id: string, virtualization: InstanceSpec['virtualization'], code: string, cmd: string[]): InstanceSpec {
  return { id, job_name: `bench.idle.${virtualization}.x`, instance_number: 0, virtualization, code, cmd, env: [], memory_mb: 64, vcpus: 1, ports: [], one_shot: false, labels: {} };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
