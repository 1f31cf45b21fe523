/**
 * ContainerdRuntime against a real private containerd, a private registry and the testkit's
 * busybox image. One containerd per file (fresh namespace), every instance stopped at the end.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { BUSYBOX_INDEX_HTML, buildBusyboxImage, createNetwork, freePort, startContainerd, startRegistry, tmpDir, waitFor } from '@oak/testkit';
import type { ContainerdInstance, RegistryInstance, TmpDir } from '@oak/testkit';
import { ContainerdRuntime } from '../src/containerd/index.ts';
import type { InstanceExit, InstanceSpec } from '../src/types.ts';

let ctd: ContainerdInstance;
let reg: RegistryInstance;
let dir: TmpDir;
let image: string;
let rt: ContainerdRuntime;
const exits: InstanceExit[] = [];
const runtimes: ContainerdRuntime[] = [];

function newRuntime(): ContainerdRuntime {
  const r = new ContainerdRuntime({ socket: ctd.socket, namespace: ctd.namespace, dataDir: dir.path, portBindAddress: '127.0.0.1', stopGraceMs: 1000 });
  runtimes.push(r);
  return r;
}

before(async () => {
  ctd = await startContainerd();
  reg = await startRegistry();
  dir = await tmpDir('oak-ctd-rt');
  image = await buildBusyboxImage(reg);
  rt = newRuntime();
  rt.onExit((e) => exits.push(e));
});

after(async () => {
  for (const r of runtimes) {
    for (const s of await r.list().catch(() => [])) await r.stop(s.id).catch(() => undefined);
    await r.close();
  }
  await ctd?.stop();
  await reg?.stop();
  await dir?.remove();
});

let n = 0;
function spec(o: Partial<InstanceSpec> = {}): InstanceSpec {
  n++;
  const job = 'app.test.svc.test';
  return {
    id: `${job}.instance.${n}`, job_name: job, instance_number: n, virtualization: 'container', code: image,
    env: ['KEY=hello-env'], ports: [], one_shot: false, labels: { job_name: job, instance_number: String(n) }, ...o,
  };
}

function exitOf(id: string, timeoutMs = 15_000): Promise<InstanceExit> {
  return waitFor(() => exits.find((e) => e.id === id), { timeoutMs, message: `exit of ${id}` });
}

async function logText(r: ContainerdRuntime, id: string): Promise<string> {
  const lines: string[] = [];
  for await (const l of r.logs(id)) lines.push(l);
  return lines.join('\n');
}

function cgroupFile(ctrl: string, id: string, file: string): string {
  return readFileSync(`/sys/fs/cgroup/${ctrl}/${ctd.namespace}/${id}/${file}`, 'utf8').trim();
}

test('probe finds the private containerd and runc', async () => {
  const p = await rt.probe();
  assert.equal(p.available, true);
  assert.match(p.detail, /^containerd 1\.\d+\.\d+$/);
  const missing = new ContainerdRuntime({ socket: `${dir.path}/nope.sock`, dataDir: dir.path });
  assert.equal((await missing.probe()).available, false);
  await missing.close();
});

test('pulls and runs a long-running container: RUNNING, visible process, labels, default image cmd', async () => {
  const s = spec();
  const st = await rt.start(s);
  assert.equal(st.state, 'RUNNING');
  assert.ok(st.pid && st.pid > 0);
  assert.deepEqual(st.labels, s.labels);
  // right after Start, the pid may still be `runc init` about to exec the command
  const cmdline = await waitFor(() => {
    const c = readFileSync(`/proc/${st.pid}/cmdline`, 'utf8').split('\0').join(' ');
    return /sleep 3600/.test(c) && c;
  }, { timeoutMs: 5000, message: 'image default command in /proc' });
  assert.match(cmdline, /sleep 3600/, 'image default command runs');
  assert.match(await waitFor(async () => { const t = await logText(rt, s.id); return t.includes('hello') && t; }), /hello from busybox/);
  assert.equal((await rt.status(s.id))?.state, 'RUNNING');
  // starting again is a no-op returning the same instance
  const again = await rt.start(s);
  assert.equal(again.pid, st.pid);
  const [a, b] = await Promise.all([rt.start(s), rt.start(s)]);
  assert.equal(a.pid, st.pid);
  assert.equal(b.pid, st.pid);
  const stats = await rt.stats(s.id);
  assert.ok(stats && stats.memory_mb >= 0 && stats.cpu_percent >= 0);
  await rt.stop(s.id);
});

test('cmd replaces the image command; env reaches the process; one-shot exit 0 -> COMPLETED', async () => {
  const s = spec({ one_shot: true, cmd: ['sh', '-c', 'echo "KEY is $KEY"; echo "PATH is $PATH"'] });
  await rt.start(s);
  const e = await exitOf(s.id);
  assert.deepEqual(e, { id: s.id, exit_code: 0, state: 'COMPLETED', detail: 'completed' });
  const text = await logText(rt, s.id);
  assert.match(text, /KEY is hello-env/);
  assert.match(text, /PATH is \/bin/);
  assert.doesNotMatch(text, /hello from busybox/);
  const st = await rt.status(s.id);
  assert.equal(st?.state, 'COMPLETED');
  assert.equal(st?.exit_code, 0);
  await rt.stop(s.id);
});

test('exit 3 -> FAILED with the code; a service exiting 0 is FAILED too', async () => {
  const s = spec({ one_shot: true, cmd: ['sh', '-c', 'exit 3'] });
  const svc = spec({ one_shot: false, cmd: ['true'] });
  await Promise.all([rt.start(s), rt.start(svc)]);
  const e = await exitOf(s.id);
  assert.equal(e.state, 'FAILED');
  assert.equal(e.exit_code, 3);
  assert.equal(e.detail, 'exited with code 3');
  const e2 = await exitOf(svc.id);
  assert.equal(e2.state, 'FAILED');
  assert.equal(e2.exit_code, 0);
  assert.equal(exits.filter((x) => x.id === s.id).length, 1, 'reported once');
  await rt.stop(s.id);
  await rt.stop(svc.id);
});

test('memory and CPU limits land in the cgroup', async () => {
  const s = spec({ memory_mb: 64, vcpus: 0.5 });
  await rt.start(s);
  assert.equal(cgroupFile('memory', s.id, 'memory.limit_in_bytes'), String(64 * 1024 * 1024));
  assert.equal(cgroupFile('cpu', s.id, 'cpu.cfs_quota_us'), '50000');
  assert.equal(cgroupFile('cpu', s.id, 'cpu.cfs_period_us'), '100000');
  await rt.stop(s.id);
});

test('allocating past the memory limit -> FAILED, out of memory (the wording of every driver)', async () => {
  const s = spec({ memory_mb: 16, one_shot: true, cmd: ['sh', '-c', 'echo start; x=$(head -c 67108864 /dev/zero | tr "\\0" a); echo survived'] });
  await rt.start(s);
  const e = await exitOf(s.id, 30_000);
  assert.equal(e.state, 'FAILED');
  assert.equal(e.exit_code, 137);
  assert.equal(e.detail, 'out of memory: killed at the 16 MB limit');
  assert.doesNotMatch(await logText(rt, s.id), /survived/);
  await rt.stop(s.id);
});

test('logs: tail and follow until the container exits', async () => {
  const s = spec({ one_shot: true, cmd: ['sh', '-c', 'for i in 1 2 3 4 5; do echo line-$i; sleep 0.2; done'] });
  await rt.start(s);
  const followed: string[] = [];
  for await (const l of rt.logs(s.id, { follow: true })) followed.push(l);
  assert.deepEqual(followed, ['line-1', 'line-2', 'line-3', 'line-4', 'line-5']);
  const tail: string[] = [];
  for await (const l of rt.logs(s.id, { tail: 2 })) tail.push(l);
  assert.deepEqual(tail, ['line-4', 'line-5']);
  // follow stops on abort for a running container
  const long = spec({ cmd: ['sh', '-c', 'while true; do echo tick; sleep 0.1; done'] });
  await rt.start(long);
  const ac = new AbortController();
  const got: string[] = [];
  setTimeout(() => ac.abort(), 700);
  for await (const l of rt.logs(long.id, { follow: true, signal: ac.signal })) got.push(l);
  assert.ok(got.length >= 3 && got.every((l) => l === 'tick'));
  await rt.stop(long.id);
  await rt.stop(s.id);
  await assert.rejects(async () => { for await (const _ of rt.logs('no.such.instance')) { /* none */ } }, /no container instance/);
});

