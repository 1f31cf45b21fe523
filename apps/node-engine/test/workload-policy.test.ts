import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseFlags } from '../src/flags.ts';
import { applyPolicy, checkMounts, parseVolumes } from '../src/policy.ts';
import { resolveRunAs, workDirOf } from '../src/runtimes.ts';
import { portRules } from '../src/network.ts';

// a syntactically valid worker join token (the flags only parse it)
const TOKEN = `oak1.w.abcd1234.${'s'.repeat(32)}.${'ab'.repeat(32)}`;
const cfgOf = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const r = parseFlags(['-t', TOKEN, ...argv], env);
  if (r.kind !== 'run') throw new Error(r.kind === 'error' ? r.message : 'help');
  return r.config;
};
const errOf = (argv: string[], env: NodeJS.ProcessEnv = {}): string => {
  const r = parseFlags(['-t', TOKEN, ...argv], env);
  return r.kind === 'error' ? r.message : '';
};

test('workload flags: --run-as / OAK_RUN_AS, --allow-privileged, --volume-allow, --isolation / OAK_ISOLATION, --bridge-subnet', () => {
  const d = cfgOf([]);
  assert.equal(d.runAs, undefined);
  assert.equal(d.allowPrivileged, undefined);
  assert.equal(d.isolation, undefined);
  const c = cfgOf(['--run-as', 'svc', '--allow-privileged', '--volume-allow', '/srv/a, /srv/b', '--isolation', 'off', '--bridge-subnet', '10.18.4.0/26']);
  assert.equal(c.runAs, 'svc');
  assert.equal(c.allowPrivileged, true);
  assert.deepEqual(c.volumeAllow, ['/srv/a', '/srv/b']);
  assert.equal(c.isolation, 'off');
  assert.equal(c.bridgeSubnet, '10.18.4.0/26');
  assert.equal(cfgOf([], { OAK_RUN_AS: 'root', OAK_ISOLATION: 'on' }).runAs, 'root');
  assert.equal(cfgOf([], { OAK_ISOLATION: 'on' }).isolation, 'on');
  assert.equal(cfgOf(['--allow-privileged=false']).allowPrivileged, undefined);
  assert.equal(cfgOf(['-a', '10.0.0.1', '--allow-privileged', '-p', '10100']).clusterAddress, '10.0.0.1', 'a switch takes no value');
});

test('bad workload flags are named', () => {
  assert.match(errOf(['--run-as', 'bad;name']), /--run-as/);
  assert.match(errOf(['--allow-privileged=yes']), /is a switch/);
  assert.match(errOf(['--volume-allow', 'relative/dir']), /not an absolute directory/);
  assert.match(errOf(['--volume-allow', '/srv/../etc']), /not an absolute directory/);
  assert.match(errOf(['--volume-allow', '/']), /whole host/);
  assert.match(errOf(['--isolation', 'maybe']), /auto, on or off/);
  assert.match(errOf(['--bridge-subnet', '8.8.8.0/24']), /not a private/);
  assert.match(errOf(['--bridge-subnet', '172.30.0.1/24']), /host bits/);
});

