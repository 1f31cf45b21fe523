/**
 * One live connection to GET /api/events per tab, shared by every view (the root caps streams per
 * user). It is read with fetch rather than EventSource so the token goes in the Authorization
 * header (not the URL) and a 401 refreshes it like any request. The stream ends when the token
 * expires or the user logs out (`event: end`); it is then reopened with a fresh token, and after a
 * network failure with backoff. Each reconnection bumps `epoch` so views reload what they may
 * have missed meanwhile.
 */
import { useEffect, useRef } from 'react';
import type { OakEvent } from '@oak/contracts';
import { ApiError, session, stream } from './api.ts';
import { connection } from './connection.ts';
import { readEventStream } from './sse.ts';
import { store, useStore } from './store.ts';

type Handler = (e: OakEvent) => void;
const handlers = new Set<Handler>();
/** bumps on each (re)connection; a view that depends on it reloads after a gap */
export const epoch = store(0);
export const live = store(false);

let abort: AbortController | undefined;
let retryTimer: ReturnType<typeof setTimeout> | undefined;
let backoff = 500;

function dispatch(type: string, data: string): void {
  if (type === 'end') return;
  let e: OakEvent;
  try {
    e = JSON.parse(data) as OakEvent;
  } catch {
    return;
  }
  for (const h of [...handlers]) h(e);
}

async function run(ac: AbortController): Promise<void> {
  const res = await stream('/api/events', ac.signal);
  if (res.body === null) throw new Error('no body');
  backoff = 500;
  live.set(true);
  epoch.set(epoch.get() + 1);
  await readEventStream(res.body, dispatch);
}

function connect(): void {
  clearTimeout(retryTimer);
  if (abort !== undefined || handlers.size === 0 || session.get() === null) return;
  const ac = new AbortController();
  abort = ac;
  void run(ac)
    .then(
      () => {
        // the root ended the stream (token expired, logged out elsewhere, shutdown): reopen soon
        schedule(ac, 200);
      },
      (err: unknown) => {
        if (ac.signal.aborted) return;
        if (err instanceof ApiError && err.status === 401) {
          abort = undefined;
          live.set(false);
          return; // refresh failed: logged out
        }
        const wait = backoff;
        backoff = Math.min(backoff * 2, 10_000);
        if (!(err instanceof ApiError) || err.status === 0) connection.lost();
        schedule(ac, wait);
      },
    );
}

function schedule(ac: AbortController, ms: number): void {
  if (abort !== ac) return;
  abort = undefined;
  live.set(false);
  retryTimer = setTimeout(connect, ms);
}

function disconnect(): void {
  clearTimeout(retryTimer);
  abort?.abort();
  abort = undefined;
  live.set(false);
}

session.subscribe(() => {
  if (session.get() === null) disconnect();
  else connect();
});
// back online: try now rather than at the end of the backoff
addEventListener('online', () => {
  if (abort === undefined) connect();
});

/** Calls `handler` for every live event while the component is mounted. */
export function useEvents(handler: Handler): void {
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => {
    const h: Handler = (e) => ref.current(e);
    handlers.add(h);
    connect();
    return () => {
      handlers.delete(h);
      if (handlers.size === 0) disconnect();
    };
  }, []);
}

/** The reconnection counter (reload data when it changes). */
export function useEpoch(): number {
  return useStore(epoch);
}
// the root answers again (connection.ts probes it): reopen the stream now, not at the end of the backoff
connection.state.subscribe(() => {
  if (connection.state.get().up && abort === undefined) connect();
});
