/**
 * The same suite against PostgreSQL (CI has it at 127.0.0.1:5432). If the server cannot be
 * reached these tests fail; they never skip.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { MIGRATIONS, createStore } from '../src/index.ts';
import type { Store } from '../src/index.ts';
import { storeSuite, until } from './suite.ts';

const url = process.env['OAK_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const schemas: string[] = [];
const newSchema = (): string => {
  const name = `oak_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  schemas.push(name);
  return name;
};

async function dropSchemas(): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const name of schemas) await client.query(`drop schema if exists "${name}" cascade`);
  } finally {
    await client.end();
  }
}

const schema = newSchema();
storeSuite({ kind: 'postgres', open: () => createStore({ databaseUrl: url, pgSchema: schema }), cleanup: dropSchemas });

describe('PostgreSQL specifics', () => {
  after(dropSchemas);

  it('replicas starting at once on a fresh schema migrate it exactly once', async () => {
    const fresh = newSchema();
    const stores: Store[] = await Promise.all(Array.from({ length: 4 }, () => createStore({ databaseUrl: url, pgSchema: fresh })));
    try {
      const org = await stores[0]!.createOrganization('root');
      for (const st of stores) assert.deepEqual(await st.getOrganizationByName('root'), org);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const r = await client.query<{ version: number }>(`select version from "${fresh}".oak_migrations order by version`);
        assert.deepEqual(r.rows.map((x) => x.version), MIGRATIONS.map((m) => m.version));
      } finally {
        await client.end();
      }
    } finally {
      await Promise.all(stores.map((st) => st.close()));
    }
  });

  it('two stores on one schema race for a lease: exactly one holds it; renewal, expiry by the database clock, release', async () => {
    const sch = newSchema();
    const [a, b] = await Promise.all([createStore({ databaseUrl: url, pgSchema: sch }), createStore({ databaseUrl: url, pgSchema: sch })]);
    try {
      for (let round = 0; round < 5; round++) {
        const name = `race${round}`;
        const tries = await Promise.all(
          Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? a : b).tryLease(name, `root-${i}`, 60_000, JSON.stringify({ i }))),
        );
        const winners = tries.filter((t) => t.held);
        assert.equal(winners.length, 1, 'exactly one holder');
        const w = winners[0]!;
        for (const t of tries) assert.deepEqual([t.holder, t.info, t.expires_at], [w.holder, w.info, w.expires_at]);
      }
      // the holder renews (from the other store object too: the holder is a name, not a connection)
      const first = await a.tryLease('reconciler', 'root-a', 400, 'a');
      assert.equal(first.held, true);
      const renewed = await b.tryLease('reconciler', 'root-a', 400, 'a2');
      assert.deepEqual([renewed.held, renewed.info], [true, 'a2']);
      assert.equal((await b.tryLease('reconciler', 'root-b', 400)).held, false);
      // root-a stops renewing: after the ttl root-b takes it (polled, bounded)
      let taken = await b.tryLease('reconciler', 'root-b', 60_000, 'b');
      const end = Date.now() + 5000;
      while (!taken.held && Date.now() < end) {
        assert.equal(taken.holder, 'root-a');
        await new Promise((r) => setTimeout(r, 25));
        taken = await b.tryLease('reconciler', 'root-b', 60_000, 'b');
      }
      assert.deepEqual([taken.held, taken.holder, taken.info], [true, 'root-b', 'b']);
      assert.equal((await a.tryLease('reconciler', 'root-a', 60_000)).held, false);
      // release gives it up at once
      await b.releaseLease('reconciler', 'root-b');
      const now = await a.tryLease('reconciler', 'root-a', 60_000);
      assert.deepEqual([now.held, now.holder], [true, 'root-a']);
      // expires_at is the database's clock + ttl
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const r = await c.query<{ d: number }>(`select extract(epoch from ($1::timestamptz - now())) * 1000 as d`, [now.expires_at]);
        const d = Number(r.rows[0]!.d);
        assert.ok(d > 50_000 && d <= 60_000, `expires in ${d} ms`);
      } finally {
        await c.end();
      }
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('notify/listen across two stores: each listener gets both stores\' payloads, its own included; other schemas hear nothing', async () => {
    const sch = newSchema();
    const [a, b] = await Promise.all([createStore({ databaseUrl: url, pgSchema: sch }), createStore({ databaseUrl: url, pgSchema: sch })]);
    const elsewhere = await createStore({ databaseUrl: url, pgSchema: newSchema() });
    try {
      const gotA: string[] = [];
      const gotB: string[] = [];
      const gotElsewhere: string[] = [];
      await a.listen('oak_events', (p) => gotA.push(p));
      await b.listen('oak_events', (p) => gotB.push(p));
      await elsewhere.listen('oak_events', (p) => gotElsewhere.push(p));
      await a.notify('oak_events', 'from a');
      await b.notify('oak_events', 'from b');
      await a.notify('oak_events', 'é'.repeat(3500));
      await until(() => gotA.length === 3 && gotB.length === 3);
      assert.deepEqual(gotA, ['from a', 'from b', 'é'.repeat(3500)]);
      assert.deepEqual(gotB, gotA);
      // a marker on the other schema arrives there: the earlier ones, sent before it, did not
      await elsewhere.notify('oak_events', 'marker');
      await until(() => gotElsewhere.length === 1);
      assert.deepEqual(gotElsewhere, ['marker']);
      assert.equal(gotA.length, 3);
      await assert.rejects(a.notify('oak_events', 'x'.repeat(7001)), (e: unknown) => (e as { code?: string }).code === 'OAK_BAD_REQUEST');
      await assert.rejects(a.notify('Bad-Channel', 'x'), (e: unknown) => (e as { code?: string }).code === 'OAK_BAD_REQUEST');
    } finally {
      await Promise.all([a.close(), b.close(), elsewhere.close()]);
    }
  });

  it('the listen connection reconnects after it is killed and listens again; close() ends it', async () => {
    const sch = newSchema();
    const a = await createStore({ databaseUrl: url, pgSchema: sch });
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const appName = `oak listen ${sch}`;
    const listeners = async (): Promise<number[]> =>
      (await c.query<{ pid: number }>(`select pid from pg_stat_activity where application_name = $1`, [appName])).rows.map((r) => r.pid);
    try {
      const got: string[] = [];
      await a.listen('oak_reconcile', (p) => got.push(p));
      const [pid] = await listeners();
      assert.ok(pid !== undefined, 'one listen connection');
      await c.query('select pg_terminate_backend($1)', [pid]);
      // resend until the new connection hears it (notifications sent while it is down are lost)
      const end = Date.now() + 10_000;
      let k = 0;
      while (got.length === 0 && Date.now() < end) {
        await a.notify('oak_reconcile', `svc${k++}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(got.length > 0, 'heard after the reconnect');
      const now = await listeners();
      assert.equal(now.length, 1);
      assert.notEqual(now[0], pid);
      await a.close();
      const gone = Date.now() + 5000;
      while ((await listeners()).length > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 25));
      assert.deepEqual(await listeners(), [], 'close() ends the listen connection');
      await assert.rejects(a.listen('oak_reconcile', () => undefined), /closed/);
      assert.deepEqual(await listeners(), [], 'no listen connection after close');
    } finally {
      await a.close().catch(() => undefined);
      await c.end();
    }
  });

  it('postgresql:// URLs select PostgreSQL too', async () => {
    const st = await createStore({ databaseUrl: url.replace(/^postgres:/, 'postgresql:'), pgSchema: newSchema() });
    assert.equal(st.kind, 'postgres');
    await st.close();
  });
});
