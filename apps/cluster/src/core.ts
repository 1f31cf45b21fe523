/**
 * The cluster's brain, without I/O: workers and their reports, the instances the root wants here,
 * placement with accounting, liveness, and reconciliation of what workers run against what is
 * desired. Every method takes the current time and returns the effects to carry out (MQTT
 * commands to workers, status messages to the root); the shell in cluster.ts does the I/O.
 *
 * The cluster keeps no state of its own: after a restart it learns the desired set from the
 * root's `sync` and the actual set from the workers' registrations and reports.
 */
import { ACTIVE_STATES, MAX_DEAD_WORKERS, MAX_USAGE_READINGS, RESTART_MAX_DEFAULT, TERMINAL_STATES, instanceName, parseInstanceName } from '@oak/contracts';
import type {
  HealthState,
  ClusterResources,
  ClusterToRoot,
  DeadWorker,
  DeleteCommand,
  DeployCommand,
  InstanceAssignment,
  InstanceState,
  InstanceUsage,
  JobResources,
  JobStatus,
  NodeInformation,
  NodeRegistration,
  Virtualization,
  WorkerSummary,
} from '@oak/contracts';
import { Ledger, WorkerPool, compileConstraints, demandOf, parseGeoPoint, rigidnessOf, workerPenalty } from '@oak/scheduler';
import type { Demand, GeoPoint, PickWorkerOptions, PoolPickOptions, RttLookup, Strategy, WorkerCandidate } from '@oak/scheduler';

export type InstanceStatusMessage = Extract<ClusterToRoot, { type: 'instance_status' }>;

export type Effect =
  | { type: 'deploy'; worker_id: string; command: DeployCommand }
  | { type: 'delete'; worker_id: string; command: DeleteCommand }
  | { type: 'status'; message: InstanceStatusMessage }
  /** a big change (a worker joined or left): send the aggregate now */
  | { type: 'aggregate' };

export interface CoreOptions {
  /** what workers are told to use, ms (default 2000) */
  reportIntervalMs: number;
  /** a worker silent for this long is dead (default 3 report intervals) */
  deadAfterMs: number;
  /**
   * a worker named by the root's sync that has not registered or reported yet (this cluster just
   * restarted) gets this long before its instances are rescheduled
   */
  placeholderGraceMs: number;
  /** a desired instance missing from its worker's report this long after its deploy is sent again */
  missingGraceMs: number;
  /** reservations not confirmed by a report within this time are dropped */
  reservationTtlMs: number;
  /** dead workers are forgotten after this long (default never: they stay listed as dead until removed; at most MAX_DEAD_WORKERS, the oldest go first) */
  forgetDeadAfterMs: number;
  /**
   * a worker whose connection is gone (its last will, connectionLost) is declared lost this long
   * after, unless it shows a sign of life meanwhile: a NodeEngine that reconnects at once replaces
   * its old connection, and the broker publishes the old connection's will then too (default 200)
   */
  goneGraceMs: number;
  strategy: Strategy;
  clusterLocation: GeoPoint | null;
  /** addon labels the cluster offers to all its workers (`--addons`, CLUSTER_ADDONS), for `addons` constraints */
  clusterAddons: string[];
  /** the overlay's measured RTTs between workers (NetCore), for connectivity rules; absent: none known */
  rttMs?: RttLookup;
  /** a service instance FAILED after its local restarts is moved to another worker at most this often (default 2) */
  maxMoves: number;
}

export function coreOptions(p: Partial<CoreOptions> = {}): CoreOptions {
  const reportIntervalMs = p.reportIntervalMs ?? 2000;
  return {
    reportIntervalMs,
    deadAfterMs: p.deadAfterMs ?? 3 * reportIntervalMs,
    placeholderGraceMs: p.placeholderGraceMs ?? Math.max(2 * (p.deadAfterMs ?? 3 * reportIntervalMs), 5000),
    missingGraceMs: p.missingGraceMs ?? Math.max(3 * reportIntervalMs, 3000),
    reservationTtlMs: p.reservationTtlMs ?? Math.max(30_000, 10 * reportIntervalMs),
    forgetDeadAfterMs: p.forgetDeadAfterMs ?? Number.POSITIVE_INFINITY,
    goneGraceMs: p.goneGraceMs ?? 200,
    strategy: p.strategy ?? 'least-loaded',
    clusterLocation: p.clusterLocation ?? null,
    clusterAddons: p.clusterAddons ?? [],
    ...(p.rttMs !== undefined ? { rttMs: p.rttMs } : {}),
    maxMoves: p.maxMoves ?? 2,
  };
}

export interface WorkerRecord {
  id: string;
  name: string;
  registration: NodeRegistration | null;
  info: NodeInformation | null;
  resources: JobResources | null;
  location: GeoPoint | null;
  registeredAt: number | null;
  /** last registration or report (the caller's clock) */
  lastSeen: number;
  /** false once declared dead; it comes back with its next registration or report */
  alive: boolean;
  /** registered, first report not yet in: it may not listen to its command topics yet */
  awaitingReport: boolean;
  diedAt: number | null;
  /** why it was declared dead (the aggregate's dead_workers) */
  deadWhy?: string;
  /** the connection nonce of its NodeEngine (from its registration or last report), null: none sent */
  conn: string | null;
  /** when its connection was reported gone (its last will); cleared by any sign of life */
  goneAt: number | null;
}

