/**
 * Start-to-running latency of the process runtime (supervisor, state file, cgroup with limits)
 * against a bare child_process.spawn of the same executable, interleaved run by run.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessRuntime } from '@oak/runtimes';
import type { InstanceSpec } from '@oak/runtimes';
import { percentile, row } from './types.ts';
import type { Bench } from './types.ts';

const RUNS = 30;

export const bench: Bench = async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'oak-bench-proc-'));
  const rt = new ProcessRuntime({ dataDir, cgroupParent: `oak-bench-${process.pid}`, stopGraceMs: 2000 });
  const probe = await rt.probe();
  const limited = /limits by cgroup/.test(probe.detail);
  const ours: number[] = [];
  const bare: number[] = [];
  const stops: number[] = [];
  const bareChildren = new Set<number>();
  try {
    // warm-up: first spawn pays for loading code paths
    await one(rt, 'warm', limited);
    await rt.stop('warm');
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      const child = spawn('/bin/sleep', ['30'], { stdio: 'ignore', detached: true });
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
      bare.push(performance.now() - t0);
      bareChildren.add(child.pid as number);
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(child.pid as number, 'SIGKILL');
      await exited;
      bareChildren.delete(child.pid as number);

      const id = `bench.process.run.x.instance.${i}`;
      const t1 = performance.now();
      await one(rt, id, limited);
      ours.push(performance.now() - t1);
      const t2 = performance.now();
      await rt.stop(id);
      stops.push(performance.now() - t2);
    }
  } finally {
    for (const pid of bareChildren) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const s of await rt.list().catch(() => [])) await rt.stop(s.id).catch(() => undefined);
    await rt.close();
    await rm(dataDir, { recursive: true, force: true });
    await removeParentCgroups(`oak-bench-${process.pid}`);
  }
  return {
    name: 'runtime-process',
    description: `ProcessRuntime.start() of /bin/sleep (${limited ? 'own cgroup with 64 MB and 1 vcpu limits' : 'no cgroups here'}, supervisor, state file) until RUNNING, vs bare child_process.spawn until its spawn event; ${RUNS} interleaved runs`,
    rows: [
      row('start-to-running p50 (ms)', percentile(ours, 50), percentile(bare, 50), 'bare child_process.spawn', 'ms'),
      row('start-to-running p90 (ms)', percentile(ours, 90), percentile(bare, 90), 'bare child_process.spawn', 'ms'),
    ],
    extra: { runs: RUNS, probe: probe.detail, stop_p50_ms: percentile(stops, 50), stop_p90_ms: percentile(stops, 90) },
  };
};

async function one(rt: ProcessRuntime, id: string, limited: boolean): Promise<void> {
  const spec: InstanceSpec = {
    id,
    job_name: 'bench.process.run.x',
    instance_number: 0,
    virtualization: 'process',
    code: '/bin/sleep',
    cmd: ['30'],
    env: [],
    ports: [],
    one_shot: false,
    labels: {},
    ...(limited ? { memory_mb: 64, vcpus: 1 } : {}),
  };
  const st = await rt.start(spec);
  if (st.state !== 'RUNNING') throw new Error(`${id}: ${st.state} ${st.detail}`);
}

async function removeParentCgroups(parent: string): Promise<void> {
  const { rmdir } = await import('node:fs/promises');
  for (const c of ['memory', 'cpu', 'cpuacct', 'pids', 'cpu,cpuacct', '']) await rmdir(join('/sys/fs/cgroup', c, parent)).catch(() => undefined);
}
