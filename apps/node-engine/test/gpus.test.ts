/**
 * GPUs on the worker (issue 10), without a GPU: the pure assignment (no two instances share one),
 * the label that carries it through a restart, and the NodeEngine itself with a fake nvidia-smi:
 * registration and reports carry the devices, process instances get CUDA_VISIBLE_DEVICES for
 * their own GPUs, a deploy without a free GPU fails with the reason, and after a restart the
 * re-adopted instances still hold theirs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmdirSync } from 'node:fs';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeployCommand, GpuDevice } from '@oak/contracts';
import { lookupUser } from '@oak/runtimes';
import { detectGpus } from '@oak/sysinfo';
import { shortId, tmpDir, waitFor } from '@oak/testkit';
import type { TmpDir } from '@oak/testkit';
import { silentLog } from '../src/config.ts';
import { startNodeEngine } from '../src/engine.ts';
import type { NodeEngineHandle } from '../src/engine.ts';
import { assignGpus, formatGpuLabel, gpuEnv, gpusNeeded, LABEL_GPUS, parseGpuLabel } from '../src/gpus.ts';
import { GPU_REFRESH_MS, GpuInventory, gpusWithin, registrationBody, REGISTRATION_GPU_BYTES } from '../src/host.ts';
import { heldGpus, planAdoption } from '../src/instances.ts';
import type { Entry } from '../src/instances.ts';
import { FakeCluster, pidsWithArgv } from './helpers/cluster.ts';

const T4 = (index: number, uuid = `GPU-${index}aaa-bbbb`): GpuDevice => ({ index, name: 'NVIDIA T4', memory_mb: 15360, uuid });

test('gpusNeeded: whole GPUs; nothing for absent, zero, negative or non-finite vgpus', () => {
  assert.deepEqual([undefined, 0, -1, Number.NaN, Infinity, 0.5, 1, 2.2].map(gpusNeeded), [0, 0, 0, 0, 0, 1, 1, 3]);
});

test('assignGpus: lowest free indices, never one that another instance holds, and reasons when short', () => {
  const devs = [T4(0), T4(1), T4(3)];
  assert.deepEqual(assignGpus(2, 'container', devs, new Map()), { ok: true, indices: [0, 1] });
  assert.deepEqual(assignGpus(2, 'process', devs, new Map([['a', [0]]])), { ok: true, indices: [1, 3] });
  const short = assignGpus(2, 'container', devs, new Map([['a', [0]], ['b', [3]]]));
  assert.equal(short.ok, false);
  if (!short.ok) assert.equal(short.reason, 'needs 2 GPUs: this worker has 3 GPUs, 1 free (held by a: 0; b: 3)');
  const none = assignGpus(1, 'container', [], new Map());
  assert.deepEqual(none, { ok: false, reason: 'needs 1 GPU: no NVIDIA GPU on this worker (nvidia-smi found none)' });
  const vm = assignGpus(1, 'unikernel', devs, new Map());
  assert.equal(vm.ok, false);
  if (!vm.ok) assert.match(vm.reason, /container and process instances only, not unikernel/);
  assert.deepEqual(assignGpus(0, 'wasm', [], new Map()), { ok: true, indices: [] });
});

test('assignGpus over random sequences: no GPU is ever held twice', () => {
  const devs = [T4(0), T4(1), T4(2), T4(5)];
  for (let round = 0; round < 200; round++) {
    const held = new Map<string, number[]>();
    for (let i = 0; i < 12; i++) {
      if (Math.random() < 0.3 && held.size > 0) held.delete([...held.keys()][Math.floor(Math.random() * held.size)] as string);
      const r = assignGpus(1 + Math.floor(Math.random() * 3), 'container', devs, held);
      if (r.ok) held.set(`i${round}.${i}`, r.indices);
      const all = [...held.values()].flat();
      assert.equal(new Set(all).size, all.length, `shared GPU in ${JSON.stringify([...held])}`);
      assert.ok(all.every((x) => devs.some((d) => d.index === x)));
    }
  }
});

test('the oak.gpus label: round trip, and hostile text is no GPUs', () => {
  assert.equal(formatGpuLabel([0, 2]), '0,2');
  assert.deepEqual(parseGpuLabel('0,2'), [0, 2]);
  assert.deepEqual(parseGpuLabel('1,1'), [1]);
  for (const bad of [undefined, '', '-1', '0,', 'a', '0;rm -rf', '99999', '1,'.repeat(300) + '1']) assert.deepEqual(parseGpuLabel(bad), [], String(bad));
});

test('gpuEnv: by UUID when known, by index otherwise', () => {
  assert.deepEqual(gpuEnv([1, 4], [T4(1, 'GPU-x1'), T4(4, '')]), ['CUDA_VISIBLE_DEVICES=GPU-x1,4', 'NVIDIA_VISIBLE_DEVICES=GPU-x1,4']);
  assert.deepEqual(gpuEnv([], [T4(0)]), []);
});

test('re-adoption reads the GPUs back from the label; ended instances hold none', () => {
  const plan = planAdoption([
    { virtualization: 'container', status: { id: 'a.b.c.d.instance.0', state: 'RUNNING', detail: '', labels: { 'oak.job_name': 'a.b.c.d', 'oak.instance_number': '0', [LABEL_GPUS]: '1,2' } } },
    { virtualization: 'container', status: { id: 'a.b.c.d.instance.1', state: 'FAILED', detail: 'x', labels: { 'oak.job_name': 'a.b.c.d', 'oak.instance_number': '1', [LABEL_GPUS]: '0' } } },
  ]);
  assert.deepEqual(plan.keep[0]?.gpus, [1, 2]);
  const entries: Entry[] = [...plan.keep, ...plan.finished];
  assert.deepEqual([...heldGpus(entries)], [['a.b.c.d.instance.0', [1, 2]]]);
  assert.deepEqual([...heldGpus(entries, 'a.b.c.d.instance.0')], []);
});

test('GpuInventory: read once per refresh period (nvidia-smi is not cheap), forced at registration; a failing reader is no GPUs', async () => {
  let reads = 0;
  let fail = false;
  const inv = new GpuInventory(() => {
    reads++;
    return fail ? Promise.reject(new Error('boom')) : Promise.resolve([T4(0)]);
  });
  assert.deepEqual(inv.current, []);
  assert.equal((await inv.refresh(false, 1000)).length, 1);
  await Promise.all([inv.refresh(false, 2000), inv.refresh(false, 3000)]);
  assert.equal(reads, 1, 'cached within the period');
  await inv.refresh(false, 1000 + GPU_REFRESH_MS);
  assert.equal(reads, 2);
  fail = true;
  assert.deepEqual(await inv.refresh(true, 1001 + GPU_REFRESH_MS), []);
  assert.equal(reads, 3);
  assert.deepEqual(inv.current, []);
});

test('registration: 64 GPUs with the longest names still fit the cluster\'s 16 KiB body limit; the count stays exact', async () => {
  const many = Array.from({ length: 64 }, (_, i) => ({ index: 9000 + i, name: 'N'.repeat(128), memory_mb: 1024 * 1024 * 1024, uuid: `GPU-${'f'.repeat(64)}` }));
  const body = await registrationBody({ name: 'w'.repeat(200), host: 'h'.repeat(253), virtualizations: ['container', 'process'], netmanagerPort: 6000, location: '48.1,11.5', dataDir: '/tmp', gpus: many });
  assert.equal(body.gpus, 64);
  const listed = body.gpu_devices ?? [];
  assert.ok(listed.length > 0 && listed.length < 64, `${listed.length} listed`);
  assert.ok(Buffer.byteLength(JSON.stringify(listed)) <= REGISTRATION_GPU_BYTES);
  const full = JSON.stringify({ ...body, token: 'x'.repeat(512), id: 'i'.repeat(200), id_proof: 'p'.repeat(256), conn: 'c'.repeat(64) });
  assert.ok(Buffer.byteLength(full) < 16 * 1024, `${Buffer.byteLength(full)} bytes`);
  assert.deepEqual(gpusWithin([T4(0), T4(1)]), [T4(0), T4(1)]);
  assert.deepEqual(gpusWithin([T4(0)], 10), []);
});

// ---------------------------------------------------------------------------- the NodeEngine

const RUN_AS = lookupUser('oak-workload') !== undefined ? undefined : 'nobody';
let cluster: FakeCluster;
let dir: TmpDir;
let engine: NodeEngineHandle | undefined;
const run = shortId(3);
const sleepArg = `31.${Math.floor(Math.random() * 1e6)}`;
const SMI = '0, NVIDIA T4, 15360, GPU-aaaa1111\n1, NVIDIA T4, 15360, GPU-bbbb2222\n';
let smiPath = '';
let gpuless = false;

function deploy(svc: string, extra: Partial<DeployCommand> = {}): DeployCommand {
  return { microservice_name: svc, microservice_namespace: 'test', virtualization: 'process', code: '/bin/sleep', cmd: [sleepArg], job_name: `gpu${run}.test.${svc}.test`, instance_number: 0, vgpus: 1, ...extra };
}

function start(): Promise<NodeEngineHandle> {
  return startNodeEngine({
    clusterAddress: '127.0.0.1',
    clusterPort: cluster.httpPort,
    netmanagerPort: null,
    dataDir: dir.path,
    name: `gpu-worker-${run}`,
    reportIntervalMs: 200,
    registerBackoffMs: { initial: 50, max: 200 },
    runtimes: ['process'],
    log: silentLog,
    namespace: `gpu${run}`,
    runAs: RUN_AS,
    isolation: 'off',
    joinToken: cluster.token,
    gpuReader: () => (gpuless ? Promise.resolve([]) : detectGpus({ nvidiaSmi: smiPath, procDir: join(dir.path, 'no-proc') })),
  });
}

async function visibleDevicesOf(pid: number): Promise<string | undefined> {
  const env = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
  return env.find((e) => e.startsWith('CUDA_VISIBLE_DEVICES='))?.slice('CUDA_VISIBLE_DEVICES='.length);
}

before(async () => {
  cluster = await FakeCluster.start();
  dir = await tmpDir('oak-ne-gpu');
  smiPath = join(dir.path, 'nvidia-smi');
  await writeFile(smiPath, `#!/bin/sh\ncat <<'X'\n${SMI}X\n`);
  await chmod(smiPath, 0o755);
});

after(async () => {
  await engine?.shutdown({ stopInstances: true });
  await cluster.close();
  for (const pid of pidsWithArgv(['/bin/sleep', sleepArg])) process.kill(pid, 'SIGKILL');
  // the process driver's cgroup parent (empty once the instances are gone) and the work directory
  for (const ctrl of readdirSync('/sys/fs/cgroup')) {
    try {
      rmdirSync(`/sys/fs/cgroup/${ctrl}/gpu${run}`);
    } catch {
      /* not created under this controller */
    }
  }
  await rm(`${dir.path}-work`, { recursive: true, force: true });
  await dir.remove();
});

