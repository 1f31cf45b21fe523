/**
 * Live instance readings (`metrics` events). They come only on a stream that asks for them
 * (`/api/events?types=metrics`), so this module holds one such stream per tab, opened while a
 * chart is mounted and closed with the last one; reconnects with backoff like lib/events.ts.
 */
import type { OakEvent } from '@oak/contracts';
import { ApiError, session, stream } from '../../lib/api.ts';
import { readEventStream } from '../../lib/sse.ts';

export type MetricsEvent = Extract<OakEvent, { type: 'metrics' }>;
type Handler = (e: MetricsEvent) => void;

const handlers = new Set<Handler>();
let abort: AbortController | undefined;
let timer: ReturnType<typeof setTimeout> | undefined;
let backoff = 500;

async function run(ac: AbortController): Promise<void> {
  const res = await stream('/api/events?types=metrics', ac.signal);
  if (res.body === null) throw new Error('no body');
  backoff = 500;
  await readEventStream(res.body, (type, data) => {
    if (type !== 'metrics') return;
    let e: MetricsEvent;
    try {
      e = JSON.parse(data) as MetricsEvent;
    } catch {
      return; // not JSON: skipped
    }
    for (const h of [...handlers]) h(e);
  });
}

function connect(): void {
  clearTimeout(timer);
  if (abort !== undefined || handlers.size === 0 || session.get() === null) return;
  const ac = new AbortController();
  abort = ac;
  const again = (ms: number): void => {
    if (abort !== ac) return;
    abort = undefined;
    timer = setTimeout(connect, ms);
  };
  void run(ac).then(
    () => again(200),
    (err: unknown) => {
      if (ac.signal.aborted) return;
      if (err instanceof ApiError && err.status === 401) {
        abort = undefined;
        return;
      }
      const wait = backoff;
      backoff = Math.min(backoff * 2, 10_000);
      again(wait);
    },
  );
}

function disconnect(): void {
  clearTimeout(timer);
  abort?.abort();
  abort = undefined;
}

/** Calls `h` for each metrics event until the returned function is called. */
export function onMetrics(h: Handler): () => void {
  handlers.add(h);
  connect();
  return () => {
    handlers.delete(h);
    if (handlers.size === 0) disconnect();
  };
}

session.subscribe(() => {
  if (session.get() === null) disconnect();
  else if (handlers.size > 0) connect();
});
