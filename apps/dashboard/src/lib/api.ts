/**
 * The API client every view uses: fetch with the bearer token, one refresh on a 401 (shared by
 * concurrent requests), and every failure as an ApiError carrying the server's code, message and
 * hint (SPEC §3 error shape). The session lives in sessionStorage: one tab, gone with it.
 * Reachability of the root is tracked here and by the event stream (connection.ts).
 */
import { store } from './store.ts';
import { connection } from './connection.ts';

export type Role = 'Admin' | 'Organization_Admin' | 'Application_Provider' | 'Infrastructure_Provider';

export interface Session {
  token: string;
  refresh_token: string;
  /** when the access token expires (ms since epoch) */
  expiresAt: number;
  user: { id: string; name: string; roles: Role[]; org: string };
}

interface TokenPair {
  token: string;
  refresh_token: string;
  expires_in: number;
}

export interface ServerError {
  code: string;
  message: string;
  path?: string;
  hint?: string;
  details?: unknown;
}

export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly hint: string | undefined;
  readonly path: string | undefined;
  readonly details: unknown;
  constructor(status: number, e: ServerError) {
    super(e.message);
    this.name = 'ApiError';
    this.status = status;
    this.code = e.code;
    this.hint = e.hint;
    this.path = e.path;
    this.details = e.details;
  }
}

const KEY = 'oak.session';

function decodeClaims(token: string): Session['user'] {
  const part = token.split('.')[1] ?? '';
  const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
  const c = JSON.parse(json) as { sub?: unknown; name?: unknown; roles?: unknown; org?: unknown };
  return {
    id: String(c.sub ?? ''),
    name: String(c.name ?? ''),
    roles: Array.isArray(c.roles) ? (c.roles.filter((r) => typeof r === 'string') as Role[]) : [],
    org: String(c.org ?? ''),
  };
}

function toSession(p: TokenPair): Session {
  return { token: p.token, refresh_token: p.refresh_token, expiresAt: Date.now() + p.expires_in * 1000, user: decodeClaims(p.token) };
}

function load(): Session | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw === null ? null : (JSON.parse(raw) as Session);
  } catch {
    return null;
  }
}

/** The logged-in user's session (null: logged out). */
export const session = store<Session | null>(load());
session.subscribe(() => {
  const s = session.get();
  if (s === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, JSON.stringify(s));
  scheduleRefresh();
});

let refreshTimer: ReturnType<typeof setTimeout> | undefined;
/** Refreshes the access token before it expires, so a session left open stays logged in. */
function scheduleRefresh(): void {
  clearTimeout(refreshTimer);
  const s = session.get();
  if (s === null) return;
  const inMs = Math.max(1000, (s.expiresAt - Date.now()) * 0.8);
  refreshTimer = setTimeout(() => void refresh().catch(() => undefined), Math.min(inMs, 2 ** 31 - 1));
}
scheduleRefresh();

async function parseError(res: Response): Promise<ApiError> {
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const e = (body as { error?: ServerError } | undefined)?.error;
  if (e !== undefined && typeof e.code === 'string' && typeof e.message === 'string') return new ApiError(res.status, e);
  return new ApiError(res.status, { code: `HTTP_${res.status}`, message: `the root answered ${res.status} ${res.statusText}` });
}

function unreachable(err: unknown): ApiError {
  return new ApiError(0, {
    code: 'OAK_UNREACHABLE',
    message: `the root at ${location.origin} is unreachable`,
    hint: err instanceof Error && err.name === 'AbortError' ? 'the request was cancelled' : 'check the network; the dashboard reconnects by itself',
  });
}

async function send(method: string, path: string, body: unknown, token: string | undefined, signal?: AbortSignal): Promise<Response> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  try {
    const res = await fetch(path, { method, headers, body: body === undefined ? null : JSON.stringify(body), signal: signal ?? null, credentials: 'omit' });
    connection.reached();
    return res;
  } catch (err) {
    if (!(err instanceof Error && err.name === 'AbortError')) connection.lost();
    throw unreachable(err);
  }
}

