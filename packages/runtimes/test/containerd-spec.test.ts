import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildSpec, capsFromMask, chainId, containerIdFor, isPlainHttp, mergeEnv, normalizeRef, processArgs } from '../src/containerd/index.ts';

test('normalizeRef qualifies short Docker references', () => {
  assert.equal(normalizeRef('busybox'), 'docker.io/library/busybox:latest');
  assert.equal(normalizeRef('me/app:2'), 'docker.io/me/app:2');
  assert.equal(normalizeRef('127.0.0.1:5000/library/busybox'), '127.0.0.1:5000/library/busybox:latest');
  assert.equal(normalizeRef('localhost/x:1'), 'localhost/x:1');
  assert.equal(normalizeRef('ghcr.io/a/b@sha256:abc'), 'ghcr.io/a/b@sha256:abc');
});

test('plain HTTP for loopback registries and the configured ones only', () => {
  assert.equal(isPlainHttp('127.0.0.1:5000/a:1'), true);
  assert.equal(isPlainHttp('localhost:5000/a:1'), true);
  assert.equal(isPlainHttp('docker.io/library/a:1'), false);
  assert.equal(isPlainHttp('reg.lan:5000/a:1', ['reg.lan:5000']), true);
  assert.equal(isPlainHttp('reg.lan:5000/a:1', ['reg.lan']), true);
});

test('chainId follows the OCI definition', () => {
  assert.equal(chainId([]), '');
  assert.equal(chainId(['sha256:aa']), 'sha256:aa');
  // sha256("sha256:aa sha256:bb")
  assert.equal(chainId(['sha256:aa', 'sha256:bb']), 'sha256:b68ad689d6d1ec110ea1c13617437ad6f3766d4b3b309f6a603a222e07a0164f');
  assert.match(chainId(['sha256:aa', 'sha256:bb', 'sha256:cc']), /^sha256:[0-9a-f]{64}$/);
});

test('containerIdFor keeps valid ids and hashes long or odd ones', () => {
  assert.equal(containerIdFor('app.ns.svc.ns.instance.0'), 'app.ns.svc.ns.instance.0');
  const long = `${'a'.repeat(30)}.${'b'.repeat(30)}.${'c'.repeat(30)}.${'d'.repeat(30)}.instance.12`;
  const cid = containerIdFor(long);
  assert.ok(cid.length <= 76);
  assert.match(cid, /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/);
  assert.equal(containerIdFor(long), cid);
  assert.notEqual(containerIdFor(`${long}3`), cid);
  assert.match(containerIdFor('a b/c'), /^a-b-c-[0-9a-f]{16}$/);
});

test('cmd replaces entrypoint and cmd; env merges with SLA entries winning', () => {
  const image = { Entrypoint: ['/entry'], Cmd: ['--flag'], Env: ['PATH=/bin', 'A=1', 'B=2'] };
  assert.deepEqual(processArgs(image), ['/entry', '--flag']);
  assert.deepEqual(processArgs(image, ['sh', '-c', 'x']), ['sh', '-c', 'x']);
  assert.deepEqual(mergeEnv(image.Env, ['B=3', 'C=4']), ['PATH=/bin', 'A=1', 'B=3', 'C=4']);
});

test('args (the SLA\'s) go after cmd, or after the image\'s entrypoint + cmd; added files are single-file bind mounts', () => {
  const image = { Entrypoint: ['/entry'], Cmd: ['--flag'] };
  assert.deepEqual(processArgs(image, undefined, ['a', 'b']), ['/entry', '--flag', 'a', 'b']);
  assert.deepEqual(processArgs(image, ['sh', '-c', 'x'], ['a']), ['sh', '-c', 'x', 'a']);
  assert.deepEqual(processArgs({}, undefined, ['a']), [], 'args alone are no command');
  const s = buildSpec({ id: 'x', namespace: 'oak', image, env: [], limitSwap: false, args: ['z'], files: [{ source: '/var/lib/oak/files/x/0', target: '/etc/app.conf' }] });
  assert.deepEqual((s['process'] as { args: string[] }).args, ['/entry', '--flag', 'z']);
  const m = (s['mounts'] as { destination: string; source: string; options: string[] }[]).find((x) => x.destination === '/etc/app.conf');
  assert.deepEqual(m, { destination: '/etc/app.conf', type: 'bind', source: '/var/lib/oak/files/x/0', options: ['rbind', 'rw', 'nosuid', 'nodev'] });
  assert.throws(() => buildSpec({ id: 'x', namespace: 'oak', image, env: [], limitSwap: false, files: [{ source: '/a', target: '../etc/x' }] }), /not an absolute path/);
  assert.throws(() => buildSpec({ id: 'x', namespace: 'oak', image: {}, env: [], limitSwap: false, args: ['a'] }), /no command/);
});

