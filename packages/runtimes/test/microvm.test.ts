/**
 * microvm: the testkit's busybox image from a local registry booted as a VM with Debian's cloud
 * kernel (scripts/microvm-kernel.sh puts it at the default kernel directory). Boots are slow under
 * software emulation and slower under load: every wait is on the console (logs) or an exit, with
 * generous deadlines, never a fixed sleep; the VMs of one step boot side by side.
 * Run under the e2e lock (qemu, network namespaces).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBusyboxImage, startRegistry, waitFor } from '@oak/testkit';
import type { RegistryInstance } from '@oak/testkit';
import { DEFAULT_MICROVM_KERNEL_DIR, MicrovmRuntime, initScript, microvmVerdict, planRun, readExitLine, shq, tscArgs } from '../src/index.ts';
import { resolveUser, startScript } from '../src/microvm/index.ts';
import type { InstanceExit, InstanceSpec } from '../src/index.ts';
import { writeFileSync } from 'node:fs';

const KERNEL_DIR = process.env['OAK_MICROVM_KERNEL'] ?? DEFAULT_MICROVM_KERNEL_DIR;
const BOOT_MS = 120_000;
const parent = `oak-mvm-test-${process.pid}`;
const roots: string[] = [];
const runtimes: MicrovmRuntime[] = [];
let reg: RegistryInstance | undefined;
let image = '';

before(async () => {
  reg = await startRegistry();
  image = await buildBusyboxImage(reg);
});

after(async () => {
  for (const rt of runtimes) {
    for (const s of await rt.list().catch(() => [])) await rt.stop(s.id).catch(() => undefined);
    await rt.close();
  }
  await reg?.stop();
  for (const r of roots) await rm(r, { recursive: true, force: true });
  for (const c of ['memory', 'cpu', 'cpuacct', 'pids', '']) await rmdir(join('/sys/fs/cgroup', c, parent)).catch(() => undefined);
});

async function newDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'oak-mvm-'));
  roots.push(d);
  return d;
}

function setup(dataDir: string): { rt: MicrovmRuntime; exitOf: (id: string) => Promise<InstanceExit> } {
  const rt = new MicrovmRuntime({ dataDir, cgroupParent: parent, stopGraceMs: 3000, pollMs: 100, kernelDir: KERNEL_DIR });
  runtimes.push(rt);
  const exits: InstanceExit[] = [];
  rt.onExit((e) => exits.push(e));
  const exitOf = (id: string): Promise<InstanceExit> => waitFor(() => exits.find((x) => x.id === id), { timeoutMs: BOOT_MS, intervalMs: 50, message: `the exit of ${id}` });
  return { rt, exitOf };
}

let n = 0;
function spec(over: Partial<InstanceSpec>): InstanceSpec {
  const id = over.id ?? `mvm.ns.svc.ns.instance.${process.pid}${n++}`;
  return { id, job_name: 'mvm.ns.svc.ns', instance_number: 0, virtualization: 'microvm', code: image, env: [], ports: [], one_shot: true, labels: {}, ...over };
}

async function text(rt: MicrovmRuntime, id: string): Promise<string> {
  const out: string[] = [];
  for await (const l of rt.logs(id)) out.push(l);
  return out.join('\n');
}

async function waitLog(rt: MicrovmRuntime, id: string, s: string): Promise<string> {
  let last = '';
  try {
    return await waitFor(async () => {
      last = await text(rt, id);
      return last.includes(s) ? last : undefined;
    }, { timeoutMs: BOOT_MS, intervalMs: 100, message: `"${s}" on the console of ${id}` });
  } catch (e) {
    throw new Error(`${(e as Error).message}; status ${JSON.stringify(await rt.status(id))}; console: ${last.slice(-2000)}`, { cause: e });
  }
}

function qemus(marker: string): number {
  return readdirSync('/proc').filter((p) => {
    if (!/^\d+$/.test(p)) return false;
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      return argv[0]?.endsWith('qemu-system-x86_64') === true && argv.some((a) => a.includes(marker));
    } catch {
      return false;
    }
  }).length;
}

test('pure: command and env as for containers, quoting, the exit line and its verdict', async () => {
  const run = { entrypoint: ['/bin/ep'], cmd: ['a'], env: ['PATH=/bin', 'A=1'], workdir: '/w', user: '' };
  assert.deepEqual(planRun(run, { env: ['A=2', 'B=x=y'] }), { argv: ['/bin/ep', 'a'], env: ['PATH=/bin', 'A=2', 'B=x=y'] });
  assert.deepEqual(planRun(run, { cmd: ['sh', '-c', 'x'], args: ['z'], env: [] }).argv, ['sh', '-c', 'x', 'z']);
  assert.match(planRun({ ...run, env: [] }, { env: [] }).env[0] ?? '', /^PATH=/);
  assert.throws(() => planRun({ ...run, entrypoint: [], cmd: [] }, { env: [] }), /no entrypoint or cmd/);
  // hostile words stay words: quotes, $(...), newlines
  assert.equal(shq(`it's $(reboot)\n`), `'it'\\''s $(reboot)\n'`);
  assert.throws(() => shq('a\0b'), /NUL/);
  const init = initScript({ argv: ['echo', "'; reboot -f; '"], env: ['X=$(id)'], workdir: '/', hostname: 'h', net: { tap: 't', ip: '10.0.0.2', prefix: 24, gateway: '10.0.0.1', mask: '255.255.255.0' } });
  assert.ok(init.includes(`'X=$(id)' 'echo' ''\\''; reboot -f; '\\'''`));
  assert.ok(init.includes("ip addr add '10.0.0.2/24' dev eth0") && init.includes("ip route add default via '10.0.0.1'"));
  const d = await newDir();
  writeFileSync(join(d, 'log'), 'hello\noak-microvm: exit=3 oom=0\n[    1.2] reboot: Restarting system\n');
  assert.deepEqual(readExitLine(join(d, 'log')), { code: 3, oom: 0 });
  assert.equal(readExitLine(join(d, 'none')), undefined);
  const raw = { code: 0, oomKills: 0, oneShot: true };
  assert.equal(microvmVerdict(raw, { code: 0, oom: 0 }, 128).state, 'COMPLETED');
  assert.equal(microvmVerdict(raw, { code: 3, oom: 0 }, 128).detail, 'exited with code 3');
  assert.match(microvmVerdict(raw, { code: 137, oom: 1 }, 128).detail, /out of memory: killed at the 128 MB limit/);
  assert.match(microvmVerdict(raw, undefined, 128).detail, /without an exit status/);
  assert.equal(microvmVerdict({ ...raw, code: 143 }, undefined, 128).state, 'FAILED');
  assert.equal(tscArgs('processor\t: 0\ncpu MHz\t\t: 2599.998\n'), ' tsc_early_khz=2599998 tsc=reliable');
  assert.equal(tscArgs('no such line'), '');
});

test('pure: the image User resolved as Docker does, and /init drops to it; files, volumes, start.sh', () => {
  const passwd = 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:4321:app:/home/app:/bin/sh\n# comment\nnohome:x:7:8::relative:/bin/sh\n';
  const group = 'root:x:0:\nstaff:x:50:app\n';
  assert.deepEqual(resolveUser('', passwd, group), { uid: 0, gid: 0, home: '/root' });
  assert.deepEqual(resolveUser('app', passwd, group), { uid: 1234, gid: 4321, home: '/home/app' });
  assert.deepEqual(resolveUser('app:staff', passwd, group), { uid: 1234, gid: 50, home: '/home/app' });
  assert.deepEqual(resolveUser('1234', passwd, group), { uid: 1234, gid: 4321, home: '/home/app' });
  assert.deepEqual(resolveUser('999', passwd, group), { uid: 999, gid: 0, home: '/' });
  assert.deepEqual(resolveUser('999:77', passwd, group), { uid: 999, gid: 77, home: '/' });
  assert.deepEqual(resolveUser('nohome', passwd, group), { uid: 7, gid: 8, home: '/' });
  assert.match(resolveUser('ghost', passwd, group) as string, /"ghost" is not in its \/etc\/passwd/);
  assert.match(resolveUser('app:ghosts', passwd, group) as string, /group "ghosts" is not in its \/etc\/group/);
  assert.match(resolveUser('a:b:c', passwd, group) as string, /not user\[:group\]/);
  assert.match(resolveUser('app', undefined, undefined) as string, /not in its \/etc\/passwd/);
  const base = { argv: ['id'], env: ['PATH=/bin'], workdir: '/srv/app', hostname: 'h' };
  assert.ok(!initScript(base).includes('nsenter'), 'root: no drop');
  assert.ok(!initScript({ ...base, user: { uid: 0, gid: 0 } }).includes('nsenter'));
  const init = initScript({ ...base, user: { uid: 1234, gid: 4321 }, files: [{ target: "/etc/it's.conf", mode: 0o640 }], volumes: [{ target: '/data', readonly: false }, { target: '/ro', readonly: true }] });
  assert.ok(init.includes("'PATH=/bin' /.oak/busybox nsenter -F -G 4321 -S 1234 -- 'id'"), init);
  assert.ok(init.includes("$B mkdir -p '/srv/app' 2>/dev/null; cd '/srv/app'"));
  assert.ok(init.includes("$B mv -f /.oak/files/0 '/etc/it'\\''s.conf' && $B chmod 640 '/etc/it'\\''s.conf'"), init);
  assert.ok(init.includes("mount -t virtiofs -o nosuid,nodev vol0 '/data'") && init.includes("mount -t virtiofs -o ro,nosuid,nodev vol1 '/ro'"), init);
  assert.ok(init.includes('fuse virtiofs') && !init.includes('virtio_net'), 'the virtiofs modules, no network ones without a network');
  // the setup steps come before the workload
  assert.ok(init.indexOf('virtiofs vol1') < init.indexOf('nsenter -F') && init.indexOf('/.oak/files/0') < init.indexOf('nsenter -F'));
  const sh = startScript([{ source: '/v/a b', readonly: false, socket: '/i/vfs0.sock' }, { source: "/v/it's", readonly: true, socket: '/i/vfs1.sock' }], ['/usr/bin/qemu', '-m', '128'], { virtiofsd: '/usr/lib/qemu/virtiofsd', unshare: '/usr/bin/unshare', mount: '/usr/bin/mount' });
  assert.ok(sh.includes("'/usr/lib/qemu/virtiofsd' --socket-path='/i/vfs0.sock' -o 'source=/v/a b' -o sandbox=namespace -o log_level=err &"), sh);
  assert.match(sh, /'\/usr\/bin\/unshare' --mount --propagation private -- \/bin\/sh -c '.*remount,bind,ro.*' sh '\/v\/it'\\''s' '\/usr\/lib\/qemu\/virtiofsd'/);
  assert.ok(sh.includes("until [ -S '/i/vfs0.sock' ] && [ -S '/i/vfs1.sock' ]"));
  assert.ok(sh.trimEnd().endsWith("exec '/usr/bin/qemu' '-m' '128'"));
});

test('probe: no kernel, no microvm, and it says where to get one', async () => {
  const rt = new MicrovmRuntime({ dataDir: await newDir(), cgroupParent: parent, kernelDir: '/nonexistent/kernel' });
  runtimes.push(rt);
  const p = await rt.probe();
  assert.equal(p.available, false);
  assert.match(p.detail, /no kernel in \/nonexistent\/kernel .*microvm-kernel\.sh/);
});

test('hostile specs are refused before anything boots', async () => {
  const { rt } = setup(await newDir());
  await assert.rejects(rt.start(spec({ memory_mb: 32 })), /memory >= 96 MB/);
  await assert.rejects(rt.start(spec({ code: 'bad ref;$(x)' })), /not valid/);
  await assert.rejects(rt.start(spec({ code: `${reg?.url ?? ''}/library/absent:1` })), /cannot pull image/);
  // volumes: directories only, absolute targets, a source that exists
  const d = await newDir();
  writeFileSync(join(d, 'file'), 'x');
  await assert.rejects(rt.start(spec({ memory_mb: 128, mounts: [{ source: join(d, 'file'), target: '/f', readonly: false }] })), /is a file: a microvm shares directories only/);
  await assert.rejects(rt.start(spec({ memory_mb: 128, mounts: [{ source: d, target: 'rel', readonly: false }] })), /not an absolute path/);
  await assert.rejects(rt.start(spec({ memory_mb: 128, mounts: [{ source: join(d, 'none'), target: '/n', readonly: false }] })), /does not exist/);
  await assert.rejects(rt.start(spec({ memory_mb: 128, files: [{ source: join(d, 'file'), target: 'etc/x', mode: 0o644 }] })), /not an absolute path without/);
  assert.deepEqual(await rt.list(), []);
});

test('busybox boots: RUNNING, console in the logs, exit codes, out of memory, re-adoption, stop leaves nothing', { timeout: 600_000 }, async () => {
  const dataDir = await newDir();
  const { rt, exitOf } = setup(dataDir);
  assert.equal((await rt.probe()).available, true, `the kernel is at ${KERNEL_DIR} (scripts/microvm-kernel.sh)`);
  const m = `mvm${process.pid}`;
  const svc = spec({ one_shot: false, memory_mb: 128, vcpus: 1, env: ['GREETING=hi there'], cmd: ['sh', '-c', 'echo "$0 up $GREETING"; while :; do sleep 1; done', `${m}-svc`] });
  const ok = spec({ memory_mb: 128, cmd: ['sh', '-c', 'echo "$0 done"; exit 0', `${m}-ok`] });
  const bad = spec({ memory_mb: 128, cmd: ['sh', '-c', 'echo "$0 done"; exit 3', `${m}-bad`] });
  // doubling a shell variable until the guest kernel's OOM killer ends it
  const hog = spec({ one_shot: false, memory_mb: 128, cmd: ['sh', '-c', 'echo "$0 hog"; x=aaaaaaaa; while :; do x=$x$x; done', `${m}-hog`] });
  const t0 = performance.now();
  await Promise.all([svc, ok, bad, hog].map((s) => rt.start(s)));
  assert.equal((await rt.status(svc.id))?.state, 'RUNNING');
  await waitLog(rt, svc.id, `${m}-svc up hi there`);
  console.log(`microvm: four VMs started, the service's first line after ${Math.round(performance.now() - t0)} ms`);
  assert.deepEqual([(await exitOf(ok.id)).state, (await exitOf(ok.id)).exit_code], ['COMPLETED', 0]);
  const b = await exitOf(bad.id);
  assert.deepEqual([b.state, b.exit_code, b.detail], ['FAILED', 3, 'exited with code 3']);
  const h = await exitOf(hog.id);
  assert.equal(h.state, 'FAILED');
  assert.match(h.detail, /out of memory/);
  assert.equal(qemus(`${dataDir}/instances/${svc.id}/`), 1, 'one qemu runs the service');

  // a new runtime on the same data (a NodeEngine restart) adopts the running VM
  await rt.close();
  const again = setup(dataDir).rt;
  const listed = await again.list();
  assert.equal(listed.find((s) => s.id === svc.id)?.state, 'RUNNING');
  assert.equal(qemus(`${dataDir}/instances/${svc.id}/`), 1, 'still one qemu after the adoption');
  for (const s of listed) await again.stop(s.id);
  assert.equal(qemus(dataDir), 0, 'no qemu left');
  assert.deepEqual(readdirSync(join(dataDir, 'instances')), []);
  assert.equal(existsSync(join(dataDir, 'net')) ? readdirSync(join(dataDir, 'net')).length : 0, 0);
});

test('in a network namespace: the guest has the instance address and serves on it; stop restores the namespace', { timeout: 300_000 }, async () => {
  const ns = `oakmvm${process.pid}`;
  const peer = `oakmvmp${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['netns', 'add', peer]);
  try {
    const inNs = (args: string[]): string => execFileSync('ip', ['-n', ns, ...args]).toString();
    inNs(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0']);
    inNs(['link', 'set', 'peer0', 'netns', peer]);
    execFileSync('ip', ['-n', peer, 'addr', 'add', '10.231.8.1/24', 'dev', 'peer0']);
    execFileSync('ip', ['-n', peer, 'link', 'set', 'peer0', 'up']);
    inNs(['addr', 'add', '10.231.8.5/24', 'dev', 'eth0']);
    inNs(['link', 'set', 'eth0', 'up']);
    inNs(['route', 'add', 'default', 'via', '10.231.8.1']);
    const { rt } = setup(await newDir());
    const s = spec({ one_shot: false, memory_mb: 128, netns: `/run/netns/${ns}`, cmd: ['sh', '-c', 'ip -4 addr show dev eth0; echo served; httpd -f -p 8080 -h /www'] });
    await rt.start(s);
    await waitLog(rt, s.id, 'served');
    assert.match(await text(rt, s.id), /inet 10\.231\.8\.5\/24/);
    const body = await waitFor(() => {
      try {
        return execFileSync('ip', ['netns', 'exec', peer, 'curl', '-sf', '--max-time', '5', 'http://10.231.8.5:8080/']).toString();
      } catch {
        return undefined;
      }
    }, { timeoutMs: 60_000, intervalMs: 250, message: 'the guest httpd answers on the instance address' });
    assert.equal(body, 'hello from oak busybox\n');
    await rt.stop(s.id);
    assert.doesNotMatch(inNs(['link', 'show']), /oaktap0|oakbr0/);
    assert.match(inNs(['-4', 'addr', 'show', 'dev', 'eth0']), /10\.231\.8\.5\/24/);
    assert.match(inNs(['route', 'show', 'default']), /via 10\.231\.8\.1/);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
    execFileSync('ip', ['netns', 'del', peer]);
  }
});

test('a private registry: no login, a wrong one, another host\'s: refused with the reason; the right one boots; the password is on no command line and in no file left', { timeout: 300_000 }, async () => {
  const login = { username: 'alice', password: `pw-${process.pid}-s3cr3t-${Math.random().toString(36).slice(2)}` };
  const preg = await startRegistry({ auth: login });
  try {
    // its own image (another env, another manifest): the pull really copies with the login
    const pimage = await buildBusyboxImage(preg, { name: 'private/busybox', creds: login, env: ['PRIVATE=1'] });
    const dataDir = await newDir();
    const { rt, exitOf } = setup(dataDir);
    const noLogin = await rt.start(spec({ code: pimage, memory_mb: 128 })).then(() => undefined, (e: unknown) => e as Error);
    assert.match(String(noLogin), new RegExp(`registry ${preg.url.replace(/[.]/g, '\\.')} needs a login .*oak registry login`));
    const wrong = `${login.password}-wrong`;
    const bad = await rt.start(spec({ code: pimage, memory_mb: 128, registryAuth: { host: preg.url, username: 'alice', password: wrong } })).then(() => undefined, (e: unknown) => e as Error);
    assert.match(String(bad), /refused the login of alice/);
    assert.ok(!String(bad).includes(wrong) && !String(bad).includes(login.password), 'no password in the error');
    const other = await rt.start(spec({ code: pimage, memory_mb: 128, registryAuth: { host: 'other.example.com', ...login } })).then(() => undefined, (e: unknown) => e as Error);
    assert.match(String(other), /needs a login/);

    // the right login: watch every command line and the auth file while it pulls
    const s = spec({ code: pimage, memory_mb: 128, registryAuth: { host: preg.url, ...login }, cmd: ['sh', '-c', 'echo "private $PRIVATE"'] });
    const dir = join(dataDir, 'instances', s.id);
    let cmdlines = '';
    const modes = new Set<number>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const pid of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
          try {
            const cl = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
            if (cl.startsWith('skopeo')) cmdlines += `${cl.replace(/\0/g, ' ')}\n`;
          } catch {
            /* gone */
          }
        }
        for (const f of existsSync(dir) ? readdirSync(dir).filter((x) => x.startsWith('registry-auth.json')) : []) {
          try {
            modes.add(statSync(join(dir, f)).mode & 0o777);
          } catch {
            /* removed meanwhile */
          }
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await rt.start(s);
    watching = false;
    await watcher;
    assert.match(cmdlines, /--authfile|--src-authfile/, 'skopeo was given the auth file');
    assert.ok(!cmdlines.includes(login.password), 'the password is on no command line');
    assert.deepEqual([...modes], [0o600], 'the auth file is 0600 while it exists');
    assert.deepEqual(readdirSync(dir).filter((x) => x.startsWith('registry-auth')), [], 'the auth file is removed after the pull');
    assert.equal((await exitOf(s.id)).state, 'COMPLETED');
    assert.match(await text(rt, s.id), /private 1/);
    // the cached image is not handed out without the login: the manifest is asked for with it
    await assert.rejects(rt.start(spec({ code: pimage, memory_mb: 128 })), /needs a login/);
    // (the state file of the running instance included)
    const leak = spawnSync('grep', ['-rlF', '--', login.password, dataDir], { encoding: 'utf8' });
    assert.equal(leak.status, 1, `no file under the data dir holds the password: ${leak.stdout}`);
  } finally {
    await preg.stop();
  }
});

