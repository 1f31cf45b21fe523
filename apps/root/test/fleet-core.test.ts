/** The pure fleet rollout (issue 14): batches, health, failure, rollback, resend, blockers. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RolloutDoc, WorkerUpgradeState } from '@oak/contracts';
import { NothingToUpgradeError, planRollout, stepRollout, type Candidate, type FleetEffect, type WorkerObservation } from '../src/fleet/core.ts';

const ART = { sha256: 'a'.repeat(64), version: '0.2.0', arch: 'amd64', size: 1000 };
const cand = (name: string, extra: Partial<Candidate> = {}): Candidate => ({ id: `id-${name}`, name, cluster_id: 'c1', cluster_name: 'east', version: '0.1.0', arch: 'amd64', ...extra });
const plan = (names: string[], batch = 1, extra: Partial<Candidate>[] = []): RolloutDoc =>
  planRollout({ id: 'r1', artifact: ART, candidates: names.map((n, i) => cand(n, extra[i] ?? {})), cluster: null, batch_size: batch, health_timeout_s: 30, now: 0, by: 'u1' });

/** a small fleet the test drives: what each worker reports */
function fleet(names: string[]): { obs: Map<string, WorkerObservation>; observe: (id: string) => WorkerObservation | undefined } {
  const obs = new Map<string, WorkerObservation>();
  for (const n of names) obs.set(`id-${n}`, { connected: true, version: '0.1.0', conn: `c-${n}-1`, reported_at: 0, running: [`job${n}.instance.0`] });
  return { obs, observe: (id) => obs.get(id) };
}
const state = (action: 'upgrade' | 'rollback', version: string, phase: WorkerUpgradeState['phase'], detail = ''): WorkerUpgradeState => ({ rollout_id: 'r1', action, version, phase, detail, at: 1 });
const sends = (e: FleetEffect[]): string[] => e.map((x) => `${x.worker_id}:${x.command.action}:${x.command.version}`);

test('plan: sorted by cluster and name, batches of N, workers on the target version or another arch are skipped', () => {
  const r = planRollout({
    id: 'r1', artifact: ART, cluster: null, batch_size: 2, health_timeout_s: 30, now: 5, by: null,
    candidates: [cand('c'), cand('a'), cand('b', { version: '0.2.0' }), cand('d', { arch: 'arm64' }), cand('e', { cluster_name: 'alpha', cluster_id: 'c0' })],
  });
  assert.deepEqual(r.workers.map((w) => [w.name, w.batch, w.phase]), [['e', 1, 'pending'], ['a', 1, 'pending'], ['b', 0, 'skipped'], ['c', 2, 'pending'], ['d', 0, 'skipped']]);
  assert.equal(r.batches, 2);
  assert.throws(() => plan([], 1), NothingToUpgradeError);
  assert.throws(() => plan(['x'], 1, [{ version: '0.2.0' }]), /already runs 0\.2\.0/);
});

test('a healthy batch needs the new version, a restart, the confirmation, a report after the command and the same instances RUNNING', () => {
  const f = fleet(['a', 'b']);
  let s = stepRollout(plan(['a', 'b']), f.observe, 1000);
  assert.deepEqual(sends(s.effects), ['id-a:upgrade:0.2.0']);
  assert.equal(s.rollout.current_batch, 1);
  assert.deepEqual(s.rollout.workers[0]?.instances, ['joba.instance.0']);
  const a = f.obs.get('id-a') as WorkerObservation;
  // new version but the same process: not yet
  Object.assign(a, { version: '0.2.0', upgrade: state('upgrade', '0.2.0', 'done'), reported_at: 2000 });
  s = stepRollout(s.rollout, f.observe, 2000);
  assert.equal(s.rollout.workers[0]?.phase, 'sent');
  Object.assign(a, { conn: 'c-a-2' });
  s = stepRollout(s.rollout, f.observe, 2100);
  assert.equal(s.rollout.workers[0]?.phase, 'healthy');
  // the same step starts the next batch
  assert.deepEqual(sends(s.effects), ['id-b:upgrade:0.2.0']);
  assert.equal(s.rollout.current_batch, 2);
  const b = f.obs.get('id-b') as WorkerObservation;
  Object.assign(b, { version: '0.2.0', conn: 'c-b-2', upgrade: state('upgrade', '0.2.0', 'done'), reported_at: 3000 });
  s = stepRollout(s.rollout, f.observe, 3000);
  assert.equal(s.rollout.status, 'succeeded');
  assert.equal(s.rollout.outcome, '2 workers upgraded to 0.2.0');
  assert.equal(stepRollout(s.rollout, f.observe, 9e9).changed, false, 'a finished rollout does nothing');
});

