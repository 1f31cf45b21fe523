/**
 * Upgrading a data dir / database to the current schema, on both backends:
 * - from the schema before the overlay (migration 3): the rows written by the old schema are read
 *   with null addresses and no net info, and the IPAM row is there (version 0) to be locked and written;
 * - from the schema before the reconciler (migration 4): every service gets version 1 (its history
 *   row too) and a counter past its highest instance number, instances run version 1, desired
 *   'run', epoch 1 when placed (else 0), status_at = updated_at.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { MIGRATIONS, createStore, serviceFingerprint } from '../src/index.ts';
import type { Store } from '../src/index.ts';

const url = process.env['OAK_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const at = '2025-01-01T00:00:00.000Z';
const later = '2025-01-02T00:00:00.000Z';
const SLA1 = '{"microservice_name":"web","microservice_namespace":"ns","virtualization":"container","code":"x","memory":1,"vcpus":1}';
const SLA2 = '{"vcpus":1,"microservice_name":"db","microservice_namespace":"ns","virtualization":"container","code":"y","memory":2}';

function schemaUpTo(backend: 'sqlite' | 'postgres', old: number): string[] {
  const stmts = [`create table oak_migrations (version integer primary key, name text not null, applied_at text not null)`];
  for (const m of MIGRATIONS.filter((x) => x.version <= old)) {
    stmts.push(...m.up(backend));
    stmts.push(`insert into oak_migrations (version, name, applied_at) values (${m.version}, '${m.name}', '${at}')`);
  }
  return stmts;
}

/**
 * Migration 4 and data: s1 with instances 0 (placed, RUNNING), 2 (placed, CREATING) and 5
 * (REQUESTED, not placed; 1, 3, 4 were deleted), s2 with none.
 */
function schema4(backend: 'sqlite' | 'postgres'): string[] {
  const inst = (n: number, status: string, cluster: string | null) =>
    `insert into instances (service_id, instance_number, status, status_detail, cluster_id, worker_id, publicip, instance_ip, created_at, updated_at, instance_ip_v6, net)
       values ('s1', ${n}, '${status}', 'd${n}', ${cluster === null ? 'null' : `'${cluster}'`}, null, null, '10.30.0.${n + 10}', '${at}', '2025-01-${String(n + 2).padStart(2, '0')}T00:00:00.000Z', null, null)`;
  return [
    ...schemaUpTo(backend, 4),
    `insert into organizations (id, name, created_at) values ('o1', 'org', '${at}')`,
    `insert into users (id, name, email, password_hash, roles, organization_id, created_at) values ('u1', 'user', null, 'h', '[]', 'o1', '${at}')`,
    `insert into applications (id, name, namespace, description, user_id, organization_id, created_at, updated_at) values ('a1', 'app', 'ns', '', 'u1', 'o1', '${at}', '${at}')`,
    `insert into services (id, application_id, organization_id, user_id, job_name, name, namespace, sla, created_at, updated_at, service_ip)
       values ('s1', 'a1', 'o1', 'u1', 'app.ns.web.ns', 'web', 'ns', '${SLA1}', '${at}', '${later}', '10.30.0.1')`,
    `insert into services (id, application_id, organization_id, user_id, job_name, name, namespace, sla, created_at, updated_at)
       values ('s2', 'a1', 'o1', 'u1', 'app.ns.db.ns', 'db', 'ns', '${SLA2}', '${later}', '${later}')`,
    inst(0, 'RUNNING', 'c1'),
    inst(2, 'CREATING', 'c2'),
    inst(5, 'REQUESTED', null),
    `insert into instance_history (service_id, instance_number, status, status_detail, at) values ('s1', 0, 'RUNNING', '', '${at}')`,
  ];
}