export interface DesiredInstance {
  name: string;
  assignment: InstanceAssignment;
  demand: Demand;
  worker_id: string | null;
  status: InstanceState;
  status_detail: string;
  publicip: string | null;
  /** true once this cluster knows the status (from a worker or its own scheduling) */
  known: boolean;
  /** when a deploy was last sent (or the assignment learnt from a sync) */
  deployedAt: number | null;
  /**
   * when its worker was last asked for its status (a deploy again) because it runs the instance
   * but this cluster never heard how it is (learnt from the root's sync after a restart)
   */
  askedAt?: number;
  /** the health probe's verdict and local restarts its worker last reported (issue 10) */
  health?: HealthState | undefined;
  restarts?: number | undefined;
  /** moves to another worker after the local restarts were exhausted, and the workers it failed on */
  moves?: number;
  avoid?: Set<string>;
  /** why it is being moved (the detail of its next placement) */
  moveNote?: string | undefined;
  /**
   * since when its worker leaves a preference (rigidness below 1) unmet: after the service's
   * convergence_time the cluster looks for a worker that meets more of them (converge())
   */
  unmetSince?: number | undefined;
}

/** Oakestra's default convergence_time: 300 s */
export const CONVERGENCE_DEFAULT_S = 300;

/**
 * How long (ms) a preference of this demand may stay unmet before the instance is placed again:
 * the smallest convergence_time (default 300 s) of its constraints with rigidness below 1;
 * undefined when it has none. Connectivity preferences are only ranked (docs/sla.md).
 */
export function convergenceMs(demand: Demand): number | undefined {
  let min: number | undefined;
  for (const c of demand.constraints) {
    const r = rigidnessOf(c);
    if (r <= 0 || r >= 1) continue;
    const s = typeof c.convergence_time === 'number' && c.convergence_time >= 0 ? c.convergence_time : CONVERGENCE_DEFAULT_S;
    min = min === undefined ? s : Math.min(min, s);
  }
  return min === undefined ? undefined : min * 1000;
}

/** The weight of the demand's unmet preferences on `w` (constraints only, connectivity aside). */
function preferencePenalty(demand: Demand, w: WorkerCandidate, opts: PickWorkerOptions): number {
  const plain: Demand = { ...demand, peers: [] };
  return workerPenalty(w, w.location ?? opts.clusterLocation ?? null, compileConstraints(plain), opts.clusterAddons);
}

/** A worker that has told us what it is (not only an id from the root's sync). */
function isReal(w: WorkerRecord): boolean {
  return w.registration !== null || w.info !== null;
}

export class ClusterCore {
  readonly opts: CoreOptions;
  readonly workers = new Map<string, WorkerRecord>();
  readonly desired = new Map<string, DesiredInstance>();
  /** workers whose placement candidate changed since the pool last saw them (see pool()) */
  private readonly stale = new Set<string>();
  private readonly workerPool = new WorkerPool();
  readonly ledger = new Ledger((id) => this.stale.add(id));
  /** true after the first sync from the root: from then on unknown instances on workers go */
  synced = false;
  /** deletes sent lately (`worker instance` -> when): a report racing a delete does not repeat it */
  private readonly recentDeletes = new Map<string, number>();

  constructor(opts: Partial<CoreOptions> = {}) {
    this.opts = coreOptions(opts);
  }

  // ------------------------------------------------------------------ workers

  /**
   * A worker registered (or registered again). `id` is the id it asked for, or a fresh one. It
   * gets instances once its first report arrives: a worker subscribes to its command topics after
   * registering, so a deploy sent before that would be lost.
   */
  register(id: string, reg: NodeRegistration, now: number): Effect[] {
    const effects: Effect[] = [];
    let w = this.workers.get(id);
    const joined = !w || !w.alive;
    if (!w) {
      w = { id, name: reg.node_name, registration: reg, info: null, resources: null, location: null, registeredAt: now, lastSeen: now, alive: true, awaitingReport: true, diedAt: null, conn: null, goneAt: null };
      this.workers.set(id, w);
    }
    w.registration = reg;
    w.name = reg.node_name;
    w.location = parseGeoPoint(reg.location ?? null);
    w.registeredAt = now;
    w.lastSeen = now;
    w.alive = true;
    w.awaitingReport = true;
    w.diedAt = null;
    w.goneAt = null;
    w.conn = reg.conn ?? null;
    this.stale.add(id);
    if (joined) effects.push({ type: 'aggregate' });
    effects.push(...this.placePending(now));
    return effects;
  }

  /**
   * A worker is known when it registered with this cluster (since its start). Reports for any
   * other id (never registered, removed, or only named by the root's sync) change nothing: the
   * worker must register first, and registering needs a valid join token.
   */
  isRegistered(id: string): boolean {
    return this.workers.get(id)?.registration != null;
  }

  /** nodes/{id}/information */
  information(id: string, info: NodeInformation, now: number): Effect[] {
    const effects: Effect[] = [];
    const w = this.workers.get(id);
    if (!w || w.registration === null) return [];
    // its first report (after registering it subscribed to its commands): now it takes instances
    if (!w.alive || w.info === null) effects.push({ type: 'aggregate' });
    w.info = info;
    w.lastSeen = now;
    w.alive = true;
    w.awaitingReport = false;
    w.diedAt = null;
    w.goneAt = null;
    if (info.conn !== undefined) w.conn = info.conn;
    this.stale.add(id);
    effects.push(...this.reconcileWorker(w, now));
    effects.push(...this.placePending(now));
    return effects;
  }

