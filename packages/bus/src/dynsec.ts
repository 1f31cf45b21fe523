/**
 * Provisioning of an external Mosquitto through its dynamic-security plugin
 * (`$CONTROL/dynamic-security/v1`, Debian's mosquitto package ships it): one client and one role
 * per worker with the ACL of acl.ts, and a full-access role for the cluster's own (admin) client.
 * Commands go one request at a time and are matched to their answers by `correlationData`.
 *
 * Mosquitto keeps these in its own file, so they outlive a cluster restart; the cluster still
 * re-provisions a worker at each registration (idempotent) so that a broker that lost them, or a
 * password that changed, is repaired. Deleting a client makes Mosquitto disconnect it at once.
 */
import { randomBytes } from 'node:crypto';
import { CLUSTER_DYNSEC_ACLS, NETMANAGER_CLIENT_SUFFIX, workerDynsecAcls } from './acl.ts';
import type { DynsecAcl } from './acl.ts';
import { connectBus } from './bus.ts';
import type { Bus, BusOptions } from './bus.ts';
import { silentLogger } from './log.ts';
import type { Logger } from './log.ts';

export const DYNSEC_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = '$CONTROL/dynamic-security/v1/response';
export const CLUSTER_ROLE = 'oak-cluster';

export function workerRoleName(workerId: string): string {
  return `oak-worker-${workerId}`;
}

export interface DynsecAnswer {
  command: string;
  error?: string;
  data?: unknown;
}

export class DynsecError extends Error {
  constructor(readonly command: string, readonly reason: string) {
    super(`mosquitto dynamic-security ${command}: ${reason}`);
    this.name = 'DynsecError';
  }
}

type DynsecCommand = { command: string } & Record<string, unknown>;

export class DynsecProvisioner {
  readonly #bus: Bus;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #pending = new Map<string, (a: DynsecAnswer) => void>();
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(bus: Bus, log: Logger, timeoutMs: number) {
    this.#bus = bus;
    this.#log = log;
    this.#timeoutMs = timeoutMs;
  }

