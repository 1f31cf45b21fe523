/**
 * Start-to-running latency of ContainerdRuntime.start() (gRPC: container + snapshot + task create +
 * start, file logs, memory limit, host network) against raw `ctr run -d` of the same already
 * pulled image with the same options, interleaved run by run, on a private containerd + registry.
 */
import { ContainerdRuntime } from '@oak/runtimes';
import type { InstanceSpec } from '@oak/runtimes';
import { buildBusyboxImage, startContainerd, startRegistry, tmpDir } from '@oak/testkit';
import type { ContainerdInstance, RegistryInstance, TmpDir } from '@oak/testkit';
import { percentile, row } from './types.ts';
import type { Bench } from './types.ts';

const RUNS = 20;
const MEMORY_MB = 64;

export const bench: Bench = async () => {
  let ctd: ContainerdInstance | undefined;
  let reg: RegistryInstance | undefined;
  let dir: TmpDir | undefined;
  let rt: ContainerdRuntime | undefined;
  const ours: number[] = [];
  const raw: number[] = [];
  const stops: number[] = [];
  let firstStartMs = 0;
  let rawPullMs = 0;
  try {
    ctd = await startContainerd();
    reg = await startRegistry();
    dir = await tmpDir('oak-bench-ctd');
    const image = await buildBusyboxImage(reg);
    rt = new ContainerdRuntime({ socket: ctd.socket, namespace: ctd.namespace, dataDir: dir.path, stopGraceMs: 300, portBindAddress: '127.0.0.1' });
    const spec = (id: string): InstanceSpec => ({
      id, job_name: 'bench.ctd.svc.x', instance_number: 0, virtualization: 'container', code: image,
      cmd: ['sleep', '3600'], env: [], memory_mb: MEMORY_MB, ports: [], one_shot: false, labels: {},
    });

    // first start includes the pull (ctr images pull) and the image resolution
    let t = performance.now();
    await rt.start(spec('bench.warm.instance.0'));
    firstStartMs = performance.now() - t;
    await rt.stop('bench.warm.instance.0');
    t = performance.now();
    await ctd.ctr(['images', 'pull', '--plain-http', image]);
    rawPullMs = performance.now() - t;
    await ctd.ctr(['run', '-d', '--net-host', image, 'raw-warm', 'sleep', '3600']);
    await removeRaw(ctd, 'raw-warm');

    for (let i = 0; i < RUNS; i++) {
      const rawId = `raw-${i}`;
      const t0 = performance.now();
      await ctd.ctr(['run', '-d', '--net-host', '--memory-limit', String(MEMORY_MB * 1024 * 1024),
        '--log-uri', `file://${dir.path}/${rawId}.log`, image, rawId, 'sleep', '3600']);
      raw.push(performance.now() - t0);
      await removeRaw(ctd, rawId);

      const id = `bench.ctd.svc.x.instance.${i}`;
      const t1 = performance.now();
      const st = await rt.start(spec(id));
      ours.push(performance.now() - t1);
      if (st.state !== 'RUNNING') throw new Error(`${id} is ${st.state}: ${st.detail}`);
      const t2 = performance.now();
      await rt.stop(id);
      stops.push(performance.now() - t2);
    }
  } finally {
    if (rt) {
      for (const s of await rt.list().catch(() => [])) await rt.stop(s.id).catch(() => undefined);
      await rt.close();
    }
    await ctd?.stop();
    await reg?.stop();
    await dir?.remove();
  }
  return {
    name: 'runtime-containerd',
    description: `ContainerdRuntime.start() (gRPC; ${MEMORY_MB} MB limit, host network, file log) of an already pulled busybox image until RUNNING, vs raw \`ctr run -d --net-host --memory-limit --log-uri\` of the same image; ${RUNS} interleaved runs on a private containerd`,
    rows: [
      row('start-to-running p50 (ms)', percentile(ours, 50), percentile(raw, 50), 'ctr run -d', 'ms'),
      row('start-to-running p90 (ms)', percentile(ours, 90), percentile(raw, 90), 'ctr run -d', 'ms'),
    ],
    extra: {
      runs: RUNS,
      first_start_with_pull_ms: Math.round(firstStartMs),
      ctr_images_pull_ms: Math.round(rawPullMs),
      stop_p50_ms: Math.round(percentile(stops, 50)),
      stop_note: 'stop = SIGTERM, 300 ms grace (sleep as pid 1 ignores SIGTERM), SIGKILL, delete task/container/snapshot',
    },
  };
};

async function removeRaw(ctd: ContainerdInstance, id: string): Promise<void> {
  await ctd.ctr(['tasks', 'kill', '-s', 'SIGKILL', id], { check: false });
  await ctd.ctr(['tasks', 'delete', '-f', id], { check: false });
  await ctd.ctr(['containers', 'rm', id], { check: false });
}