  jobResources(id: string, res: JobResources, now: number): void {
    const w = this.workers.get(id);
    if (!w || w.registration === null) return;
    w.resources = res;
    w.lastSeen = Math.max(w.lastSeen, now);
    w.goneAt = null;
  }

  /**
   * nodes/{id}/gone: the worker's connection to the broker dropped (its last will) or it stopped
   * for good. Ignored for an unknown or already dead worker and for a will of another NodeEngine
   * process than the one the worker reports from (`conn` differs from the nonce of its
   * registration or reports). Otherwise the worker is declared lost goneGraceMs from now (tick),
   * unless it registers or reports meanwhile (a quick reconnect replaced the connection); with
   * goneGraceMs 0 at once. Its instances are then rescheduled exactly as for a silent worker.
   */
  connectionLost(id: string, conn: string | undefined, now: number): Effect[] {
    const w = this.workers.get(id);
    if (!w || w.registration === null || !w.alive) return [];
    if (w.conn !== null && conn !== w.conn) return [];
    if (w.conn === null && conn !== undefined) return [];
    w.goneAt ??= now;
    if (this.opts.goneGraceMs > 0) return [];
    const effects = this.declareDead(w, now, 'lost its connection to the broker');
    effects.push(...this.placePending(now));
    return effects;
  }

  /** when the next tick declares a worker lost after connectionLost (null: none pending) */
  nextGoneAt(): number | null {
    let at: number | null = null;
    for (const w of this.workers.values()) {
      if (!w.alive || w.goneAt === null) continue;
      const due = w.goneAt + this.opts.goneGraceMs;
      if (at === null || due < at) at = due;
    }
    return at;
  }

  /**
   * The worker was removed or its token revoked: it is forgotten at once, its instances are
   * rescheduled (reported DEAD first, like a lost worker) and its reports are ignored from now on.
   */
  removeWorker(id: string, now: number, why = 'removed'): Effect[] {
    const w = this.workers.get(id);
    if (!w) return [];
    const effects = w.alive ? this.declareDead(w, now, why) : [{ type: 'aggregate' } as Effect];
    this.workers.delete(id);
    this.stale.add(id);
    this.ledger.forgetWorker(id);
    effects.push(...this.placePending(now));
    return effects;
  }

  /** nodes/{id}/job: forwarded to the root when it is about an instance this worker should run. */
  jobStatus(id: string, js: JobStatus, now: number): Effect[] {
    const w = this.workers.get(id);
    if (!w || w.registration === null) return [];
    w.goneAt = null;
    const name = instanceName(js.job_name, js.instance_number);
    const d = this.desired.get(name);
    if (!d) return [];
    w.lastSeen = Math.max(w.lastSeen, now);
    if (d.worker_id !== id) {
      // the instance runs where we did not expect it: adopt it when it has no live home
      if (!ACTIVE_STATES.has(js.status) || !this.canAdopt(d)) return [];
      this.assign(d, id, now);
    }
    d.health = js.health;
    d.restarts = js.restarts;
    if (js.status === 'FAILED' && this.movable(d, js)) return this.move(d, w, js, now);
    d.status = js.status;
    d.status_detail = js.status_detail;
    if (js.publicip !== undefined) d.publicip = js.publicip;
    d.known = true;
    if (TERMINAL_STATES.has(js.status)) this.ledger.release(name);
    return [{ type: 'status', message: this.statusOf(d) }];
  }

  /**
   * A service instance FAILED on its worker after its local restarts (restart_max reached, the
   * worker reports them): it goes to another worker, at most maxMoves times. Not for one-shot
   * jobs, restart "never", or workers that report no restarts.
   */
  private movable(d: DesiredInstance, js: JobStatus): boolean {
    const svc = d.assignment.service;
    if (svc.one_shot === true || js.restarts === undefined) return false;
    const policy = svc.restart ?? 'on-failure';
    if (policy === 'never') return false;
    return js.restarts >= (svc.restart_max ?? RESTART_MAX_DEFAULT) && (d.moves ?? 0) < this.opts.maxMoves;
  }

  private move(d: DesiredInstance, w: WorkerRecord, js: JobStatus, now: number): Effect[] {
    const moves = (d.moves ?? 0) + 1;
    d.moves = moves;
    d.avoid ??= new Set();
    d.avoid.add(w.id);
    d.moveNote = `moved off worker ${w.name} (move ${moves} of ${this.opts.maxMoves}) after ${js.restarts ?? 0} local restart(s): ${js.status_detail}`;
    this.ledger.release(d.name);
    this.recentDeletes.set(`${w.id} ${d.name}`, now);
    const effects: Effect[] = [{ type: 'delete', worker_id: w.id, command: this.deleteCommand(d.assignment.job_name, d.assignment.instance_number, d.assignment.service.virtualization) }];
    d.worker_id = null;
    this.stale.add(w.id);
    d.status = 'CLUSTER_SCHEDULED';
    d.status_detail = d.moveNote;
    d.health = undefined;
    d.restarts = undefined;
    d.publicip = null;
    d.known = true;
    const placed = this.placePending(now);
    if (!placed.some((e) => e.type === 'status' && instanceName(e.message.job_name, e.message.instance_number) === d.name)) effects.push({ type: 'status', message: this.statusOf(d) });
    effects.push(...placed);
    return effects;
  }

