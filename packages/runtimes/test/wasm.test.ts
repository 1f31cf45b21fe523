import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupInfo, isSameProcessAlive } from '@oak/sysinfo';
import { buildWasiModule, waitFor } from '@oak/testkit';
import { RuntimeError, WasmRuntime, lookupUser } from '../src/index.ts';
import { unreachableBy } from '../src/supervisor/workdir.ts';
import type { InstanceExit, InstanceSpec, RunAs } from '../src/index.ts';

const info = cgroupInfo();
const CG = info.writable;
const parent = `oak-wasm-test-${process.pid}`;
const roots: string[] = [];
const runtimes: WasmRuntime[] = [];
const workload: RunAs | undefined = process.getuid?.() === 0 ? lookupUser('oak-workload') ?? lookupUser('nobody') : undefined;

let dir = '';
const mods: Record<string, string> = {};
let server: Server;
let base = '';
const hits = new Map<string, number>();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oak-wasm-mods-'));
  roots.push(dir);
  const build: Record<string, Parameters<typeof buildWasiModule>[0]> = {
    echo: { text: 'hello from wasm', argsLine: ' <- args', env: true },
    exit3: { text: 'exiting 3', then: { exit: 3 } },
    service: { argsLine: ' up', then: 'sleep' },
    hog: { argsLine: ' hog', then: 'hog' },
    trap: { text: 'about to trap', then: 'trap' },
  };
  for (const [name, o] of Object.entries(build)) {
    mods[name] = join(dir, `${name}.wasm`);
    await writeFile(mods[name], await buildWasiModule(o));
  }
  await writeFile(join(dir, 'not-wasm.wasm'), '#!/bin/sh\necho hi\n');
  server = createServer((req, res) => {
    const name = (req.url ?? '/').slice(1);
    hits.set(name, (hits.get(name) ?? 0) + 1);
    if (name === 'huge.wasm') {
      res.writeHead(200); // no Content-Length: the cap must hold while streaming
      const chunk = Buffer.alloc(64 * 1024);
      let sent = 0;
      const more = (): void => {
        while (sent < 64 && res.write(chunk)) sent++;
        if (sent >= 64) res.end();
        else res.once('drain', more);
      };
      more();
      return;
    }
    readFile(join(dir, name)).then(
      (b) => res.writeHead(200, { 'content-type': 'application/wasm' }).end(b),
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

async function setup(dataDir?: string, opts: { maxModuleBytes?: number } = {}): Promise<{ rt: WasmRuntime; dataDir: string; workRoot: string; exitOf: (id: string, ms?: number) => Promise<InstanceExit> }> {
  const d = dataDir ?? (await mkdtemp(join(tmpdir(), 'oak-wasm-')));
  if (dataDir === undefined) roots.push(d, `${d}-work`);
  const workRoot = `${d}-work`;
  const rt = new WasmRuntime({ dataDir: d, workRoot, cgroupParent: parent, stopGraceMs: 2000, pollMs: 100, runAs: workload, ...opts });
  runtimes.push(rt);
  const exits: InstanceExit[] = [];
  rt.onExit((e) => exits.push(e));
  const exitOf = async (id: string, ms = 20000): Promise<InstanceExit> => {
    await waitFor(() => exits.some((x) => x.id === id), { timeoutMs: ms, message: `the exit of ${id}` });
    return exits.find((x) => x.id === id) as InstanceExit;
  };
  return { rt, dataDir: d, workRoot, exitOf };
}

let n = 0;
function spec(over: Partial<InstanceSpec> & { code: string }): InstanceSpec {
  const id = over.id ?? `app.ns.wasm.ns.instance.${process.pid}-${n++}`;
  return { id, job_name: 'app.ns.wasm.ns', instance_number: 0, virtualization: 'wasm', env: [], ports: [], one_shot: false, labels: { job_name: 'app.ns.wasm.ns' }, ...over };
}

async function logOf(rt: WasmRuntime, id: string): Promise<string> {
  const out: string[] = [];
  for await (const l of rt.logs(id, {})) out.push(l);
  return out.join('\n');
}

after(async () => {
  for (const rt of runtimes) {
    for (const s of await rt.list().catch(() => [])) await rt.stop(s.id).catch(() => undefined);
    await rt.close();
  }
  server?.close();
  if (CG) {
    const dirs = info.version === 2 ? [join(info.unified as string, parent)] : [info.memoryController, info.cpuController, info.cpuacctController, info.pidsController].filter((d): d is string => d !== undefined).map((d) => join(d, parent));
    for (const d of new Set(dirs)) await rmdir(d).catch(() => undefined);
  }
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

test('probe: the runner works, with a detail line', async () => {
  const { rt } = await setup();
  const p = await rt.probe();
  assert.equal(p.available, true, p.detail);
  assert.match(p.detail, /WASI preview 1 .*node:wasi/);
});

test('a one-shot module gets cmd as its arguments and only the SLA env; exit 0 -> COMPLETED; stdout is the log', async () => {
  const { rt, exitOf } = await setup();
  const s = spec({ code: mods['echo'] as string, cmd: ['first', 'second arg'], env: ['GREETING=hi there', 'EMPTY='], one_shot: true });
  await rt.start(s);
  const e = await exitOf(s.id);
  assert.equal(e.state, 'COMPLETED', e.detail);
  assert.equal(e.exit_code, 0);
  const log = await logOf(rt, s.id);
  assert.match(log, /hello from wasm/);
  assert.match(log, /first second arg <- args/);
  assert.match(log, /^GREETING=hi there$/m);
  assert.match(log, /^EMPTY=$/m);
  assert.doesNotMatch(log, /^(PATH|HOME|USER)=/m, 'the runner passes none of its own environment');
  assert.doesNotMatch(log, /ExperimentalWarning/);
});

test('args follow cmd; added files land in the scratch dir the module sees; a file path out of it is refused', async () => {
  const mod = join(dir, `files-${n}.wasm`);
  await writeFile(mod, await buildWasiModule({ argsLine: ' <- args', env: true, open: ['conf/app.conf'] }));
  const src = join(dir, `app-${n}.conf`);
  const content = `added-file-content-${process.pid}`;
  await writeFile(src, content);
  const { rt, workRoot, exitOf } = await setup();
  const s = spec({ code: mod, cmd: ['first'], args: ['--second', 'third'], env: ['MODE=prod'], one_shot: true, files: [{ source: src, target: 'conf/app.conf', mode: 0o600 }] });
  await rt.start(s);
  const e = await exitOf(s.id);
  const log = await logOf(rt, s.id);
  // the module prints a file it could open and exits 1 (its way of saying "opened")
  assert.equal(e.exit_code, 1, `${e.detail}\n${log}`);
  assert.match(log, /first --second third <- args/);
  assert.match(log, /^MODE=prod$/m);
  assert.ok(log.includes(content), `the module read its added file:\n${log}`);
  assert.equal(await readFile(join(workRoot, s.id, 'scratch', 'conf', 'app.conf'), 'utf8'), content);

  const bad = spec({ code: mod, one_shot: true, files: [{ source: src, target: '../runner.mjs', mode: 0o644 }] });
  await assert.rejects(rt.start(bad), (err: unknown) => err instanceof RuntimeError && /leaves the work dir/.test(err.message));
  assert.equal(existsSync(join(workRoot, bad.id)), false, 'nothing left of the refused start');
});

test('probing is the truth: a work dir below a directory the workload user cannot search makes wasm unavailable, saying why', async () => {
  const nobody = { name: 'nobody-test', uid: 65534, gid: 65534 };
  const top = await mkdtemp(join(tmpdir(), 'oak-wasm-reach-'));
  roots.push(top);
  await mkdir(join(top, 'a'), { mode: 0o755 });
  await chmod(top, 0o700);
  assert.match(unreachableBy(join(top, 'a', 'work'), nobody) ?? '', new RegExp(`^${top} \\(mode 0700, owner \\d+\\) may not be searched by nobody-test`));
  await chmod(top, 0o711);
  assert.equal(unreachableBy(join(top, 'a', 'work'), nobody), undefined, 'searchable (not readable) is enough');
  assert.equal(unreachableBy(join(top, 'not', 'made', 'yet'), nobody), undefined);
  if (workload !== undefined) {
    await chmod(top, 0o700);
    const rt = new WasmRuntime({ dataDir: join(top, 'd'), workRoot: join(top, 'd-work'), cgroupParent: parent, runAs: workload });
    runtimes.push(rt);
    const p = await rt.probe();
    assert.equal(p.available, false);
    assert.match(p.detail, /may not be searched by .*cannot reach its work dir/);
  }
});

test('exit code 3 -> FAILED with the code', async () => {
  const { rt, exitOf } = await setup();
  const s = spec({ code: mods['exit3'] as string, one_shot: true });
  await rt.start(s);
  const e = await exitOf(s.id);
  assert.equal(e.state, 'FAILED');
  assert.equal(e.exit_code, 3);
  assert.equal(e.detail, 'exited with code 3');
});

test('a trap -> FAILED saying it trapped', async () => {
  const { rt, exitOf } = await setup();
  const s = spec({ code: mods['trap'] as string, one_shot: true });
  await rt.start(s);
  const e = await exitOf(s.id);
  assert.equal(e.state, 'FAILED');
  assert.match(e.detail, /the module trapped: unreachable/);
});

test('only its scratch directory is preopened: a host file outside cannot be read, a file inside is the scratch dir', async () => {
  const secretDir = await mkdtemp(join(tmpdir(), 'oak-wasm-secret-'));
  roots.push(secretDir);
  const secret = `top-secret-${process.pid}-${Date.now()}`;
  const secretFile = join(secretDir, 'secret.txt');
  await writeFile(secretFile, secret, { mode: 0o644 });
  const escape = `${'../'.repeat(20)}${secretFile.slice(1)}`;
  const mod = join(dir, `sandbox-${n}.wasm`);
  await writeFile(mod, await buildWasiModule({ open: [secretFile, escape, '../env.json', '/proc/self/environ'], create: { path: 'made-inside.txt', text: 'inside' } }));
  const { rt, workRoot, exitOf } = await setup();
  const s = spec({ code: mod, one_shot: true, env: ['SECRET_ENV=must-not-leak-through-files'] });
  await rt.start(s);
  const e = await exitOf(s.id);
  const log = await logOf(rt, s.id);
  assert.equal(e.state, 'COMPLETED', `${e.detail}\n${log}`);
  assert.ok(!log.includes(secret), 'the secret is not in the log');
  for (const p of [secretFile, escape, '../env.json', '/proc/self/environ']) assert.ok(log.includes(`denied ${p}`), `opening ${p} was denied:\n${log}`);
  // positive control: the module can open files, and its `/` is the instance's scratch dir
  assert.match(log, /created made-inside.txt/);
  assert.equal(await readFile(join(workRoot, s.id, 'scratch', 'made-inside.txt'), 'utf8'), 'inside');
});

test('over its memory -> FAILED, out of memory', { skip: CG ? false : info.detail }, async () => {
  const { rt, exitOf } = await setup();
  const s = spec({ code: mods['hog'] as string, cmd: ['hog-marker'], memory_mb: 32 });
  await rt.start(s);
  const e = await exitOf(s.id);
  assert.equal(e.state, 'FAILED');
  assert.match(e.detail, /out of memory/);
  assert.match(e.detail, /32 MB/);
  assert.match(await logOf(rt, s.id), /hog-marker hog/);
});

test('a module whose memory starts over memory_mb is refused at start', async () => {
  const big = join(dir, 'big-min.wasm');
  const { watToWasm } = await import('@oak/testkit');
  await writeFile(big, await watToWasm('(module (memory (export "memory") 1024) (func (export "_start")))'));
  const { rt } = await setup();
  await assert.rejects(rt.start(spec({ code: big, memory_mb: 16 })), (e: unknown) => e instanceof RuntimeError && e.reason === 'memory_too_small');
});

test('an http(s) module is downloaded once into a checksum-keyed cache; a service runs, logs, stops and leaves nothing', async () => {
  const { rt, dataDir, workRoot } = await setup();
  const url = `${base}/service.wasm`;
  const before = hits.get('service.wasm') ?? 0;
  const a = spec({ code: url, cmd: ['svc-a'], memory_mb: 16 });
  const b = spec({ code: url, cmd: ['svc-b'], memory_mb: 16 });
  const [sa, sb] = await Promise.all([rt.start(a), rt.start(b)]);
  assert.equal(sa.state, 'RUNNING');
  assert.equal(sb.state, 'RUNNING');
  assert.equal((hits.get('service.wasm') ?? 0) - before, 1, 'one download for both');
  const sha = createHash('sha256').update(await readFile(mods['service'] as string)).digest('hex');
  assert.ok(existsSync(join(dataDir, 'cache', 'wasm', `sha256-${sha}.wasm`)), 'cached under its SHA-256');
  await waitFor(async () => (await logOf(rt, a.id)).includes('svc-a up'), { timeoutMs: 10000, message: 'svc-a up in the log' });
  const pid = sa.pid;
  for (const s of [a, b]) await rt.stop(s.id);
  assert.equal(await rt.status(a.id), undefined);
  assert.ok(!existsSync(join(workRoot, a.id)), 'the work dir is gone');
  assert.ok(!existsSync(join(dataDir, 'instances', a.id)), 'the instance dir is gone');
  if (pid !== undefined) assert.equal(await isSameProcessAlive(pid, undefined), false);
  // a third start downloads nothing
  const c = spec({ code: url, cmd: ['svc-c'] });
  await rt.start(c);
  assert.equal((hits.get('service.wasm') ?? 0) - before, 1);
  await rt.stop(c.id);
});

test('hostile code is refused with a clear error and nothing left behind', async () => {
  const { rt, dataDir, workRoot } = await setup(undefined, { maxModuleBytes: 1024 * 1024 });
  const cases: Array<[string, string]> = [
    ['', 'invalid_spec'],
    ['relative/mod.wasm', 'invalid_code'],
    ['/no/such/module.wasm', 'code_not_found'],
    [join(dir, 'not-wasm.wasm'), 'invalid_code'],
    [dir, 'invalid_code'],
    [`${base}/missing.wasm`, 'code_download_failed'],
    [`${base}/huge.wasm`, 'code_too_large'],
    [`http://127.0.0.1:1/x.wasm`, 'code_download_failed'],
  ];
  for (const [code, want] of cases) {
    await assert.rejects(rt.start(spec({ code })), (e: unknown) => e instanceof RuntimeError && e.reason === want, `${code} -> ${want}`);
  }
  await assert.rejects(rt.start(spec({ code: mods['echo'] as string, cmd: ['a\0b'] })), (e: unknown) => e instanceof RuntimeError && e.reason === 'invalid_spec');
  assert.deepEqual(await rt.list(), []);
  assert.deepEqual(existsSync(join(dataDir, 'instances')) ? await readdir(join(dataDir, 'instances')) : [], []);
  assert.deepEqual(existsSync(workRoot) ? await readdir(workRoot) : [], []);
  const cache = join(dataDir, 'cache', 'wasm');
  assert.deepEqual(existsSync(cache) ? (await readdir(cache)).filter((f) => f.endsWith('.part')) : [], [], 'no partial download left');
});

test('re-adoption: a new runtime on the same dataDir finds the running module, and stops it', async () => {
  const first = await setup();
  const s = spec({ code: mods['service'] as string, cmd: ['adopt-me'], memory_mb: 16 });
  const st = await first.rt.start(s);
  await waitFor(async () => (await logOf(first.rt, s.id)).includes('adopt-me up'), { timeoutMs: 10000, message: 'adopt-me up' });
  await first.rt.close();
  const second = await setup(first.dataDir);
  const again = await second.rt.status(s.id);
  assert.equal(again?.state, 'RUNNING');
  assert.match(await logOf(second.rt, s.id), /adopt-me up/);
  await second.rt.stop(s.id);
  assert.equal(await second.rt.status(s.id), undefined);
  const pid = st.pid;
  if (pid !== undefined) await waitFor(async () => !(await isSameProcessAlive(pid, undefined)), { timeoutMs: 5000, message: 'the wrapper is gone' });
});

test('re-adoption keeps the verdict of the driver: a module that traps while no runtime watches is reported by the next one', async () => {
  const first = await setup();
  const mod = join(dir, 'late-trap.wasm');
  await writeFile(mod, await buildWasiModule({ text: 'trapping soon', sleepFirst: 2, then: 'trap' }));
  const s = spec({ code: mod, one_shot: true });
  await first.rt.start(s);
  await first.rt.close();
  const second = await setup(first.dataDir);
  assert.equal((await second.rt.list()).find((x) => x.id === s.id)?.state, 'RUNNING');
  const e = await second.exitOf(s.id);
  assert.equal(e.state, 'FAILED');
  assert.match(e.detail, /the module trapped: unreachable/);
  assert.equal(e.exit_code, 134);
  await second.rt.stop(s.id);
});
