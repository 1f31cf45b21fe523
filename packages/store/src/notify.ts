/**
 * Cross-root notifications (Store.notify/listen). PostgreSQL: NOTIFY through the pool and LISTEN
 * on one dedicated connection per store, which reconnects (and listens again) when it drops.
 * SQLite (one root): delivery within the process, between the stores opened on the same file.
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { OakError } from '@oak/contracts';
import type pg from 'pg';
import { quoteIdent } from './db.ts';

export const CHANNEL_RE = /^[a-z_]{1,40}$/;
export const MAX_PAYLOAD_BYTES = 7000;

export type Handler = (payload: string) => void;

export function checkChannel(channel: string): void {
  if (typeof channel !== 'string' || !CHANNEL_RE.test(channel)) {
    throw new OakError('OAK_BAD_REQUEST', `notification channel ${JSON.stringify(String(channel)).slice(0, 60)} is not 1-40 characters [a-z_]`);
  }
}

export function checkPayload(payload: string): void {
  if (typeof payload !== 'string') throw new OakError('OAK_BAD_REQUEST', 'a notification payload is a string');
  // PostgreSQL text cannot hold NUL; refused on both backends so that they behave alike
  if (payload.includes('\u0000')) throw new OakError('OAK_BAD_REQUEST', 'a notification payload cannot contain NUL characters');
  const n = Buffer.byteLength(payload, 'utf8');
  if (n > MAX_PAYLOAD_BYTES) {
    throw new OakError('OAK_BAD_REQUEST', `notification payload of ${n} bytes is longer than ${MAX_PAYLOAD_BYTES}`, {
      hint: 'send an id and let the receiver read the rest from the store',
    });
  }
}

export interface Notifier {
  notify(channel: string, payload: string): Promise<void>;
  listen(channel: string, fn: Handler): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

function deliver(set: Set<Handler> | undefined, payload: string): void {
  for (const fn of [...(set ?? [])]) {
    try {
      fn(payload);
    } catch {
      // one listener's failure is not the sender's nor the other listeners' problem
    }
  }
}

/** channel -> handlers, shared by every store opened on the same SQLite file in this process */
const localBuses = new Map<string, Map<string, Set<Handler>>>();

export class LocalNotifier implements Notifier {
  readonly #bus: Map<string, Set<Handler>>;
  readonly #mine = new Set<{ channel: string; fn: Handler }>();

  /** `path` undefined or ':memory:': a bus of this store alone */
  constructor(path: string | undefined) {
    if (path === undefined || path === '' || path === ':memory:') {
      this.#bus = new Map();
    } else {
      const key = resolve(path);
      let bus = localBuses.get(key);
      if (!bus) localBuses.set(key, (bus = new Map()));
      this.#bus = bus;
    }
  }

  async notify(channel: string, payload: string): Promise<void> {
    checkChannel(channel);
    checkPayload(payload);
    // asynchronously, as PostgreSQL does: the sender never runs a listener inside its own call
    const set = this.#bus.get(channel);
    if (set && set.size > 0) setImmediate(() => deliver(set, payload));
  }

  async listen(channel: string, fn: Handler): Promise<() => Promise<void>> {
    checkChannel(channel);
    let set = this.#bus.get(channel);
    if (!set) this.#bus.set(channel, (set = new Set()));
    // a wrapper, so that the same function listening twice is two listeners
    const entry = { channel, fn: (p: string): void => fn(p) };
    set.add(entry.fn);
    this.#mine.add(entry);
    return async () => this.#remove(entry);
  }

