import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { wrapperArgs } from '../src/supervisor/wrapper.ts';

/** runs the wrapper with `go` on stdin; resolves with its exit code and stderr */
function runWrapper(args: string[], go = 'go\n'): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn('/bin/sh', args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    c.once('error', reject);
    c.once('close', (code) => resolve({ code, stderr }));
    // a wrapper that exits before it reads (cannot join its cgroup) makes the write an EPIPE
    c.stdin.once('error', () => undefined);
    c.stdin.end(go);
  });
}

test('the wrapper moves itself into every cgroup.procs it is given before it runs the workload', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'oak-wrap-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // plain files stand in for the cgroup.procs files: the wrapper writes its pid into each
  const procs = [join(dir, 'memory.procs'), join(dir, 'cpu.procs')];
  for (const f of procs) await writeFile(f, '');
  const out = join(dir, 'out');
  const r = await runWrapper(wrapperArgs(join(dir, 'exit'), ['/bin/sh', '-c', `echo $PPID > ${out}; exit 3`], procs));
  assert.equal(r.code, 0);
  assert.equal((await readFile(join(dir, 'exit'), 'utf8')).trim(), '3');
  // the workload's parent is the wrapper's subshell, the wrapper wrote its own pid before forking it
  const pids = await Promise.all(procs.map(async (f) => (await readFile(f, 'utf8')).trim()));
  assert.equal(pids[0], pids[1]);
  assert.match(pids[0] ?? '', /^\d+$/);
  assert.match((await readFile(out, 'utf8')).trim(), /^\d+$/);
});

test('a cgroup the wrapper cannot join: exit 125 in the exit file, the workload never runs', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'oak-wrap-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ran = join(dir, 'ran');
  const r = await runWrapper(wrapperArgs(join(dir, 'exit'), ['/bin/sh', '-c', `touch ${ran}`], [join(dir, 'missing', 'cgroup.procs')]));
  assert.equal(r.code, 125);
  assert.equal((await readFile(join(dir, 'exit'), 'utf8')).trim(), '125');
  assert.match(r.stderr, /cannot join the cgroup/);
  await assert.rejects(readFile(ran));
});

test('without cgroups and without go the workload never runs (EOF before go: 125)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'oak-wrap-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ran = join(dir, 'ran');
  const r = await runWrapper(wrapperArgs(join(dir, 'exit'), ['/bin/sh', '-c', `touch ${ran}`]), '');
  assert.equal(r.code, 125);
  await assert.rejects(readFile(ran));
});
