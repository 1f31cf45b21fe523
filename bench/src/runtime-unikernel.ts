/**
 * Deploy-to-running of a unikernel (UnikernelRuntime.start() of the testkit's multiboot kernel,
 * served as a .tar.gz over HTTP, until its first console line) against qemu started by hand with
 * the same arguments (the driver's own qemu argv, read from /proc) until the same line,
 * interleaved run by run. The warm-up downloads and unpacks the archive into the cache: the rows
 * are the boot.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnikernelRuntime, probeQemu } from '@oak/runtimes';
import type { InstanceSpec } from '@oak/runtimes';
import { buildTestKernel, waitFor } from '@oak/testkit';
import { handOnce, qemuArgvOf } from './qemu-hand.ts';
import { percentile, row } from './types.ts';
import type { Bench } from './types.ts';

const RUNS = 10;
const LINE = 'oak-bench-unikernel-up';

export const bench: Bench = async () => {
  const host = await probeQemu();
  if (typeof host === 'string') throw new Error(`unikernels are not available here: ${host}`);
  const archive = await readFile((await buildTestKernel()).archive);
  const srv = createServer((req, res) => (req.url === '/uk.tar.gz' ? res.writeHead(200, { 'content-length': archive.length }).end(archive) : res.writeHead(404).end()));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const code = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/uk.tar.gz`;
  const dataDir = await mkdtemp(join(tmpdir(), 'oak-bench-uk-'));
  const parent = `oak-bench-uk-${process.pid}`;
  const rt = new UnikernelRuntime({ dataDir, cgroupParent: parent, stopGraceMs: 2000 });
  const ours: number[] = [];
  const bare: number[] = [];
  try {
    const spec = (id: string): InstanceSpec => ({
      id, job_name: 'bench.uk.x', instance_number: 0, virtualization: 'unikernel', code, env: [], ports: [], one_shot: false, labels: {},
      memory_mb: 32, vcpus: 1, cmd: [LINE, 'loop'],
    });
    const logOf = (id: string): Promise<string> => readFile(join(dataDir, 'instances', id, 'log'), 'utf8').catch(() => '');
    const oursOnce = async (id: string): Promise<number> => {
      const t0 = performance.now();
      await rt.start(spec(id));
      await waitFor(async () => (await logOf(id)).includes(LINE), { timeoutMs: 60_000, intervalMs: 5, message: `${id} up` });
      return performance.now() - t0;
    };
    await oursOnce('bench.uk.x.instance.warm');
    // the kernel and its files stay in the cache: the warm-up's argv boots the same VM by hand
    const argv = await qemuArgvOf((a) => a.includes(LINE), 'the warm-up unikernel');
    await rt.stop('bench.uk.x.instance.warm');
    for (let i = 0; i < RUNS; i++) {
      bare.push(await handOnce(argv, LINE, 60_000));
      const id = `bench.uk.x.instance.${i}`;
      ours.push(await oursOnce(id));
      await rt.stop(id);
    }
  } finally {
    for (const s of await rt.list().catch(() => [])) await rt.stop(s.id).catch(() => undefined);
    await rt.close();
    srv.close();
    await rm(dataDir, { recursive: true, force: true });
    for (const c of ['memory', 'cpu', 'cpuacct', 'pids', '']) await rmdir(join('/sys/fs/cgroup', c, parent)).catch(() => undefined);
  }
  const how = `qemu ${host.kvm ? 'with KVM' : 'under software emulation (TCG)'}`;
  return {
    name: 'runtime-unikernel',
    description: `UnikernelRuntime.start() of the testkit's multiboot kernel (.tar.gz over HTTP, 32 MB, 1 vcpu; ${how}) until its first console line, vs qemu started by hand with the same argv until the same line; ${RUNS} interleaved runs after a warm-up that downloads and unpacks the archive`,
    rows: [
      row('deploy-to-running p50 (ms)', percentile(ours, 50), percentile(bare, 50), 'qemu by hand, same arguments', 'ms'),
      row('deploy-to-running max (ms)', Math.max(...ours), Math.max(...bare), 'qemu by hand, same arguments', 'ms'),
    ],
    extra: { runs: RUNS, kvm: host.kvm, ours_ms: ours.map(Math.round), bare_ms: bare.map(Math.round) },
  };
};
