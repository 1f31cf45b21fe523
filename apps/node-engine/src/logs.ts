/**
 * Log requests from the cluster: `nodes/{id}/control/logs` asks for an instance's output, answered
 * as batches of lines on `nodes/{id}/logs/{request_id}` (`{lines, end?, error?}`), one batch every
 * ~100 ms while lines arrive; `nodes/{id}/control/logs/cancel` stops a follow.
 */
export const logTopics = {
  request: (id: string) => `nodes/${id}/control/logs`,
  cancel: (id: string) => `nodes/${id}/control/logs/cancel`,
  answer: (id: string, requestId: string) => `nodes/${id}/logs/${requestId}`,
} as const;

export interface LogRequest {
  request_id: string;
  job_name: string;
  instance_number: number;
  follow: boolean;
  tail?: number | undefined;
}

export interface LogBatch {
  lines: string[];
  end?: boolean;
  error?: string;
  /** with error: the logs are gone for good (expired, dropped, never kept here) */
  gone?: boolean;
}

/** Validates a log request; a string says what is wrong (and `request_id` when one was readable). */
export function parseLogRequest(raw: unknown): { ok: true; req: LogRequest } | { ok: false; reason: string; request_id?: string } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, reason: 'a log request must be a JSON object' };
  const o = raw as Record<string, unknown>;
  const rid = o['request_id'];
  if (typeof rid !== 'string' || !/^[A-Za-z0-9_.-]{1,128}$/.test(rid)) return { ok: false, reason: 'request_id must be 1-128 letters, digits, ".", "_" or "-"' };
  const fail = (reason: string) => ({ ok: false as const, reason, request_id: rid });
  if (typeof o['job_name'] !== 'string' || o['job_name'] === '') return fail('job_name must be a non-empty string');
  const n = o['instance_number'];
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) return fail('instance_number must be a non-negative integer');
  const follow = o['follow'];
  if (follow !== undefined && follow !== null && typeof follow !== 'boolean') return fail('follow must be true or false');
  const tail = o['tail'];
  if (tail !== undefined && tail !== null && (typeof tail !== 'number' || !Number.isInteger(tail) || tail < 0)) return fail('tail must be a non-negative integer');
  return { ok: true, req: { request_id: rid, job_name: o['job_name'], instance_number: n, follow: follow === true, tail: typeof tail === 'number' ? tail : undefined } };
}

export interface LogBatcherOptions {
  /** flush interval, default 100 ms */
  intervalMs?: number;
  /** most lines per batch, default 500 */
  maxLines?: number;
}

/**
 * Reads lines from `source` and hands batches to `send`: every `intervalMs` while lines arrive,
 * at once when `maxLines` are waiting, and a last batch with `end: true` (and `error` when the
 * source failed) when the source ends or `signal` aborts. Resolves after the last batch.
 */
export async function pumpLogs(
  source: AsyncIterable<string>,
  send: (b: LogBatch) => void,
  signal: AbortSignal,
  opts: LogBatcherOptions = {},
): Promise<void> {
  const intervalMs = opts.intervalMs ?? 100;
  const maxLines = opts.maxLines ?? 500;
  let pending: string[] = [];
  const flush = (): void => {
    if (pending.length === 0) return;
    const lines = pending;
    pending = [];
    send({ lines });
  };
  const timer = setInterval(flush, intervalMs);
  let error: string | undefined;
  try {
    const it = source[Symbol.asyncIterator]();
    const aborted = new Promise<'aborted'>((resolve) => {
      if (signal.aborted) resolve('aborted');
      else signal.addEventListener('abort', () => resolve('aborted'), { once: true });
    });
    for (;;) {
      const r = await Promise.race([it.next(), aborted]);
      if (r === 'aborted') {
        void it.return?.()?.catch(() => {});
        break;
      }
      if (r.done === true) break;
      pending.push(r.value);
      if (pending.length >= maxLines) flush();
    }
  } catch (err) {
    error = err instanceof Error ? err.message : String(err);
  } finally {
    clearInterval(timer);
  }
  const last: LogBatch = { lines: pending, end: true };
  if (error !== undefined) last.error = error;
  send(last);
}
