/**
 * The root's control plane over the cluster link: places REQUESTED instances on clusters
 * (pickCluster over the clusters' latest aggregates, with the root's own placements subtracted at
 * once), keeps each cluster's desired set in step (deploy, undeploy, and a full `sync` whenever a
 * cluster connects), stores what clusters report, re-places the instances of a cluster that stays
 * away longer than the grace period, and relays log requests.
 *
 * Everything that reads and writes instances runs in one serial queue, so that a sync never
 * misses a deploy that was decided at the same moment.
 *
 * A changed SLA (serviceUpdated) rolls the service's placed instances one at a time: a
 * replacement is stored REQUESTED and placed like any other (so it gets the new SLA); once it
 * runs, the old instance is undeployed. A replacement that fails or does not run within
 * `rolloutTimeoutMs` is undeployed and the rollout stops, leaving the remaining old instances
 * running. A newer update of the same service restarts its rollout from the current state. The
 * waiting happens outside the queue (store reads on instance events and on a short poll).
 */
import { randomUUID } from 'node:crypto';
import { OakError, instanceName } from '@oak/contracts';
import type { ClusterToRoot, RootToCluster } from '@oak/contracts';
import { demandOf, pickCluster } from '@oak/scheduler';
import type { Strategy } from '@oak/scheduler';
import type { InstancePatch, InstanceRow, ServiceRow, Store } from '@oak/store';
import type { ControlPlane, LogOptions } from '../control.ts';
import { instanceDoc } from '../docs.ts';
import { LogBuffer } from '../log-buffer.ts';
import type { EventHub } from '../events.ts';
import { RootReservations, assignmentOf, clusterCandidates, holdsCluster, instanceKey, judgeStatus } from '../placement.ts';
import { silentLinkLog } from './codec.ts';
import type { LinkLog } from './codec.ts';
import type { LinkServer } from './server.ts';
import { DEFAULT_ROLLOUT_TIMEOUT_MS, judgeReplacement, rolloutTargets, serviceFingerprint } from './rollout.ts';
import type { ReplacementVerdict } from './rollout.ts';

export interface LinkControlOptions {
  link: LinkServer;
  store: Store;
  events: EventHub;
  /** a cluster INACTIVE this long loses its instances to other clusters (default 15 s) */
  graceMs?: number;
  /** REQUESTED instances are retried this often, besides on every change (default 5 s) */
  retryMs?: number;
  /** root reservations older than this are counted in a cluster's next aggregate (default 1 s) */
  settleMs?: number;
  strategy?: Strategy;
  /** a rolling update stops when a replacement is not RUNNING this long after it was requested (default 120 s) */
  rolloutTimeoutMs?: number;
  /** how often a rolling update re-reads its replacement besides on its events (default 500 ms) */
  rolloutPollMs?: number;
  log?: LinkLog;
  /** close() also closes the link server (default true) */
  ownsLink?: boolean;
}

export interface LinkControlPlane extends ControlPlane {
  readonly link: LinkServer;
  /** resolves when everything queued so far is done (tests) */
  idle(): Promise<void>;
  /** runs a placement round now */
  kick(): void;
  close(): Promise<void>;
}

interface LogSession {
  cluster_id: string;
  /** bounded; cut per batch (LOG_LIMITS) */
  lines: LogBuffer;
  done: boolean;
  error: string | undefined;
  wake: (() => void) | undefined;
}

/** The rollout of one service; a newer one for the same service replaces it in `rollouts`. */
interface Rollout {
  /** the replacement being waited for, stored but its old instance not yet undeployed */
  replacement: InstanceRow | undefined;
  /**
   * The replacement an earlier rollout was waiting for: it carries an outdated SLA and is one
   * too many. It goes once this rollout's first replacement is stored, so that the new one does
   * not take its instance number (late reports about the old one would land on the new one).
   */
  stale: InstanceRow | undefined;
}

/** the fingerprint of a service whose last rollout stopped half-way (equals no real one) */
const UNSETTLED = '';

type WaitResult = ReplacementVerdict | { kind: 'timeout' } | { kind: 'stopped' };

