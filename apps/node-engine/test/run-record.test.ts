/**
 * The run record (issue 10): what a local restart after re-adoption needs beyond the deploy
 * command, on disk. Round trip, and hostile or broken records refused whole with a reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpDir } from '@oak/testkit';
import type { InstanceSpec } from '@oak/runtimes';
import { MAX_RUN_RECORD_BYTES, RUN_RECORD, needsRunRecord, readRunRecord, restartExtras, writeRunRecord } from '../src/run-record.ts';

function spec(extra: Partial<InstanceSpec>): InstanceSpec {
  return { id: 'a.b.c.d.instance.0', job_name: 'a.b.c.d', instance_number: 0, virtualization: 'process', code: '/bin/true', env: [], ports: [], one_shot: false, labels: {}, ...extra };
}

test('a record round-trips files and GPUs, is written 0600 and atomically; nothing needed, nothing written', async () => {
  const d = await tmpDir('oak-rr');
  try {
    assert.equal(needsRunRecord(spec({})), false);
    const s = spec({ files: [{ source: join(d.path, '0'), target: 'etc/app.conf', mode: 0o640 }, { source: join(d.path, '1'), target: 'x', mode: 0o755 }], gpus: [{ index: 1, uuid: 'GPU-0a1b' }] });
    assert.equal(needsRunRecord(s), true);
    await writeRunRecord(d.path, s);
    assert.equal((await stat(join(d.path, RUN_RECORD))).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(d.path), [RUN_RECORD], 'no temporary file left');
    const r = await readRunRecord(d.path);
    assert.ok(r.ok);
    assert.deepEqual(r.record, { files: s.files, gpus: s.gpus });
    await writeRunRecord(d.path, spec({ gpus: [{ index: 0, uuid: '' }] }));
    assert.deepEqual(await readRunRecord(d.path), { ok: true, record: { gpus: [{ index: 0, uuid: '' }] } }, 'replaced');
  } finally {
    await d.remove();
  }
});

test('hostile or broken records are refused whole, with the reason', async () => {
  const d = await tmpDir('oak-rr');
  try {
    const put = (v: unknown): Promise<void> => writeFile(join(d.path, RUN_RECORD), typeof v === 'string' ? v : JSON.stringify(v));
    const refused = async (v: unknown, why: RegExp): Promise<void> => {
      await put(v);
      const r = await readRunRecord(d.path);
      assert.equal(r.ok, false, JSON.stringify(v).slice(0, 100));
      if (!r.ok) {
        assert.match(r.reason, why);
        assert.equal(r.missing, false);
      }
    };
    const f = (x: Record<string, unknown>): Record<string, unknown> => ({ source: join(d.path, '0'), target: 't', mode: 0o644, ...x });
    await refused('{', /not JSON/);
    await refused({ files: [] }, /version 1/);
    await refused({ v: 2 }, /version 1/);
    await refused({ v: 1, files: [f({ source: '/etc/shadow' })] }, /files\[0\] does not lie in/);
    await refused({ v: 1, files: [f({ source: join(d.path, '..', 'x', '0') })] }, /does not lie in/);
    await refused({ v: 1, files: [f({ source: join(d.path, '0', '..', '..', 'etc') })] }, /does not lie in/);
    await refused({ v: 1, files: [f({ source: `${d.path}/${RUN_RECORD}` })] }, /does not lie in/);
    await refused({ v: 1, files: [f({}), f({ target: '' })] }, /files\[1\] has no usable target/);
    await refused({ v: 1, files: [f({ target: 'a\0b' })] }, /target/);
    await refused({ v: 1, files: [f({ mode: -1 })] }, /mode/);
    await refused({ v: 1, files: [f({ mode: '0644' })] }, /mode/);
    await refused({ v: 1, files: Array.from({ length: 33 }, () => f({})) }, /at most 32/);
    await refused({ v: 1, files: {} }, /not a list/);
    await refused({ v: 1, gpus: [{ index: 1.5, uuid: '' }] }, /gpus\[0\] has no usable index/);
    await refused({ v: 1, gpus: [{ index: 0, uuid: 'GPU-1;rm -rf /' }] }, /uuid/);
    await refused({ v: 1, gpus: [null] }, /index/);
    await refused(`{"v":1,"pad":"${'x'.repeat(MAX_RUN_RECORD_BYTES)}"}`, /bytes/);
  } finally {
    await d.remove();
  }
});

test('restartExtras: no record and nothing to keep is fine; no record beside fetched files or held GPUs is a reason', async () => {
  const d = await tmpDir('oak-rr');
  try {
    const gone = join(d.path, 'never-made');
    assert.deepEqual(await restartExtras(gone, false), { ok: true, record: {} });
    const held = await restartExtras(gone, true);
    assert.equal(held.ok, false);
    if (!held.ok) assert.match(held.reason, /no restart\.json .*holds GPUs/);
    await mkdir(join(d.path, 'i'));
    await writeFile(join(d.path, 'i', '0'), 'conf');
    const fetched = await restartExtras(join(d.path, 'i'), false);
    assert.equal(fetched.ok, false);
    if (!fetched.ok) assert.match(fetched.reason, /has fetched files/);
    await writeRunRecord(join(d.path, 'i'), spec({ files: [{ source: join(d.path, 'i', '0'), target: 'c', mode: 0o644 }] }));
    const ok = await restartExtras(join(d.path, 'i'), false);
    assert.ok(ok.ok && ok.record.files?.[0]?.target === 'c');
  } finally {
    await d.remove();
  }
});
