/**
 * Provisioning of NATS server's MQTT mode (issue 13): NATS has no dynamic-security plugin, and
 * (before 2.10) no auth callout, so the cluster owns a users file that the server's config
 * includes inside its `authorization { }` block, and reloads the server (SIGHUP to the pid in its
 * `pid_file`) after each change. Each worker gets two users (its NodeEngine `<id>`, its NetManager
 * `<id>-net`, one password) with the permissions of acl.ts translated to NATS subjects (MQTT `/`
 * is NATS `.`, `+` is `*`, `#` is `>`), MQTT connections only; the cluster's own user (the
 * credentials in MQTT_URL) may do everything. A reload disconnects a user that is gone at once.
 *
 * Changes within `batchMs` go out in one write and one reload (a registration storm is a few
 * reloads, not one per worker). With the server's monitoring URL, each reload is confirmed (its
 * `config_load_time` moves) before a registration is answered, and the start checks the version
 * and that JetStream is on (NATS's MQTT needs it: sessions, QoS 1 and retained messages live there).
 *
 * Limits of NATS's MQTT, which the cluster states at start: before 2.10 a topic holding `.` or a
 * space is refused (a publish closes the connection), so `jobs/<job>/updates_available` (job
 * names hold dots) cannot be used there; the file holds the passwords in clear (it keeps the
 * owner, group and mode of the file it replaces, at most 0640; a new one is 0600), and
 * every server of a NATS cluster needs the same file (see docs/operations.md).
 */
import { randomBytes } from 'node:crypto';
import { chown, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { NETMANAGER_CLIENT_SUFFIX, WORKER_READ_ONLY, WORKER_SUBSCRIBE_BRANCHES } from './acl.ts';
import { silentLogger } from './log.ts';
import type { Logger } from './log.ts';

export interface NatsAuthOptions {
  /** the users file (`users = [...]`) the NATS config includes inside `authorization { }`; rewritten by the cluster */
  file: string;
  /** the server's `pid_file`: a change is applied with SIGHUP to that pid */
  pidFile: string;
  /** the server's monitoring endpoint (`http: host:8222` in its config), e.g. http://127.0.0.1:8222 */
  monitorUrl?: string;
  log?: Logger;
  /** changes within this window go out in one reload (default 50 ms) */
  batchMs?: number;
  /** how long a reload may take to show (default 5 s) */
  reloadTimeoutMs?: number;
  /**
   * tries an MQTT connection with these credentials (true: accepted, false: refused); after a
   * reload that added or changed workers, one of them is probed until the server accepts it, so
   * that a registration is answered only once its credentials work (the monitoring endpoint's
   * reload time alone can come a moment early)
   */
  probe?: (user: string, password: string) => Promise<boolean>;
}

/** what the monitoring endpoint told at start */
export interface NatsServerInfo {
  version: string;
  jetstream: boolean;
  /** NATS 2.10 and later map `.` in MQTT topics to `//`; before, such topics are refused */
  dotsInTopics: boolean;
}

/** worker ids, user names and passwords that can be written into the file as they are */
const SAFE_NAME = /^[A-Za-z0-9_-]{1,200}$/;
const SAFE_SECRET = /^[\x21\x23-\x5b\x5d-\x7e]{1,500}$/; // printable ASCII but `"` and `\`

/** may `id` be a worker on NATS? (one topic level, one subject token, a user name in the file) */
export function isNatsSafeId(id: string): boolean {
  return SAFE_NAME.test(id) && !id.startsWith('$');
}

/** an MQTT topic or filter of our protocol as a NATS subject (`/` → `.`, `+` → `*`, `#` → `>`) */
export function natsSubject(mqtt: string): string {
  return mqtt.split('/').map((l) => (l === '+' ? '*' : l === '#' ? '>' : l)).join('.');
}

export interface NatsPermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
}

/**
 * acl.ts's worker rules as NATS permissions. MQTT `a/#` becomes two NATS subscriptions (`a` and
 * `a.>`), so both are allowed; `$MQTT.sub.>` is where NATS delivers QoS 1 messages to an MQTT
 * session (its MQTT layer refuses `$MQTT/...` filters from clients, see the hostile tests).
 */
export function natsWorkerPermissions(workerId: string): NatsPermissions {
  return {
    publish: { allow: [`nodes.${workerId}.>`] },
    subscribe: {
      allow: [
        ...WORKER_SUBSCRIBE_BRANCHES.flatMap((b) => [`nodes.${workerId}.${b}`, `nodes.${workerId}.${b}.>`]),
        ...WORKER_READ_ONLY.map(natsSubject),
        '$MQTT.sub.>',
      ],
    },
  };
}

interface Entry {
  password: string;
  tokenId?: string;
}

const HEADER = '# Written by oak-cluster (NATS MQTT users of its workers): do not edit, it is rewritten at each change.';
const MARK = /^ {2}# oak-worker (\S+) (\S+)$/;