test('run-as: never silently root; a missing user disables processes with the command that creates it', () => {
  const users: Record<string, { name: string; uid: number; gid: number }> = { 'oak-workload': { name: 'oak-workload', uid: 999, gid: 995 } };
  const lookup = (n: string) => users[n];
  assert.deepEqual(resolveRunAs(undefined, 0, lookup), { runAs: users['oak-workload'] });
  assert.deepEqual(resolveRunAs('root', 0, lookup), {}, 'root only when asked for');
  const missing = resolveRunAs('nobody-here', 0, lookup);
  assert.equal(missing.runAs, undefined);
  assert.match(missing.problem ?? '', /the user nobody-here that process workloads run as does not exist; create it with `useradd --system/);
  assert.match(missing.problem ?? '', /--run-as root runs them as root/);
  assert.match(resolveRunAs(undefined, 0, () => undefined).problem ?? '', /oak-workload/);
  assert.deepEqual(resolveRunAs('oak-workload', 1000, lookup), {}, 'not root: the own user');
  assert.equal(workDirOf({ dataDir: '/var/lib/oak/' }), '/var/lib/oak-work');
  assert.equal(workDirOf({ dataDir: '/var/lib/oak', workDir: '/srv/w' }), '/srv/w');
});

test('volumes: strings and objects, hostile shapes refused with the reason', () => {
  assert.deepEqual(parseVolumes(undefined), { ok: true, mounts: [], named: [], ignored: 0 });
  assert.deepEqual(parseVolumes(['/a:/b', '/c:/d:ro', { source: '/e', target: '/f', read_only: true }, { host_path: '/g', mount_path: '/h' }]), {
    ok: true,
    mounts: [
      { source: '/a', target: '/b', readonly: false }, { source: '/c', target: '/d', readonly: true },
      { source: '/e', target: '/f', readonly: true }, { source: '/g', target: '/h', readonly: false },
    ],
    named: [],
    ignored: 0,
  });
  assert.deepEqual(parseVolumes([{ name: 'data', target: '/data' }, { volume_id: 'v1', csi_driver: 'csi.x', mount_path: '/m' }]), {
    ok: true, mounts: [], named: [{ name: 'data', target: '/data', readonly: false }], ignored: 1,
  });
  const bad: [unknown, RegExp][] = [
    ['nope', /must be a list/], [['/a'], /is not "<host path>:<container path>/], [['/a:/b:rx'], /volumes\[0\]/], [['a:/b'], /absolute path/],
    [['/a/../etc:/b'], /without "\.\."/], [['/a:/'], /not "\/"/], [[{ target: '/x', volume_id: 'v1' }], /csi_driver must be/],
    [[{ source: '/a', target: '/b', read_only: 'yes' }], /true or false/], [[42], /is "<host path>/], [Array(101).fill('/a:/b'), /at most 100/],
    [[{ name: '../../etc', target: '/x' }], /volumes\[0\]\.name/], [['/a:/b', '/c:/b'], /two volumes/],
    [['/a\0:/b'], /absolute path/],
  ];
  for (const [v, why] of bad) {
    const r = parseVolumes(v);
    assert.equal(r.ok, false, JSON.stringify(v));
    if (!r.ok) assert.match(r.reason, why);
  }
});

test('volume sources must resolve inside the allow-list (symlinks followed)', async () => {
  const base = await mkdtemp(join(tmpdir(), 'oak-vol-'));
  try {
    const allowed = join(base, 'allowed');
    const secret = join(base, 'secret');
    await mkdir(join(allowed, 'sub'), { recursive: true });
    await mkdir(secret);
    await writeFile(join(secret, 'key'), 'k');
    await symlink(secret, join(allowed, 'escape'));
    const m = (source: string) => [{ source, target: '/data', readonly: false }];
    assert.deepEqual(await checkMounts(m(join(allowed, 'sub')), [allowed]), { ok: true, mounts: m(join(allowed, 'sub')) });
    assert.equal((await checkMounts(m(allowed), [allowed])).ok, true);
    assert.match(JSON.stringify(await checkMounts(m(join(allowed, 'escape')), [allowed])), /outside this worker's allowed directories/);
    assert.match(JSON.stringify(await checkMounts(m(secret), [allowed])), /outside/);
    assert.match(JSON.stringify(await checkMounts(m(`${allowed}-sibling`), [allowed])), /does not exist/);
    assert.match(JSON.stringify(await checkMounts(m(join(allowed, 'sub')), [])), /allows none/);
    assert.match(JSON.stringify(await checkMounts(m(join(allowed, 'sub')), [join(base, 'missing')])), /outside/);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
});

test('privileged needs --allow-privileged; volumes only for containers and microVMs', async () => {
  const none = { allowPrivileged: false, volumeAllow: [] };
  assert.match(JSON.stringify(await applyPolicy({ virtualization: 'container', privileged: true }, none)), /--allow-privileged/);
  assert.deepEqual(await applyPolicy({ virtualization: 'container', privileged: true }, { ...none, allowPrivileged: true }), { ok: true, privileged: true, mounts: [], ignored: 0 });
  assert.deepEqual(await applyPolicy({ virtualization: 'process', volumes: [] }, none), { ok: true, privileged: false, mounts: [], ignored: 0 });
  assert.match(JSON.stringify(await applyPolicy({ virtualization: 'process', volumes: [{ name: 'd', target: '/d' }] }, none)), /containers and microVMs only/);
  assert.deepEqual(await applyPolicy({ virtualization: 'process', volumes: [{ volume_id: 'v', csi_driver: 'c' }] }, none), { ok: true, privileged: false, mounts: [], ignored: 1 });
  assert.match(JSON.stringify(await applyPolicy({ virtualization: 'process', volumes: ['/a:/b'] }, none)), /containers and microVMs only/);
  // a microvm goes through the same gate and the same allow-list as a container
  assert.match(JSON.stringify(await applyPolicy({ virtualization: 'microvm', privileged: true }, none)), /--allow-privileged/);
  assert.match(JSON.stringify(await applyPolicy({ virtualization: 'microvm', volumes: ['/etc:/host-etc'] }, none)), /allows none/);
  assert.match(JSON.stringify(await applyPolicy({ virtualization: 'microvm', volumes: ['/etc:/host-etc'] }, { ...none, volumeAllow: ['/srv/nothing-here'] })), /outside this worker's allowed directories/);
  const named = await applyPolicy({ virtualization: 'microvm', organization_id: 'org1', volumes: [{ name: 'data', target: '/data' }] }, none);
  assert.match(JSON.stringify(named), /named volumes are not available/);
});

test('named volumes: one directory per organisation and name, the same on every deploy; other organisations apart', async () => {
  const base = await mkdtemp(join(tmpdir(), 'oak-named-'));
  try {
    const pol = { allowPrivileged: false, volumeAllow: [], volumesDir: join(base, 'volumes') };
    const a = await applyPolicy({ virtualization: 'container', organization_id: 'org1', volumes: [{ name: 'data', target: '/data', read_only: true }] }, pol);
    const b = await applyPolicy({ virtualization: 'container', organization_id: 'org1', volumes: [{ name: 'data', target: '/other' }] }, pol);
    const c = await applyPolicy({ virtualization: 'container', organization_id: 'org2', volumes: [{ name: 'data', target: '/data' }] }, pol);
    assert.ok(a.ok && b.ok && c.ok);
    assert.deepEqual(a.mounts, [{ source: join(base, 'volumes', 'org1', 'data'), target: '/data', readonly: true }]);
    assert.equal(b.mounts[0]?.source, a.mounts[0]?.source);
    assert.equal(c.mounts[0]?.source, join(base, 'volumes', 'org2', 'data'));
    assert.match(JSON.stringify(await applyPolicy({ virtualization: 'container', organization_id: '../x', volumes: [{ name: 'd', target: '/d' }] }, pol)), /invalid volume owner/);
    assert.match(JSON.stringify(await applyPolicy({ virtualization: 'container', volumes: [{ name: 'd', target: '/d' }] }, { ...pol, volumesDir: undefined })), /not available/);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
});

test('port rules: "80" maps host 80, "8080:80/udp" maps host 8080', () => {
  assert.deepEqual(portRules('w', '172.30.0.2', [{ containerPort: 80, protocol: 'tcp' }, { hostPort: 8080, containerPort: 80, protocol: 'udp' }]), [
    { instance: 'w', ip: '172.30.0.2', hostPort: 80, containerPort: 80, protocol: 'tcp' },
    { instance: 'w', ip: '172.30.0.2', hostPort: 8080, containerPort: 80, protocol: 'udp' },
  ]);
});
