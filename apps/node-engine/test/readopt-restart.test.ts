/**
 * A local restart after re-adoption is the same as one before (issue 10): a process instance with
 * added files (from a local HTTP server) and a GPU (a fake one: an injected reader, this machine
 * has none; a process gets it as CUDA_VISIBLE_DEVICES) runs; the NodeEngine restarts and re-adopts
 * it; its copy dies; the local restart starts it with its files in its new work dir and its GPU in
 * its environment, because both were kept on disk (the run record) before the first start.
 * The real NodeEngine, the real process runtime (as root: in its own network namespace); then the
 * same for a container (a private containerd, the fake GPU's device node given through a CDI spec
 * whose node is a stand-in, /dev/zero), skipped without containerd/runc/root.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { DeployCommand, GpuDevice } from '@oak/contracts';
import { ContainerdRuntime, containerIdFor, lookupUser } from '@oak/runtimes';
import { buildBusyboxImage, shortId, startContainerd, startRegistry, tmpDir, waitFor } from '@oak/testkit';
import type { ContainerdInstance, RegistryInstance, TmpDir } from '@oak/testkit';
import { silentLog } from '../src/config.ts';
import { startNodeEngine } from '../src/engine.ts';
import { filesDirOf } from '../src/files.ts';
import { removeInstanceNetwork } from '../src/network.ts';
import { RUN_RECORD } from '../src/run-record.ts';
import type { NodeEngineHandle } from '../src/engine.ts';
import { FakeCluster, pidsWithArgv } from './helpers/cluster.ts';

const RUN_AS = lookupUser('oak-workload') !== undefined ? undefined : 'nobody';
const run = shortId(3);
const sleepArg = `33.${Math.floor(Math.random() * 1e6)}`;
const GPU: GpuDevice = { index: 0, name: 'Fake GPU', memory_mb: 1024, uuid: `GPU-fake-${run}` };
let cluster: FakeCluster;
let dir: TmpDir;
let engine: NodeEngineHandle;
let files: Server;
let base = '';

function startEngine(): Promise<NodeEngineHandle> {
  return startNodeEngine({
    clusterAddress: '127.0.0.1',
    clusterPort: cluster.httpPort,
    netmanagerPort: null,
    dataDir: dir.path,
    name: `readopt-${run}`,
    reportIntervalMs: 300,
    registerBackoffMs: { initial: 50, max: 200 },
    restartBackoffMs: { initial: 100, max: 400 },
    runtimes: ['process'],
    log: silentLog,
    namespace: `ra${run}`,
    runAs: RUN_AS,
    joinToken: cluster.token,
    gpuReader: () => Promise.resolve([GPU]),
  });
}

before(async () => {
  files = createServer((req, res) => {
    if (req.url === '/conf.txt') res.writeHead(200).end(`conf-${run}\n`);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
  cluster = await FakeCluster.start();
  dir = await tmpDir('oak-ra');
  engine = await startEngine();
});

after(async () => {
  await engine.shutdown({ stopInstances: true });
  await cluster.close();
  for (const pid of pidsWithArgv(['/bin/sleep', sleepArg])) process.kill(pid, 'SIGKILL');
  await removeInstanceNetwork({ namespace: `ra${run}`, dataDir: dir.path });
  await new Promise<void>((r) => files.close(() => r()));
  await dir.remove();
  // the process instances' work root beside the data dir
  await rm(`${dir.path}-work`, { recursive: true, force: true });
});

/** the one copy of the workload: its pid, the file in its work dir, its GPU variable */
async function copy(): Promise<{ pid: number; conf: string; cuda: string | undefined }> {
  const pid = await waitFor(() => pidsWithArgv(['/bin/sleep', sleepArg])[0], { timeoutMs: 20_000, message: 'the workload runs' });
  const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  const cuda = env.find((v) => v.startsWith('CUDA_VISIBLE_DEVICES='))?.slice('CUDA_VISIBLE_DEVICES='.length);
  let conf = '';
  try {
    conf = readFileSync(`/proc/${pid}/cwd/etc/conf.txt`, 'utf8');
  } catch (e) {
    conf = `(none: ${(e as Error).message})`;
  }
  return { pid, conf, cuda };
}

