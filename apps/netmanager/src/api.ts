/**
 * The NetManager's local API (NodeEngine -> NetManager), on loopback only. Every request carries
 * `Authorization: Bearer <key>`; the key is 32 random bytes (hex) written at start to
 * `<keyDir>/netmanager-<port>.key` (0600), so only root on the worker can drive it. Bodies are
 * JSON of at most 64 KiB, validated with the contracts' parsers; errors are the contracts'
 * `{ error: { code, message, hint } }`.
 *
 *   POST /register          NetRegister -> 200 NetRegisterAnswer (503 when the cluster is silent)
 *   POST /instance/deploy   NetInstanceDeploy -> 204
 *   POST /instance/undeploy NetInstanceUndeploy -> 204
 *   GET  /status            what the NetManager holds (subnet, peers, tables, RTTs)
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, open, rename, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { OakError, decodeJson, httpServerTimeouts, parseNetInstanceDeploy, parseNetInstanceUndeploy, parseNetRegister } from '@oak/contracts';
import type { NetInstanceDeploy, NetInstanceUndeploy, NetRegister, NetRegisterAnswer } from '@oak/contracts';
import type { Logger } from '@oak/bus';

/** the largest request body read */
export const MAX_API_BODY = 64 * 1024;

export interface ApiHandlers {
  register(r: NetRegister): Promise<NetRegisterAnswer>;
  deploy(d: NetInstanceDeploy): Promise<void>;
  undeploy(u: NetInstanceUndeploy): Promise<void>;
  status(): unknown;
}

export interface ApiOptions {
  /** 127.0.0.1 unless given; anything but a loopback address is refused */
  host?: string;
  /** 0: ephemeral */
  port: number;
  /** where netmanager-<port>.key goes (default /run/oak) */
  keyDir: string;
  handlers: ApiHandlers;
  log: Logger;
  /** whole-request timeout (default the contracts' HTTP_TIMEOUTS) */
  requestTimeoutMs?: number;
}

