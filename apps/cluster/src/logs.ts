/**
 * Log requests across the cluster: the root asks over the link (`logs`), the cluster asks the
 * instance's worker over MQTT (nodes/{id}/control/logs) and relays the worker's batches
 * (nodes/{id}/logs/{request_id}) back as logs_data / logs_end.
 */
import { LogBatch, capLogBatch, makeParser, topics } from '@oak/contracts';
import type { ClusterToRoot, LogCancel, LogRequest, RootToCluster } from '@oak/contracts';
import type { Logger } from '@oak/bus';

export const parseLogBatch = makeParser(LogBatch, 'log batch');

type LogsMsg = Extract<RootToCluster, { type: 'logs' }>;

interface Session {
  worker_id: string;
  follow: boolean;
  timer: NodeJS.Timeout | undefined;
  /** an oversized batch was logged already (once per session) */
  warned: boolean;
}

export interface LogRelayDeps {
  /** the worker an instance runs on, if any and alive */
  workerOf(jobName: string, n: number): string | null;
  isAlive(workerId: string): boolean;
  /** what this cluster knows of a worker (for the answer when it cannot be asked); undefined: unknown here */
  workerFacts?(workerId: string): { name: string; alive: boolean; since: number | null } | undefined;
  publish(topic: string, payload: LogRequest | LogCancel): void;
  toRoot(msg: ClusterToRoot): void;
  log: Logger;
  timeoutMs: number;
  /** log sessions open at once for one worker (default 16) and in all (default 256) */
  maxPerWorker?: number;
  maxSessions?: number;
}

export const DEFAULT_LOG_SESSIONS_PER_WORKER = 16;
export const DEFAULT_LOG_SESSIONS = 256;

export class LogRelay {
  readonly #d: LogRelayDeps;
  readonly #sessions = new Map<string, Session>();

  constructor(d: LogRelayDeps) {
    this.#d = d;
  }

  get size(): number {
    return this.#sessions.size;
  }

  request(m: LogsMsg): void {
    // an ended instance: the worker that ran it (the root remembers it), tracked here or not
    const worker = m.worker_id ?? this.#d.workerOf(m.job_name, m.instance_number);
    const name = `${m.job_name}.instance.${m.instance_number}`;
    if (worker === null) {
      this.#d.toRoot({ type: 'logs_end', request_id: m.request_id, error: `${name} does not run on a live worker of this cluster` });
      return;
    }
    if (!this.#d.isAlive(worker)) {
      this.#d.toRoot({ type: 'logs_end', request_id: m.request_id, error: this.#unreachable(name, worker, m.worker_id !== undefined) });
      return;
    }
    this.#end(m.request_id);
    const perWorker = this.#d.maxPerWorker ?? DEFAULT_LOG_SESSIONS_PER_WORKER;
    const total = this.#d.maxSessions ?? DEFAULT_LOG_SESSIONS;
    let onWorker = 0;
    for (const x of this.#sessions.values()) if (x.worker_id === worker) onWorker++;
    if (onWorker >= perWorker || this.#sessions.size >= total) {
      this.#d.toRoot({
        type: 'logs_end',
        request_id: m.request_id,
        error: onWorker >= perWorker ? `worker ${worker} serves ${onWorker} log streams already (at most ${perWorker}); close one and try again` : `this cluster relays ${this.#sessions.size} log streams already (at most ${total})`,
      });
      return;
    }
    const s: Session = { worker_id: worker, follow: m.follow, timer: undefined, warned: false };
    this.#sessions.set(m.request_id, s);
    this.#arm(m.request_id, s);
    const req: LogRequest = { request_id: m.request_id, job_name: m.job_name, instance_number: m.instance_number, follow: m.follow };
    if (m.tail !== undefined && m.tail !== null) req.tail = m.tail;
    this.#d.publish(topics.logsRequest(worker), req);
  }

  #unreachable(instance: string, worker: string, ended: boolean): string {
    const f = this.#d.workerFacts?.(worker);
    const what = ended ? `the logs of ${instance} are kept on worker` : `${instance} runs on worker`;
    if (f === undefined) return `${what} ${worker}, which this cluster does not know (it was removed, or has not registered again since this cluster started)`;
    const since = f.since !== null ? ` since ${new Date(f.since).toISOString().replace(/\.\d{3}Z$/, 'Z')}` : '';
    return `${what} ${f.name === worker ? worker : `${f.name} (${worker})`}, which is not connected to this cluster${since}`;
  }

  cancel(requestId: string): void {
    const s = this.#sessions.get(requestId);
    if (!s) return;
    this.#end(requestId);
    this.#d.publish(topics.logsCancel(s.worker_id), { request_id: requestId });
  }

  /** nodes/{id}/logs/{request_id} */
  batch(workerId: string, requestId: string, raw: unknown): void {
    const s = this.#sessions.get(requestId);
    if (!s || s.worker_id !== workerId) return;
    let b: LogBatch;
    try {
      b = parseLogBatch(raw);
    } catch (err) {
      this.#d.log.warn(`logs: invalid batch from worker ${workerId} dropped`, err);
      return;
    }
    this.#arm(requestId, s);
    // a batch of any size is cut to LOG_LIMITS (with a note), never passed on whole
    const { lines, dropped } = capLogBatch(b.lines);
    if (dropped > 0 && !s.warned) {
      s.warned = true;
      this.#d.log.warn(`logs: batch from worker ${workerId} over the limit: ${dropped} line(s) dropped (logged once per request)`);
    }
    if (lines.length > 0) this.#d.toRoot({ type: 'logs_data', request_id: requestId, lines });
    if (b.end === true || b.error !== undefined) {
      this.#end(requestId);
      this.#d.toRoot(b.error !== undefined ? { type: 'logs_end', request_id: requestId, error: b.error, ...(b.gone === true ? { gone: true } : {}) } : { type: 'logs_end', request_id: requestId });
    }
  }

  /** Ends the sessions of workers that died. */
  check(): void {
    for (const [rid, s] of [...this.#sessions]) {
      if (!this.#d.isAlive(s.worker_id)) {
        this.#end(rid);
        this.#d.toRoot({ type: 'logs_end', request_id: rid, error: `worker ${s.worker_id} was lost` });
      }
    }
  }

  /** The link went down: the root no longer listens. */
  cancelAll(): void {
    for (const rid of [...this.#sessions.keys()]) this.cancel(rid);
  }

  #arm(rid: string, s: Session): void {
    clearTimeout(s.timer);
    s.timer = undefined;
    if (s.follow) return;
    s.timer = setTimeout(() => {
      if (this.#sessions.get(rid) !== s) return;
      this.#end(rid);
      this.#d.publish(topics.logsCancel(s.worker_id), { request_id: rid });
      this.#d.toRoot({ type: 'logs_end', request_id: rid, error: `worker ${s.worker_id} did not answer within ${this.#d.timeoutMs} ms` });
    }, this.#d.timeoutMs);
  }

  #end(rid: string): void {
    const s = this.#sessions.get(rid);
    if (!s) return;
    clearTimeout(s.timer);
    this.#sessions.delete(rid);
  }
}
