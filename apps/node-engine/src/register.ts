/**
 * HTTP registration with the cluster (`POST /api/node/register`), retried with backoff until the
 * cluster answers, and the node id kept in `<data-dir>/node-id` across restarts.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { OakError, parseNodeRegistrationAnswer } from '@oak/contracts';
import type { NodeRegistration, NodeRegistrationAnswer } from '@oak/contracts';
import { backoffDelay } from './instances.ts';

export function registrationUrl(address: string, port: number): string {
  const host = address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
  return `http://${host}:${port}/api/node/register`;
}

/** The broker the cluster named: its URL, else the cluster host at MQTT_BROKER_PORT. */
export function brokerUrl(clusterAddress: string, answer: Pick<NodeRegistrationAnswer, 'MQTT_BROKER_PORT' | 'MQTT_BROKER_URL'>): string {
  if (answer.MQTT_BROKER_URL !== undefined && answer.MQTT_BROKER_URL !== '') return answer.MQTT_BROKER_URL;
  const host = clusterAddress.includes(':') && !clusterAddress.startsWith('[') ? `[${clusterAddress}]` : clusterAddress;
  return `mqtt://${host}:${answer.MQTT_BROKER_PORT}`;
}

export async function registerOnce(url: string, body: NodeRegistration, signal?: AbortSignal): Promise<NodeRegistrationAnswer> {
  const timeout = AbortSignal.timeout(5000);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text) as unknown;
  } catch {
    throw new Error(`the cluster answered ${res.status} with something that is not JSON: ${text.slice(0, 200)}`);
  }
  if (!res.ok) throw OakError.parse(json, res.status);
  return parseNodeRegistrationAnswer(json);
}

export interface RetryOptions {
  initialMs: number;
  maxMs: number;
  signal?: AbortSignal | undefined;
  onFailure?: (attempt: number, err: unknown, nextDelayMs: number) => void;
}

/** Registers until it works; rejects only when `signal` aborts. */
export async function registerWithRetry(url: string, body: () => NodeRegistration, opts: RetryOptions): Promise<NodeRegistrationAnswer> {
  for (let attempt = 0; ; attempt++) {
    opts.signal?.throwIfAborted();
    try {
      return await registerOnce(url, body(), opts.signal);
    } catch (err) {
      opts.signal?.throwIfAborted();
      const delay = backoffDelay(attempt, opts.initialMs, opts.maxMs);
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
