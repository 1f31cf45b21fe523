/**
 * The follower's control plane (several roots on one PostgreSQL): it places nothing itself. What
 * the API tells it (instancesRequested / instancesUndeployed / serviceUpdated, a revoked join
 * token) is forwarded to the leading root as `store.notify('oak_reconcile', {v:1, service_id,
 * what, ...})`; the leader listens (listenRelayed) and calls its own control plane with the
 * service row read from the store. Logs are relayed by the leader only: logs() answers 503
 * OAK_UNAVAILABLE naming the leader's API URL.
 *
 * Bounded: calls are coalesced per (what, service) in a pending map of at most `pendingCap`
 * entries (beyond it a call is dropped and counted: the leader's periodic resync heals it) and
 * sent by one sender, so the API never waits for PostgreSQL here. Instance rows travel along for
 * an undeploy when they fit in the payload (the API may delete them right after), otherwise only
 * their numbers and the leader reads the rows. Payloads that are not ours are ignored with a log
 * line.
 */
import { OakError } from '@oak/contracts';
import type { InstanceRow, JoinTokenRow, ServiceRow, Store } from '@oak/store';
import type { ControlPlane } from '../control.ts';
import type { LeaderInfo } from './decide.ts';
import type { LeaseLog } from './leader.ts';
import { NOTIFY_MAX_BYTES } from './events-bridge.ts';
import { limitedWarn } from './log-limit.ts';

export const RECONCILE_CHANNEL = 'oak_reconcile';
export const DEFAULT_RELAY_PENDING_CAP = 10_000;
/** instance numbers in one message at most (more: the leader looks at the whole service) */
const MAX_NUMBERS = 500;
/** relayed changes waiting on the leader at most */
const MAX_QUEUED = 10_000;

export type RelayWhat = 'requested' | 'undeployed' | 'updated' | 'token_revoked';

export interface RelayMessage {
  v: 1;
  what: RelayWhat;
  /** the service (requested, undeployed, updated) or the join token id (token_revoked) */
  service_id: string;
  /** the instance numbers concerned (absent: the whole service) */
  instances?: number[];
  /** undeployed: the service and rows as they were, when they fit */
  service?: ServiceRow;
  rows?: InstanceRow[];
}

export interface RelayStats {
  sent: number;
  /** dropped because too many were pending */
  dropped: number;
  failed: number;
  /** received by a leader and applied */
  applied: number;
  ignored: number;
}

export interface RelayControlPlane extends ControlPlane {
  readonly stats: RelayStats;
  serviceUpdated(service: ServiceRow): void;
  /** forwards a revoked join token to the leader (its link tells the clusters) */
  tokenRevoked(row: JoinTokenRow): void;
  /** resolves when nothing is pending (tests, close) */
  flushed(): Promise<void>;
  logs(service: ServiceRow, instance: InstanceRow): AsyncIterable<string>;
  close(): Promise<void>;
}

export interface RelayOptions {
  store: Pick<Store, 'notify'>;
  /** the current leader as this root sees it */
  leader: () => LeaderInfo | null;
  log: LeaseLog;
  pendingCap?: number;
  maxBytes?: number;
}

interface Pending {
  what: RelayWhat;
  id: string;
  /** undefined: the whole service */
  numbers: Set<number> | undefined;
  service?: ServiceRow;
  rows: Map<number, InstanceRow>;
}

