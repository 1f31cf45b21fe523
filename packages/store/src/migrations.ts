/**
 * One ordered list of migrations for both backends. Each is a list of SQL statements; the only
 * dialect difference is the auto-numbered key of the history table. Applied versions are kept in
 * oak_migrations; migrate() runs in one write transaction (BEGIN IMMEDIATE on SQLite, an advisory
 * lock on PostgreSQL), so two roots starting at once apply each migration exactly once.
 */
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import type { Backend, DB } from './db.ts';
import { quoteIdent } from './db.ts';
import { serviceFingerprint } from './fingerprint.ts';

interface Migration {
  version: number;
  name: string;
  up: (backend: Backend) => string[];
  /** a data step after the statements, in the same transaction (for what SQL alone cannot compute) */
  data?: (db: Kysely<DB>) => Promise<void>;
}

const serialKey = (b: Backend): string =>
  b === 'sqlite' ? 'integer primary key autoincrement' : 'bigint generated always as identity primary key';

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    up: (b) => [
      `create table organizations (
        id text primary key,
        name text not null unique,
        created_at text not null)`,
      `create table users (
        id text primary key,
        name text not null unique,
        email text,
        password_hash text not null,
        roles text not null,
        organization_id text not null references organizations(id),
        created_at text not null)`,
      `create index users_organization on users (organization_id)`,
      `create table applications (
        id text primary key,
        name text not null,
        namespace text not null,
        description text not null,
        user_id text not null references users(id),
        organization_id text not null references organizations(id),
        created_at text not null,
        updated_at text not null,
        unique (organization_id, name, namespace))`,
      `create index applications_user on applications (user_id)`,
      `create table services (
        id text primary key,
        application_id text not null references applications(id) on delete cascade,
        organization_id text not null,
        user_id text not null,
        job_name text not null unique,
        name text not null,
        namespace text not null,
        sla text not null,
        created_at text not null,
        updated_at text not null)`,
      `create index services_application on services (application_id)`,
      `create index services_organization on services (organization_id)`,
      `create table instances (
        service_id text not null references services(id) on delete cascade,
        instance_number integer not null,
        status text not null,
        status_detail text not null,
        cluster_id text,
        worker_id text,
        publicip text,
        instance_ip text,
        created_at text not null,
        updated_at text not null,
        primary key (service_id, instance_number))`,
      `create index instances_cluster on instances (cluster_id)`,
      `create index instances_status on instances (status)`,
      `create table instance_history (
        seq ${serialKey(b)},
        service_id text not null,
        instance_number integer not null,
        status text not null,
        status_detail text not null,
        at text not null,
        foreign key (service_id, instance_number) references instances (service_id, instance_number) on delete cascade)`,
      `create index instance_history_instance on instance_history (service_id, instance_number, seq)`,
      `create table clusters (
        id text primary key,
        name text not null unique,
        location text,
        status text not null,
        last_seen text,
        resources text,
        created_at text not null)`,
      `create table settings (
        key text primary key,
        value text not null,
        created_at text not null)`,
    ],
  },
  {
    version: 2,
    name: 'join tokens',
    up: () => [
      `create table join_tokens (
        id text primary key,
        kind text not null,
        name text,
        cluster text,
        secret_hash text not null,
        created_by text,
        created_at text not null,
        expires_at text,
        revoked_at text,
        last_used_at text,
        uses integer not null default 0)`,
      `create index join_tokens_kind on join_tokens (kind)`,
    ],
  },
  {
    version: 3,
    name: 'accounts and audit',
    up: (b) => [
      // bumped on logout, password change and role change: tokens carrying an older one are dead
      `alter table users add column token_version integer not null default 0`,
      `create table audit (
        seq ${serialKey(b)},
        at text not null,
        user_id text,
        user_name text,
        action text not null,
        method text not null,
        route text not null,
        target text,
        status integer not null,
        error_code text,
        address text)`,
      `create index audit_at on audit (at)`,
      `create index audit_user on audit (user_name, seq)`,
    ],
  },
  {
    version: 4,
    name: 'overlay addresses',
    up: () => [
      // the root's IPAM (one row, id 1, present from the start so that every change can lock it):
      // `state` is the JSON the root keeps (null until the first allocation), `version` + 1 per change
      `create table overlay_ipam (
        id integer primary key,
        version integer not null,
        state text not null,
        updated_at text not null)`,
      `insert into overlay_ipam (id, version, state, updated_at) values (1, 0, 'null', '')`,
      // the service's virtual addresses (a copy of the IPAM's, written in the same transaction)
      `alter table services add column service_ip text`,
      `alter table services add column service_ip_v6 text`,
      `alter table services add column closest_ip text`,
      `alter table services add column closest_ip_v6 text`,
      // instance_ip exists since version 1; its IPv6 twin and the net info the cluster reports (JSON)
      `alter table instances add column instance_ip_v6 text`,
      `alter table instances add column net text`,
    ],
  },
  {
    version: 5,
    name: 'reconciler: versions, desired state, epochs, leases',
    up: () => [
      // the SLA generation and the instance counter (numbers are never reused)
      `alter table services add column version integer not null default 1`,
      `alter table services add column next_instance integer not null default 0`,
      `update services set next_instance = coalesce((select max(i.instance_number) + 1 from instances i where i.service_id = services.id), 0)`,
      `create table service_versions (
        service_id text not null references services(id) on delete cascade,
        version integer not null,
        sla text not null,
        fingerprint text not null,
        created_at text not null,
        created_by text,
        reason text not null,
        outcome text,
        primary key (service_id, version))`,
      // version 1 of every existing service (its fingerprint is filled in by the data step)
      `insert into service_versions (service_id, version, sla, fingerprint, created_at, created_by, reason, outcome)
         select id, 1, sla, '', created_at, user_id, 'created', null from services`,
      `alter table instances add column service_version integer not null default 1`,
      `alter table instances add column desired text not null default 'run'`,
      `alter table instances add column epoch integer not null default 0`,
      `update instances set epoch = 1 where cluster_id is not null`,
      `alter table instances add column replaces integer`,
      `alter table instances add column status_at text not null default ''`,
      `update instances set status_at = updated_at`,
      `alter table instances add column last_cluster_id text`,
      `alter table instances add column lost_at text`,
      `create index instances_desired on instances (desired)`,
      `create table leases (
        name text primary key,
        holder text not null,
        info text,
        expires_at text not null)`,
    ],
    data: async (db) => {
      const rows = await db.selectFrom('services').select(['id', 'job_name', 'sla']).execute();
      for (const r of rows) {
        const fingerprint = serviceFingerprint(r.job_name, JSON.parse(r.sla) as unknown);
        await db.updateTable('service_versions').set({ fingerprint }).where('service_id', '=', r.id).where('version', '=', 1).execute();
      }
    },
  },
  {
    version: 6,
    name: 'instance health and local restarts',
    up: () => [
      // the health probe's verdict as its worker reported it (null: no probe, or not reported yet)
      `alter table instances add column health text`,
      // local restarts of the current copy on its worker
      `alter table instances add column restarts integer not null default 0`,
    ],
  },
  {
    version: 7,
    name: 'registry credentials',
    up: () => [
      // one login per organisation and registry host; `secret` is the AES-256-GCM ciphertext of the
      // password (the root's key, never this table), so a copy of the database alone reveals nothing
      `create table registry_credentials (
        organization_id text not null references organizations(id),
        host text not null,
        username text not null,
        secret text not null,
        created_at text not null,
        created_by text,
        updated_at text not null,
        primary key (organization_id, host))`,
    ],
  },
  {
    version: 8,
    name: 'where removed instances ran (their logs outlive them)',
    up: () => [
      // written by deleteInstance for a row that was placed: the worker keeps its logs for a while
      `create table ended_instances (
        service_id text not null references services(id) on delete cascade,
        instance_number integer not null,
        status text not null,
        status_detail text not null,
        cluster_id text not null,
        worker_id text,
        ended_at text not null,
        removed_at text not null,
        primary key (service_id, instance_number))`,
      `create index ended_instances_removed on ended_instances (removed_at)`,
    ],
  },
  {
    version: 9,
    name: 'fleet upgrades: release artifacts and rollouts (issue 14)',
    up: (b) => [
      // the artifact's bytes live in the store so that every root replica on one database can serve them
      `create table fleet_artifacts (
        sha256 text primary key,
        program text not null,
        version text not null,
        arch text not null,
        size integer not null,
        data ${b === 'sqlite' ? 'blob' : 'bytea'} not null,
        uploaded_at text not null,
        uploaded_by text)`,
      // one row per rollout, its whole state as JSON (written before each step is acted on)
      `create table fleet_rollouts (
        id text primary key,
        status text not null,
        state text not null,
        created_at text not null,
        updated_at text not null)`,
    ],
  },
];

