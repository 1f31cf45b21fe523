/**
 * Fleet upgrade rollouts (issue 14), the pure part: which workers a rollout takes and in which
 * batches (planRollout), and one step of a running rollout over what the root observes of its
 * workers (stepRollout). No I/O and no clock of its own: the time comes in, the new state and the
 * commands to send come out; the shell (shell.ts) persists the state before it sends anything.
 *
 * A batch is healthy when each of its workers re-registered with the new version (a new
 * connection nonce), said `done` for this rollout, reported after the command went out, and still
 * runs every instance it ran when its batch started. The first worker that fails (says failed or
 * refused, cannot upgrade itself, or is not healthy within the health timeout) stops the rollout:
 * every worker of that batch that may have changed gets a rollback to its previous version, later
 * batches are not touched.
 */
import type { RolloutDoc, RolloutWorker, WorkerUpgradeCommand, WorkerUpgradeState } from '@oak/contracts';

/** what the root knows of one worker now (its cluster's last aggregate, the root's instances) */
export interface WorkerObservation {
  /** its cluster is connected and lists the worker */
  connected: boolean;
  version?: string | undefined;
  conn?: string | undefined;
  /** ms since the epoch of the report the cluster last had from it */
  reported_at?: number | undefined;
  upgrade?: WorkerUpgradeState | undefined;
  self_upgrade_blocker?: string | null | undefined;
  /** names (job.instance.N) of the instances RUNNING on it, per the root's store */
  running: string[];
}

export type Observe = (workerId: string) => WorkerObservation | undefined;

export type FleetEffect = { type: 'send'; cluster_id: string; worker_id: string; command: WorkerUpgradeCommand };

/** a worker a rollout may take */
export interface Candidate {
  id: string;
  name: string;
  cluster_id: string;
  cluster_name: string;
  version: string;
  arch: string | undefined;
}

export interface PlanInput {
  id: string;
  artifact: RolloutDoc['artifact'];
  candidates: Candidate[];
  cluster: string | null;
  batch_size: number;
  health_timeout_s: number;
  now: number;
  by: string | null;
}

/** Why a rollout cannot start (no worker to upgrade). */
export class NothingToUpgradeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NothingToUpgradeError';
  }
}

