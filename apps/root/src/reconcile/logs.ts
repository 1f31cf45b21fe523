/**
 * The log relay of the root (issue 9, moved out of link/control.ts): GET
 * /api/service/{id}/instance/{n}/logs asks the instance's cluster for its lines (`logs`), which
 * answers with `logs_data` batches and a `logs_end`. Each request is a session, bounded in memory
 * (LogBuffer), ended by logs_end, by the client going away (then `logs_cancel` goes out), by its
 * cluster disconnecting, or by close().
 *
 * Ended instances (COMPLETED, FAILED, UNDEPLOYED, and removed ones the store remembers in
 * ended_instances) are asked of the worker that ran them, which keeps their logs for a while
 * (NodeEngine --log-retention); a follow prints what is kept and ends. Their answer is awaited
 * before the HTTP answer starts, so that logs that are gone are a 410 OAK_LOGS_GONE that says
 * which, where and since when, and an unreachable cluster or worker a 503 that says so.
 */
import { randomUUID } from 'node:crypto';
import { OakError, TERMINAL_STATES, instanceName } from '@oak/contracts';
import type { ClusterToRoot, InstanceState, RootToCluster } from '@oak/contracts';
import type { InstanceRow, ServiceRow } from '@oak/store';
import type { LogOptions } from '../control.ts';
import { LogBuffer } from '../log-buffer.ts';
import { holdsCluster } from '../placement.ts';

interface LogSession {
  cluster_id: string;
  /** bounded; cut per batch (LOG_LIMITS) */
  lines: LogBuffer;
  done: boolean;
  error: string | undefined;
  /** the logs are gone for good (the worker said so) */
  gone: boolean;
  wake: (() => void) | undefined;
}

/** What the relay needs of an instance: its row, or what the store remembers of a removed one. */
export type LogTarget = Pick<InstanceRow, 'instance_number' | 'status' | 'status_detail' | 'status_at' | 'cluster_id' | 'worker_id'> & {
  /** the row was removed; this is its EndedInstanceRow */
  removed?: boolean;
};

/** What the relay may say about a cluster (its name, since when it is away). */
export interface LogClusters {
  name(clusterId: string): Promise<string | undefined>;
  disconnectedSince(clusterId: string): number | undefined;
}

/** how long the root remembers where a removed instance ran (store.pruneEndedInstances) */
export const ENDED_INSTANCE_MEMORY_MS = 7 * 86_400_000;

export const KEPT_LOGS_HINT = 'workers keep the logs of ended instances for a while (NodeEngine --log-retention, default 24h)';

const at = (iso: string | number): string => new Date(iso).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** true for an instance whose run is over: its logs come from what its worker kept */
export function isEnded(t: Pick<LogTarget, 'status' | 'removed'>): boolean {
  return t.removed === true || TERMINAL_STATES.has(t.status as InstanceState);
}

/** What the relay needs of the link. */
export interface LogLink {
  isConnected(clusterId: string): boolean;
  send(clusterId: string, m: RootToCluster): boolean;
}

export class LogRelay {
  readonly #link: LogLink;
  readonly #sessions = new Map<string, LogSession>();
  readonly #clusters: LogClusters | undefined;

