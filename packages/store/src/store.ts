/**
 * The Store on top of kysely: one query code path for SQLite and PostgreSQL. Uniqueness and
 * references are enforced by the schema; constraint violations become ConflictError or
 * NotFoundError, and the transaction they happened in is rolled back, so a refused write changes
 * nothing.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Compilable, ExpressionBuilder, Insertable, Kysely, Selectable } from 'kysely';
import { CompiledQuery } from 'kysely';
import { ConflictError, NotFoundError, OakError, TERMINAL_STATES } from '@oak/contracts';
import type { ClusterResources, HealthState, InstanceNet, InstanceState, Microservice, Role } from '@oak/contracts';
import type { Backend, DB } from './db.ts';
import { isPostgresUrl, openPostgres, openSqlite } from './db.ts';
import { migrate } from './migrations.ts';
import { PreparedQueries } from './prepared.ts';
import { serviceFingerprint } from './fingerprint.ts';
import { passedSteps } from './passed.ts';
import { LocalNotifier, MAX_PAYLOAD_BYTES, PgNotifier } from './notify.ts';
import type { Notifier } from './notify.ts';
import type {
  ApplicationRow,
  AuditEntry,
  AuditFilter,
  NewAuditEntry,
  ClusterRow,
  EndedInstanceRow,
  InstanceHistoryRow,
  JoinTokenRow,
  NewJoinToken,
  NewRegistryCredential,
  FleetArtifactRow,
  RegistryCredentialRow,
  InstancePatch,
  PassedStatus,
  InstanceRow,
  IpamRecord,
  IpamWrite,
  LeaseState,
  NewInstanceOptions,
  ServiceVersionRow,
  VersionMeta,
  DesiredState,
  NewApplication,
  NewService,
  NewUser,
  OrganizationRow,
  ServiceRow,
  Store,
  StoreOptions,
  UserRow,
} from './types.ts';

/** Opens (and migrates) PostgreSQL when databaseUrl is a postgres:// URL, else SQLite. */
export async function createStore(opts: StoreOptions): Promise<Store> {
  let store: KyselyStore;
  if (isPostgresUrl(opts.databaseUrl)) {
    const db = await openPostgres(opts.databaseUrl, opts.pgSchema);
    const notifier = new PgNotifier({
      url: opts.databaseUrl,
      schema: opts.pgSchema,
      send: async (channel, payload) => void (await sql`select pg_notify(${channel}, ${payload})`.execute(db)),
    });
    store = new KyselyStore(db, 'postgres', opts.pgSchema, notifier);
  } else {
    const path = opts.sqlitePath ?? ':memory:';
    store = new KyselyStore(await openSqlite(path), 'sqlite', undefined, new LocalNotifier(path));
  }
  try {
    await store.migrate();
  } catch (e) {
    await store.close();
    throw e;
  }
  return store;
}

const processTag = randomBytes(5).toString('hex');
let counter = randomBytes(3).readUIntBE(0, 3) & 0x0fffff;

/**
 * ObjectId-like, as Oakestra's ids: 4 bytes of seconds since the epoch, 5 bytes fixed per process
 * and a 3-byte counter, as 24 hex digits. Ids made by one process sort in creation order, which
 * lists use to break ties between rows created in the same millisecond.
 */
export function newId(): string {
  const t = Math.floor(Date.now() / 1000).toString(16).padStart(8, '0');
  counter = (counter + 1) & 0xffffff;
  return t + processTag + counter.toString(16).padStart(6, '0');
}

const now = (): string => new Date().toISOString();

function dbCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
const isUniqueViolation = (e: unknown): boolean => {
  const c = dbCode(e);
  return c === '23505' || c === 'SQLITE_CONSTRAINT_UNIQUE' || c === 'SQLITE_CONSTRAINT_PRIMARYKEY';
};
const isForeignKeyViolation = (e: unknown): boolean => {
  const c = dbCode(e);
  return c === '23503' || c === 'SQLITE_CONSTRAINT_FOREIGNKEY';
};

/** Runs fn and turns a uniqueness violation into the given ConflictError. */
async function unique<T>(fn: () => Promise<T>, conflict: () => ConflictError): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isUniqueViolation(e)) throw conflict();
    throw e;
  }
}

type Row<T extends keyof DB> = Selectable<DB[T]>;

const toUser = (r: Row<'users'>): UserRow => ({ ...r, roles: JSON.parse(r.roles) as Role[], token_version: Number(r.token_version) });
const toAudit = (r: Row<'audit'>): AuditEntry => ({ ...r, seq: Number(r.seq), status: Number(r.status) });
export const AUDIT_PAGE_MAX = 1000;
const toService = (r: Row<'services'>): ServiceRow => ({
  ...r,
  sla: JSON.parse(r.sla) as Microservice,
  version: Number(r.version),
  next_instance: Number(r.next_instance),
});
const toVersion = (r: Row<'service_versions'>): ServiceVersionRow => ({
  ...r,
  version: Number(r.version),
  sla: JSON.parse(r.sla) as Microservice,
});
const toInstance = (r: Row<'instances'>): InstanceRow => ({
  ...r,
  instance_number: Number(r.instance_number),
  status: r.status as InstanceState,
  net: r.net === null || r.net === undefined ? null : (JSON.parse(r.net) as InstanceNet),
  service_version: Number(r.service_version),
  desired: r.desired as DesiredState,
  epoch: Number(r.epoch),
  replaces: r.replaces === null ? null : Number(r.replaces),
  health: r.health === null || r.health === undefined ? null : (r.health as HealthState),
  restarts: r.restarts === null || r.restarts === undefined ? 0 : Number(r.restarts),
});
const noServiceAddresses = { service_ip: null, service_ip_v6: null, closest_ip: null, closest_ip_v6: null } as const;
const toCluster = (r: Row<'clusters'>): ClusterRow => ({
  ...r,
  status: r.status as ClusterRow['status'],
  resources: r.resources === null ? null : (JSON.parse(r.resources) as ClusterResources),
});

const toJoinToken = (r: Row<'join_tokens'>): JoinTokenRow => ({
  ...r,
  kind: r.kind as JoinTokenRow['kind'],
  uses: Number(r.uses),
});

const instanceKey = (serviceId: string, n: number): string => `${serviceId}/${n}`;

/** a finished row: stopped, confirmed UNDEPLOYED, its addresses back in the pool (it only waits for its purge) */
const finishedRow = (eb: ExpressionBuilder<DB, 'instances'>) =>
  eb.and([eb('desired', '=', 'stop'), eb('status', '=', 'UNDEPLOYED'), eb('instance_ip', 'is', null), eb('instance_ip_v6', 'is', null)]);

/** the states in which no cluster holds a copy (the root's placement.ts holdsCluster is the rest) */
const NOT_HELD_BY_CLUSTER: readonly InstanceState[] = [...TERMINAL_STATES, 'REQUESTED'];