test('NodeEngine with two (fake) GPUs: registration and reports carry them; two instances get one each; a third fails with the reason', async () => {
  engine = await start();
  const id = engine.id;
  const reg = cluster.registrations.at(-1);
  assert.equal(reg?.gpus, 2);
  assert.deepEqual(reg?.gpu_devices?.map((g) => [g.index, g.name, g.memory_mb, g.uuid]), [[0, 'NVIDIA T4', 15360, 'GPU-aaaa1111'], [1, 'NVIDIA T4', 15360, 'GPU-bbbb2222']]);
  const info = await waitFor(() => cluster.messages.find((m) => m.topic === `nodes/${id}/information`));
  assert.equal(info.payload['gpus'], 2);
  assert.equal((info.payload['gpu_devices'] as unknown[]).length, 2);

  const a = deploy('a');
  const b = deploy('b');
  // side by side: the choice is made before either start awaits anything
  await Promise.all([cluster.publish(`nodes/${id}/control/deploy`, a), cluster.publish(`nodes/${id}/control/deploy`, b)]);
  await cluster.waitJob(id, a.job_name, 'RUNNING');
  await cluster.waitJob(id, b.job_name, 'RUNNING');
  const pids = await waitFor(() => {
    const p = pidsWithArgv(['/bin/sleep', sleepArg]);
    return p.length === 2 ? p : undefined;
  }, { timeoutMs: 10_000, message: 'two sleep processes' });
  const seen = (await Promise.all(pids.map(visibleDevicesOf))).sort();
  assert.deepEqual(seen, ['GPU-aaaa1111', 'GPU-bbbb2222'], 'each process sees its own GPU only');

  const c = deploy('c');
  await cluster.publish(`nodes/${id}/control/deploy`, c);
  const failed = await cluster.waitJob(id, c.job_name, 'FAILED');
  assert.match(String(failed['status_detail']), /^needs 1 GPU: this worker has 2 GPUs, 0 free \(held by gpu.*: [01]; gpu.*: [01]\)$/);
  assert.equal(pidsWithArgv(['/bin/sleep', sleepArg]).length, 2, 'nothing started for it');
});

