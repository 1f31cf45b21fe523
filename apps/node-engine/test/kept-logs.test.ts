/**
 * The keeper of ended instances' logs (kept-logs.ts) on a real directory with a fake clock:
 * retention, the per-instance cap (newest part, cut at a line), the total cap (oldest ended
 * first), what a restart finds, and a damaged index.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readLines } from '@oak/runtimes';
import { tmpDir } from '@oak/testkit';
import type { TmpDir } from '@oak/testkit';
import { KeptLogs, droppedReason, fileNameOf, parseIndex } from '../src/kept-logs.ts';
import { parseRetention } from '../src/flags.ts';

const dirs: TmpDir[] = [];
after(async () => {
  for (const d of dirs) await d.remove();
});

async function fresh(): Promise<string> {
  const d = await tmpDir('oak-kept');
  dirs.push(d);
  return join(d.path, 'kept-logs');
}

class Clock {
  t = Date.UTC(2026, 0, 1, 12, 0, 0);
  now = (): number => this.t;
}

/** a log file at the keeper's incoming path, as a driver's stop({keepLog}) leaves it */
async function incoming(k: KeptLogs, id: string, text: string): Promise<void> {
  await writeFile(k.incomingPath(id), text);
}

async function linesOf(path: string, tail?: number): Promise<string[]> {
  const out: string[] = [];
  for await (const l of readLines(path, tail === undefined ? {} : { tail })) out.push(l);
  return out;
}

test('kept for the retention period, then dropped with the reason and the time', async () => {
  const clock = new Clock();
  const dir = await fresh();
  const k = new KeptLogs({ dir, retentionMs: 3_600_000, now: clock.now });
  await k.load();
  await incoming(k, 'job.instance.0', 'hello\nlast words\n');
  const ended = clock.t;
  const kept = await k.take('job.instance.0', 'FAILED', ended);
  assert.equal(kept?.bytes, 17);
  const found = k.lookup('job.instance.0');
  assert.equal(found.kind, 'kept');
  assert.deepEqual(await linesOf(found.kind === 'kept' ? found.path : ''), ['hello', 'last words']);
  assert.equal((await readdir(dir)).some((f) => f.startsWith('incoming-')), false, 'the incoming file was taken');

  clock.t += 3_599_000;
  assert.equal(await k.sweep(), ended + 3_600_000, 'the next expiry');
  assert.equal(k.lookup('job.instance.0').kind, 'kept');
  clock.t += 1000;
  assert.equal(await k.sweep(), undefined);
  const gone = k.lookup('job.instance.0');
  assert.equal(gone.kind, 'dropped');
  if (gone.kind !== 'dropped') return;
  assert.deepEqual(gone.drop, { id: 'job.instance.0', ended_at: ended, dropped_at: clock.t, reason: 'expired' });
  assert.equal(droppedReason(gone.drop, 'w1', k), 'the logs of job.instance.0 (ended 2026-01-01T12:00:00Z) were dropped on worker w1 at 2026-01-01T13:00:00Z: this worker keeps the logs of ended instances for 1 h');
  assert.deepEqual((await readdir(dir)).sort(), ['index.json'], 'the file went');
  assert.equal(k.lookup('other.instance.1').kind, 'unknown');
});

