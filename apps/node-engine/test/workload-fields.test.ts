/**
 * Oakestra's remaining workload fields through the NodeEngine (issue 10 point 8), against a real
 * containerd, a local registry, the testkit's busybox image, real processes and a local HTTP
 * server for the added files: `args` appended, `added_files` fetched into the instance, a named
 * volume that survives an undeploy + redeploy, `storage` as a size-limited tmpfs for a process, a
 * host path outside the allow-list refused; the same for a microvm where its kernel is unpacked.
 * Skipped (with the reason) without containerd/runc/root.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { DeployCommand } from '@oak/contracts';
import { ContainerdRuntime, DEFAULT_MICROVM_KERNEL_DIR, MicrovmRuntime, ProcessRuntime, findKernel } from '@oak/runtimes';
import { buildBusyboxImage, shortId, startContainerd, startRegistry, tmpDir, waitFor } from '@oak/testkit';
import type { ContainerdInstance, RegistryInstance, TmpDir } from '@oak/testkit';
import { silentLog } from '../src/config.ts';
import { startNodeEngine } from '../src/engine.ts';
import type { NodeEngineHandle } from '../src/engine.ts';
import { fetchAddedFiles } from '../src/files.ts';
import { FakeCluster } from './helpers/cluster.ts';

const missing = ['containerd', 'runc', 'ctr'].filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
const skip = missing.length > 0 ? `not installed: ${missing.join(', ')}` : process.getuid?.() !== 0 ? 'needs root' : false;
const mvmSkip = skip !== false ? skip : typeof (await findKernel(DEFAULT_MICROVM_KERNEL_DIR)) === 'string' ? `no microvm kernel in ${DEFAULT_MICROVM_KERNEL_DIR}` : false;

let cluster: FakeCluster;
let ctd: ContainerdInstance;
let reg: RegistryInstance;
let dir: TmpDir;
let image: string;
let engine: NodeEngineHandle | undefined;
let files: Server;
let base = '';
const run = shortId(3);
const served: Record<string, string> = {
  '/conf.txt': 'conf-from-url\n',
  '/hello.txt': 'hello-from-url\n',
  '/big.bin': 'x'.repeat(10_000),
};

before(async () => {
  files = createServer((req, res) => {
    const body = served[req.url ?? ''];
    if (body === undefined) {
      res.writeHead(404).end('no');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body);
  });
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
  dir = await tmpDir('oak-ne-fields');
  if (skip !== false) return;
  cluster = await FakeCluster.start();
  ctd = await startContainerd();
  reg = await startRegistry();
  image = await buildBusyboxImage(reg);
  engine = await startNodeEngine(
    {
      clusterAddress: '127.0.0.1', clusterPort: cluster.httpPort, netmanagerPort: null, dataDir: dir.path, reportIntervalMs: 300, log: silentLog,
      joinToken: cluster.token, volumeAllow: [join(dir.path, 'allowed')],
    },
    {
      runtimes: [
        new ContainerdRuntime({ socket: ctd.socket, namespace: ctd.namespace, dataDir: join(dir.path, 'ctd'), portBindAddress: '127.0.0.1', stopGraceMs: 500 }),
        new ProcessRuntime({ dataDir: join(dir.path, 'proc'), stopGraceMs: 500 }),
        ...(mvmSkip === false ? [new MicrovmRuntime({ dataDir: join(dir.path, 'mvm'), stopGraceMs: 2000 })] : []),
      ],
    },
  );
});

after(async () => {
  await engine?.shutdown({ stopInstances: true }).catch(() => {});
  await cluster?.close();
  await ctd?.stop();
  await reg?.stop();
  await new Promise<void>((r) => files.close(() => r()));
  await dir?.remove();
});

function deploy(svc: string, n: number, extra: Partial<DeployCommand>): DeployCommand {
  return {
    microservice_name: svc, microservice_namespace: 'test', virtualization: 'container', code: image,
    job_name: `wf${run}.test.${svc}.test`, instance_number: n, organization_id: `org${run}`, ...extra,
  };
}

async function logsOf(cmd: DeployCommand, want: RegExp, timeoutMs = 20_000): Promise<string> {
  const id = engine?.id ?? '';
  let text = '';
  await waitFor(async () => {
    const rid = `r${shortId(4)}`;
    await cluster.publish(`nodes/${id}/control/logs`, { request_id: rid, job_name: cmd.job_name, instance_number: cmd.instance_number, follow: false });
    const end = await waitFor(() => cluster.messages.find((m) => m.topic === `nodes/${id}/logs/${rid}` && m.payload['end'] === true), { timeoutMs: 2000 }).catch(() => undefined);
    if (end === undefined) return false;
    text = cluster.messages.filter((m) => m.topic === `nodes/${id}/logs/${rid}`).flatMap((m) => m.payload['lines'] as string[]).join('\n');
    return want.test(text);
  }, { timeoutMs, message: `logs matching ${want}` }).catch(() => undefined);
  return text;
}

async function undeploy(cmd: DeployCommand): Promise<void> {
  const id = engine?.id ?? '';
  await cluster.publish(`nodes/${id}/control/delete`, { job_name: cmd.job_name, virtualization: cmd.virtualization, instance_number: cmd.instance_number });
  await waitFor(() => cluster.jobs(id, cmd.job_name).find((p) => p['status'] === 'UNDEPLOYED' && p['instance_number'] === cmd.instance_number), { timeoutMs: 20_000, message: `${cmd.job_name} undeployed` });
}

const waitState = (cmd: DeployCommand, status: string): Promise<Record<string, unknown>> =>
  waitFor(() => cluster.jobs(engine?.id ?? '', cmd.job_name).find((p) => p['status'] === status && p['instance_number'] === cmd.instance_number), { timeoutMs: 60_000, message: `${cmd.job_name}#${cmd.instance_number} ${status}` });

test('container: args appended to cmd, added files at their paths, a named volume survives undeploy + redeploy', { skip, timeout: 180_000 }, async () => {
  const script = 'cat /etc/app/conf.txt; cat /oak/files/hello.txt; echo "args:$*"; echo stamp >> /data/log; echo "stamps:$(wc -l < /data/log)"; sleep 3600';
  const extra: Partial<DeployCommand> = {
    cmd: ['sh', '-c', script, 'argv0'],
    args: ['one', 'two'],
    added_files: [{ url: `${base}/conf.txt`, path: '/etc/app/conf.txt' }, `${base}/hello.txt`],
    volumes: [{ name: 'data', target: '/data' }],
  };
  const first = deploy('vol', 0, extra);
  await cluster.publish(`nodes/${engine?.id}/control/deploy`, first);
  await waitState(first, 'RUNNING');
  const t1 = await logsOf(first, /stamps:1/);
  assert.match(t1, /conf-from-url/);
  assert.match(t1, /hello-from-url/);
  assert.match(t1, /args:one two/);
  assert.match(t1, /stamps:1/);
  const filesDir = join(dir.path, 'files', `${first.job_name}.instance.0`);
  assert.ok(existsSync(filesDir), 'the fetched files live in the instance\'s own dir');
  const info = JSON.parse((await ctd.ctr(['containers', 'info', `${first.job_name}.instance.0`])).stdout) as { Spec: { mounts: { destination: string; source: string }[] } };
  assert.deepEqual(info.Spec.mounts.filter((m) => m.source.startsWith(dir.path)).map((m) => m.destination).sort(), ['/data', '/etc/app/conf.txt', '/oak/files/hello.txt']);
  await undeploy(first);
  assert.equal(existsSync(filesDir), false, 'the instance\'s files go with it');
  const volume = join(dir.path, 'volumes', `org${run}`, 'data', 'log');
  assert.equal(readFileSync(volume, 'utf8'), 'stamp\n', 'the named volume stays on the worker');

  const second = deploy('vol', 1, extra);
  await cluster.publish(`nodes/${engine?.id}/control/deploy`, second);
  await waitState(second, 'RUNNING');
  assert.match(await logsOf(second, /stamps:2/), /stamps:2/, 'the redeployed instance sees the first one\'s data');
  await undeploy(second);
});

test('microvm: added files at their paths, a named volume and an allowed host path (read-only) shared with the guest, the named one surviving a redeploy', { skip: mvmSkip, timeout: 300_000 }, async () => {
  const allowed = join(dir.path, 'allowed', 'mvm');
  mkdirSync(allowed, { recursive: true });
  writeFileSync(join(allowed, 'host.txt'), 'from-the-allowed-dir\n');
  const script = 'cat /etc/app/conf.txt; cat /oak/files/hello.txt; cat /host/host.txt; echo "args:$*"; echo stamp >> /data/log; echo "stamps:$(wc -l < /data/log)"; echo x > /host/new 2>/dev/null || echo host-ro; sleep 3600';
  const extra: Partial<DeployCommand> = {
    virtualization: 'microvm', memory: 128,
    cmd: ['sh', '-c', script, 'argv0'],
    args: ['one', 'two'],
    added_files: [{ url: `${base}/conf.txt`, path: '/etc/app/conf.txt' }, `${base}/hello.txt`],
    volumes: [{ name: 'mdata', target: '/data' }, `${allowed}:/host:ro`],
  };
  const first = deploy('mvol', 0, extra);
  await cluster.publish(`nodes/${engine?.id}/control/deploy`, first);
  await waitState(first, 'RUNNING');
  const t1 = await logsOf(first, /host-ro/, 180_000);
  for (const want of [/conf-from-url/, /hello-from-url/, /from-the-allowed-dir/, /args:one two/, /stamps:1/, /host-ro/]) assert.match(t1, want);
  assert.equal(existsSync(join(allowed, 'new')), false, 'the read-only host path stays unwritten');
  await undeploy(first);
  assert.equal(readFileSync(join(dir.path, 'volumes', `org${run}`, 'mdata', 'log'), 'utf8'), 'stamp\n', 'the named volume stays on the worker');
  const second = deploy('mvol', 1, extra);
  await cluster.publish(`nodes/${engine?.id}/control/deploy`, second);
  await waitState(second, 'RUNNING');
  assert.match(await logsOf(second, /stamps:2/, 180_000), /stamps:2/, 'the redeployed VM sees the first one\'s data');
  await undeploy(second);
  // a host path outside the allow-list: FAILED with the reason, as for containers
  const outside = deploy('mvout', 0, { virtualization: 'microvm', memory: 128, volumes: ['/etc:/hostetc:ro'] });
  await cluster.publish(`nodes/${engine?.id}/control/deploy`, outside);
  assert.match(String((await waitState(outside, 'FAILED'))['status_detail']), /outside this worker's allowed directories/);
});

test('container: with no cmd, args go after the image\'s own entrypoint + cmd', { skip, timeout: 120_000 }, async () => {
  // the busybox image's default command is `sh -c "<script>"`: the extra argument goes last
  const cmd = deploy('noargs', 0, { args: ['extra-arg'] });
  await cluster.publish(`nodes/${engine?.id}/control/deploy`, cmd);
  await waitState(cmd, 'RUNNING');
  const info = await ctd.ctr(['containers', 'info', `${cmd.job_name}.instance.0`]);
  const args = (JSON.parse(info.stdout) as { Spec: { process: { args: string[] } } }).Spec.process.args;
  assert.deepEqual(args, ['sh', '-c', 'echo hello from busybox; sleep 3600', 'extra-arg']);
  await undeploy(cmd);
});

test('a host path outside the allow-list, and a missing added file, fail the instance with the reason', { skip, timeout: 60_000 }, async () => {
  const outside = deploy('outside', 0, { volumes: ['/etc:/hostetc:ro'] });
  await cluster.publish(`nodes/${engine?.id}/control/deploy`, outside);
  const f = await waitState(outside, 'FAILED');
  assert.match(String(f['status_detail']), /volume source \/etc is outside this worker's allowed directories/);
  const nofile = deploy('nofile', 0, { added_files: [`${base}/missing.txt`] });
  await cluster.publish(`nodes/${engine?.id}/control/deploy`, nofile);
  assert.match(String((await waitState(nofile, 'FAILED'))['status_detail']), /added_files\[0\]: cannot fetch .*HTTP 404/);
  const hostile = deploy('hostile', 0, { added_files: [{ url: `${base}/conf.txt`, path: '/etc/../../x' }] });
  await cluster.publish(`nodes/${engine?.id}/control/deploy`, hostile);
  assert.match(String((await waitState(hostile, 'FAILED'))['status_detail']), /added_files\[0\]\.path/);
});

test('process: args after cmd, added files in the work dir, storage as a size-limited tmpfs', { skip, timeout: 120_000 }, async () => {
  const cmd = deploy('proc', 0, {
    virtualization: 'process', code: '/bin/sh',
    cmd: ['-c', 'cat conf/p.txt; cat hello.txt; echo "args:$*"; echo "mode:$(stat -c %a conf/p.txt)"; df -k . | tail -1; dd if=/dev/zero of=big bs=1M count=9 2>/dev/null; echo "dd:$?"; sleep 3600', 'argv0'],
    args: ['a', 'b'],
    storage: 8,
    added_files: [{ url: `${base}/conf.txt`, path: 'conf/p.txt', mode: '0600' }, `${base}/hello.txt`],
  });
  await cluster.publish(`nodes/${engine?.id}/control/deploy`, cmd);
  await waitState(cmd, 'RUNNING');
  const text = await logsOf(cmd, /dd:\d/);
  assert.match(text, /dd:1/, 'writing 9 MB into an 8 MB work dir fails');
  assert.match(text, /conf-from-url/);
  assert.match(text, /hello-from-url/);
  assert.match(text, /args:a b/);
  assert.match(text, /mode:600/);
  const df = /oak-storage\s+(\d+)/.exec(text);
  assert.ok(df, `df shows the tmpfs: ${text}`);
  assert.equal(Number(df[1]), 8 * 1024, 'an 8 MB tmpfs');
  const work = join(dir.path, 'proc', 'work', `${cmd.job_name}.instance.0`);
  await undeploy(cmd);
  assert.equal(existsSync(work), false, 'the tmpfs is unmounted and the work dir removed');
  assert.doesNotMatch(readFileSync('/proc/self/mountinfo', 'utf8'), new RegExp(cmd.job_name.replace(/\./g, '\\.')));
});

test('added files: size caps and deadlines hold, nothing is left behind', async () => {
  const d = join(dir.path, 'caps');
  const big = await fetchAddedFiles([`${base}/big.bin`], 'container', d, { maxFileBytes: 1000 });
  assert.equal(big.ok, false);
  assert.match(big.ok ? '' : big.reason, /added_files\[0\]: cannot fetch .*big\.bin: .*at most 1000 are fetched/);
  assert.equal(existsSync(d), false);
  const total = await fetchAddedFiles([`${base}/big.bin`, `${base}/conf.txt`], 'process', d, { maxTotalBytes: 10_005 });
  assert.equal(total.ok, false, 'the second file is over what is left of the total budget');
  const ok = await fetchAddedFiles([`${base}/conf.txt`, { url: `${base}/hello.txt`, path: '/opt/h.txt', mode: '0755' }], 'container', d);
  assert.ok(ok.ok);
  assert.deepEqual(ok.files.map((f) => [f.target, f.mode]), [['/oak/files/conf.txt', 0o644], ['/opt/h.txt', 0o755]]);
  assert.equal(readFileSync(ok.files[0]?.source ?? '', 'utf8'), 'conf-from-url\n');
  // a microvm's files land at absolute paths in its own root, as a container's
  const vm = await fetchAddedFiles([`${base}/conf.txt`, { url: `${base}/hello.txt`, path: '/opt/h.txt' }], 'microvm', d);
  assert.deepEqual(vm.ok ? vm.files.map((f) => f.target) : vm, ['/oak/files/conf.txt', '/opt/h.txt']);
  assert.match(JSON.stringify(await fetchAddedFiles(['file:///etc/passwd'], 'process', d)), /only http and https/);
  assert.match(JSON.stringify(await fetchAddedFiles('x', 'process', d)), /must be a list/);
});
