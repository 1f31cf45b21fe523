/**
 * One live connection to GET /api/events per tab, shared by every view (the root caps streams per
 * user), carrying the state events and, while a chart is shown, the instance readings too
 * (`?types=…,metrics`). It is read with fetch rather than EventSource so the token goes in the
 * Authorization header (not the URL) and a 401 refreshes it like any request.
 *
 * - The stream ends when the token expires or the user logs out (`event: end`); it is then
 *   reopened with a fresh token, and after a network failure with backoff. Each reconnection
 *   bumps `epoch` so views reload what they may have missed meanwhile.
 * - Readings: the first chart that mounts switches the stream to one that carries them; after the
 *   last chart is gone it switches back only once no chart came back for LINGER_MS, so moving
 *   between views never makes a storm of reconnections. A switch opens the new stream before
 *   the old one goes (nothing is missed, so no epoch bump): for OVERLAP_MS both are read, and an
 *   event that comes on both is handed to the views once (overlap.ts: by count, so the same
 *   text twice, a service updated then rolled back within the overlap, still counts twice).
 * - A stream no view listens to is closed IDLE_MS later, so a view change (one view unmounts
 *   before the next one has loaded) keeps it.
 */
import { useEffect, useRef } from 'react';
import type { OakEvent } from '@oak/contracts';
import { ApiError, session, stream } from './api.ts';
import { connection } from './connection.ts';
import { OverlapDedupe } from './overlap.ts';
import { readEventStream } from './sse.ts';
import { store, useStore } from './store.ts';

export type MetricsEvent = Extract<OakEvent, { type: 'metrics' }>;
type Handler = (e: OakEvent) => void;
type MetricsHandler = (e: MetricsEvent) => void;

const STATE_TYPES = 'instance,application,service,cluster';
/** readings stay subscribed this long after the last chart went */
export const LINGER_MS = 30_000;
/** both streams are read this long after a switch */
export const OVERLAP_MS = 2_000;
/** a stream nobody listens to is closed this long after (a view change unmounts one view before the next one mounts) */
export const IDLE_MS = 5_000;

const handlers = new Set<Handler>();
const metricsHandlers = new Set<MetricsHandler>();
/** bumps on each (re)connection; a view that depends on it reloads after a gap */
export const epoch = store(0);
export const live = store(false);

interface Conn {
  ac: AbortController;
  metrics: boolean;
  /** the root answered (the stream is subscribed there) */
  live: boolean;
}

/** the stream whose events count (connecting or open) */
let current: Conn | undefined;
/** a stream being opened to replace `current` (a switch) */
let next: Conn | undefined;
/** the replaced stream, read until OVERLAP_MS after the switch */
let draining: Conn | undefined;
/** events handed over during the overlap (each once, however often the same text comes) */
let seen = new OverlapDedupe<Conn>();
let drainTimer: ReturnType<typeof setTimeout> | undefined;
let retryTimer: ReturnType<typeof setTimeout> | undefined;
let lingerTimer: ReturnType<typeof setTimeout> | undefined;
let idleTimer: ReturnType<typeof setTimeout> | undefined;
let backoff = 500;

function wantsMetrics(): boolean {
  return metricsHandlers.size > 0 || lingerTimer !== undefined;
}

function listened(): boolean {
  return handlers.size > 0 || metricsHandlers.size > 0;
}

function deliver(c: Conn, type: string, data: string): void {
  if (type === 'end' || (c !== current && c !== draining)) return;
  if (draining !== undefined) {
    if (!seen.take(c, data)) return;
  }
  let e: OakEvent;
  try {
    e = JSON.parse(data) as OakEvent;
  } catch {
    return; // not JSON: skipped
  }
  if (e.type === 'metrics') {
    for (const h of [...metricsHandlers]) h(e);
  } else {
    for (const h of [...handlers]) h(e);
  }
}

function open(metrics: boolean): Conn {
  const c: Conn = { ac: new AbortController(), metrics, live: false };
  const path = metrics ? `/api/events?types=${STATE_TYPES},metrics` : '/api/events';
  void (async () => {
    const res = await stream(path, c.ac.signal);
    if (res.body === null) throw new Error('no body');
    c.live = true;
    opened(c);
    await readEventStream(res.body, (type, data) => deliver(c, type, data));
  })().then(
    () => ended(c, undefined),
    (err: unknown) => ended(c, err ?? new Error('stream failed')),
  );
  return c;
}