test('after a NodeEngine restart the re-adopted instances still hold their GPUs; an undeploy frees one', async () => {
  const id = engine!.id;
  await engine!.close();
  const t0 = Date.now();
  engine = await start();
  const a = deploy('a');
  await waitFor(() => cluster.messages.find((m) => m.topic === `nodes/${id}/job` && m.at >= t0 && m.payload['job_name'] === a.job_name && m.payload['status'] === 'RUNNING'), { message: 're-adopted' });
  const d = deploy('d');
  await cluster.publish(`nodes/${id}/control/deploy`, d);
  const failed = await cluster.waitJob(id, d.job_name, 'FAILED');
  assert.match(String(failed['status_detail']), /0 free/, 'the GPUs of the re-adopted instances are not handed out again');

  const holderOf0 = (await Promise.all(pidsWithArgv(['/bin/sleep', sleepArg]).map(async (p) => [p, await visibleDevicesOf(p)] as const))).find(([, v]) => v === 'GPU-aaaa1111');
  assert.ok(holderOf0, 'someone holds GPU 0');
  await cluster.publish(`nodes/${id}/control/delete`, { job_name: a.job_name, virtualization: 'process', instance_number: 0 });
  await waitFor(() => cluster.jobs(id, a.job_name).some((p) => p['status'] === 'UNDEPLOYED'));
  const e = deploy('e');
  await cluster.publish(`nodes/${id}/control/deploy`, e);
  await cluster.waitJob(id, e.job_name, 'RUNNING');
  const pids = await waitFor(() => {
    const p = pidsWithArgv(['/bin/sleep', sleepArg]);
    return p.length === 2 ? p : undefined;
  }, { timeoutMs: 10_000, message: 'two sleep processes again' });
  assert.deepEqual((await Promise.all(pids.map(visibleDevicesOf))).sort(), ['GPU-aaaa1111', 'GPU-bbbb2222'], 'the freed GPU went to the new instance, none is shared');
});

test('a worker without GPUs: no GPUs reported, and a vgpus instance fails clearly instead of running without one', async () => {
  await engine?.shutdown({ stopInstances: true });
  gpuless = true;
  engine = await start();
  const id = engine.id;
  const reg = cluster.registrations.at(-1);
  assert.equal(reg?.gpus, 0);
  assert.equal(reg?.gpu_devices, undefined);
  const f = deploy('f');
  await cluster.publish(`nodes/${id}/control/deploy`, f);
  const failed = await cluster.waitJob(id, f.job_name, 'FAILED');
  assert.equal(failed['status_detail'], 'needs 1 GPU: no NVIDIA GPU on this worker (nvidia-smi found none)');
  assert.equal(pidsWithArgv(['/bin/sleep', sleepArg]).length, 0);
  // without vgpus the same service runs
  const g = deploy('g', { vgpus: 0 });
  await cluster.publish(`nodes/${id}/control/deploy`, g);
  await cluster.waitJob(id, g.job_name, 'RUNNING');
});
