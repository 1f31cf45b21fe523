/**
 * The lease loop (the timer shell around decide.ts): every `renewMs` this root calls
 * `store.tryLease('reconciler', holder, ttlMs, info)`, one call at a time; a timer at the lease's
 * deadline makes a leader whose renewals hang step down before anyone else can take over.
 * `onLead()` / `onFollow(leader)` are called on every change of role (and on a follower when the
 * leader changes). close() stops the loop and, by default, releases the lease at once so another
 * root takes over without waiting for the ttl.
 */
import { randomUUID } from 'node:crypto';
import type { Store } from '@oak/store';
import { LeaseDecider, type LeaderInfo, type Role, type Transition } from './decide.ts';

export const RECONCILER_LEASE = 'reconciler';
export const DEFAULT_LEASE_TTL_MS = 3000;
export const DEFAULT_LEASE_RENEW_MS = 1000;

export interface LeaseLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface LeaseLoopOptions {
  store: Pick<Store, 'tryLease' | 'releaseLease'>;
  /** default a random UUID */
  holder?: string;
  /** default 'reconciler' */
  name?: string;
  ttlMs?: number;
  renewMs?: number;
  marginMs?: number;
  /** what the holder advertises (JSON text) */
  info: string;
  onLead(): void;
  onFollow(leader: LeaderInfo | null, reason: string): void;
  log: LeaseLog;
  /** the clock (tests) */
  now?: () => number;
}

export interface LeaseLoop {
  readonly holder: string;
  readonly role: Role | undefined;
  readonly leader: LeaderInfo | null;
  /** resolves once the first tryLease was answered (and its transition told) */
  readonly ready: Promise<void>;
  /** releases the lease (if held) and stays a follower for `ms`, then competes again */
  yieldFor(ms: number): Promise<void>;
  /** stops renewing (no more callbacks); the lease is kept until release() or its expiry */
  stop(): Promise<void>;
  /** gives the lease up at once if this root holds it */
  release(): Promise<void>;
  /** stop() then release() */
  close(): Promise<void>;
}

export function startLeaseLoop(o: LeaseLoopOptions): LeaseLoop {
  const holder = o.holder ?? randomUUID();
  const name = o.name ?? RECONCILER_LEASE;
  const ttlMs = o.ttlMs ?? DEFAULT_LEASE_TTL_MS;
  const renewMs = o.renewMs ?? DEFAULT_LEASE_RENEW_MS;
  const now = o.now ?? Date.now;
  // 1 s before the ttl (short test ttls: a third of it)
  const decider = new LeaseDecider(holder, { ttlMs, marginMs: o.marginMs ?? Math.min(1000, Math.floor(ttlMs / 3)) });
  let closed = false;
  let inFlight: Promise<void> | undefined;
  let pausedUntil = 0;
  let deadlineTimer: NodeJS.Timeout | undefined;
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));

  const tell = (t: Transition | null): void => {
    armDeadline();
    if (t === null) return;
    try {
      if (t.kind === 'lead') {
        o.log.info({ holder, lease: name }, 'lead: this root leads the reconciler');
        o.onLead();
      } else {
        o.log.info({ holder, lease: name, leader: t.leader?.holder ?? null, reason: t.reason }, 'lead: this root follows');
        o.onFollow(t.leader, t.reason);
      }
    } catch (err) {
      o.log.error({ err }, 'lead: role change handler failed');
    }
  };

  const armDeadline = (): void => {
    clearTimeout(deadlineTimer);
    deadlineTimer = undefined;
    const d = decider.deadline();
    if (d === undefined || closed) return;
    deadlineTimer = setTimeout(() => tell(decider.onClock(now())), Math.max(0, d - now()));
    deadlineTimer.unref?.();
  };

  const tick = (): void => {
    if (closed || inFlight) return;
    tell(decider.onClock(now()));
    if (now() < pausedUntil) return;
    const sentAt = now();
    inFlight = o.store
      .tryLease(name, holder, ttlMs, o.info)
      .then(
        (lease) => {
          if (!closed) tell(decider.onResult({ ok: true, sentAt, lease }, now()));
        },
        (err: unknown) => {
          const error = err instanceof Error ? err.message : String(err);
          if (decider.role === 'leader' || decider.role === undefined) o.log.warn({ err: error, holder }, 'lead: lease call failed');
          if (!closed) tell(decider.onResult({ ok: false, sentAt, error }, now()));
        },
      )
      .finally(() => {
        inFlight = undefined;
        resolveReady();
      });
  };

  const interval = setInterval(tick, renewMs);
  interval.unref?.();
  tick();

  const release = async (): Promise<void> => {
    try {
      await o.store.releaseLease(name, holder);
    } catch (err) {
      o.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'lead: releasing the lease failed (it expires by itself)');
    }
  };

  return {
    holder,
    get role() {
      return decider.role;
    },
    get leader() {
      return decider.leader;
    },
    ready,
    async yieldFor(ms) {
      pausedUntil = now() + ms;
      await inFlight;
      const wasLeader = decider.role === 'leader';
      tell(decider.released());
      if (wasLeader || decider.role === 'follower') await release();
    },
    async stop() {
      closed = true;
      clearInterval(interval);
      clearTimeout(deadlineTimer);
      // a renewal that hangs (a stalled database) must not hold the close up for ever
      if (inFlight) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([inFlight, new Promise<void>((r) => (timer = setTimeout(r, ttlMs)))]);
        clearTimeout(timer);
      }
      resolveReady();
    },
    async release() {
      // releaseLease changes nothing unless we hold it (a follower after failed renewals may still)
      decider.released();
      await release();
    },
    async close() {
      await this.stop();
      await this.release();
    },
  };
}
