/**
 * Deploy-to-running of a microvm (MicrovmRuntime.start() of the busybox image until the workload's
 * first console line) against qemu started by hand with the same arguments (the argv of the
 * driver's own qemu, read from /proc, and a copy of its initrd) until the same line, interleaved
 * run by run. The image is pulled and packed once before (warm-up): the rows are the boot.
 */
import { copyFile, mkdtemp, readFile, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MICROVM_KERNEL_DIR, MicrovmRuntime } from '@oak/runtimes';
import type { InstanceSpec } from '@oak/runtimes';
import { buildBusyboxImage, startRegistry, waitFor } from '@oak/testkit';
import { handOnce, qemuArgvOf } from './qemu-hand.ts';
import { percentile, row } from './types.ts';
import type { Bench } from './types.ts';

const RUNS = 5;
const LINE = 'oak-bench-microvm-up';

export const bench: Bench = async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'oak-bench-mvm-'));
  const parent = `oak-bench-mvm-${process.pid}`;
  const rt = new MicrovmRuntime({ dataDir, cgroupParent: parent, stopGraceMs: 2000, kernelDir: process.env['OAK_MICROVM_KERNEL'] ?? DEFAULT_MICROVM_KERNEL_DIR });
  const reg = await startRegistry();
  const ours: number[] = [];
  const bare: number[] = [];
  let probe = '';
  try {
    const p = await rt.probe();
    probe = p.detail;
    if (!p.available) throw new Error(`microvm is not available here: ${p.detail}`);
    const image = await buildBusyboxImage(reg);
    const spec = (id: string): InstanceSpec => ({
      id, job_name: 'bench.microvm.x', instance_number: 0, virtualization: 'microvm', code: image, env: [], ports: [], one_shot: false, labels: {},
      memory_mb: 128, vcpus: 1, cmd: ['sh', '-c', `echo ${LINE}; while :; do sleep 1; done`],
    });
    const logOf = (id: string): Promise<string> => readFile(join(dataDir, 'instances', id, 'log'), 'utf8').catch(() => '');
    const oursOnce = async (id: string): Promise<number> => {
      const t0 = performance.now();
      await rt.start(spec(id));
      await waitFor(async () => (await logOf(id)).includes(LINE), { timeoutMs: 180_000, intervalMs: 20, message: `${id} up` });
      return performance.now() - t0;
    };
    await oursOnce('bench.microvm.x.instance.warm');
    const warmInitrd = join(dataDir, 'instances', 'bench.microvm.x.instance.warm', 'initrd');
    const argv = await qemuArgvOf((a) => a === warmInitrd, warmInitrd);
    const initrd = join(dataDir, 'bench-initrd');
    await copyFile(join(dataDir, 'instances', 'bench.microvm.x.instance.warm', 'initrd'), initrd);
    await rt.stop('bench.microvm.x.instance.warm');
    const byHand = argv.map((a) => (a.endsWith('/initrd') ? initrd : a));
    for (let i = 0; i < RUNS; i++) {
      bare.push(await handOnce(byHand, LINE));
      const id = `bench.microvm.x.instance.${i}`;
      ours.push(await oursOnce(id));
      await rt.stop(id);
    }
  } finally {
    for (const s of await rt.list().catch(() => [])) await rt.stop(s.id).catch(() => undefined);
    await rt.close();
    await reg.stop();
    await rm(dataDir, { recursive: true, force: true });
    for (const c of ['memory', 'cpu', 'cpuacct', 'pids', '']) await rmdir(join('/sys/fs/cgroup', c, parent)).catch(() => undefined);
  }
  return {
    name: 'runtime-microvm',
    description: `MicrovmRuntime.start() of the busybox image (128 MB, 1 vcpu; ${probe}) until its first console line, vs qemu started by hand with the same argv and initrd until the same line; ${RUNS} interleaved runs after a warm-up that pulls and packs the image`,
    rows: [
      row('deploy-to-running p50 (ms)', percentile(ours, 50), percentile(bare, 50), 'qemu by hand, same arguments', 'ms'),
      row('deploy-to-running max (ms)', Math.max(...ours), Math.max(...bare), 'qemu by hand, same arguments', 'ms'),
    ],
    extra: { runs: RUNS, probe, ours_ms: ours.map(Math.round), bare_ms: bare.map(Math.round) },
  };
};