test('stop removes task, container, snapshot and log; stop is idempotent', async () => {
  const s = spec();
  const st = await rt.start(s);
  const log = `${dir.path}/logs/${s.id}.log`;
  assert.ok(existsSync(log));
  const t0 = Date.now();
  await rt.stop(s.id); // busybox sh as pid 1 ignores SIGTERM: SIGKILL after the 1 s grace
  assert.ok(Date.now() - t0 < 8000);
  assert.equal(await rt.status(s.id), undefined);
  assert.equal(existsSync(`/proc/${st.pid}`), false);
  assert.doesNotMatch((await ctd.ctr(['tasks', 'ls', '-q'])).stdout, new RegExp(s.id.replace(/\./g, '\\.')));
  assert.doesNotMatch((await ctd.ctr(['containers', 'ls', '-q'])).stdout, new RegExp(s.id.replace(/\./g, '\\.')));
  assert.doesNotMatch((await ctd.ctr(['snapshots', 'ls'])).stdout, new RegExp(s.id.replace(/\./g, '\\.')));
  assert.equal(existsSync(log), false);
  await rt.stop(s.id);
  await rt.stop('never.started.instance.0');
  assert.equal(exits.some((e) => e.id === s.id), false, 'a stop is not reported as an exit');
});

test('stop with keepLog moves the log there (the NodeEngine keeps it), shutdown lines included', async () => {
  const s = spec({ cmd: ['sh', '-c', 'trap "echo bye from the container; exit 0" TERM; echo up; while true; do sleep 0.1; done'] });
  await rt.start(s);
  await waitFor(async () => (await logText(rt, s.id)).includes('up'), { timeoutMs: 10_000, message: 'up' });
  const kept = `${dir.path}/kept-${n}.log`;
  await rt.stop(s.id, { keepLog: kept });
  assert.equal(existsSync(`${dir.path}/logs/${s.id}.log`), false, 'gone from the driver');
  const lines = readFileSync(kept, 'utf8').trim().split('\n');
  assert.equal(lines[0], 'up');
  // stdout and stderr ("Terminated" of the shell) are copied separately: their order may vary
  assert.ok(lines.includes('bye from the container'), 'written after the stop began');
  await rt.stop('never.started.instance.0', { keepLog: `${dir.path}/none.log` });
  assert.equal(existsSync(`${dir.path}/none.log`), false, 'nothing to keep: nothing written');
});

