/**
 * The reconciler's shell (issue 9): the root's control plane over the cluster link.
 *
 * The store holds the desired state, clusters report the actual state; the pure core
 * (`reconcile()` in core.ts) compares both for one service and answers a plan, which this shell
 * carries out: store writes first, then link messages (every deploy and undeploy carries the
 * placement's epoch), and an event on the EventHub for every instance change.
 *
 * Passes run in a keyed work queue (queue.ts, one pass per service at a time), requested by:
 * - the API (ControlPlane calls: instancesRequested, instancesUndeployed, serviceUpdated,
 *   serviceChanged; or store.notify('oak_reconcile', id) from other roots),
 * - link events: an instance_status is queued for its service and judged at the start of that
 *   service's pass (intake.ts judgeReport: apply, stale → one undeploy of that copy, adopt);
 *   connect → the full `sync` of that cluster, then passes; disconnect → the cluster's
 *   disconnected_since is recorded, then passes; aggregate → reservations settle,
 * - timers at each plan's next_at, and a periodic resync of every service (resyncMs).
 * A missed event is healed by the next pass.
 *
 * The log relay is reconcile/logs.ts, the root's placement accounting reconcile/accounting.ts,
 * the overlay messages link/net-control.ts.
 *
 * Undeploy confirmation: a cluster removes an instance from its desired set as soon as it gets the
 * undeploy (and a full sync after a reconnect leaves desired=stop rows out), so an undeploy handed
 * to a connected link finishes the stopping row (UNDEPLOYED, addresses released); an UNDEPLOYED
 * report finishes it too; a stopping row of a cluster that stays away is finished by the core.
 */
import { OakError, TERMINAL_STATES, instanceName } from '@oak/contracts';
import type { ClusterToRoot, InstanceState, Microservice, RegistryAuth, RootToCluster } from '@oak/contracts';
import { demandOf, type PeerRule } from '@oak/scheduler';
import { passedSteps } from '@oak/store';
import type { ClusterRow, InstancePatch, InstanceRow, PassedStatus, ServiceRow, ServiceVersionRow, Store } from '@oak/store';
import type { ControlPlane, LogOptions } from '../control.ts';
import { instanceDoc } from '../docs.ts';
import type { EventHub } from '../events.ts';
import { overlayFor } from '../overlay.ts';
import { registryAuthFor } from '../registries.ts';
import { assignmentOf, clusterCandidates, holdsCluster } from '../placement.ts';
import { hasConnectivity, peerRulesOf } from '../connectivity.ts';
import { silentLinkLog } from '../link/codec.ts';
import type { LinkLog } from '../link/codec.ts';
import { createNetControl } from '../link/net-control.ts';
import type { NetLimits } from '../link/net-control.ts';
import type { LinkServer } from '../link/server.ts';
import { RootReservations, reservationKey } from './accounting.ts';
import { defaultReconcileConfig, policiesOf, reconcile } from './core.ts';
import { fastPathStatus, foldProgress, holdsForNext, judgeReport } from './intake.ts';
import type { QueuedReport } from './intake.ts';
import { ENDED_INSTANCE_MEMORY_MS, LogRelay } from './logs.ts';
import { KeyedQueue } from './queue.ts';
import type { Action, ClusterView, Plan, ReconcileConfig } from './types.ts';

export type InstanceStatusMessage = Extract<ClusterToRoot, { type: 'instance_status' }>;

/** The defaults of the reconciler (docs/sla.md: update and disconnect blocks). */
export const DEFAULT_RECONCILE_CONFIG: ReconcileConfig = defaultReconcileConfig;

export interface ReconcilerConfigPatch {
  deadlines?: Partial<ReconcileConfig['deadlines']>;
  update?: Partial<ReconcileConfig['update']>;
  disconnect?: Partial<ReconcileConfig['disconnect']>;
  undeployResendMs?: number;
  purgeAfterMs?: number;
  strategy?: ReconcileConfig['strategy'];
}

export function reconcileConfig(p: ReconcilerConfigPatch = {}): ReconcileConfig {
  const d = DEFAULT_RECONCILE_CONFIG;
  const c: ReconcileConfig = {
    deadlines: { ...d.deadlines, ...p.deadlines },
    update: { ...d.update, ...p.update },
    disconnect: { ...d.disconnect, ...p.disconnect },
    undeployResendMs: p.undeployResendMs ?? d.undeployResendMs,
    purgeAfterMs: p.purgeAfterMs ?? d.purgeAfterMs,
  };
  if (p.strategy !== undefined) c.strategy = p.strategy;
  return c;
}

export interface ReconcilerOptions {
  link: LinkServer;
  store: Store;
  events: EventHub;
  config?: ReconcilerConfigPatch;
  log?: LinkLog;
  /** every service gets a pass this often (default 5 s) */
  resyncMs?: number;
  /** root reservations older than this are counted in a cluster's next aggregate (default 1 s) */
  settleMs?: number;
  /** services reconciled at the same time (default 4) */
  concurrency?: number;
  /** bounds of the overlay requests per link */
  netLimits?: NetLimits;
  /** close() also closes the link server (default true) */
  ownsLink?: boolean;
  /** the clock (tests) */
  now?: () => number;
  /**
   * How long a NODE_SCHEDULED or CREATING report waits for the next report of its copy (default
   * 20 ms; 0: not at all): a quick start's progress and its RUNNING are then one row write, each
   * status still in the history at its own time and published in order (intake.ts foldProgress).
   */
  progressWaitMs?: number;
  /**
   * Listen on the store's `oak_reconcile` channel (default true): other roots (followers) send a
   * service id there for every change their API made; '*' asks for a pass of every service.
   */
  notifications?: boolean;
}

/** the channel followers send service ids on (store.notify) */
export const RECONCILE_CHANNEL = 'oak_reconcile';
const SERVICE_ID = /^[A-Za-z0-9_-]{1,64}$/;

export interface Reconciler extends ControlPlane {
  readonly link: LinkServer;
  /** a pass of this service soon (API changes, notifications from other roots) */
  serviceChanged(serviceId: string): void;
  /** resolves when everything queued so far is done (tests) */
  idle(): Promise<void>;
  /** a pass of every service now */
  kick(): void;
  close(): Promise<void>;
}

