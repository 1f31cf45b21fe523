/**
 * Pulls from a password-protected registry without the password ever reaching a command line
 * or a file: for the duration of one pull, the NodeEngine serves an authenticating relay on
 * 127.0.0.1 under an unguessable path, and `ctr images pull --hosts-dir <private dir>` is told
 * (hosts.toml, no secrets in it) that the registry's server is that relay. The relay speaks the
 * distribution API's authentication: on a 401 it answers the challenge, HTTP basic auth
 * (`WWW-Authenticate: Basic`) or the bearer token flow (`WWW-Authenticate: Bearer realm=...,
 * service=..., scope=...`: a token fetched from the realm with the login), and repeats the
 * request. Redirects (blob storage) go back to ctr as they are, without the login.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { AddressInfo } from 'node:net';

export interface RegistryLogin {
  username: string;
  password: string;
}

export interface AuthRelay {
  /** `http://127.0.0.1:<port>/<secret>`: the server URL for hosts.toml */
  url: string;
  /** why the registry refused, when it did (for the pull's error message) */
  denied(): string | undefined;
  close(): Promise<void>;
}

const PASS_HEADERS = ['content-type', 'content-length', 'content-range', 'docker-content-digest', 'docker-distribution-api-version', 'etag', 'accept-ranges', 'location', 'last-modified'];
const FORWARD_HEADERS = ['accept', 'range', 'user-agent', 'if-none-match'];
const TOKEN_TIMEOUT_MS = 30_000;
const TOKEN_MAX_BYTES = 1024 * 1024;

/** `Bearer realm="x",service="y"` -> { scheme: 'bearer', params: { realm: 'x', service: 'y' } } */
export function parseChallenge(header: string | null): { scheme: string; params: Record<string, string> } | undefined {
  if (header === null) return undefined;
  const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2]!)) !== null) params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  return { scheme: m[1]!.toLowerCase(), params };
}

const basic = (l: RegistryLogin): string => `Basic ${Buffer.from(`${l.username}:${l.password}`, 'utf8').toString('base64')}`;

/** the repository a /v2/<name>/(manifests|blobs|tags)/... path is about */
function repositoryOf(path: string): string | undefined {
  const m = /^\/v2\/(.+?)\/(?:manifests|blobs|tags)\//.exec(path);
  return m?.[1];
}

export async function startAuthRelay(upstream: string, login: RegistryLogin): Promise<AuthRelay> {
  const secret = randomBytes(18).toString('base64url');
  const prefix = `/${secret}`;
  const upstreamUrl = new URL(upstream);
  /** Authorization per repository (bearer tokens are scoped), '' key for basic auth */
  const authFor = new Map<string, string>();
  let deniedReason: string | undefined;

  const answerChallenge = async (challenge: string | null, repo: string | undefined): Promise<string | undefined> => {
    const c = parseChallenge(challenge);
    if (!c) return undefined;
    if (c.scheme === 'basic') return basic(login);
    if (c.scheme !== 'bearer') return undefined;
    const realm = c.params['realm'];
    if (realm === undefined) return undefined;
    let realmUrl: URL;
    try {
      realmUrl = new URL(realm);
    } catch {
      deniedReason = `the registry's token realm ${JSON.stringify(realm.slice(0, 100))} is not a URL`;
      return undefined;
    }
    if (realmUrl.protocol !== 'https:' && !(realmUrl.protocol === 'http:' && upstreamUrl.protocol === 'http:')) {
      deniedReason = `the registry's token realm ${realmUrl.origin} is not HTTPS: the login is not sent there`;
      return undefined;
    }
    if (c.params['service'] !== undefined) realmUrl.searchParams.set('service', c.params['service']);
    const scope = c.params['scope'] ?? (repo !== undefined ? `repository:${repo}:pull` : undefined);
    if (scope !== undefined) realmUrl.searchParams.set('scope', scope);
    const res = await fetch(realmUrl, { headers: { authorization: basic(login) }, signal: AbortSignal.timeout(TOKEN_TIMEOUT_MS) });
    const text = await res.text();
    if (!res.ok) {
      deniedReason = `the registry's token service refused the login of ${login.username} (HTTP ${res.status})`;
      return undefined;
    }
    if (text.length > TOKEN_MAX_BYTES) return undefined;
    let body: { token?: unknown; access_token?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      deniedReason = "the registry's token service did not answer JSON";
      return undefined;
    }
    const token = typeof body.token === 'string' ? body.token : typeof body.access_token === 'string' ? body.access_token : undefined;
    return token === undefined ? undefined : `Bearer ${token}`;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '';
    if (!url.startsWith(`${prefix}/v2`)) {
      res.writeHead(404).end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    const path = url.slice(prefix.length);
    const target = new URL(path, upstreamUrl);
    const repo = repositoryOf(target.pathname);
    const key = repo ?? '';
    const headers: Record<string, string> = {};
    for (const h of FORWARD_HEADERS) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    const send = (auth: string | undefined): Promise<Response> =>
      fetch(target, { method: req.method, headers: auth !== undefined ? { ...headers, authorization: auth } : headers, redirect: 'manual' });
    let up = await send(authFor.get(key) ?? authFor.get(''));
    if (up.status === 401) {
      await up.body?.cancel();
      const auth = await answerChallenge(up.headers.get('www-authenticate'), repo);
      if (auth !== undefined) {
        if (auth.startsWith('Basic ')) authFor.set('', auth);
        else authFor.set(key, auth);
        up = await send(auth);
        if (up.status === 401) deniedReason = `the registry refused the login of ${login.username} (HTTP 401)`;
      } else {
        deniedReason ??= `the registry asked for a login this relay cannot give (${(up.headers.get('www-authenticate') ?? 'no challenge').slice(0, 100)})`;
      }
    } else if (up.status === 403) {
      deniedReason = `the registry denied ${login.username} access to ${repo ?? target.pathname} (HTTP 403)`;
    }
    const out: Record<string, string> = {};
    for (const h of PASS_HEADERS) {
      const v = up.headers.get(h);
      if (v !== null) out[h] = v;
    }
    res.writeHead(up.status, out);
    if (up.body === null || req.method === 'HEAD') {
      await up.body?.cancel();
      res.end();
      return;
    }
    const body = Readable.fromWeb(up.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('error', () => res.destroy());
    body.pipe(res);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      deniedReason ??= `the registry could not be reached: ${err instanceof Error ? err.message : String(err)}`;
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}${prefix}`,
    denied: () => deniedReason,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
