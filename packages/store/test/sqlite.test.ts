import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStore } from '../src/index.ts';
import { storeSuite, until } from './suite.ts';

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

  it('notify/listen: stores on the same file in one process hear each other; in-memory stores only themselves', async () => {
    const f2 = join(dir, 'bus.db');
    const [a, b] = [await createStore({ sqlitePath: f2 }), await createStore({ sqlitePath: f2 })];
    const [m1, m2] = [await createStore({ sqlitePath: ':memory:' }), await createStore({ sqlitePath: ':memory:' })];
    try {
      const gotA: string[] = [];
      const gotM2: string[] = [];
      await a.listen('oak_events', (p) => gotA.push(p));
      await m2.listen('oak_events', (p) => gotM2.push(p));
      await b.notify('oak_events', 'from b');
      await a.notify('oak_events', 'from a');
      await m1.notify('oak_events', 'from m1');
      await m2.notify('oak_events', 'from m2');
      await until(() => gotA.length === 2 && gotM2.length === 1);
      assert.deepEqual(gotA, ['from b', 'from a']);
      assert.deepEqual(gotM2, ['from m2']);
      // a closed store's listeners are gone
      await a.close();
      await b.notify('oak_events', 'after close');
      await m2.notify('oak_events', 'flush');
      await until(() => gotM2.length === 2);
      assert.equal(gotA.length, 2);
    } finally {
      await Promise.all([a.close(), b.close(), m1.close(), m2.close()]);
    }
  });
});
