/**
 * Table shapes as kysely sees them, and the two ways to open a connection. Times are ISO-8601
 * strings and JSON fields are text on both backends, so values round-trip byte for byte.
 */
import { CompiledQuery, Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import type { Generated } from 'kysely';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export interface DB {
  oak_migrations: { version: number; name: string; applied_at: string };
  organizations: { id: string; name: string; created_at: string };
  users: {
    id: string;
    name: string;
    email: string | null;
    password_hash: string;
    roles: string;
    organization_id: string;
    created_at: string;
    token_version: Generated<number>;
  };
  applications: {
    id: string;
    name: string;
    namespace: string;
    description: string;
    user_id: string;
    organization_id: string;
    created_at: string;
    updated_at: string;
  };
  services: {
    id: string;
    application_id: string;
    organization_id: string;
    user_id: string;
    job_name: string;
    name: string;
    namespace: string;
    sla: string;
    created_at: string;
    updated_at: string;
    service_ip: string | null;
    service_ip_v6: string | null;
    closest_ip: string | null;
    closest_ip_v6: string | null;
    version: number;
    next_instance: number;
  };
  service_versions: {
    service_id: string;
    version: number;
    sla: string;
    fingerprint: string;
    created_at: string;
    created_by: string | null;
    reason: string;
    outcome: string | null;
  };
  leases: { name: string; holder: string; info: string | null; expires_at: string };
  ended_instances: {
    service_id: string;
    instance_number: number;
    status: string;
    status_detail: string;
    cluster_id: string;
    worker_id: string | null;
    ended_at: string;
    removed_at: string;
  };
  instances: {
    service_id: string;
    instance_number: number;
    status: string;
    status_detail: string;
    cluster_id: string | null;
    worker_id: string | null;
    publicip: string | null;
    instance_ip: string | null;
    created_at: string;
    updated_at: string;
    instance_ip_v6: string | null;
    net: string | null;
    service_version: number;
    desired: string;
    epoch: number;
    replaces: number | null;
    status_at: string;
    last_cluster_id: string | null;
    lost_at: string | null;
    health: string | null;
    restarts: number;
  };
  instance_history: {
    seq: Generated<number>;
    service_id: string;
    instance_number: number;
    status: string;
    status_detail: string;
    at: string;
  };
  clusters: {
    id: string;
    name: string;
    location: string | null;
    status: string;
    last_seen: string | null;
    resources: string | null;
    created_at: string;
  };
  settings: { key: string; value: string; created_at: string };
  fleet_artifacts: { sha256: string; program: string; version: string; arch: string; size: number; data: Buffer; uploaded_at: string; uploaded_by: string | null };
  fleet_rollouts: { id: string; status: string; state: string; created_at: string; updated_at: string };
  overlay_ipam: { id: number; version: number; state: string; updated_at: string };
  join_tokens: {
    id: string;
    kind: string;
    name: string | null;
    cluster: string | null;
    secret_hash: string;
    created_by: string | null;
    created_at: string;
    expires_at: string | null;
    revoked_at: string | null;
    last_used_at: string | null;
    uses: Generated<number>;
  };
  registry_credentials: {
    organization_id: string;
    host: string;
    username: string;
    secret: string;
    created_at: string;
    created_by: string | null;
    updated_at: string;
  };
  audit: {
    seq: Generated<number>;
    at: string;
    user_id: string | null;
    user_name: string | null;
    action: string;
    method: string;
    route: string;
    target: string | null;
    status: number;
    error_code: string | null;
    address: string | null;
  };
}

export type Backend = 'sqlite' | 'postgres';

export function isPostgresUrl(url: string | undefined): url is string {
  return url !== undefined && /^postgres(ql)?:\/\//i.test(url);
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** SQLite through better-sqlite3 (loaded only when used): WAL, foreign keys, busy timeout. */
export async function openSqlite(path: string): Promise<Kysely<DB>> {
  const { default: Database } = await import('better-sqlite3');
  const inMemory = path === ':memory:' || path === '';
  if (!inMemory) mkdirSync(dirname(resolve(path)), { recursive: true });
  const database = new Database(inMemory ? ':memory:' : path);
  database.pragma('busy_timeout = 5000');
  database.pragma('foreign_keys = ON');
  if (!inMemory) {
    database.pragma('journal_mode = WAL');
    database.pragma('synchronous = NORMAL');
  }
  cachePreparedStatements(database);
  return new Kysely<DB>({ dialect: new SqliteDialect({ database }) });
}

/** statements kept per SQLite database (the store's queries are a few dozen distinct texts) */
export const STATEMENT_CACHE_SIZE = 256;

/**
 * Kysely's SQLite driver prepares every query anew; preparing costs more than running the small
 * queries of the store (10 % of the root's CPU in 100 concurrent deploys, bench failover). The
 * prepared statement is reused for the same SQL text unless it is busy (an unfinished iterate());
 * SQLite re-prepares a statement by itself after a schema change.
 */
export function cachePreparedStatements(database: { prepare: (sql: string) => { busy: boolean } }): void {
  const prepare = database.prepare.bind(database);
  const cache = new Map<string, { busy: boolean }>();
  database.prepare = (sql: string) => {
    const hit = cache.get(sql);
    if (hit !== undefined && !hit.busy) return hit;
    const st = prepare(sql);
    if (hit === undefined) {
      if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
      cache.set(sql, st);
    }
    return st;
  };
}

/**
 * PostgreSQL through a pg pool (loaded only when used). With a schema, every pooled connection
 * gets it as its search_path; migrate() creates it.
 */
export async function openPostgres(url: string, schema: string | undefined): Promise<Kysely<DB>> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // An idle client losing its server must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  const setPath = schema === undefined ? undefined : CompiledQuery.raw(`set search_path to ${quoteIdent(schema)}`);
  return new Kysely<DB>({
    dialect: new PostgresDialect({
      pool,
      ...(setPath === undefined ? {} : { onCreateConnection: async (conn) => void (await conn.executeQuery(setPath)) }),
    }),
  });
}
