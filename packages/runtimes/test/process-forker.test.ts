/**
 * The fork helper (supervisor/forker.ts): wrappers are forked by a small shell co-process, never
 * by this process; what reaches the workload is exactly what was asked for (hostile arguments and
 * environment included), signals start at their defaults, a start interrupted before the pid was
 * persisted is found again, a helper that dies is replaced, and the direct spawn still works.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupInfo } from '@oak/sysinfo';
import { ProcessRuntime, RuntimeError } from '../src/index.ts';
import type { InstanceExit, InstanceSpec } from '../src/index.ts';
import { Forker, sharedForker } from '../src/supervisor/forker.ts';

const info = cgroupInfo();
const parent = `oak-test-fork-${process.pid}`;
const roots: string[] = [];
const runtimes: ProcessRuntime[] = [];

async function setup(opts: { dataDir?: string; forkHelper?: boolean } = {}): Promise<{ rt: ProcessRuntime; dataDir: string; exitOf: (id: string) => Promise<InstanceExit> }> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'oak-fork-')));
  if (opts.dataDir === undefined) roots.push(dataDir);
  const rt = new ProcessRuntime({ dataDir, cgroupParent: parent, stopGraceMs: 2000, pollMs: 100, ...(opts.forkHelper !== undefined ? { forkHelper: opts.forkHelper } : {}) });
  runtimes.push(rt);
  const exits: InstanceExit[] = [];
  rt.onExit((e) => exits.push(e));
  const exitOf = async (id: string): Promise<InstanceExit> => {
    const end = Date.now() + 10_000;
    for (;;) {
      const e = exits.find((x) => x.id === id);
      if (e) return e;
      if (Date.now() > end) throw new Error(`no exit of ${id}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { rt, dataDir, exitOf };
}

/** waits for exits on an existing runtime */
async function setupExits(rt: ProcessRuntime): Promise<(id: string) => Promise<InstanceExit>> {
  const exits: InstanceExit[] = [];
  rt.onExit((e) => exits.push(e));
  return async (id) => {
    await waitFor(() => exits.some((x) => x.id === id), 10_000);
    return exits.find((x) => x.id === id) as InstanceExit;
  };
}

let n = 0;
function spec(over: Partial<InstanceSpec> & { code: string }): InstanceSpec {
  const id = over.id ?? `app.ns.fork.ns.instance.${n++}`;
  return { id, job_name: 'app.ns.fork.ns', instance_number: 0, virtualization: 'process', env: [], ports: [], one_shot: false, labels: {}, ...over };
}