/** Applies the missing migrations; returns the versions it applied. */
export async function migrate(db: Kysely<DB>, backend: Backend, pgSchema: string | undefined): Promise<number[]> {
  return db.connection().execute(async (c) => {
    await sql.raw(backend === 'sqlite' ? 'begin immediate' : 'begin').execute(c);
    try {
      if (backend === 'postgres') {
        await sql`select pg_advisory_xact_lock(hashtext(${`oak:migrate:${pgSchema ?? ''}`}))`.execute(c);
        if (pgSchema !== undefined) {
          await sql.raw(`create schema if not exists ${quoteIdent(pgSchema)}`).execute(c);
          await sql.raw(`set search_path to ${quoteIdent(pgSchema)}`).execute(c);
        }
      }
      await sql
        .raw('create table if not exists oak_migrations (version integer primary key, name text not null, applied_at text not null)')
        .execute(c);
      const done = new Set((await c.selectFrom('oak_migrations').select('version').execute()).map((r) => Number(r.version)));
      const applied: number[] = [];
      for (const m of MIGRATIONS) {
        if (done.has(m.version)) continue;
        for (const stmt of m.up(backend)) await sql.raw(stmt).execute(c);
        await m.data?.(c);
        await c.insertInto('oak_migrations').values({ version: m.version, name: m.name, applied_at: new Date().toISOString() }).execute();
        applied.push(m.version);
      }
      await sql.raw('commit').execute(c);
      return applied;
    } catch (e) {
      await sql.raw('rollback').execute(c).catch(() => undefined);
      throw e;
    }
  });
}
