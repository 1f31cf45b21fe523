/**
 * Migration 6 (issue 10) on both backends: instances of the schema before it read back with
 * health null and restarts 0; health and restarts are then written and read like other fields.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { MIGRATIONS, createStore } from '../src/index.ts';
import type { Store } from '../src/index.ts';

const url = process.env['OAK_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const at = '2025-01-01T00:00:00.000Z';

function schema5(backend: 'sqlite' | 'postgres'): string[] {
  const stmts = [`create table oak_migrations (version integer primary key, name text not null, applied_at text not null)`];
  for (const m of MIGRATIONS.filter((x) => x.version <= 5)) {
    stmts.push(...m.up(backend));
    stmts.push(`insert into oak_migrations (version, name, applied_at) values (${m.version}, '${m.name}', '${at}')`);
  }
  stmts.push(
    `insert into organizations (id, name, created_at) values ('o1', 'org', '${at}')`,
    `insert into users (id, name, email, password_hash, roles, organization_id, created_at) values ('u1', 'user', null, 'h', '[]', 'o1', '${at}')`,
    `insert into applications (id, name, namespace, description, user_id, organization_id, created_at, updated_at) values ('a1', 'app', 'ns', '', 'u1', 'o1', '${at}', '${at}')`,
    `insert into services (id, application_id, organization_id, user_id, job_name, name, namespace, sla, created_at, updated_at, next_instance)
       values ('s1', 'a1', 'o1', 'u1', 'app.ns.web.ns', 'web', 'ns', '{"microservice_name":"web","microservice_namespace":"ns","virtualization":"container","code":"x"}', '${at}', '${at}', 1)`,
    `insert into instances (service_id, instance_number, status, status_detail, cluster_id, worker_id, publicip, instance_ip, created_at, updated_at, epoch, status_at)
       values ('s1', 0, 'RUNNING', '', 'c1', 'w1', null, null, '${at}', '${at}', 1, '${at}')`,
  );
  return stmts;
}

async function check(st: Store): Promise<void> {
  const i = await st.getInstance('s1', 0);
  assert.ok(i);
  assert.deepEqual([i.status, i.health, i.restarts, i.epoch], ['RUNNING', null, 0, 1]);
  const u = await st.updateInstance('s1', 0, { health: 'unhealthy', restarts: 2 });
  assert.deepEqual([u.health, u.restarts], ['unhealthy', 2]);
  const back = await st.getInstance('s1', 0);
  assert.deepEqual([back?.health, back?.restarts, back?.status], ['unhealthy', 2, 'RUNNING']);
  // health and restarts alone write no history row (only status changes do)
  assert.equal((await st.instanceHistory('s1', 0)).length, 0);
  await st.updateInstance('s1', 0, { health: null, restarts: 0 });
  const cleared = await st.getInstance('s1', 0);
  assert.deepEqual([cleared?.health, cleared?.restarts], [null, 0]);
  const fresh = await st.addInstance('s1', 'REQUESTED');
  assert.deepEqual([fresh.health, fresh.restarts], [null, 0]);
  assert.deepEqual([(await st.getInstance('s1', fresh.instance_number))?.health, (await st.getInstance('s1', fresh.instance_number))?.restarts], [null, 0]);
}

describe('migration 6: instance health and restarts', () => {
  it('SQLite: a data dir of version 5 is migrated', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oak-mig6-'));
    try {
      const file = join(dir, 'oak.db');
      const db = new Database(file);
      for (const s of schema5('sqlite')) db.exec(s);
      db.close();
      const st = await createStore({ sqlitePath: file });
      try {
        await check(st);
      } finally {
        await st.close();
      }
      const raw = new Database(file);
      assert.ok(raw.prepare('select version from oak_migrations where version = 6').get(), 'version 6 recorded');
      raw.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const schema = `oak_mig6_${process.pid}_${randomBytes(4).toString('hex')}`;
  after(async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`drop schema if exists "${schema}" cascade`);
    await c.end();
  });

  it('PostgreSQL: a schema of version 5 is migrated', async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query(`create schema "${schema}"`);
      await c.query(`set search_path to "${schema}"`);
      for (const s of schema5('postgres')) await c.query(s);
    } finally {
      await c.end();
    }
    const st = await createStore({ databaseUrl: url, pgSchema: schema });
    try {
      await check(st);
    } finally {
      await st.close();
    }
    const again = await createStore({ databaseUrl: url, pgSchema: schema });
    assert.equal((await again.getInstance('s1', 0))?.restarts, 0);
    await again.close();
  });
});