export class KyselyStore implements Store {
  readonly kind: Backend;
  readonly #db: Kysely<DB>;
  readonly #pgSchema: string | undefined;
  readonly #notifier: Notifier;
  /** the hot queries, compiled once per shape (prepared.ts) */
  readonly #prepared = new PreparedQueries();
  readonly #begin: CompiledQuery;
  readonly #commit = CompiledQuery.raw('commit');

  constructor(db: Kysely<DB>, kind: Backend, pgSchema: string | undefined, notifier: Notifier) {
    this.#db = db;
    this.kind = kind;
    this.#pgSchema = pgSchema;
    this.#notifier = notifier;
    this.#begin = CompiledQuery.raw(kind === 'sqlite' ? 'begin immediate' : 'begin');
  }

  /** the rows of a prepared query (`db`: the store's or a transaction's connection) */
  async #rows<R, A extends readonly unknown[]>(db: Kysely<DB>, key: string, build: (...p: A) => Compilable<R>, ...args: A): Promise<R[]> {
    return (await db.executeQuery(this.#prepared.bind(key, build, args))).rows as R[];
  }

  async #first<R, A extends readonly unknown[]>(db: Kysely<DB>, key: string, build: (...p: A) => Compilable<R>, ...args: A): Promise<R | undefined> {
    return (await this.#rows(db, key, build, ...args))[0];
  }

  /** appends one row to an instance's status history */
  async #history(t: Kysely<DB>, serviceId: string, n: number, status: string, detail: string, at: string): Promise<void> {
    await this.#write(
      t,
      'history:add',
      (id: string, k: number, st: string, d: string, a: string) => t.insertInto('instance_history').values({ service_id: id, instance_number: k, status: st, status_detail: d, at: a }),
      serviceId,
      n,
      status,
      detail,
      at,
    );
  }

  /** the rows a prepared write changed */
  async #write<A extends readonly unknown[]>(db: Kysely<DB>, key: string, build: (...p: A) => Compilable<unknown>, ...args: A): Promise<bigint> {
    return (await db.executeQuery(this.#prepared.bind(key, build, args))).numAffectedRows ?? 0n;
  }

  /** the notifier (tests reach the PostgreSQL listen connection's name through it) */
  get notifier(): Notifier {
    return this.#notifier;
  }

  async migrate(): Promise<void> {
    await migrate(this.#db, this.kind, this.#pgSchema);
  }

  #closing: Promise<void> | undefined;

  /** idempotent: a second call waits for the first */
  async close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#notifier.close();
      await this.#db.destroy();
    })();
    await this.#closing;
  }

  /**
   * A write transaction on one reserved connection. SQLite takes the write lock at once
   * (BEGIN IMMEDIATE), so a read-then-write never fails half way on a lock upgrade.
   */
  async #tx<T>(fn: (t: Kysely<DB>) => Promise<T>): Promise<T> {
    return this.#db.connection().execute(async (c) => {
      await c.executeQuery(this.#begin);
      try {
        const r = await fn(c);
        await c.executeQuery(this.#commit);
        return r;
      } catch (e) {
        await sql.raw('rollback').execute(c).catch(() => undefined);
        // a referenced row vanished under a concurrent writer (the checks above ran first)
        if (isForeignKeyViolation(e)) {
          throw new ConflictError('a record this write refers to was changed concurrently', 'retry the request');
        }
        throw e;
      }
    });
  }

  // ---- organisations ----

  async createOrganization(name: string): Promise<OrganizationRow> {
    const row: OrganizationRow = { id: newId(), name, created_at: now() };
    await unique(
      () => this.#db.insertInto('organizations').values(row).execute(),
      () => new ConflictError(`an organization named ${JSON.stringify(name)} already exists`, 'choose another name'),
    );
    return row;
  }

  async getOrganization(id: string): Promise<OrganizationRow | undefined> {
    return this.#db.selectFrom('organizations').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async getOrganizationByName(name: string): Promise<OrganizationRow | undefined> {
    return this.#db.selectFrom('organizations').selectAll().where('name', '=', name).executeTakeFirst();
  }

  async listOrganizations(): Promise<OrganizationRow[]> {
    return this.#db.selectFrom('organizations').selectAll().orderBy('created_at').orderBy('id').execute();
  }

  async deleteOrganization(id: string): Promise<void> {
    await this.#tx(async (t) => {
      const org = await t.selectFrom('organizations').select('name').where('id', '=', id).executeTakeFirst();
      if (!org) throw new NotFoundError('organization', id);
      const users = await count(t, 'users', id);
      const apps = await count(t, 'applications', id);
      if (users > 0 || apps > 0) {
        throw new ConflictError(
          `organization ${JSON.stringify(org.name)} still has ${users} user(s) and ${apps} application(s)`,
          'delete its applications and users first',
        );
      }
      await t.deleteFrom('registry_credentials').where('organization_id', '=', id).execute();
      await t.deleteFrom('organizations').where('id', '=', id).execute();
    });
  }

  // ---- users ----

  async createUser(u: NewUser): Promise<UserRow> {
    const row: UserRow = {
      id: newId(),
      name: u.name,
      email: u.email ?? null,
      password_hash: u.password_hash,
      roles: u.roles,
      organization_id: u.organization_id,
      created_at: now(),
      token_version: 0,
    };
    return this.#tx(async (t) => {
      if (!(await t.selectFrom('organizations').select('id').where('id', '=', u.organization_id).executeTakeFirst())) {
        throw new NotFoundError('organization', u.organization_id);
      }
      await unique(
        () => t.insertInto('users').values({ ...row, roles: JSON.stringify(row.roles) }).execute(),
        () => new ConflictError(`a user named ${JSON.stringify(u.name)} already exists`, 'choose another user name'),
      );
      return row;
    });
  }

  async getUser(id: string): Promise<UserRow | undefined> {
    const r = await this.#first(this.#db, 'getUser', (i: string) => this.#db.selectFrom('users').selectAll().where('id', '=', i), id);
    return r && toUser(r);
  }

  async getUserByName(name: string): Promise<UserRow | undefined> {
    const r = await this.#db.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();
    return r && toUser(r);
  }

  async listUsers(filter: { organization_id?: string } = {}): Promise<UserRow[]> {
    let q = this.#db.selectFrom('users').selectAll();
    if (filter.organization_id !== undefined) q = q.where('organization_id', '=', filter.organization_id);
    return (await q.orderBy('created_at').orderBy('id').execute()).map(toUser);
  }

  async updateUser(id: string, patch: Partial<Pick<UserRow, 'email' | 'password_hash' | 'roles'>>): Promise<UserRow> {
    return this.#tx(async (t) => {
      const cur = await t.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
      if (!cur) throw new NotFoundError('user', id);
      const set: { email?: string | null; password_hash?: string; roles?: string } = {};
      if (patch.email !== undefined) set.email = patch.email;
      if (patch.password_hash !== undefined) set.password_hash = patch.password_hash;
      if (patch.roles !== undefined) set.roles = JSON.stringify(patch.roles);
      const revoke = set.password_hash !== undefined || (set.roles !== undefined && set.roles !== cur.roles);
      if (Object.keys(set).length > 0) {
        await t
          .updateTable('users')
          .set(revoke ? { ...set, token_version: sql<number>`token_version + 1` } : set)
          .where('id', '=', id)
          .execute();
      }
      const r = await t.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      return toUser(r);
    });
  }

  async revokeUserTokens(id: string): Promise<number> {
    return this.#tx(async (t) => {
      const r = await t.updateTable('users').set({ token_version: sql<number>`token_version + 1` }).where('id', '=', id).executeTakeFirst();
      if (r.numUpdatedRows === 0n) throw new NotFoundError('user', id);
      const u = await t.selectFrom('users').select('token_version').where('id', '=', id).executeTakeFirstOrThrow();
      return Number(u.token_version);
    });
  }

  async deleteUser(id: string): Promise<void> {
    await this.#tx(async (t) => {
      const user = await t.selectFrom('users').select('name').where('id', '=', id).executeTakeFirst();
      if (!user) throw new NotFoundError('user', id);
      const apps = Number(
        (await t.selectFrom('applications').select((eb) => eb.fn.countAll().as('n')).where('user_id', '=', id).executeTakeFirstOrThrow()).n,
      );
      if (apps > 0) {
        throw new ConflictError(`user ${JSON.stringify(user.name)} still owns ${apps} application(s)`, 'delete their applications first');
      }
      await t.deleteFrom('users').where('id', '=', id).execute();
    });
  }

  // ---- applications ----

  async createApplication(app: NewApplication, services: NewService[]): Promise<{ application: ApplicationRow; services: ServiceRow[] }> {
    const at = now();
    const application: ApplicationRow = {
      id: newId(),
      name: app.name,
      namespace: app.namespace,
      description: app.description,
      user_id: app.user_id,
      organization_id: app.organization_id,
      created_at: at,
      updated_at: at,
    };
    const rows = services.map((s): ServiceRow => ({
      id: newId(),
      application_id: application.id,
      organization_id: app.organization_id,
      user_id: app.user_id,
      job_name: s.job_name,
      name: s.name,
      namespace: s.namespace,
      sla: s.sla,
      created_at: at,
      updated_at: at,
      ...noServiceAddresses,
      version: 1,
      next_instance: 0,
    }));
    return this.#tx(async (t) => {
      if (!(await t.selectFrom('organizations').select('id').where('id', '=', app.organization_id).executeTakeFirst())) {
        throw new NotFoundError('organization', app.organization_id);
      }
      if (!(await t.selectFrom('users').select('id').where('id', '=', app.user_id).executeTakeFirst())) {
        throw new NotFoundError('user', app.user_id);
      }
      await unique(
        () => t.insertInto('applications').values(application).execute(),
        () => appConflict(app.name, app.namespace),
      );
      for (const s of rows) {
        await unique(
          () => t.insertInto('services').values({ ...s, sla: JSON.stringify(s.sla) }).execute(),
          () => jobConflict(s.job_name),
        );
        await insertVersion(t, s, at, app.user_id, 'created');
      }
      return { application, services: rows };
    });
  }

  async getApplication(id: string): Promise<ApplicationRow | undefined> {
    return this.#first(this.#db, 'getApplication', (i: string) => this.#db.selectFrom('applications').selectAll().where('id', '=', i), id);
  }

  async listApplications(filter: { organization_id?: string; user_id?: string } = {}): Promise<ApplicationRow[]> {
    let q = this.#db.selectFrom('applications').selectAll();
    if (filter.organization_id !== undefined) q = q.where('organization_id', '=', filter.organization_id);
    if (filter.user_id !== undefined) q = q.where('user_id', '=', filter.user_id);
    return q.orderBy('created_at').orderBy('id').execute();
  }

  async updateApplication(id: string, patch: Partial<Pick<ApplicationRow, 'name' | 'namespace' | 'description'>>): Promise<ApplicationRow> {
    return this.#tx(async (t) => {
      const cur = await t.selectFrom('applications').selectAll().where('id', '=', id).executeTakeFirst();
      if (!cur) throw new NotFoundError('application', id);
      const set: Partial<DB['applications']> = {};
      if (patch.name !== undefined) set.name = patch.name;
      if (patch.namespace !== undefined) set.namespace = patch.namespace;
      if (patch.description !== undefined) set.description = patch.description;
      if (Object.keys(set).length === 0) return cur;
      set.updated_at = now();
      await unique(
        () => t.updateTable('applications').set(set).where('id', '=', id).execute(),
        () => appConflict(set.name ?? cur.name, set.namespace ?? cur.namespace),
      );
      return { ...cur, ...set };
    });
  }

  async deleteApplication(id: string): Promise<void> {
    // services, instances and history go with it (on delete cascade)
    const r = await this.#db.deleteFrom('applications').where('id', '=', id).executeTakeFirst();
    if (r.numDeletedRows === 0n) throw new NotFoundError('application', id);
  }

  // ---- services ----

  async createService(applicationId: string, s: NewService, meta: VersionMeta = {}): Promise<ServiceRow> {
    return this.#tx(async (t) => {
      const app = await t.selectFrom('applications').selectAll().where('id', '=', applicationId).executeTakeFirst();
      if (!app) throw new NotFoundError('application', applicationId);
      const at = now();
      const row: ServiceRow = {
        id: newId(),
        application_id: applicationId,
        organization_id: app.organization_id,
        user_id: app.user_id,
        job_name: s.job_name,
        name: s.name,
        namespace: s.namespace,
        sla: s.sla,
        created_at: at,
        updated_at: at,
        ...noServiceAddresses,
        version: 1,
        next_instance: 0,
      };
      await unique(
        () => t.insertInto('services').values({ ...row, sla: JSON.stringify(row.sla) }).execute(),
        () => jobConflict(s.job_name),
      );
      await insertVersion(t, row, at, meta.created_by === undefined ? app.user_id : meta.created_by, meta.reason ?? 'created');
      return row;
    });
  }

  async getService(id: string): Promise<ServiceRow | undefined> {
    const r = await this.#first(this.#db, 'getService', (i: string) => this.#db.selectFrom('services').selectAll().where('id', '=', i), id);
    return r && toService(r);
  }

  async getServiceByJobName(jobName: string): Promise<ServiceRow | undefined> {
    const r = await this.#first(this.#db, 'getServiceByJobName', (j: string) => this.#db.selectFrom('services').selectAll().where('job_name', '=', j), jobName);
    return r && toService(r);
  }

  async listServices(filter: { application_id?: string; organization_id?: string } = {}): Promise<ServiceRow[]> {
    const { application_id: app, organization_id: org } = filter;
    const build = (a: string | undefined, o: string | undefined) => {
      let q = this.#db.selectFrom('services').selectAll();
      if (a !== undefined) q = q.where('application_id', '=', a);
      if (o !== undefined) q = q.where('organization_id', '=', o);
      return q.orderBy('created_at').orderBy('id');
    };
    const key = `listServices:${app === undefined ? '' : 'a'}${org === undefined ? '' : 'o'}`;
    const args = [app, org].filter((v) => v !== undefined);
    const rows = await this.#rows(this.#db, key, (...p: string[]) => build(app === undefined ? undefined : p[0], org === undefined ? undefined : p[app === undefined ? 0 : 1]), ...args);
    return rows.map(toService);
  }

  async updateService(
    id: string,
    patch: Partial<Pick<ServiceRow, 'sla' | 'job_name' | 'name' | 'namespace'>>,
    meta: VersionMeta = {},
  ): Promise<ServiceRow> {
    return this.#tx(async (t) => {
      const cur = await t
        .selectFrom('services')
        .selectAll()
        .where('id', '=', id)
        .$if(this.kind === 'postgres', (q) => q.forUpdate())
        .executeTakeFirst();
      if (!cur) throw new NotFoundError('service', id);
      const set: Partial<DB['services']> = {};
      if (patch.sla !== undefined) set.sla = JSON.stringify(patch.sla);
      if (patch.job_name !== undefined) set.job_name = patch.job_name;
      if (patch.name !== undefined) set.name = patch.name;
      if (patch.namespace !== undefined) set.namespace = patch.namespace;
      if (Object.keys(set).length === 0) return toService(cur);
      const at = now();
      set.updated_at = at;
      const next = toService({ ...cur, ...set });
      const fingerprint = serviceFingerprint(next.job_name, next.sla);
      const current = await t
        .selectFrom('service_versions')
        .select('fingerprint')
        .where('service_id', '=', id)
        .where('version', '=', Number(cur.version))
        .executeTakeFirst();
      const bump = current?.fingerprint !== fingerprint;
      if (bump) {
        next.version = Number(cur.version) + 1;
        set.version = next.version;
      }
      await unique(
        () => t.updateTable('services').set(set).where('id', '=', id).execute(),
        () => jobConflict(set.job_name ?? cur.job_name),
      );
      if (bump) {
        // the previous newest version did not finish its rollout: a newer one came first
        const newest = await t
          .selectFrom('service_versions')
          .select((eb) => eb.fn.max('version').as('v'))
          .where('service_id', '=', id)
          .executeTakeFirst();
        if (newest?.v != null) {
          await t
            .updateTable('service_versions')
            .set({ outcome: 'superseded' })
            .where('service_id', '=', id)
            .where('version', '=', Number(newest.v))
            .where('outcome', 'is', null)
            .execute();
        }
        await insertVersion(t, next, at, meta.created_by ?? null, meta.reason ?? 'updated');
      }
      return next;
    });
  }

  async deleteService(id: string): Promise<void> {
    const r = await this.#db.deleteFrom('services').where('id', '=', id).executeTakeFirst();
    if (r.numDeletedRows === 0n) throw new NotFoundError('service', id);
  }

  async listServiceVersions(serviceId: string): Promise<ServiceVersionRow[]> {
    const rows = await this.#rows(this.#db, 'listServiceVersions', (id: string) => this.#db.selectFrom('service_versions').selectAll().where('service_id', '=', id).orderBy('version'), serviceId);
    return rows.map(toVersion);
  }

  async getServiceVersion(serviceId: string, version: number): Promise<ServiceVersionRow | undefined> {
    const r = await this.#db
      .selectFrom('service_versions')
      .selectAll()
      .where('service_id', '=', serviceId)
      .where('version', '=', version)
      .executeTakeFirst();
    return r && toVersion(r);
  }

  async setVersionOutcome(serviceId: string, version: number, outcome: string | null): Promise<void> {
    const r = await this.#db
      .updateTable('service_versions')
      .set({ outcome })
      .where('service_id', '=', serviceId)
      .where('version', '=', version)
      .executeTakeFirst();
    if (r.numUpdatedRows === 0n) throw new NotFoundError('service version', `${serviceId}@${version}`);
  }

  // ---- instances ----

  async addInstance(serviceId: string, status: InstanceState, statusDetail = '', opts: NewInstanceOptions = {}): Promise<InstanceRow> {
    return this.#tx(async (t) => {
      // Take the number by bumping the counter: the UPDATE locks the service row (PostgreSQL) or
      // runs under BEGIN IMMEDIATE (SQLite), so concurrent callers, also from other roots, take
      // numbers one after the other; a deleted instance's number is never handed out again.
      const svc = await this.#first(
        t,
        'addInstance:number',
        (id: string) => t.updateTable('services').set({ next_instance: sql<number>`next_instance + 1` }).where('id', '=', id).returning(['next_instance', 'version']),
        serviceId,
      );
      if (!svc) throw new NotFoundError('service', serviceId);
      const n = Number(svc.next_instance) - 1;
      const version = opts.service_version ?? Number(svc.version);
      if (opts.service_version !== undefined) {
        const v = await t
          .selectFrom('service_versions')
          .select('version')
          .where('service_id', '=', serviceId)
          .where('version', '=', version)
          .executeTakeFirst();
        if (!v) throw new NotFoundError('service version', `${serviceId}@${version}`);
      }
      const at = now();
      const row: InstanceRow = {
        service_id: serviceId,
        instance_number: n,
        status,
        status_detail: statusDetail,
        cluster_id: null,
        worker_id: null,
        publicip: null,
        instance_ip: null,
        created_at: at,
        updated_at: at,
        instance_ip_v6: null,
        net: null,
        service_version: version,
        desired: opts.desired ?? 'run',
        epoch: 0,
        replaces: opts.replaces ?? null,
        status_at: at,
        last_cluster_id: null,
        lost_at: null,
        health: null,
        restarts: 0,
      };
      const values = Object.values(row) as unknown[];
      const cols = Object.keys(row) as (keyof InstanceRow)[];
      await this.#write(t, 'addInstance:row', (...v: unknown[]) => t.insertInto('instances').values(Object.fromEntries(cols.map((c, i) => [c, v[i]])) as DB['instances']), ...values);
      await this.#history(t, serviceId, n, status, statusDetail, at);
      return row;
    });
  }

  async getInstance(serviceId: string, n: number): Promise<InstanceRow | undefined> {
    const r = await this.#first(this.#db, 'getInstance', (id: string, k: number) => this.#db.selectFrom('instances').selectAll().where('service_id', '=', id).where('instance_number', '=', k), serviceId, n);
    return r && toInstance(r);
  }

  /** An empty `statuses` list matches nothing. */
  async listInstances(
    filter: { service_id?: string; cluster_id?: string; statuses?: InstanceState[]; desired?: DesiredState; live?: boolean } = {},
  ): Promise<InstanceRow[]> {
    if (filter.statuses !== undefined && filter.statuses.length === 0) return [];
    // the shape: which filters are given (and how many statuses); the values go in as arguments
    const { service_id: sid, cluster_id: cid, statuses, desired } = filter;
    const live = filter.live === true;
    const key = `listInstances:${sid === undefined ? '' : 's'}${cid === undefined ? '' : 'c'}${statuses === undefined ? '' : `t${statuses.length}`}${desired === undefined ? '' : 'd'}${live ? 'l' : ''}`;
    const args: unknown[] = [];
    if (sid !== undefined) args.push(sid);
    if (cid !== undefined) args.push(cid);
    if (statuses !== undefined) args.push(...statuses);
    if (desired !== undefined) args.push(desired);
    const build = (...p: unknown[]) => {
      let i = 0;
      let q = this.#db.selectFrom('instances').selectAll();
      if (sid !== undefined) q = q.where('service_id', '=', p[i++] as string);
      if (cid !== undefined) q = q.where('cluster_id', '=', p[i++] as string);
      if (statuses !== undefined) q = q.where('status', 'in', p.slice(i, (i += statuses.length)) as string[]);
      if (desired !== undefined) q = q.where('desired', '=', p[i++] as string);
      if (live) q = q.where((eb) => eb.not(finishedRow(eb)));
      return q.orderBy('service_id').orderBy('instance_number');
    };
    return (await this.#rows(this.#db, key, build, ...args)).map(toInstance);
  }

  async finishedInstances(serviceId: string, dueAt: string, limit = 1000): Promise<{ due: InstanceRow[]; next: string | null }> {
    const due = await this.#rows(
      this.#db,
      'finishedInstances:due',
      (id: string, at: string, max: number) =>
        this.#db.selectFrom('instances').selectAll().where('service_id', '=', id).where((eb) => finishedRow(eb)).where('status_at', '<=', at).orderBy('instance_number').limit(max),
      serviceId,
      dueAt,
      Math.max(1, Math.floor(limit)),
    );
    const next = await this.#first(
      this.#db,
      'finishedInstances:next',
      (id: string, at: string) =>
        this.#db
          .selectFrom('instances')
          .select((eb) => eb.fn.min<string>('status_at').as('next'))
          .where('service_id', '=', id)
          .where((eb) => finishedRow(eb))
          .where('status_at', '>', at),
      serviceId,
      dueAt,
    );
    return { due: due.map(toInstance), next: next?.next ?? null };
  }

  async listPlacements(): Promise<{ service_id: string; cluster_id: string }[]> {
    const rows = await this.#rows(this.#db, 'listPlacements', () =>
      this.#db
        .selectFrom('instances')
        .select(['service_id', 'cluster_id'])
        .where('desired', '=', 'run')
        .where('cluster_id', 'is not', null)
        .where('status', 'not in', [...NOT_HELD_BY_CLUSTER])
        .orderBy('service_id')
        .orderBy('instance_number'),
    );
    return rows.map((r) => ({ service_id: r.service_id, cluster_id: r.cluster_id as string }));
  }

  async updateInstance(serviceId: string, n: number, patch: InstancePatch, passed: readonly PassedStatus[] = []): Promise<InstanceRow> {
    return this.#tx(async (t) => {
      const cur = await this.#first(
        t,
        'updateInstance:current',
        (id: string, k: number) => t.selectFrom('instances').selectAll().where('service_id', '=', id).where('instance_number', '=', k).$if(this.kind === 'postgres', (q) => q.forUpdate()),
        serviceId,
        n,
      );
      if (!cur) throw new NotFoundError('instance', instanceKey(serviceId, n));
      const set: Partial<DB['instances']> = {};
      if (patch.status !== undefined) set.status = patch.status;
      if (patch.status_detail !== undefined) set.status_detail = patch.status_detail;
      for (const k of ['cluster_id', 'worker_id', 'publicip', 'instance_ip', 'instance_ip_v6', 'last_cluster_id', 'lost_at'] as const) {
        const v = patch[k];
        if (v !== undefined) set[k] = v;
      }
      if (patch.service_version !== undefined) set.service_version = patch.service_version;
      if (patch.desired !== undefined) set.desired = patch.desired;
      if (patch.epoch !== undefined) set.epoch = patch.epoch;
      if (patch.health !== undefined && patch.health !== cur.health) set.health = patch.health;
      if (patch.restarts !== undefined && patch.restarts !== Number(cur.restarts)) set.restarts = patch.restarts;
      if (patch.net !== undefined) {
        const text = patch.net === null ? null : JSON.stringify(patch.net);
        if (text !== cur.net) set.net = text;
      }
      if (Object.keys(set).length === 0) return toInstance(cur);
      const at = now();
      set.updated_at = at;
      if (patch.status !== undefined && patch.status !== cur.status) set.status_at = at;
      const cols = Object.keys(set) as (keyof typeof set)[];
      await this.#write(
        t,
        `updateInstance:set:${cols.join(',')}`,
        (id: string, k: number, ...v: unknown[]) =>
          t
            .updateTable('instances')
            .set(Object.fromEntries(cols.map((c, i) => [c, v[i]])) as Partial<DB['instances']>)
            .where('service_id', '=', id)
            .where('instance_number', '=', k),
        serviceId,
        n,
        ...cols.map((c) => set[c]),
      );
      const next = toInstance({ ...cur, ...set });
      if (patch.status !== undefined && patch.status !== cur.status) {
        for (const p of passedSteps(cur.status, passed, next.status)) await this.#history(t, serviceId, n, p.status, p.status_detail, p.at < at ? p.at : at);
        await this.#history(t, serviceId, n, next.status, next.status_detail, at);
      }
      return next;
    });
  }

  async deleteInstance(serviceId: string, n: number): Promise<void> {
    await this.#tx(async (t) => {
      const cur = await t
        .selectFrom('instances')
        .select(['status', 'status_detail', 'cluster_id', 'worker_id', 'status_at', 'updated_at'])
        .where('service_id', '=', serviceId)
        .where('instance_number', '=', n)
        .$if(this.kind === 'postgres', (q) => q.forUpdate())
        .executeTakeFirst();
      if (!cur) throw new NotFoundError('instance', instanceKey(serviceId, n));
      if (cur.cluster_id !== null) {
        const row = {
          service_id: serviceId,
          instance_number: n,
          status: cur.status,
          status_detail: cur.status_detail,
          cluster_id: cur.cluster_id,
          worker_id: cur.worker_id,
          ended_at: cur.status_at !== '' ? cur.status_at : cur.updated_at,
          removed_at: now(),
        };
        await t
          .insertInto('ended_instances')
          .values(row)
          .onConflict((oc) => oc.columns(['service_id', 'instance_number']).doUpdateSet({ status: row.status, status_detail: row.status_detail, cluster_id: row.cluster_id, worker_id: row.worker_id, ended_at: row.ended_at, removed_at: row.removed_at }))
          .execute();
      }
      // its history goes with it (on delete cascade)
      await t.deleteFrom('instances').where('service_id', '=', serviceId).where('instance_number', '=', n).execute();
    });
  }

  async getEndedInstance(serviceId: string, n: number): Promise<EndedInstanceRow | undefined> {
    const r = await this.#db.selectFrom('ended_instances').selectAll().where('service_id', '=', serviceId).where('instance_number', '=', n).executeTakeFirst();
    return r && { ...r, instance_number: Number(r.instance_number), status: r.status as InstanceState };
  }

  async pruneEndedInstances(before: string): Promise<number> {
    const r = await this.#db.deleteFrom('ended_instances').where('removed_at', '<', before).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async instanceHistory(serviceId: string, n: number): Promise<InstanceHistoryRow[]> {
    const rows = await this.#rows(
      this.#db,
      'instanceHistory',
      (id: string, k: number) =>
        this.#db.selectFrom('instance_history').select(['service_id', 'instance_number', 'status', 'status_detail', 'at']).where('service_id', '=', id).where('instance_number', '=', k).orderBy('seq'),
      serviceId,
      n,
    );
    return rows.map((r) => ({ ...r, instance_number: Number(r.instance_number), status: r.status as InstanceState }));
  }

  async serviceHistory(serviceId: string): Promise<Map<number, InstanceHistoryRow[]>> {
    const rows = await this.#db
      .selectFrom('instance_history')
      .select(['service_id', 'instance_number', 'status', 'status_detail', 'at'])
      .where('service_id', '=', serviceId)
      .orderBy('instance_number')
      .orderBy('seq')
      .execute();
    const out = new Map<number, InstanceHistoryRow[]>();
    for (const r of rows) {
      const n = Number(r.instance_number);
      let list = out.get(n);
      if (!list) out.set(n, (list = []));
      list.push({ ...r, instance_number: n, status: r.status as InstanceState });
    }
    return out;
  }

  // ---- clusters ----

  /** Finds the cluster by name or creates it (INACTIVE, never seen); a non-null location replaces the stored one. */
  async upsertCluster(name: string, location: string | null): Promise<ClusterRow> {
    return this.#tx(async (t) => {
      await t
        .insertInto('clusters')
        .values({ id: newId(), name, location, status: 'INACTIVE', last_seen: null, resources: null, created_at: now() })
        .onConflict((oc) => oc.column('name').doNothing())
        .execute();
      const r = await t.selectFrom('clusters').selectAll().where('name', '=', name).executeTakeFirstOrThrow();
      if (location !== null && r.location !== location) {
        await t.updateTable('clusters').set({ location }).where('id', '=', r.id).execute();
        r.location = location;
      }
      return toCluster(r);
    });
  }

  async getCluster(id: string): Promise<ClusterRow | undefined> {
    const r = await this.#db.selectFrom('clusters').selectAll().where('id', '=', id).executeTakeFirst();
    return r && toCluster(r);
  }

  async getClusterLocation(id: string): Promise<string | null | undefined> {
    const r = await this.#first(this.#db, 'getClusterLocation', (i: string) => this.#db.selectFrom('clusters').select('location').where('id', '=', i), id);
    return r?.location;
  }

  async listClusters(): Promise<ClusterRow[]> {
    return (await this.#db.selectFrom('clusters').selectAll().orderBy('created_at').orderBy('id').execute()).map(toCluster);
  }

  async updateCluster(id: string, patch: Partial<Pick<ClusterRow, 'status' | 'last_seen' | 'resources' | 'location'>>): Promise<ClusterRow> {
    return this.#tx(async (t) => {
      const set: Partial<DB['clusters']> = {};
      if (patch.status !== undefined) set.status = patch.status;
      if (patch.last_seen !== undefined) set.last_seen = patch.last_seen;
      if (patch.location !== undefined) set.location = patch.location;
      if (patch.resources !== undefined) set.resources = patch.resources === null ? null : JSON.stringify(patch.resources);
      if (Object.keys(set).length > 0) await t.updateTable('clusters').set(set).where('id', '=', id).execute();
      const r = await t.selectFrom('clusters').selectAll().where('id', '=', id).executeTakeFirst();
      if (!r) throw new NotFoundError('cluster', id);
      return toCluster(r);
    });
  }

  // ---- join tokens ----

  async createJoinToken(t: NewJoinToken): Promise<JoinTokenRow> {
    const row = { ...t, created_at: now(), revoked_at: null, last_used_at: null, uses: 0 };
    await unique(
      () => this.#db.insertInto('join_tokens').values(row).execute(),
      () => new ConflictError(`a join token with id ${JSON.stringify(t.id)} already exists`),
    );
    return row;
  }

  async getJoinToken(id: string): Promise<JoinTokenRow | undefined> {
    const r = await this.#db.selectFrom('join_tokens').selectAll().where('id', '=', id).executeTakeFirst();
    return r && toJoinToken(r);
  }

  async listJoinTokens(filter: { kind?: JoinTokenRow['kind']; cluster?: string } = {}): Promise<JoinTokenRow[]> {
    let q = this.#db.selectFrom('join_tokens').selectAll();
    if (filter.kind !== undefined) q = q.where('kind', '=', filter.kind);
    if (filter.cluster !== undefined) q = q.where('cluster', '=', filter.cluster);
    return (await q.orderBy('created_at').orderBy('id').execute()).map(toJoinToken);
  }

  async revokeJoinToken(id: string): Promise<JoinTokenRow> {
    await this.#db.updateTable('join_tokens').set({ revoked_at: now() }).where('id', '=', id).where('revoked_at', 'is', null).execute();
    const r = await this.getJoinToken(id);
    if (!r) throw new NotFoundError('join token', id, 'list them with GET /api/tokens');
    return r;
  }

  async bindJoinToken(id: string, name: string): Promise<JoinTokenRow | undefined> {
    await this.#db.updateTable('join_tokens').set({ name }).where('id', '=', id).where('kind', '=', 'cluster').where('name', 'is', null).execute();
    return this.getJoinToken(id);
  }

  async recordJoinTokenUse(id: string): Promise<void> {
    await this.#db
      .updateTable('join_tokens')
      .set((eb) => ({ uses: eb('uses', '+', 1), last_used_at: now() }))
      .where('id', '=', id)
      .execute();
  }

  // ---- registry credentials ----

  async putRegistryCredential(c: NewRegistryCredential): Promise<{ row: RegistryCredentialRow; replaced: boolean }> {
    return this.#tx(async (t) => {
      const org = await t.selectFrom('organizations').select('id').where('id', '=', c.organization_id).executeTakeFirst();
      if (!org) throw new NotFoundError('organization', c.organization_id);
      const at = now();
      const old = await t
        .selectFrom('registry_credentials')
        .selectAll()
        .where('organization_id', '=', c.organization_id)
        .where('host', '=', c.host)
        .executeTakeFirst();
      if (old) {
        await t
          .updateTable('registry_credentials')
          .set({ username: c.username, secret: c.secret, updated_at: at })
          .where('organization_id', '=', c.organization_id)
          .where('host', '=', c.host)
          .execute();
        return { row: { ...old, username: c.username, secret: c.secret, updated_at: at }, replaced: true };
      }
      const row: RegistryCredentialRow = { ...c, created_at: at, updated_at: at };
      await t.insertInto('registry_credentials').values(row).execute();
      return { row, replaced: false };
    });
  }

  async getRegistryCredential(organizationId: string, host: string): Promise<RegistryCredentialRow | undefined> {
    return this.#db
      .selectFrom('registry_credentials')
      .selectAll()
      .where('organization_id', '=', organizationId)
      .where('host', '=', host)
      .executeTakeFirst();
  }

  async listRegistryCredentials(organizationId: string): Promise<RegistryCredentialRow[]> {
    return this.#db.selectFrom('registry_credentials').selectAll().where('organization_id', '=', organizationId).orderBy('host').execute();
  }

  async deleteRegistryCredential(organizationId: string, host: string): Promise<boolean> {
    const r = await this.#db
      .deleteFrom('registry_credentials')
      .where('organization_id', '=', organizationId)
      .where('host', '=', host)
      .executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  // ---- audit ----

  async addAudit(e: NewAuditEntry): Promise<AuditEntry> {
    const values = { ...e, at: e.at ?? now() };
    const cols = (Object.keys(values) as (keyof typeof values)[]).filter((c) => values[c] !== undefined);
    const r = await this.#first(
      this.#db,
      `addAudit:${cols.join(',')}`,
      (...v: unknown[]) => this.#db.insertInto('audit').values(Object.fromEntries(cols.map((c, i) => [c, v[i]])) as Insertable<DB['audit']>).returning('seq'),
      ...cols.map((c) => values[c]),
    );
    if (r === undefined) throw new OakError('OAK_INTERNAL', 'the audit entry was not stored');
    return { ...values, seq: Number(r.seq) };
  }

  async listAudit(f: AuditFilter = {}): Promise<AuditEntry[]> {
    const limit = Math.max(1, Math.min(AUDIT_PAGE_MAX, Math.floor(f.limit ?? 100)));
    let q = this.#db.selectFrom('audit').selectAll();
    if (f.since !== undefined) q = q.where('at', '>=', f.since);
    if (f.until !== undefined) q = q.where('at', '<', f.until);
    if (f.before !== undefined) q = q.where('seq', '<', f.before);
    if (f.user !== undefined) {
      const user = f.user;
      q = q.where((eb) => eb.or([eb('user_name', '=', user), eb('user_id', '=', user)]));
    }
    if (f.action !== undefined) {
      const pattern = `%${f.action.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      q = q.where(sql<boolean>`lower(action) like ${pattern} escape '\\'`);
    }
    return (await q.orderBy('seq', 'desc').limit(limit).execute()).map(toAudit);
  }

  async pruneAudit(limits: { maxRows?: number; maxAgeSec?: number }): Promise<number> {
    let deleted = 0n;
    if (limits.maxAgeSec !== undefined) {
      const cutoff = new Date(Date.now() - limits.maxAgeSec * 1000).toISOString();
      const r = await this.#db.deleteFrom('audit').where('at', '<', cutoff).executeTakeFirst();
      deleted += r.numDeletedRows;
    }
    if (limits.maxRows !== undefined) {
      const keep = Math.max(0, Math.floor(limits.maxRows));
      const edge = await this.#db.selectFrom('audit').select('seq').orderBy('seq', 'desc').limit(1).offset(keep).executeTakeFirst();
      if (edge) {
        const r = await this.#db.deleteFrom('audit').where('seq', '<=', Number(edge.seq)).executeTakeFirst();
        deleted += r.numDeletedRows;
      }
    }
    return Number(deleted);
  }

  // ---- overlay IPAM ----

  async getIpam(): Promise<IpamRecord> {
    const r = await this.#first(this.#db, 'getIpam', () => this.#db.selectFrom('overlay_ipam').selectAll().where('id', '=', 1));
    return r ? { version: Number(r.version), state: JSON.parse(r.state) as unknown, updated_at: r.updated_at } : { version: 0, state: null, updated_at: '' };
  }

  async updateIpam<T>(fn: (current: IpamRecord) => IpamWrite<T> | Promise<IpamWrite<T>>): Promise<T> {
    return this.#tx(async (t) => {
      const r = await this.#first(t, 'updateIpam:current', () => t.selectFrom('overlay_ipam').selectAll().where('id', '=', 1).$if(this.kind === 'postgres', (q) => q.forUpdate()));
      const cur: IpamRecord = r ? { version: Number(r.version), state: JSON.parse(r.state) as unknown, updated_at: r.updated_at } : { version: 0, state: null, updated_at: '' };
      const w = await fn(cur);
      if (w.state === undefined) return w.result;
      const at = now();
      const text = JSON.stringify(w.state);
      if (r) {
        // the lock makes the version check redundant; it stays as a guard against a writer that skipped it
        const u = await this.#write(
          t,
          'updateIpam:write',
          (st: string, v: number, a: string, was: number) => t.updateTable('overlay_ipam').set({ state: st, version: v, updated_at: a }).where('id', '=', 1).where('version', '=', was),
          text,
          cur.version + 1,
          at,
          cur.version,
        );
        if (u !== 1n) throw new ConflictError('the IPAM state changed under this update', 'try again');
      } else {
        await t.insertInto('overlay_ipam').values({ id: 1, version: 1, state: text, updated_at: at }).execute();
      }
      for (const s of w.services ?? []) {
        const { id, ...cols } = s;
        await t.updateTable('services').set(cols).where('id', '=', id).execute();
      }
      for (const i of w.instances ?? []) {
        await this.#write(
          t,
          'updateIpam:instance',
          (ip: string | null, ip6: string | null, id: string, k: number) => t.updateTable('instances').set({ instance_ip: ip, instance_ip_v6: ip6 }).where('service_id', '=', id).where('instance_number', '=', k),
          i.instance_ip,
          i.instance_ip_v6,
          i.service_id,
          i.instance_number,
        );
      }
      return w.result;
    });
  }

  // ---- leases ----

  /** the database's clock as ISO-8601 text (plus `ms`), as SQL */
  #clock(ms?: number) {
    if (this.kind === 'postgres') {
      const t = ms === undefined ? sql`now()` : sql`(now() + ${ms}::double precision * interval '1 millisecond')`;
      return sql<string>`to_char(${t} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
    }
    return ms === undefined
      ? sql<string>`strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`
      : sql<string>`strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ${`+${ms / 1000} seconds`})`;
  }

  async tryLease(name: string, holder: string, ttlMs: number, info: string | null = null): Promise<LeaseState> {
    if (!Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > 86_400_000) {
      throw new OakError('OAK_BAD_REQUEST', `lease ttl ${ttlMs} ms is not an integer from 1 to 86400000`);
    }
    checkLeaseName(name, holder);
    if (info !== null && (typeof info !== 'string' || Buffer.byteLength(info, 'utf8') > MAX_PAYLOAD_BYTES || info.includes('\u0000'))) {
      throw new OakError('OAK_BAD_REQUEST', `lease info is a text of at most ${MAX_PAYLOAD_BYTES} bytes without NUL`);
    }
    for (let attempt = 0; ; attempt++) {
      // one statement: free, expired or our own lease is taken; anyone else's is left alone
      const took = await sql<{ name: string; holder: string; info: string | null; expires_at: string }>`
        insert into leases (name, holder, info, expires_at) values (${name}, ${holder}, ${info}, ${this.#clock(ttlMs)})
        on conflict (name) do update set holder = excluded.holder, info = excluded.info, expires_at = excluded.expires_at
        where leases.holder = excluded.holder or leases.expires_at <= ${this.#clock()}
        returning name, holder, info, expires_at`.execute(this.#db);
      const mine = took.rows[0];
      if (mine) return { ...mine, held: true };
      const other = await this.#db.selectFrom('leases').selectAll().where('name', '=', name).executeTakeFirst();
      if (other) return { ...other, held: other.holder === holder };
      // released between the two statements: try again
      if (attempt >= 3) throw new ConflictError(`lease ${JSON.stringify(name)} changed hands too often`, 'try again');
    }
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    checkLeaseName(name, holder);
    await this.#db.deleteFrom('leases').where('name', '=', name).where('holder', '=', holder).execute();
  }

  // ---- notifications ----

  async notify(channel: string, payload: string): Promise<void> {
    await this.#notifier.notify(channel, payload);
  }

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    return this.#notifier.listen(channel, onPayload);
  }

  // ---- fleet upgrades (issue 14) ----

  async putFleetArtifact(row: FleetArtifactRow, data: Buffer): Promise<boolean> {
    const r = await this.#db
      .insertInto('fleet_artifacts')
      .values({ ...row, data })
      .onConflict((oc) => oc.column('sha256').doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0n) > 0;
  }

  async listFleetArtifacts(): Promise<FleetArtifactRow[]> {
    return this.#db.selectFrom('fleet_artifacts').select(['sha256', 'program', 'version', 'arch', 'size', 'uploaded_at', 'uploaded_by']).orderBy('uploaded_at', 'desc').execute();
  }

  async getFleetArtifact(sha256: string): Promise<FleetArtifactRow | undefined> {
    return this.#db.selectFrom('fleet_artifacts').select(['sha256', 'program', 'version', 'arch', 'size', 'uploaded_at', 'uploaded_by']).where('sha256', '=', sha256).executeTakeFirst();
  }

  async readFleetArtifact(sha256: string, offset: number, length: number): Promise<Buffer | undefined> {
    // one code path on both backends: the whole value, cut here (artifacts are a few MB)
    const r = await this.#db.selectFrom('fleet_artifacts').select('data').where('sha256', '=', sha256).executeTakeFirst();
    if (!r) return undefined;
    const data = Buffer.isBuffer(r.data) ? r.data : Buffer.from(r.data as Uint8Array);
    return data.subarray(offset, offset + length);
  }

  async deleteFleetArtifact(sha256: string): Promise<boolean> {
    const r = await this.#db.deleteFrom('fleet_artifacts').where('sha256', '=', sha256).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  async putFleetRollout(id: string, status: string, state: string, createdAt: string): Promise<void> {
    const at = now();
    await this.#db
      .insertInto('fleet_rollouts')
      .values({ id, status, state, created_at: createdAt, updated_at: at })
      .onConflict((oc) => oc.column('id').doUpdateSet({ status, state, updated_at: at }))
      .execute();
  }

  async getFleetRollout(id: string): Promise<{ id: string; status: string; state: string } | undefined> {
    return this.#db.selectFrom('fleet_rollouts').select(['id', 'status', 'state']).where('id', '=', id).executeTakeFirst();
  }

  async listFleetRollouts(limit: number): Promise<{ id: string; status: string; state: string }[]> {
    return this.#db.selectFrom('fleet_rollouts').select(['id', 'status', 'state']).orderBy('created_at', 'desc').limit(limit).execute();
  }

  // ---- settings ----

  async getSetting(key: string): Promise<string | undefined> {
    const r = await this.#db.selectFrom('settings').select('value').where('key', '=', key).executeTakeFirst();
    return r?.value;
  }

  async setSettingIfAbsent(key: string, value: string): Promise<string> {
    await this.#db
      .insertInto('settings')
      .values({ key, value, created_at: now() })
      .onConflict((oc) => oc.column('key').doNothing())
      .execute();
    const r = await this.#db.selectFrom('settings').select('value').where('key', '=', key).executeTakeFirstOrThrow();
    return r.value;
  }
}

