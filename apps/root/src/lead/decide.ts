/**
 * Who leads the reconciler (several roots on one PostgreSQL): the pure decision part of the lease
 * loop. It is told the outcome of each `tryLease` (with the moment the call was sent) and the
 * clock; it answers the transitions to make. No I/O, no timers: the clock is passed in, so it is
 * unit-tested with a fake one (leader.ts is the timer shell).
 *
 * The lease is trusted for `ttlMs - marginMs` after the moment a successful renewal was SENT (the
 * database stamps the expiry with its own clock when it runs the statement, which is after we
 * sent it, so our deadline is never later than the database's). Another holder: step down at
 * once. A store error, or a renewal that hangs: step down as soon as the last successful renewal
 * is older than `ttlMs - marginMs` (with ttl 3 s, renew 1 s, margin 1 s: the second failure in a
 * row), that is before anyone else can take the lease.
 */
import type { LeaseState } from '@oak/store';

export type Role = 'leader' | 'follower';

/** What a holder advertises in the lease's info (JSON); fields are absent when not given or invalid. */
export interface LeaderInfo {
  holder: string;
  api_url?: string;
  link_url?: string;
  started_at?: string;
}

export interface DecideConfig {
  ttlMs: number;
  /** step down this long before the lease could expire (default 1000 ms) */
  marginMs: number;
}

export type LeaseOutcome = { ok: true; sentAt: number; lease: LeaseState } | { ok: false; sentAt: number; error: string };

export type Transition = { kind: 'lead' } | { kind: 'follow'; leader: LeaderInfo | null; reason: string };

const MAX_FIELD = 2048;

/** The lease's info text as LeaderInfo; anything malformed is left out (never throws). */
export function parseLeaderInfo(holder: string, info: string | null): LeaderInfo {
  const out: LeaderInfo = { holder };
  if (info === null || info.length > 8192) return out;
  let v: unknown;
  try {
    v = JSON.parse(info);
  } catch {
    return out;
  }
  if (typeof v !== 'object' || v === null) return out;
  const o = v as Record<string, unknown>;
  for (const k of ['api_url', 'link_url', 'started_at'] as const) {
    const x = o[k];
    if (typeof x === 'string' && x !== '' && x.length <= MAX_FIELD) out[k] = x;
  }
  return out;
}

export class LeaseDecider {
  readonly holder: string;
  readonly #cfg: DecideConfig;
  #role: Role | undefined;
  /** when the last successful renewal was sent */
  #lastOkAt: number | undefined;
  #leader: LeaderInfo | null = null;

  constructor(holder: string, cfg: Partial<DecideConfig> & { ttlMs: number }) {
    this.holder = holder;
    this.#cfg = { ttlMs: cfg.ttlMs, marginMs: cfg.marginMs ?? 1000 };
    if (this.#cfg.marginMs >= this.#cfg.ttlMs) throw new Error('the lease margin must be shorter than its ttl');
  }

  /** undefined until the first outcome */
  get role(): Role | undefined {
    return this.#role;
  }

  /** the current leader as last seen (ourselves when leading; null when unknown) */
  get leader(): LeaderInfo | null {
    return this.#leader;
  }

  get lastOkAt(): number | undefined {
    return this.#lastOkAt;
  }

  /** the moment the lease stops being trusted (leading only) */
  deadline(): number | undefined {
    if (this.#role !== 'leader' || this.#lastOkAt === undefined) return undefined;
    return this.#lastOkAt + this.#cfg.ttlMs - this.#cfg.marginMs;
  }

  #fresh(sentAt: number, now: number): boolean {
    return now < sentAt + this.#cfg.ttlMs - this.#cfg.marginMs;
  }

  #follow(leader: LeaderInfo | null, reason: string): Transition {
    this.#role = 'follower';
    this.#leader = leader;
    return { kind: 'follow', leader, reason };
  }

  /** The outcome of one tryLease, told at `now` (its answer came then). */
  onResult(r: LeaseOutcome, now: number): Transition | null {
    if (r.ok && r.lease.held && r.lease.holder === this.holder) {
      if (!this.#fresh(r.sentAt, now)) {
        // the answer came too late to lead on: the lease may be about to expire
        if (this.#role === 'leader') return this.#follow(null, 'the lease renewal answered too late');
        if (this.#role === undefined) return this.#follow(null, 'the lease answered too late');
        return null;
      }
      this.#lastOkAt = Math.max(this.#lastOkAt ?? r.sentAt, r.sentAt);
      this.#leader = parseLeaderInfo(this.holder, r.lease.info);
      if (this.#role === 'leader') return null;
      this.#role = 'leader';
      return { kind: 'lead' };
    }
    if (r.ok) {
      const leader = parseLeaderInfo(r.lease.holder, r.lease.info);
      const was = this.#role;
      const changed = JSON.stringify(leader) !== JSON.stringify(this.#leader);
      if (was === 'leader') return this.#follow(leader, `another root holds the lease (${leader.holder})`);
      if (was === undefined || changed) return this.#follow(leader, `${leader.holder} leads`);
      return null;
    }
    // a store error: the lease stays ours until the database could give it to someone else
    if (this.#role === 'leader') {
      if (this.#lastOkAt !== undefined && this.#fresh(this.#lastOkAt, now)) return null;
      return this.#follow(null, `the lease could not be renewed: ${r.error}`);
    }
    if (this.#role === undefined) return this.#follow(null, `the lease could not be read: ${r.error}`);
    return null;
  }

  /** The clock: a leader whose last successful renewal is too old steps down (a hanging renewal). */
  onClock(now: number): Transition | null {
    if (this.#role !== 'leader') return null;
    const d = this.deadline();
    if (d !== undefined && now < d) return null;
    return this.#follow(null, 'the lease renewal is overdue');
  }

  /** We gave the lease up (clean close, or we could not run the control plane). */
  released(): Transition | null {
    const was = this.#role;
    this.#lastOkAt = undefined;
    if (was === 'leader') return this.#follow(null, 'the lease was released');
    this.#role = 'follower';
    return null;
  }
}
