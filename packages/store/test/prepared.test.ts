/**
 * prepared.ts: a shape is compiled once and each call binds its own values; values that are part
 * of the shape stay; an argument that changes the SQL text, or one left unused, is refused.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { openSqlite } from '../src/db.ts';
import { PreparedQueries } from '../src/prepared.ts';

describe('prepared queries', () => {
  test('one compile per key; each call binds its values; constants of the shape stay', async () => {
    const db = await openSqlite(':memory:');
    await sql`create table settings (key text primary key, value text not null, created_at text not null)`.execute(db);
    const p = new PreparedQueries();
    let builds = 0;
    const insert = (k: string, v: string) => {
      builds++;
      return db.insertInto('settings').values({ key: k, value: v, created_at: 'const' });
    };
    for (const [k, v] of [['a', '1'], ['b', '2'], ['c', '3']] as const) await db.executeQuery(p.bind('insert', insert, [k, v]));
    assert.equal(builds, 1);
    const q = p.bind('select', (k: string) => db.selectFrom('settings').selectAll().where('key', '=', k), ['b']);
    assert.deepEqual(q.parameters, ['b']);
    assert.deepEqual((await db.executeQuery(q)).rows, [{ key: 'b', value: '2', created_at: 'const' }]);
    const again = p.bind('select', (k: string) => db.selectFrom('settings').selectAll().where('key', '=', k), ['c']);
    assert.equal(again.sql, q.sql);
    assert.notEqual(again.queryId, q.queryId);
    assert.deepEqual((await db.executeQuery(again)).rows, [{ key: 'c', value: '3', created_at: 'const' }]);
    // an argument used twice, numbers too
    const twice = p.bind('twice', (k: string, n: number) => db.selectFrom('settings').select('key').where((eb) => eb.or([eb('key', '=', k), eb('value', '=', k)])).limit(n), ['1', 5]);
    assert.deepEqual(twice.parameters, ['1', '1', 5]);
    assert.deepEqual((await db.executeQuery(twice)).rows, [{ key: 'a' }]);
    assert.equal(p.size, 3);
    await db.destroy();
  });

  test('an unused argument or one that ends up in the SQL text is a programming error', async () => {
    const db = await openSqlite(':memory:');
    const p = new PreparedQueries();
    assert.throws(() => p.bind('unused', (_k: string) => db.selectFrom('settings').selectAll(), ['x']), /uses 0 of its 1 arguments/);
    assert.throws(() => p.bind('inlined', (k: string) => db.selectFrom('settings').selectAll().where(sql.raw<boolean>(`key = '${k}'`)), ['x']), /ended up in the SQL text/);
    assert.equal(p.size, 0);
    await db.destroy();
  });

  test('at most `max` shapes are kept (the oldest goes)', async () => {
    const db = await openSqlite(':memory:');
    const p = new PreparedQueries(2);
    for (const k of ['a', 'b', 'c']) p.bind(k, (v: string) => db.selectFrom('settings').selectAll().where('key', '=', v), [k]);
    assert.equal(p.size, 2);
    await db.destroy();
  });
});
