/** Organisation isolation: a user never sees or changes another organisation's applications. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ApplicationDoc, ServiceDoc } from '@oak/contracts';
import { createApp, snapshot, testRoot, type TestRoot } from './helpers.ts';

let t: TestRoot;
let alice = '';
let bob = '';
let carol = '';
let admin = '';
let appA: ApplicationDoc;
let appB: ApplicationDoc;

before(async () => {
  t = await testRoot();
  admin = await t.login('Admin');
  alice = await t.user('alice', 'orgA', ['Application_Provider']);
  carol = await t.user('carol', 'orgA', ['Organization_Admin']);
  bob = await t.user('bob', 'orgB', ['Application_Provider', 'Organization_Admin']);
  appA = await createApp(t, alice, 'appA', ['web']);
  appB = await createApp(t, bob, 'appB', ['web']);
  assert.equal((await t.req('POST', `/api/service/${appA.microservices[0]}/instance`, alice)).statusCode, 200);
});
after(() => t.close());

test('lists only show the own organisation; Admin sees all', async () => {
  const a = (await t.req('GET', '/api/applications/', alice)).json() as ApplicationDoc[];
  assert.deepEqual(a.map((x) => x.application_name), ['appA']);
  const c = (await t.req('GET', '/api/applications/', carol)).json() as ApplicationDoc[];
  assert.deepEqual(c.map((x) => x.application_name), ['appA'], 'same organisation, other user: shared');
  const b = (await t.req('GET', '/api/applications/', bob)).json() as ApplicationDoc[];
  assert.deepEqual(b.map((x) => x.application_name), ['appB']);
  const all = (await t.req('GET', '/api/applications/', admin)).json() as ApplicationDoc[];
  assert.deepEqual(all.map((x) => x.application_name).sort(), ['appA', 'appB']);
  // a non-admin cannot widen the filter
  const orgA = await t.store.getOrganizationByName('orgA');
  const widened = (await t.req('GET', `/api/applications/?organization_id=${orgA?.id}`, bob)).json() as ApplicationDoc[];
  assert.deepEqual(widened.map((x) => x.application_name), ['appB']);
  const users = (await t.req('GET', '/api/users/', bob)).json() as { name: string }[];
  assert.deepEqual(users.map((u) => u.name), ['bob']);
});

test('bob (org B, even as its Organization_Admin) can neither see nor change anything of org A', async () => {
  const before = await snapshot(t.store);
  const sid = appA.microservices[0]!;
  const attempts: [string, string, unknown?][] = [
    ['GET', `/api/application/${appA.applicationID}`],
    ['PUT', `/api/application/${appA.applicationID}`, { application_desc: 'pwned' }],
    ['DELETE', `/api/application/${appA.applicationID}`],
    ['GET', `/api/services/${appA.applicationID}`],
    ['GET', `/api/service/${sid}`],
    ['PUT', `/api/service/${sid}`, { memory: 1 }],
    ['DELETE', `/api/service/${sid}`],
    ['POST', `/api/service/${sid}/instance`],
    ['DELETE', `/api/service/${sid}/instance/0`],
    ['GET', `/api/service/${sid}/instance/0/logs`],
    ['POST', '/api/service/', { applicationID: appA.applicationID, microservice_name: 'x', microservice_namespace: 'x', virtualization: 'container', code: 'a/b:c' }],
    ['GET', '/api/user/alice'],
    ['PUT', '/api/user/alice', { roles: ['Organization_Admin'] }],
    ['PUT', '/api/user/alice/password', { password: 'taken-over-1' }],
    ['DELETE', '/api/user/alice'],
    ['POST', '/api/user/', { name: 'mole', password: 'password-123', organization: 'orgA' }],
  ];
  for (const [method, url, body] of attempts) {
    const r = await t.req(method as 'GET', url, bob, body);
    // users of another organisation are "not found" for an Organization_Admin, exactly like
    // missing ones, so the answer does not tell which user names exist
    const expected = /^\/api\/user\/alice/.test(url) ? 404 : 403;
    assert.equal(r.statusCode, expected, `${method} ${url}: ${r.body}`);
    if (expected === 404) {
      const missing = await t.req(method as 'GET', url.replace('alice', 'nobody-here'), bob, body);
      assert.equal(missing.statusCode, 404);
      assert.equal(missing.body, r.body.replaceAll('alice', 'nobody-here'), 'the same answer as for a missing user');
    }
    assert.doesNotMatch(r.body, /appA|web\.test/, 'nothing of org A leaks into the error');
  }
  // SLA-shaped service request naming org A's application by name finds nothing in org B
  const byName = await t.req('POST', '/api/service/', bob, { applications: [{ application_name: 'appA', application_namespace: 'test', microservices: [{ microservice_name: 'x', microservice_namespace: 'x', virtualization: 'container', code: 'a/b:c' }] }] });
  assert.equal(byName.statusCode, 404);
  assert.equal(await snapshot(t.store), before);
});

test('the same application name may exist in two organisations only if its job names differ', async () => {
  // job names (<app>.<appns>.<svc>.<svcns>) and the overlay DNS names are global (Oakestra naming)
  const r = await t.req('POST', '/api/application/', bob, {
    sla_version: 'v2.0',
    customerID: 'bob',
    applications: [{ application_name: 'appA', application_namespace: 'test', microservices: [{ microservice_name: 'web', microservice_namespace: 'test', virtualization: 'container', code: 'a/b:c' }] }],
  });
  assert.equal(r.statusCode, 409, r.body);
  const err = (r.json() as { error: { message: string; hint?: string } }).error;
  assert.doesNotMatch(err.message + (err.hint ?? ''), /orgA|alice/);
  const ok = await t.req('POST', '/api/application/', bob, {
    sla_version: 'v2.0',
    customerID: 'bob',
    applications: [{ application_name: 'appA', application_namespace: 'bobs', microservices: [{ microservice_name: 'web', microservice_namespace: 'test', virtualization: 'container', code: 'a/b:c' }] }],
  });
  assert.equal(ok.statusCode, 200, ok.body);
});

test('Admin may read and change every organisation\'s applications', async () => {
  assert.equal((await t.req('GET', `/api/application/${appB.applicationID}`, admin)).statusCode, 200);
  const svc = (await t.req('GET', `/api/service/${appA.microservices[0]}`, admin)).json() as ServiceDoc;
  assert.equal(svc.instance_list.length, 1);
  const put = await t.req('PUT', `/api/application/${appB.applicationID}`, admin, { application_desc: 'by admin' });
  assert.equal(put.statusCode, 200);
});