export function relayControl(o: RelayOptions): RelayControlPlane {
  const cap = o.pendingCap ?? DEFAULT_RELAY_PENDING_CAP;
  const max = o.maxBytes ?? NOTIFY_MAX_BYTES;
  const pending = new Map<string, Pending>();
  const stats: RelayStats = { sent: 0, dropped: 0, failed: 0, applied: 0, ignored: 0 };
  let draining: Promise<void> | undefined;
  let closed = false;
  let droppedLogAt = 0;

  /**
   * One or more payloads for `p`. An undeploy carries the service and rows slimmed to what the
   * leader needs to send the undeploys (the rows may be deleted by then: an application deleted
   * through a follower), split over as many notifications as it takes to stay under the limit.
   */
  const encode = (p: Pending): string[] => {
    const base: RelayMessage = { v: 1, what: p.what, service_id: p.id };
    if (p.numbers !== undefined && p.numbers.size <= MAX_NUMBERS) base.instances = [...p.numbers].sort((a, b) => a - b);
    if (p.what === 'undeployed' && p.service && p.rows.size > 0) {
      const service = { id: p.service.id, job_name: p.service.job_name, application_id: p.service.application_id };
      const slim = [...p.rows.values()].map((r) => ({ service_id: r.service_id, instance_number: r.instance_number, cluster_id: r.cluster_id, status: r.status, epoch: r.epoch, desired: r.desired }));
      const out: string[] = [];
      let chunk: typeof slim = [];
      const text = (rows: typeof slim): string => JSON.stringify({ v: 1, what: p.what, service_id: p.id, instances: rows.map((r) => r.instance_number), service, rows });
      for (const r of slim) {
        if (chunk.length > 0 && Buffer.byteLength(text([...chunk, r])) > max) {
          out.push(text(chunk));
          chunk = [];
        }
        chunk.push(r);
      }
      if (chunk.length > 0 && Buffer.byteLength(text(chunk)) <= max) out.push(text(chunk));
      if (out.length > 0) return out;
    }
    const plain = JSON.stringify(base);
    return [Buffer.byteLength(plain) <= max ? plain : JSON.stringify({ v: 1, what: p.what, service_id: p.id })];
  };

  const drain = async (): Promise<void> => {
    await Promise.resolve();
    for (;;) {
      const first = pending.entries().next();
      if (first.done) return;
      const [key, p] = first.value;
      pending.delete(key);
      try {
        for (const payload of encode(p)) {
          await o.store.notify(RECONCILE_CHANNEL, payload);
          stats.sent++;
        }
      } catch (err) {
        stats.failed++;
        o.log.warn({ err: err instanceof Error ? err.message : String(err), what: p.what, service_id: p.id }, 'lead: relaying to the leading root failed (its resync picks the change up)');
      }
    }
  };
  const kick = (): void => {
    if (draining) return;
    draining = drain().finally(() => {
      draining = undefined;
      if (pending.size > 0) kick();
    });
  };

  const add = (what: RelayWhat, id: string, service?: ServiceRow, rows?: InstanceRow[]): void => {
    if (closed) return;
    const key = `${what}\u0000${id}`;
    let p = pending.get(key);
    if (!p) {
      if (pending.size >= cap) {
        stats.dropped++;
        const now = Date.now();
        if (now - droppedLogAt >= 1000) {
          droppedLogAt = now;
          o.log.warn({ dropped: stats.dropped, cap }, 'lead: too many changes waiting to be relayed; dropped (the leader resyncs them)');
        }
        return;
      }
      p = { what, id, numbers: rows === undefined ? undefined : new Set(), rows: new Map() };
      pending.set(key, p);
    }
    if (service) p.service = service;
    if (rows === undefined) p.numbers = undefined;
    else {
      for (const r of rows) {
        p.numbers?.add(r.instance_number);
        if (what === 'undeployed') p.rows.set(r.instance_number, r);
      }
    }
    kick();
  };

  return {
    stats,
    instancesRequested(service, instances) {
      add('requested', service.id, undefined, instances);
    },
    instancesUndeployed(service, instances) {
      add('undeployed', service.id, service, instances);
    },
    serviceUpdated(service) {
      add('updated', service.id);
    },
    tokenRevoked(row) {
      add('token_revoked', row.id);
    },
    logs() {
      const api = o.leader()?.api_url;
      throw new OakError('OAK_UNAVAILABLE', 'this root follows: logs are relayed by the leading root, which holds the cluster links', {
        hint: api !== undefined ? `ask the leading root: ${api} (same login)` : 'no root leads right now; try again in a few seconds',
      });
    },
    async flushed() {
      while (draining) await draining;
    },
    async close() {
      await this.flushed();
      closed = true;
    },
  };
}

const ID = (x: unknown): x is string => typeof x === 'string' && x.length > 0 && x.length <= 256;
const WHATS: readonly string[] = ['requested', 'undeployed', 'updated', 'token_revoked'];

