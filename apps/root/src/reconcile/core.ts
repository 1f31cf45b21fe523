/**
 * The root's reconciler, pure (issue 9): for one service, the stored desired state (versions,
 * instance rows) and what the root knows of its clusters in, a plan out. No clock, store or
 * socket: `input.now` is the time, the shell (shell.ts) carries the plan out.
 *
 * One pass works on a projection of the rows (a copy that every planned action changes the way
 * the shell's store write will), so that the concerns below compose in one plan and a pass run
 * again on the state after its plan plans nothing new (idempotent):
 *
 *   1. lost       — rows on a cluster away longer than disconnect.lost_after_s: requeue or wait
 *   2. deadlines  — rows stuck in a transitional state on a connected cluster: requeue
 *   3. rollout    — rows of an older version: successors, predecessor stops, failure, outcome
 *   4. placement  — REQUESTED rows: pickCluster (avoiding last_cluster_id) or wait
 *   5. stopping   — desired=stop rows: undeploy once, resend, finish, purge
 *
 * Words used below. A *successor* is a row with `replaces` = the number of the row it replaces;
 * it is *in flight* while that predecessor is still desired=run. A *slot* is a desired=run row
 * that is not in flight (the service's replica count is the number of slots): a pass never
 * leaves more than slots + max_surge rows desired=run. *Current* rows run a version whose
 * fingerprint equals the service's current version's (ServiceVersionRow.fingerprint).
 *
 * What the shell's applier must do for the projection to hold (see `emit`, and the applier in
 * apps/root/test/reconcile-core.test.ts): place → status CLUSTER_SCHEDULED, cluster_id, epoch,
 * worker_id null, detail '' (deploy with the row's version's SLA); requeue → REQUESTED,
 * cluster_id/worker_id null, epoch + 1, last_cluster_id = from_cluster, lost_at = now if lost
 * else null, forget its `sent` entry (undeploy the old epoch on from_cluster if connected);
 * stop → desired stop, undeploy if placed and connected, then sent.undeploy_at = now (only when
 * sent); finish → UNDEPLOYED, instance_ip(_v6) and net null (released); create → addInstance
 * with service_version/replaces; rollback → a new version with to_version's SLA. `input.clusters`
 * must list every stored cluster, with `disconnected_since` for those that are down (after a root
 * start: the start time), else their rows are never declared lost.
 */
import { TERMINAL_STATES } from '@oak/contracts';
import type { DisconnectPolicy, InstanceState, Microservice, UpdatePolicy } from '@oak/contracts';
import { clusterSatisfies, compileConstraints, demandOf, pickCluster, reserveCluster, rigidnessOf, rttLookupOf } from '@oak/scheduler';
import type { ClusterCandidate, Demand, PickClusterOptions } from '@oak/scheduler';
import type { InstanceRow, ServiceVersionRow } from '@oak/store';
import type { Action, ClusterView, Plan, ReconcileConfig, ReconcileInput } from './types.ts';

/** The defaults (issue 9 brief); the shell may override them, tests do. */
export const defaultReconcileConfig: ReconcileConfig = {
  deadlines: { CLUSTER_SCHEDULED: 30_000, NODE_SCHEDULED: 60_000, CREATING: 600_000 },
  update: { max_surge: 1, max_unavailable: 0, health_grace_s: 0, progress_deadline_s: 120, auto_rollback: false },
  disconnect: { lost_after_s: 30, replace: true, reconcile: 'best_score' },
  undeployResendMs: 10_000,
  purgeAfterMs: 10 * 60_000,
};

export interface Policies {
  update: Required<UpdatePolicy>;
  disconnect: Required<DisconnectPolicy>;
}

/** The SLA's `update` and `disconnect` blocks over the configured defaults (max_surge + max_unavailable is at least 1). */
export function policiesOf(sla: Pick<Microservice, 'update' | 'disconnect'>, config: ReconcileConfig = defaultReconcileConfig): Policies {
  const update = { ...config.update, ...defined(sla.update) };
  if (update.max_surge + update.max_unavailable < 1) update.max_surge = 1;
  const disconnect = { ...config.disconnect, ...defined(sla.disconnect) };
  return { update, disconnect };
}