  /** Declares silent workers dead (their instances are rescheduled), retries what waits. */
  tick(now: number): Effect[] {
    const effects: Effect[] = [];
    for (const w of [...this.workers.values()]) {
      const limit = isReal(w) ? this.opts.deadAfterMs : this.opts.placeholderGraceMs;
      if (w.alive && w.goneAt !== null && now - w.goneAt >= this.opts.goneGraceMs) effects.push(...this.declareDead(w, now, 'lost its connection to the broker'));
      else if (w.alive && now - w.lastSeen > limit) effects.push(...this.declareDead(w, now));
      else if (!w.alive && w.diedAt !== null && now - w.diedAt > this.opts.forgetDeadAfterMs) {
        this.workers.delete(w.id);
        this.stale.add(w.id);
      }
    }
    this.ledger.expire(now - this.opts.reservationTtlMs);
    for (const [k, at] of this.recentDeletes) if (now - at >= this.opts.missingGraceMs) this.recentDeletes.delete(k);
    effects.push(...this.placePending(now));
    effects.push(...this.converge(now));
    return effects;
  }

  /**
   * convergence_time (docs/sla.md#rigidness-and-convergence_time): a RUNNING instance whose worker
   * has left a preference unmet for the service's convergence time is placed again when another
   * worker (meeting every hard constraint, with room) leaves less preference weight unmet: it is
   * stopped here and started there. One instance per tick, so replicas move one at a time; the
   * penalty only goes down, so an instance never moves back and forth.
   */
  private converge(now: number): Effect[] {
    for (const d of this.desired.values()) {
      if (d.unmetSince === undefined || d.worker_id === null || d.status !== 'RUNNING') continue;
      const window = convergenceMs(d.demand);
      if (window === undefined) {
        d.unmetSince = undefined;
        continue;
      }
      if (now - d.unmetSince < window) continue;
      d.unmetSince = now; // looked at now: next look one window later
      const opts = this.pickOptions();
      const pool = this.pool();
      const from = pool.get(d.worker_id);
      if (!from) continue;
      const penHere = preferencePenalty(d.demand, from, opts);
      if (penHere <= 0) {
        d.unmetSince = undefined;
        continue;
      }
      const r = pool.pick(this.withLocalPeers(d.demand), { ...opts, exclude: (id) => id === from.id });
      if (!r.ok) continue;
      const penThere = preferencePenalty(d.demand, r.target, opts);
      if (penThere >= penHere) continue;
      const effects: Effect[] = [{ type: 'delete', worker_id: from.id, command: this.deleteCommand(d.assignment.job_name, d.assignment.instance_number, d.assignment.service.virtualization) }];
      this.recentDeletes.set(`${from.id} ${d.name}`, now);
      this.ledger.release(d.name);
      this.assign(d, r.target.id, now);
      d.status = 'NODE_SCHEDULED';
      d.status_detail = `moved from worker ${from.name} to ${r.target.name}: a preference was unmet there for ${Math.round(window / 1000)} s (convergence_time)`;
      d.health = undefined;
      d.restarts = undefined;
      d.publicip = null;
      d.known = true;
      d.unmetSince = penThere > 0 ? now : undefined;
      effects.push({ type: 'deploy', worker_id: r.target.id, command: this.deployCommand(d) });
      effects.push({ type: 'status', message: this.statusOf(d) });
      return effects;
    }
    return [];
  }

  private declareDead(w: WorkerRecord, now: number, why?: string): Effect[] {
    const effects: Effect[] = [{ type: 'aggregate' }];
    const silentS = Math.round((now - w.lastSeen) / 100) / 10;
    w.alive = false;
    w.diedAt = now;
    w.deadWhy = why ?? `no report for ${silentS} s`;
    w.goneAt = null;
    this.stale.add(w.id);
    this.forgetOldestDead();
    this.ledger.forgetWorker(w.id);
    for (const d of this.desired.values()) {
      if (d.worker_id !== w.id || TERMINAL_STATES.has(d.status)) continue;
      d.status = 'DEAD';
      d.status_detail = why === undefined ? `worker ${w.name} lost (no report for ${silentS} s); rescheduling` : `worker ${w.name} ${why}; rescheduling`;
      d.known = true;
      effects.push({ type: 'status', message: this.statusOf(d) });
      d.worker_id = null;
    }
    return effects;
  }

  // ------------------------------------------------------------------ desired set (from the root)

