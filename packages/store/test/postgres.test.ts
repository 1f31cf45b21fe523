/**
 * The same suite against PostgreSQL (CI has it at 127.0.0.1:5432). If the server cannot be
 * reached these tests fail; they never skip.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createStore } from '../src/index.ts';
import { MIGRATIONS } from '../src/migrations.ts';
import type { Store } from '../src/index.ts';
import { storeSuite } from './suite.ts';

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

  it('postgresql:// URLs select PostgreSQL too', async () => {
    const st = await createStore({ databaseUrl: url.replace(/^postgres:/, 'postgresql:'), pgSchema: newSchema() });
    assert.equal(st.kind, 'postgres');
    await st.close();
  });
});
