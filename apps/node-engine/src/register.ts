/**
 * Registration with the cluster (`POST /api/node/register`) over HTTPS, verified against the CA
 * of the join token (docs/security.md): on first contact the CA is taken from the chain the
 * cluster presents and accepted only when its fingerprint is the token's; from then on the cluster
 * must show a certificate of that CA naming `oak-cluster`. Retried with backoff until the cluster
 * answers. The node id and the MQTT password that proves it are kept in the data dir (0600).
 */
import { request } from 'node:https';
import type { ConnectionOptions } from 'node:tls';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { OakError, parseNodeRegistrationAnswer } from '@oak/contracts';
import type { NodeRegistration, NodeRegistrationAnswer } from '@oak/contracts';
import { backoffDelay } from './instances.ts';

function bracket(address: string): string {
  return address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
}

export function registrationUrl(address: string, port: number): string {
  return `https://${bracket(address)}:${port}/api/node/register`;
}

/** The broker the cluster named: its URL, else the cluster host at MQTT_BROKER_PORT (mqtts when it says mqtt_tls). */
export function brokerUrl(clusterAddress: string, answer: Pick<NodeRegistrationAnswer, 'MQTT_BROKER_PORT' | 'MQTT_BROKER_URL' | 'mqtt_tls'>): string {
  if (answer.MQTT_BROKER_URL !== undefined && answer.MQTT_BROKER_URL !== '') return answer.MQTT_BROKER_URL;
  return `${answer.mqtt_tls === true ? 'mqtts' : 'mqtt'}://${bracket(clusterAddress)}:${answer.MQTT_BROKER_PORT}`;
}

/** One registration; `tls` verifies the cluster (pinnedTlsOptions). Errors are OakErrors when the cluster said why. */
export function registerOnce(url: string, body: NodeRegistration, tls: ConnectionOptions, signal?: AbortSignal): Promise<NodeRegistrationAnswer> {
  const data = JSON.stringify(body);
  return new Promise<NodeRegistrationAnswer>((resolve, reject) => {
    const req = request(
      new URL(url),
      { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) }, ...tls, timeout: 5000, ...(signal ? { signal } : {}) },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (text.length < 256 * 1024) text += d;
        });
        res.on('end', () => {
          let json: unknown;
          try {
            json = JSON.parse(text) as unknown;
          } catch {
            reject(new Error(`the cluster answered ${res.statusCode ?? '?'} with something that is not JSON: ${text.slice(0, 200)}`));
            return;
          }
          const status = res.statusCode ?? 500;
          if (status < 200 || status > 299) {
            reject(OakError.parse(json, status));
            return;
          }
          try {
            resolve(parseNodeRegistrationAnswer(json));
          } catch (err) {
            reject(err as Error);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within 5 s`)));
    req.on('error', reject);
    req.end(data);
  });
}

/** A refusal that retrying will not fix (a refused join token, a cluster with the wrong CA). */
export function isFinalRefusal(err: unknown): boolean {
  return err instanceof OakError && err.code === 'OAK_JOIN_TOKEN_INVALID';
}

export interface RetryOptions {
  initialMs: number;
  maxMs: number;
  signal?: AbortSignal | undefined;
  onFailure?: (attempt: number, err: unknown, nextDelayMs: number) => void;
  /** give up on a final refusal (isFinalRefusal) instead of retrying (default false) */
  stopOnRefusal?: boolean;
  /** the jitter's random source, [0, 1) (tests) */
  random?: () => number;
}

/**
 * Registers until it works; rejects when `signal` aborts or, with stopOnRefusal, when the cluster
 * refuses the token. `tls` is asked for on every attempt (the CA is fetched on first contact).
 */
export async function registerWithRetry(url: string, body: () => NodeRegistration, tls: () => Promise<ConnectionOptions>, opts: RetryOptions): Promise<NodeRegistrationAnswer> {
  for (let attempt = 0; ; attempt++) {
    opts.signal?.throwIfAborted();
    try {
      return await registerOnce(url, body(), await tls(), opts.signal);
    } catch (err) {
      opts.signal?.throwIfAborted();
      if (opts.stopOnRefusal === true && isFinalRefusal(err)) throw err;
      // spread 0.5x..1.5x: the workers of a cluster that restarted (all refused at once) do not retry in step
      const delay = Math.max(1, Math.round(backoffDelay(attempt, opts.initialMs, opts.maxMs) * (0.5 + (opts.random ?? Math.random)())));
      opts.onFailure?.(attempt + 1, err, delay);
      await abortableSleep(delay, opts.signal);
    }
  }
}

export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) return reject(signal.reason as Error);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function nodeIdFile(dataDir: string): string {
  return join(dataDir, 'node-id');
}

export async function readNodeId(dataDir: string): Promise<string | undefined> {
  try {
    const id = (await readFile(nodeIdFile(dataDir), 'utf8')).trim();
    return id === '' ? undefined : id;
  } catch {
    return undefined;
  }
}

export async function writeNodeId(dataDir: string, id: string): Promise<void> {
  const file = nodeIdFile(dataDir);
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, `${id}\n`);
  await rename(tmp, file);
}

/** the MQTT password the cluster gave for `id` (it proves the id at the next registration) */
export function nodeSecretFile(dataDir: string): string {
  return join(dataDir, 'node-credentials.json');
}

export async function readNodeSecret(dataDir: string, id: string): Promise<string | undefined> {
  try {
    const o = JSON.parse(await readFile(nodeSecretFile(dataDir), 'utf8')) as { id?: unknown; password?: unknown };
    return o.id === id && typeof o.password === 'string' ? o.password : undefined;
  } catch {
    return undefined;
  }
}

export async function writeNodeSecret(dataDir: string, id: string, password: string): Promise<void> {
  const file = nodeSecretFile(dataDir);
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify({ id, password })}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

/**
 * Whether a registration (at `lastRegistration`, 0: none) was made after the broker connection
 * dropped (at `lostAt`): then the cluster on the other side of the reconnect knows this worker
 * already (it may have restarted: the registration after its refusal told it), and registering
 * again on the reconnect is one more TLS handshake and token check per worker for nothing.
 */
export function registeredSince(lastRegistration: number, lostAt: number): boolean {
  return lastRegistration > 0 && lastRegistration >= lostAt;
}
