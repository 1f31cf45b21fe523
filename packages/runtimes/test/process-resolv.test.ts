/**
 * A process workload with its own /etc/resolv.conf (the worker's overlay resolver): a private
 * mount namespace, the file bind-mounted read-only, nothing visible on the host, the workload
 * still unprivileged and still without access to the 0700 data dir.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessRuntime, RuntimeError, lookupUser } from '../src/index.ts';
import type { InstanceExit, InstanceSpec } from '../src/index.ts';

const root = process.getuid?.() === 0;
const nobody = lookupUser('oak-workload') ?? lookupUser('nobody');
const tools = ['unshare', 'mount', 'setpriv'].every((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0);

async function waitExit(exits: InstanceExit[], id: string): Promise<InstanceExit> {
  const end = Date.now() + 10_000;
  for (;;) {
    const e = exits.find((x) => x.id === id);
    if (e !== undefined) return e;
    if (Date.now() > end) throw new Error(`no exit of ${id}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('resolvConf: the workload sees the given file as /etc/resolv.conf, the host keeps its own', { skip: !root || nobody === undefined || !tools ? 'needs root, a workload user, unshare, mount, setpriv' : false }, async () => {
  const base = await mkdtemp(join(tmpdir(), 'oak-h6-resolv-'));
  await chmod(base, 0o755);
  const dataDir = join(base, 'data');
  await mkdir(join(dataDir, 'net'), { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
  const resolv = join(dataDir, 'net', 'resolv.conf');
  await writeFile(resolv, 'nameserver 10.18.0.65\noptions ndots:1\n', { mode: 0o644 });
  await writeFile(join(dataDir, 'net', 'secret.json'), 'secret', { mode: 0o644 });
  const hostBefore = await readFile('/etc/resolv.conf', 'utf8');
  const mountsBefore = await readFile('/proc/self/mountinfo', 'utf8');
  const rt = new ProcessRuntime({ dataDir, workRoot: join(base, 'work'), runAs: nobody, cgroupParent: `oak-h6-resolv-${process.pid}`, pollMs: 50 });
  const exits: InstanceExit[] = [];
  rt.onExit((e) => exits.push(e));
  try {
    const script = [
      'cat /etc/resolv.conf',
      'id -u',
      `cat ${join(dataDir, 'net', 'secret.json')}; echo "secret=$?"`,
      'echo x >> /etc/resolv.conf; echo "write=$?"',
      'umount /etc/resolv.conf 2>/dev/null; echo "umount=$?"',
      'grep CapEff /proc/self/status',
    ].join('; ');
    const spec: InstanceSpec = {
      id: 'resolv.instance.0', job_name: 'resolv', instance_number: 0, virtualization: 'process', code: '/bin/sh', cmd: ['-c', script],
      env: [], ports: [], one_shot: true, labels: {}, resolvConf: resolv,
    };
    await rt.start(spec);
    const ex = await waitExit(exits, spec.id);
    assert.equal(ex.state, 'COMPLETED', ex.detail);
    const log = await readFile(join(dataDir, 'instances', spec.id, 'log'), 'utf8');
    assert.match(log, /^nameserver 10\.18\.0\.65\noptions ndots:1\n/);
    assert.match(log, new RegExp(`\\n${String(nobody?.uid)}\\n`));
    assert.match(log, /secret=1/);
    assert.doesNotMatch(log, /^secret$/m);
    assert.match(log, /write=[12]/);
    assert.doesNotMatch(log, /umount=0/);
    assert.match(log, /CapEff:\s+0000000000000000/);
    // nothing leaked to the host
    assert.equal(await readFile('/etc/resolv.conf', 'utf8'), hostBefore);
    assert.equal(await readFile(resolv, 'utf8'), 'nameserver 10.18.0.65\noptions ndots:1\n');
    const mountsAfter = await readFile('/proc/self/mountinfo', 'utf8');
    assert.equal(mountsAfter.includes('resolv.conf') && !mountsBefore.includes('resolv.conf') ? 'leaked' : 'ok', 'ok');
    assert.ok(!mountsAfter.split('\n').some((l) => l.includes(resolv)), 'no mount of the file in the host namespace');
    // hostile: a relative or missing file is refused before anything runs
    await assert.rejects(rt.start({ ...spec, id: 'resolv.instance.1', instance_number: 1, resolvConf: '../etc/shadow' }), (e: unknown) => e instanceof RuntimeError && /not an absolute path/.test(e.message));
    await assert.rejects(rt.start({ ...spec, id: 'resolv.instance.2', instance_number: 2, resolvConf: join(base, 'missing') }), /does not exist/);
    await rt.stop(spec.id);
  } finally {
    await rt.close();
    await rm(base, { recursive: true, force: true });
  }
});