test('the image User and WorkingDir, added files, volumes (read-write; read-only even for a guest root that remounts)', { timeout: 300_000 }, async () => {
  const passwd = 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:4321:app:/home/app:/bin/sh\n';
  const uimage = await buildBusyboxImage(reg as RegistryInstance, { name: 'mvm/user', user: 'app', workdir: '/srv/app', files: { 'etc/passwd': passwd } });
  const dataDir = await newDir();
  const { rt, exitOf } = setup(dataDir);
  const vols = await newDir();
  const rw = join(vols, 'rw');
  const ro = join(vols, 'ro');
  mkdirSync(rw);
  mkdirSync(ro);
  chownSync(rw, 1234, 4321);
  chmodSync(ro, 0o777);
  writeFileSync(join(ro, 'seen.txt'), 'from the host\n');
  const conf = join(vols, 'conf');
  writeFileSync(conf, 'key=value\n');
  const a = spec({
    code: uimage, memory_mb: 128,
    files: [{ source: conf, target: '/etc/app/app.conf', mode: 0o640 }, { source: conf, target: '/oak/files/tool', mode: 0o755 }],
    mounts: [{ source: rw, target: '/data', readonly: false }, { source: ro, target: '/ro', readonly: true }],
    cmd: ['sh', '-c', 'echo "who $(id -u):$(id -g) in $(pwd) home $HOME"; ls -ln /etc/app/app.conf /oak/files/tool; cat /ro/seen.txt; echo guest > /data/out.txt && echo wrote-rw; echo x > /ro/y 2>/dev/null || echo ro-refused'],
  });
  // a guest root that remounts its read-only volume read-write still cannot write to it
  const b = spec({ memory_mb: 128, mounts: [{ source: ro, target: '/ro', readonly: true }], cmd: ['sh', '-c', 'mount -o remount,rw /ro && echo remounted; echo x > /ro/y 2>/dev/null && echo wrote-ro || echo ro-refused'] });
  await Promise.all([rt.start(a), rt.start(b)]);
  const [ea, eb] = await Promise.all([exitOf(a.id), exitOf(b.id)]);
  const la = await text(rt, a.id);
  const lb = await text(rt, b.id);
  assert.equal(ea.state, 'COMPLETED', la.slice(-2000));
  assert.match(la, /who 1234:4321 in \/srv\/app home \/home\/app/);
  assert.match(la, /-rw-r-----\s+1 0\s+0\s+10 .*\/etc\/app\/app\.conf/);
  assert.match(la, /-rwxr-xr-x\s+1 0\s+0\s+10 .*\/oak\/files\/tool/);
  assert.match(la, /from the host/);
  assert.match(la, /wrote-rw/);
  assert.match(la, /ro-refused/);
  assert.equal(readFileSync(join(rw, 'out.txt'), 'utf8'), 'guest\n');
  assert.equal(statSync(join(rw, 'out.txt')).uid, 1234, 'the guest user owns what it wrote');
  assert.equal(eb.state, 'COMPLETED', lb.slice(-2000));
  assert.match(lb, /ro-refused/);
  assert.ok(!existsSync(join(ro, 'y')), 'nothing written to the read-only volume');
  assert.doesNotMatch(la + lb, /virtio_session_mount|fv_queue/, 'virtiofsd is quiet on the console');
  for (const s of [a, b]) await rt.stop(s.id);
  assert.equal(qemus(dataDir), 0);
  assert.equal(virtiofsds(dataDir), 0, 'no virtiofsd left');
  assert.deepEqual(readdirSync(join(dataDir, 'instances')), []);
});

test('a named image User that is not in the image: FAILED before anything boots', { timeout: 120_000 }, async () => {
  const ghost = await buildBusyboxImage(reg as RegistryInstance, { name: 'mvm/ghost', user: 'ghost' });
  const { rt } = setup(await newDir());
  await assert.rejects(rt.start(spec({ code: ghost, memory_mb: 128 })), /cannot unpack image .*unable to find user ghost/);
  assert.deepEqual(await rt.list(), []);
});

function virtiofsds(marker: string): number {
  return readdirSync('/proc').filter((p) => {
    if (!/^\d+$/.test(p)) return false;
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      return argv[0]?.endsWith('virtiofsd') === true && argv.some((x) => x.includes(marker));
    } catch {
      return false;
    }
  }).length;
}