function defined<T extends object>(o: T | undefined): Partial<T> {
  if (!o) return {};
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Statuses in which a row belongs to its cluster (placed and not ended). */
export function holdsCluster(status: InstanceState): boolean {
  return !TERMINAL_STATES.has(status) && status !== 'REQUESTED';
}

/** The transitional states with a deadline; DEAD (its cluster reschedules it) counts as CLUSTER_SCHEDULED, CREATED as CREATING. */
function deadlineOf(status: InstanceState, d: ReconcileConfig['deadlines']): { state: keyof ReconcileConfig['deadlines']; ms: number } | undefined {
  switch (status) {
    case 'CLUSTER_SCHEDULED':
    case 'DEAD':
      return { state: 'CLUSTER_SCHEDULED', ms: d.CLUSTER_SCHEDULED };
    case 'NODE_SCHEDULED':
      return { state: 'NODE_SCHEDULED', ms: d.NODE_SCHEDULED };
    case 'CREATING':
    case 'CREATED':
      return { state: 'CREATING', ms: d.CREATING };
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// the pass: input, projection, and what the concerns add to the plan

/** A row of the projection; `virtual` rows are planned creates (no number yet, negative here). */
interface Draft extends InstanceRow {
  virtual: boolean;
  /** when an undeploy went out (input.sent, or a stop planned in this pass) */
  undeploy_at: number | undefined;
}

interface Pass {
  input: ReconcileInput;
  now: number;
  policies: Policies;
  oneShot: boolean;
  /** fingerprint by version number */
  fingerprints: Map<number, string>;
  current: ServiceVersionRow | undefined;
  rows: Map<number, Draft>;
  clusters: Map<string, ClusterView>;
  actions: Action[];
  notes: string[];
  /** moments at which the service needs a pass again */
  wake: number[];
  nextVirtual: number;
}

function ms(iso: string): number {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t : 0;
}

function sorted(p: Pass, keep: (r: Draft) => boolean): Draft[] {
  return [...p.rows.values()].filter(keep).sort((a, b) => a.instance_number - b.instance_number);
}

function runRows(p: Pass): Draft[] {
  return sorted(p, (r) => r.desired === 'run');
}

function iso(t: number): string {
  return new Date(t).toISOString();
}

function set(row: Draft, patch: Partial<Draft>): void {
  Object.assign(row, patch);
}

/** Adds an action to the plan and changes the projection the way the shell's store write will. */
function emit(p: Pass, a: Action): void {
  p.actions.push(a);
  const at = iso(p.now);
  const row = 'instance' in a ? p.rows.get(a.instance) : undefined;
  switch (a.kind) {
    case 'place':
      if (row) set(row, { status: 'CLUSTER_SCHEDULED', status_detail: a.note ?? '', cluster_id: a.cluster_id, worker_id: null, epoch: a.epoch, status_at: at });
      return;
    case 'wait':
      if (row) row.status_detail = a.reason;
      return;
    case 'requeue':
      if (row) {
        set(row, { status: 'REQUESTED', status_detail: a.reason, cluster_id: null, worker_id: null, epoch: row.epoch + 1, status_at: at });
        set(row, { last_cluster_id: a.from_cluster, lost_at: a.lost ? at : null, undeploy_at: undefined });
      }
      return;
    case 'create': {
      const n = p.nextVirtual--;
      p.rows.set(n, { ...blankRow(p, n, a.service_version), replaces: a.replaces });
      return;
    }
    case 'stop':
      if (row) {
        row.desired = 'stop';
        if (row.cluster_id !== null && clusterState(p, row.cluster_id) === 'up') row.undeploy_at = p.now;
      }
      return;
    case 'resend_undeploy':
      if (row) row.undeploy_at = p.now;
      return;
    case 'finish':
      if (row) set(row, { status: 'UNDEPLOYED', status_detail: a.reason, instance_ip: null, instance_ip_v6: null, net: null, status_at: at });
      return;
    case 'purge':
      p.rows.delete(a.instance);
      return;
    case 'retag':
      if (row) row.service_version = a.service_version;
      return;
    default:
      return; // rollback and outcome change the service, not the rows
  }
}

function blankRow(p: Pass, n: number, version: number): Draft {
  const at = iso(p.now);
  return {
    service_id: p.input.service.id,
    instance_number: n,
    status: 'REQUESTED',
    status_detail: '',
    cluster_id: null,
    worker_id: null,
    publicip: null,
    instance_ip: null,
    created_at: at,
    updated_at: at,
    instance_ip_v6: null,
    net: null,
    service_version: version,
    desired: 'run',
    epoch: 0,
    replaces: null,
    status_at: at,
    last_cluster_id: null,
    lost_at: null,
    health: null,
    restarts: 0,
    virtual: true,
    undeploy_at: undefined,
  };
}

/** 'up': link connected; 'away': down less than lost_after_s (a blip: nothing changes); 'lost': down longer, or unknown. */
function clusterState(p: Pass, id: string): 'up' | 'away' | 'lost' {
  const c = p.clusters.get(id);
  if (!c) return 'lost';
  if (c.connected) return 'up';
  // down since an unknown moment (the shell did not say): never declared lost by this pass
  if (c.disconnected_since === undefined) return 'away';
  return p.now >= lostAt(p, c) ? 'lost' : 'away';
}

function lostAt(p: Pass, c: ClusterView): number {
  return (c.disconnected_since ?? p.now) + p.policies.disconnect.lost_after_s * 1000;
}

function clusterName(p: Pass, id: string): string {
  return p.clusters.get(id)?.name ?? id;
}

/** A wait is planned only when it changes the stored reason; the note is kept every pass. */
function waitFor(p: Pass, r: Draft, reason: string, note?: string): void {
  p.notes.push(`instance ${r.instance_number}: ${note ?? reason}`);
  if (r.status_detail !== reason) emit(p, { kind: 'wait', instance: r.instance_number, reason });
}

// ---------------------------------------------------------------------------------------------
// 1. lost clusters

/** desired=run rows on a cluster away past lost_after_s are placed again (replace) or wait for it; a blip only schedules a pass. */
function lost(p: Pass): void {
  const { replace, lost_after_s } = p.policies.disconnect;
  for (const r of runRows(p)) {
    if (r.cluster_id === null || !holdsCluster(r.status)) continue;
    const state = clusterState(p, r.cluster_id);
    const name = clusterName(p, r.cluster_id);
    if (state === 'away') {
      const c = p.clusters.get(r.cluster_id);
      if (c?.disconnected_since !== undefined) p.wake.push(lostAt(p, c));
      continue;
    }
    if (state !== 'lost') continue;
    if (replace) emit(p, { kind: 'requeue', instance: r.instance_number, from_cluster: r.cluster_id, reason: `cluster ${name} lost (away more than ${lost_after_s} s): placed again`, lost: true });
    else waitFor(p, r, `cluster ${name} is lost; waiting for it (disconnect.replace is false)`);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. deadlines of transitional states

/** CLUSTER_SCHEDULED / NODE_SCHEDULED / CREATING (and DEAD) longer than its deadline on a connected cluster → requeue. */
function deadlines(p: Pass): void {
  for (const r of runRows(p)) {
    if (r.cluster_id === null || clusterState(p, r.cluster_id) !== 'up') continue;
    const d = deadlineOf(r.status, p.input.config.deadlines);
    if (!d) continue;
    const due = ms(r.status_at) + d.ms;
    if (p.now < due) {
      p.wake.push(due);
      continue;
    }
    const reason = `${r.status} for more than ${d.ms / 1000} s on cluster ${clusterName(p, r.cluster_id)} (the ${d.state} deadline): placed again`;
    emit(p, { kind: 'requeue', instance: r.instance_number, from_cluster: r.cluster_id, reason, lost: false });
  }
}

// ---------------------------------------------------------------------------------------------
// 3. rolling update

function isCurrent(p: Pass, r: Draft): boolean {
  if (r.service_version === p.input.service.version) return true;
  const fp = p.current?.fingerprint;
  return fp !== undefined && p.fingerprints.get(r.service_version) === fp;
}

/** A successor of the current rollout: created for this version, or current and still in flight (an earlier version with the same fingerprint). */
function isRolloutSuccessor(p: Pass, r: Draft): boolean {
  if (r.replaces === null) return false;
  return r.service_version === p.input.service.version || (isCurrent(p, r) && inFlight(p, r));
}

function predecessor(p: Pass, r: Draft): Draft | undefined {
  return r.replaces === null ? undefined : p.rows.get(r.replaces);
}

/** Its predecessor still runs (desired=run): the row does not hold a slot yet. */
function inFlight(p: Pass, r: Draft): boolean {
  return r.desired === 'run' && predecessor(p, r)?.desired === 'run';
}

function unhealthy(p: Pass, r: Draft): boolean {
  // the worker's probe verdict (issue 10); the detail's wording for workers of before it
  return p.input.service.sla.health !== undefined && (r.health === 'unhealthy' || /\bunhealthy\b/i.test(r.status_detail));
}

/** RUNNING (not unhealthy) for health_grace_s; one-shot: COMPLETED too. */
function ready(p: Pass, r: Draft): boolean {
  if (p.oneShot && r.status === 'COMPLETED') return true;
  return r.status === 'RUNNING' && p.now >= ms(r.status_at) + p.policies.update.health_grace_s * 1000 && !unhealthy(p, r);
}

/** What the max_unavailable budget counts: current rows ready, older rows RUNNING (one-shot: or COMPLETED). */
function available(p: Pass, r: Draft): boolean {
  if (isCurrent(p, r)) return ready(p, r);
  return r.status === 'RUNNING' || (p.oneShot && r.status === 'COMPLETED');
}

/** Why a successor fails the rollout, or undefined. */
function failure(p: Pass, r: Draft): string | undefined {
  const n = r.instance_number;
  const detail = r.status_detail ? `: ${r.status_detail}` : '';
  if (r.status === 'FAILED' || r.status === 'UNDEPLOYED') return `instance ${n} is ${r.status}${detail}`;
  if (r.status === 'COMPLETED' && !p.oneShot) return `instance ${n} exited${detail}`;
  if (!ready(p, r) && p.now >= ms(r.created_at) + p.policies.update.progress_deadline_s * 1000) {
    return `instance ${n} was not ready within ${p.policies.update.progress_deadline_s} s (it is ${r.status})`;
  }
  return undefined;
}

/** Older rows the rollout still has to replace (one-shot COMPLETED rows are done and stay). */
function oldRows(p: Pass): Draft[] {
  return runRows(p).filter((r) => !isCurrent(p, r) && !(p.oneShot && r.status === 'COMPLETED'));
}

function outcomeOf(p: Pass): 'rolling' | 'complete' | 'failed' {
  const o = p.current?.outcome ?? null;
  if (o === null) return 'rolling';
  return o === 'complete' || o === 'superseded' ? 'complete' : 'failed';
}

/** The newest earlier version (another fingerprint) whose rollout completed or that the old rows still run. */
function rollbackTarget(p: Pass): number | undefined {
  const failed = p.current;
  if (!failed) return undefined;
  const running = new Set(oldRows(p).map((r) => p.fingerprints.get(r.service_version)));
  const earlier = p.input.versions.filter((v) => v.version < failed.version && v.fingerprint !== failed.fingerprint).sort((a, b) => b.version - a.version);
  return earlier.find((v) => v.outcome === 'complete' || running.has(v.fingerprint))?.version;
}

/** Old in-flight successors (an interrupted rollout of an older version) are surplus: stopped. */
function stopStaleSuccessors(p: Pass): void {
  for (const r of runRows(p)) {
    if (isCurrent(p, r) || !inFlight(p, r)) continue;
    emit(p, { kind: 'stop', instance: r.instance_number, reason: `superseded: version ${p.input.service.version} is rolling out` });
  }
}

/** REQUESTED rows of an older version take the current one (not a lost one that may still be adopted). */
function retag(p: Pass): void {
  const adoptable = p.policies.disconnect.reconcile !== 'keep_replacement';
  for (const r of runRows(p)) {
    if (r.status !== 'REQUESTED' || isCurrent(p, r) || (adoptable && r.lost_at !== null)) continue;
    emit(p, { kind: 'retag', instance: r.instance_number, service_version: p.input.service.version });
  }
}

/**
 * After a failed rollout (outcome stopped / rolled back, derived again every pass): in-flight
 * successors of the version stop; a failing successor that holds a slot stops and a row of its
 * predecessor's version takes the slot back.
 */
function cleanUpFailed(p: Pass): void {
  const version = p.input.service.version;
  for (const r of runRows(p)) {
    if (!isRolloutSuccessor(p, r)) continue;
    if (inFlight(p, r)) {
      emit(p, { kind: 'stop', instance: r.instance_number, reason: `the rollout of version ${version} stopped` });
      continue;
    }
    const why = failure(p, r);
    if (why === undefined) continue;
    emit(p, { kind: 'stop', instance: r.instance_number, reason: `the rollout of version ${version} stopped: ${why}` });
    const back = predecessor(p, r)?.service_version ?? rollbackTarget(p) ?? Math.max(1, version - 1);
    emit(p, { kind: 'create', service_version: back, replaces: null, reason: `instance ${r.instance_number} of version ${version} failed: version ${back} takes its place` });
  }
}

/**
 * Rolls the older rows to the current version: ready in-flight successors stop their
 * predecessor; new successors within max_surge (in flight) or max_unavailable (the old row stops
 * at once); a failing successor ends the rollout (rollback or stop); nothing older left: complete.
 */
function rollout(p: Pass): void {
  const version = p.input.service.version;
  const pol = p.policies.update;
  stopStaleSuccessors(p);
  const state = outcomeOf(p);
  if (state !== 'failed') retag(p);
  if (state === 'failed') {
    // a rollback planned before but not stored yet is planned again
    if (p.current?.outcome?.startsWith('rolled back') === true) {
      const to = rollbackTarget(p);
      if (to !== undefined) emit(p, { kind: 'rollback', failed_version: version, to_version: to, reason: `auto rollback: ${p.current.outcome}` });
    }
    cleanUpFailed(p);
    return;
  }
  if (state === 'complete') return;

  const successors = runRows(p).filter((r) => isRolloutSuccessor(p, r));
  const failing = successors.map((r) => failure(p, r)).find((w) => w !== undefined);
  if (failing !== undefined) {
    const to = pol.auto_rollback ? rollbackTarget(p) : undefined;
    if (to !== undefined) {
      emit(p, { kind: 'outcome', version, outcome: `rolled back: ${failing}` });
      emit(p, { kind: 'rollback', failed_version: version, to_version: to, reason: `auto rollback: ${failing}` });
    } else {
      const why = pol.auto_rollback ? `${failing} (no earlier version to roll back to)` : failing;
      emit(p, { kind: 'outcome', version, outcome: `stopped: ${why}` });
    }
    p.notes.push(`rollout of version ${version} failed: ${failing}`);
    cleanUpFailed(p);
    return;
  }

  for (const r of successors) {
    const pred = predecessor(p, r);
    if (pred && inFlight(p, r) && ready(p, r)) {
      emit(p, { kind: 'stop', instance: pred.instance_number, reason: `replaced by instance ${r.instance_number} (version ${version})` });
    }
  }

  startSuccessors(p);

  const pending = runRows(p).filter((r) => isRolloutSuccessor(p, r) && !ready(p, r));
  for (const r of pending) {
    if (r.status === 'RUNNING') p.wake.push(ms(r.status_at) + pol.health_grace_s * 1000);
    p.wake.push(ms(r.created_at) + pol.progress_deadline_s * 1000);
  }
  // version 1 had nothing to roll: its outcome stays null
  if (version > 1 && oldRows(p).length === 0 && pending.length === 0) emit(p, { kind: 'outcome', version, outcome: 'complete' });
}

/** Successors for the older placed rows, lowest number first (an unavailable old row is replaced at once, it costs no availability). */
function startSuccessors(p: Pass): void {
  const version = p.input.service.version;
  const pol = p.policies.update;
  const run = runRows(p);
  const slots = run.filter((r) => !inFlight(p, r)).length;
  let running = run.length;
  // ended rows (FAILED, exited) will not become available: they do not hold the budget
  let unavailable = run.filter((r) => !inFlight(p, r) && !available(p, r) && !TERMINAL_STATES.has(r.status)).length;
  const covered = new Set(run.filter((r) => r.replaces !== null && isCurrent(p, r)).map((r) => r.replaces));
  const todo = oldRows(p)
    .filter((r) => r.status !== 'REQUESTED' && !inFlight(p, r) && !covered.has(r.instance_number))
    .sort((a, b) => Number(available(p, a)) - Number(available(p, b)) || a.instance_number - b.instance_number);
  for (const old of todo) {
    const create: Action = { kind: 'create', service_version: version, replaces: old.instance_number, reason: `rolling update of instance ${old.instance_number} to version ${version}` };
    if (!available(p, old)) {
      emit(p, { kind: 'stop', instance: old.instance_number, reason: `rolling update to version ${version} (it was ${old.status})` });
      emit(p, create);
    } else if (running < slots + pol.max_surge) {
      emit(p, create);
      running++;
    } else if (unavailable < pol.max_unavailable) {
      emit(p, { kind: 'stop', instance: old.instance_number, reason: `rolling update to version ${version}` });
      emit(p, create);
      unavailable++;
    } else {
      p.notes.push(`rollout of version ${version} waits: ${running} rows for ${slots} slots (max_surge ${pol.max_surge}), ${unavailable} unavailable (max_unavailable ${pol.max_unavailable})`);
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 3b. convergence_time across clusters

/** Oakestra's default convergence_time: 300 s */
export const CONVERGENCE_DEFAULT_S = 300;

/**
 * How long (ms) an instance may run where a preference (rigidness below 1) of its service is
 * unmet: the smallest convergence_time of those constraints (default 300 s); undefined when the
 * service has none. The same rule as the cluster's (apps/cluster/src/core.ts convergenceMs).
 */
export function convergenceWindowMs(demand: Demand): number | undefined {
  let min: number | undefined;
  for (const c of demand.constraints) {
    const r = rigidnessOf(c);
    if (r <= 0 || r >= 1) continue;
    const t = typeof c.convergence_time === 'number' && c.convergence_time >= 0 ? c.convergence_time : CONVERGENCE_DEFAULT_S;
    min = min === undefined ? t : Math.min(min, t);
  }
  return min === undefined ? undefined : min * 1000;
}

/**
 * The preferences a cluster leaves unmet whatever worker of it runs the instance (judged on the
 * cluster alone: its id/name, its location and its workers' locations, its latency; capacity
 * aside, since the instance already holds its share there): the weight and the texts.
 */
function clusterUnmet(c: ClusterCandidate, demand: Demand): { weight: number; texts: string[] } {
  const cc = compileConstraints(demand);
  let weight = 0;
  const texts: string[] = [];
  for (const rule of cc.soft) {
    if (clusterSatisfies(c, rule.cc)) continue;
    weight += rule.weight;
    texts.push(rule.text);
  }
  return { weight, texts };
}

/**
 * convergence_time across clusters: a RUNNING instance of the current version, on a connected
 * cluster that leaves a preference unmet (rigidness below 1, judged on the cluster: direct
 * cluster, geo, latency) for at least the service's convergence time, is placed again when
 * another active cluster (meeting every hard constraint, with room) leaves less preference
 * weight unmet. It is requeued (its copy gets an undeploy, the reason goes to its history) and
 * placement puts it on that cluster in the same pass. Only when every instance of the service
 * runs, and one instance per pass, so replicas move one at a time; the unmet weight only goes
 * down, so nothing moves back and forth. A preference a worker of the same cluster can meet is
 * the cluster's business (its own convergence, docs/sla.md).
 */
function converge(p: Pass): void {
  const rows = runRows(p);
  if (rows.length === 0 || rows.some((r) => r.status !== 'RUNNING' || !isCurrent(p, r))) return;
  const demand = demandOf(p.input.service.sla, p.input.service.job_name, p.input.peers);
  const window = convergenceWindowMs(demand);
  if (window === undefined) return;
  const candidates = candidatesOf(p);
  const opts: PickClusterOptions = p.input.config.strategy ? { strategy: p.input.config.strategy } : {};
  if (p.input.peers && p.input.peers.length > 0) opts.rttMs = rttLookupOf(p.input.clusters.flatMap((c) => c.candidate.workers));
  for (const r of rows) {
    if (r.cluster_id === null || clusterState(p, r.cluster_id) !== 'up') continue;
    const here = candidates.find((c) => c.id === r.cluster_id);
    if (!here) continue;
    const unmet = clusterUnmet(here, demand);
    if (unmet.weight <= 0) continue;
    const since = ms(r.status_at);
    const due = since + window;
    if (p.now < due) {
      p.wake.push(due);
      continue;
    }
    const others = candidates.filter((c) => c.id !== here.id);
    const pick = others.length > 0 ? pickCluster(demand, others, opts) : undefined;
    const better = pick?.ok === true && clusterUnmet(pick.target, demand).weight < unmet.weight ? pick.target : undefined;
    if (better === undefined) {
      // nowhere better now: look again one convergence time later
      p.wake.push(p.now + window);
      continue;
    }
    const reason = `moved to cluster ${better.name}: on cluster ${clusterName(p, here.id)} the preference ${unmet.texts.join('; ').slice(0, 300)} was unmet for ${Math.round((p.now - since) / 1000)} s (convergence_time ${Math.round(window / 1000)} s)`;
    p.notes.push(`instance ${r.instance_number}: ${reason}`);
    emit(p, { kind: 'requeue', instance: r.instance_number, from_cluster: here.id, reason, lost: false });
    return;
  }
}

// ---------------------------------------------------------------------------------------------
// 4. placement

/** The candidate list as pickCluster sees it: only clusters whose link is up are active. */
function candidatesOf(p: Pass): ClusterCandidate[] {
  return p.input.clusters.map((c) => ({ ...c.candidate, active: c.candidate.active && c.connected }));
}

/** REQUESTED desired=run rows, lowest number first: pickCluster (another cluster than last_cluster_id when one fits), reserved at once; or wait with the reason. */
function placement(p: Pass): void {
  let candidates = candidatesOf(p);
  const demands = new Map<number, Demand>();
  const demandFor = (version: number): Demand => {
    let d = demands.get(version);
    if (!d) {
      const sla = p.input.versions.find((v) => v.version === version)?.sla ?? p.input.service.sla;
      demands.set(version, (d = demandOf(sla, p.input.service.job_name, p.input.peers)));
    }
    return d;
  };
  const opts: PickClusterOptions = p.input.config.strategy ? { strategy: p.input.config.strategy } : {};
  // connectivity: the RTTs every cluster's workers measured (read only when a rule needs them)
  if (p.input.peers && p.input.peers.length > 0) opts.rttMs = rttLookupOf(p.input.clusters.flatMap((c) => c.candidate.workers));
  for (const r of runRows(p)) {
    if (r.status !== 'REQUESTED' || r.virtual) continue;
    const demand = demandFor(r.service_version);
    const elsewhere = r.last_cluster_id === null ? [] : candidates.filter((c) => c.id !== r.last_cluster_id);
    let pick = elsewhere.length > 0 ? pickCluster(demand, elsewhere, opts) : undefined;
    if (!pick?.ok) pick = pickCluster(demand, candidates, opts);
    if (!pick.ok) {
      waitFor(p, r, pick.reason, `${pick.reason}: ${pick.detail}`);
      continue;
    }
    const target = pick.target;
    const note = pick.warnings && pick.warnings.length > 0 ? pick.warnings.join('; ').slice(0, 500) : undefined;
    emit(p, { kind: 'place', instance: r.instance_number, cluster_id: target.id, epoch: r.epoch + 1, ...(note !== undefined ? { note } : {}) });
    candidates = candidates.map((c) => (c.id === target.id ? reserveCluster(c, demand) : c));
  }
}

// ---------------------------------------------------------------------------------------------
// 5. stopping

function finished(r: Draft): boolean {
  return r.status === 'UNDEPLOYED' && r.instance_ip === null && r.instance_ip_v6 === null;
}

/**
 * desired=stop rows: finished → purge after purgeAfterMs; unplaced, ended or cluster lost → finish
 * (an ended one on a connected cluster gets its undeploy too); placed on a connected cluster →
 * undeploy once, again after undeployResendMs; on a cluster that is away → wait for it or for lost.
 */
function stopping(p: Pass): void {
  const { undeployResendMs, purgeAfterMs } = p.input.config;
  for (const r of sorted(p, (x) => x.desired === 'stop' && !x.virtual)) {
    const n = r.instance_number;
    if (finished(r)) {
      const due = ms(r.status_at) + purgeAfterMs;
      if (p.now >= due) emit(p, { kind: 'purge', instance: n });
      else p.wake.push(due);
      continue;
    }
    if (r.cluster_id === null || !holdsCluster(r.status)) {
      // an ended copy on a connected cluster is still told to go (its cluster may keep its record), without waiting
      if (r.cluster_id !== null && r.undeploy_at === undefined && clusterState(p, r.cluster_id) === 'up') {
        emit(p, { kind: 'stop', instance: n, reason: `undeploy sent to cluster ${clusterName(p, r.cluster_id)}` });
      }
      emit(p, { kind: 'finish', instance: n, reason: r.cluster_id === null ? 'stopped (it was not placed)' : `stopped (it was ${r.status})` });
      p.wake.push(p.now + purgeAfterMs);
      continue;
    }
    const state = clusterState(p, r.cluster_id);
    if (state === 'lost') {
      emit(p, { kind: 'finish', instance: n, reason: `stopped (cluster ${clusterName(p, r.cluster_id)} lost)` });
      p.wake.push(p.now + purgeAfterMs);
    } else if (state === 'away') {
      const c = p.clusters.get(r.cluster_id);
      if (c?.disconnected_since !== undefined) p.wake.push(lostAt(p, c));
    } else if (r.undeploy_at === undefined) {
      emit(p, { kind: 'stop', instance: n, reason: `undeploy sent to cluster ${clusterName(p, r.cluster_id)}` });
      p.wake.push(p.now + undeployResendMs);
    } else if (p.now >= r.undeploy_at + undeployResendMs) {
      emit(p, { kind: 'resend_undeploy', instance: n, cluster_id: r.cluster_id });
      p.wake.push(p.now + undeployResendMs);
    } else p.wake.push(r.undeploy_at + undeployResendMs);
  }
}

// ---------------------------------------------------------------------------------------------

/** The plan for one service (see the file comment). Pure: same input, same plan. */
export function reconcile(input: ReconcileInput): Plan {
  const p: Pass = {
    input,
    now: input.now,
    policies: policiesOf(input.service.sla, input.config),
    oneShot: input.service.sla.one_shot === true,
    fingerprints: new Map(input.versions.map((v) => [v.version, v.fingerprint])),
    current: input.versions.find((v) => v.version === input.service.version),
    rows: new Map(input.instances.map((r) => [r.instance_number, { ...r, virtual: false, undeploy_at: input.sent.get(r.instance_number)?.undeploy_at }])),
    clusters: new Map(input.clusters.map((c) => [c.id, c])),
    actions: [],
    notes: [],
    wake: [],
    nextVirtual: -1,
  };
  lost(p);
  deadlines(p);
  rollout(p);
  converge(p);
  placement(p);
  stopping(p);
  // rows created by this plan are placed by the next pass: at once
  if (p.actions.some((a) => a.kind === 'create')) p.wake.push(p.now);
  const future = p.wake.filter((t) => Number.isFinite(t) && t >= p.now);
  const plan: Plan = { actions: p.actions, notes: p.notes };
  if (future.length > 0) plan.next_at = Math.min(...future);
  return plan;
}
