import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStore } from '../src/index.ts';
import { storeSuite } from './suite.ts';

const dir = mkdtempSync(join(tmpdir(), 'oak-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// a nested path: createStore makes the parent folders
const file = join(dir, 'data', 'nested', 'oak.db');
storeSuite({ kind: 'sqlite', open: () => createStore({ sqlitePath: file }) });

describe('SQLite specifics', () => {
  it('uses WAL in a file and works in memory', async () => {
    assert.ok(existsSync(file));
    const m = await createStore({ sqlitePath: ':memory:' });
    assert.equal(m.kind, 'sqlite');
    const o = await m.createOrganization('root');
    assert.deepEqual(await m.getOrganizationByName('root'), o);
    await m.close();
    // without a postgres URL, SQLite is chosen even when databaseUrl is set to something else
    const d = await createStore({ databaseUrl: '', sqlitePath: ':memory:' });
    assert.equal(d.kind, 'sqlite');
    await d.close();
  });
});
