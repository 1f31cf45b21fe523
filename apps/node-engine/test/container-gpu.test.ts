/**
 * Containers with `vgpus` through the NodeEngine, a private containerd and runc, on a machine
 * without a GPU: two fake GPUs (an injected reader) and a CDI spec whose device nodes are
 * stand-ins (/dev/zero, /dev/urandom). Each container sees its own GPU device only; a third
 * finds none free and FAILS with the reason. Skipped (with the reason) without containerd/runc.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeployCommand } from '@oak/contracts';
import { ContainerdRuntime, containerIdFor } from '@oak/runtimes';
import { buildBusyboxImage, shortId, startContainerd, startRegistry, tmpDir, waitFor } from '@oak/testkit';
import type { ContainerdInstance, RegistryInstance, TmpDir } from '@oak/testkit';
import { silentLog } from '../src/config.ts';
import { startNodeEngine } from '../src/engine.ts';
import type { NodeEngineHandle } from '../src/engine.ts';
import { FakeCluster } from './helpers/cluster.ts';

const missing = ['containerd', 'runc', 'ctr'].filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
const skip = missing.length > 0 ? `not installed: ${missing.join(', ')}` : process.getuid?.() !== 0 ? 'needs root' : false;

let cluster: FakeCluster;
let ctd: ContainerdInstance;
let reg: RegistryInstance;
let dir: TmpDir;
let image: string;
let engine: NodeEngineHandle | undefined;
const run = shortId(3);

before(async () => {
  if (skip !== false) return;
  cluster = await FakeCluster.start();
  ctd = await startContainerd();
  reg = await startRegistry();
  dir = await tmpDir('oak-ne-gpu-ctd');
  image = await buildBusyboxImage(reg);
  await mkdir(join(dir.path, 'cdi'));
  await writeFile(
    join(dir.path, 'cdi', 'nvidia.yaml'),
    [
      'cdiVersion: 0.5.0',
      'kind: nvidia.com/gpu',
      'devices:',
      '  - name: "0"',
      '    containerEdits: { deviceNodes: [{ path: /dev/nvidia0, hostPath: /dev/zero }] }',
      '  - name: "1"',
      '    containerEdits: { deviceNodes: [{ path: /dev/nvidia1, hostPath: /dev/urandom }] }',
      'containerEdits:',
      '  env: [NVIDIA_FAKE_DRIVER=1]',
      '',
    ].join('\n'),
  );
});

after(async () => {
  if (skip !== false) return;
  await engine?.shutdown({ stopInstances: true }).catch(() => {});
  await cluster?.close();
  await ctd?.stop();
  await reg?.stop();
  await dir?.remove();
});

function deploy(svc: string, extra: Partial<DeployCommand> = {}): DeployCommand {
  return {
    microservice_name: svc,
    microservice_namespace: 'test',
    virtualization: 'container',
    code: image,
    cmd: ['sh', '-c', 'ls /dev | grep nvidia; echo "driver=$NVIDIA_FAKE_DRIVER"; sleep 60'],
    job_name: `gc${run}.test.${svc}.test`,
    instance_number: 0,
    memory: 64,
    vgpus: 1,
    ...extra,
  };
}

async function logOf(job: string): Promise<string> {
  return readFile(join(dir.path, 'ctd', 'logs', `${containerIdFor(`${job}.instance.0`)}.log`), 'utf8').catch(() => '');
}

test('containers with vgpus: each sees its own GPU device through CDI; none free: FAILED with the reason', { skip, timeout: 120_000 }, async () => {
  engine = await startNodeEngine(
    {
      clusterAddress: '127.0.0.1',
      clusterPort: cluster.httpPort,
      netmanagerPort: null,
      dataDir: dir.path,
      reportIntervalMs: 300,
      log: silentLog,
      joinToken: cluster.token,
      namespace: ctd.namespace,
      isolation: 'off',
      gpuReader: () => Promise.resolve([
        { index: 0, name: 'NVIDIA T4', memory_mb: 15360, uuid: 'GPU-aaaa' },
        { index: 1, name: 'NVIDIA T4', memory_mb: 15360, uuid: 'GPU-bbbb' },
      ]),
    },
    { runtimes: [new ContainerdRuntime({ socket: ctd.socket, namespace: ctd.namespace, dataDir: join(dir.path, 'ctd'), portBindAddress: '127.0.0.1', stopGraceMs: 1000, cdiDirs: [join(dir.path, 'cdi')], nvidiaHookPaths: [] })] },
  );
  const id = engine.id;
  assert.equal(cluster.registrations.at(-1)?.gpus, 2);
  const a = deploy('a');
  const b = deploy('b');
  await cluster.publish(`nodes/${id}/control/deploy`, a);
  await cluster.publish(`nodes/${id}/control/deploy`, b);
  await cluster.waitJob(id, a.job_name, 'RUNNING', 60_000);
  await cluster.waitJob(id, b.job_name, 'RUNNING', 60_000);
  const la = await waitFor(async () => ((await logOf(a.job_name)).includes('driver=') ? logOf(a.job_name) : undefined), { timeoutMs: 15_000, message: 'log of a' });
  const lb = await waitFor(async () => ((await logOf(b.job_name)).includes('driver=') ? logOf(b.job_name) : undefined), { timeoutMs: 15_000, message: 'log of b' });
  const devs = (log: string) => log.match(/nvidia\d/g) ?? [];
  assert.deepEqual([devs(la), devs(lb)].map((d) => d.join(',')).sort(), ['nvidia0', 'nvidia1'], `a: ${la}\nb: ${lb}`);
  assert.match(la, /driver=1/);

  const c = deploy('c');
  await cluster.publish(`nodes/${id}/control/deploy`, c);
  const failed = await cluster.waitJob(id, c.job_name, 'FAILED', 30_000);
  assert.match(String(failed['status_detail']), /^needs 1 GPU: this worker has 2 GPUs, 0 free/);
});