/** compares NATS versions `a.b.c` */
function atLeast(version: string, major: number, minor: number): boolean {
  const m = /^v?(\d+)\.(\d+)/.exec(version);
  if (!m) return false;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj > major || (maj === major && min >= minor);
}

export class NatsAuthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NatsAuthError';
  }
}

export class NatsAuthProvisioner {
  readonly #o: Required<Omit<NatsAuthOptions, 'monitorUrl' | 'probe'>> & Pick<NatsAuthOptions, 'monitorUrl' | 'probe'>;
  /** a worker added or changed since the last write: probed after the reload */
  #changed: string | undefined;
  readonly #admin: { user: string; password: string };
  readonly #workers = new Map<string, Entry>();
  #written = '';
  #timer: NodeJS.Timeout | undefined;
  #waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  #chain: Promise<void> = Promise.resolve();
  info: NatsServerInfo | undefined;

  private constructor(o: NatsAuthOptions, admin: { user: string; password: string }) {
    this.#o = { log: silentLogger, batchMs: 50, reloadTimeoutMs: 5000, ...o };
    this.#admin = admin;
  }

  /**
   * Reads the workers a former run wrote into the file, checks the server (with a monitoring
   * URL), and writes the file with the cluster's own user (reloading the server when it changed).
   */
  static async open(o: NatsAuthOptions, admin: { user: string; password: string }): Promise<NatsAuthProvisioner> {
    if (!isNatsSafeId(admin.user)) throw new NatsAuthError(`the MQTT_URL user ${JSON.stringify(admin.user)} cannot be a NATS user of the users file (letters, digits, "_" and "-" only)`);
    if (!SAFE_SECRET.test(admin.password)) throw new NatsAuthError('the MQTT_URL password cannot be written into the NATS users file (printable ASCII without `"` and `\\`, at most 500 characters)');
    const p = new NatsAuthProvisioner(o, admin);
    if (o.monitorUrl !== undefined) {
      p.info = await p.#serverInfo();
      if (!p.info.jetstream) throw new NatsAuthError(`the NATS server (${p.info.version}) runs without JetStream: its MQTT mode needs it (sessions, QoS 1, retained messages); add \`jetstream {}\` to its config`);
    }
    let old = '';
    try {
      old = await readFile(o.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    p.#written = old;
    const lines = old.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const m = MARK.exec(lines[i] ?? '');
      if (!m?.[1]) continue;
      try {
        const u = JSON.parse(lines[i + 1] ?? '') as { user?: unknown; password?: unknown };
        if (u.user === m[1] && typeof u.password === 'string' && isNatsSafeId(m[1])) p.#workers.set(m[1], { password: u.password, ...(m[2] !== '-' ? { tokenId: m[2] } : {}) });
      } catch {
        // not ours: dropped at the next write
      }
    }
    await p.#apply();
    return p;
  }

  async #serverInfo(): Promise<NatsServerInfo> {
    const varz = await this.#varz();
    const version = typeof varz['version'] === 'string' ? varz['version'] : '?';
    const js = varz['jetstream'] as { config?: unknown } | undefined;
    return { version, jetstream: js?.config !== undefined && js.config !== null, dotsInTopics: atLeast(version, 2, 10) };
  }

