/** DELETE /api/cluster/{id}/node/{nodeId} (oak node rm): roles, bad input, unknown and unconnected clusters. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { testRoot, type TestRoot } from './helpers.ts';

describe('removing a worker', () => {
  let t: TestRoot;
  let admin: string;
  let infra: string;
  let appProvider: string;
  const sent: { cluster: string; ids: string[] }[] = [];
  let connected = true;
  let clusterId = '';

  before(async () => {
    t = await testRoot();
    t.ctx.removeWorkers = (cluster, ids) => {
      if (!connected) return false;
      sent.push({ cluster, ids });
      return true;
    };
    admin = await t.login('Admin');
    infra = await t.user('infra', 'ops', ['Infrastructure_Provider']);
    appProvider = await t.user('dev', 'apps', ['Application_Provider']);
    clusterId = (await t.store.upsertCluster('east', null)).id;
  });
  after(() => t.close());

  test('Admin and Infrastructure_Provider remove a worker of a connected cluster (by cluster id or name)', async () => {
    const r = await t.req('DELETE', `/api/cluster/${clusterId}/node/w-1`, admin);
    assert.equal(r.statusCode, 200, r.body);
    assert.deepEqual(r.json(), { cluster_id: clusterId, cluster_name: 'east', node_id: 'w-1', removed: true });
    const byName = await t.req('DELETE', '/api/cluster/east/node/w-2', infra);
    assert.equal(byName.statusCode, 200, byName.body);
    assert.deepEqual(sent, [{ cluster: clusterId, ids: ['w-1'] }, { cluster: clusterId, ids: ['w-2'] }]);
  });

  test('other roles and anonymous callers are refused; nothing is sent', async () => {
    const before = sent.length;
    assert.equal((await t.req('DELETE', `/api/cluster/${clusterId}/node/w-1`, appProvider)).statusCode, 403);
    assert.equal((await t.req('DELETE', `/api/cluster/${clusterId}/node/w-1`)).statusCode, 401);
    assert.equal(sent.length, before);
  });

  test('an unknown cluster: 404; a bad worker id: 400; an unconnected cluster: 503 with a hint; nothing is sent', async () => {
    const before = sent.length;
    const nf = await t.req('DELETE', '/api/cluster/nowhere/node/w-1', admin);
    assert.equal(nf.statusCode, 404);
    for (const bad of ['a%2Fb', 'a%20b', '%23', 'x'.repeat(201)]) {
      const r = await t.req('DELETE', `/api/cluster/${clusterId}/node/${bad}`, admin);
      assert.ok([400, 414, 422].includes(r.statusCode), `${bad}: ${r.statusCode}`);
    }
    connected = false;
    const off = await t.req('DELETE', `/api/cluster/${clusterId}/node/w-1`, admin);
    connected = true;
    assert.equal(off.statusCode, 503);
    const e = (off.json() as { error: { code: string; hint?: string } }).error;
    assert.equal(e.code, 'OAK_UNAVAILABLE');
    assert.match(e.hint ?? '', /oak token revoke/);
    assert.equal(sent.length, before);
  });
});