let refreshing: Promise<Session> | undefined;
/** Trades the refresh token for a new pair; concurrent callers share one request. A refusal logs out. */
export function refresh(): Promise<Session> {
  refreshing ??= (async () => {
    const s = session.get();
    if (s === null) throw new ApiError(401, { code: 'OAK_UNAUTHORIZED', message: 'not logged in' });
    const res = await send('POST', '/api/auth/refresh', { refresh_token: s.refresh_token }, undefined);
    if (!res.ok) {
      const e = await parseError(res);
      if (res.status === 401) session.set(null);
      throw e;
    }
    const next = toSession((await res.json()) as TokenPair);
    session.set(next);
    return next;
  })().finally(() => {
    refreshing = undefined;
  });
  return refreshing;
}

/** A token valid for at least a few seconds (refreshing first when it is about to expire). */
export async function freshToken(): Promise<string | undefined> {
  const s = session.get();
  if (s === null) return undefined;
  if (s.expiresAt - Date.now() < 5000) return (await refresh()).token;
  return s.token;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

/** One API call; answers the parsed JSON body (undefined for an empty one) or throws ApiError. */
export async function request<T>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<T> {
  let res = await send(method, path, body, await freshToken(), opts.signal);
  if (res.status === 401 && session.get() !== null) {
    const again = await refresh();
    res = await send(method, path, body, again.token, opts.signal);
  }
  if (!res.ok) throw await parseError(res);
  const text = await res.text();
  return (text === '' ? undefined : JSON.parse(text)) as T;
}

/** A raw authenticated response (streams: logs, events); refreshes once on 401 like request(). */
export async function stream(path: string, signal: AbortSignal): Promise<Response> {
  let res = await send('GET', path, undefined, await freshToken(), signal);
  if (res.status === 401 && session.get() !== null) res = await send('GET', path, undefined, (await refresh()).token, signal);
  if (!res.ok) throw await parseError(res);
  return res;
}

export const api = {
  get: <T>(path: string, o?: RequestOptions) => request<T>('GET', path, undefined, o),
  post: <T>(path: string, body?: unknown, o?: RequestOptions) => request<T>('POST', path, body, o),
  put: <T>(path: string, body?: unknown, o?: RequestOptions) => request<T>('PUT', path, body, o),
  patch: <T>(path: string, body?: unknown, o?: RequestOptions) => request<T>('PATCH', path, body, o),
  del: <T>(path: string, o?: RequestOptions) => request<T>('DELETE', path, undefined, o),
};

export async function login(username: string, password: string): Promise<Session> {
  const res = await send('POST', '/api/auth/login', { username, password }, undefined);
  if (!res.ok) throw await parseError(res);
  const s = toSession((await res.json()) as TokenPair);
  session.set(s);
  return s;
}

/** What the login page tells after a logout the root could not be told of. */
export const logoutNotice = store<string | undefined>(undefined);

/** Revokes the refresh token on the root (every session of the user), then forgets it here. */
export async function logout(): Promise<void> {
  const s = session.get();
  logoutNotice.set(undefined);
  try {
    if (s !== null) {
      const res = await send('POST', '/api/auth/logout', { refresh_token: s.refresh_token }, undefined);
      if (!res.ok && res.status !== 401) throw await parseError(res);
    }
  } catch (err) {
    logoutNotice.set(`Logged out in this tab, but the root could not revoke the session (${describe(err).message}): log out again once it is reachable, or it expires by itself.`);
  } finally {
    session.set(null);
  }
}

export function hasRole(s: Session | null, ...roles: Role[]): boolean {
  return s !== null && s.user.roles.some((r) => r === 'Admin' || roles.includes(r));
}

/** Message + hint of any failure, for display. */
export function describe(err: unknown): { message: string; hint?: string; code?: string } {
  if (err instanceof ApiError) return { message: err.message, code: err.code, ...(err.hint !== undefined ? { hint: err.hint } : {}) };
  return { message: err instanceof Error ? err.message : String(err) };
}