/** The payload as a RelayMessage, or why not (never throws). */
export function parseRelayMessage(text: string): RelayMessage | string {
  if (text.length > NOTIFY_MAX_BYTES + 1000) return `payload of ${text.length} characters`;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null) return 'not an object';
  const o = v as Record<string, unknown>;
  if (o.v !== 1 || !ID(o.service_id) || typeof o.what !== 'string' || !WHATS.includes(o.what)) return 'no version, service_id or what';
  const m: RelayMessage = { v: 1, what: o.what as RelayWhat, service_id: o.service_id };
  if (o.instances !== undefined) {
    if (!Array.isArray(o.instances) || o.instances.length > MAX_NUMBERS || !o.instances.every((n) => Number.isInteger(n) && (n as number) >= 0)) return 'bad instances';
    m.instances = o.instances as number[];
  }
  if (o.service !== undefined) {
    const s = o.service as Record<string, unknown> | null;
    if (typeof s !== 'object' || s === null || s.id !== o.service_id || !ID(s.job_name) || !ID(s.application_id)) return 'bad service';
    m.service = s as unknown as ServiceRow;
  }
  if (o.rows !== undefined) {
    if (!Array.isArray(o.rows) || !o.rows.every((r) => typeof r === 'object' && r !== null && (r as InstanceRow).service_id === o.service_id && Number.isInteger((r as InstanceRow).instance_number))) return 'bad rows';
    m.rows = o.rows as InstanceRow[];
  }
  return m;
}

export interface RelayListenerOptions {
  store: Pick<Store, 'listen' | 'getService' | 'listInstances' | 'getJoinToken'>;
  /** the control plane to call: the leader's own when it leads and it is up, else undefined (ignore) */
  control: () => ControlPlane | undefined;
  /** told a revoked join token (the leader's link tells the clusters) */
  tokenRevoked?: (row: JoinTokenRow) => void;
  log: LeaseLog;
  /** counts applied/ignored (the relay's stats) */
  stats?: RelayStats;
}

/** The leader's side: listens on 'oak_reconcile' and calls its control plane. Answers the unlisten function. */
export async function listenRelayed(o: RelayListenerOptions): Promise<() => Promise<void>> {
  const stats = o.stats ?? { sent: 0, dropped: 0, failed: 0, applied: 0, ignored: 0 };
  const ignoredWarn = limitedWarn(o.log);
  const apply = async (m: RelayMessage, control: ControlPlane): Promise<void> => {
    if (m.what === 'token_revoked') {
      const row = await o.store.getJoinToken(m.service_id);
      if (row) o.tokenRevoked?.(row);
      return;
    }
    const service = (await o.store.getService(m.service_id)) ?? (m.what === 'undeployed' ? m.service : undefined);
    if (!service) return; // gone: the orphans pass of the leader undeploys what is left
    const wanted = m.instances !== undefined ? new Set(m.instances) : undefined;
    if (m.what === 'updated') {
      control.serviceUpdated?.(service);
      return;
    }
    const stored = (await o.store.listInstances({ service_id: service.id })).filter((i) => wanted === undefined || wanted.has(i.instance_number));
    if (m.what === 'requested') {
      const rows = wanted === undefined ? stored.filter((i) => i.status === 'REQUESTED') : stored;
      if (rows.length > 0) control.instancesRequested(service, rows);
      return;
    }
    // undeployed: what the store still has (desired=stop rows stay until confirmed), else the rows
    // as the follower saw them (it may have deleted them since)
    const rows = wanted === undefined ? stored.filter((i) => i.desired === 'stop') : stored;
    const have = new Set(rows.map((i) => i.instance_number));
    for (const r of m.rows ?? []) if (!have.has(r.instance_number)) rows.push(r);
    if (rows.length > 0) control.instancesUndeployed(service, rows);
  };
  // applied one at a time, in the order they came (a request and its undeploy must not swap)
  let chain: Promise<void> = Promise.resolve();
  let queued = 0;
  return o.store.listen(RECONCILE_CHANNEL, (payload) => {
    const control = o.control();
    if (!control) return; // not leading (or not up yet): the leader's resync heals
    const m = parseRelayMessage(payload);
    if (typeof m === 'string') {
      stats.ignored++;
      ignoredWarn({ reason: m, bytes: payload.length, ignored: stats.ignored }, `lead: ignored a payload on ${RECONCILE_CHANNEL}`);
      return;
    }
    if (queued >= MAX_QUEUED) {
      stats.ignored++;
      ignoredWarn({ queued }, 'lead: too many relayed changes waiting; dropped (the resync heals)');
      return;
    }
    queued++;
    chain = chain
      .then(() => apply(m, control))
      .then(
        () => void stats.applied++,
        (err: unknown) => o.log.error({ err, what: m.what, service_id: m.service_id }, 'lead: applying a relayed change failed'),
      )
      .finally(() => void queued--);
  });
}
