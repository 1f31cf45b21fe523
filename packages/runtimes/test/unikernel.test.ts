import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupInfo } from '@oak/sysinfo';
import { buildTestKernel } from '@oak/testkit';
import { UnikernelRuntime, pickUrl, kernelCmdline, qemuVerdict, probeQemu } from '../src/index.ts';
import type { InstanceExit, InstanceSpec } from '../src/index.ts';

const info = cgroupInfo();
const parent = `oak-uk-test-${process.pid}`;
const roots: string[] = [];
const runtimes: UnikernelRuntime[] = [];
const qemu = await probeQemu();
const skip = typeof qemu === 'string' ? qemu : false;
let server: Server;
let base = '';
const files = new Map<string, Buffer>();

before(async () => {
  if (skip !== false) return;
  const k = await buildTestKernel();
  files.set('/uk.tar.gz', await readFile(k.archive));
  files.set('/kernel', await readFile(k.kernel));
  files.set('/big.tar.gz', Buffer.alloc(3 * 1024 * 1024, 1));
  files.set('/notgz.tar.gz', Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.from('this is not gzip at all')]));
  files.set('/text', Buffer.from('hello, not a kernel\n'));
  execFileSync('tar', ['-czf', join(tmpdir(), `oak-uk-nokernel-${process.pid}.tar.gz`), '-C', tmpdir(), '--files-from', '/dev/null']);
  files.set('/nokernel.tar.gz', await readFile(join(tmpdir(), `oak-uk-nokernel-${process.pid}.tar.gz`)));
  await rm(join(tmpdir(), `oak-uk-nokernel-${process.pid}.tar.gz`));
  server = createServer((req, res) => {
    const b = files.get(req.url ?? '');
    if (b === undefined) {
      res.writeHead(404).end();
      return;
    }
    // /big is sent without a content-length so that the cap applies while streaming
    if (req.url === '/big.tar.gz') {
      res.writeHead(200);
      res.end(b);
      return;
    }
    res.writeHead(200, { 'content-length': b.length }).end(b);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

function setup(dataDir?: string): { rt: UnikernelRuntime; exitOf: (id: string, ms?: number) => Promise<InstanceExit> } {
  const rt = new UnikernelRuntime({ dataDir: dataDir ?? '', cgroupParent: parent, stopGraceMs: 2000, pollMs: 100, maxDownloadBytes: 1024 * 1024 });
  runtimes.push(rt);
  const exits: InstanceExit[] = [];
  rt.onExit((e) => exits.push(e));
  const exitOf = async (id: string, ms = 20000): Promise<InstanceExit> => {
    const end = Date.now() + ms;
    for (;;) {
      const e = exits.find((x) => x.id === id);
      if (e) return e;
      if (Date.now() > end) throw new Error(`no exit of ${id} within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { rt, exitOf };
}

async function newDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'oak-uk-'));
  roots.push(d);
  return d;
}

let n = 0;
function spec(over: Partial<InstanceSpec>): InstanceSpec {
  const id = over.id ?? `uk.ns.svc.ns.instance.${process.pid}${n++}`;
  return { id, job_name: 'uk.ns.svc.ns', instance_number: 0, virtualization: 'unikernel', code: `${base}/uk.tar.gz`, env: [], ports: [], one_shot: true, labels: {}, ...over };
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const l of it) out.push(l);
  return out;
}

async function waitFor(cond: () => Promise<boolean> | boolean, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function qemuPids(marker: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', marker]).toString().trim().split('\n').filter((x) => x !== '');
  } catch {
    return [];
  }
}

after(async () => {
  for (const rt of runtimes) {
    for (const s of await rt.list().catch(() => [])) await rt.stop(s.id).catch(() => undefined);
    await rt.close();
  }
  server?.close();
  for (const r of roots) await rm(r, { recursive: true, force: true });
  for (const c of ['memory', 'cpu', 'pids']) await rm(`/sys/fs/cgroup/${c}/${parent}`, { recursive: false, force: true }).catch(() => undefined);
});

test('pure: URL by arch index, kernel command line limits, isa-debug-exit verdict', () => {
  assert.equal(pickUrl('http://a/k', undefined), 'http://a/k');
  assert.equal(pickUrl('http://a/arm, http://a/x86', ['arm64', 'amd64'], 'x64'), 'http://a/x86');
  assert.equal(pickUrl('http://a/arm,http://a/x86', ['aarch64', 'x86_64'], 'arm64'), 'http://a/arm');
  assert.throws(() => pickUrl('http://a/arm,http://a/x86', undefined), /no arch list/);
  assert.throws(() => pickUrl('http://a/arm,http://a/x86', ['arm64']), /arch list has 1/);
  assert.throws(() => pickUrl('http://a/arm,http://a/x86', ['arm64', 'riscv64'], 'x64'), /architecture/);
  assert.throws(() => pickUrl('http://a/k,', ['amd64', 'arm64']), /empty URL/);
  assert.throws(() => pickUrl('x'.repeat(9000), undefined), /longer/);
  assert.equal(kernelCmdline(['a', 'b=1'], { tap: 't', ip: '10.1.0.5', prefix: 24, mask: '255.255.255.0', gateway: '10.1.0.1' }), 'netdev.ipv4_addr=10.1.0.5 netdev.ipv4_subnet_mask=255.255.255.0 netdev.ipv4_gw_addr=10.1.0.1 a b=1');
  assert.throws(() => kernelCmdline(['a\nb'], undefined), /control character/);
  assert.throws(() => kernelCmdline(['x'.repeat(3000)], undefined), /at most/);
  assert.equal(qemuVerdict({ code: 1, oomKills: 0, oneShot: true }).state, 'COMPLETED');
  assert.deepEqual([qemuVerdict({ code: 7, oomKills: 0, oneShot: true }).exit_code, qemuVerdict({ code: 7, oomKills: 0, oneShot: true }).state], [3, 'FAILED']);
  assert.equal(qemuVerdict({ code: 137, oomKills: 0, oneShot: false }).signal, 'SIGKILL');
  assert.match(qemuVerdict({ code: 137, oomKills: 1, oneShot: false, memoryLimitMb: 100 }).detail, /out of memory/);
});

test('probe says qemu and KVM or software emulation', { skip }, async () => {
  const { rt } = setup(await newDir());
  const p = await rt.probe();
  assert.equal(p.available, true);
  assert.match(p.detail, /microvm, (KVM|software emulation)/);
});

test('a one-shot kernel: RUNNING, its console in the logs with cmd on the command line, exit 0 COMPLETED, exit 3 FAILED', { skip }, async () => {
  const { rt, exitOf } = setup(await newDir());
  const ok = await rt.start(spec({ cmd: ['hello=world', 'exit=0'] }));
  assert.ok(['RUNNING', 'COMPLETED'].includes(ok.state), ok.state);
  const bad = await rt.start(spec({ code: `${base}/kernel`, cmd: ['exit=3'] }));
  const e1 = await exitOf(ok.id);
  assert.equal(e1.state, 'COMPLETED', e1.detail);
  assert.equal(e1.exit_code, 0);
  const e2 = await exitOf(bad.id);
  assert.equal(e2.state, 'FAILED');
  assert.equal(e2.exit_code, 3);
  assert.match(e2.detail, /guest exited with code 3/);
  const lines = await collect(rt.logs(ok.id));
  assert.ok(lines.some((l) => l.includes('oak-test-kernel: cmdline=') && l.includes('hello=world exit=0')), lines.join('\n'));
  await rt.stop(ok.id);
  await rt.stop(bad.id);
});

test('args follow cmd on the kernel command line; added files join the image\'s files/ in the instance\'s own 9p share', { skip }, async () => {
  const dataDir = await newDir();
  const { rt, exitOf } = setup(dataDir);
  const one = await rt.start(spec({ cmd: ['hello=world'], args: ['exit=4', 'from-args'] }));
  const e = await exitOf(one.id);
  assert.equal(e.exit_code, 4, `exit=4 came from args: ${e.detail}`);
  const lines = await collect(rt.logs(one.id));
  assert.ok(lines.some((l) => l.includes('oak-test-kernel: cmdline=') && l.endsWith(' hello=world exit=4 from-args')), lines.join('\n'));
  await rt.stop(one.id);

  const src = join(dataDir, 'app.conf');
  await writeFile(src, 'added\n');
  const s = spec({ cmd: ['loop'], one_shot: false, files: [{ source: src, target: 'conf/app.conf', mode: 0o640 }] });
  await rt.start(s);
  const share = join(dataDir, 'work', s.id, 'share');
  assert.equal(await readFile(join(share, 'conf', 'app.conf'), 'utf8'), 'added\n');
  assert.equal(await readFile(join(share, 'hello.txt'), 'utf8'), 'hello from the share\n', 'the image\'s own files are there too');
  await waitFor(() => qemuPids(`path=${share},`).length > 0);
  // the cached image stays as it was (shared by every instance of it)
  const cached = (await readdir(join(dataDir, 'cache', 'unikernel'))).filter((d) => /^[0-9a-f]{64}$/.test(d));
  for (const d of cached) assert.equal(existsSync(join(dataDir, 'cache', 'unikernel', d, 'files', 'conf')), false);
  await rt.stop(s.id);
  assert.equal(existsSync(share), false, 'the share goes with the instance');
  const bad = spec({ files: [{ source: src, target: '../../escape', mode: 0o644 }] });
  await assert.rejects(rt.start(bad), /leaves the work dir/);
});

test('a looping kernel RUNS until stopped; the cgroup holds guest + qemu memory; stop leaves no process, cgroup or file', { skip }, async () => {
  const dataDir = await newDir();
  const { rt } = setup(dataDir);
  const s = spec({ cmd: ['loop'], one_shot: false, memory_mb: 32, vcpus: 1 });
  const st = await rt.start(s);
  assert.equal(st.state, 'RUNNING');
  await waitFor(async () => (await collect(rt.logs(s.id))).some((l) => l.includes('oak-test-kernel: looping')));
  const pids = qemuPids(`oak-test-kernel|${s.id}`);
  const args = execFileSync('ps', ['-o', 'args=', '-p', String(st.pid)]).toString();
  assert.ok(args.length > 0);
  if (info.writable && info.version === 1) {
    const lim = Number((await readFile(`/sys/fs/cgroup/memory/${parent}/${s.id}/memory.limit_in_bytes`, 'utf8')).trim());
    assert.ok(lim > 32 * 1024 * 1024 && lim <= 256 * 1024 * 1024, String(lim));
  }
  await rt.stop(s.id);
  assert.equal(await rt.status(s.id), undefined);
  assert.ok(st.pid !== undefined);
  assert.equal(existsSync(`/proc/${st.pid}`), false);
  void pids;
  const left = (await readdir(join(dataDir))).filter((x) => x !== 'cache');
  for (const d of left) assert.deepEqual((await readdir(join(dataDir, d))).filter((f) => f.includes(s.id)), [], `${d} keeps files of ${s.id}`);
  assert.equal(existsSync(`/sys/fs/cgroup/memory/${parent}/${s.id}`), false);
});

test('re-adoption: a new runtime on the same dataDir finds the running VM and stops it', { skip }, async () => {
  const dataDir = await newDir();
  const a = setup(dataDir);
  const s = spec({ cmd: ['loop'], one_shot: false });
  const st = await a.rt.start(s);
  await a.rt.close();
  const b = setup(dataDir);
  const found = await b.rt.status(s.id);
  assert.equal(found?.state, 'RUNNING');
  assert.equal(found?.pid, st.pid);
  await b.rt.stop(s.id);
  assert.equal(existsSync(`/proc/${st.pid}`), false);
});

test('bad code: download cap, 404, not gzip, no kernel in the archive, not a kernel, bad scheme: clear errors, nothing left', { skip }, async () => {
  const dataDir = await newDir();
  const { rt } = setup(dataDir);
  const cases: Array<[string, RegExp]> = [
    [`${base}/big.tar.gz`, /limit/],
    [`${base}/missing`, /HTTP 404/],
    [`${base}/notgz.tar.gz`, /not a readable \.tar\.gz/],
    [`${base}/nokernel.tar.gz`, /no regular file named kernel/],
    [`${base}/text`, /neither an ELF/],
    ['ftp://x/y', /must be an http/],
    [`${base}/a,${base}/b`, /no arch list/],
  ];
  for (const [code, re] of cases) {
    const s = spec({ code });
    await assert.rejects(rt.start(s), re, code);
    assert.equal(await rt.status(s.id), undefined);
  }
  const cache = join(dataDir, 'cache', 'unikernel');
  const left = existsSync(cache) ? (await readdir(cache)).filter((f) => f.startsWith('dl-') || f.endsWith('.part')) : [];
  assert.deepEqual(left, []);
});

test('comma-separated URLs pick the one of this arch; the download is cached by checksum', { skip }, async () => {
  const dataDir = await newDir();
  const { rt, exitOf } = setup(dataDir);
  const s = spec({ code: `${base}/missing,${base}/uk.tar.gz`, labels: { 'oak.arch': 'arm64,amd64' }, cmd: ['exit=0'] });
  await rt.start(s);
  assert.equal((await exitOf(s.id)).state, 'COMPLETED');
  const s2 = spec({ cmd: ['exit=0'] });
  await rt.start(s2);
  assert.equal((await exitOf(s2.id)).state, 'COMPLETED');
  const shas = (await readdir(join(dataDir, 'cache', 'unikernel'))).filter((f) => /^[0-9a-f]{64}$/.test(f));
  assert.equal(shas.length, 1);
  await rt.stop(s.id);
  await rt.stop(s2.id);
});

test('in a network namespace: a tap bridged to eth0, the address on the command line; stop restores the namespace', { skip: skip !== false ? skip : process.getuid?.() !== 0 ? 'needs root' : false }, async () => {
  const ns = `oakuk${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    const inNs = (args: string[]): string => execFileSync('ip', ['-n', ns, ...args]).toString();
    inNs(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0']);
    inNs(['link', 'set', 'peer0', 'up']);
    inNs(['addr', 'add', '10.231.7.5/24', 'dev', 'eth0']);
    inNs(['link', 'set', 'eth0', 'up']);
    inNs(['route', 'add', 'default', 'via', '10.231.7.1']);
    const { rt } = setup(await newDir());
    const s = spec({ cmd: ['loop'], one_shot: false, netns: `/run/netns/${ns}` });
    await rt.start(s);
    await waitFor(async () => (await collect(rt.logs(s.id))).some((l) => l.includes('netdev.ipv4_addr=10.231.7.5 netdev.ipv4_subnet_mask=255.255.255.0 netdev.ipv4_gw_addr=10.231.7.1')));
    assert.match(inNs(['link', 'show', 'oaktap0']), /master oakbr0/);
    assert.doesNotMatch(inNs(['-4', 'addr', 'show', 'dev', 'eth0']), /10\.231\.7\.5/);
    await rt.stop(s.id);
    assert.doesNotMatch(inNs(['link', 'show']), /oaktap0|oakbr0/);
    assert.match(inNs(['-4', 'addr', 'show', 'dev', 'eth0']), /10\.231\.7\.5\/24/);
    assert.match(inNs(['route', 'show', 'default']), /via 10\.231\.7\.1/);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
});