  /** The root's full desired set: start what is missing, delete what is no longer wanted. */
  sync(assignments: InstanceAssignment[], now: number): Effect[] {
    const effects: Effect[] = [];
    const wanted = new Map<string, InstanceAssignment>();
    for (const a of assignments) wanted.set(instanceName(a.job_name, a.instance_number), a);
    for (const d of [...this.desired.values()]) {
      if (!wanted.has(d.name)) effects.push(...this.remove(d, now));
    }
    for (const [name, a] of wanted) {
      const d = this.desired.get(name);
      if (d) {
        // the root's full set is its truth: its epoch (higher after a new placement) replaces ours
        d.assignment = a;
        d.demand = demandOf(a.service, a.job_name, a.peers);
        continue;
      }
      const fresh = this.newDesired(name, a);
      const wid = a.worker_id ?? null;
      if (wid !== null) {
        let w = this.workers.get(wid);
        if (!w) {
          // the root says it runs on a worker that has not (re-)registered yet: give it time
          w = { id: wid, name: wid, registration: null, info: null, resources: null, location: null, registeredAt: null, lastSeen: now, alive: true, awaitingReport: false, diedAt: null, conn: null, goneAt: null };
          this.workers.set(wid, w);
        }
        if (w.alive) {
          fresh.worker_id = wid;
          fresh.status = 'NODE_SCHEDULED';
          fresh.deployedAt = now;
          this.ledger.reserve(wid, name, fresh.demand, now);
        }
      }
      this.desired.set(name, fresh);
    }
    this.synced = true;
    // demands may have changed under running instances: every candidate is computed again
    for (const id of this.workers.keys()) this.stale.add(id);
    for (const w of this.workers.values()) if (w.alive && w.info) effects.push(...this.reconcileWorker(w, now));
    effects.push(...this.placePending(now));
    // the root may have missed statuses while the link was down
    for (const d of this.desired.values()) {
      if (d.known && !effects.some((e) => e.type === 'status' && instanceName(e.message.job_name, e.message.instance_number) === d.name)) {
        effects.push({ type: 'status', message: this.statusOf(d) });
      }
    }
    return dedupe(effects);
  }

  /**
   * One more instance for this cluster (idempotent). For an instance it already has, a deploy of
   * an older epoch than the stored one (a stale message) changes nothing; an equal or higher epoch
   * (the root placed it here again) replaces the assignment and the running copy stays.
   */
  deploy(a: InstanceAssignment, now: number): Effect[] {
    const name = instanceName(a.job_name, a.instance_number);
    const d = this.desired.get(name);
    if (d) {
      const had = d.assignment.epoch;
      if (had !== undefined && a.epoch !== undefined && a.epoch < had) return d.known ? [{ type: 'status', message: this.statusOf(d) }] : [];
      d.assignment = a;
      d.demand = demandOf(a.service, a.job_name, a.peers);
      if (d.worker_id !== null) this.stale.add(d.worker_id);
      return d.known ? [{ type: 'status', message: this.statusOf(d) }] : this.placePending(now);
    }
    this.desired.set(name, this.newDesired(name, a));
    return this.placePending(now);
  }

  /**
   * The root wants the instance gone. With `epoch`, only the copy of that placement goes: a copy
   * of another epoch (the root placed it here again since) stays; a copy without an epoch (an
   * assignment from an older root) goes.
   */
  undeploy(jobName: string, n: number, now = 0, epoch?: number): Effect[] {
    const d = this.desired.get(instanceName(jobName, n));
    if (!d) return [];
    const mine = d.assignment.epoch;
    if (epoch !== undefined && mine !== undefined && mine !== epoch) return [];
    return this.remove(d, now);
  }

  /** The epoch of the assignment an instance runs under (undefined: unknown instance, or the root sent none). */
  epochOf(jobName: string, n: number): number | undefined {
    return this.desired.get(instanceName(jobName, n))?.assignment.epoch;
  }

  private newDesired(name: string, a: InstanceAssignment): DesiredInstance {
    return {
      name,
      assignment: a,
      demand: demandOf(a.service, a.job_name, a.peers),
      worker_id: null,
      status: 'CLUSTER_SCHEDULED',
      status_detail: '',
      publicip: null,
      known: false,
      deployedAt: null,
    };
  }

  private remove(d: DesiredInstance, now: number): Effect[] {
    this.desired.delete(d.name);
    this.ledger.release(d.name);
    if (d.worker_id === null) return [];
    this.stale.add(d.worker_id);
    this.recentDeletes.set(`${d.worker_id} ${d.name}`, now);
    return [{ type: 'delete', worker_id: d.worker_id, command: this.deleteCommand(d.assignment.job_name, d.assignment.instance_number, d.assignment.service.virtualization) }];
  }

  /** false when this delete went out less than missingGraceMs ago (the worker's report may predate it) */
  private freshDelete(workerId: string, name: string, now: number): boolean {
    const key = `${workerId} ${name}`;
    const at = this.recentDeletes.get(key);
    if (at !== undefined && now - at < this.opts.missingGraceMs) return false;
    this.recentDeletes.set(key, now);
    return true;
  }

  // ------------------------------------------------------------------ placement

  /** Places every instance that waits for a worker; reasons are reported when they change. */
  placePending(now: number): Effect[] {
    const waiting = [...this.desired.values()].filter((d) => d.worker_id === null && !TERMINAL_STATES.has(d.status));
    if (waiting.length === 0) return [];
    const effects: Effect[] = [];
    waiting.sort((a, b) => a.name.localeCompare(b.name));
    for (const d of waiting) {
      const avoid = d.avoid;
      // the pool is brought up to date before each decision (the previous one reserved on a worker)
      const opts: PoolPickOptions = avoid === undefined ? this.pickOptions() : { ...this.pickOptions(), exclude: (id) => avoid.has(id) };
      const r = this.pool().pick(this.withLocalPeers(d.demand), opts);
      if (!r.ok && d.moveNote !== undefined) {
        // moved after its local restarts, and no other worker here can take it: it stays FAILED
        d.status = 'FAILED';
        d.status_detail = `${d.moveNote}; no other worker can take it (${r.reason})`;
        d.moveNote = undefined;
        d.known = true;
        effects.push({ type: 'status', message: this.statusOf(d) });
        continue;
      }
      if (r.ok) {
        this.assign(d, r.target.id, now);
        d.unmetSince = convergenceMs(d.demand) !== undefined && preferencePenalty(d.demand, r.target, this.pickOptions()) > 0 ? now : undefined;
        d.status = 'NODE_SCHEDULED';
        // what the choice could not check (an RTT not measured) or left unmet (a preference) is said
        d.status_detail = d.moveNote ?? (r.warnings ? r.warnings.join('; ').slice(0, 500) : '');
        d.moveNote = undefined;
        d.known = true;
        effects.push({ type: 'deploy', worker_id: r.target.id, command: this.deployCommand(d) });
        effects.push({ type: 'status', message: this.statusOf(d) });
      } else {
        // waits here with the reason visible at the root; retried on every change of capacity
        if (!d.known || d.status !== 'CLUSTER_SCHEDULED' || d.status_detail !== r.reason) {
          d.status = 'CLUSTER_SCHEDULED';
          d.status_detail = r.reason;
          d.known = true;
          effects.push({ type: 'status', message: this.statusOf(d) });
        }
      }
    }
    return effects;
  }