  #remove(entry: { channel: string; fn: Handler }): void {
    this.#mine.delete(entry);
    const set = this.#bus.get(entry.channel);
    set?.delete(entry.fn);
    if (set?.size === 0) this.#bus.delete(entry.channel);
  }

  async close(): Promise<void> {
    for (const e of [...this.#mine]) this.#remove(e);
  }
}

export interface PgNotifierOptions {
  url: string;
  schema: string | undefined;
  /** sends one NOTIFY (through the store's pool) */
  send: (pgChannel: string, payload: string) => Promise<void>;
  /** reconnect delays (ms): first, and the cap of the doubling */
  retryMs?: number;
  retryMaxMs?: number;
}

export class PgNotifier implements Notifier {
  readonly #opts: PgNotifierOptions;
  readonly #suffix: string;
  /** PostgreSQL channel -> handlers */
  readonly #handlers = new Map<string, Set<Handler>>();
  #client: pg.Client | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #delay: number;

  constructor(opts: PgNotifierOptions) {
    this.#opts = opts;
    this.#delay = opts.retryMs ?? 100;
    // NOTIFY is database-wide: stores on other schemas (other deployments, test runs) must not hear it
    this.#suffix = opts.schema === undefined ? '' : `__${createHash('sha256').update(opts.schema).digest('hex').slice(0, 10)}`;
  }

  /** the name PostgreSQL sees (at most 40 + 12 characters, below its 63) */
  pgChannel(channel: string): string {
    return channel + this.#suffix;
  }

  /** the application_name of the listen connection (tests find it in pg_stat_activity) */
  get applicationName(): string {
    return `oak listen ${this.#opts.schema ?? ''}`.slice(0, 63);
  }

  async notify(channel: string, payload: string): Promise<void> {
    checkChannel(channel);
    checkPayload(payload);
    await this.#opts.send(this.pgChannel(channel), payload);
  }

  async listen(channel: string, fn: Handler): Promise<() => Promise<void>> {
    checkChannel(channel);
    if (this.#closed) throw new OakError('OAK_INTERNAL', 'the store is closed');
    const name = this.pgChannel(channel);
    const wrapped: Handler = (p) => fn(p);
    await this.#serial(async () => {
      if (this.#closed) throw new OakError('OAK_INTERNAL', 'the store is closed');
      let set = this.#handlers.get(name);
      const first = !set;
      if (!set) this.#handlers.set(name, (set = new Set()));
      set.add(wrapped);
      try {
        if (this.#client === undefined) await this.#connect();
        else if (first) await this.#client.query(`listen ${quoteIdent(name)}`);
      } catch (e) {
        set.delete(wrapped);
        if (set.size === 0) this.#handlers.delete(name);
        throw e;
      }
    });
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      await this.#serial(async () => {
        const set = this.#handlers.get(name);
        set?.delete(wrapped);
        if (set?.size !== 0) return;
        this.#handlers.delete(name);
        await this.#client?.query(`unlisten ${quoteIdent(name)}`).catch(() => undefined);
      });
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#serial(async () => {
      const c = this.#client;
      this.#client = undefined;
      this.#handlers.clear();
      await c?.end().catch(() => undefined);
    });
  }

  /** one connection change at a time */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn);
    this.#chain = p.catch(() => undefined);
    return p;
  }

  /** opens the listen connection and listens on every channel that has handlers */
  async #connect(): Promise<void> {
    const { default: pgm } = await import('pg');
    const c = new pgm.Client({ connectionString: this.#opts.url, application_name: this.applicationName });
    // delivered also before `this.#client` is set (a notification can arrive with the LISTEN's answer);
    // a lost client sends nothing more, and close() clears the handlers
    c.on('notification', (m) => deliver(this.#handlers.get(m.channel), m.payload ?? ''));
    c.on('error', () => this.#lost(c));
    c.on('end', () => this.#lost(c));
    try {
      await c.connect();
      for (const name of this.#handlers.keys()) await c.query(`listen ${quoteIdent(name)}`);
    } catch (e) {
      c.removeAllListeners('end');
      await c.end().catch(() => undefined);
      throw e;
    }
    this.#client = c;
    this.#delay = this.#opts.retryMs ?? 100;
  }

  #lost(c: pg.Client): void {
    if (this.#client !== c) return;
    this.#client = undefined;
    c.end().catch(() => undefined);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#closed || this.#timer !== undefined) return;
    const wait = this.#delay;
    this.#delay = Math.min(this.#delay * 2, this.#opts.retryMaxMs ?? 2000);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#serial(async () => {
        if (this.#closed || this.#client !== undefined || this.#handlers.size === 0) return;
        try {
          await this.#connect();
        } catch {
          this.#schedule();
        }
      });
    }, wait);
    this.#timer.unref();
  }
}
