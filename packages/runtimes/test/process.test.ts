import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, rmdir, writeFile, chmod } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Cgroup, cgroupInfo, isSameProcessAlive, processCgroups } from '@oak/sysinfo';
import { ProcessRuntime, RuntimeError } from '../src/index.ts';
import type { InstanceExit, InstanceSpec } from '../src/index.ts';

const info = cgroupInfo();
const CG = info.writable;
const parent = `oak-test-${process.pid}`;
const roots: string[] = [];
const runtimes: ProcessRuntime[] = [];

async function setup(opts: { stopGraceMs?: number; noCgroups?: boolean; dataDir?: string } = {}): Promise<{ rt: ProcessRuntime; dataDir: string; exits: InstanceExit[]; exitOf: (id: string, ms?: number) => Promise<InstanceExit> }> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'oak-proc-')));
  if (opts.dataDir === undefined) roots.push(dataDir);
  const rt = new ProcessRuntime({
    dataDir,
    cgroupParent: parent,
    stopGraceMs: opts.stopGraceMs ?? 2000,
    pollMs: 100,
    ...(opts.noCgroups === true ? { cgroupInfo: { ...info, writable: false, detail: 'pretend: not root' } } : {}),
  });
  runtimes.push(rt);
  const exits: InstanceExit[] = [];
  const waiters: Array<() => void> = [];
  rt.onExit((e) => {
    exits.push(e);
    for (const w of waiters.splice(0)) w();
  });
  const exitOf = async (id: string, ms = 10000): Promise<InstanceExit> => {
    const end = Date.now() + ms;
    for (;;) {
      const e = exits.find((x) => x.id === id);
      if (e) return e;
      if (Date.now() > end) throw new Error(`no exit of ${id} within ${ms} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  };
  return { rt, dataDir, exits, exitOf };
}

let n = 0;
function spec(over: Partial<InstanceSpec> & { code: string }): InstanceSpec {
  const id = over.id ?? `app.ns.svc.ns.instance.${n++}`;
  return { id, job_name: 'app.ns.svc.ns', instance_number: 0, virtualization: 'process', env: [], ports: [], one_shot: false, labels: { job_name: 'app.ns.svc.ns' }, ...over };
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const l of it) out.push(l);
  return out;
}

async function waitFor(cond: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

after(async () => {
  for (const rt of runtimes) {
    for (const s of await rt.list().catch(() => [])) await rt.stop(s.id).catch(() => undefined);
    await rt.close();
  }
  if (CG) {
    const dirs = info.version === 2 ? [join(info.unified as string, parent)] : [info.memoryController, info.cpuController, info.cpuacctController, info.pidsController].filter((d): d is string => d !== undefined).map((d) => join(d, parent));
    for (const d of new Set(dirs)) await rmdir(d).catch(() => undefined);
  }
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

test('probe reports cgroup limits', async () => {
  const { rt } = await setup();
  const p = await rt.probe();
  assert.equal(p.available, true);
  if (CG) assert.match(p.detail, /limits by cgroup/);
  else assert.match(p.detail, /no cgroup limits/);
});

test('sleep runs in its own cgroup with the memory limit and cpu quota; stop removes everything', { skip: CG ? false : info.detail }, async () => {
  const { rt, dataDir } = await setup();
  const s = spec({ code: '/bin/sleep', cmd: ['30'], memory_mb: 64, vcpus: 0.5 });
  const st = await rt.start(s);
  assert.equal(st.state, 'RUNNING');
  assert.equal(st.labels.job_name, 'app.ns.svc.ns');
  const pid = st.pid as number;
  const cg = JSON.parse(await readFile(join(dataDir, 'instances', s.id, 'state.json'), 'utf8')).cgroup;
  const group = Cgroup.open(cg);
  await waitFor(async () => (await group.pids()).length === 2); // the wrapper and sleep
  const pids = await group.pids();
  assert.ok(pids.includes(pid));
  const workload = pids.find((p) => p !== pid) as number;
  assert.match(await readFile(`/proc/${workload}/cmdline`, 'utf8'), /^\/bin\/sleep\u000030/);
  const where = await processCgroups(workload);
  if (info.version === 2) assert.equal(where.v2, `/${parent}/${s.id}`);
  else {
    assert.equal(where.byController.get('memory'), `/${parent}/${s.id}`);
    assert.equal(where.byController.get('cpu'), `/${parent}/${s.id}`);
    assert.equal(await readFile(join(info.memoryController as string, parent, s.id, 'memory.limit_in_bytes'), 'utf8'), `${64 * 1048576}\n`);
    assert.equal(await readFile(join(info.cpuController as string, parent, s.id, 'cpu.cfs_quota_us'), 'utf8'), '50000\n');
  }
  assert.equal(await group.memoryLimit(), 64 * 1048576);
  // the workload is its own session: setsid put the wrapper in charge of a fresh process group
  const stat = (await readFile(`/proc/${workload}/stat`, 'utf8')).split(') ')[1]?.split(' ');
  assert.equal(Number(stat?.[2]), pid, 'pgrp of the workload is the wrapper');

  // start again: a no-op
  const again = await rt.start(s);
  assert.equal(again.pid, pid);

  const t0 = Date.now();
  await rt.stop(s.id);
  assert.ok(Date.now() - t0 < 1900, 'sleep dies on SIGTERM, before the 2 s grace period');
  assert.equal(await isSameProcessAlive(workload, undefined), false);
  assert.equal(await isSameProcessAlive(pid, undefined), false);
  for (const d of group.dirs()) assert.equal(existsSync(d), false, `${d} removed`);
  assert.equal(existsSync(join(dataDir, 'instances', s.id)), false);
  assert.equal(await rt.status(s.id), undefined);
  await rt.stop(s.id); // idempotent
  await rt.stop('never.existed');
});

test('exit codes: 3 is FAILED, one-shot true is COMPLETED, a service exiting 0 is FAILED', async () => {
  const { rt, exitOf } = await setup();
  const a = await rt.start(spec({ code: '/bin/sh', cmd: ['-c', 'exit 3'] }));
  const b = await rt.start(spec({ code: '/bin/true', one_shot: true }));
  const c = await rt.start(spec({ code: 'true' }));
  const ea = await exitOf(a.id);
  assert.deepEqual({ ...ea }, { id: a.id, exit_code: 3, state: 'FAILED', detail: 'exited with code 3' });
  const eb = await exitOf(b.id);
  assert.equal(eb.state, 'COMPLETED');
  assert.equal(eb.exit_code, 0);
  const ec = await exitOf(c.id);
  assert.equal(ec.state, 'FAILED');
  assert.equal(ec.detail, 'exited with code 0');
  const sa = await rt.status(a.id);
  assert.equal(sa?.state, 'FAILED');
  assert.equal(sa?.exit_code, 3);
  const listed = await rt.list();
  assert.deepEqual(listed.map((s) => s.state).sort(), ['COMPLETED', 'FAILED', 'FAILED']);
});

test('a signal reads as "killed by signal"', async () => {
  const { rt, exitOf } = await setup();
  const s = await rt.start(spec({ code: '/bin/sh', cmd: ['-c', 'kill -9 $$'] }));
  const e = await exitOf(s.id);
  assert.equal(e.state, 'FAILED');
  assert.equal(e.exit_code, 137);
  assert.equal(e.detail, 'killed by signal SIGKILL');
});

test('over its memory limit: FAILED, out of memory', { skip: CG ? false : info.detail }, async () => {
  const { rt, exitOf } = await setup();
  const s = await rt.start(spec({ code: '/bin/sh', cmd: ['-c', 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo ${#x}'], memory_mb: 32, one_shot: true }));
  const e = await exitOf(s.id);
  assert.equal(e.state, 'FAILED');
  assert.equal(e.exit_code, 137);
  assert.equal(e.detail, 'out of memory: killed at the 32 MB limit');
  // the same shell without a limit completes: the limit did it, not the shell
  const free = await rt.start(spec({ code: '/bin/sh', cmd: ['-c', 'x=$(head -c 40000000 /dev/zero | tr "\\0" a); echo ${#x}'], one_shot: true }));
  assert.equal((await exitOf(free.id)).state, 'COMPLETED');
  assert.deepEqual(await collect(rt.logs(free.id)), ['40000000']);
});

test('env and args reach the process; PATH is minimal; cwd is the work dir', async () => {
  const { rt, exitOf, dataDir } = await setup();
  const s = await rt.start(spec({ code: '/bin/sh', cmd: ['-c', 'echo "$FOO|$1|$2|$PATH"; pwd; echo oops >&2', 'sh', 'a b', 'c'], env: ['FOO=bar=baz', 'EMPTY='], one_shot: true }));
  await exitOf(s.id);
  const lines = await collect(rt.logs(s.id));
  assert.deepEqual(lines, ['bar=baz|a b|c|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', join(dataDir, 'work', s.id), 'oops']);
  assert.deepEqual(await collect(rt.logs(s.id, { tail: 1 })), ['oops']);
  assert.deepEqual(await collect(rt.logs(s.id, { tail: 2 })), [join(dataDir, 'work', s.id), 'oops']);
  assert.deepEqual(await collect(rt.logs(s.id, { tail: 10 })), lines);
});

test('logs follow until the instance exits, or until aborted', async () => {
  const { rt } = await setup();
  const s = await rt.start(spec({ code: '/bin/sh', cmd: ['-c', 'echo one; sleep 0.3; echo two; sleep 0.3; printf three'], one_shot: true }));
  const t0 = Date.now();
  assert.deepEqual(await collect(rt.logs(s.id, { follow: true })), ['one', 'two', 'three']);
  assert.ok(Date.now() - t0 >= 500);
  const long = await rt.start(spec({ code: '/bin/sh', cmd: ['-c', 'i=0; while :; do echo tick$i; i=$((i+1)); sleep 0.1; done'] }));
  const ac = new AbortController();
  const got: string[] = [];
  for await (const l of rt.logs(long.id, { follow: true, tail: 0, signal: ac.signal })) {
    got.push(l);
    if (got.length === 3) ac.abort();
  }
  assert.equal(got.length, 3);
  assert.match(got[0] as string, /^tick\d+$/);
  await rt.stop(long.id);
});

test('stop with keepLog moves the log out before the instance is removed: an ended one and a stopped one', async () => {
  const { rt, dataDir, exitOf } = await setup();
  const ended = await rt.start(spec({ code: '/bin/sh', cmd: ['-c', 'echo done; echo oops >&2; exit 2'] }));
  await exitOf(ended.id);
  await rt.stop(ended.id, { keepLog: join(dataDir, 'kept-ended.log') });
  assert.equal(await readFile(join(dataDir, 'kept-ended.log'), 'utf8'), 'done\noops\n');
  const svc = await rt.start(spec({ code: '/bin/sh', cmd: ['-c', 'trap "echo bye; exit 0" TERM; echo hi; while :; do sleep 0.05; done'] }));
  await waitFor(async () => (await collect(rt.logs(svc.id))).includes('hi'));
  await rt.stop(svc.id, { keepLog: join(dataDir, 'kept-svc.log') });
  assert.equal(await rt.status(svc.id), undefined);
  const text = await readFile(join(dataDir, 'kept-svc.log'), 'utf8');
  assert.match(text, /^hi\n/);
  assert.match(text, /bye\n$/, 'written after the stop began');
});

test('stop ends the whole process group and escapees in the cgroup; SIGKILL after the grace period', { skip: CG ? false : info.detail }, async () => {
  const { rt, dataDir } = await setup({ stopGraceMs: 300 });
  const s = spec({ code: '/bin/sh', cmd: ['-c', 'trap "" TERM; sleep 30 & setsid sleep 31 & sleep 32 & wait'] });
  const st = await rt.start(s);
  const group = Cgroup.open(JSON.parse(await readFile(join(dataDir, 'instances', s.id, 'state.json'), 'utf8')).cgroup);
  await waitFor(async () => (await group.pids()).length >= 5);
  const pids = await group.pids();
  const t0 = Date.now();
  await rt.stop(s.id);
  const took = Date.now() - t0;
  assert.ok(took >= 250 && took < 2500, `stop took ${took} ms`);
  for (const p of pids) assert.equal(await isSameProcessAlive(p, undefined), false, `pid ${p} gone`);
  assert.equal(await isSameProcessAlive(st.pid as number, undefined), false);
});

test('limits are never silently ignored: without cgroups, memory/vcpus are refused', async () => {
  const { rt, exitOf } = await setup({ noCgroups: true });
  const p = await rt.probe();
  assert.equal(p.available, true);
  assert.match(p.detail, /no cgroup limits: pretend: not root/);
  await assert.rejects(rt.start(spec({ code: '/bin/sleep', cmd: ['30'], memory_mb: 32 })), (e: unknown) => e instanceof RuntimeError && e.reason === 'limits_unavailable' && /memory 32 MB/.test(e.message));
  await assert.rejects(rt.start(spec({ code: '/bin/sleep', cmd: ['30'], vcpus: 1 })), (e: unknown) => e instanceof RuntimeError && /vcpus 1/.test(e.message));
  // long enough for stats to find it alive on a loaded machine
  const s = await rt.start(spec({ code: '/bin/sh', cmd: ['-c', 'sleep 2; exit 4'] }));
  const stats = await rt.stats(s.id);
  assert.ok(stats !== undefined && stats.memory_mb > 0);
  assert.equal((await exitOf(s.id)).exit_code, 4);
});

test('bad code is a RuntimeError', async () => {
  const { rt, dataDir } = await setup();
  const plain = join(dataDir, 'plain.txt');
  await writeFile(plain, 'not a program\n', { mode: 0o644 });
  await assert.rejects(rt.start(spec({ code: '/nonexistent/bin' })), (e: unknown) => e instanceof RuntimeError && e.reason === 'code_not_found');
  await assert.rejects(rt.start(spec({ code: plain })), (e: unknown) => e instanceof RuntimeError && e.reason === 'code_not_executable');
  await assert.rejects(rt.start(spec({ code: 'relative/path' })), (e: unknown) => e instanceof RuntimeError && e.reason === 'invalid_code');
  await assert.rejects(rt.start(spec({ code: '/bin/true', id: '../escape' })), (e: unknown) => e instanceof RuntimeError && e.reason === 'invalid_spec');
  await assert.rejects(rt.start(spec({ code: '/bin/true', virtualization: 'container' })), (e: unknown) => e instanceof RuntimeError && e.reason === 'invalid_spec');
  assert.deepEqual(await rt.list(), []);
});

test('code from file:// and http:// URLs (downloaded once, cached by URL)', async () => {
  const { rt, exitOf, dataDir } = await setup();
  const script = join(dataDir, 'hello.sh');
  await writeFile(script, '#!/bin/sh\necho "hello $1"\n');
  await chmod(script, 0o755);
  const a = await rt.start(spec({ code: pathToFileURL(script).href, cmd: ['file'], one_shot: true }));
  assert.equal((await exitOf(a.id)).state, 'COMPLETED');
  assert.deepEqual(await collect(rt.logs(a.id)), ['hello file']);

  let hits = 0;
  const srv = createServer((req, res) => {
    hits++;
    if (req.url === '/hello.sh') res.end('#!/bin/sh\necho "hello $1"\n');
    else {
      res.statusCode = 404;
      res.end();
    }
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  try {
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/hello.sh`;
    const b = await rt.start(spec({ code: url, cmd: ['http'], one_shot: true }));
    assert.equal((await exitOf(b.id)).state, 'COMPLETED');
    assert.deepEqual(await collect(rt.logs(b.id)), ['hello http']);
    const c = await rt.start(spec({ code: url, cmd: ['again'], one_shot: true }));
    assert.equal((await exitOf(c.id)).state, 'COMPLETED');
    assert.equal(hits, 1);
    await assert.rejects(rt.start(spec({ code: url.replace('hello', 'missing') })), (e: unknown) => e instanceof RuntimeError && e.reason === 'code_download_failed' && /404/.test(e.message));
  } finally {
    srv.close();
  }
});