  private pickOptions(): PickWorkerOptions {
    const o: PickWorkerOptions = { strategy: this.opts.strategy, clusterLocation: this.opts.clusterLocation };
    if (this.opts.clusterAddons.length > 0) o.clusterAddons = this.opts.clusterAddons;
    if (this.opts.rttMs !== undefined) o.rttMs = this.opts.rttMs;
    return o;
  }

  /**
   * The demand with each connectivity rule's workers brought up to date: the root's list (as of its
   * deploy) plus the workers of this cluster that hold an instance of the target now.
   */
  private withLocalPeers(demand: Demand): Demand {
    if (!demand.peers || demand.peers.length === 0) return demand;
    const peers = demand.peers.map((p) => {
      const workers = new Set(p.workers);
      for (const o of this.desired.values()) if (o.worker_id !== null && o.assignment.job_name === p.target && !TERMINAL_STATES.has(o.status)) workers.add(o.worker_id);
      return { ...p, workers: [...workers].sort() };
    });
    return { ...demand, peers };
  }

  private assign(d: DesiredInstance, workerId: string, now: number): void {
    d.worker_id = workerId;
    d.deployedAt = now;
    this.ledger.reserve(workerId, d.name, d.demand, now);
  }

  /** May `d` be taken over by the worker that reports it? (no live worker holds it) */
  private canAdopt(d: DesiredInstance): boolean {
    if (d.worker_id === null) return true;
    const home = this.workers.get(d.worker_id);
    return !home || !home.alive || !isReal(home);
  }

  /** What a worker runs against what it should run. */
  private reconcileWorker(w: WorkerRecord, now: number): Effect[] {
    const info = w.info;
    if (!info) return [];
    const effects: Effect[] = [];
    const running = new Set(info.running_instances);
    const confirmed: string[] = [];
    for (const name of running) {
      const d = this.desired.get(name);
      if (!d) {
        if (this.synced && this.freshDelete(w.id, name, now)) {
          const p = parseInstanceName(name);
          if (p) effects.push({ type: 'delete', worker_id: w.id, command: this.deleteCommand(p.job_name, p.instance_number, this.virtualizationOfJob(p.job_name)) });
        }
        continue;
      }
      if (d.worker_id === w.id) {
        confirmed.push(name);
        // known from the root's sync only (this cluster restarted, or its statuses were lost with a
        // broker): the root may be waiting for a state the worker reported to nobody; a deploy is
        // idempotent on the worker and makes it tell its status
        if (!d.known && (d.askedAt === undefined || now - d.askedAt >= this.opts.missingGraceMs)) {
          d.askedAt = now;
          effects.push({ type: 'deploy', worker_id: w.id, command: this.deployCommand(d) });
        }
        continue;
      }
      if (this.canAdopt(d)) {
        // it runs here and nowhere else we trust: keep it, and ask the worker for its status
        if (d.worker_id !== null) this.ledger.release(name);
        this.assign(d, w.id, now);
        confirmed.push(name);
        effects.push({ type: 'deploy', worker_id: w.id, command: this.deployCommand(d) });
      } else {
        // it was rescheduled elsewhere while this worker was away
        effects.push({ type: 'delete', worker_id: w.id, command: this.deleteCommand(d.assignment.job_name, d.assignment.instance_number, d.assignment.service.virtualization) });
      }
    }
    this.ledger.observe(confirmed);
    for (const d of this.desired.values()) {
      if (d.worker_id !== w.id || running.has(d.name)) continue;
      if (!ACTIVE_STATES.has(d.status)) continue;
      if (d.deployedAt !== null && now - d.deployedAt < this.opts.missingGraceMs) continue;
      // desired here but not running here: send it again (a deploy is idempotent on the worker)
      d.deployedAt = now;
      this.ledger.reserve(w.id, d.name, d.demand, now);
      effects.push({ type: 'deploy', worker_id: w.id, command: this.deployCommand(d) });
    }
    return effects;
  }

  private virtualizationOfJob(job: string): Virtualization {
    for (const d of this.desired.values()) if (d.assignment.job_name === job) return d.assignment.service.virtualization;
    return 'container';
  }

  // ------------------------------------------------------------------ views

