/** privileged: true only for an Admin: 403 OAK_NOT_ALLOWED with the reason, nothing stored. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ApplicationDoc } from '@oak/contracts';
import { createApp, sla, snapshot, testRoot, type TestRoot } from './helpers.ts';

let t: TestRoot;
let admin = '';
let alice = '';
let app: ApplicationDoc;

before(async () => {
  t = await testRoot();
  admin = await t.login('Admin');
  alice = await t.user('alice', 'orgA', ['Application_Provider']);
  app = await createApp(t, alice, 'plain', ['web']);
});
after(() => t.close());

function refused(r: { statusCode: number; json: () => unknown }, path: string): void {
  assert.equal(r.statusCode, 403);
  const e = (r.json() as { error: { code: string; message: string; path?: string; hint?: string } }).error;
  assert.equal(e.code, 'OAK_NOT_ALLOWED');
  assert.match(e.message, /privileged: true is allowed only for an Admin/);
  assert.equal(e.path, path);
  assert.match(e.hint ?? '', /--allow-privileged/);
}

test('a non-Admin cannot create, add or change a privileged service; nothing changes', async () => {
  const before = await snapshot(t.store);
  refused(await t.req('POST', '/api/application/', alice, sla('priv', ['a', 'b'], { privileged: true })), 'applications[0].microservices[0].privileged');
  const two = sla('priv2', ['a', 'b']);
  ((two.applications as { microservices: Record<string, unknown>[] }[])[0]!.microservices[1]!).privileged = true;
  refused(await t.req('POST', '/api/application/', alice, two), 'applications[0].microservices[1].privileged');
  refused(
    await t.req('POST', '/api/service/', alice, { applicationID: app.applicationID, microservice_name: 'x', microservice_namespace: 'x', virtualization: 'container', code: 'a/b:c', privileged: true }),
    'privileged',
  );
  refused(await t.req('PUT', `/api/service/${app.microservices[0]}`, alice, { privileged: true }), 'privileged');
  refused(
    await t.req('PUT', `/api/application/${app.applicationID}`, alice, {
      microservices: [{ microservice_name: 'web', microservice_namespace: 'test', virtualization: 'container', code: 'a/b:c', privileged: true }],
    }),
    'microservices[0].privileged',
  );
  assert.equal(await snapshot(t.store), before);
  // privileged: false is fine for everyone
  assert.equal((await t.req('PUT', `/api/service/${app.microservices[0]}`, alice, { privileged: false })).statusCode, 200);
});

test('an Admin may write privileged: true (the worker still needs --allow-privileged)', async () => {
  const r = await t.req('POST', '/api/application/', admin, sla('privadmin', ['a'], { privileged: true }));
  assert.equal(r.statusCode, 200, r.body);
  // and a non-Admin of another organisation cannot then edit it into something else: not even visible
  const [doc] = r.json() as ApplicationDoc[];
  const put = await t.req('PUT', `/api/service/${doc!.microservices[0]}`, alice, { cmd: ['sh'] });
  assert.ok(put.statusCode === 403 || put.statusCode === 404, String(put.statusCode));
});