test('one worker failing its health check stops the rollout and rolls its batch back; later batches are not touched', () => {
  const f = fleet(['a', 'b', 'c']);
  let s = stepRollout(plan(['a', 'b', 'c'], 2), f.observe, 1000);
  assert.deepEqual(sends(s.effects), ['id-a:upgrade:0.2.0', 'id-b:upgrade:0.2.0']);
  Object.assign(f.obs.get('id-a') as WorkerObservation, { version: '0.2.0', conn: 'c-a-2', upgrade: state('upgrade', '0.2.0', 'done'), reported_at: 2000 });
  Object.assign(f.obs.get('id-b') as WorkerObservation, { version: '0.2.0', conn: 'c-b-2', upgrade: state('upgrade', '0.2.0', 'failed', 'the upgrade check /x failed (exit 1)'), reported_at: 2000 });
  s = stepRollout(s.rollout, f.observe, 2000);
  assert.deepEqual(sends(s.effects).sort(), ['id-a:rollback:0.1.0', 'id-b:rollback:0.1.0']);
  assert.deepEqual(s.rollout.workers.map((w) => w.phase), ['rolling_back', 'rolling_back', 'unchanged']);
  assert.match(s.rollout.failure ?? '', /^b failed: the upgrade check/);
  assert.equal(s.rollout.status, 'running');
  for (const n of ['a', 'b']) Object.assign(f.obs.get(`id-${n}`) as WorkerObservation, { version: '0.1.0', conn: `c-${n}-3`, upgrade: state('rollback', '0.1.0', 'done') });
  s = stepRollout(s.rollout, f.observe, 3000);
  assert.equal(s.rollout.status, 'failed');
  assert.deepEqual(s.rollout.workers.map((w) => w.phase), ['rolled_back', 'rolled_back', 'unchanged']);
  assert.match(s.rollout.outcome ?? '', /^stopped at batch 1 of 2: b failed: .*; rolled back a, b$/);
});

test('not healthy within the timeout: the reason says what is missing (an instance gone); a silent worker gets the command again', () => {
  const f = fleet(['a']);
  let s = stepRollout(plan(['a']), f.observe, 0);
  s = stepRollout(s.rollout, f.observe, 5000, { resendMs: 10_000 });
  assert.equal(s.effects.length, 0);
  s = stepRollout(s.rollout, f.observe, 10_000, { resendMs: 10_000 });
  assert.deepEqual(sends(s.effects), ['id-a:upgrade:0.2.0'], 'resent while it says nothing');
  Object.assign(f.obs.get('id-a') as WorkerObservation, { version: '0.2.0', conn: 'c-a-2', upgrade: state('upgrade', '0.2.0', 'done'), reported_at: 12_000, running: [] });
  s = stepRollout(s.rollout, f.observe, 20_000);
  assert.equal(s.effects.length, 0, 'not resent once it answered');
  assert.equal(s.rollout.workers[0]?.phase, 'sent');
  s = stepRollout(s.rollout, f.observe, 30_001);
  assert.match(s.rollout.failure ?? '', /not healthy within 30 s: instance joba\.instance\.0 no longer RUNNING on it/);
  assert.deepEqual(sends(s.effects), ['id-a:rollback:0.1.0']);
  // it never comes back: the rollback fails after the timeout too, and the rollout ends
  f.obs.set('id-a', { connected: false, running: [] });
  s = stepRollout(s.rollout, f.observe, 70_000);
  assert.equal(s.rollout.status, 'failed');
  assert.match(s.rollout.outcome ?? '', /rollback failed on a \(not back on 0\.1\.0 within 30 s \(not connected\)\)/);
});

test('a worker that cannot upgrade itself fails its batch before anything is sent', () => {
  const f = fleet(['a', 'b']);
  (f.obs.get('id-b') as WorkerObservation).self_upgrade_blocker = 'it runs inside oakd (1-DOC)';
  const s = stepRollout(plan(['a', 'b'], 2), f.observe, 0);
  assert.deepEqual(s.effects, []);
  assert.equal(s.rollout.status, 'failed');
  assert.deepEqual(s.rollout.workers.map((w) => w.phase), ['unchanged', 'failed']);
  assert.match(s.rollout.outcome ?? '', /b refused: cannot upgrade itself: it runs inside oakd \(1-DOC\); nothing was changed/);
});

test('a worker that refuses the command is not rolled back (it never changed); the others of its batch are', () => {
  const f = fleet(['a', 'b']);
  let s = stepRollout(plan(['a', 'b'], 2), f.observe, 0);
  Object.assign(f.obs.get('id-a') as WorkerObservation, { upgrade: state('upgrade', '0.2.0', 'refused', 'the artifact is not what the root announced (sha256 mismatch)') });
  s = stepRollout(s.rollout, f.observe, 100);
  assert.deepEqual(sends(s.effects), ['id-b:rollback:0.1.0']);
  assert.deepEqual(s.rollout.workers.map((w) => w.phase), ['failed', 'rolling_back']);
});