async function waitFor(cond: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** this process's direct children */
function myChildren(): number[] {
  const out: number[] = [];
  for (const task of readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) out.push(Number(task));
  return out;
}

after(async () => {
  for (const rt of runtimes) {
    for (const s of await rt.list().catch(() => [])) await rt.stop(s.id).catch(() => undefined);
    await rt.close();
  }
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

test('the wrapper is forked by the helper: not a child of this process, a session of its own, reaped by the helper', async () => {
  assert.notEqual(sharedForker(), null, 'env and setsid exist on this machine');
  const { rt, dataDir } = await setup();
  const st = await rt.start(spec({ code: '/bin/sleep', cmd: ['30'] }));
  const pid = st.pid as number;
  // the log is there when start() returns (a logs() follow may begin at once)
  assert.equal(existsSync(join(dataDir, 'instances', st.id, 'log')), true, 'the log exists');
  assert.ok(!myChildren().includes(pid), 'the wrapper is not our child');
  const helper = sharedForker()?.pid;
  assert.ok(helper !== undefined && myChildren().includes(helper), 'the helper is our child');
  assert.equal(readFileSync(`/proc/${helper}/cmdline`, 'utf8').split('\0')[0], 'oak-forker');
  // the wrapper's shell runs (env and setsid, which made the session, exec'd into it)
  await waitFor(() => readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('/bin/sh\0-c\0'));
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  // fields after the name: state ppid pgrp session
  assert.equal(Number(stat[1]), helper, 'the helper is its parent');
  assert.equal(Number(stat[2]), pid, 'process-group leader');
  assert.equal(Number(stat[3]), pid, 'session leader');
  await rt.stop(st.id);
  assert.equal(existsSync(`/proc/${pid}`), false, 'no zombie left after the stop');
  // one that ends by itself is reaped as soon as its end is seen
  const s = spec({ code: '/bin/sh', cmd: ['-c', 'exit 4'] });
  const { exitOf } = { exitOf: (await setupExits(rt)) };
  const ended = await rt.start(s);
  assert.equal((await exitOf(s.id)).exit_code, 4);
  await waitFor(() => !existsSync(`/proc/${ended.pid}`), 300);
});

test('hostile arguments and environment reach the workload verbatim; nothing of them is run by a shell', async (t) => {
  const { rt, dataDir, exitOf } = await setup();
  const canary = join(dataDir, 'canary');
  t.after(() => rm(canary, { force: true }));
  const hostile = [`'; touch ${canary}; '`, `$(touch ${canary})`, `\`touch ${canary}\``, `a\nb`, `"quoted" \\ back`, '-x=1', ''];
  // a name that looks like an option of env comes first: the ones after it must still arrive
  // (the wrapper, a shell, passes on only valid names, as it did when spawned directly)
  const env = [`-u=${hostile[4]}`, `A1=${hostile[0]}`, `A2=${hostile[1]}`, `A3=${hostile[2]}`, `A4=${hostile[3]}`];
  const script = 'for a in "$@"; do printf "[%s]" "$a"; done; echo; printf "%s|%s|%s|%s\\n" "$A1" "$A2" "$A3" "$A4"; exit 7';
  const s = spec({ code: '/bin/sh', cmd: ['-c', script, 'sh', ...hostile], env, one_shot: true });
  await rt.start(s);
  const e = await exitOf(s.id);
  assert.equal(e.exit_code, 7);
  const log = await readFile(join(dataDir, 'instances', s.id, 'log'), 'utf8');
  assert.equal(log, `${hostile.map((h) => `[${h}]`).join('')}\n${hostile.slice(0, 4).join('|')}\n`);
  assert.equal(existsSync(canary), false, 'no argument was run');
});

test('a NUL byte is refused with a clear error and nothing is left behind', async () => {
  const { rt, dataDir } = await setup();
  const s = spec({ code: '/bin/echo', cmd: ['a\0b'] });
  await assert.rejects(rt.start(s), (e: unknown) => e instanceof RuntimeError && e.reason === 'invalid_spec' && /NUL/.test(e.message));
  assert.deepEqual(await rt.list(), []);
  assert.equal(existsSync(join(dataDir, 'instances', s.id)), false);
  const env = spec({ code: '/bin/echo', env: ['K=a\0b'] });
  await assert.rejects(rt.start(env), (e: unknown) => e instanceof RuntimeError && e.reason === 'invalid_spec');
});

test('signals start at their defaults in the workload (a background job of sh would ignore INT and QUIT)', async () => {
  const { rt, dataDir, exitOf } = await setup();
  const s = spec({ code: '/bin/sh', cmd: ['-c', 'grep -E "^Sig(Ign|Blk)" /proc/self/status'], one_shot: true });
  await rt.start(s);
  assert.equal((await exitOf(s.id)).exit_code, 0);
  const log = await readFile(join(dataDir, 'instances', s.id, 'log'), 'utf8');
  assert.match(log, /SigBlk:\s+0+\n/);
  // signals 1-31 (what spawn() resets too); the real-time ones glibc keeps for itself (32, 33)
  // cannot be reset by env and come as the environment gave them (a CI runner ignores 32)
  const ign = BigInt(`0x${/SigIgn:\s+([0-9a-f]+)/.exec(log)?.[1] ?? 'ffffffff'}`);
  assert.equal(ign & 0x7fffffffn, 0n, `no standard signal ignored (SigIgn ${ign.toString(16)})`);
  // and SIGINT ends it as it would end any process
  const int = spec({ code: '/bin/sleep', cmd: ['30'] });
  const st = await rt.start(int);
  await waitFor(() => readFileSync(`/proc/${st.pid}/task/${st.pid}/children`, 'utf8').trim() !== '');
  const sub = Number(readFileSync(`/proc/${st.pid}/task/${st.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  await waitFor(() => readFileSync(`/proc/${sub}/cmdline`, 'utf8').startsWith('/bin/sleep'));
  process.kill(sub, 'SIGINT');
  const e = await exitOf(int.id);
  assert.equal(e.detail, 'killed by signal SIGINT');
});

test('a runtime that died after persisting the start but before the pid: the next one finds the wrapper by its pid file', async () => {
  const first = await setup();
  const s = spec({ code: '/bin/sh', cmd: ['-c', 'trap "exit 42" TERM; sleep 30 & wait'] });
  const st = await first.rt.start(s);
  await first.rt.close();
  // the wrapper writes its pid file once it runs
  await waitFor(() => existsSync(join(first.dataDir, 'instances', s.id, 'pid')));
  // what the state file says between the persist and the pid
  const file = join(first.dataDir, 'instances', s.id, 'state.json');
  const state = JSON.parse(await readFile(file, 'utf8')) as { pid: number; starttime: number };
  assert.equal(state.pid, st.pid);
  await writeFile(file, JSON.stringify({ ...state, pid: 0, starttime: 0 }));
  const second = await setup({ dataDir: first.dataDir });
  const [found] = await second.rt.list();
  assert.equal(found?.state, 'RUNNING');
  assert.equal(found?.pid, st.pid);
  await second.rt.stop(s.id);
  await waitFor(() => !existsSync(`/proc/${st.pid}`));
});

test('a pid file naming another process is not believed; no pid at all reads as ended', async () => {
  const first = await setup();
  const s = spec({ code: '/bin/sleep', cmd: ['30'] });
  const st = await first.rt.start(s);
  await first.rt.close();
  const dir = join(first.dataDir, 'instances', s.id);
  await waitFor(() => existsSync(join(dir, 'pid')));
  const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as object;
  await writeFile(join(dir, 'state.json'), JSON.stringify({ ...state, pid: 0, starttime: 0 }));
  await writeFile(join(dir, 'pid'), `${process.pid}\n`); // this test process: not a wrapper
  const second = await setup({ dataDir: first.dataDir });
  const [found] = await second.rt.list();
  assert.equal(found?.state, 'FAILED');
  assert.equal(found?.pid, 0);
  await second.rt.stop(s.id);
  // our own process group was not signalled (we are alive), the real wrapper is cleaned by its pid
  process.kill(-(st.pid as number), 'SIGKILL');
});

test('a stop right after the start ends the instance at once (before the wrapper made its session)', async () => {
  const { rt } = await setup();
  for (let i = 0; i < 5; i++) {
    const st = await rt.start(spec({ code: '/bin/sleep', cmd: ['30'] }));
    const t0 = Date.now();
    await rt.stop(st.id);
    assert.ok(Date.now() - t0 < 1500, `stopped in ${Date.now() - t0} ms, not after the 2 s grace`);
    await waitFor(() => !existsSync(`/proc/${st.pid}`));
  }
});

test('a helper that dies is replaced at the next start', async () => {
  const { rt } = await setup();
  const a = await rt.start(spec({ code: '/bin/sleep', cmd: ['30'] }));
  const helper = sharedForker()?.pid as number;
  process.kill(helper, 'SIGKILL');
  await waitFor(() => sharedForker()?.pid !== helper);
  const b = await rt.start(spec({ code: '/bin/sleep', cmd: ['30'] }));
  assert.equal(b.state, 'RUNNING');
  assert.notEqual(sharedForker()?.pid, helper);
  assert.equal((await rt.status(a.id))?.state, 'RUNNING', 'instances of the old helper run on');
  await rt.stop(a.id);
  await rt.stop(b.id);
});

test('a working directory that cannot be entered is a spawn error, not a hang', async () => {
  const f = new Forker({ env: '/usr/bin/env', setsid: '/usr/bin/setsid' });
  await assert.rejects(f.spawn({ argv: ['/bin/true'], cwd: '/nonexistent/dir', env: {}, log: '/dev/null' }), (e: unknown) => e instanceof RuntimeError && e.reason === 'spawn_failed');
  const pid = await f.spawn({ argv: ['/bin/true'], cwd: '/', env: {}, log: '/dev/null' });
  assert.ok(pid > 0);
  process.kill(f.pid as number, 'SIGKILL');
});

test('forkHelper false: the direct spawn (with the go pipe) still starts, reports and stops', { skip: info.writable ? false : info.detail }, async () => {
  const { rt, exitOf } = await setup({ forkHelper: false });
  const s = spec({ code: '/bin/sh', cmd: ['-c', 'exit 3'], memory_mb: 32 });
  const st = await rt.start(s);
  assert.ok(myChildren().includes(st.pid as number) || !existsSync(`/proc/${st.pid}`), 'our child');
  assert.equal((await exitOf(s.id)).exit_code, 3);
  const long = await rt.start(spec({ code: '/bin/sleep', cmd: ['30'] }));
  await rt.stop(long.id);
  assert.equal(existsSync(`/proc/${long.pid}`), false);
});