  /**
   * The placeable workers (those of candidates(), reservations subtracted) as a WorkerPool, brought
   * up to date for the workers marked stale since the last call: registrations, reports, deaths,
   * removals, reservations (the ledger tells) and changed demands mark them (issue 13: a decision
   * costs about the same at 10,000 workers as at 1,000).
   */
  private pool(): WorkerPool {
    for (const id of this.stale) {
      const w = this.workers.get(id);
      if (w && w.alive && w.info !== null && !w.awaitingReport) this.workerPool.upsert(this.ledger.apply(this.candidateOf(w)));
      else this.workerPool.remove(id);
    }
    this.stale.clear();
    return this.workerPool;
  }

  /**
   * Live workers that have reported, before reservations. `forPlacement` leaves out those that
   * registered again and have not reported since (their deploys could be lost).
   */
  candidates(forPlacement = true): WorkerCandidate[] {
    const out: WorkerCandidate[] = [];
    for (const w of this.workers.values()) {
      if (!w.alive || w.info === null || (forPlacement && w.awaitingReport)) continue;
      out.push(this.candidateOf(w));
    }
    return out;
  }

  /** A worker's capacity from its report, minus what the instances it reports running hold. */
  candidateOf(w: WorkerRecord): WorkerCandidate {
    const reg = w.registration;
    const info = w.info;
    const cores = info?.cpu_cores ?? reg?.cpu_cores ?? 0;
    const memTotal = info?.memory_total_mb ?? reg?.memory_mb ?? 0;
    const gpus = info?.gpus ?? reg?.gpus ?? 0;
    let vcpus = 0;
    let mem = 0;
    let usedGpus = 0;
    const jobs: string[] = [];
    for (const name of info?.running_instances ?? []) {
      const d = this.desired.get(name);
      if (!d || d.worker_id !== w.id) continue;
      vcpus += d.demand.vcpus;
      mem += d.demand.memory_mb;
      usedGpus += d.demand.gpus;
      jobs.push(d.demand.job_name);
    }
    const measuredFree = info?.memory_free_mb ?? memTotal;
    return {
      id: w.id,
      name: w.name,
      cpu_cores_total: cores,
      cpu_cores_free: cores - vcpus,
      memory_total_mb: memTotal,
      memory_free_mb: Math.min(measuredFree, memTotal - mem),
      gpus_free: gpus - usedGpus,
      cpu_percent: info?.cpu_percent ?? 0,
      virtualizations: info?.virtualizations ?? reg?.virtualizations ?? [],
      ...(reg?.arch !== undefined && reg.arch !== '' ? { arch: reg.arch } : {}),
      location: w.location,
      jobs,
      ...(reg?.supported_addons && reg.supported_addons.length > 0 ? { supported_addons: [...reg.supported_addons] } : {}),
    };
  }

  /** Keeps at most MAX_DEAD_WORKERS dead records: the ones dead longest are forgotten first. */
  private forgetOldestDead(): void {
    const dead = [...this.workers.values()].filter((w) => !w.alive && w.diedAt !== null);
    if (dead.length <= MAX_DEAD_WORKERS) return;
    dead.sort((a, b) => (a.diedAt ?? 0) - (b.diedAt ?? 0));
    for (const w of dead.slice(0, dead.length - MAX_DEAD_WORKERS)) {
      this.workers.delete(w.id);
      this.stale.add(w.id);
    }
  }

  /** Workers declared dead and not removed, longest dead first (the aggregate's dead_workers). */
  deadWorkers(): DeadWorker[] {
    const out: DeadWorker[] = [];
    for (const w of this.workers.values()) {
      if (w.alive || w.diedAt === null) continue;
      out.push({
        id: w.id.slice(0, 200),
        name: w.name.slice(0, 255),
        location: w.registration?.location?.slice(0, 255) ?? null,
        dead_since: new Date(w.diedAt).toISOString(),
        last_seen: new Date(w.lastSeen).toISOString(),
        reason: (w.deadWhy ?? 'lost').slice(0, 200),
      });
    }
    return out.sort((a, b) => a.dead_since.localeCompare(b.dead_since) || a.id.localeCompare(b.id)).slice(0, MAX_DEAD_WORKERS);
  }