/** passes a service may request of itself in a row (plans that change something); then it waits for its timer or the resync */
const MAX_SELF_PASSES = 20;
/** the longest a pass plans with cluster rows read before (the link's changes replace them at once) */
const CLUSTERS_MAX_AGE_MS = 2000;
/** stale copies remembered (one undeploy each) */
const MAX_STALE_MEMORY = 10_000;
/** reports waiting to be judged, over every cluster: beyond, new ones are dropped (a flood; clusters report again) */
export const MAX_REPORT_BACKLOG = 20_000;

export function createReconciler(o: ReconcilerOptions): Reconciler {
  const { link, store, events } = o;
  const log = o.log ?? silentLinkLog;
  const config = reconcileConfig(o.config);
  const now = o.now ?? Date.now;
  const settleMs = o.settleMs ?? 1000;
  const overlay = overlayFor(store);
  /** the organisation's login for the image's registry (private registries); a login that cannot be read is left out, and said */
  const registryAuthOf = async (organizationId: string, sla: Microservice): Promise<RegistryAuth | undefined> => {
    try {
      return await registryAuthFor(store, organizationId, sla);
    } catch (err) {
      log.warn({ organization_id: organizationId, reason: err instanceof Error ? err.message : String(err) }, 'registry login could not be read; deploying without it');
      return undefined;
    }
  };
  const reservations = new RootReservations();
  const relay = new LogRelay(link, {
    name: async (id) => (await store.getCluster(id))?.name,
    disconnectedSince: (id) => disconnectedSince.get(id),
  });
  let closed = false;

  /** per cluster not connected: since when (ms); set for every stored cluster at start */
  const disconnectedSince = new Map<string, number>();
  /** per service: what the shell sent that the store does not say (undeploy times) */
  const sent = new Map<string, Map<number, { undeploy_at?: number }>>();
  /** per service: reports waiting for its next pass, in arrival order */
  const reports = new Map<string, QueuedReport[]>();
  /** per service: its reports wait for a progress report's successor until then (ms epoch, the timer) */
  const holds = new Map<string, { until: number; t: NodeJS.Timeout }>();
  const progressWaitMs = o.progressWaitMs ?? 20;
  /** per service: rows the API removed (before issue 9 semantics) or told us about, whose copies must go */
  const told = new Map<string, InstanceRow[]>();
  /** job name → service id (reports name jobs) */
  const jobIds = new Map<string, string>();
  /** per service: its wake-up timer (plan.next_at) */
  const timers = new Map<string, { at: number; t: NodeJS.Timeout }>();
  /** per service: passes in a row it requested of itself */
  const selfPasses = new Map<string, number>();
  /** stale copies already told to go: cluster/job/n/epoch */
  const staleSent = new Set<string>();
  /** per disconnected cluster: the timer at lost_after (peers and reservations) */
  const lostTimers = new Map<string, NodeJS.Timeout>();
  /** keeps the order of reports while their service is looked up */
  let intake: Promise<void> = Promise.resolve();
  let started: Promise<void> = Promise.resolve();

  const net = createNetControl({
    link,
    store,
    events,
    log,
    ...(o.netLimits !== undefined ? { limits: o.netLimits } : {}),
    present: (id) => {
      const since = disconnectedSince.get(id);
      return since !== undefined && now() - since < config.disconnect.lost_after_s * 1000;
    },
  });

  const queue = new KeyedQueue({ run: (id) => pass(id), concurrency: o.concurrency ?? 4, log });

  /**
   * The cluster rows every pass plans with, read once and kept until the link says a cluster
   * changed (connected, disconnected, a new aggregate: the only writes to them, all by this
   * root's link) or CLUSTERS_MAX_AGE_MS passed. Each row carries its cluster's worker summary: a
   * read of every row at every pass of every service (the resync alone is a pass per service
   * every few seconds) parsed megabytes of JSON per second at a thousand workers.
   */
  let clusterCache: { at: number; rows: Promise<ClusterRow[]> } | undefined;
  const clustersNow = (): Promise<ClusterRow[]> => {
    const t = now();
    if (clusterCache === undefined || t - clusterCache.at > CLUSTERS_MAX_AGE_MS || t < clusterCache.at) {
      const c = { at: t, rows: store.listClusters() };
      clusterCache = c;
      c.rows.catch(() => {
        if (clusterCache === c) clusterCache = undefined;
      });
    }
    return clusterCache.rows;
  };
  const clustersChanged = (): void => {
    clusterCache = undefined;
  };

  /**
   * Services whose next pass must plan (requested by the API, a timer, a link event, the resync or
   * a plan of their own). A pass requested only by reports that were progress on the way to
   * RUNNING (fastPathStatus) applies them and plans nothing: the plan of a service cannot change
   * with them, its deadlines are kept by its timer, and the resync heals anything else.
   */
  const planWanted = new Set<string>();
  const request = (serviceId: string): void => {
    if (closed) return;
    selfPasses.delete(serviceId);
    planWanted.add(serviceId);
    queue.request(serviceId);
  };
  const requestForReports = (serviceId: string): void => {
    if (closed) return;
    queue.request(serviceId);
  };

  const requestAll = async (): Promise<void> => {
    for (const s of await store.listServices()) {
      jobIds.set(s.job_name, s.id);
      request(s.id);
    }
    // services deleted with rows the API told us about
    for (const id of told.keys()) request(id);
  };
  const kickAll = (): void => {
    void requestAll().catch((err: unknown) => log.error({ err }, 'reconcile: listing services failed'));
  };

  const publish = (s: ServiceRow, row: InstanceRow): void => {
    events.publish({ type: 'instance', microserviceID: s.id, applicationID: s.application_id, job_name: s.job_name, instance: instanceDoc(row) });
  };

  /** `passed`: statuses folded into this write (intake.ts foldProgress), each published before the row's own */
  const update = async (s: ServiceRow, row: InstanceRow, patch: InstancePatch, passed: readonly PassedStatus[] = []): Promise<InstanceRow | undefined> => {
    try {
      const next = await store.updateInstance(s.id, row.instance_number, patch, passed);
      if (patch.status !== undefined && patch.status !== row.status) {
        for (const p of passedSteps(row.status, passed, next.status)) publish(s, { ...next, status: p.status, status_detail: p.status_detail, status_at: p.at });
      }
      publish(s, next);
      return next;
    } catch (err) {
      if (err instanceof OakError && err.code === 'OAK_NOT_FOUND') return undefined; // removed meanwhile
      throw err;
    }
  };

  const sentOf = (serviceId: string): Map<number, { undeploy_at?: number }> => {
    let m = sent.get(serviceId);
    if (!m) sent.set(serviceId, (m = new Map()));
    return m;
  };

  /** the service as the row's version has it (a row of an older version is deployed with that version's SLA) */
  const withVersion = (svc: ServiceRow, row: InstanceRow, versions: readonly ServiceVersionRow[]): ServiceRow => {
    if (row.service_version === svc.version) return svc;
    const v = versions.find((x) => x.version === row.service_version);
    return v ? { ...svc, sla: v.sla } : svc;
  };

  const undeployMsg = (job: string, n: number, epoch: number | undefined): RootToCluster =>
    epoch !== undefined && epoch > 0 ? { type: 'undeploy', job_name: job, instance_number: n, epoch } : { type: 'undeploy', job_name: job, instance_number: n };

  /**
   * The service's connectivity rules (connectivity.ts), with the workers the other services of its
   * application run on now; [] (one read) when no service of the application declares any.
   */
  /** per service: the rules of its last pass, for the deploys of that pass */
  const peersNow = new Map<string, PeerRule[]>();
  const peersOf = async (s: ServiceRow): Promise<PeerRule[]> => {
    const siblings = await store.listServices({ application_id: s.application_id });
    if (!hasConnectivity(siblings)) return [];
    const rules = peerRulesOf(s, siblings, () => []);
    if (rules.length === 0) return [];
    const workers = new Map<string, string[]>();
    for (const other of siblings) {
      if (other.id === s.id || !rules.some((r) => r.target === other.job_name)) continue;
      const rows = await store.listInstances({ service_id: other.id, desired: 'run' });
      workers.set(other.id, rows.filter((r) => r.worker_id !== null && holdsCluster(r.status)).map((r) => r.worker_id as string));
    }
    return peerRulesOf(s, siblings, (id) => workers.get(id) ?? []);
  };

  // ------------------------------------------------------------------ one pass of one service

  const pass = async (serviceId: string): Promise<void> => {
    await started;
    if (closed) return;
    const s = await store.getService(serviceId);
    if (!s) {
      gone(serviceId);
      return;
    }
    for (const [job, id] of jobIds) if (id === serviceId && job !== s.job_name) jobIds.delete(job);
    jobIds.set(s.job_name, s.id);
    const mustPlan = planWanted.delete(serviceId);
    const drained = await drainReports(s);
    if (!mustPlan && !drained.plan && !told.has(s.id)) return;
    // the events of the applied reports go out (SSE, other roots) before this pass reads and plans
    if (drained.changed) await new Promise<void>((r) => setImmediate(r));
    let changed = drained.changed;
    changed = (await sendTold(s)) || changed;
    const t = now();
    // the rows the plan needs: not the finished ones (stopped, UNDEPLOYED, addresses released) that
    // only wait for their purge, except those due now and the predecessors of live rows; the
    // earliest other purge becomes a wake-up (a service with a long history reads a few rows, not all)
    const dueAt = new Date(t - config.purgeAfterMs).toISOString();
    const [versions, live, finishedRows, clusterRows] = await Promise.all([
      store.listServiceVersions(s.id),
      store.listInstances({ service_id: s.id, live: true }),
      store.finishedInstances(s.id, dueAt),
      clustersNow(),
    ]);
    const byNumber = new Map<number, InstanceRow>(live.map((r) => [r.instance_number, r]));
    for (const r of finishedRows.due) byNumber.set(r.instance_number, r);
    for (const r of live) {
      if (r.replaces === null || byNumber.has(r.replaces)) continue;
      const pred = await store.getInstance(s.id, r.replaces);
      if (pred) byNumber.set(pred.instance_number, pred);
    }
    const instances = [...byNumber.values()].sort((a, b) => a.instance_number - b.instance_number);
    const nextPurge = finishedRows.next === null ? undefined : Date.parse(finishedRows.next) + config.purgeAfterMs;
    // the jobs on each cluster (anti-affinity) matter only to a placement: read the placements only then
    const mayPlace = instances.some((r) => r.desired === 'run' && (r.status === 'REQUESTED' || r.service_version !== s.version));
    const jobsOf = mayPlace ? await jobsByCluster(await store.listPlacements()) : new Map<string, string[]>();
    const candidates = reservations.apply(clusterCandidates(clusterRows, (id) => link.isConnected(id), jobsOf));
    const clusters: ClusterView[] = clusterRows.map((c, i) => {
      const v: ClusterView = { id: c.id, name: c.name, connected: link.isConnected(c.id), candidate: candidates[i]! };
      const since = disconnectedSince.get(c.id);
      if (!v.connected && since !== undefined) v.disconnected_since = since;
      return v;
    });
    const peers = await peersOf(s);
    if (peers.length > 0) peersNow.set(s.id, peers);
    else peersNow.delete(s.id);
    const plan: Plan = reconcile({ service: s, versions, instances, clusters, sent: sentOf(s.id), now: t, config, ...(peers.length > 0 ? { peers } : {}) });
    if (plan.actions.length > 0) log.debug({ service: s.job_name, version: s.version, actions: plan.actions, notes: plan.notes }, 'reconcile plan');
    changed = (await applyPlan(s, versions, instances, clusters, plan)) || changed;
    schedule(s.id, plan.next_at === undefined ? nextPurge : nextPurge === undefined ? plan.next_at : Math.min(plan.next_at, nextPurge));
    if (changed && !closed) {
      const n = (selfPasses.get(s.id) ?? 0) + 1;
      if (n <= MAX_SELF_PASSES) {
        planWanted.add(s.id);
        queue.request(s.id);
        selfPasses.set(s.id, n);
      } else {
        log.warn({ service: s.job_name, passes: n }, 'reconcile: the plans of this service keep changing; it waits for its next resync');
      }
    } else {
      selfPasses.delete(s.id);
    }
  };

  /**
   * Whether a row's copy may still be on its cluster's worker: placed and not ended, or ended
   * (COMPLETED, FAILED: its worker keeps the remains, a container and its logs, until told)
   */
  const leftOnCluster = (status: InstanceState): boolean => holdsCluster(status) || status === 'COMPLETED' || status === 'FAILED';

  /** the service is gone (deleted): copies the API told us about go, its memory too */
  const gone = (serviceId: string): void => {
    for (const r of told.get(serviceId) ?? []) {
      reservations.release(reservationKey(serviceId, r.instance_number));
      if (r.cluster_id !== null && leftOnCluster(r.status)) {
        const job = [...jobIds].find(([, id]) => id === serviceId)?.[0];
        if (job !== undefined) link.send(r.cluster_id, undeployMsg(job, r.instance_number, r.epoch));
      }
    }
    told.delete(serviceId);
    peersNow.delete(serviceId);
    for (const [job, id] of jobIds) if (id === serviceId) jobIds.delete(job);
    // reports about a deleted service's instances: their copies go
    for (const { clusterId, m } of reports.get(serviceId) ?? []) if (m.status !== 'UNDEPLOYED') link.send(clusterId, undeployMsg(m.job_name, m.instance_number, m.epoch));
    backlog -= reports.get(serviceId)?.length ?? 0;
    reports.delete(serviceId);
    unhold(serviceId);
    sent.delete(serviceId);
    selfPasses.delete(serviceId);
    clearTimeout(timers.get(serviceId)?.t);
    timers.delete(serviceId);
  };

  /** rows the API told us about that are no longer stored (deleted at once): their copies go now */
  const sendTold = async (s: ServiceRow): Promise<boolean> => {
    const rows = told.get(s.id);
    if (!rows) return false;
    told.delete(s.id);
    const later: InstanceRow[] = [];
    for (const r of rows) {
      const cur = await store.getInstance(s.id, r.instance_number);
      if (cur) {
        // still stored: desired=stop rows are the plan's; a row still desired=run is about to be
        // deleted (an application or service deleted, maybe through another root whose delete has
        // not committed yet): it stays told, so that the pass after the delete sends its undeploy
        if (cur.desired !== 'stop') later.push(r);
        continue;
      }
      reservations.release(reservationKey(s.id, r.instance_number));
      if (r.cluster_id !== null && leftOnCluster(r.status)) link.send(r.cluster_id, undeployMsg(s.job_name, r.instance_number, r.epoch));
      await overlay.releaseInstances(s.job_name, [r.instance_number]).catch((err: unknown) => log.error({ err, service: s.job_name }, 'releasing overlay addresses failed'));
    }
    if (later.length > 0) told.set(s.id, [...later, ...(told.get(s.id) ?? [])]);
    return false;
  };

  /** the jobs placed on each cluster, from the placements of every service (store.listPlacements) */
  const jobsByCluster = async (all: readonly { service_id: string; cluster_id: string }[]): Promise<Map<string, string[]>> => {
    const jobOf = new Map<string, string>();
    for (const [job, id] of jobIds) jobOf.set(id, job);
    const out = new Map<string, string[]>();
    for (const r of all) {
      let job = jobOf.get(r.service_id);
      if (job === undefined) {
        const svc = await store.getService(r.service_id);
        if (!svc) continue;
        jobIds.set(svc.job_name, svc.id);
        jobOf.set(svc.id, (job = svc.job_name));
      }
      const list = out.get(r.cluster_id) ?? [];
      list.push(job);
      out.set(r.cluster_id, list);
    }
    return out;
  };

  const schedule = (serviceId: string, at: number | undefined): void => {
    const cur = timers.get(serviceId);
    if (at === undefined || closed) {
      if (cur) {
        clearTimeout(cur.t);
        timers.delete(serviceId);
      }
      return;
    }
    if (cur && cur.at === at) return;
    if (cur) clearTimeout(cur.t);
    const t = setTimeout(() => {
      timers.delete(serviceId);
      request(serviceId);
    }, Math.max(20, at - now() + 5));
    t.unref?.();
    timers.set(serviceId, { at, t });
  };

  // ------------------------------------------------------------------ applying a plan

  /** true when something changed (another pass may plan more) */
  const applyPlan = async (s0: ServiceRow, versions: readonly ServiceVersionRow[], instances: readonly InstanceRow[], clusters: readonly ClusterView[], plan: Plan): Promise<boolean> => {
    let s = s0;
    let changed = false;
    const rows = new Map(instances.map((r) => [r.instance_number, r]));
    const names = new Map(clusters.map((c) => [c.id, c.name]));
    const sentMap = sentOf(s.id);
    for (const a of plan.actions) {
      if (closed) return changed;
      try {
        const r = 'instance' in a ? rows.get(a.instance) : undefined;
        const res = await applyAction(s, a, r, versions, names, sentMap);
        if (res.service) s = res.service;
        if (res.row && 'instance' in a) rows.set(a.instance, res.row);
        changed = changed || res.changed;
      } catch (err) {
        log.error({ err, service: s.job_name, action: a.kind }, 'reconcile: an action failed; the next pass tries again');
        changed = true;
      }
    }
    return changed;
  };

  interface Applied {
    changed: boolean;
    row?: InstanceRow | undefined;
    service?: ServiceRow;
  }

  const applyAction = async (
    s: ServiceRow,
    a: Action,
    r: InstanceRow | undefined,
    versions: readonly ServiceVersionRow[],
    names: ReadonlyMap<string, string>,
    sentMap: Map<number, { undeploy_at?: number }>,
  ): Promise<Applied> => {
    const name = (n: number): string => instanceName(s.job_name, n);
    switch (a.kind) {
      case 'place': {
        if (!r) return { changed: false };
        let svc = s;
        let row = r;
        if (row.instance_ip === null || s.service_ip === null) {
          // its overlay addresses are persisted before the deploy goes out (lazily for data from before the overlay)
          try {
            const got = await overlay.assignInstances(s, [row]);
            svc = got.service;
            row = got.rows[0] ?? row;
          } catch (err) {
            const why = `no overlay address: ${err instanceof Error ? err.message : String(err)}`.slice(0, 500);
            log.warn({ instance: name(r.instance_number), reason: why }, 'instance waits for an overlay address');
            if (r.status_detail !== why) return { changed: false, row: await update(s, r, { status_detail: why }) };
            return { changed: false };
          }
        }
        // placed back on the cluster it was lost with: no longer lost (its copy there, if any, takes the new epoch)
        const back = row.lost_at !== null && row.last_cluster_id === a.cluster_id;
        const next = await update(svc, row, { status: 'CLUSTER_SCHEDULED', status_detail: a.note ?? '', cluster_id: a.cluster_id, worker_id: null, epoch: a.epoch, ...(back ? { lost_at: null } : {}) });
        if (!next) return { changed: false, service: svc };
        reservations.reserve(reservationKey(s.id, r.instance_number), a.cluster_id, demandOf(withVersion(svc, next, versions).sla, svc.job_name), now());
        log.info({ instance: name(r.instance_number), cluster: names.get(a.cluster_id), epoch: a.epoch }, 'instance scheduled on a cluster');
        const assigned = assignmentOf(withVersion(svc, next, versions), next, peersNow.get(s.id));
        const auth = await registryAuthOf(svc.organization_id, assigned.service);
        link.send(a.cluster_id, { type: 'deploy', instance: { ...assigned, epoch: a.epoch, ...(auth !== undefined ? { registry_auth: auth } : {}) } });
        return { changed: true, row: next, service: svc };
      }
      case 'wait': {
        if (!r || r.status_detail === a.reason) return { changed: false };
        log.info({ instance: name(r.instance_number), reason: a.reason }, 'instance waits');
        return { changed: false, row: await update(s, r, { status_detail: a.reason.slice(0, 500) }) };
      }
      case 'requeue': {
        if (!r) return { changed: false };
        const from = a.from_cluster;
        let row: InstanceRow | undefined = r;
        if (a.lost) {
          log.warn({ instance: name(r.instance_number), cluster: from !== null ? names.get(from) : undefined }, 'instance lost with its cluster: placed again');
          row = await update(s, r, { status: 'DEAD', status_detail: a.reason.slice(0, 500), net: null });
          if (!row) return { changed: false };
        } else {
          log.warn({ instance: name(r.instance_number), reason: a.reason }, 'instance placed again');
        }
        const next = await update(s, row, {
          status: 'REQUESTED',
          status_detail: `rescheduling: ${a.reason}`.slice(0, 500),
          cluster_id: null,
          worker_id: null,
          net: null,
          epoch: r.epoch + 1,
          last_cluster_id: from,
          lost_at: a.lost ? new Date(now()).toISOString() : null,
        });
        reservations.release(reservationKey(s.id, r.instance_number));
        sentMap.delete(r.instance_number);
        // the copy there (if any) goes; a lost cluster gets it when it comes back (stale report)
        if (from !== null && link.isConnected(from)) link.send(from, undeployMsg(s.job_name, r.instance_number, r.epoch));
        return { changed: true, row: next };
      }
      case 'create': {
        let row = await store.addInstance(s.id, 'REQUESTED', a.reason.slice(0, 500), { service_version: a.service_version, replaces: a.replaces });
        let svc = s;
        try {
          const got = await overlay.assignInstances(s, [row]);
          svc = got.service;
          row = got.rows[0] ?? row;
        } catch (err) {
          log.warn({ err, service: s.job_name }, 'overlay addresses for a new instance failed; they are given before the deploy');
        }
        log.info({ instance: name(row.instance_number), replaces: a.replaces, version: a.service_version }, a.reason);
        publish(svc, row);
        return { changed: true, service: svc };
      }
      case 'stop': {
        if (!r) return { changed: false };
        let row: InstanceRow | undefined = r;
        if (r.desired !== 'stop') {
          row = await update(s, r, { desired: 'stop', status_detail: a.reason.slice(0, 500) });
          if (!row) return { changed: false };
          log.info({ instance: name(r.instance_number), reason: a.reason }, 'instance stops');
        }
        return { changed: true, row: await sendStop(s, row, a.reason, sentMap) };
      }
      case 'resend_undeploy': {
        if (!r) return { changed: false };
        return { changed: true, row: await sendStop(s, r, r.status_detail || 'undeployed', sentMap) };
      }
      case 'finish': {
        if (!r) return { changed: false };
        return { changed: true, row: await finish(s, r, a.reason) };
      }
      case 'purge': {
        sentMap.delete(a.instance);
        try {
          // where it ran is remembered (its worker keeps its logs); older such records go now
          await store.deleteInstance(s.id, a.instance);
          await store.pruneEndedInstances(new Date(now() - ENDED_INSTANCE_MEMORY_MS).toISOString());
        } catch (err) {
          if (!(err instanceof OakError && err.code === 'OAK_NOT_FOUND')) throw err;
        }
        return { changed: false };
      }
      case 'retag': {
        if (!r || r.service_version === a.service_version) return { changed: false };
        return { changed: true, row: await update(s, r, { service_version: a.service_version }) };
      }
      case 'rollback': {
        const to = versions.find((v) => v.version === a.to_version) ?? (await store.getServiceVersion(s.id, a.to_version));
        if (!to) {
          log.error({ service: s.job_name, to: a.to_version }, 'rollback: that version is not stored');
          return { changed: false };
        }
        log.warn({ service: s.job_name, failed: a.failed_version, to: a.to_version, reason: a.reason }, 'rolling update failed: rolling back');
        const next = await store.updateService(s.id, { sla: to.sla }, { created_by: null, reason: `auto rollback to ${a.to_version}: ${a.reason}`.slice(0, 500) });
        events.publish({ type: 'service', action: 'updated', microserviceID: s.id, applicationID: s.application_id });
        return { changed: true, service: next };
      }
      case 'outcome': {
        const v = versions.find((x) => x.version === a.version);
        if (v && v.outcome === a.outcome) return { changed: false };
        await store.setVersionOutcome(s.id, a.version, a.outcome.slice(0, 500));
        log.info({ service: s.job_name, version: a.version, outcome: a.outcome }, 'rollout outcome');
        return { changed: false };
      }
      default:
        return { changed: false };
    }
  };

  /**
   * The undeploy of a stopping row goes to its cluster (with its epoch). Handed to a connected
   * link, it finishes the row (the cluster drops the instance at once; a sync after a reconnect
   * leaves it out). Not placed: finished at once. On a disconnected cluster: the core waits.
   */
  const sendStop = async (s: ServiceRow, r: InstanceRow, reason: string, sentMap: Map<number, { undeploy_at?: number }>): Promise<InstanceRow | undefined> => {
    if (r.cluster_id === null || TERMINAL_STATES.has(r.status)) return finish(s, r, reason);
    if (!link.isConnected(r.cluster_id)) return r;
    if (!link.send(r.cluster_id, undeployMsg(s.job_name, r.instance_number, r.epoch))) return r;
    sentMap.set(r.instance_number, { undeploy_at: now() });
    return finish(s, r, reason);
  };

  /** a stopping row is done: UNDEPLOYED (kept until purged), its addresses and reservation go */
  const finish = async (s: ServiceRow, r: InstanceRow, reason: string): Promise<InstanceRow | undefined> => {
    reservations.release(reservationKey(s.id, r.instance_number));
    sentOf(s.id).delete(r.instance_number);
    // an ended copy (FAILED, COMPLETED) may still be in its cluster's desired set: it goes there too
    if (r.cluster_id !== null && TERMINAL_STATES.has(r.status) && r.status !== 'UNDEPLOYED' && link.isConnected(r.cluster_id)) {
      link.send(r.cluster_id, undeployMsg(s.job_name, r.instance_number, r.epoch));
    }
    let row: InstanceRow | undefined = r;
    const patch: InstancePatch = {};
    if (r.status !== 'UNDEPLOYED') Object.assign(patch, { status: 'UNDEPLOYED', status_detail: reason.slice(0, 500), net: null });
    if (r.desired !== 'stop') patch.desired = 'stop';
    // the addresses go back to the pool (the row keeps no claim on them)
    if (r.instance_ip !== null || r.instance_ip_v6 !== null) Object.assign(patch, { instance_ip: null, instance_ip_v6: null });
    if (Object.keys(patch).length > 0) row = await update(s, r, patch);
    await overlay.releaseInstances(s.job_name, [r.instance_number]).catch((err: unknown) => log.error({ err, service: s.job_name }, 'releasing overlay addresses failed'));
    return row;
  };

  // ------------------------------------------------------------------ status intake

  const staleKey = (clusterId: string, job: string, n: number, epoch: number | undefined): string => `${clusterId}\u0000${job}\u0000${n}\u0000${epoch ?? '-'}`;

  const sendStale = (clusterId: string, m: InstanceStatusMessage): void => {
    if (m.status === 'UNDEPLOYED') return;
    const k = staleKey(clusterId, m.job_name, m.instance_number, m.epoch);
    if (staleSent.has(k)) return;
    if (staleSent.size >= MAX_STALE_MEMORY) staleSent.clear();
    staleSent.add(k);
    link.send(clusterId, undeployMsg(m.job_name, m.instance_number, m.epoch));
  };

  /** an instance_status: queued for its service's next pass (unknown jobs: the copy goes at once) */
  let backlog = 0;
  let droppedReports = 0;
  const onStatus = (clusterId: string, m: InstanceStatusMessage): void => {
    if (backlog >= MAX_REPORT_BACKLOG) {
      if (droppedReports++ % 1000 === 0) log.warn({ cluster_id: clusterId, backlog, dropped: droppedReports }, 'reconcile: too many reports waiting; new ones are dropped until the backlog shrinks');
      return;
    }
    backlog++;
    intake = intake
      .then(async () => {
        let sid = jobIds.get(m.job_name);
        if (sid === undefined) {
          const s = await store.getServiceByJobName(m.job_name);
          if (s) jobIds.set(s.job_name, (sid = s.id));
        }
        if (sid === undefined) {
          backlog--;
          // an instance the root does not have: the cluster should not run it
          if (m.status !== 'UNDEPLOYED') link.send(clusterId, undeployMsg(m.job_name, m.instance_number, m.epoch));
          return;
        }
        const list = reports.get(sid) ?? [];
        list.push({ clusterId, m, at: now() });
        reports.set(sid, list);
        holdOrRequest(sid, m);
      })
      .catch((err: unknown) => {
        backlog--;
        log.error({ err }, 'reconcile: an instance_status could not be queued');
      });
  };

  /**
   * A progress report waits up to progressWaitMs for the next report of its copy (at most 4 waits
   * in a row per service, so a stream of starts cannot hold its reports back); any other report,
   * and the end of the wait, asks for the service's pass.
   */
  const holdOrRequest = (sid: string, m: InstanceStatusMessage): void => {
    const h = holds.get(sid);
    if (progressWaitMs <= 0 || !holdsForNext(m)) {
      if (h) {
        clearTimeout(h.t);
        holds.delete(sid);
      }
      requestForReports(sid);
      return;
    }
    const t0 = Date.now();
    const until = h ? Math.min(t0 + progressWaitMs, h.until) : t0 + 4 * progressWaitMs;
    if (h) clearTimeout(h.t);
    const t = setTimeout(() => {
      holds.delete(sid);
      requestForReports(sid);
    }, Math.max(0, Math.min(progressWaitMs, until - t0)));
    holds.set(sid, { until, t });
  };
  const unhold = (sid: string): void => {
    const h = holds.get(sid);
    if (h) clearTimeout(h.t);
    holds.delete(sid);
  };

  /**
   * The queued reports of a service, judged and applied in order. changed: a status changed;
   * plan: a report was more than progress (fastPathStatus), so the service's plan may change.
   */
  const drainReports = async (s: ServiceRow): Promise<{ changed: boolean; plan: boolean }> => {
    const list = reports.get(s.id);
    if (!list) return { changed: false, plan: false };
    reports.delete(s.id);
    unhold(s.id);
    backlog -= list.length;
    let changed = false;
    let plan = false;
    for (const { clusterId, m, passed } of foldProgress(list)) {
      try {
        const r = await applyReport(s, clusterId, m, passed);
        changed = r.changed || changed;
        plan = plan || !r.progress;
      } catch (err) {
        plan = true;
        log.error({ err, cluster_id: clusterId, instance: instanceName(m.job_name, m.instance_number) }, 'reconcile: an instance_status failed');
      }
    }
    return { changed, plan };
  };

  const applyReport = async (s: ServiceRow, clusterId: string, m0: InstanceStatusMessage, passed?: readonly QueuedReport[]): Promise<{ changed: boolean; progress: boolean }> => {
    const r = await judgeAndApply(s, clusterId, m0, passed);
    return typeof r === 'boolean' ? { changed: r, progress: false } : r;
  };

  const judgeAndApply = async (s: ServiceRow, clusterId: string, m0: InstanceStatusMessage, passed: readonly QueuedReport[] = []): Promise<boolean | { changed: boolean; progress: boolean }> => {
    if (m0.job_name !== s.job_name) {
      // renamed since: the copy under the old name goes
      if (m0.status !== 'UNDEPLOYED') link.send(clusterId, undeployMsg(m0.job_name, m0.instance_number, m0.epoch));
      return false;
    }
    const row = await store.getInstance(s.id, m0.instance_number);
    if (!row) {
      if (m0.status !== 'UNDEPLOYED') link.send(clusterId, undeployMsg(m0.job_name, m0.instance_number, m0.epoch));
      return false;
    }
    const m = await net.checkNet(clusterId, m0);
    const replacement = row.lost_at !== null ? (await store.listInstances({ service_id: s.id })).find((x) => x.replaces === row.instance_number && x.desired === 'run') : undefined;
    const v = judgeReport(row, clusterId, m, { policy: policiesOf(s.sla, config).disconnect, now: now(), ...(replacement ? { replacement } : {}) });
    switch (v.kind) {
      case 'apply': {
        if (row.desired === 'stop' && v.patch.status !== undefined && TERMINAL_STATES.has(v.patch.status)) {
          await finish(s, row, v.patch.status === 'UNDEPLOYED' ? 'undeploy confirmed by its cluster' : `${v.patch.status}: ${v.patch.status_detail ?? row.status_detail}`);
          return true;
        }
        // the progress folded into this report (same copy): each in the history at its own time
        const on = row.desired === 'run' ? passed.map((p) => ({ status: p.m.status, status_detail: p.m.status_detail, at: new Date(p.at).toISOString() })) : [];
        await update(s, row, v.patch, on);
        if (v.patch.status !== undefined && !holdsCluster(v.patch.status)) reservations.release(reservationKey(s.id, row.instance_number));
        // a rollout under way: the current version (above 1: version 1 rolls nothing) has no outcome yet
        const rolling = v.patch.status === 'RUNNING' && (s.version > 1 && ((await store.getServiceVersion(s.id, s.version))?.outcome ?? null) === null);
        return { changed: v.patch.status !== undefined, progress: fastPathStatus(row, v.patch, s.version, rolling) };
      }
      case 'stale':
        log.info({ cluster_id: clusterId, instance: instanceName(m.job_name, m.instance_number), epoch: m.epoch, reason: v.reason }, 'stale copy: undeployed there');
        sendStale(clusterId, m);
        return false;
      case 'adopt': {
        // the lost original is back and stays: the replacement's copy (if placed) goes
        if (row.cluster_id !== null && row.cluster_id !== clusterId && holdsCluster(row.status)) {
          link.send(row.cluster_id, undeployMsg(s.job_name, row.instance_number, row.epoch));
          reservations.release(reservationKey(s.id, row.instance_number));
        }
        // a replacement that is another row goes (the next pass undeploys it)
        if (replacement && replacement.desired === 'run') await update(s, replacement, { desired: 'stop', status_detail: `the lost instance ${row.instance_number} came back and stays` });
        log.info({ cluster_id: clusterId, instance: instanceName(m.job_name, m.instance_number), epoch: v.epoch, reason: v.reason }, 'lost instance back: adopted');
        const patch: InstancePatch = { cluster_id: clusterId, epoch: v.epoch, status: m.status, status_detail: m.status_detail, worker_id: m.worker_id, lost_at: null };
        if (m.publicip !== undefined) patch.publicip = m.publicip;
        if (m.net !== undefined) patch.net = m.net;
        await update(s, row, patch);
        return true;
      }
      default:
        return false;
    }
  };

  // ------------------------------------------------------------------ clusters coming and going

  const sync = async (clusterId: string): Promise<void> => {
    if (!link.isConnected(clusterId)) return;
    const rows = (await store.listInstances({ cluster_id: clusterId })).filter((r) => holdsCluster(r.status) && r.desired !== 'stop');
    // instances taken from this cluster when it was lost, whose disconnect.reconcile policy keeps
    // the original: they stay in its desired set (without an epoch), so that its copy survives the
    // sync and its report adopts the row back (intake.ts); the replacement then goes
    const adoptable = (await store.listInstances({ desired: 'run' })).filter((r) => r.lost_at !== null && r.last_cluster_id === clusterId && r.cluster_id !== clusterId);
    const keep = new Set<InstanceRow>();
    for (const r of adoptable) {
      const svc = await store.getService(r.service_id);
      const policy = svc ? policiesOf(svc.sla, config).disconnect.reconcile : 'keep_replacement';
      // best_score: the original stays unless its replacement runs already
      if (policy === 'keep_original' || (policy === 'best_score' && r.status !== 'RUNNING')) {
        keep.add(r);
        rows.push(r);
      }
    }
    const instances = [];
    const byService = new Map<string, InstanceRow[]>();
    for (const r of rows) byService.set(r.service_id, [...(byService.get(r.service_id) ?? []), r]);
    for (const [sid, list] of byService) {
      let s = await store.getService(sid);
      if (!s) continue;
      let addressed = list;
      if (s.service_ip === null || list.some((r) => r.instance_ip === null)) {
        try {
          const a = await overlay.assignInstances(s, list);
          s = a.service;
          addressed = a.rows;
        } catch (err) {
          log.warn({ err, service: s.job_name }, 'sync: overlay addresses could not be given; sent without');
        }
      }
      const versions = list.some((r) => r.service_version !== s?.version) ? await store.listServiceVersions(s.id) : [];
      const peers = await peersOf(s);
      for (const r of addressed) {
        const adopt = [...keep].some((k) => k.service_id === r.service_id && k.instance_number === r.instance_number);
        const a0 = assignmentOf(withVersion(s, r, versions), r, peers);
        const auth = await registryAuthOf(s.organization_id, a0.service);
        const a = auth !== undefined ? { ...a0, registry_auth: auth } : a0;
        instances.push(adopt ? { ...a, worker_id: null } : { ...a, ...(r.epoch > 0 ? { epoch: r.epoch } : {}) });
      }
    }
    link.send(clusterId, { type: 'sync', instances });
    log.info({ cluster_id: clusterId, instances: instances.length, adoptable: keep.size }, 'sync sent');
  };

  const clusterLostTimer = (clusterId: string): void => {
    clearTimeout(lostTimers.get(clusterId));
    const t = setTimeout(() => {
      lostTimers.delete(clusterId);
      if (link.isConnected(clusterId)) return;
      reservations.forgetCluster(clusterId);
      net.queuePeers();
      kickAll();
    }, config.disconnect.lost_after_s * 1000 + 10);
    t.unref?.();
    lostTimers.set(clusterId, t);
  };

  link.setListener({
    connected(c) {
      clustersChanged();
      disconnectedSince.delete(c.id);
      clearTimeout(lostTimers.get(c.id));
      lostTimers.delete(c.id);
      for (const k of staleSent) if (k.startsWith(`${c.id}\u0000`)) staleSent.delete(k);
      net.linkChanged(c.id);
      // the sync goes out after every pass queued so far (they may have sent deploys on the old link)
      void (async () => {
        await started;
        await sync(c.id);
      })()
        .catch((err: unknown) => log.error({ err, cluster_id: c.id }, 'sync failed'))
        .finally(kickAll);
    },
    disconnected(c) {
      clustersChanged();
      if (!disconnectedSince.has(c.id)) disconnectedSince.set(c.id, now());
      relay.clusterGone(c.id, `cluster ${c.name} disconnected`);
      net.linkChanged(c.id);
      if (!closed) {
        clusterLostTimer(c.id);
        kickAll();
      }
    },
    aggregate(c) {
      clustersChanged();
      reservations.settle(c.id, now(), settleMs);
      net.queuePeers();
      void store
        .listInstances({ statuses: ['REQUESTED'] })
        .then((rows) => {
          for (const id of new Set(rows.map((r) => r.service_id))) request(id);
        })
        .catch((err: unknown) => log.error({ err }, 'reconcile: listing waiting instances failed'));
    },
    message(clusterId, m) {
      try {
        if (m.type === 'instance_status') onStatus(clusterId, m);
        else if (m.type === 'logs_data' || m.type === 'logs_end') relay.onMessage(clusterId, m);
        else net.onMessage(clusterId, m);
      } catch (err) {
        // one bad message is dropped, never the process
        log.error({ err, cluster_id: clusterId, type: m.type }, 'link: message handler failed; message dropped');
      }
    },
  });

  // at start no cluster is connected yet: each counts as away since now (lost after lost_after)
  started = (async () => {
    const t = now();
    for (const c of await store.listClusters()) {
      if (link.isConnected(c.id) || disconnectedSince.has(c.id)) continue;
      disconnectedSince.set(c.id, t);
      clusterLostTimer(c.id);
    }
    // a data dir from before the overlay: its services and instances get their addresses now
    for (const s of await store.listServices()) {
      const missing = (await store.listInstances({ service_id: s.id })).filter((r) => r.instance_ip === null && r.desired !== 'stop');
      if (s.service_ip !== null && missing.length === 0) continue;
      await overlay.assignInstances(s, missing).catch((err: unknown) => log.warn({ err, service: s.job_name }, 'overlay addresses for a stored service failed'));
    }
  })().catch((err: unknown) => log.error({ err }, 'reconcile: start failed'));
  kickAll();
  let unlisten: Promise<(() => Promise<void>) | undefined> = Promise.resolve(undefined);
  if (o.notifications !== false) {
    unlisten = store
      .listen(RECONCILE_CHANNEL, (payload) => {
        if (payload === '*') kickAll();
        else if (SERVICE_ID.test(payload)) request(payload);
        else log.warn({ payload: payload.slice(0, 80) }, 'reconcile: a notification that is no service id was ignored');
      })
      .catch((err: unknown) => {
        log.error({ err }, 'reconcile: listening for other roots failed; their changes arrive with the resync');
        return undefined;
      });
  }
  const resync = setInterval(kickAll, o.resyncMs ?? 5000);
  resync.unref?.();

  const idle = async (): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      await started;
      const before = intake;
      await intake;
      // reports held for their successor (holdOrRequest) are queued when their wait ends
      if (holds.size > 0) await new Promise((r) => setTimeout(r, progressWaitMs));
      await queue.idle();
      if (before === intake && queue.size === 0 && holds.size === 0) return;
    }
  };

  return {
    link,
    instancesRequested(service) {
      jobIds.set(service.job_name, service.id);
      request(service.id);
    },
    instancesUndeployed(service, rows) {
      jobIds.set(service.job_name, service.id);
      told.set(service.id, [...(told.get(service.id) ?? []), ...rows]);
      request(service.id);
    },
    serviceUpdated(service) {
      jobIds.set(service.job_name, service.id);
      request(service.id);
    },
    serviceChanged(id) {
      request(id);
    },
    logs(service, instance, opts: LogOptions): Promise<AsyncIterable<string>> {
      return relay.logs(service, instance, opts);
    },
    idle,
    kick: kickAll,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(resync);
      for (const { t } of timers.values()) clearTimeout(t);
      timers.clear();
      for (const t of lostTimers.values()) clearTimeout(t);
      lostTimers.clear();
      for (const h of holds.values()) clearTimeout(h.t);
      holds.clear();
      relay.close();
      await (await unlisten)?.().catch(() => undefined);
      await intake.catch(() => undefined);
      await queue.close();
      await net.close();
      if (o.ownsLink !== false) await link.close();
    },
  };
}
