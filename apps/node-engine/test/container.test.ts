/**
 * Container instances through the NodeEngine: a private containerd, a local registry and the
 * testkit's busybox image; deploy, logs, one-shot/failing exits, re-adoption after a restart,
 * delete. Skipped (with the reason) when containerd or runc are not installed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { DeployCommand } from '@oak/contracts';
import { ContainerdRuntime, ProcessRuntime } from '@oak/runtimes';
import type { Runtime } from '@oak/runtimes';
import { buildBusyboxImage, shortId, sleep, startContainerd, startRegistry, tmpDir, waitFor } from '@oak/testkit';
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

function runtimes(): Runtime[] {
  return [
    new ContainerdRuntime({ socket: ctd.socket, namespace: ctd.namespace, dataDir: join(dir.path, 'ctd'), portBindAddress: '127.0.0.1', stopGraceMs: 1000 }),
    new ProcessRuntime({ dataDir: join(dir.path, 'proc') }),
  ];
}

function start(): Promise<NodeEngineHandle> {
  return startNodeEngine(
    { clusterAddress: '127.0.0.1', clusterPort: cluster.httpPort, netmanagerPort: null, dataDir: dir.path, reportIntervalMs: 300, log: silentLog, joinToken: cluster.token },
    { runtimes: runtimes() },
  );
}

function deploy(svc: string, extra: Partial<DeployCommand> = {}): DeployCommand {
  return {
    microservice_name: svc,
    microservice_namespace: 'test',
    virtualization: 'container',
    code: image,
    job_name: `ct${run}.test.${svc}.test`,
    instance_number: 0,
    memory: 64,
    ...extra,
  };
}

async function runningTasks(): Promise<number> {
  const r = await ctd.ctr(['tasks', 'ls'], { check: false });
  return r.stdout.split('\n').filter((l) => /\sRUNNING\s*$/.test(l)).length;
}

before(async () => {
  if (skip !== false) return;
  cluster = await FakeCluster.start();
  ctd = await startContainerd();
  reg = await startRegistry();
  dir = await tmpDir('oak-ne-ctd');
  image = await buildBusyboxImage(reg);
});

after(async () => {
  if (skip !== false) return;
  await engine?.shutdown({ stopInstances: true }).catch(() => {});
  await cluster?.close();
  await ctd?.stop();
  await reg?.stop();
  await dir?.remove();
});

test('container instances: deploy, logs, exits, re-adoption, delete', { skip, timeout: 120_000 }, async () => {
  engine = await start();
  const id = engine.id;
  assert.deepEqual([...engine.virtualizations], ['container', 'process']);
  assert.deepEqual(cluster.registrations.at(-1)?.virtualizations, ['container', 'process']);

  const web = deploy('web');
  await cluster.publish(`nodes/${id}/control/deploy`, web);
  await cluster.waitJob(id, web.job_name, 'RUNNING', 60_000);
  assert.deepEqual(cluster.states(id, web.job_name), ['CREATING', 'RUNNING']);
  assert.equal(await runningTasks(), 1);

  // duplicate deploy: no second container
  await cluster.publish(`nodes/${id}/control/deploy`, web);
  await sleep(500);
  assert.equal(await runningTasks(), 1);

  // logs of the image's default command
  const rid = `r${shortId(3)}`;
  await waitFor(async () => {
    await cluster.publish(`nodes/${id}/control/logs`, { request_id: rid, job_name: web.job_name, instance_number: 0, follow: false });
    return waitFor(() => cluster.messages.filter((m) => m.topic === `nodes/${id}/logs/${rid}`).some((m) => (m.payload['lines'] as string[]).includes('hello from busybox')), { timeoutMs: 1000 });
  }, { timeoutMs: 10_000, message: 'busybox greeting in the logs' });

  // per-instance resources
  const res = await waitFor(() =>
    cluster.messages.find((m) => m.topic === `nodes/${id}/jobs/resources` && (m.payload['instances'] as { job_name: string }[]).some((i) => i.job_name === web.job_name)),
  { timeoutMs: 10_000 });
  assert.ok(res);

  // one-shot and failing containers
  const once = deploy('once', { cmd: ['sh', '-c', 'echo done'], one_shot: true });
  const bad = deploy('bad', { cmd: ['sh', '-c', 'exit 4'] });
  await cluster.publish(`nodes/${id}/control/deploy`, once);
  await cluster.publish(`nodes/${id}/control/deploy`, bad);
  assert.equal((await cluster.waitJob(id, once.job_name, 'COMPLETED', 60_000))['exit_code'], 0);
  assert.equal((await cluster.waitJob(id, bad.job_name, 'FAILED', 60_000))['exit_code'], 4);

  // restart: re-adopted, not started twice
  await engine.close();
  engine = undefined;
  assert.equal(await runningTasks(), 1, 'close() leaves the container running');
  const t0 = Date.now();
  engine = await start();
  assert.equal(engine.id, id);
  const again = await waitFor(() => cluster.messages.find((m) => m.topic === `nodes/${id}/job` && m.at >= t0 && m.payload['job_name'] === web.job_name), { timeoutMs: 10_000 });
  assert.equal(again.payload['status'], 'RUNNING');
  // ended ones are reported with their final state and cleaned up
  const final = await waitFor(() => cluster.messages.find((m) => m.topic === `nodes/${id}/job` && m.at >= t0 && m.payload['job_name'] === bad.job_name), { timeoutMs: 10_000 });
  assert.equal(final.payload['status'], 'FAILED');
  assert.equal(final.payload['exit_code'], 4);
  await waitFor(async () => {
    const ids = (await ctd.ctr(['containers', 'ls', '-q'], { check: false })).stdout;
    return !ids.includes(`${bad.job_name}.instance.0`) && !ids.includes(`${once.job_name}.instance.0`) && ids.includes(`${web.job_name}.instance.0`);
  }, { timeoutMs: 10_000, message: 'ended containers removed, running one kept' });
  await cluster.publish(`nodes/${id}/control/deploy`, web);
  await sleep(500);
  assert.equal(await runningTasks(), 1, 'no second container after the restart');

  // delete: UNDEPLOYED and the task is gone
  await cluster.publish(`nodes/${id}/control/delete`, { job_name: web.job_name, virtualization: 'container', instance_number: 0 });
  await cluster.waitJob(id, web.job_name, 'UNDEPLOYED', 30_000);
  assert.equal(await runningTasks(), 0);
  assert.equal((await ctd.ctr(['containers', 'ls', '-q'], { check: false })).stdout.trim(), '');
});
