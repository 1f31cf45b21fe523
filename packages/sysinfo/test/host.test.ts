import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Cgroup, CpuSampler, arch, cgroupInfo, cpuCount, cpuPercent, disk, gpus, hostname, isSameProcessAlive, memory, os, processCgroups, processStartTime } from '../src/index.ts';

test('host readings', async () => {
  assert.ok(cpuCount() >= 1);
  const s = new CpuSampler();
  let x = 0;
  for (let i = 0; i < 2e6; i++) x += i;
  assert.ok(x > 0);
  const p = s.percent();
  assert.ok(p >= 0 && p <= 100, String(p));
  const q = cpuPercent();
  assert.ok(q >= 0 && q <= 100);
  const m = memory();
  assert.ok(m.total_mb > 0 && m.free_mb > 0 && m.free_mb <= m.total_mb);
  const d = await disk('/');
  assert.ok(d.total_mb > 0 && d.free_mb <= d.total_mb);
  assert.ok(gpus() >= 0);
  assert.match(arch(), /^(amd64|arm64|arm|386|riscv64|ppc64le|s390x)$/);
  assert.equal(os(), 'linux');
  assert.ok(hostname().length > 0);
});

test('a sample is cheap (cpu + memory well under 5 ms)', () => {
  const s = new CpuSampler();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 100; i++) {
    s.percent();
    memory();
  }
  const perCallMs = Number(process.hrtime.bigint() - t0) / 1e6 / 100;
  assert.ok(perCallMs < 5, `${perCallMs} ms`);
});

test('process start time tells a live process from a reused pid', async () => {
  const st = await processStartTime(process.pid);
  assert.ok(typeof st === 'number' && st > 0);
  assert.equal(await isSameProcessAlive(process.pid, st), true);
  assert.equal(await isSameProcessAlive(process.pid, (st as number) + 1), false);
  assert.equal(await isSameProcessAlive(2 ** 22 + 7, undefined), false);
});

const info = cgroupInfo();
test('cgroup: create, limit, add a pid, read usage, remove', { skip: info.writable ? false : info.detail }, async () => {
  const parent = `oak-sysinfo-test-${process.pid}`;
  const cg = await Cgroup.create('g1', { parent, info });
  const child = spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
  try {
    await cg.setMemoryLimit(32);
    await cg.setCpuQuota(0.5);
    assert.equal(await cg.memoryLimit(), 32 * 1048576);
    await cg.addPid(child.pid as number);
    assert.deepEqual(await cg.pids(), [child.pid]);
    const mine = await processCgroups(child.pid as number);
    if (cg.ref.version === 1) {
      assert.equal(mine.byController.get('memory'), `/${parent}/g1`);
      assert.equal(mine.byController.get('cpu'), `/${parent}/g1`);
    } else {
      assert.equal(mine.v2, `/${parent}/g1`);
    }
    assert.ok((await cg.memoryUsage()) >= 0);
    assert.ok((await cg.cpuUsage()) >= 0);
    assert.equal(await cg.oomKills(), 0);
    // a second create of the same name reuses the directories
    const again = await Cgroup.create('g1', { parent, info });
    assert.deepEqual(again.dirs(), cg.dirs());
    await cg.kill('SIGKILL');
    await once(child, 'exit');
    await cg.remove();
    await cg.remove(); // idempotent
  } finally {
    child.kill('SIGKILL');
    await cg.remove().catch(() => undefined);
    await Cgroup.open(cg.ref.version === 1
      ? { version: 1, dirs: Object.fromEntries(Object.entries(cg.ref.dirs).map(([k, v]) => [k, v.replace(/\/g1$/, '')])) }
      : { version: 2, dir: cg.ref.dir.replace(/\/g1$/, '') }).remove().catch(() => undefined);
  }
});

test('cgroup: a shell past its memory limit is OOM-killed and counted', { skip: info.writable ? false : info.detail }, async () => {
  const parent = `oak-sysinfo-test-${process.pid}`;
  const cg = await Cgroup.create('oom', { parent, info });
  try {
    await cg.setMemoryLimit(16);
    // the child waits on stdin until it is in the group, then allocates
    const child = spawn('/bin/sh', ['-c', 'read go; x=$(head -c 60000000 /dev/zero | tr "\\0" a); echo ${#x}'], { stdio: ['pipe', 'ignore', 'ignore'] });
    await cg.addPid(child.pid as number);
    child.stdin.end('go\n');
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    assert.equal(signal, 'SIGKILL', `code ${code}`);
    assert.ok((await cg.oomKills()) >= 1);
  } finally {
    await cg.kill('SIGKILL');
    await cg.remove().catch(() => undefined);
    const parentRef = cg.ref.version === 1
      ? { version: 1 as const, dirs: Object.fromEntries(Object.entries(cg.ref.dirs).map(([k, v]) => [k, v.replace(/\/oom$/, '')])) }
      : { version: 2 as const, dir: cg.ref.dir.replace(/\/oom$/, '') };
    await Cgroup.open(parentRef).remove().catch(() => undefined);
  }
});

// The hybrid layout's v2 hierarchy holds no controllers, but groups, cgroup.procs, cpu.stat and
// cgroup.kill work there: enough to run the v2 code paths on a v1 machine.
const v2root = info.version === 'hybrid' ? info.unified : undefined;
test('cgroup v2 code paths on the controller-less unified hierarchy', { skip: v2root !== undefined && info.writable ? false : 'no hybrid v2 hierarchy' }, async () => {
  const v2info = { ...info, version: 2 as const, memoryController: v2root, cpuController: v2root, cpuacctController: v2root, pidsController: v2root };
  const parent = `oak-sysinfo-v2-${process.pid}`;
  const cg = await Cgroup.create('g', { parent, info: v2info });
  const child = spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
  try {
    assert.deepEqual(cg.ref, { version: 2, dir: `${v2root}/${parent}/g` });
    await cg.addPid(child.pid as number);
    assert.deepEqual(await cg.pids(), [child.pid]);
    assert.equal((await processCgroups(child.pid as number)).v2, `/${parent}/g`);
    assert.ok((await cg.cpuUsage()) >= 0);
    assert.equal(await cg.oomKills(), 0);
    await assert.rejects(cg.setMemoryLimit(32), /ENOENT|EACCES|EPERM/); // no memory controller here
    const exited = once(child, 'exit');
    await cg.kill('SIGKILL'); // cgroup.kill
    assert.deepEqual(await exited, [null, 'SIGKILL']);
    await cg.remove();
  } finally {
    child.kill('SIGKILL');
    await cg.remove().catch(() => undefined);
    await Cgroup.open({ version: 2, dir: `${v2root}/${parent}` }).remove().catch(() => undefined);
  }
});