test('stats: cpu percent between calls follows the vcpus quota; memory from the cgroup', { skip: CG ? false : info.detail }, async () => {
  const { rt } = await setup();
  const s = await rt.start(spec({ code: '/bin/sh', cmd: ['-c', 'while :; do :; done'], vcpus: 0.5, memory_mb: 64 }));
  await rt.stats(s.id);
  await new Promise((r) => setTimeout(r, 1000));
  const st = await rt.stats(s.id);
  assert.ok(st !== undefined);
  // the quota caps it at 50 %; a loaded machine may give it less
  assert.ok(st.cpu_percent > 5 && st.cpu_percent < 65, `cpu ${st.cpu_percent}%`);
  assert.ok(st.memory_mb > 0 && st.memory_mb < 64, `memory ${st.memory_mb} MB`);
  await rt.stop(s.id);
  assert.equal(await rt.stats(s.id), undefined);
});

test('re-adoption: a new runtime on the same dataDir finds the instance and reports its exit code', async () => {
  const first = await setup();
  const s = spec({ code: '/bin/sh', cmd: ['-c', 'trap "exit 42" TERM; sleep 30 & wait'], labels: { job_name: 'app.ns.svc.ns', instance_number: '7' } });
  const st = await first.rt.start(s);
  await first.rt.close();
  const second = await setup({ dataDir: first.dataDir });
  const listed = await second.rt.list();
  assert.equal(listed.length, 1);
  assert.equal(listed[0]?.state, 'RUNNING');
  assert.equal(listed[0]?.pid, st.pid);
  assert.deepEqual(listed[0]?.labels, s.labels);
  // kill the workload (the wrapper's child shell) from outside
  const workload = await childOf(st.pid as number, 'sh');
  await childOf(workload, 'sleep'); // its trap is set once the sleep runs
  process.kill(workload, 'SIGTERM');
  const e = await second.exitOf(s.id);
  assert.equal(e.exit_code, 42);
  assert.equal(e.state, 'FAILED');
  assert.equal(e.detail, 'exited with code 42');
  assert.equal(first.exits.length, 0, 'the closed runtime reports nothing');
  // a third runtime sees the recorded exit
  const third = await setup({ dataDir: first.dataDir });
  const again = await third.rt.list();
  assert.equal(again[0]?.state, 'FAILED');
  assert.equal(again[0]?.exit_code, 42);
  await third.rt.stop(s.id);
});