  /** subscribes to the plugin's answers on `bus` (a client with the dynsec admin role) */
  static async attach(bus: Bus, opts: { log?: Logger; timeoutMs?: number } = {}): Promise<DynsecProvisioner> {
    const p = new DynsecProvisioner(bus, opts.log ?? silentLogger, opts.timeoutMs ?? 5000);
    await bus.subscribe(DYNSEC_RESPONSE_TOPIC, (_t, payload) => p.#onResponse(payload));
    return p;
  }

  #onResponse(payload: Buffer): void {
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      return;
    }
    const responses = (body as { responses?: unknown }).responses;
    if (!Array.isArray(responses)) return;
    for (const r of responses as Record<string, unknown>[]) {
      const id = typeof r['correlationData'] === 'string' ? r['correlationData'] : undefined;
      const resolve = id === undefined ? undefined : this.#pending.get(id);
      if (!resolve || id === undefined) continue;
      this.#pending.delete(id);
      const a: DynsecAnswer = { command: String(r['command']) };
      if (typeof r['error'] === 'string') a.error = r['error'];
      if (r['data'] !== undefined) a.data = r['data'];
      resolve(a);
    }
  }

  /** runs commands in one request; answers in order (each may carry `error`) */
  run(commands: DynsecCommand[]): Promise<DynsecAnswer[]> {
    const next = this.#queue.then(() => this.#send(commands));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #send(commands: DynsecCommand[]): Promise<DynsecAnswer[]> {
    const ids = commands.map(() => randomBytes(8).toString('hex'));
    const answers = ids.map(
      (id, i) =>
        new Promise<DynsecAnswer>((resolve, reject) => {
          const timer = setTimeout(() => {
            this.#pending.delete(id);
            reject(new DynsecError(commands[i]?.command ?? '?', `no answer within ${this.#timeoutMs} ms (is the dynamic-security plugin loaded, and is this the admin client?)`));
          }, this.#timeoutMs);
          this.#pending.set(id, (a) => {
            clearTimeout(timer);
            resolve(a);
          });
        }),
    );
    try {
      await this.#bus.publishJson(DYNSEC_TOPIC, { commands: commands.map((c, i) => ({ ...c, correlationData: ids[i] })) }, 1);
    } catch (err) {
      for (const id of ids) this.#pending.delete(id);
      throw err;
    }
    return Promise.all(answers);
  }

  /** like run, but an error other than the ones in `tolerated` (substring match) throws */
  async #must(commands: DynsecCommand[], tolerated: RegExp[] = []): Promise<DynsecAnswer[]> {
    const answers = await this.run(commands);
    for (const a of answers) {
      if (a.error !== undefined && !tolerated.some((t) => t.test(a.error ?? ''))) throw new DynsecError(a.command, a.error);
    }
    return answers;
  }

  /**
   * The cluster's own client (the admin user) gets full access to every topic. Mosquitto
   * disconnects a client whose roles change, so when the role is new to it this returns true
   * without waiting for the answer: run it on a connection of its own (see provisionClusterClient).
   */
  async ensureClusterRole(adminUser: string): Promise<boolean> {
    await this.#ensureRole(CLUSTER_ROLE, CLUSTER_DYNSEC_ACLS);
    const [got] = await this.#must([{ command: 'getClient', username: adminUser }]);
    const roles = (got?.data as { client?: { roles?: { rolename?: string }[] } } | undefined)?.client?.roles ?? [];
    if (roles.some((r) => r.rolename === CLUSTER_ROLE)) return false;
    await this.#bus.publishJson(DYNSEC_TOPIC, { commands: [{ command: 'addClientRole', username: adminUser, rolename: CLUSTER_ROLE, priority: 10 }] }, 0);
    return true;
  }

  async #ensureRole(rolename: string, acls: DynsecAcl[]): Promise<void> {
    const [created] = await this.#must([{ command: 'createRole', rolename, acls }], [/already exists/i]);
    if (created?.error === undefined) return;
    // it existed: make its ACL what we want (entries we add are idempotent; foreign ones go)
    const [got] = await this.#must([{ command: 'getRole', rolename }]);
    const have = ((got?.data as { role?: { acls?: DynsecAcl[] } } | undefined)?.role?.acls ?? []).map((a) => ({ acltype: a.acltype, topic: a.topic, allow: a.allow }));
    const key = (a: Pick<DynsecAcl, 'acltype' | 'topic' | 'allow'>): string => `${a.acltype} ${a.topic} ${String(a.allow)}`;
    const want = new Set(acls.map(key));
    const haveKeys = new Set(have.map(key));
    const cmds: DynsecCommand[] = [
      ...have.filter((a) => !want.has(key(a))).map((a) => ({ command: 'removeRoleACL', rolename, acltype: a.acltype, topic: a.topic })),
      ...acls.filter((a) => !haveKeys.has(key(a))).map((a) => ({ command: 'addRoleACL', rolename, ...a })),
    ];
    if (cmds.length > 0) await this.#must(cmds, [/not found/i]);
  }

  /**
   * creates (or repairs) the client and role of a worker: user name and client id = worker id;
   * `tokenId` (the join token it used) is kept in the client's text name, so that a restarted
   * cluster knows which workers a token revocation concerns (workerTokens). Its NetManager gets a
   * client of its own (user name and client id `<id>-net`, same password, same role): Mosquitto
   * admits one client id per client, and each stays pinned to its own (no session takeover).
   */
  async upsertWorker(workerId: string, password: string, tokenId?: string): Promise<void> {
    const rolename = workerRoleName(workerId);
    await this.#ensureRole(rolename, workerDynsecAcls(workerId));
    await this.#upsertClient(workerId, password, tokenId === undefined ? 'oak worker' : `oak worker; token ${tokenId}`, rolename);
    await this.#upsertClient(`${workerId}${NETMANAGER_CLIENT_SUFFIX}`, password, `oak netmanager of ${workerId}`, rolename);
    this.#log.debug(`dynsec: worker ${workerId} provisioned`);
  }

  async #upsertClient(username: string, password: string, textname: string, rolename: string): Promise<void> {
    const [got] = await this.run([{ command: 'getClient', username }]);
    const client = (got?.data as { client?: { clientid?: string; roles?: { rolename?: string }[] } } | undefined)?.client;
    if (got?.error !== undefined || client === undefined) {
      await this.#must([{ command: 'createClient', username, clientid: username, password, textname, roles: [{ rolename }] }]);
      return;
    }
    // it existed: same password (HMAC of the same secret), same client id, same role
    const cmds: DynsecCommand[] = [{ command: 'setClientPassword', username, password }];
    if ((client as { textname?: string }).textname !== textname) cmds.push({ command: 'modifyClient', username, textname });
    if (client.clientid !== username) cmds.push({ command: 'setClientId', username, clientid: username });
    if (!(client.roles ?? []).some((r) => r.rolename === rolename)) cmds.push({ command: 'addClientRole', username, rolename });
    await this.#must(cmds);
  }

  /** removes a worker's clients (Mosquitto disconnects them) and role; unknown ones are fine */
  async removeWorker(workerId: string): Promise<void> {
    await this.#must(
      [{ command: 'deleteClient', username: workerId }, { command: 'deleteClient', username: `${workerId}${NETMANAGER_CLIENT_SUFFIX}` }, { command: 'deleteRole', rolename: workerRoleName(workerId) }],
      [/not found/i],
    );
  }

  /** the workers provisioned by a cluster (upsertWorker), with the id of the token each joined with */
  async workerTokens(): Promise<Map<string, string>> {
    const [a] = await this.#must([{ command: 'listClients', verbose: true, count: -1, offset: 0 }]);
    const clients = ((a?.data as { clients?: unknown[] } | undefined)?.clients ?? []) as { username?: unknown; textname?: unknown }[];
    const out = new Map<string, string>();
    for (const c of clients) {
      const m = typeof c.textname === 'string' ? /^oak worker; token ([a-z0-9]{8})$/.exec(c.textname) : null;
      if (m?.[1] !== undefined && typeof c.username === 'string') out.set(c.username, m[1]);
    }
    return out;
  }

  /** every client user name the plugin knows */
  async listClients(): Promise<string[]> {
    const [a] = await this.#must([{ command: 'listClients', verbose: false, count: -1, offset: 0 }]);
    const clients = (a?.data as { clients?: unknown[] } | undefined)?.clients ?? [];
    return clients.map((c) => (typeof c === 'string' ? c : String((c as { username?: unknown }).username)));
  }
}

/**
 * Gives the admin client of `url` the cluster role on a short connection of its own (Mosquitto
 * kicks a client whose roles change), so that the cluster's main connection is not disturbed.
 */
export async function provisionClusterClient(url: string, username: string, password: string, opts: { log?: Logger; timeoutMs?: number; tls?: BusOptions['tls'] } = {}): Promise<void> {
  const bus = await connectBus(url, { clientId: `oak-dynsec-${randomBytes(4).toString('hex')}`, username, password, reconnectPeriodMs: 0, ...(opts.tls ? { tls: opts.tls } : {}), ...(opts.log ? { log: opts.log } : {}) });
  try {
    const p = await DynsecProvisioner.attach(bus, opts);
    if (await p.ensureClusterRole(username)) {
      // Mosquitto kicks this connection once the role is added: that is the answer
      for (let i = 0; i < 100 && bus.connected; i++) await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await bus.close();
  }
}