async function checkUpgraded4(st: Store): Promise<void> {
  const s1 = await st.getService('s1');
  const s2 = await st.getService('s2');
  assert.ok(s1 && s2);
  assert.deepEqual([s1.version, s1.next_instance, s1.service_ip, s1.updated_at], [1, 6, '10.30.0.1', later]);
  assert.deepEqual([s2.version, s2.next_instance], [1, 0]);
  for (const [sv, sla] of [[s1, SLA1], [s2, SLA2]] as const) {
    assert.deepEqual(await st.listServiceVersions(sv.id), [
      {
        service_id: sv.id, version: 1, sla: JSON.parse(sla) as unknown, fingerprint: serviceFingerprint(sv.job_name, JSON.parse(sla)),
        created_at: sv.created_at, created_by: 'u1', reason: 'created', outcome: null,
      },
    ]);
  }
  const rows = await st.listInstances({ service_id: 's1' });
  assert.deepEqual(
    rows.map((r) => [r.instance_number, r.status, r.cluster_id, r.service_version, r.desired, r.epoch, r.replaces, r.status_at === r.updated_at, r.last_cluster_id, r.lost_at]),
    [
      [0, 'RUNNING', 'c1', 1, 'run', 1, null, true, null, null],
      [2, 'CREATING', 'c2', 1, 'run', 1, null, true, null, null],
      [5, 'REQUESTED', null, 1, 'run', 0, null, true, null, null],
    ],
  );
  assert.equal(rows[1]!.status_at, '2025-01-04T00:00:00.000Z');
  assert.equal(rows[0]!.instance_ip, '10.30.0.10');
  assert.equal((await st.instanceHistory('s1', 0)).length, 1);
  // the counter continues past the highest number, the SLA history continues from version 1
  assert.equal((await st.addInstance('s1', 'REQUESTED')).instance_number, 6);
  assert.equal((await st.addInstance('s2', 'REQUESTED')).instance_number, 0);
  const up = await st.updateService('s2', { sla: { ...s2.sla, memory: 3 } });
  assert.equal(up.version, 2);
  assert.deepEqual((await st.listServiceVersions('s2')).map((v) => [v.version, v.outcome]), [[1, 'superseded'], [2, null]]);
  // the same SLA in another key order is not a new version (the migrated fingerprint matches)
  assert.equal((await st.updateService('s1', { sla: JSON.parse(SLA1.replace('"memory":1,"vcpus":1', '"vcpus":1,"memory":1')) })).version, 1);
  assert.equal((await st.tryLease('reconciler', 'r1', 3000)).held, true);
}

describe('upgrade from the schema before the reconciler (migration 4)', () => {
  it('SQLite: an existing data dir keeps its data with the new defaults', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oak-upgrade4-'));
    try {
      const file = join(dir, 'oak.db');
      const db = new Database(file);
      for (const s of schema4('sqlite')) db.exec(s);
      db.close();
      const st = await createStore({ sqlitePath: file });
      try {
        await checkUpgraded4(st);
      } finally {
        await st.close();
      }
      const again = await createStore({ sqlitePath: file });
      assert.equal((await again.getService('s2'))?.version, 2);
      assert.equal((await again.getService('s1'))?.next_instance, 7);
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const schema = `oak_upgrade4_${process.pid}_${randomBytes(4).toString('hex')}`;
  after(async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`drop schema if exists "${schema}" cascade`);
    await c.end();
  });

  it('PostgreSQL: an existing schema keeps its data with the new defaults', async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query(`create schema "${schema}"`);
      await c.query(`set search_path to "${schema}"`);
      for (const s of schema4('postgres')) await c.query(s);
    } finally {
      await c.end();
    }
    const st = await createStore({ databaseUrl: url, pgSchema: schema });
    try {
      await checkUpgraded4(st);
    } finally {
      await st.close();
    }
    const again = await createStore({ databaseUrl: url, pgSchema: schema });
    assert.equal((await again.getService('s1'))?.next_instance, 7);
    await again.close();
  });
});

const OLD = 3;