test('after a reboot (another boot id) the instance is reported as gone', async () => {
  const first = await setup();
  const s = spec({ code: '/bin/sleep', cmd: ['30'] });
  const st = await first.rt.start(s);
  await first.rt.close();
  const file = join(first.dataDir, 'instances', s.id, 'state.json');
  const state = JSON.parse(await readFile(file, 'utf8'));
  await writeFile(file, JSON.stringify({ ...state, boot_id: 'an-earlier-boot' }));
  try {
    const second = await setup({ dataDir: first.dataDir });
    const [found] = await second.rt.list();
    assert.equal(found?.state, 'FAILED');
    assert.equal(found?.detail, 'exited; exit status unknown (the host restarted while it ran)');
    await second.rt.stop(s.id);
  } finally {
    try {
      process.kill(-(st.pid as number), 'SIGKILL');
    } catch {
      /* gone with its cgroup */
    }
  }
});

test('survives a real restart: a separate Node process starts the instance and exits; this one adopts it', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'oak-proc-'));
  roots.push(dataDir);
  const src = fileURLToPath(new URL('../src/index.ts', import.meta.url));
  const code = `
    import { ProcessRuntime } from ${JSON.stringify(src)};
    const rt = new ProcessRuntime({ dataDir: ${JSON.stringify(dataDir)}, cgroupParent: ${JSON.stringify(parent)} });
    const st = await rt.start({ id: 'x.y.z.w.instance.0', job_name: 'x.y.z.w', instance_number: 0, virtualization: 'process',
      code: '/bin/sh', cmd: ['-c', 'echo started; read line < /dev/null; sleep 30 & wait; exit 9'], env: [], ports: [], one_shot: false, labels: { a: 'b' },
      memory_mb: ${CG ? 48 : 0} });
    await rt.close();
    console.log(JSON.stringify(st));
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'], cwd: fileURLToPath(new URL('../../..', import.meta.url)) });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const [exitCode] = (await once(child, 'exit')) as [number];
  assert.equal(exitCode, 0, 'the starter exited cleanly (it did not wait for its instance)');
  const started = JSON.parse(out.trim().split('\n').at(-1) as string) as { pid: number; state: string };
  assert.equal(started.state, 'RUNNING');
  const { rt, exitOf } = await setup({ dataDir });
  const [found] = await rt.list();
  assert.equal(found?.state, 'RUNNING');
  assert.equal(found?.pid, started.pid);
  assert.equal(await isSameProcessAlive(started.pid, undefined), true, 'the wrapper outlived its starter');
  await waitFor(async () => (await collect(rt.logs('x.y.z.w.instance.0'))).length > 0);
  assert.deepEqual(await collect(rt.logs('x.y.z.w.instance.0')), ['started']);
  // end the workload's sleep: the shell exits 9, and the wrapper (not our child) reports it
  const sh = await childOf(started.pid, 'sh');
  const sleeper = await childOf(sh, 'sleep');
  process.kill(sleeper, 'SIGKILL');
  const e = await exitOf('x.y.z.w.instance.0');
  assert.equal(e.exit_code, 9);
  assert.equal(e.detail, 'exited with code 9');
  await rt.stop('x.y.z.w.instance.0');
  assert.deepEqual(await rt.list(), []);
});

/** The first child of `pid` whose command name is `comm`. */
async function childOf(pid: number, comm: string): Promise<number> {
  let found: number | undefined;
  await waitFor(async () => {
    const kids = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean).map(Number);
    for (const k of kids) {
      const c = (await readFile(`/proc/${k}/comm`, 'utf8').catch(() => '')).trim();
      if (c === comm) {
        found = k;
        return true;
      }
    }
    return false;
  });
  return found as number;
}
