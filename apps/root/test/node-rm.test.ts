/**
 * DELETE /api/cluster/{id}/node/{nodeId} (oak node rm): roles, bad input, unknown and unconnected
 * clusters; and, with a real link and cluster, removal and token revocation disconnecting workers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '@oak/bus';
import { startCluster } from '@oak/cluster';
import { createStore } from '@oak/store';
import { waitFor } from '@oak/testkit';
import { startFakeWorker } from '../../cluster/test/harness.ts';
import { linkControl } from '../src/link/index.ts';
import type { LinkControlPlane } from '../src/link/index.ts';
import { startRoot } from '../src/server.ts';
import { testRoot, type TestRoot } from './helpers.ts';
import { clusterJoinToken, workerJoinToken } from './join.ts';

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

describe('removal and token revocation reach the cluster over the link', () => {
  test('oak node rm and oak token revoke disconnect the worker at once; the cluster forgets it', { timeout: 60_000 }, async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    const root = await startRoot({
      host: '127.0.0.1',
      port: 0,
      store,
      adminPassword: 'admin-secret-1',
      logLevel: 'silent',
      announce: () => {},
      control: linkControl({ host: '127.0.0.1', port: 0, pingIntervalMs: 200, pingTimeoutMs: 2000 }),
    });
    const control = root.ctx.control as LinkControlPlane;
    const cluster = await startCluster({
      name: 'east', host: '127.0.0.1', port: 0, mqttPort: 0, reportIntervalMs: 200, log: silentLogger, linkMaxBackoffMs: 300,
      root: { address: control.link.address, token: await clusterJoinToken(root.ctx, 'east') },
    });
    try {
      const login = await fetch(`${root.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'Admin', password: 'admin-secret-1' }) });
      const { token: bearer } = (await login.json()) as { token: string };
      const api = (method: string, path: string): Promise<Response> => fetch(`${root.url}${path}`, { method, headers: { authorization: `Bearer ${bearer}` } });

      const t1 = await workerJoinToken(root.ctx, 'east');
      const a = await startFakeWorker(cluster.registrationUrl, 'a', { token: t1.token });
      const t2 = await workerJoinToken(root.ctx, 'east');
      const b = await startFakeWorker(cluster.registrationUrl, 'b', { token: t2.token });
      const c = await startFakeWorker(cluster.registrationUrl, 'c', { token: t2.token });
      try {
        assert.deepEqual(new Set(cluster.credentials().values()), new Set([t1.id, t2.id]));
        const rm = await api('DELETE', `/api/cluster/east/node/${a.id}`);
        assert.equal(rm.status, 200);
        await waitFor(() => !a.bus.connected || undefined, { timeoutMs: 5000, message: 'a disconnected by oak node rm' });
        assert.equal(cluster.credentials().has(a.id), false);

        // revoking t2 removes every worker that joined with it, at once, and keeps them out
        const rv = await api('DELETE', `/api/tokens/${t2.id}`);
        assert.equal(rv.status, 200);
        await waitFor(() => (!b.bus.connected && !c.bus.connected) || undefined, { timeoutMs: 5000, message: 'b and c disconnected by the revocation' });
        await new Promise((r) => setTimeout(r, 1000));
        assert.equal(b.bus.connected || c.bus.connected, false, 'their re-registrations are refused');
        assert.equal(cluster.credentials().has(b.id) || cluster.credentials().has(c.id), false);
        assert.equal(cluster.core.workers.has(b.id) || cluster.core.workers.has(c.id), false);
      } finally {
        for (const w of [a, b, c]) await w.close();
      }
    } finally {
      await cluster.close();
      await root.close();
      await store.close();
    }
  });
});
