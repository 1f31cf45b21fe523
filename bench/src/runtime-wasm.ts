/**
 * Deploy-to-running of a wasm instance (WasmRuntime.start() of a WASI preview 1 module until its
 * first line in the instance log: cgroup, state file, the workload user, the module's memory
 * capped, the runner) against the same module run directly by node:wasi in a bare `node` child
 * until the same line on its stdout, interleaved run by run.
 */
import { mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WasmRuntime, lookupUser, runnerNodeFlags } from '@oak/runtimes';
import type { InstanceSpec } from '@oak/runtimes';
import { buildWasiModule, waitFor } from '@oak/testkit';
import { handOnce } from './qemu-hand.ts';
import { percentile, row } from './types.ts';
import type { Bench } from './types.ts';

const RUNS = 20;
const LINE = 'oak-bench-wasm';

/** the module run directly: node:wasi, stdout inherited, nothing else */
const DIRECT = `import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';
const wasi = new WASI({ version: 'preview1', args: ['module.wasm', ...process.argv.slice(2)], env: {}, returnOnExit: true });
const instance = await WebAssembly.instantiate(await WebAssembly.compile(readFileSync(process.env.MODULE)), wasi.getImportObject());
process.exitCode = wasi.start(instance);
`;

export const bench: Bench = async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'oak-bench-wasm-'));
  const parent = `oak-bench-wasm-${process.pid}`;
  const runAs = process.getuid?.() === 0 ? lookupUser('oak-workload') ?? lookupUser('nobody') : undefined;
  const rt = new WasmRuntime({ dataDir, workRoot: `${dataDir}-work`, cgroupParent: parent, stopGraceMs: 2000, ...(runAs !== undefined ? { runAs } : {}) });
  const module = join(dataDir, 'service.wasm');
  await writeFile(module, await buildWasiModule({ argsLine: ' up', then: 'sleep' }), { mode: 0o644 });
  const direct = join(dataDir, 'direct.mjs');
  await writeFile(direct, DIRECT);
  const ours: number[] = [];
  const bare: number[] = [];
  let probe = '';
  try {
    const p = await rt.probe();
    probe = p.detail;
    if (!p.available) throw new Error(`wasm is not available here: ${p.detail}`);
    const spec = (id: string): InstanceSpec => ({
      id, job_name: 'bench.wasm.x', instance_number: 0, virtualization: 'wasm', code: module, env: [], ports: [], one_shot: false, labels: {},
      memory_mb: 32, vcpus: 1, cmd: [LINE],
    });
    const logOf = (id: string): Promise<string> => readFile(join(dataDir, 'instances', id, 'log'), 'utf8').catch(() => '');
    const oursOnce = async (id: string): Promise<number> => {
      const t0 = performance.now();
      await rt.start(spec(id));
      await waitFor(async () => (await logOf(id)).includes(`${LINE} up`), { timeoutMs: 30_000, intervalMs: 2, message: `${id} up` });
      return performance.now() - t0;
    };
    await oursOnce('bench.wasm.x.instance.warm');
    await rt.stop('bench.wasm.x.instance.warm');
    const directOnce = (): Promise<number> => handOnce([process.execPath, ...runnerNodeFlags(), direct, LINE], `${LINE} up`, 30_000, { MODULE: module });
    await directOnce();
    for (let i = 0; i < RUNS; i++) {
      bare.push(await directOnce());
      const id = `bench.wasm.x.instance.${i}`;
      ours.push(await oursOnce(id));
      await rt.stop(id);
    }
  } finally {
    for (const s of await rt.list().catch(() => [])) await rt.stop(s.id).catch(() => undefined);
    await rt.close();
    await rm(dataDir, { recursive: true, force: true });
    await rm(`${dataDir}-work`, { recursive: true, force: true });
    for (const c of ['memory', 'cpu', 'cpuacct', 'pids', '']) await rmdir(join('/sys/fs/cgroup', c, parent)).catch(() => undefined);
  }
  return {
    name: 'runtime-wasm',
    description: `WasmRuntime.start() of a WASI preview 1 module (32 MB, its memory capped, run as ${runAs?.name ?? 'this user'}; ${probe}) until its first log line, vs the module run directly by node:wasi in a bare node child until the same line; ${RUNS} interleaved runs after a warm-up`,
    rows: [
      row('deploy-to-running p50 (ms)', percentile(ours, 50), percentile(bare, 50), 'node:wasi run directly', 'ms'),
      row('deploy-to-running p90 (ms)', percentile(ours, 90), percentile(bare, 90), 'node:wasi run directly', 'ms'),
    ],
    extra: { runs: RUNS, probe, ours_ms: ours.map(Math.round), bare_ms: bare.map(Math.round) },
  };
};
