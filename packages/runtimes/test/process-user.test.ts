import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessRuntime, lookupUser } from '../src/index.ts';
import type { InstanceExit, InstanceSpec } from '../src/index.ts';

const root = process.getuid?.() === 0;
const nobody = lookupUser('nobody');

async function waitExit(exits: InstanceExit[], id: string): Promise<InstanceExit> {
  const end = Date.now() + 10_000;
  for (;;) {
    const e = exits.find((x) => x.id === id);
    if (e !== undefined) return e;
    if (Date.now() > end) throw new Error(`no exit of ${id}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('lookupUser finds real users and refuses odd names', () => {
  assert.deepEqual(lookupUser('root'), { name: 'root', uid: 0, gid: 0 });
  assert.equal(lookupUser('no-such-user-oak-test'), undefined);
  assert.equal(lookupUser('bad name; rm -rf /'), undefined);
  assert.deepEqual(lookupUser('1234'), { name: '1234', uid: 1234, gid: 1234 });
});

test('a process workload runs unprivileged and cannot read the 0700 data dir', { skip: !root || nobody === undefined ? 'needs root and the user nobody' : false }, async () => {
  const base = await mkdtemp(join(tmpdir(), 'oak-runas-'));
  await chmod(base, 0o755);
  const dataDir = join(base, 'data');
  await mkdir(dataDir, { mode: 0o700 });
  const secret = join(dataDir, 'oak.db');
  await writeFile(secret, 'jwt secret', { mode: 0o644 }); // readable by mode, guarded by the 0700 dir
  const workRoot = join(base, 'work');
  const rt = new ProcessRuntime({ dataDir, workRoot, runAs: nobody, cgroupParent: `oak-runas-${process.pid}`, pollMs: 50 });
  const exits: InstanceExit[] = [];
  rt.onExit((e) => exits.push(e));
  try {
    assert.match((await rt.probe()).detail, /as nobody/);
    const script = [
      'id -u', 'id -G',
      `cat ${secret}; echo "cat=$?"`,
      `ls ${dataDir}; echo "ls=$?"`,
      'pwd', 'echo hi > mine && cat mine', 'echo "home=$HOME"',
      'grep CapEff /proc/self/status', 'grep NoNewPrivs /proc/self/status',
    ].join('; ');
    const spec: InstanceSpec = {
      id: 'runas.instance.0', job_name: 'runas', instance_number: 0, virtualization: 'process', code: '/bin/sh', cmd: ['-c', script],
      env: [], ports: [], one_shot: true, labels: {},
    };
    await rt.start(spec);
    const ex = await waitExit(exits, spec.id);
    assert.equal(ex.state, 'COMPLETED', ex.detail);
    const log = await readFile(join(dataDir, 'instances', spec.id, 'log'), 'utf8');
    const lines = log.trim().split('\n');
    assert.equal(lines[0], String(nobody?.uid), log);
    assert.doesNotMatch(lines[1] ?? '', /(^| )0( |$)/, 'no root group');
    assert.match(log, /Permission denied/);
    assert.match(log, /cat=1/);
    assert.match(log, /ls=[12]/);
    assert.doesNotMatch(log, /jwt secret/);
    assert.ok(lines.includes(join(workRoot, spec.id)), log);
    assert.ok(lines.includes('hi'));
    assert.ok(lines.includes(`home=${join(workRoot, spec.id)}`));
    assert.match(log, /CapEff:\s+0000000000000000/);
    assert.match(log, /NoNewPrivs:\s+1/);
    // the work dir is the user's; the state (with the SLA's env) stays root's
    assert.equal((await stat(join(workRoot, spec.id))).uid, nobody?.uid);
    assert.equal((await stat(join(dataDir, 'instances', spec.id))).mode & 0o777, 0o700);
    // a privileged spec runs as the runtime's own user (root)
    await rt.start({ ...spec, id: 'runas.instance.1', instance_number: 1, cmd: ['-c', 'id -u'], privileged: true });
    await waitExit(exits, 'runas.instance.1');
    assert.equal((await readFile(join(dataDir, 'instances', 'runas.instance.1', 'log'), 'utf8')).trim(), '0');
    await rt.stop(spec.id);
    await rt.stop('runas.instance.1');
    await assert.rejects(stat(join(workRoot, spec.id)), /ENOENT/);
  } finally {
    await rt.close();
    await rm(base, { recursive: true, force: true });
  }
});