test('after a NodeEngine restart, a local restart starts the re-adopted instance with its added files and its GPU', { timeout: 120_000 }, async () => {
  // the script refuses to run without its file: a restart that lost it ends in exit 7 and FAILED
  const cmd: DeployCommand = {
    microservice_name: 'files', microservice_namespace: 'test', virtualization: 'process', code: '/bin/sh',
    cmd: ['-c', `[ -f etc/conf.txt ] || exit 7; exec /bin/sleep ${sleepArg}`],
    job_name: `ra${run}.test.files.test`, instance_number: 0,
    added_files: [{ url: `${base}/conf.txt`, path: 'etc/conf.txt' }], vgpus: 1, restart_max: 2,
    health: { type: 'exec', command: ['/bin/true'], interval_s: 0.2, timeout_s: 1, failure_threshold: 25 },
  };
  await cluster.publish(`nodes/${engine.id}/control/deploy`, cmd);
  await cluster.waitJob(engine.id, cmd.job_name, 'RUNNING', 30_000);
  const first = await copy();
  assert.equal(first.conf, `conf-${run}\n`);
  assert.equal(first.cuda, GPU.uuid);
  assert.match(readFileSync(join(filesDirOf(dir.path, `${cmd.job_name}.instance.0`), RUN_RECORD), 'utf8'), new RegExp(GPU.uuid), 'kept on disk before the start');

  await engine.close();
  engine = await startEngine();
  const t0 = Date.now();
  const since = (pred: (p: Record<string, unknown>) => boolean): Record<string, unknown> | undefined =>
    cluster.messages.find((m) => m.topic === `nodes/${engine.id}/job` && m.at >= t0 && m.payload['job_name'] === cmd.job_name && pred(m.payload))?.payload;
  // the cluster asks again for what it had placed here (as on re-adoption): the restart record resumes
  await cluster.publish(`nodes/${engine.id}/control/deploy`, cmd);
  await waitFor(() => since((p) => p['status'] === 'RUNNING' && p['health'] === 'healthy'), { timeoutMs: 20_000, message: 'RUNNING and probed again after the NodeEngine restart' });
  assert.equal((await copy()).pid, first.pid, 're-adopted, not restarted');

  process.kill(first.pid, 'SIGKILL');
  const again = await waitFor(() => since((p) => (p['status'] === 'RUNNING' && p['restarts'] === 1) || p['status'] === 'FAILED'), { timeoutMs: 30_000, message: 'restarted locally' });
  assert.equal(again['status'], 'RUNNING', `restarted, not ${String(again['status'])}: ${String(again['status_detail'])}`);
  const second = await copy();
  assert.notEqual(second.pid, first.pid);
  assert.equal(second.conf, `conf-${run}\n`, 'its added file is in the new copy\'s work dir');
  assert.equal(second.cuda, GPU.uuid, 'its GPU is in the new copy\'s environment');

  await cluster.publish(`nodes/${engine.id}/control/delete`, { job_name: cmd.job_name, instance_number: 0, virtualization: 'process' });
  await waitFor(() => since((p) => p['status'] === 'UNDEPLOYED'), { timeoutMs: 15_000, message: 'undeployed' });
  await waitFor(() => pidsWithArgv(['/bin/sleep', sleepArg]).length === 0 || undefined, { timeoutMs: 10_000, message: 'nothing left running' });
  assert.throws(() => readFileSync(join(filesDirOf(dir.path, `${cmd.job_name}.instance.0`), RUN_RECORD)), /ENOENT/, 'the record goes with the instance');
});

const missing = ['containerd', 'runc', 'ctr'].filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
const skipCtd = missing.length > 0 ? `not installed: ${missing.join(', ')}` : process.getuid?.() !== 0 ? 'needs root' : false;

