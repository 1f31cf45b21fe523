/**
 * Whether the root answers. Requests and the event stream report here; the layout shows a banner
 * while it is down, and the event stream keeps retrying (with backoff) until it is back.
 */
import { store } from './store.ts';

export type ConnState = { up: true } | { up: false; since: number; retryAt?: number };

const state = store<ConnState>({ up: true });

export const connection = {
  state,
  reached(): void {
    if (!state.get().up) state.set({ up: true });
  },
  lost(retryAt?: number): void {
    const s = state.get();
    state.set({ up: false, since: s.up ? Date.now() : s.since, ...(retryAt !== undefined ? { retryAt } : {}) });
  },
};