  constructor(link: LogLink, clusters?: LogClusters) {
    this.#link = link;
    this.#clusters = clusters;
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** logs_data / logs_end from cluster `clusterId` (others are ignored) */
  onMessage(clusterId: string, m: ClusterToRoot): void {
    if (m.type === 'logs_data') {
      const s = this.#sessions.get(m.request_id);
      if (!s || s.cluster_id !== clusterId || s.done) return;
      s.lines.push(m.lines); // capped, never spread: a batch may hold any number of lines
      s.wake?.();
    } else if (m.type === 'logs_end') {
      const s = this.#sessions.get(m.request_id);
      if (!s || s.cluster_id !== clusterId) return;
      s.done = true;
      s.error = m.error;
      s.gone = m.gone === true && m.error !== undefined;
      s.wake?.();
    }
  }

  /** the sessions of a cluster that went away end with `error` */
  clusterGone(clusterId: string, error: string): void {
    for (const s of this.#sessions.values()) {
      if (s.cluster_id !== clusterId || s.done) continue;
      s.done = true;
      s.error = error;
      s.wake?.();
    }
  }

  /** every session ends (the root shuts down) */
  close(): void {
    for (const s of this.#sessions.values()) {
      s.done = true;
      s.error ??= 'the root is shutting down';
      s.wake?.();
    }
  }

  /**
   * The log lines of one instance (ControlPlane.logs). Throws OAK_UNAVAILABLE when its cluster (or
   * worker) cannot be asked, OAK_LOGS_GONE when an ended instance's logs are no longer kept.
   */
  async logs(service: ServiceRow, instance: LogTarget, opts: LogOptions): Promise<AsyncIterable<string>> {
    const link = this.#link;
    const sessions = this.#sessions;
    const name = instanceName(service.job_name, instance.instance_number);
    const cid = instance.cluster_id;
    const ended = isEnded(instance);
    if (cid === null) {
      if (ended) throw new OakError('OAK_LOGS_GONE', `${name} is ${instance.status} and never ran on a worker: it has no logs`);
      throw new OakError('OAK_UNAVAILABLE', `${name} is ${instance.status}: it is not placed on a worker yet, so it has no logs yet`, {
        hint: 'logs come from the worker that runs the instance; wait until it is scheduled',
      });
    }
    if (!ended && !holdsCluster(instance.status)) {
      throw new OakError('OAK_UNAVAILABLE', `${name} is ${instance.status}: it runs on no cluster`, { hint: 'logs come from the worker that runs the instance; wait until it is scheduled' });
    }
    if (!link.isConnected(cid)) {
      const cname = (await this.#clusters?.name(cid).catch(() => undefined)) ?? cid;
      const away = this.#clusters?.disconnectedSince(cid);
      const since = away !== undefined ? ` since ${at(away)}` : '';
      if (ended) {
        const where = instance.worker_id !== null ? `worker ${instance.worker_id} of cluster ${cname}` : `cluster ${cname}`;
        throw new OakError('OAK_UNAVAILABLE', `the logs of ${name} (${instance.status} since ${at(instance.status_at)}) are kept on ${where}, which is not connected to this root${since}`, {
          hint: `try again once the cluster is back; ${KEPT_LOGS_HINT}`,
        });
      }
      throw new OakError('OAK_UNAVAILABLE', `the cluster of ${name} (${cname}) is not connected${since}`, { hint: 'try again once the cluster is back' });
    }
    const clusterId: string = cid;
    const rid = randomUUID();
    const session: LogSession = { cluster_id: clusterId, lines: new LogBuffer(), done: false, error: undefined, gone: false, wake: undefined };
    sessions.set(rid, session);
    // an ended instance: what its worker kept, once (a follow ends after it)
    const req: Extract<RootToCluster, { type: 'logs' }> = {
      type: 'logs',
      request_id: rid,
      job_name: service.job_name,
      instance_number: instance.instance_number,
      follow: opts.follow && !ended,
    };
    if (opts.tail !== undefined) req.tail = opts.tail;
    if (ended && instance.worker_id !== null) req.worker_id = instance.worker_id;
    if (!link.send(cid, req)) {
      session.done = true;
      session.error = 'the cluster went away';
    }
    const onAbort = (): void => session.wake?.();
    opts.signal.addEventListener('abort', onAbort, { once: true });
    const finish = (): void => {
      opts.signal.removeEventListener('abort', onAbort);
      sessions.delete(rid);
      if (!session.done) link.send(clusterId, { type: 'logs_cancel', request_id: rid });
    };
    const wait = (): Promise<void> =>
      new Promise<void>((resolve) => {
        session.wake = resolve;
      }).then(() => {
        session.wake = undefined;
      });
    if (ended) {
      // the first answer decides the HTTP status: lines (200), or why there are none (410 / 503)
      while (session.lines.length === 0 && !session.done && !opts.signal.aborted) await wait();
      if (session.lines.length === 0 && session.done && session.error !== undefined) {
        finish();
        if (session.gone) throw new OakError('OAK_LOGS_GONE', session.error, { hint: KEPT_LOGS_HINT });
        throw new OakError('OAK_UNAVAILABLE', session.error, { hint: `try again once it is back; ${KEPT_LOGS_HINT}` });
      }
    }
    async function* stream(): AsyncGenerator<string> {
      try {
        for (;;) {
          for (let line = session.lines.shift(); line !== undefined; line = session.lines.shift()) {
            if (opts.signal.aborted) return;
            yield line;
          }
          if (session.done) {
            if (session.error !== undefined) throw new OakError(session.gone ? 'OAK_LOGS_GONE' : 'OAK_UNAVAILABLE', session.error);
            return;
          }
          if (opts.signal.aborted) return;
          await wait();
        }
      } finally {
        finish();
      }
    }
    return stream();
  }
}