function checkLeaseName(name: string, holder: string): void {
  for (const [what, v] of [['name', name], ['holder', holder]] as const) {
    if (typeof v !== 'string' || v.length < 1 || v.length > 200 || v.includes('\u0000')) {
      throw new OakError('OAK_BAD_REQUEST', `lease ${what} must be 1-200 characters`);
    }
  }
}

async function insertVersion(t: Kysely<DB>, s: ServiceRow, at: string, createdBy: string | null, reason: string): Promise<void> {
  await t
    .insertInto('service_versions')
    .values({
      service_id: s.id,
      version: s.version,
      sla: JSON.stringify(s.sla),
      fingerprint: serviceFingerprint(s.job_name, s.sla),
      created_at: at,
      created_by: createdBy,
      reason,
      outcome: null,
    })
    .execute();
}

async function count(t: Kysely<DB>, table: 'users' | 'applications', organizationId: string): Promise<number> {
  const r = await t
    .selectFrom(table)
    .select((eb) => eb.fn.countAll().as('n'))
    .where('organization_id', '=', organizationId)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

const appConflict = (name: string, namespace: string): ConflictError =>
  new ConflictError(
    `an application named ${JSON.stringify(name)} in namespace ${JSON.stringify(namespace)} already exists in this organization`,
    'choose another application name or namespace, or update the existing application',
  );

const jobConflict = (jobName: string): ConflictError =>
  new ConflictError(`a service with job name ${JSON.stringify(jobName)} already exists`, 'choose another service name or namespace');