test('buildSpec sets limits, namespaces and the cgroup path', () => {
  const s = buildSpec({
    id: 'x.instance.0', namespace: 'oak', image: { Cmd: ['sh'], Env: ['PATH=/bin'], WorkingDir: '/w', User: '1000:2000' },
    env: ['K=v'], memoryBytes: 64 * 1024 * 1024, limitSwap: true, vcpus: 1.5, netns: undefined,
  }) as {
    process: { args: string[]; env: string[]; cwd: string; user: { uid: number; gid: number } };
    linux: { cgroupsPath: string; namespaces: { type: string; path?: string }[]; resources: { memory: { limit: number; swap: number }; cpu: { quota: number; period: number } } };
    mounts: { destination: string }[];
  };
  assert.deepEqual(s.process.args, ['sh']);
  assert.deepEqual(s.process.env, ['PATH=/bin', 'K=v']);
  assert.equal(s.process.cwd, '/w');
  assert.deepEqual(s.process.user, { uid: 1000, gid: 2000 });
  assert.equal(s.linux.cgroupsPath, '/oak/x.instance.0');
  assert.deepEqual(s.linux.resources.memory, { limit: 67108864, swap: 67108864 });
  assert.deepEqual(s.linux.resources.cpu, { quota: 150000, period: 100000 });
  assert.equal(s.linux.namespaces.some((n) => n.type === 'network'), false, 'host network');
  assert.ok(s.mounts.some((m) => m.destination === '/etc/resolv.conf'));

  const j = buildSpec({ id: 'y', namespace: 'oak', image: { Cmd: ['sh'] }, env: [], limitSwap: false, netns: '/run/netns/n1' }) as {
    linux: { namespaces: { type: string; path?: string }[]; resources: Record<string, unknown> };
  };
  assert.deepEqual(j.linux.namespaces.find((n) => n.type === 'network'), { type: 'network', path: '/run/netns/n1' });
  assert.equal(j.linux.resources.memory, undefined);
  assert.throws(() => buildSpec({ id: 'z', namespace: 'oak', image: {}, env: [], limitSwap: false }), /no command/);
  assert.throws(() => buildSpec({ id: 'z', namespace: 'oak', image: { Cmd: ['x'], User: 'www' }, env: [], limitSwap: false }), /not numeric/);
});

type CapSpec = {
  process: { capabilities: { bounding: string[]; effective: string[]; permitted: string[] }; noNewPrivileges: boolean };
  linux: { maskedPaths: string[]; resources: { devices: { allow: boolean }[] } };
  mounts: { destination: string; source: string; options: string[] }[];
};

test('containers get containerd\'s default capabilities without CAP_NET_RAW, and no new privileges', () => {
  const s = buildSpec({ id: 'c', namespace: 'oak', image: { Cmd: ['sh'] }, env: [], limitSwap: false }) as CapSpec;
  for (const set of [s.process.capabilities.bounding, s.process.capabilities.effective, s.process.capabilities.permitted]) {
    assert.equal(set.includes('CAP_NET_RAW'), false);
    assert.equal(set.includes('CAP_SYS_ADMIN'), false);
    assert.ok(set.includes('CAP_NET_BIND_SERVICE') && set.includes('CAP_CHOWN'));
    assert.equal(set.length, 13);
  }
  assert.equal(s.process.noNewPrivileges, true);
  assert.ok(s.linux.maskedPaths.includes('/proc/kcore'));
  assert.deepEqual(s.linux.resources.devices, [{ allow: false, access: 'rwm' }]);
});

test('privileged containers get every capability and device; bind mounts are nosuid,nodev', () => {
  const s = buildSpec({
    id: 'p', namespace: 'oak', image: { Cmd: ['sh'] }, env: [], limitSwap: false, privileged: true,
    mounts: [{ source: '/srv/data', target: '/data', readonly: true }, { source: '/srv/rw', target: '/rw', readonly: false }],
  }) as CapSpec;
  assert.ok(s.process.capabilities.effective.includes('CAP_NET_RAW'));
  assert.ok(s.process.capabilities.effective.includes('CAP_SYS_ADMIN'));
  assert.equal(s.process.noNewPrivileges, false);
  assert.deepEqual(s.linux.maskedPaths, []);
  assert.deepEqual(s.linux.resources.devices, [{ allow: true, access: 'rwm' }]);
  assert.deepEqual(s.mounts.find((m) => m.destination === '/data'), { destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind', 'ro', 'nosuid', 'nodev'] });
  assert.deepEqual(s.mounts.find((m) => m.destination === '/rw')?.options, ['rbind', 'rw', 'nosuid', 'nodev']);
});

test('privileged means the runtime\'s own bounding set', () => {
  assert.deepEqual(capsFromMask(0x1fffeffffffn).includes('CAP_SYS_RESOURCE'), false);
  assert.equal(capsFromMask(0x1fffeffffffn).length, 40);
  assert.deepEqual(capsFromMask((1n << 13n) | 1n), ['CAP_CHOWN', 'CAP_NET_RAW']);
  const s = buildSpec({ id: 'p', namespace: 'oak', image: { Cmd: ['sh'] }, env: [], limitSwap: false, privileged: true, allCaps: ['CAP_CHOWN'] }) as CapSpec;
  assert.deepEqual(s.process.capabilities.bounding, ['CAP_CHOWN']);
});