  /** The aggregate for the root: live workers, reservations subtracted, never negative. */
  aggregate(): ClusterResources {
    const workers = this.ledger.applyAll(this.candidates(false));
    const virt = new Set<Virtualization>();
    const summary: WorkerSummary[] = [];
    const r: ClusterResources = {
      cpu_cores_free: 0,
      cpu_cores_total: 0,
      memory_free_mb: 0,
      memory_total_mb: 0,
      gpus_free: 0,
      virtualizations: [],
      workers: workers.length,
      worker_summary: summary,
    };
    if (this.opts.clusterAddons.length > 0) r.supported_addons = [...this.opts.clusterAddons];
    for (const c of workers) {
      const cpuFree = round2(Math.max(0, c.cpu_cores_free));
      const memFree = round2(Math.max(0, c.memory_free_mb));
      r.cpu_cores_total += c.cpu_cores_total;
      r.memory_total_mb += c.memory_total_mb;
      r.cpu_cores_free += cpuFree;
      r.memory_free_mb += memFree;
      r.gpus_free += Math.max(0, c.gpus_free);
      for (const v of c.virtualizations) virt.add(v);
      const rec = this.workers.get(c.id);
      const ws: WorkerSummary = { id: c.id, name: c.name, cpu_cores_free: cpuFree, memory_free_mb: memFree, virtualizations: [...c.virtualizations], location: rec?.registration?.location ?? null };
      if (c.arch !== undefined) ws.arch = c.arch;
      // GPUs (issue 10): free ones for the root's check that one worker holds the instance, and the
      // devices (model, memory) for `oak node ls`; left out on workers without any
      const devices = rec?.info?.gpu_devices ?? rec?.registration?.gpu_devices ?? [];
      ws.gpus_free = Math.max(0, c.gpus_free);
      if (devices.length > 0) ws.gpus = devices.map((g) => ({ ...g }));
      if (c.supported_addons) ws.supported_addons = [...c.supported_addons];
      // measured readings for the dashboard's bars (issue 11), beside the reserved ones above
      ws.cpu_percent = round2(Math.min(100, Math.max(0, c.cpu_percent)));
      ws.cpu_cores_total = round2(Math.max(0, c.cpu_cores_total));
      ws.memory_total_mb = round2(Math.max(0, c.memory_total_mb));
      const info = rec?.info;
      if (info) {
        ws.memory_available_mb = round2(Math.max(0, info.memory_free_mb));
        ws.disk_free_mb = round2(Math.max(0, info.disk_free_mb));
      }
      const reg = rec?.registration;
      if (reg) {
        if (reg.disk_mb !== undefined) ws.disk_total_mb = round2(Math.max(0, reg.disk_mb));
        ws.os = reg.os.slice(0, 128);
      }
      summary.push(ws);
    }
    r.cpu_cores_free = round2(r.cpu_cores_free);
    r.memory_free_mb = round2(r.memory_free_mb);
    r.virtualizations = [...virt].sort();
    summary.sort((a, b) => byId.compare(a.id, b.id));
    const dead = this.deadWorkers();
    if (dead.length > 0) r.dead_workers = dead;
    return r;
  }

  /**
   * The live workers' last per-instance readings (issue 11), for the root's charts. A worker's
   * reading counts only for an instance this cluster placed on that very worker: a worker cannot
   * report (and so chart) instances it does not run, another organisation's least of all.
   */
  usage(): InstanceUsage[] {
    const out: InstanceUsage[] = [];
    for (const w of this.workers.values()) {
      if (!w.alive || w.resources === null) continue;
      for (const r of w.resources.instances) {
        const d = this.desired.get(instanceName(r.job_name, r.instance_number));
        if (!d || d.worker_id !== w.id || d.assignment.job_name !== r.job_name || d.assignment.instance_number !== r.instance_number) continue;
        if (!Number.isFinite(r.cpu_percent) || !Number.isFinite(r.memory_mb)) continue;
        out.push({ job_name: r.job_name, instance_number: r.instance_number, worker_id: w.id, cpu_percent: round2(Math.min(1_000_000, Math.max(0, r.cpu_percent))), memory_mb: round2(Math.min(1024 * 1024 * 1024, Math.max(0, r.memory_mb))) });
        if (out.length >= MAX_USAGE_READINGS) return out;
      }
    }
    return out;
  }

  statusOf(d: DesiredInstance): InstanceStatusMessage {
    const m: InstanceStatusMessage = {
      type: 'instance_status',
      job_name: d.assignment.job_name,
      instance_number: d.assignment.instance_number,
      status: d.status,
      status_detail: d.status_detail,
      worker_id: d.worker_id,
    };
    if (d.publicip !== null) m.publicip = d.publicip;
    if (d.health !== undefined) m.health = d.health;
    if (d.restarts !== undefined) m.restarts = d.restarts;
    // the placement this copy belongs to: the root judges stale copies by it
    if (d.assignment.epoch !== undefined) m.epoch = d.assignment.epoch;
    return m;
  }

  deployCommand(d: DesiredInstance): DeployCommand {
    const cmd: DeployCommand = { ...d.assignment.service, microserviceID: d.assignment.microserviceID, job_name: d.assignment.job_name, instance_number: d.assignment.instance_number };
    // the virtual addresses the root gave (overlay network): the worker's NetManager translates them
    if (d.assignment.overlay !== undefined) cmd.overlay = d.assignment.overlay;
    // the owner comes from the root, never from the SLA (a service's own "organization_id" is dropped)
    if (d.assignment.organization_id !== undefined) cmd.organization_id = d.assignment.organization_id;
    else delete cmd.organization_id;
    // the organisation's registry login, only in memory (the cluster keeps nothing on disk) and only in this command
    if (d.assignment.registry_auth !== undefined) cmd.registry_auth = d.assignment.registry_auth;
    return cmd;
  }

  deleteCommand(job: string, n: number, virtualization: Virtualization): DeleteCommand {
    return { job_name: job, virtualization, instance_number: n };
  }

  /** The worker an instance is on, for log requests. */
  workerOf(jobName: string, n: number): string | null {
    return this.desired.get(instanceName(jobName, n))?.worker_id ?? null;
  }
}

/** Drops repeated commands (the same delete from removal and from reconciliation). */
function dedupe(effects: Effect[]): Effect[] {
  const seen = new Set<string>();
  return effects.filter((e) => {
    if (e.type !== 'deploy' && e.type !== 'delete') return true;
    const key = `${e.type} ${e.worker_id} ${e.command.job_name} ${e.command.instance_number}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** localeCompare's order (same locale) without its per-call set-up: 10,000 ids per aggregate */
const byId = new Intl.Collator();

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