  async #varz(): Promise<Record<string, unknown>> {
    const url = `${(this.#o.monitorUrl ?? '').replace(/\/$/, '')}/varz`;
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(3000) });
    } catch (err) {
      throw new NatsAuthError(`the NATS monitoring endpoint ${url} does not answer: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!res.ok) throw new NatsAuthError(`the NATS monitoring endpoint ${url} answered ${res.status}`);
    return (await res.json()) as Record<string, unknown>;
  }

  /** the workers the file holds, with the id of the token each joined with */
  workerTokens(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [id, e] of this.#workers) if (e.tokenId !== undefined) out.set(id, e.tokenId);
    return out;
  }

  /** every worker the file holds */
  workers(): string[] {
    return [...this.#workers.keys()];
  }

  /** creates (or repairs) a worker's two users; resolves once the server has them */
  async upsertWorker(workerId: string, password: string, tokenId?: string): Promise<void> {
    if (!isNatsSafeId(workerId)) throw new NatsAuthError(`worker id ${JSON.stringify(workerId.slice(0, 200))} cannot be a NATS user (letters, digits, "_" and "-" only)`);
    if (!SAFE_SECRET.test(password)) throw new NatsAuthError('the worker password cannot be written into the NATS users file');
    if (tokenId !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(tokenId)) throw new NatsAuthError('the token id cannot be written into the NATS users file');
    const had = this.#workers.get(workerId);
    this.#workers.set(workerId, { password, ...(tokenId !== undefined ? { tokenId } : {}) });
    if (had?.password !== password) this.#changed = workerId;
    await this.#schedule();
  }

  /**
   * removes a worker's users (the reload disconnects them); an unknown one is fine. Not batched:
   * a re-registration right after must not cancel the disconnection out.
   */
  async removeWorker(workerId: string): Promise<void> {
    if (!this.#workers.delete(workerId)) return;
    const run = this.#chain.then(() => this.#apply());
    this.#chain = run.catch(() => undefined);
    await run;
  }

  /** the file as it would be written now */
  render(): string {
    const mqttOnly = ['MQTT'];
    const lines = [HEADER, 'users = [', `  ${JSON.stringify({ user: this.#admin.user, password: this.#admin.password, permissions: { publish: '>', subscribe: '>' } })}`];
    for (const [id, e] of [...this.#workers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const permissions = natsWorkerPermissions(id);
      lines.push(`  # oak-worker ${id} ${e.tokenId ?? '-'}`);
      lines.push(`  ${JSON.stringify({ user: id, password: e.password, permissions, allowed_connection_types: mqttOnly })}`);
      lines.push(`  ${JSON.stringify({ user: `${id}${NETMANAGER_CLIENT_SUFFIX}`, password: e.password, permissions, allowed_connection_types: mqttOnly })}`);
    }
    lines.push(']', '');
    return lines.join('\n');
  }

  #schedule(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      if (this.#timer !== undefined) return;
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        const waiters = this.#waiters;
        this.#waiters = [];
        const run = this.#chain.then(() => this.#apply());
        this.#chain = run.catch(() => undefined);
        run.then(() => { for (const w of waiters) w.resolve(); }, (err: unknown) => { for (const w of waiters) w.reject(err); });
      }, this.#o.batchMs);
    });
  }

  /** writes the file (when it changed) and has the server reload it */
  async #apply(): Promise<void> {
    const text = this.render();
    if (text === this.#written) return;
    const tmp = `${this.#o.file}.${randomBytes(4).toString('hex')}.tmp`;
    // the server may run as another user (Debian's runs as `nats`): an existing file keeps its
    // owner, group and group read bit (never more than 0640)
    const was = await stat(this.#o.file).catch(() => undefined);
    await writeFile(tmp, text, { mode: was ? was.mode & 0o640 : 0o600 });
    if (was) {
      await chown(tmp, was.uid, was.gid).catch((err: unknown) => {
        this.#o.log.warn(`nats: ${this.#o.file} written with this process's owner, not its former one: ${err instanceof Error ? err.message : String(err)}`);
      });
    }
    await rename(tmp, this.#o.file);
    this.#written = text;
    const probe = this.#changed;
    this.#changed = undefined;
    try {
      await this.#reload();
      if (probe !== undefined) await this.#probe(probe);
    } catch (err) {
      if (probe !== undefined && this.#changed === undefined) this.#changed = probe;
      // not applied: the next change (or a retry of this one) writes and reloads again
      this.#written = '';
      throw err;
    }
  }

  async #reload(): Promise<void> {
    let pid: number;
    try {
      pid = Number((await readFile(this.#o.pidFile, 'utf8')).trim());
    } catch (err) {
      throw new NatsAuthError(`cannot read the NATS pid file ${this.#o.pidFile}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!Number.isInteger(pid) || pid <= 1) throw new NatsAuthError(`the NATS pid file ${this.#o.pidFile} holds no pid`);
    const before = this.#o.monitorUrl !== undefined ? (await this.#varz())['config_load_time'] : undefined;
    try {
      process.kill(pid, 'SIGHUP');
    } catch (err) {
      throw new NatsAuthError(`cannot signal the NATS server (pid ${pid}) to reload: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (this.#o.monitorUrl === undefined) return;
    const deadline = Date.now() + this.#o.reloadTimeoutMs;
    for (;;) {
      const now = (await this.#varz())['config_load_time'];
      if (now !== before) break;
      if (Date.now() > deadline) throw new NatsAuthError(`the NATS server did not reload ${this.#o.file} within ${this.#o.reloadTimeoutMs} ms (see its log: a config error keeps the old users)`);
      await new Promise((r) => setTimeout(r, 20));
    }
    this.#o.log.debug(`nats: ${this.#workers.size} worker(s) in ${this.#o.file}, server reloaded`);
  }

  async #probe(workerId: string): Promise<void> {
    const e = this.#workers.get(workerId);
    if (!this.#o.probe || !e) return;
    const deadline = Date.now() + this.#o.reloadTimeoutMs;
    for (let wait = 10; ; wait = Math.min(wait * 2, 200)) {
      if (await this.#o.probe(workerId, e.password)) return;
      if (Date.now() > deadline) throw new NatsAuthError(`the NATS server still refuses worker ${workerId} ${this.#o.reloadTimeoutMs} ms after the reload of ${this.#o.file} (see its log)`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** stops a pending batch (its waiters are told) */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#waiters) w.reject(new NatsAuthError('closed'));
    this.#waiters = [];
  }
}