export function planRollout(p: PlanInput): RolloutDoc {
  const sorted = [...p.candidates].sort((a, b) => a.cluster_name.localeCompare(b.cluster_name) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  const workers: RolloutWorker[] = [];
  let n = 0;
  for (const c of sorted) {
    const base = { id: c.id, name: c.name, cluster_id: c.cluster_id, cluster_name: c.cluster_name, from_version: c.version, instances: [], conn_before: null, sent_at: null, last_sent_at: null, done_at: null };
    if (c.arch !== undefined && c.arch !== p.artifact.arch) {
      workers.push({ ...base, batch: 0, phase: 'skipped', detail: `the worker is linux-${c.arch}, the artifact linux-${p.artifact.arch}` });
      continue;
    }
    if (c.version === p.artifact.version) {
      workers.push({ ...base, batch: 0, phase: 'skipped', detail: `already runs ${c.version}` });
      continue;
    }
    workers.push({ ...base, batch: Math.floor(n / p.batch_size) + 1, phase: 'pending', detail: '' });
    n++;
  }
  if (n === 0) {
    throw new NothingToUpgradeError(
      sorted.length === 0
        ? `no connected worker${p.cluster !== null ? ` in cluster ${p.cluster}` : ''} to upgrade`
        : `no worker to upgrade: ${workers.map((w) => `${w.name}: ${w.detail}`).join('; ').slice(0, 800)}`,
    );
  }
  const at = new Date(p.now).toISOString();
  return {
    id: p.id, status: 'running', artifact: p.artifact, cluster: p.cluster, batch_size: p.batch_size, health_timeout_s: p.health_timeout_s,
    current_batch: 0, batches: Math.ceil(n / p.batch_size), outcome: null, failure: null, workers, created_at: at, created_by: p.by, updated_at: at,
  };
}

export interface StepOptions {
  /** a command the worker says nothing about is sent again after this long (default 10 s) */
  resendMs?: number;
}

export interface StepResult {
  rollout: RolloutDoc;
  effects: FleetEffect[];
  /** the state changed (persist it before carrying out the effects) */
  changed: boolean;
}

const ours = (r: RolloutDoc, u: WorkerUpgradeState | undefined, action: 'upgrade' | 'rollback'): WorkerUpgradeState | undefined =>
  u !== undefined && u.rollout_id === r.id && u.action === action ? u : undefined;

/** what still keeps a worker of the running batch from being healthy ('' = healthy) */
export function unhealthyBecause(r: RolloutDoc, w: RolloutWorker, o: WorkerObservation | undefined): string {
  if (o === undefined || !o.connected) return 'it is not connected';
  const u = ours(r, o.upgrade, 'upgrade');
  if (o.version !== r.artifact.version) return `it runs ${o.version ?? 'an unknown version'}${u ? ` (${u.phase}${u.detail ? `: ${u.detail}` : ''})` : ''}`;
  if (w.conn_before !== null && o.conn === w.conn_before) return 'it has not restarted';
  if (u?.phase !== 'done') return `it has not confirmed the upgrade${u ? ` (${u.phase})` : ''}`;
  if (w.sent_at !== null && (o.reported_at ?? 0) <= w.sent_at) return 'it has not reported since';
  const gone = w.instances.filter((i) => !o.running.includes(i));
  if (gone.length > 0) return `instance${gone.length > 1 ? 's' : ''} ${gone.slice(0, 5).join(', ')} no longer RUNNING on it`;
  return '';
}

export function stepRollout(input: RolloutDoc, observe: Observe, now: number, opts: StepOptions = {}): StepResult {
  if (input.status !== 'running') return { rollout: input, effects: [], changed: false };
  const resendMs = opts.resendMs ?? 10_000;
  const r: RolloutDoc = { ...input, workers: input.workers.map((w) => ({ ...w, instances: [...w.instances] })) };
  const effects: FleetEffect[] = [];
  let changed = false;
  const set = (w: RolloutWorker, patch: Partial<RolloutWorker>): void => {
    Object.assign(w, patch);
    changed = true;
  };
  const send = (w: RolloutWorker, command: WorkerUpgradeCommand): void => {
    effects.push({ type: 'send', cluster_id: w.cluster_id, worker_id: w.id, command });
    set(w, { last_sent_at: now });
  };
  const upgradeCmd = (): WorkerUpgradeCommand => ({ rollout_id: r.id, action: 'upgrade', version: r.artifact.version, sha256: r.artifact.sha256, size: r.artifact.size });
  const rollbackCmd = (w: RolloutWorker): WorkerUpgradeCommand => ({ rollout_id: r.id, action: 'rollback', version: w.from_version });
  const timedOut = (w: RolloutWorker): boolean => w.sent_at !== null && now - w.sent_at > r.health_timeout_s * 1000;
  const batch = (): RolloutWorker[] => r.workers.filter((w) => w.batch === r.current_batch && r.current_batch > 0);

  // ---- rolling back the failed batch
  if (r.failure !== null) {
    for (const w of batch()) {
      if (w.phase !== 'rolling_back') continue;
      const o = observe(w.id);
      const u = ours(r, o?.upgrade, 'rollback');
      if (o?.connected === true && o.version === w.from_version && u?.phase === 'done') set(w, { phase: 'rolled_back', detail: `back on ${w.from_version}`, done_at: now });
      else if (o?.connected === true && u !== undefined && (u.phase === 'failed' || u.phase === 'refused')) set(w, { phase: 'rollback_failed', detail: u.detail, done_at: now });
      else if (timedOut(w)) set(w, { phase: 'rollback_failed', detail: `not back on ${w.from_version} within ${r.health_timeout_s} s (${o?.connected === true ? `it runs ${o.version ?? '?'}` : 'not connected'})`, done_at: now });
      else if (u === undefined && (w.last_sent_at === null || now - w.last_sent_at >= resendMs)) send(w, rollbackCmd(w));
    }
    if (!batch().some((w) => w.phase === 'rolling_back')) {
      const back = batch().filter((w) => w.phase === 'rolled_back').map((w) => w.name);
      const stuck = batch().filter((w) => w.phase === 'rollback_failed').map((w) => `${w.name} (${w.detail})`);
      changed = true;
      r.status = 'failed';
      r.outcome = `stopped at batch ${r.current_batch} of ${r.batches}: ${r.failure}` +
        (back.length > 0 ? `; rolled back ${back.join(', ')}` : '') + (stuck.length > 0 ? `; rollback failed on ${stuck.join(', ')}` : '');
    }
    return finish(r, input, effects, changed, now);
  }

  // ---- the running batch: healthy, failed or waiting
  for (const w of batch()) {
    if (w.phase !== 'sent') continue;
    const o = observe(w.id);
    const u = ours(r, o?.upgrade, 'upgrade');
    if (o?.connected === true && u !== undefined && (u.phase === 'failed' || u.phase === 'refused')) {
      set(w, { phase: 'failed', detail: `${u.phase === 'refused' ? 'refused' : 'failed'}: ${u.detail}`, done_at: now });
      continue;
    }
    const why = unhealthyBecause(r, w, o);
    if (why === '') set(w, { phase: 'healthy', detail: `runs ${r.artifact.version}`, done_at: now });
    else if (timedOut(w)) set(w, { phase: 'failed', detail: `not healthy within ${r.health_timeout_s} s: ${why}`, done_at: now });
    else if (u === undefined && (w.last_sent_at === null || now - w.last_sent_at >= resendMs)) send(w, upgradeCmd());
  }
  const failed = batch().filter((w) => w.phase === 'failed');
  if (failed.length > 0) {
    const first = failed[0] as RolloutWorker;
    r.failure = `${first.name} ${first.detail}`;
    changed = true;
    for (const w of batch()) {
      // a worker that refused (or could not upgrade itself) never changed; the others go back
      if (w.phase === 'failed' && /^refused: /.test(w.detail)) continue;
      if (w.phase === 'sent' || w.phase === 'healthy' || w.phase === 'failed') {
        const o = observe(w.id);
        set(w, { phase: 'rolling_back', detail: w.phase === 'failed' ? w.detail : `rolling back (${w.phase === 'healthy' ? 'it was healthy' : 'the batch failed'})`, conn_before: o?.conn ?? null, sent_at: now, last_sent_at: null });
        send(w, rollbackCmd(w));
      }
    }
    for (const w of r.workers) if (w.phase === 'pending') set(w, { phase: 'unchanged', detail: `not reached: the rollout stopped at batch ${r.current_batch}` });
    return finish(r, input, effects, changed, now);
  }
  if (batch().some((w) => w.phase === 'sent')) return finish(r, input, effects, changed, now);

  // ---- the next batch (or the end)
  const next = r.current_batch + 1;
  if (next > r.batches) {
    r.status = 'succeeded';
    const up = r.workers.filter((w) => w.phase === 'healthy').length;
    r.outcome = `${up} worker${up === 1 ? '' : 's'} upgraded to ${r.artifact.version}`;
    return finish(r, input, effects, true, now);
  }
  r.current_batch = next;
  changed = true;
  // a worker that cannot upgrade itself (not installed by oak install, inside oakd) fails its batch
  // before anything is sent: nothing of the batch changes, the rollout stops
  const blocked = batch().map((w) => ({ w, why: observe(w.id)?.self_upgrade_blocker })).filter((b) => typeof b.why === 'string' && b.why !== '');
  if (blocked.length > 0) {
    for (const { w, why } of blocked) set(w, { phase: 'failed', detail: `refused: cannot upgrade itself: ${String(why)}`, done_at: now });
    for (const w of batch()) if (w.phase === 'pending') set(w, { phase: 'unchanged', detail: 'not sent: another worker of its batch cannot upgrade itself' });
    for (const w of r.workers) if (w.phase === 'pending') set(w, { phase: 'unchanged', detail: `not reached: the rollout stopped at batch ${r.current_batch}` });
    const first = blocked[0] as { w: RolloutWorker };
    r.failure = `${first.w.name} ${first.w.detail}`;
    r.status = 'failed';
    r.outcome = `stopped at batch ${r.current_batch} of ${r.batches}: ${r.failure}; nothing was changed in this batch`;
    return finish(r, input, effects, true, now);
  }
  for (const w of batch()) {
    const o = observe(w.id);
    set(w, { phase: 'sent', detail: '', instances: o?.running ?? [], conn_before: o?.conn ?? null, sent_at: now, last_sent_at: null });
    send(w, upgradeCmd());
  }
  return finish(r, input, effects, changed, now);
}

function finish(r: RolloutDoc, input: RolloutDoc, effects: FleetEffect[], changed: boolean, now: number): StepResult {
  if (changed) r.updated_at = new Date(now).toISOString();
  return { rollout: changed ? r : input, effects, changed };
}
