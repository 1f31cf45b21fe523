/**
 * Whether the root answers. Requests and the event stream report here; while it is down the
 * layout shows a banner and this module probes GET /healthz (with backoff, 1 s to 10 s) until it
 * answers again, so the dashboard reconnects by itself without a reload.
 */
import { store } from './store.ts';

export type ConnState = { up: true } | { up: false; since: number; retryAt?: number };

const state = store<ConnState>({ up: true });
let probe: ReturnType<typeof setTimeout> | undefined;
let wait = 1000;

function scheduleProbe(): void {
  if (probe !== undefined) return;
  const at = Date.now() + wait;
  const s = state.get();
  if (!s.up) state.set({ up: false, since: s.since, retryAt: at });
  probe = setTimeout(() => {
    probe = undefined;
    fetch('/healthz', { cache: 'no-store', credentials: 'omit' }).then(
      (res) => {
        if (res.ok) connection.reached();
        else retry();
      },
      retry,
    );
  }, wait);
}

function retry(): void {
  wait = Math.min(wait * 2, 10_000);
  if (!state.get().up) scheduleProbe();
}

export const connection = {
  state,
  reached(): void {
    wait = 1000;
    clearTimeout(probe);
    probe = undefined;
    if (!state.get().up) state.set({ up: true });
  },
  lost(): void {
    const s = state.get();
    if (s.up) state.set({ up: false, since: Date.now() });
    scheduleProbe();
  },
};

addEventListener('online', () => {
  if (state.get().up) return;
  clearTimeout(probe);
  probe = undefined;
  wait = 0;
  scheduleProbe();
  wait = 1000;
});
