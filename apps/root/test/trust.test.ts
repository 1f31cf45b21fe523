/** Where the root CA lives: <data dir>/tls for a SQLite root, the store for roots sharing PostgreSQL. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { caFingerprint } from '@oak/trust';
import { startRoot } from '../src/server.ts';
import { ROOT_CA_SETTING, rootTrust } from '../src/trust.ts';

const url = process.env['OAK_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const quiet = { host: '127.0.0.1', port: 0, logLevel: 'silent', adminPassword: 'admin-secret-1', announce: () => {} } as const;

test('SQLite root: the CA is created once in <data dir>/tls (0700, files 0600) and kept across restarts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'oak-root-ca-'));
  try {
    const a = await startRoot({ ...quiet, dataDir: dir });
    const hashA = (await rootTrust(a.ctx)).caHash;
    await a.close();
    assert.equal(statSync(join(dir, 'tls')).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, 'tls', 'ca.key')).mode & 0o777, 0o600);
    const b = await startRoot({ ...quiet, dataDir: dir });
    try {
      assert.equal((await rootTrust(b.ctx)).caHash, hashA);
      assert.equal(await b.ctx.store.getSetting(ROOT_CA_SETTING), undefined, 'not in the database');
    } finally {
      await b.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('PostgreSQL roots: two replicas starting at once share one CA from the store', async () => {
  const schema = `oak_test_ca_${process.pid}_${randomBytes(4).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'oak-root-ca-pg-'));
  try {
    const [a, b] = await Promise.all([startRoot({ ...quiet, databaseUrl: url, pgSchema: schema, dataDir: dir }), startRoot({ ...quiet, databaseUrl: url, pgSchema: schema, dataDir: dir })]);
    try {
      const [ta, tb] = [await rootTrust(a.ctx), await rootTrust(b.ctx)];
      assert.equal(ta.caHash, tb.caHash);
      assert.ok(ta.mqttKey.equals(tb.mqttKey));
      const stored = JSON.parse((await a.ctx.store.getSetting(ROOT_CA_SETTING)) ?? '{}') as { certPem: string };
      assert.equal(caFingerprint(stored.certPem), ta.caHash);
      assert.ok(!existsSync(join(dir, 'tls')), 'no CA files for a PostgreSQL root');
    } finally {
      await a.close();
      await b.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`drop schema if exists "${schema}" cascade`);
    await c.end();
  }
});
