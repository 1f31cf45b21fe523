/**
 * What the M-DOC benches share (failover, many): root + cluster in the bench process (startOakd
 * --no-worker) with an API client logged in as Admin, and a reader of the instance events of
 * /api/events.
 */
import { join } from 'node:path';
import { freePort } from '@oak/testkit';
import { readEvents } from './sse.ts';
import { parseConfig } from '../../apps/oakd/src/config.ts';
import { startOakd } from '../../apps/oakd/src/oakd.ts';
import type { Oakd } from '../../apps/oakd/src/oakd.ts';

export type Call = <T>(method: string, path: string, body?: unknown) => Promise<T>;

export interface ControlPlane {
  oakd: Oakd;
  /** http://127.0.0.1:<port> of the root */
  base: string;
  token: string;
  /** the cluster's registration port (NodeEngine -p) */
  clusterPort: number;
  call: Call;
}

/** root + cluster in this process, workers to join with NodeEngine -a 127.0.0.1 -p clusterPort and oakd.tokens.worker */
export async function startControlPlane(dataDir: string, reportMs: number, password: string): Promise<ControlPlane> {
  const port = await freePort();
  const clusterPort = await freePort();
  const cfg = parseConfig([
    '--host', '127.0.0.1', '--port', String(port), '--link-port', String(await freePort()),
    '--cluster-port', String(clusterPort), '--mqtt-port', String(await freePort()),
    '--data-dir', join(dataDir, 'oakd'), '--no-worker', '--report-interval', String(reportMs), '--log-level', 'warn',
  ], {});
  if (cfg === 'help') throw new Error('parseConfig answered help');
  cfg.adminPassword = password;
  const oakd = await startOakd(cfg, () => undefined);
  const base = `http://127.0.0.1:${port}`;
  let token = '';
  const call: Call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(base + path, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path} -> ${res.status} ${text.slice(0, 500)}`);
    return (text ? JSON.parse(text) : undefined) as T;
  };
  try {
    token = (await call<{ token: string }>('POST', '/api/auth/login', { username: 'Admin', password })).token;
  } catch (err) {
    await oakd.close().catch(() => undefined);
    throw err;
  }
  return { oakd, base, token, clusterPort, call };
}

export interface Seen {
  status: string;
  worker: string | null;
  at: number;
}

/** the instance events of /api/events, in order, each with the time it arrived */
export class Events {
  readonly #abort = new AbortController();
  readonly log: { svc: string; n: number; status: string; worker: string | null; at: number }[] = [];
  #listeners = new Set<() => void>();
  #done: Promise<void> = Promise.resolve();

  async open(url: string): Promise<void> {
    this.#done = (await readEvents(url, this.#abort.signal, (e, at) => {
      if (e.type !== 'instance') return;
      this.log.push({ svc: e.microserviceID, n: e.instance.instance_number, status: e.instance.status, worker: e.instance.worker_id ?? null, at });
      for (const l of this.#listeners) l();
    })).done;
  }

  /** resolves with the first event from index `from` on that matches */
  until(from: number, match: (e: Seen & { svc: string; n: number }) => boolean, timeoutMs: number, what: string): Promise<Seen> {
    return new Promise((resolve, reject) => {
      let i = from;
      const check = (): void => {
        for (; i < this.log.length; i++) {
          const e = this.log[i];
          if (e !== undefined && match(e)) {
            this.#listeners.delete(check);
            clearTimeout(t);
            resolve(e);
            return;
          }
        }
      };
      const t = setTimeout(() => {
        this.#listeners.delete(check);
        reject(new Error(`${what}: not within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#listeners.add(check);
      check();
    });
  }

  async close(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }
}
