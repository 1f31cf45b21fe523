/**
 * The NodeEngine's side of the NetManager's local API (contracts net.ts): `POST /register`,
 * `POST /instance/deploy`, `POST /instance/undeploy` on 127.0.0.1:<-n port>, each with
 * `Authorization: Bearer <key>` read from `<keyDir>/netmanager-<port>.key` (written by the
 * NetManager at its start; keyDir `/run/oak` unless --netmanager-key-dir / OAK_NETMANAGER_KEY_DIR).
 *
 * Availability: the NetManager may start after the NodeEngine, restart, or be away for a while.
 * The link keeps trying in the background (one log line when it goes away, one when it is back),
 * queues the deploy/undeploy notices meanwhile (the latest per instance wins) and, after every
 * (re-)registration, sends the pending undeploys and then a deploy for every instance that has a
 * namespace: the notices are idempotent, so a replay is always safe. A restarted NetManager is
 * noticed by a new key in the key file (and by a failed request); as a backstop the link
 * registers again every `refreshMs` (30 s) and replays. Failed registrations back off (doubling from
 * `checkMs` up to 5 s while it is not reachable, up to `maxBackoffMs`, 30 s, while it answers with an
 * error: each attempt then costs the NetManager a datapath setup); a new key is tried at once.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { instanceName, parseNetRegisterAnswer } from '@oak/contracts';
import type { NetInstanceDeploy, NetInstanceUndeploy, NetRegister, NetRegisterAnswer } from '@oak/contracts';
import { bridgePlan } from '@oak/net';
import type { BridgePlan } from '@oak/net';
import type { EngineLog } from './config.ts';

export const DEFAULT_NETMANAGER_KEY_DIR = '/run/oak';
const MAX_BODY = 64 * 1024;

export function keyPath(keyDir: string, port: number): string {
  return join(keyDir, `netmanager-${port}.key`);
}

/** The NetManager refused or did not answer; `down` when it is not reachable (retry later). */
export class NetManagerError extends Error {
  readonly down: boolean;
  /** the NetManager answered (with an error status): it runs, but its side failed */
  readonly answered: boolean;
  constructor(message: string, down: boolean, answered = false) {
    super(message);
    this.name = 'NetManagerError';
    this.down = down;
    this.answered = answered;
  }
}

/**
 * The bridge plan of a NetManager's answer; throws a readable Error when the answer cannot be
 * used (not a private /16../29, not unique-local IPv6, a gateway or resolver that is not the
 * first host, a bad device name or MTU). Route overlaps are checked by the caller (I/O).
 */
