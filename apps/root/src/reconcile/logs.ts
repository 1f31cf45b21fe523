/**
 * The log relay of the root (issue 9, moved out of link/control.ts): GET
 * /api/service/{id}/instance/{n}/logs asks the instance's cluster for its lines (`logs`), which
 * answers with `logs_data` batches and a `logs_end`. Each request is a session, bounded in memory
 * (LogBuffer), ended by logs_end, by the client going away (then `logs_cancel` goes out), by its
 * cluster disconnecting, or by close().
 */
import { randomUUID } from 'node:crypto';
import { OakError, instanceName } from '@oak/contracts';
import type { ClusterToRoot, RootToCluster } from '@oak/contracts';
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
  wake: (() => void) | undefined;
}

/** What the relay needs of the link. */
export interface LogLink {
  isConnected(clusterId: string): boolean;
  send(clusterId: string, m: RootToCluster): boolean;
}

export class LogRelay {
  readonly #link: LogLink;
  readonly #sessions = new Map<string, LogSession>();

  constructor(link: LogLink) {
    this.#link = link;
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

  /** The log lines of one instance (ControlPlane.logs). Throws OAK_UNAVAILABLE when it runs on no connected cluster. */
  logs(service: ServiceRow, instance: InstanceRow, opts: LogOptions): AsyncIterable<string> {
    const link = this.#link;
    const sessions = this.#sessions;
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
    sessions.set(rid, session);
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
        sessions.delete(rid);
        if (!session.done) link.send(clusterId, { type: 'logs_cancel', request_id: rid });
      }
    }
    return stream();
  }
}
