/**
 * A stand-in for the root's side of joining, for cluster and worker tests that run without a
 * root: a CA made in the test, a cluster certificate (SAN oak-cluster) issued by it, worker join
 * tokens carrying the CA's fingerprint, and the token check a cluster would ask the root for.
 * Plus a small JSON POST over HTTPS verified against a CA (fetch cannot take one).
 */
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { ConnectionOptions } from 'node:tls';
import { formatJoinToken, tryParseJoinToken } from '@oak/contracts';
import { caFingerprint, createCa, issueIdentity, pinnedTlsOptions } from '@oak/trust';
import type { Ca } from '@oak/trust';

export type TestTokenResult = { ok: true; tokenId: string } | { ok: false; reason: string; unavailable?: boolean };

export interface TestJoin {
  ca: Ca;
  caHash: string;
  /** what a cluster serves: chain (leaf + CA), key, CA */
  clusterTls: { cert: string; key: string; ca: string };
  mqttSecret: string;
  /** a new worker token */
  workerToken(): string;
  revoke(token: string): void;
  /** the root stops answering: checks say unavailable */
  down: boolean;
  /** what ClusterConfig.tokenCheck takes; records each check */
  tokenCheck: (token: string, workerId: string) => Promise<TestTokenResult>;
  checks: { token: string; workerId: string; ok: boolean }[];
  /** TLS options that trust this CA and require oak-cluster */
  clientTls(): ConnectionOptions;
}

export async function createTestJoin(): Promise<TestJoin> {
  const ca = await createCa({ commonName: 'oak test CA' });
  const caHash = caFingerprint(ca.certPem);
  const id = await issueIdentity(ca, { commonName: 'oak-cluster', dnsNames: ['oak-cluster'] });
  const issued = new Map<string, { id: string; revoked: boolean }>();
  const j: TestJoin = {
    ca,
    caHash,
    clusterTls: { cert: id.chainPem, key: id.keyPem, ca: ca.certPem },
    mqttSecret: randomBytes(32).toString('base64url'),
    down: false,
    checks: [],
    workerToken() {
      const t = { kind: 'worker' as const, id: randomBytes(8).toString('hex').slice(0, 8).replace(/[^a-z0-9]/g, 'a'), secret: randomBytes(24).toString('base64url'), caHash };
      const text = formatJoinToken(t);
      issued.set(text, { id: t.id, revoked: false });
      return text;
    },
    revoke(token) {
      const e = issued.get(token);
      if (e) e.revoked = true;
    },
    async tokenCheck(token, workerId) {
      if (j.down) return { ok: false, reason: 'the root is unreachable', unavailable: true };
      const e = issued.get(token);
      const parsed = tryParseJoinToken(token);
      const ok = e !== undefined && !e.revoked && parsed?.kind === 'worker';
      j.checks.push({ token, workerId, ok });
      if (!ok) return { ok: false, reason: e?.revoked === true ? 'the token was revoked' : 'unknown token' };
      return { ok: true, tokenId: e.id };
    },
    clientTls: () => pinnedTlsOptions(ca.certPem, 'oak-cluster'),
  };
  return j;
}

export interface RequestJsonOptions {
  method?: string;
  /** a string is sent as is, anything else as JSON */
  body?: unknown;
  contentType?: string;
  /** for https URLs, e.g. TestJoin.clientTls() */
  tls?: ConnectionOptions;
}

/** An HTTP(S) request answering JSON (fetch cannot verify against a CA of our own). */
export function requestJson(url: string, opts: RequestJsonOptions = {}): Promise<{ status: number; json: Record<string, unknown>; headers: Record<string, string | string[] | undefined> }> {
  const u = new URL(url);
  const data = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  const req = u.protocol === 'https:' ? httpsRequest : httpRequest;
  const headers: Record<string, string | number> = {};
  if (data !== undefined) {
    headers['content-type'] = opts.contentType ?? 'application/json';
    headers['content-length'] = Buffer.byteLength(data);
  }
  return new Promise((resolve, reject) => {
    const r = req(u, { method: opts.method ?? (data === undefined ? 'GET' : 'POST'), headers, ...(u.protocol === 'https:' ? opts.tls ?? {} : {}), timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => {
        let json: Record<string, unknown>;
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          json = { raw: text };
        }
        resolve({ status: res.statusCode ?? 0, json, headers: res.headers });
      });
    });
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', (err: NodeJS.ErrnoException) => {
      // a server that refuses a big body answers (413) and closes before it is all written:
      // the answer may still arrive
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET') setTimeout(() => reject(err), 1000);
      else reject(err);
    });
    r.end(data);
  });
}

/** POST a JSON body; https URLs are verified with `tls`. */
export async function postJson(url: string, body: unknown, tls?: ConnectionOptions): Promise<{ status: number; json: Record<string, unknown> }> {
  return requestJson(url, { method: 'POST', body, ...(tls ? { tls } : {}) });
}
