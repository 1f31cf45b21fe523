/**
 * Login rate limit: failed logins are counted per user name (known or not, so the answer never
 * says which names exist) and per source address, in a fixed window. After `maxPerUser` (or
 * `maxPerAddress`) failures the key is blocked until its window ends: 429 OAK_RATE_LIMITED with
 * Retry-After. A successful login clears the user name's counter.
 *
 * Memory is bounded: each map holds at most `maxEntries` keys and forgets the least recently
 * touched one first (a Map keeps insertion order; a touch re-inserts). A flood of random user
 * names can therefore evict a name's counter, but each failure costs the attacker one argon2
 * verification and every address is limited on its own.
 *
 * In-process: behind several roots on one PostgreSQL every root counts on its own (a client
 * spreading its attempts over N roots gets N times the budget).
 */
export interface LoginLimitOptions {
  /** failures of one user name per window before it is blocked (default 5) */
  maxPerUser?: number;
  /** failures from one address per window before it is blocked (default 20) */
  maxPerAddress?: number;
  /** window in seconds (default 300) */
  windowSec?: number;
  /** most keys kept per map (default 10,000) */
  maxEntries?: number;
  /** clock (tests) */
  now?: () => number;
}

interface Bucket {
  start: number;
  failures: number;
}

/** Counts events per key in a fixed window, at most `cap` keys (the least recently touched goes first). */
export class BoundedCounter {
  private readonly map = new Map<string, Bucket>();
  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly cap: number,
  ) {}

  private current(key: string, now: number): Bucket | undefined {
    const b = this.map.get(key);
    if (b === undefined) return undefined;
    if (now - b.start >= this.windowMs) {
      this.map.delete(key);
      return undefined;
    }
    return b;
  }

  /** ms until the key may try again (0: it may) */
  blockedFor(key: string, now: number): number {
    const b = this.current(key, now);
    if (b === undefined || b.failures < this.max) return 0;
    return b.start + this.windowMs - now;
  }

  /** counts one event of the key */
  add(key: string, now: number): void {
    const b = this.current(key, now) ?? { start: now, failures: 0 };
    b.failures += 1;
    this.map.delete(key);
    this.map.set(key, b);
    while (this.map.size > this.cap) {
      const oldest = this.map.keys().next().value;
      if (oldest === undefined) break;
      this.map.delete(oldest);
    }
  }

  clear(key: string): void {
    this.map.delete(key);
  }

  get size(): number {
    return this.map.size;
  }
}

export class LoginLimiter {
  readonly windowSec: number;
  private readonly users: BoundedCounter;
  private readonly addresses: BoundedCounter;
  private readonly now: () => number;

  constructor(opts: LoginLimitOptions = {}) {
    this.windowSec = opts.windowSec ?? 300;
    const windowMs = this.windowSec * 1000;
    const cap = opts.maxEntries ?? 10_000;
    this.users = new BoundedCounter(opts.maxPerUser ?? 5, windowMs, cap);
    this.addresses = new BoundedCounter(opts.maxPerAddress ?? 20, windowMs, cap);
    this.now = opts.now ?? Date.now;
  }

  /** seconds to wait before `user` may try again from `address` (0: go ahead) */
  retryAfter(user: string, address: string): number {
    const now = this.now();
    const ms = Math.max(this.users.blockedFor(user, now), this.addresses.blockedFor(address, now));
    return ms <= 0 ? 0 : Math.max(1, Math.ceil(ms / 1000));
  }

  failed(user: string, address: string): void {
    const now = this.now();
    this.users.add(user, now);
    this.addresses.add(address, now);
  }

  succeeded(user: string): void {
    this.users.clear(user);
  }

  /** keys held (for the memory bound test) */
  get size(): { users: number; addresses: number } {
    return { users: this.users.size, addresses: this.addresses.size };
  }
}