test('a SIGTERM-aware container stops within the grace period', async () => {
  const s = spec({ cmd: ['sh', '-c', 'trap "echo bye; exit 0" TERM; while true; do sleep 0.1; done'] });
  await rt.start(s);
  await waitFor(() => rt.status(s.id).then((x) => x?.state === 'RUNNING'));
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  await rt.stop(s.id);
  assert.ok(Date.now() - t0 < 900, `stopped in ${Date.now() - t0} ms`);
});

test('re-adoption: a new runtime lists the running container and reports its later exit', async () => {
  const s = spec({ one_shot: true, cmd: ['sh', '-c', 'sleep 2; exit 5'] });
  const first = newRuntime();
  const firstExits: InstanceExit[] = [];
  first.onExit((e) => firstExits.push(e));
  const st = await first.start(s);
  await first.close(); // the NodeEngine goes away; the shim keeps the task

  const second = newRuntime();
  const seen: InstanceExit[] = [];
  second.onExit((e) => seen.push(e));
  const listed = (await second.list()).find((x) => x.id === s.id);
  assert.ok(listed);
  assert.equal(listed.state, 'RUNNING');
  assert.equal(listed.pid, st.pid);
  assert.deepEqual(listed.labels, s.labels);
  const e = await waitFor(() => seen.find((x) => x.id === s.id), { timeoutMs: 15_000, message: 'adopted exit' });
  assert.equal(e.exit_code, 5);
  assert.equal(e.state, 'FAILED');
  assert.equal(firstExits.length, 0);

  // a third runtime sees the recorded verdict and does not report it again
  const third = newRuntime();
  const thirdSeen: InstanceExit[] = [];
  third.onExit((x) => thirdSeen.push(x));
  const again = (await third.list()).find((x) => x.id === s.id);
  assert.equal(again?.state, 'FAILED');
  assert.equal(again?.detail, 'exited with code 5');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(thirdSeen.length, 0);
  await third.stop(s.id);
});

test('port mapping host:container is reachable (busybox httpd on the host network)', async () => {
  const containerPort = await freePort();
  const hostPort = await freePort();
  const s = spec({ cmd: ['httpd', '-f', '-p', `127.0.0.1:${containerPort}`, '-h', '/www'], ports: [{ hostPort, containerPort, protocol: 'tcp' }] });
  await rt.start(s);
  const direct = await waitFor(async () => (await fetch(`http://127.0.0.1:${containerPort}/`)).text(), { message: 'httpd' });
  assert.equal(direct, BUSYBOX_INDEX_HTML);
  assert.equal(await (await fetch(`http://127.0.0.1:${hostPort}/`)).text(), BUSYBOX_INDEX_HTML);
  await rt.stop(s.id);
  await assert.rejects(fetch(`http://127.0.0.1:${hostPort}/`), 'proxy closed with the instance');
});

test('joins a given network namespace instead of the host network', async (t) => {
  const net = await createNetwork('ctr');
  t.after(() => net.destroy());
  const host = await net.addHost('w1');
  const s = spec({ one_shot: true, netns: host.nsPath, cmd: ['ip', '-4', 'addr', 'show', 'eth0'] });
  await rt.start(s);
  const e = await exitOf(s.id);
  assert.equal(e.state, 'COMPLETED');
  assert.match(await logText(rt, s.id), new RegExp(`inet ${host.ip.replace(/\./g, '\\.')}/24`));
  await rt.stop(s.id);
});

test('a missing image or a bad command is a RuntimeError and leaves nothing behind', async () => {
  const missing = spec({ code: `${reg.url}/library/nope:1` });
  await assert.rejects(rt.start(missing), (e: Error & { reason?: string }) => e.reason === 'image_pull_failed');
  const bad = spec({ cmd: ['/no/such/binary'] });
  await assert.rejects(rt.start(bad), (e: Error & { reason?: string }) => e.reason === 'start_failed' && /no such file/i.test(e.message));
  assert.equal(await rt.status(bad.id), undefined);
});