export function createLinkControlPlane(o: LinkControlOptions): LinkControlPlane {
  const { link, store, events } = o;
  const log = o.log ?? silentLinkLog;
  const graceMs = o.graceMs ?? 15_000;
  const settleMs = o.settleMs ?? 1000;
  const reservations = new RootReservations();
  const graceTimers = new Map<string, NodeJS.Timeout>();
  const logSessions = new Map<string, LogSession>();
  /** instances undeployed by the API: a round that read them just before must not place them */
  const gone = new Map<string, number>();
  const rolloutTimeoutMs = o.rolloutTimeoutMs ?? DEFAULT_ROLLOUT_TIMEOUT_MS;
  const rolloutPollMs = o.rolloutPollMs ?? 500;
  const rollouts = new Map<string, Rollout>();
  /** what each service's instances were last deployed with, to skip updates that change nothing */
  const fingerprints = new Map<string, string>();
  /** ends the waits of running rollouts (close) */
  const waits = new Set<() => void>();
  let queue: Promise<void> = Promise.resolve();
  let closed = false;
  let roundQueued = false;

  const enqueue = (what: string, fn: () => Promise<void>): Promise<void> => {
    queue = queue.then(async () => {
      if (closed) return;
      try {
        await fn();
      } catch (err) {
        log.error({ err, what }, 'control plane step failed');
      }
    });
    return queue;
  };

  const publish = (s: ServiceRow, row: InstanceRow): void => {
    events.publish({ type: 'instance', microserviceID: s.id, applicationID: s.application_id, job_name: s.job_name, instance: instanceDoc(row) });
  };

  const update = async (s: ServiceRow, row: InstanceRow, patch: InstancePatch): Promise<InstanceRow | undefined> => {
    try {
      const next = await store.updateInstance(s.id, row.instance_number, patch);
      publish(s, next);
      return next;
    } catch (err) {
      if (err instanceof OakError && err.code === 'OAK_NOT_FOUND') return undefined; // undeployed meanwhile
      throw err;
    }
  };

  // ------------------------------------------------------------------ placement

  const round = async (): Promise<void> => {
    roundQueued = false;
    const pending = await store.listInstances({ statuses: ['REQUESTED'] });
    if (pending.length === 0) return;
    const now = Date.now();
    for (const [k, t] of gone) if (now - t > 60_000) gone.delete(k);
    const services = new Map<string, ServiceRow>();
    for (const s of await store.listServices()) {
      services.set(s.id, s);
      if (!fingerprints.has(s.id)) fingerprints.set(s.id, serviceFingerprint(s));
    }
    const jobs = new Map<string, string[]>();
    for (const r of await store.listInstances()) {
      if (r.cluster_id === null || !holdsCluster(r.status)) continue;
      const job = services.get(r.service_id)?.job_name;
      if (job === undefined) continue;
      const list = jobs.get(r.cluster_id) ?? [];
      list.push(job);
      jobs.set(r.cluster_id, list);
    }
    const clusters = await store.listClusters();
    const names = new Map(clusters.map((c) => [c.id, c.name]));
    let candidates = reservations.apply(clusterCandidates(clusters, (id) => link.isConnected(id), jobs));
    pending.sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.instance_number - b.instance_number));
    for (const row of pending) {
      const key = instanceKey(row);
      if (gone.has(key)) continue;
      const s = services.get(row.service_id);
      if (!s) continue;
      const demand = demandOf(s.sla, s.job_name);
      const r = pickCluster(demand, candidates, o.strategy ? { strategy: o.strategy } : {});
      if (!r.ok) {
        if (row.status_detail !== r.reason) {
          log.info({ instance: instanceName(s.job_name, row.instance_number), reason: r.reason, detail: r.detail }, 'instance waits for a cluster');
          await update(s, row, { status_detail: r.reason });
        }
        continue;
      }
      const cid = r.target.id;
      const next = await update(s, row, { status: 'CLUSTER_SCHEDULED', status_detail: '', cluster_id: cid, worker_id: null });
      if (!next) continue;
      reservations.reserve(key, cid, demand, Date.now());
      candidates = reservations.apply(clusterCandidates(clusters, (id) => link.isConnected(id), jobs));
      (jobs.get(cid) ?? jobs.set(cid, []).get(cid))?.push(s.job_name);
      log.info({ instance: instanceName(s.job_name, row.instance_number), cluster: names.get(cid) }, 'instance scheduled on a cluster');
      link.send(cid, { type: 'deploy', instance: assignmentOf(s, next) });
    }
  };

  const kick = (): void => {
    if (closed || roundQueued) return;
    roundQueued = true;
    void enqueue('placement round', round);
  };

  // ------------------------------------------------------------------ clusters coming and going

  const sync = async (clusterId: string): Promise<void> => {
    if (!link.isConnected(clusterId)) return;
    const rows = (await store.listInstances({ cluster_id: clusterId })).filter((r) => holdsCluster(r.status));
    const instances = [];
    for (const r of rows) {
      const s = await store.getService(r.service_id);
      if (s) instances.push(assignmentOf(s, r));
    }
    link.send(clusterId, { type: 'sync', instances });
    log.info({ cluster_id: clusterId, instances: instances.length }, 'sync sent');
  };

  const clusterLost = async (clusterId: string): Promise<void> => {
    graceTimers.delete(clusterId);
    if (link.isConnected(clusterId)) return;
    const cluster = await store.getCluster(clusterId);
    const name = cluster?.name ?? clusterId;
    reservations.forgetCluster(clusterId);
    const rows = (await store.listInstances({ cluster_id: clusterId })).filter((r) => holdsCluster(r.status));
    if (rows.length > 0) log.warn({ cluster: name, instances: rows.length }, 'cluster stayed away past the grace period: re-placing its instances');
    for (const r of rows) {
      const s = await store.getService(r.service_id);
      if (!s) continue;
      const dead = await update(s, r, { status: 'DEAD', status_detail: `cluster ${name} lost` });
      if (!dead) continue;
      await update(s, dead, { status: 'REQUESTED', status_detail: `rescheduling: cluster ${name} lost`, cluster_id: null, worker_id: null });
    }
    kick();
  };

  const startGrace = (clusterId: string): void => {
    clearTimeout(graceTimers.get(clusterId));
    const t = setTimeout(() => void enqueue('cluster lost', () => clusterLost(clusterId)), graceMs);
    t.unref?.();
    graceTimers.set(clusterId, t);
  };

  const endLogs = (clusterId: string, error: string): void => {
    for (const s of logSessions.values()) {
      if (s.cluster_id !== clusterId || s.done) continue;
      s.done = true;
      s.error = error;
      s.wake?.();
    }
  };

  const onStatus = async (clusterId: string, m: Extract<ClusterToRoot, { type: 'instance_status' }>): Promise<void> => {
    const s = await store.getServiceByJobName(m.job_name);
    const row = s ? await store.getInstance(s.id, m.instance_number) : undefined;
    if (!s || !row) {
      // an instance the root no longer has: the cluster should not run it
      if (m.status !== 'UNDEPLOYED') link.send(clusterId, { type: 'undeploy', job_name: m.job_name, instance_number: m.instance_number });
      return;
    }
    const v = judgeStatus(row, clusterId, m);
    if (v.kind === 'foreign') {
      if (m.status !== 'UNDEPLOYED') link.send(clusterId, { type: 'undeploy', job_name: m.job_name, instance_number: m.instance_number });
      return;
    }
    if (v.kind !== 'apply') return;
    await update(s, row, v.patch);
    if (v.patch.status !== undefined && !holdsCluster(v.patch.status)) reservations.release(instanceKey(row));
  };

  // ------------------------------------------------------------------ undeploy

  /** Undeployed instances: a round that read them just before must not place them; their reservations go. */
  const forget = (rows: readonly InstanceRow[]): void => {
    const now = Date.now();
    for (const r of rows) {
      gone.set(instanceKey(r), now);
      reservations.release(instanceKey(r));
    }
  };

  const sendUndeploy = (s: ServiceRow, r: InstanceRow): void => {
    if (r.cluster_id !== null) link.send(r.cluster_id, { type: 'undeploy', job_name: s.job_name, instance_number: r.instance_number });
  };

  /**
   * Undeploys one instance the control plane decided to remove (in the queue), as the API's
   * DELETE instance does: the row goes, its cluster is told, the event says UNDEPLOYED. False if
   * it was already gone (a row created at another time is another instance).
   */
  const removeInstance = async (s: ServiceRow, which: InstanceRow, detail: string): Promise<boolean> => {
    const row = await store.getInstance(s.id, which.instance_number);
    if (!row || row.created_at !== which.created_at) return false;
    try {
      await store.deleteInstance(s.id, row.instance_number);
    } catch (err) {
      if (err instanceof OakError && err.code === 'OAK_NOT_FOUND') return false;
      throw err;
    }
    forget([row]);
    sendUndeploy(s, row);
    publish(s, { ...row, status: 'UNDEPLOYED', status_detail: detail, updated_at: new Date().toISOString() });
    return true;
  };

  // ------------------------------------------------------------------ rolling update

  /** Waits (outside the queue) until the replacement runs, ends, goes, or the time is up. */
  const waitReplacement = (s: ServiceRow, repl: InstanceRow, active: () => boolean): Promise<WaitResult> =>
    new Promise<WaitResult>((resolve) => {
      const oneShot = s.sla.one_shot === true;
      let done = false;
      let checking = false;
      let again = false;
      const finish = (r: WaitResult): void => {
        if (done) return;
        done = true;
        unsubscribe();
        clearInterval(poll);
        clearTimeout(timer);
        waits.delete(stop);
        resolve(r);
      };
      const stop = (): void => finish({ kind: 'stopped' });
      const check = async (): Promise<void> => {
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        try {
          do {
            again = false;
            if (done) return;
            if (!active()) return finish({ kind: 'stopped' });
            const v = judgeReplacement(repl, await store.getInstance(s.id, repl.instance_number), oneShot);
            if (v.kind !== 'waiting') return finish(v);
          } while (again);
        } catch (err) {
          log.warn({ err, instance: instanceName(s.job_name, repl.instance_number) }, 'rolling update: reading the replacement failed; trying again');
        } finally {
          checking = false;
        }
      };
      const unsubscribe = events.subscribe((e) => {
        if (e.type === 'instance' && e.microserviceID === s.id && e.instance.instance_number === repl.instance_number) void check();
      });
      const poll = setInterval(() => void check(), rolloutPollMs);
      const timer = setTimeout(() => finish({ kind: 'timeout' }), rolloutTimeoutMs);
      poll.unref?.();
      timer.unref?.();
      waits.add(stop);
      void check();
    });

  const rollout = async (serviceId: string, state: Rollout, previous: Rollout | undefined): Promise<void> => {
    try {
      await rolloutSteps(serviceId, state, previous);
    } finally {
      if (rollouts.get(serviceId) === state) rollouts.delete(serviceId);
    }
  };

  const rolloutSteps = async (serviceId: string, state: Rollout, previous: Rollout | undefined): Promise<void> => {
    const active = (): boolean => !closed && rollouts.get(serviceId) === state;
    let targets: InstanceRow[] = [];
    let job = serviceId;
    const dropStale = async (s: ServiceRow): Promise<void> => {
      const r = state.stale;
      state.stale = undefined;
      if (r && (await removeInstance(s, r, 'rolling update restarted'))) {
        log.info({ instance: instanceName(s.job_name, r.instance_number) }, 'rolling update restarted: the replacement it waited for is undeployed');
      }
    };
    await enqueue('rolling update: start', async () => {
      // take over what the previous rollout left (even if a newer one took over already: it takes
      // it from here; start steps run in the order of the updates). At most one of them is set:
      // a rollout drops its stale one when it stores its first replacement.
      if (previous) {
        state.stale = previous.replacement ?? previous.stale;
        previous.replacement = undefined;
        previous.stale = undefined;
      }
      if (!active()) return;
      const s = await store.getService(serviceId);
      if (!s) return;
      job = s.job_name;
      const staleKey = state.stale ? instanceKey(state.stale) : undefined;
      targets = rolloutTargets(await store.listInstances({ service_id: serviceId })).filter((r) => instanceKey(r) !== staleKey);
      if (targets.length > 0) log.info({ service: s.job_name, instances: targets.length }, 'rolling update: replacing instances one at a time');
    });
    let completed = false;
    try {
      completed = await replaceEach(serviceId, state, targets, active, (s) => dropStale(s));
    } finally {
      // nothing was replaced (or the rollout stopped first): the stale replacement still goes,
      // unless a newer rollout took it over
      if (!closed) {
        await enqueue('rolling update: drop stale replacement', async () => {
          if (!active() || !state.stale) return;
          const s = await store.getService(serviceId);
          if (s) await dropStale(s);
        });
      }
    }
    if (completed && targets.length > 0) log.info({ service: job }, 'rolling update done');
  };

  /** Replaces `targets` one at a time; true when it went through all of them. */
  const replaceEach = async (serviceId: string, state: Rollout, targets: InstanceRow[], active: () => boolean, added: (s: ServiceRow) => Promise<void>): Promise<boolean> => {
    let replaced = 0;
    for (const old of targets) {
      if (!active()) return false;
      let service: ServiceRow | undefined;
      let repl: InstanceRow | undefined;
      await enqueue('rolling update: add replacement', async () => {
        if (!active()) return;
        service = await store.getService(serviceId);
        if (!service) return;
        const cur = await store.getInstance(serviceId, old.instance_number);
        // undeployed, ended or re-placed (and so re-placed with the new SLA) meanwhile: nothing to replace
        if (!cur || cur.created_at !== old.created_at || !holdsCluster(cur.status)) return;
        repl = await store.addInstance(serviceId, 'REQUESTED', `rolling update: replaces instance ${old.instance_number}`);
        state.replacement = repl;
        publish(service, repl);
        await added(service);
      });
      if (!active() || !service) return false;
      if (!repl) continue;
      const s: ServiceRow = service;
      const r: InstanceRow = repl;
      const oldName = instanceName(s.job_name, old.instance_number);
      const newName = instanceName(s.job_name, r.instance_number);
      log.info({ instance: oldName, replacement: newName }, 'rolling update: replacement requested');
      kick();
      const verdict = await waitReplacement(s, r, active);
      let stopped = false;
      await enqueue('rolling update: step', async () => {
        if (!active()) return; // a newer rollout took over (and removes this replacement)
        if (verdict.kind === 'ready') {
          state.replacement = undefined;
          if (await removeInstance(s, old, 'replaced by a rolling update')) {
            replaced++;
            log.info({ instance: oldName, replacement: newName }, 'rolling update: instance replaced');
          } else {
            // the old instance was undeployed meanwhile (scale down): its replacement goes too
            await removeInstance(s, r, 'the instance it replaced was undeployed');
          }
          return;
        }
        stopped = true;
        // the instances left run the SLA of before: the same SLA again must roll them
        fingerprints.set(serviceId, UNSETTLED);
        if (state.replacement === r) {
          state.replacement = undefined;
          await removeInstance(s, r, `rolling update stopped: ${verdict.kind === 'failed' ? verdict.reason : verdict.kind === 'timeout' ? 'not RUNNING in time' : 'replacement gone'}`);
        }
        const why =
          verdict.kind === 'failed' ? `the replacement failed: ${verdict.reason}` : verdict.kind === 'timeout' ? `the replacement was not RUNNING within ${rolloutTimeoutMs} ms` : 'the replacement was undeployed';
        log.warn({ service: s.job_name, replacement: newName, replaced, left: targets.length - replaced }, `rolling update stopped: ${why}; the remaining instances keep running`);
      });
      if (stopped || !active()) return false;
    }
    return active();
  };

  link.setListener({
    connected(c) {
      clearTimeout(graceTimers.get(c.id));
      graceTimers.delete(c.id);
      void enqueue('sync', () => sync(c.id));
      kick();
    },
    disconnected(c) {
      endLogs(c.id, `cluster ${c.name} disconnected`);
      if (!closed) startGrace(c.id);
    },
    aggregate(c) {
      void enqueue('aggregate', async () => {
        reservations.settle(c.id, Date.now(), settleMs);
      });
      kick();
    },
    message(clusterId, m) {
      try {
        onMessage(clusterId, m);
      } catch (err) {
        // one bad message is dropped, never the process
        log.error({ err, cluster_id: clusterId, type: m.type }, 'link: message handler failed; message dropped');
      }
    },
  });

  /** instance_status, logs_data, logs_end from a cluster (guarded by the listener above) */
  function onMessage(clusterId: string, m: ClusterToRoot): void {
    switch (m.type) {
      case 'instance_status':
        void enqueue('instance status', () => onStatus(clusterId, m));
        return;
      case 'logs_data': {
        const s = logSessions.get(m.request_id);
        if (!s || s.cluster_id !== clusterId || s.done) return;
        s.lines.push(m.lines); // capped, never spread: a batch may hold any number of lines
        s.wake?.();
        return;
      }
      case 'logs_end': {
        const s = logSessions.get(m.request_id);
        if (!s || s.cluster_id !== clusterId) return;
        s.done = true;
        s.error = m.error;
        s.wake?.();
        return;
      }
      default:
        return;
    }
  }

  // at start no cluster is connected yet: those that had instances get the grace period to come back
  void enqueue('start', async () => {
    const held = new Set<string>();
    for (const r of await store.listInstances()) if (r.cluster_id !== null && holdsCluster(r.status)) held.add(r.cluster_id);
    for (const s of await store.listServices()) if (!fingerprints.has(s.id)) fingerprints.set(s.id, serviceFingerprint(s));
    for (const id of held) if (!link.isConnected(id) && !graceTimers.has(id)) startGrace(id);
  });
  kick();
  const retry = setInterval(kick, o.retryMs ?? 5000);
  retry.unref?.();

  return {
    link,
    instancesRequested() {
      kick();
    },
    instancesUndeployed(service, rows) {
      forget(rows);
      void enqueue('undeploy', async () => {
        for (const r of rows) sendUndeploy(service, r);
      });
    },
    serviceUpdated(service) {
      if (closed) return;
      const fp = serviceFingerprint(service);
      const before = fingerprints.get(service.id);
      fingerprints.set(service.id, fp);
      if (before === fp) return; // nothing its instances run with has changed
      const previous = rollouts.get(service.id);
      const state: Rollout = { replacement: undefined, stale: undefined };
      rollouts.set(service.id, state);
      kick(); // REQUESTED instances are placed from the stored (new) SLA
      void rollout(service.id, state, previous).catch((err: unknown) => log.error({ err, service: service.job_name }, 'rolling update failed'));
    },
    logs(service, instance, opts: LogOptions): AsyncIterable<string> {
      const cid = instance.cluster_id;
      if (cid === null || !holdsCluster(instance.status)) {
        throw new OakError('OAK_UNAVAILABLE', `${instanceName(service.job_name, instance.instance_number)} is ${instance.status}: it runs on no cluster`, {
          hint: 'logs come from the worker that runs the instance; wait until it is scheduled',
        });
      }
      if (!link.isConnected(cid)) {
        throw new OakError('OAK_UNAVAILABLE', `the cluster of ${instanceName(service.job_name, instance.instance_number)} is not connected`, { hint: 'try again once the cluster is back' });
      }
      const clusterId: string = cid;
      const rid = randomUUID();
      const session: LogSession = { cluster_id: clusterId, lines: new LogBuffer(), done: false, error: undefined, wake: undefined };
      logSessions.set(rid, session);
      const req: Extract<RootToCluster, { type: 'logs' }> = {
        type: 'logs',
        request_id: rid,
        job_name: service.job_name,
        instance_number: instance.instance_number,
        follow: opts.follow,
      };
      if (opts.tail !== undefined) req.tail = opts.tail;
      if (!link.send(cid, req)) {
        session.done = true;
        session.error = 'the cluster went away';
      }
      const onAbort = (): void => session.wake?.();
      opts.signal.addEventListener('abort', onAbort, { once: true });
      async function* stream(): AsyncGenerator<string> {
        try {
          for (;;) {
            for (let line = session.lines.shift(); line !== undefined; line = session.lines.shift()) {
              if (opts.signal.aborted) return;
              yield line;
            }
            if (session.done) {
              if (session.error !== undefined) throw new OakError('OAK_UNAVAILABLE', session.error);
              return;
            }
            if (opts.signal.aborted) return;
            await new Promise<void>((resolve) => {
              session.wake = resolve;
            });
            session.wake = undefined;
          }
        } finally {
          opts.signal.removeEventListener('abort', onAbort);
          logSessions.delete(rid);
          if (!session.done) link.send(clusterId, { type: 'logs_cancel', request_id: rid });
        }
      }
      return stream();
    },
    idle: async () => {
      let q: Promise<void>;
      do {
        q = queue;
        await q;
      } while (q !== queue);
    },
    kick,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(retry);
      for (const t of graceTimers.values()) clearTimeout(t);
      graceTimers.clear();
      for (const stop of [...waits]) stop();
      for (const s of logSessions.values()) {
        s.done = true;
        s.error ??= 'the root is shutting down';
        s.wake?.();
      }
      await queue;
      if (o.ownsLink !== false) await link.close();
    },
  };
}