/** statements that create the schema of version OLD and one service with one instance */
function oldSchema(backend: 'sqlite' | 'postgres'): string[] {
  const stmts = [`create table oak_migrations (version integer primary key, name text not null, applied_at text not null)`];
  for (const m of MIGRATIONS.filter((x) => x.version <= OLD)) {
    stmts.push(...m.up(backend));
    stmts.push(`insert into oak_migrations (version, name, applied_at) values (${m.version}, '${m.name}', '${at}')`);
  }
  stmts.push(
    `insert into organizations (id, name, created_at) values ('o1', 'org', '${at}')`,
    `insert into users (id, name, email, password_hash, roles, organization_id, created_at) values ('u1', 'user', null, 'h', '[]', 'o1', '${at}')`,
    `insert into applications (id, name, namespace, description, user_id, organization_id, created_at, updated_at) values ('a1', 'app', 'ns', '', 'u1', 'o1', '${at}', '${at}')`,
    `insert into services (id, application_id, organization_id, user_id, job_name, name, namespace, sla, created_at, updated_at)
       values ('s1', 'a1', 'o1', 'u1', 'app.ns.web.ns', 'web', 'ns', '{"microservice_name":"web","microservice_namespace":"ns","virtualization":"container","code":"x","memory":1,"vcpus":1}', '${at}', '${at}')`,
    `insert into instances (service_id, instance_number, status, status_detail, cluster_id, worker_id, publicip, instance_ip, created_at, updated_at)
       values ('s1', 0, 'RUNNING', '', null, 'w1', null, null, '${at}', '${at}')`,
  );
  return stmts;
}

async function checkUpgraded(st: Store): Promise<void> {
  const s = await st.getService('s1');
  assert.ok(s);
  assert.deepEqual([s.service_ip, s.service_ip_v6, s.closest_ip, s.closest_ip_v6], [null, null, null, null]);
  const i = await st.getInstance('s1', 0);
  assert.ok(i);
  assert.equal(i.status, 'RUNNING');
  assert.deepEqual([i.instance_ip, i.instance_ip_v6, i.net], [null, null, null]);
  const ipam = await st.getIpam();
  assert.deepEqual([ipam.version, ipam.state], [0, null]);
  await st.updateIpam(() => ({
    state: { v: 1 },
    services: [{ id: 's1', service_ip: '10.30.0.1', service_ip_v6: 'fdff::1', closest_ip: '10.30.0.2', closest_ip_v6: 'fdff::2' }],
    instances: [{ service_id: 's1', instance_number: 0, instance_ip: '10.30.0.3', instance_ip_v6: 'fdff::3' }],
    result: undefined,
  }));
  assert.equal((await st.getService('s1'))?.service_ip, '10.30.0.1');
  assert.equal((await st.getInstance('s1', 0))?.instance_ip_v6, 'fdff::3');
  assert.deepEqual((await st.getIpam()).state, { v: 1 });
}

describe('upgrade from the schema before the overlay', () => {
  it('SQLite: an existing data dir is migrated and its rows read back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oak-upgrade-'));
    try {
      const file = join(dir, 'oak.db');
      const db = new Database(file);
      for (const s of oldSchema('sqlite')) db.exec(s);
      db.close();
      const st = await createStore({ sqlitePath: file });
      try {
        await checkUpgraded(st);
      } finally {
        await st.close();
      }
      // and it stays upgraded (migrate is idempotent, the data is kept)
      const again = await createStore({ sqlitePath: file });
      assert.deepEqual((await again.getIpam()).state, { v: 1 });
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const schema = `oak_upgrade_${process.pid}_${randomBytes(4).toString('hex')}`;
  after(async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`drop schema if exists "${schema}" cascade`);
    await c.end();
  });

  it('PostgreSQL: an existing schema is migrated and its rows read back', async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query(`create schema "${schema}"`);
      await c.query(`set search_path to "${schema}"`);
      for (const s of oldSchema('postgres')) await c.query(s);
    } finally {
      await c.end();
    }
    const st = await createStore({ databaseUrl: url, pgSchema: schema });
    try {
      await checkUpgraded(st);
    } finally {
      await st.close();
    }
  });
});