test('the per-instance cap keeps the newest part, cut at a line, with a note', async () => {
  const k = new KeptLogs({ dir: await fresh(), perInstanceBytes: 100 });
  await k.load();
  const lines = Array.from({ length: 50 }, (_, i) => `line ${String(i).padStart(2, '0')}`);
  await incoming(k, 'big.instance.0', `${lines.join('\n')}\n`);
  const kept = await k.take('big.instance.0', 'COMPLETED', Date.now());
  assert.ok(kept);
  const found = k.lookup('big.instance.0');
  assert.ok(found.kind === 'kept');
  const got = await linesOf(found.path);
  assert.match(got[0] ?? '', /^# oak: the first \d+ bytes of this log were dropped \(at most 100 bytes are kept per ended instance\)$/);
  const rest = got.slice(1);
  // whole lines only, the last ones, and no more than the cap
  assert.deepEqual(rest, lines.slice(-rest.length));
  assert.ok(rest.length >= 10 && rest.join('\n').length + 1 <= 100, `${rest.length} lines`);
  assert.equal(kept.cut, 50 * 8 - rest.length * 8);
  assert.deepEqual(await linesOf(found.path, 2), ['line 48', 'line 49'], 'tail works on a kept log');
});

test('the total cap drops the logs of the instances that ended first', async () => {
  const clock = new Clock();
  const k = new KeptLogs({ dir: await fresh(), totalBytes: 250, perInstanceBytes: 1000, now: clock.now });
  await k.load();
  const chunk = `${'x'.repeat(99)}\n`;
  for (const [i, endedAgo] of [[0, 30], [1, 10], [2, 20]] as const) {
    await incoming(k, `j.instance.${i}`, chunk);
    await k.take(`j.instance.${i}`, 'FAILED', clock.t - endedAgo * 1000);
  }
  // 300 bytes > 250: instance 0 (ended 30 s ago, the first) goes, not 2 (taken last but ended before 1)
  assert.deepEqual(k.list().map((x) => x.id), ['j.instance.2', 'j.instance.1']);
  assert.equal(k.bytes, 200);
  const d = k.lookup('j.instance.0');
  assert.ok(d.kind === 'dropped' && d.drop.reason === 'total_cap');
  assert.match(droppedReason(d.drop, 'w', k), /keeps at most 0 MB of logs of ended instances, and newer ones needed the room$/);
  // one log over the whole cap alone: the newest is dropped too, nothing is over the cap
  const k2 = new KeptLogs({ dir: await fresh(), totalBytes: 50, perInstanceBytes: 1000 });
  await k2.load();
  await incoming(k2, 'a.instance.0', chunk);
  assert.equal(await k2.take('a.instance.0', 'FAILED', Date.now()), undefined);
  assert.equal(k2.bytes, 0);
});

test('a NodeEngine restart finds what was kept; the clock goes on from the end time', async () => {
  const clock = new Clock();
  const dir = await fresh();
  const k = new KeptLogs({ dir, retentionMs: 60_000, now: clock.now });
  await k.load();
  await incoming(k, 'a.instance.0', 'one\n');
  await k.take('a.instance.0', 'COMPLETED', clock.t);
  await incoming(k, 'b.instance.3', 'two\n');
  await k.take('b.instance.3', 'FAILED', clock.t - 50_000);
  clock.t += 20_000;
  await k.sweep(); // b expires (ended 70 s ago)
  // a crash left a half-moved file and a foreign file: they go at the next start
  await writeFile(join(dir, 'incoming-x.log'), 'half');
  await writeFile(join(dir, 'stray.txt'), 'x');

  const again = new KeptLogs({ dir, retentionMs: 60_000, now: clock.now });
  await again.load();
  const a = again.lookup('a.instance.0');
  assert.ok(a.kind === 'kept');
  assert.equal(a.log.status, 'COMPLETED');
  assert.deepEqual(await linesOf(a.path), ['one']);
  const b = again.lookup('b.instance.3');
  assert.ok(b.kind === 'dropped' && b.drop.reason === 'expired', 'what was dropped is remembered across the restart');
  assert.deepEqual((await readdir(dir)).sort(), ['index.json', fileNameOf('a.instance.0')].sort());
  clock.t += 40_000;
  await again.sweep();
  assert.equal(again.lookup('a.instance.0').kind, 'dropped');
});

test('a damaged or hostile index loses only its bad entries; a listed file that is missing is said so', async () => {
  const dir = await fresh();
  const k0 = new KeptLogs({ dir });
  await k0.load();
  await incoming(k0, 'ok.instance.0', 'fine\n');
  await k0.take('ok.instance.0', 'FAILED', Date.now());
  const idx = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { kept: unknown[]; dropped: unknown[] };
  idx.kept.push(
    { id: '../../etc/passwd', status: 'FAILED', ended_at: Date.now(), bytes: 1, cut: 0 },
    { id: 'x'.repeat(10_000), status: 'FAILED', ended_at: Date.now(), bytes: 1, cut: 0 },
    { id: 'neg.instance.0', status: 'FAILED', ended_at: -5, bytes: 1, cut: 0 },
    'nonsense',
    null,
  );
  idx.dropped.push({ id: 'd.instance.0', ended_at: 1, dropped_at: Date.now(), reason: 'because' });
  await writeFile(join(dir, 'index.json'), JSON.stringify(idx));
  const k = new KeptLogs({ dir });
  await k.load();
  assert.deepEqual(k.list().map((x) => x.id), ['ok.instance.0']);
  // the path-like id was only a name: its (hashed) file did not exist, so it is "missing", and nothing outside the dir was touched
  const p = k.lookup('../../etc/passwd');
  assert.ok(p.kind === 'dropped' && p.drop.reason === 'missing');
  assert.equal(k.lookup('d.instance.0').kind, 'unknown');
  assert.deepEqual(parseIndex('garbage'), { v: 1, kept: [], dropped: [] });
  // not JSON at all: starts empty, with a warning
  await writeFile(join(dir, 'index.json'), '{nope');
  const warnings: string[] = [];
  const k2 = new KeptLogs({ dir, warn: (m) => warnings.push(m) });
  await k2.load();
  assert.equal(k2.list().length, 0);
  assert.match(warnings[0] ?? '', /the index could not be read/);
  // an id over 512 characters is never taken
  await writeFile(k2.incomingPath('y'.repeat(600)), 'z\n');
  assert.equal(await k2.take('y'.repeat(600), 'FAILED', Date.now()), undefined);
});

test('retention 0 keeps nothing', async () => {
  const k = new KeptLogs({ dir: await fresh(), retentionMs: 0 });
  await k.load();
  await incoming(k, 'a.instance.0', 'x\n');
  assert.equal(await k.take('a.instance.0', 'FAILED', Date.now()), undefined);
  assert.equal(k.lookup('a.instance.0').kind, 'unknown');
});

test('--log-retention durations', () => {
  assert.equal(parseRetention('24h'), 86_400_000);
  assert.equal(parseRetention('90m'), 5_400_000);
  assert.equal(parseRetention('3600s'), 3_600_000);
  assert.equal(parseRetention('7d'), 604_800_000);
  assert.equal(parseRetention('0'), 0);
  for (const bad of ['', '5', '-1h', '1.5h', '1w', '366d', '99999999999d', 'h', '1h ']) assert.equal(parseRetention(bad.trimEnd() === bad ? bad : `${bad}x`), undefined, bad);
});
