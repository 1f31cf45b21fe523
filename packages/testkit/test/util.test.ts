import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { freePort, run, tmpDir, waitFor } from '../src/index.ts';

test('freePort returns a bindable 127.0.0.1 port', async () => {
  const port = await freePort();
  assert.ok(port > 1024 && port < 65536);
  const srv = createServer();
  await new Promise<void>((r, j) => { srv.once('error', j); srv.listen(port, '127.0.0.1', () => r()); });
  await new Promise<void>((r) => srv.close(() => r()));
});

test('waitFor resolves with the first truthy value and times out with the message', async () => {
  let n = 0;
  const v = await waitFor(() => (++n >= 3 ? `got ${n}` : undefined), { intervalMs: 5 });
  assert.equal(v, 'got 3');
  await assert.rejects(
    waitFor(() => { throw new Error('boom'); }, { timeoutMs: 50, intervalMs: 10, message: 'the thing' }),
    /timed out after 50 ms waiting for the thing: boom/,
  );
  await assert.rejects(waitFor(async () => false, { timeoutMs: 30 }), /timed out/);
});

test('tmpDir creates and removes a directory', async () => {
  const d = await tmpDir('oak-tk-util');
  await writeFile(join(d.path, 'x'), 'y');
  assert.ok(existsSync(join(d.path, 'x')));
  await d.remove();
  assert.ok(!existsSync(d.path));
  await d.remove();
});

test('tmpDir removes the <path>-work a NodeEngine makes beside its data dir', async () => {
  const d = await tmpDir('oak-tk-util');
  await mkdir(`${d.path}-work/proc-1`, { recursive: true });
  await d.remove();
  assert.ok(!existsSync(`${d.path}-work`));
});

test('run collects output and reports failures', async () => {
  const r = await run('sh', ['-c', 'echo out; echo err >&2']);
  assert.equal(r.stdout, 'out\n');
  assert.equal(r.stderr, 'err\n');
  await assert.rejects(run('sh', ['-c', 'echo bad >&2; exit 3']), /exited with 3: bad/);
  assert.equal((await run('sh', ['-c', 'exit 4'], { check: false })).code, 4);
});
