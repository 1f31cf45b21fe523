/**
 * Status intake, pure (issue 9; replaces placement.ts judgeStatus): what one instance_status
 * from a cluster does to the stored instance. The shell reads the row, asks judgeReport and
 * carries the verdict out (apply the patch; undeploy a stale copy there once; adopt: the row back
 * to the reporting cluster with the report's epoch, lost_at cleared, an undeploy to the
 * replacement's cluster; then a reconcile pass of the service).
 *
 * Identity of a copy: (cluster, epoch). A report with an epoch is about the stored placement only
 * when both match; a report without one (a cluster of before issue 9) by its cluster alone.
 */
import { TERMINAL_STATES } from '@oak/contracts';
import type { ClusterToRoot, DisconnectPolicy } from '@oak/contracts';
import type { InstanceRow } from '@oak/store';
import type { ReportVerdict } from './types.ts';

export type InstanceStatusReport = Extract<ClusterToRoot, { type: 'instance_status' }>;

export interface IntakeContext {
  /** the service's disconnect policy (policiesOf(sla, config).disconnect) */
  policy: Required<DisconnectPolicy>;
  /**
   * The row that replaces the reported one, when the replacement is another row (its `replaces`
   * = this number). Absent: the row itself, requeued and placed again, is the replacement.
   */
  replacement?: InstanceRow;
  now: number;
}

/** What a report from `clusterId` does to `row` (undefined: the root has no such instance). */
export function judgeReport(row: InstanceRow | undefined, clusterId: string, report: InstanceStatusReport, ctx: IntakeContext): ReportVerdict {
  const gone = report.status === 'UNDEPLOYED';
  if (!row) return gone ? { kind: 'ended' } : { kind: 'stale', reason: 'the root has no such instance' };
  const foreign = row.cluster_id !== clusterId;
  const oldEpoch = report.epoch !== undefined && report.epoch !== row.epoch;
  if (foreign || oldEpoch) {
    const adopt = adoption(row, clusterId, report, ctx);
    if (adopt) return adopt;
    // a stale copy that is gone already needs nothing more
    if (gone) return { kind: 'ended' };
    const reason = foreign
      ? `the instance is ${row.cluster_id === null ? 'not placed' : 'placed on another cluster'} now (epoch ${row.epoch})`
      : `this copy is of epoch ${String(report.epoch)}; the instance is at epoch ${row.epoch}`;
    return { kind: 'stale', reason };
  }
  if (TERMINAL_STATES.has(row.status)) {
    // a stopped instance (finished while its cluster was away) whose copy still runs there: it goes
    if (row.desired === 'stop' && !TERMINAL_STATES.has(report.status)) return { kind: 'stale', reason: 'the instance was stopped' };
    return { kind: 'ended' };
  }
  if (gone && row.desired === 'run') {
    // the root never asked for this: typically the late answer to an undeploy of the previous
    // copy on the same worker, overtaking the new copy's reports. Not an end: DEAD waits for the
    // next report (the copy runs: RUNNING) or for its deadline (it is gone: placed again).
    return patchOf(row, { ...report, status: 'DEAD', status_detail: `its cluster reported it UNDEPLOYED unasked${report.status_detail ? ` (${report.status_detail})` : ''}` });
  }
  return patchOf(row, report);
}

/**
 * The lost original is back (row requeued because this cluster was lost) and still alive: the
 * disconnect.reconcile policy says whether it stays (adopt) or its replacement does (undefined).
 * best_score keeps the original unless the replacement is RUNNING already.
 */
function adoption(row: InstanceRow, clusterId: string, report: InstanceStatusReport, ctx: IntakeContext): ReportVerdict | undefined {
  if (row.desired !== 'run' || row.lost_at === null || row.last_cluster_id !== clusterId || row.cluster_id === clusterId) return undefined;
  if (TERMINAL_STATES.has(report.status) || report.status === 'DEAD' || report.status === 'REQUESTED') return undefined;
  if (report.epoch !== undefined && report.epoch >= row.epoch) return undefined;
  const replacement = ctx.replacement ?? row;
  const policy = ctx.policy.reconcile;
  if (policy === 'keep_replacement') return undefined;
  if (policy === 'best_score' && replacement.status === 'RUNNING') return undefined;
  const why = policy === 'keep_original' ? 'keep_original' : `best_score: the replacement is ${replacement.status}`;
  return { kind: 'adopt', epoch: report.epoch ?? row.epoch, reason: `the lost copy came back ${report.status} (${why})` };
}