export function planOfAnswer(namespace: string, a: NetRegisterAnswer): BridgePlan {
  let plan: BridgePlan;
  try {
    plan = bridgePlan(namespace, a.subnet, { subnetV6: a.subnet_v6, mtu: a.mtu });
  } catch (err) {
    throw new Error(`the NetManager's subnet cannot be used: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (a.gateway !== plan.gateway) throw new Error(`the NetManager's gateway ${a.gateway} is not the first host of ${plan.cidr} (${plan.gateway})`);
  if ((a.gateway_v6 ?? undefined) !== plan.gateway6) throw new Error(`the NetManager's IPv6 gateway ${String(a.gateway_v6)} is not the first host of ${plan.cidr6 ?? 'no IPv6 subnet'} (${plan.gateway6 ?? 'none'})`);
  if (a.dns !== null && a.dns !== plan.gateway && a.dns !== plan.gateway6) throw new Error(`the NetManager's resolver ${a.dns} is not on the bridge gateway ${plan.gateway}`);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/.test(a.tunnel_device)) throw new Error(`the NetManager's tunnel device ${JSON.stringify(a.tunnel_device)} is not a device name`);
  if (a.tunnel_device === plan.bridge) throw new Error(`the NetManager's tunnel device ${a.tunnel_device} is the instance bridge`);
  return plan;
}

/** Same place in the overlay (a restart that got the same subnet back)? */
export function sameAnswer(a: NetRegisterAnswer | undefined, b: NetRegisterAnswer | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.subnet === b.subnet && (a.subnet_v6 ?? null) === (b.subnet_v6 ?? null) && a.mtu === b.mtu && (a.dns ?? null) === (b.dns ?? null) && a.tunnel_device === b.tunnel_device && a.gateway === b.gateway && (a.gateway_v6 ?? null) === (b.gateway_v6 ?? null);
}

export interface NetManagerLinkOptions {
  port: number;
  keyDir: string;
  log: EngineLog;
  /** the registration body (rebuilt for every attempt: the MQTT credentials may change) */
  registration: () => NetRegister;
  /** every answer of a (re-)registration; throw to refuse it (then no notices are sent) */
  onAnswer: (a: NetRegisterAnswer) => Promise<void>;
  /** a deploy notice for every instance with a namespace (replayed after each registration) */
  current: () => NetInstanceDeploy[];
  /**
   * How often the key file is looked at, and the first retry delay when down (default 1000 ms);
   * failed registrations in a row double the delay, up to maxBackoffMs (a NetManager that answers
   * but refuses, its datapath failing) or 5 s (not reachable yet), with jitter
   */
  checkMs?: number | undefined;
  /** the longest retry delay after refused registrations (default 30 s) */
  maxBackoffMs?: number | undefined;
  /** backstop re-registration (default 30 s) */
  refreshMs?: number | undefined;
  /** per notice request (default 3000 ms) */
  timeoutMs?: number | undefined;
  /** per registration (default 15 s: the NetManager may wait up to 10 s for its subnet before answering) */
  registerTimeoutMs?: number | undefined;
}

type Notice = { kind: 'deploy'; body: NetInstanceDeploy } | { kind: 'undeploy'; body: NetInstanceUndeploy };

export class NetManagerLink {
  readonly #o: NetManagerLinkOptions;
  /** the last registration was accepted and nothing failed since */
  #up = false;
  #key: string | undefined;
  #registeredAt = 0;
  readonly #queue = new Map<string, Notice>();
  #timer: NodeJS.Timeout | undefined;
  #busy: Promise<void> | undefined;
  #closed = false;
  #lastProblem: string | undefined;
  #again = false;
  /** failed registrations in a row, and when the next attempt is due (backoff) */
  #failures = 0;
  #nextAttemptAt = 0;
  /** the last failed attempt got an answer (an error status) */
  #lastAnswered = false;
  /** the key file's content at the last failed attempt: a new key (a restarted NetManager) is tried at once */
  #failedKey: string | undefined;
  /** the last accepted answer */
  answer: NetRegisterAnswer | undefined;

  constructor(o: NetManagerLinkOptions) {
    this.#o = o;
  }

  get up(): boolean {
    return this.#up;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#o.port}`;
  }

  async #readKey(): Promise<string> {
    const path = keyPath(this.#o.keyDir, this.#o.port);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new NetManagerError(`no NetManager key at ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)}): is the NetManager running with -p ${this.#o.port}?`, true);
    }
    const key = text.trim();
    if (key === '' || key.length > 1024 || !/^[\x21-\x7e]+$/.test(key)) throw new NetManagerError(`the NetManager key at ${path} is empty or not printable`, true);
    return key;
  }

  /** node:http, not fetch: fetch refuses port 6000 (the Fetch standard's "bad ports", X11), the NetManager's default */
  #post(path: string, body: unknown, key: string, timeoutMs = this.#o.timeoutMs ?? 3000): Promise<{ status: number; text: string }> {
    const data = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: this.#o.port, path, method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) }, timeout: timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (d: Buffer) => {
            size += d.length;
            if (size > MAX_BODY) {
              req.destroy();
              reject(new NetManagerError(`the NetManager's answer to ${path} is larger than 64 KiB`, false));
              return;
            }
            chunks.push(d);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', (err) => reject(new NetManagerError(`the NetManager at ${this.url} broke off its answer: ${err.message}`, true)));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (err) => reject(new NetManagerError(`the NetManager at ${this.url} is not reachable: ${err.message}`, true)));
      req.end(data);
    });
  }

  /** One registration: the validated answer (the caller decides whether to take it). */
  async registerOnce(): Promise<NetRegisterAnswer> {
    const key = await this.#readKey();
    const r = await this.#post('/register', this.#o.registration(), key, this.#o.registerTimeoutMs ?? 15_000);
    if (r.status === 401 || r.status === 403) throw new NetManagerError(`the NetManager refused the key (${r.status}); it may have restarted with a new one`, true);
    if (r.status !== 200) throw new NetManagerError(`the NetManager refused the registration (${r.status}): ${r.text.slice(0, 300)}`, r.status >= 500, true);
    let json: unknown;
    try {
      json = JSON.parse(r.text) as unknown;
    } catch {
      throw new NetManagerError(`the NetManager answered the registration with something that is not JSON: ${r.text.slice(0, 100)}`, false);
    }
    let answer: NetRegisterAnswer;
    try {
      answer = parseNetRegisterAnswer(json);
    } catch (err) {
      throw new NetManagerError(`the NetManager's registration answer is invalid: ${err instanceof Error ? err.message : String(err)}`, false);
    }
    this.#key = key;
    return answer;
  }

  /** Registers (and takes the answer through onAnswer), trying until `waitMs` passed; false when not. */
  async first(waitMs: number): Promise<boolean> {
    const until = Date.now() + waitMs;
    for (;;) {
      const r = await this.#registerAndReplay();
      if (r === 'ok') return true;
      // refused by this NodeEngine (onAnswer): asking again at once gives the same answer
      if (r === 'refused' || this.#closed || Date.now() >= until) return false;
      await new Promise((r) => setTimeout(r, Math.min(250, Math.max(0, until - Date.now()))));
    }
  }

  /** Keeps the link alive from now on (retries, key changes, replays). */
  start(): void {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = setInterval(() => void this.#tick(), this.#o.checkMs ?? 1000);
    this.#timer.unref();
  }

  /** the instance's namespace is up: tell the NetManager (now, or when it is back) */
  deployed(id: string, body: NetInstanceDeploy): void {
    this.#queue.delete(id);
    this.#queue.set(id, { kind: 'deploy', body });
    this.#kick();
  }

  /** the instance's namespace is gone */
  undeployed(id: string, body: NetInstanceUndeploy): void {
    this.#queue.delete(id);
    this.#queue.set(id, { kind: 'undeploy', body });
    this.#kick();
  }

  /** registers again soon (new MQTT credentials) and replays */
  refresh(): void {
    if (this.#closed) return;
    this.#up = false;
    this.#nextAttemptAt = 0;
    if (this.#busy !== undefined) this.#again = true;
    else void this.#tick();
  }

  /** notices not delivered yet (tests, logs) */
  get pending(): number {
    return this.#queue.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#busy;
  }

  #kick(): void {
    if (!this.#up) return;
    if (this.#busy !== undefined) this.#again = true;
    else void this.#tick();
  }

  #tick(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#busy ??= (async () => {
      try {
        if (this.#up) {
          const key = await this.#readKey().catch(() => undefined);
          if (key !== this.#key || Date.now() - this.#registeredAt > (this.#o.refreshMs ?? 30_000)) {
            if (key !== this.#key) this.#o.log.info(`the NetManager's key changed (it restarted?): registering again at ${this.url}`);
            this.#up = false;
          }
        }
        if (!this.#up && (await this.#attemptDue())) {
          const r = await this.#registerAndReplay();
          if (r === 'ok') this.#failures = 0;
          else this.#backoff(r === 'refused' || this.#lastAnswered);
        }
        if (this.#up) await this.#flush();
      } finally {
        this.#busy = undefined;
        if (this.#again) {
          this.#again = false;
          setImmediate(() => void this.#tick());
        }
      }
    })();
    return this.#busy;
  }

  /** whether a registration attempt is due now: its backoff passed, or the NetManager's key changed since the last failure */
  async #attemptDue(): Promise<boolean> {
    if (this.#failures === 0 || Date.now() >= this.#nextAttemptAt) return true;
    const key = await this.#readKey().catch(() => undefined);
    return key !== undefined && key !== this.#failedKey;
  }

  /** answered: the NetManager runs and refused (its datapath failing: each attempt costs it work) */
  #backoff(answered: boolean): void {
    this.#failures++;
    const first = this.#o.checkMs ?? 1000;
    const cap = answered ? (this.#o.maxBackoffMs ?? 30_000) : Math.min(this.#o.maxBackoffMs ?? 30_000, 5000);
    const delay = Math.min(cap, first * 2 ** Math.min(this.#failures - 1, 20));
    // jitter: ±20 %, so that the workers of a host or a fleet do not retry in step
    this.#nextAttemptAt = Date.now() + delay * (0.8 + Math.random() * 0.4);
    void this.#readKey().then((k) => { this.#failedKey = k; }, () => { this.#failedKey = undefined; });
  }

  /** failed registrations in a row (tests, logs) */
  get failures(): number {
    return this.#failures;
  }

  /** one registration attempt; on success the replay is queued and true returned */
  async #registerAndReplay(): Promise<'ok' | 'down' | 'refused'> {
    let answer: NetRegisterAnswer;
    this.#lastAnswered = false;
    try {
      answer = await this.registerOnce();
    } catch (err) {
      this.#lastAnswered = err instanceof NetManagerError && err.answered;
      this.#down(err);
      return 'down';
    }
    try {
      await this.#o.onAnswer(answer);
    } catch (err) {
      this.#down(err);
      return 'refused';
    }
    const wasProblem = this.#lastProblem;
    this.#lastProblem = undefined;
    this.answer = answer;
    this.#up = true;
    this.#registeredAt = Date.now();
    if (wasProblem !== undefined) this.#o.log.info(`NetManager at ${this.url} reachable again: subnet ${answer.subnet}${answer.subnet_v6 !== null ? ` + ${answer.subnet_v6}` : ''}`);
    // replay: pending undeploys keep their place, every current instance is announced again
    const undeploys = [...this.#queue.entries()].filter(([, n]) => n.kind === 'undeploy');
    const current = this.#o.current();
    this.#queue.clear();
    for (const [id, n] of undeploys) this.#queue.set(id, n);
    for (const d of current) {
      const id = instanceName(d.job_name, d.instance_number);
      this.#queue.delete(id);
      this.#queue.set(id, { kind: 'deploy', body: d });
    }
    await this.#flush();
    return 'ok';
  }

  #down(err: unknown): void {
    this.#up = false;
    const msg = err instanceof Error ? err.message : String(err);
    // one line per distinct problem, not one per retry; "not reachable" is one problem whatever
    // the socket said (a request cut by the NetManager's stop, then refused connections)
    const problem = err instanceof NetManagerError && err.down ? 'not reachable' : msg;
    if (problem !== this.#lastProblem) {
      this.#lastProblem = problem;
      const refused = err instanceof NetManagerError ? !err.down : true;
      this.#o.log.warn(`${msg}; ${refused ? 'registration refused, ' : ''}retrying in the background (instances start without the overlay until then; notices are queued)`);
    }
  }

  async #flush(): Promise<void> {
    const key = this.#key;
    if (key === undefined) return;
    for (const [id, n] of [...this.#queue.entries()]) {
      if (this.#closed || !this.#up) return;
      let r: { status: number; text: string };
      try {
        r = await this.#post(n.kind === 'deploy' ? '/instance/deploy' : '/instance/undeploy', n.body, key);
      } catch (err) {
        this.#down(err);
        return;
      }
      if (r.status === 401 || r.status === 403 || r.status >= 500) {
        this.#down(new NetManagerError(`the NetManager answered ${r.status} to ${n.kind} of ${id}`, true));
        return;
      }
      // delivered (204), or refused for good (4xx: logged, not retried)
      if (this.#queue.get(id) === n) this.#queue.delete(id);
      if (r.status >= 400) this.#o.log.warn(`the NetManager refused the ${n.kind} notice of ${id} (${r.status}): ${r.text.slice(0, 300)}`);
    }
  }
}

/** `<dataDir>/netmanager.json`: the NetManager's last accepted answer (persisted before it is acted on). */
export function overlayStatePath(dataDir: string): string {
  return join(dataDir, 'netmanager.json');
}

export async function readOverlayState(dataDir: string): Promise<NetRegisterAnswer | undefined> {
  try {
    const j = JSON.parse(await readFile(overlayStatePath(dataDir), 'utf8')) as { answer?: unknown };
    return parseNetRegisterAnswer(j.answer);
  } catch {
    return undefined;
  }
}

export async function writeOverlayState(dataDir: string, port: number, answer: NetRegisterAnswer): Promise<void> {
  const path = overlayStatePath(dataDir);
  await writeFile(`${path}.tmp`, JSON.stringify({ port, answer }), { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}