export interface ApiServer {
  readonly port: number;
  readonly keyPath: string;
  /** the bearer key (in-process embedders use it instead of reading the file) */
  readonly key: string;
  close(): Promise<void>;
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

export function keyPathOf(keyDir: string, port: number): string {
  return join(keyDir, `netmanager-${port}.key`);
}

/** writes the key 0600 (through a temporary file, so no reader sees half a key) */
async function writeKey(path: string, dir: string, key: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const tmp = `${path}.${process.pid}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.chmod(0o600);
    await fh.writeFile(`${key}\n`);
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await chmod(path, 0o600);
}

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  if (body === undefined) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

function sendError(res: ServerResponse, err: OakError, headers: Record<string, string> = {}): void {
  send(res, err.status, err.toJSON(), headers);
}

class TooLarge extends Error {}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > max) {
      reject(new TooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > max) {
        done = true;
        reject(new TooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!done) {
        done = true;
        resolve(Buffer.concat(chunks));
      }
    });
    req.on('error', (err) => {
      if (!done) {
        done = true;
        reject(err);
      }
    });
  });
}

const ROUTES: Record<string, string> = {
  '/register': 'POST',
  '/instance/deploy': 'POST',
  '/instance/undeploy': 'POST',
  '/status': 'GET',
};

export async function startApi(opts: ApiOptions): Promise<ApiServer> {
  const host = opts.host ?? '127.0.0.1';
  if (!isLoopback(host)) {
    throw new OakError('OAK_BAD_REQUEST', `the NetManager API listens on loopback only, not ${host}`, { hint: 'leave the host out (127.0.0.1): only the local NodeEngine talks to it' });
  }
  const key = randomBytes(32).toString('hex');
  const want = createHash('sha256').update(key).digest();
  const authorized = (header: string | undefined): boolean => {
    const m = header === undefined ? null : /^Bearer ([^\s]{1,512})$/.exec(header.trim());
    const got = createHash('sha256').update(m?.[1] ?? '').digest();
    return timingSafeEqual(got, want) && m !== null;
  };
  const { handlers, log } = opts;
  let port = opts.port;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (!authorized(req.headers.authorization)) {
      req.resume();
      sendError(res, new OakError('OAK_UNAUTHORIZED', 'missing or wrong bearer key', { hint: `send Authorization: Bearer <the key in ${keyPathOf(opts.keyDir, port)}>` }), { 'www-authenticate': 'Bearer', connection: 'close' });
      return;
    }
    const method = ROUTES[path];
    if (method === undefined) {
      req.resume();
      sendError(res, new OakError('OAK_NOT_FOUND', `no route ${req.method ?? ''} ${path.slice(0, 200)}`, { hint: `routes: ${Object.entries(ROUTES).map(([p, m]) => `${m} ${p}`).join(', ')}` }));
      return;
    }
    if (req.method !== method) {
      req.resume();
      send(res, 405, new OakError('OAK_BAD_REQUEST', `${path} takes ${method}, not ${req.method ?? ''}`, { hint: `use ${method}` }).toJSON(), { allow: method });
      return;
    }
    if (method === 'GET') {
      req.resume();
      send(res, 200, handlers.status());
      return;
    }
    const ctype = req.headers['content-type'];
    if (ctype !== undefined && !/^application\/json\b/i.test(ctype)) {
      req.resume();
      sendError(res, new OakError('OAK_UNSUPPORTED_MEDIA_TYPE', `content type ${ctype.slice(0, 100)} is not JSON`, { hint: 'send Content-Type: application/json' }));
      return;
    }
    let body: unknown;
    try {
      body = decodeJson(await readBody(req, MAX_API_BODY), MAX_API_BODY);
    } catch (err) {
      if (err instanceof TooLarge) {
        sendError(res, new OakError('OAK_BODY_TOO_LARGE', `the body is larger than ${MAX_API_BODY} bytes`, { hint: 'send at most 64 KiB' }), { connection: 'close' });
        req.destroy();
        return;
      }
      if (err instanceof OakError) {
        sendError(res, err.code === 'OAK_LIMIT_EXCEEDED' ? new OakError('OAK_BAD_REQUEST', err.message, { hint: err.hint ?? '' }) : err);
        return;
      }
      throw err;
    }
    try {
      if (path === '/register') {
        send(res, 200, await handlers.register(parseNetRegister(body)));
      } else if (path === '/instance/deploy') {
        await handlers.deploy(parseNetInstanceDeploy(body));
        send(res, 204);
      } else {
        await handlers.undeploy(parseNetInstanceUndeploy(body));
        send(res, 204);
      }
    } catch (err) {
      if (err instanceof OakError) {
        // a body of the wrong shape is a bad request here (the contracts call it OAK_VALIDATION)
        sendError(res, err.code === 'OAK_VALIDATION' ? new OakError('OAK_BAD_REQUEST', err.message, { ...(err.path !== undefined ? { path: err.path } : {}), ...(err.hint !== undefined ? { hint: err.hint } : {}), ...(err.details !== undefined ? { details: err.details } : {}) }) : err);
        return;
      }
      throw err;
    }
  };

  const t = httpServerTimeouts(opts.requestTimeoutMs);
  const server: Server = createServer({ requestTimeout: t.http.requestTimeout, headersTimeout: t.http.headersTimeout, connectionsCheckingInterval: t.http.connectionsCheckingInterval }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error(`API ${req.method ?? ''} ${req.url ?? ''} failed`, err);
      sendError(res, new OakError('OAK_INTERNAL', `the NetManager failed: ${err instanceof Error ? err.message : String(err)}`, { hint: 'see the NetManager log' }));
    });
  });
  server.maxHeadersCount = 50;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: opts.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  const keyPath = keyPathOf(opts.keyDir, port);
  try {
    await writeKey(keyPath, opts.keyDir, key);
  } catch (err) {
    await new Promise<void>((r) => server.close(() => r()));
    throw new OakError('OAK_INTERNAL', `cannot write the API key ${keyPath}: ${err instanceof Error ? err.message : String(err)}`, { hint: 'run as root, or give --key-dir a writable directory' });
  }
  log.info(`local API on ${host}:${port}, key in ${keyPath}`);
  let closed: Promise<void> | undefined;
  return {
    port,
    keyPath,
    key,
    close() {
      closed ??= (async () => {
        await new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        });
        await rm(keyPath, { force: true });
      })();
      return closed;
    },
  };
}