test('the same for a container: after a NodeEngine restart its local restart has its added file and its GPU device', { skip: skipCtd, timeout: 180_000 }, async () => {
  let ctd: ContainerdInstance | undefined;
  let reg: RegistryInstance | undefined;
  const cdir = await tmpDir('oak-ra-ctd');
  let e: NodeEngineHandle | undefined;
  try {
    ctd = await startContainerd();
    reg = await startRegistry();
    const image = await buildBusyboxImage(reg);
    await mkdir(join(cdir.path, 'cdi'));
    await writeFile(join(cdir.path, 'cdi', 'nvidia.yaml'), 'cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n  - name: "0"\n    containerEdits: { deviceNodes: [{ path: /dev/nvidia0, hostPath: /dev/zero }] }\n');
    const c = ctd;
    const start = (): Promise<NodeEngineHandle> => startNodeEngine(
      {
        clusterAddress: '127.0.0.1', clusterPort: cluster.httpPort, netmanagerPort: null, dataDir: cdir.path, reportIntervalMs: 300,
        registerBackoffMs: { initial: 50, max: 200 }, restartBackoffMs: { initial: 100, max: 400 }, log: silentLog, joinToken: cluster.token,
        namespace: c.namespace, isolation: 'off', gpuReader: () => Promise.resolve([GPU]),
      },
      { runtimes: [new ContainerdRuntime({ socket: c.socket, namespace: c.namespace, dataDir: join(cdir.path, 'ctd'), portBindAddress: '127.0.0.1', stopGraceMs: 500, cdiDirs: [join(cdir.path, 'cdi')], nvidiaHookPaths: [] })] },
    );
    e = await start();
    const tag = String(3_000_000 + Math.floor(Math.random() * 1e6));
    const cmd: DeployCommand = {
      microservice_name: 'cfiles', microservice_namespace: 'test', virtualization: 'container', code: image,
      cmd: ['sh', '-c', `[ -f /etc/app/conf.txt ] || exit 7; [ -e /dev/nvidia0 ] || exit 8; echo "up $(cat /etc/app/conf.txt) $(cat /proc/sys/kernel/random/uuid)"; exec sleep ${tag}`],
      job_name: `ra${run}.test.cfiles.test`, instance_number: 0, memory: 64,
      added_files: [{ url: `${base}/conf.txt`, path: '/etc/app/conf.txt' }], vgpus: 1, restart_max: 2,
      health: { type: 'exec', command: ['true'], interval_s: 0.2, timeout_s: 1, failure_threshold: 25 },
    };
    const log = (): Promise<string> => readFile(join(cdir.path, 'ctd', 'logs', `${containerIdFor(`${cmd.job_name}.instance.0`)}.log`), 'utf8').catch(() => '');
    /** the copies that came up with their file and GPU (each says so with its own uuid) */
    const ups = async (): Promise<string[]> => (await log()).split('\n').filter((l) => l.includes(`up conf-${run} `)).map((l) => l.slice(l.lastIndexOf(' ') + 1));
    await cluster.publish(`nodes/${e.id}/control/deploy`, cmd);
    await cluster.waitJob(e.id, cmd.job_name, 'RUNNING', 60_000);
    const [firstUp] = await waitFor(async () => ((await ups()).length === 1 ? ups() : undefined), { timeoutMs: 20_000, message: 'the first copy is up with its file and GPU' });
    const firstPid = await waitFor(() => pidsWithArgv(['sleep', tag])[0], { timeoutMs: 10_000, message: 'its sleep' });

    await e.close();
    e = await start();
    const eid = e.id;
    const t0 = Date.now();
    const since = (pred: (p: Record<string, unknown>) => boolean): Record<string, unknown> | undefined =>
      cluster.messages.find((m) => m.topic === `nodes/${eid}/job` && m.at >= t0 && m.payload['job_name'] === cmd.job_name && pred(m.payload))?.payload;
    await cluster.publish(`nodes/${eid}/control/deploy`, cmd);
    await waitFor(() => since((p) => p['status'] === 'RUNNING' && p['health'] === 'healthy'), { timeoutMs: 30_000, message: 'RUNNING and probed again after the NodeEngine restart' });
    assert.deepEqual(pidsWithArgv(['sleep', tag]), [firstPid], 're-adopted, not restarted');

    process.kill(firstPid, 'SIGKILL');
    const again = await waitFor(() => since((p) => (p['status'] === 'RUNNING' && p['restarts'] === 1) || p['status'] === 'FAILED'), { timeoutMs: 60_000, message: 'restarted locally' });
    assert.equal(again['status'], 'RUNNING', `restarted, not ${String(again['status'])}: ${String(again['status_detail'])}`);
    await waitFor(async () => (await ups()).some((u) => u !== firstUp) || undefined, { timeoutMs: 20_000, message: 'the second copy is up with its file and GPU' }).catch(async (err: unknown) => {
      throw new Error(`${String(err)}; its log: ${await log()}`);
    });
    const now = pidsWithArgv(['sleep', tag]);
    assert.equal(now.length, 1, 'one copy runs');
    assert.notEqual(now[0], firstPid);
    await cluster.publish(`nodes/${eid}/control/delete`, { job_name: cmd.job_name, instance_number: 0, virtualization: 'container' });
    await waitFor(() => since((p) => p['status'] === 'UNDEPLOYED'), { timeoutMs: 20_000, message: 'undeployed' });
  } finally {
    await e?.shutdown({ stopInstances: true }).catch(() => {});
    await ctd?.stop();
    await reg?.stop();
    await cdir.remove();
  }
});
