/**
 * Open long-lived answers (SSE on /api/events, log follows) per user, so that they end when the
 * token they were opened with expires, or when the user is removed, demoted, changes the password
 * or logs out. The users and auth routes call `endUser` at once; every `recheckMs` the registry
 * also re-reads the users of open streams from the store, which catches changes made through
 * another root on the same PostgreSQL.
 */
import type { Store } from '@oak/store';
import type { Principal } from './auth/principal.ts';

/** how a stream ends: the reason goes to the client as a last line / event */
export type EndStream = (reason: string) => void;

interface Entry {
  userId: string;
  tokenVersion: number;
  end: EndStream;
  timer: NodeJS.Timeout | undefined;
}

const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export class StreamRegistry {
  private readonly byUser = new Map<string, Set<Entry>>();
  private readonly recheck: NodeJS.Timeout;
  private checking = false;

  constructor(
    private readonly store: Store,
    opts: { recheckMs?: number } = {},
  ) {
    this.recheck = setInterval(() => void this.sweep(), opts.recheckMs ?? 30_000);
    this.recheck.unref();
  }

  /** Registers a stream of `p`; answers the function that unregisters it (call it when the stream closes). */
  open(p: Principal, end: EndStream): () => void {
    const entry: Entry = { userId: p.user.id, tokenVersion: p.user.token_version, end, timer: undefined };
    if (p.tokenExp !== undefined) {
      const ms = p.tokenExp * 1000 - Date.now();
      entry.timer = setTimeout(() => this.finish(entry, 'the token of this stream has expired'), Math.max(0, Math.min(ms, MAX_TIMEOUT_MS)));
      entry.timer.unref();
    }
    let set = this.byUser.get(entry.userId);
    if (set === undefined) this.byUser.set(entry.userId, (set = new Set()));
    set.add(entry);
    return () => this.remove(entry);
  }

  /** Ends every open stream of the user; answers how many. */
  endUser(userId: string, reason: string): number {
    const set = this.byUser.get(userId);
    if (set === undefined) return 0;
    const entries = [...set];
    for (const e of entries) this.finish(e, reason);
    return entries.length;
  }

  /** open streams of one user, or of everyone */
  count(userId?: string): number {
    if (userId !== undefined) return this.byUser.get(userId)?.size ?? 0;
    let n = 0;
    for (const s of this.byUser.values()) n += s.size;
    return n;
  }

  /** Re-reads the users of open streams; ends those whose user is gone or whose tokens were revoked. */
  async sweep(): Promise<void> {
    if (this.checking || this.byUser.size === 0) return;
    this.checking = true;
    try {
      for (const [userId, set] of [...this.byUser]) {
        const user = await this.store.getUser(userId).catch(() => null);
        if (user === null) continue; // the store is unreachable: try again next time
        for (const e of [...set]) {
          if (user === undefined) this.finish(e, 'the user was removed');
          else if (user.token_version !== e.tokenVersion) this.finish(e, 'the tokens of this user were revoked (logout, password or role change)');
        }
      }
    } finally {
      this.checking = false;
    }
  }

  close(): void {
    clearInterval(this.recheck);
    for (const set of [...this.byUser.values()]) for (const e of [...set]) this.remove(e);
  }

  private finish(e: Entry, reason: string): void {
    if (!this.remove(e)) return;
    try {
      e.end(reason);
    } catch {
      // a stream that cannot be ended cleanly is gone anyway
    }
  }

  private remove(e: Entry): boolean {
    const set = this.byUser.get(e.userId);
    if (set === undefined || !set.delete(e)) return false;
    if (set.size === 0) this.byUser.delete(e.userId);
    if (e.timer !== undefined) clearTimeout(e.timer);
    return true;
  }
}