function opened(c: Conn): void {
  backoff = 500;
  if (c === current) {
    live.set(true);
    epoch.set(epoch.get() + 1);
  } else if (c === next) {
    // the switch: the new stream counts from now, the old one is read a little longer
    next = undefined;
    endDrain();
    const gap = current === undefined || !current.live;
    if (current !== undefined && !current.live) current.ac.abort();
    else draining = current;
    current = c;
    seen = new OverlapDedupe();
    if (draining !== undefined) drainTimer = setTimeout(endDrain, OVERLAP_MS);
    if (gap) {
      // the old stream was gone before this one came: views reload what they missed
      clearTimeout(retryTimer);
      live.set(true);
      epoch.set(epoch.get() + 1);
    }
    ensure();
  } else {
    c.ac.abort();
  }
}

function endDrain(): void {
  clearTimeout(drainTimer);
  drainTimer = undefined;
  draining?.ac.abort();
  draining = undefined;
  seen = new OverlapDedupe();
}

function ended(c: Conn, err: unknown): void {
  if (c === draining) {
    draining = undefined;
    return;
  }
  if (c === next) {
    next = undefined;
    if (c.ac.signal.aborted) return;
    // the switch failed: keep the stream there is, try again later
    const wait = backoff;
    backoff = Math.min(backoff * 2, 10_000);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(ensure, wait);
    return;
  }
  if (c !== current || c.ac.signal.aborted) return;
  current = undefined;
  live.set(false);
  if (err === undefined) {
    // the root ended the stream (token expired, logged out elsewhere, shutdown): reopen soon
    retryTimer = setTimeout(ensure, 200);
    return;
  }
  if (err instanceof ApiError && err.status === 401) return; // refresh failed: logged out
  const wait = backoff;
  backoff = Math.min(backoff * 2, 10_000);
  if (!(err instanceof ApiError) || err.status === 0) connection.lost();
  retryTimer = setTimeout(ensure, wait);
}

function closeAll(): void {
  clearTimeout(retryTimer);
  clearTimeout(idleTimer);
  idleTimer = undefined;
  for (const c of [current, next]) c?.ac.abort();
  current = undefined;
  next = undefined;
  endDrain();
  live.set(false);
}

/** Opens, switches or closes the stream to fit what the mounted views want. */
function ensure(): void {
  if (session.get() === null) {
    closeAll();
    return;
  }
  if (!listened()) {
    idleTimer ??= setTimeout(() => {
      idleTimer = undefined;
      if (!listened()) closeAll();
    }, IDLE_MS);
    return;
  }
  clearTimeout(idleTimer);
  idleTimer = undefined;
  const want = wantsMetrics();
  if (current === undefined) {
    clearTimeout(retryTimer);
    current = open(want);
    return;
  }
  if (next !== undefined && next.metrics !== want) {
    next.ac.abort();
    next = undefined;
  }
  if (current.metrics === want) {
    next?.ac.abort();
    next = undefined;
    return;
  }
  if (!current.live) {
    // not connected yet: nothing to lose, connect again with what is wanted now
    current.ac.abort();
    current = open(want);
    return;
  }
  if (next === undefined) {
    clearTimeout(retryTimer);
    next = open(want);
  }
}

session.subscribe(() => {
  if (session.get() === null) closeAll();
  else ensure();
});
// back online: try now rather than at the end of the backoff
addEventListener('online', () => {
  if (current === undefined) ensure();
});
// the root answers again (connection.ts probes it): reopen the stream now, not at the end of the
// backoff; a stream that outlived the outage (the browser kept its connection) missed nothing, but
// the views' requests failed meanwhile: they reload
let wasDown = false;
connection.state.subscribe(() => {
  const up = connection.state.get().up;
  if (!up) {
    wasDown = true;
    return;
  }
  if (!wasDown) return;
  wasDown = false;
  if (current === undefined) ensure();
  else if (current.live) epoch.set(epoch.get() + 1);
});

/** Calls `handler` for every live event (but readings) while the component is mounted. */
export function useEvents(handler: Handler): void {
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => {
    const h: Handler = (e) => ref.current(e);
    handlers.add(h);
    ensure();
    return () => {
      handlers.delete(h);
      ensure();
    };
  }, []);
}

/**
 * Calls `h` for each `metrics` event (instance readings) until the returned function is called;
 * the tab's stream carries them while any such subscriber is there (and LINGER_MS after).
 */
export function onMetrics(h: MetricsHandler): () => void {
  metricsHandlers.add(h);
  clearTimeout(lingerTimer);
  lingerTimer = undefined;
  ensure();
  return () => {
    if (!metricsHandlers.delete(h)) return;
    if (metricsHandlers.size === 0) {
      clearTimeout(lingerTimer);
      lingerTimer = setTimeout(() => {
        lingerTimer = undefined;
        ensure();
      }, LINGER_MS);
    }
    ensure();
  };
}

/** The reconnection counter (reload data when it changes). */
export function useEpoch(): number {
  return useStore(epoch);
}
