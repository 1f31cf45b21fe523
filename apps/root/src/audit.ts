/**
 * The audit trail. One fastify onResponse hook, keyed on the route pattern, records every change:
 * every request other than GET/HEAD/OPTIONS that a logged-in user made (whatever its status:
 * done, refused for role or organisation, invalid), plus logins, failed logins and logouts. It
 * stores who (user id and name), what (method, route pattern, target id, status, error code),
 * when and from which address. It never stores a request body, a query string or a header, so
 * passwords, tokens and environment values cannot end up in it.
 *
 * Not recorded: reads; requests without a valid token (401 before any route ran: anyone could
 * fill the table with them); logins refused with 429 (cheap to repeat; the failures that led to
 * the block are recorded); token refreshes.
 *
 * The table is bounded: at most `maxRows` entries and none older than `maxAgeDays` (pruned at
 * start and every `pruneEvery` writes).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AuditEntry, NewAuditEntry, Store } from '@oak/store';

export interface AuditOptions {
  /** most entries kept (default 100,000) */
  maxRows?: number;
  /** oldest entry kept, days (default 90) */
  maxAgeDays?: number;
  /** prune after this many writes (default 500) */
  pruneEvery?: number;
}

/** What a handler can tell the audit hook (login: the user the name belongs to). */
export interface AuditNote {
  userId?: string | null;
  userName?: string | null;
  target?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    audit: AuditNote | null;
  }
}

export class AuditLog {
  readonly maxRows: number;
  readonly maxAgeSec: number;
  private readonly pruneEvery: number;
  private writes = 0;
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    private readonly store: Store,
    private readonly onError: (err: unknown) => void,
    opts: AuditOptions = {},
  ) {
    this.maxRows = opts.maxRows ?? 100_000;
    this.maxAgeSec = (opts.maxAgeDays ?? 90) * 24 * 3600;
    this.pruneEvery = Math.max(1, opts.pruneEvery ?? 500);
  }

  private track<T>(p: Promise<T>): Promise<T | undefined> {
    const q = p.catch((err: unknown) => {
      this.onError(err);
      return undefined;
    });
    this.pending.add(q);
    void q.finally(() => this.pending.delete(q));
    return q;
  }

  record(e: NewAuditEntry): Promise<AuditEntry | undefined> {
    this.writes += 1;
    const r = this.track(this.store.addAudit(e));
    if (this.writes % this.pruneEvery === 0) void this.prune();
    return r;
  }

  prune(): Promise<number | undefined> {
    return this.track(this.store.pruneAudit({ maxRows: this.maxRows, maxAgeSec: this.maxAgeSec }));
  }

  /** resolves when every write so far is done (tests, shutdown) */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }
}

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);
const ID_KEYS = ['applicationID', 'microserviceID', '_id', 'id'] as const;

/** The id of what a POST created, from its JSON answer (the answer is read, never stored). */
function createdId(payload: unknown): string | undefined {
  if (typeof payload !== 'string' || payload.length > 1024 * 1024) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (Array.isArray(v)) v = v[0];
  if (typeof v !== 'object' || v === null) return undefined;
  for (const k of ID_KEYS) {
    const id = (v as Record<string, unknown>)[k];
    if (typeof id === 'string' && id.length <= 200) return id;
  }
  return undefined;
}

function errorCode(payload: unknown): string | undefined {
  if (typeof payload !== 'string' || payload.length > 1024 * 1024) return undefined;
  const m = /^\{"error":\{"code":"(OAK_[A-Z_]{1,40})"/.exec(payload);
  return m?.[1];
}

interface Pending {
  createdId?: string;
  errorCode?: string;
}
const seen = new WeakMap<FastifyRequest, Pending>();

function actionOf(req: FastifyRequest, route: string, status: number): string | undefined {
  if (route === '/api/auth/login') {
    if (status === 200) return 'auth.login';
    if (status === 401) return 'auth.login_failed';
    return undefined;
  }
  if (route === '/api/auth/logout') return status === 200 ? 'auth.logout' : undefined;
  if (route.startsWith('/api/auth/')) return undefined;
  if (READS.has(req.method) || req.principal === null) return undefined;
  return `${req.method} ${route}`;
}

function targetOf(req: FastifyRequest, p: Pending | undefined): string | null {
  if (req.audit?.target !== undefined) return req.audit.target;
  const params = req.params as Record<string, unknown> | undefined;
  const values = params && typeof params === 'object' ? Object.values(params).filter((v): v is string | number => typeof v === 'string' || typeof v === 'number') : [];
  if (values.length > 0) return values.map(String).join('/').slice(0, 400);
  return p?.createdId ?? null;
}

/** Registers the hooks on the root app (before any route). */
export function registerAudit(app: FastifyInstance, audit: AuditLog): void {
  app.decorateRequest('audit', null);
  app.addHook('onSend', async (req: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    if (READS.has(req.method)) return payload;
    const status = reply.statusCode;
    const p: Pending = {};
    if (status >= 400) {
      const c = errorCode(payload);
      if (c !== undefined) p.errorCode = c;
    } else if (req.method === 'POST') {
      const id = createdId(payload);
      if (id !== undefined) p.createdId = id;
    }
    seen.set(req, p);
    return payload;
  });
  app.addHook('onResponse', async (req: FastifyRequest, reply: FastifyReply) => {
    const route = req.routeOptions.url;
    if (route === undefined || READS.has(req.method)) return;
    const status = reply.statusCode;
    const action = actionOf(req, route, status);
    if (action === undefined) return;
    const p = seen.get(req);
    const user = req.principal?.user;
    void audit.record({
      user_id: req.audit?.userId ?? user?.id ?? null,
      user_name: req.audit?.userName ?? user?.name ?? null,
      action,
      method: req.method,
      route,
      target: targetOf(req, p),
      status,
      error_code: p?.errorCode ?? null,
      address: req.ip ?? null,
    });
  });
}