/** The fields the report changes; net: undefined = not said (kept), null = gone (cleared). */
function patchOf(row: InstanceRow, m: InstanceStatusReport): ReportVerdict {
  const patch: Extract<ReportVerdict, { kind: 'apply' }>['patch'] = {};
  if (row.status !== m.status) patch.status = m.status;
  if (row.status_detail !== m.status_detail) patch.status_detail = m.status_detail;
  if (row.worker_id !== m.worker_id) patch.worker_id = m.worker_id;
  if (m.publicip !== undefined && row.publicip !== m.publicip) patch.publicip = m.publicip;
  if (m.net !== undefined && !sameNet(row.net, m.net)) patch.net = m.net;
  // the copy's health and local restarts (issue 10): absent = no probe / none (a new copy starts at 0)
  const health = m.health ?? null;
  if (row.health !== health) patch.health = health;
  const restarts = m.restarts ?? 0;
  if (row.restarts !== restarts) patch.restarts = restarts;
  return Object.keys(patch).length === 0 ? { kind: 'same' } : { kind: 'apply', patch };
}

/** Field by field (key order and absent-vs-null optional fields do not matter). */
function sameNet(a: InstanceRow['net'], b: InstanceRow['net']): boolean {
  if (a === null || b === null) return a === b;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof typeof a>;
  for (const k of keys) if ((a[k] ?? null) !== (b[k] ?? null)) return false;
  return true;
}

/** the states on the way to RUNNING, after a placement: reports of them change no plan */
const PROGRESS_STATES: ReadonlySet<string> = new Set(['NODE_SCHEDULED', 'CREATING']);

/**
 * Whether an applied report was progress only: a desired=run row of the service's current version
 * moved on to NODE_SCHEDULED or CREATING (with the worker it was given), or to RUNNING when no
 * rollout is under way (`rolling` false) and the row replaces none, its health and restarts
 * unchanged. Such a report needs no reconcile pass of its service: no plan reacts to it (only a
 * rollout waits for a row to run), and the row's deadline is kept by the service's timer (set by
 * the pass that placed it) and the resync.
 */
export function fastPathStatus(row: InstanceRow, patch: Extract<ReportVerdict, { kind: 'apply' }>['patch'], serviceVersion: number, rolling = true): boolean {
  if (row.desired !== 'run' || row.service_version !== serviceVersion || row.lost_at !== null) return false;
  if (patch.status === undefined) return false;
  const progress = PROGRESS_STATES.has(patch.status) || (patch.status === 'RUNNING' && !rolling && row.replaces === null);
  return progress && patch.health === undefined && patch.restarts === undefined;
}

/** One queued report: who sent it, when it arrived (ms epoch), and what it folds in. */
export interface QueuedReport {
  clusterId: string;
  m: InstanceStatusReport;
  at: number;
  /** earlier progress reports of the same copy, folded into this one (oldest first) */
  passed?: QueuedReport[];
}

/** whether a report waits a moment for the next of its copy (progress, not the end of the way) */
export function holdsForNext(m: InstanceStatusReport): boolean {
  return PROGRESS_STATES.has(m.status);
}

const FOLDS_INTO: ReadonlySet<string> = new Set(['NODE_SCHEDULED', 'CREATING', 'RUNNING']);

/**
 * A service's queued reports with each progress report (NODE_SCHEDULED, CREATING) folded into
 * the next report of the same copy (cluster, job, number and epoch) when that one is progress or
 * RUNNING: applied in order, they would leave the row as the later one does, so one write is
 * enough, with the passed statuses kept for the history and the events. The later report keeps
 * the earlier one's public IP and network when it says nothing of them. Order is kept otherwise.
 */
export function foldProgress(list: readonly QueuedReport[]): QueuedReport[] {
  const out: (QueuedReport | undefined)[] = [];
  /** instance (job, number) -> its last report, when that may fold into a later one of its copy */
  const open = new Map<string, { copy: string; i: number }>();
  for (const r of list) {
    const inst = `${r.m.job_name}\u0000${r.m.instance_number}`;
    const copy = `${r.clusterId}\u0000${r.m.epoch ?? '-'}`;
    const o = open.get(inst);
    let cur = r;
    // a report of another copy of the same instance in between: no fold across it (order matters)
    if (o !== undefined && o.copy === copy && FOLDS_INTO.has(r.m.status)) {
      const prev = out[o.i]!;
      out[o.i] = undefined;
      const m = { ...r.m };
      if (m.publicip === undefined && prev.m.publicip !== undefined) m.publicip = prev.m.publicip;
      if (m.net === undefined && prev.m.net !== undefined) m.net = prev.m.net;
      const { passed = [], ...bare } = prev;
      cur = { ...r, m, passed: [...passed, bare, ...(r.passed ?? [])] };
    }
    open.delete(inst);
    if (holdsForNext(cur.m)) open.set(inst, { copy, i: out.length });
    out.push(cur);
  }
  return out.filter((r): r is QueuedReport => r !== undefined);
}
