/**
 * Oakestra's root API paths (issue 12, point 1): an Oakestra client's requests, replayed against
 * a real root app (fastify inject, SQLite store): paths, bodies, answer shapes and status codes,
 * inside our organisation isolation and roles, with hostile inputs.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ApplicationDoc, ServiceDoc, TokenPair, UserDoc } from '@oak/contracts';
import { SELF_REGISTRATIONS_PER_HOUR } from '../src/plugins/oakestra.ts';
import { configFromArgs } from '../src/main.ts';
import { ADMIN_PASSWORD, PASSWORD, createApp, testRoot, type TestRoot } from './helpers.ts';

const code = (r: { json(): unknown }): string => (r.json() as { error: { code: string } }).error.code;

describe('Oakestra API paths', () => {
  let t: TestRoot;
  let admin: string;
  let alice: string;
  let orgAdmin: string;
  let bob: string;
  before(async () => {
    t = await testRoot();
    admin = await t.login('Admin', ADMIN_PASSWORD);
    alice = await t.user('alice', 'org-a', ['Application_Provider']);
    orgAdmin = await t.user('oscar', 'org-a', ['Organization_Admin']);
    bob = await t.user('bob', 'org-b', ['Application_Provider']);
  });
  after(() => t.close());

  test('GET /api/permission/<username>: your own roles; another user is refused (Admin: anyone)', async () => {
    const own = await t.req('GET', '/api/permission/alice', alice);
    assert.equal(own.statusCode, 200);
    assert.deepEqual(own.json(), { roles: ['Application_Provider'] });
    const other = await t.req('GET', '/api/permission/bob', alice);
    assert.equal(other.statusCode, 403);
    const missing = await t.req('GET', '/api/permission/nobody-here', alice);
    assert.equal(missing.statusCode, 403, 'a missing name answers like an existing one');
    assert.deepEqual((await t.req('GET', '/api/permission/bob', admin)).json(), { roles: ['Application_Provider'] });
    assert.equal((await t.req('GET', '/api/permission/nobody-here', admin)).statusCode, 404);
    assert.equal((await t.req('GET', '/api/permission/alice')).statusCode, 401, 'no token');
    assert.equal((await t.req('GET', `/api/permission/${'x'.repeat(200)}`, admin)).statusCode, 400, 'over-long name');
  });

  test('GET /api/applications/<userid>: the applications of that user, 401 for someone else', async () => {
    const created = await createApp(t, alice, 'oakapp');
    await createApp(t, bob, 'bobapp');
    const aliceId = (await t.ctx.store.getUserByName('alice'))!.id;
    const own = await t.req('GET', `/api/applications/${aliceId}`, alice);
    assert.equal(own.statusCode, 200);
    const docs = own.json() as ApplicationDoc[];
    assert.deepEqual(docs.map((d) => d.application_name), ['oakapp']);
    assert.equal(docs[0]?.applicationID, created.applicationID);
    assert.equal(docs[0]?.microservices.length, 1);
    assert.equal((await t.req('GET', '/api/applications/alice', alice)).statusCode, 200, 'by name too');
    const bobs = await t.req('GET', `/api/applications/${aliceId}`, bob);
    assert.equal(bobs.statusCode, 401, "Oakestra's answer for another user's id");
    assert.equal((await t.req('GET', '/api/applications/does-not-exist', bob)).statusCode, 401, 'a missing user the same');
    assert.deepEqual(((await t.req('GET', '/api/applications/alice', orgAdmin)).json() as ApplicationDoc[]).map((d) => d.application_name), ['oakapp'], 'Organization_Admin: its organisation');
    assert.equal((await t.req('GET', '/api/applications/bob', orgAdmin)).statusCode, 401, 'not another organisation');
    assert.equal(((await t.req('GET', '/api/applications/bob', admin)).json() as ApplicationDoc[]).length, 1, 'Admin: anyone');
  });

  test('GET /api/services/: every service you may see, with instances', async () => {
    const mine = (await t.req('GET', '/api/services/', alice)).json() as ServiceDoc[];
    assert.ok(mine.length >= 1);
    assert.ok(mine.every((s) => s.application_name === 'oakapp'), 'only its organisation');
    assert.ok(Array.isArray(mine[0]?.instance_list));
    const all = (await t.req('GET', '/api/services/', admin)).json() as ServiceDoc[];
    assert.deepEqual(new Set(all.map((s) => s.application_name)), new Set(['oakapp', 'bobapp']));
  });

  test('GET /api/users/<organization_id> and GET /api/organization/', async () => {
    const orgA = (await t.ctx.store.getOrganizationByName('org-a'))!;
    const byId = await t.req('GET', `/api/users/${orgA.id}`, admin);
    assert.equal(byId.statusCode, 200);
    assert.deepEqual((byId.json() as UserDoc[]).map((u) => u.name).sort(), ['alice', 'oscar']);
    assert.equal(((await t.req('GET', '/api/users/org-a', orgAdmin)).json() as UserDoc[]).length, 2, 'its own organisation, by name');
    assert.equal((await t.req('GET', '/api/users/org-b', orgAdmin)).statusCode, 404, 'another organisation looks missing');
    assert.equal((await t.req('GET', '/api/users/org-a', alice)).statusCode, 403);
    const orgs = await t.req('GET', '/api/organization/', alice);
    assert.equal(orgs.statusCode, 200);
    assert.deepEqual((orgs.json() as { name: string }[]).map((o) => o.name), ['org-a']);
    assert.ok(((await t.req('GET', '/api/organization/', admin)).json() as unknown[]).length >= 3);
  });

  test('POST /api/user/<username> {oldPassword, newPassword}: Oakestra\'s password change', async () => {
    await t.user('pat', 'org-a', ['Application_Provider']);
    const pat = await t.login('pat');
    const wrong = await t.req('POST', '/api/user/pat', pat, { oldPassword: 'not-it-at-all', newPassword: 'brand-new-pass-1' });
    assert.equal(wrong.statusCode, 401);
    const ok = await t.req('POST', '/api/user/pat', pat, { oldPassword: PASSWORD, newPassword: 'brand-new-pass-1' });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal((await t.req('GET', '/api/permission/pat', pat)).statusCode, 401, 'old tokens are revoked');
    await t.login('pat', 'brand-new-pass-1');
    const short = await t.req('POST', '/api/user/pat', await t.login('pat', 'brand-new-pass-1'), { oldPassword: 'brand-new-pass-1', newPassword: 'x' });
    assert.equal(short.statusCode, 422, 'the password rule applies');
    assert.equal((await t.req('POST', '/api/user/alice', bob, { oldPassword: PASSWORD, newPassword: 'brand-new-pass-2' })).statusCode, 403, 'not for another user');
  });

  test('POST /api/auth/register with an admin token creates a user in its organisation', async () => {
    const r = await t.req('POST', '/api/auth/register', orgAdmin, { name: 'newbie', password: 'newbie-pass-1', roles: ['Application_Provider'] });
    assert.equal(r.statusCode, 200, r.body);
    const u = r.json() as UserDoc;
    assert.equal(u.name, 'newbie');
    assert.equal(u.organization, 'org-a');
    assert.ok(!JSON.stringify(u).includes('newbie-pass-1'), 'no password in the answer');
    await t.login('newbie', 'newbie-pass-1');
    assert.equal((await t.req('POST', '/api/auth/register', orgAdmin, { name: 'boss', password: 'boss-pass-12', roles: ['Admin'] })).statusCode, 403, 'cannot grant Admin');
    assert.equal((await t.req('POST', '/api/auth/register', alice, { name: 'friend', password: 'friend-pass-1' })).statusCode, 403, 'an Application_Provider cannot');
    assert.equal((await t.req('POST', '/api/auth/register', orgAdmin, { name: 'newbie', password: 'newbie-pass-1' })).statusCode, 409, 'taken name');
    assert.equal((await t.req('POST', '/api/auth/register', 'not-a-token', { name: 'x1', password: 'x1-pass-123' })).statusCode, 401, 'a bad token is not anonymous');
  });

  test('POST /api/auth/register without a token: refused unless self-registration is on, then limited', async () => {
    const off = await t.req('POST', '/api/auth/register', undefined, { name: 'walkin', password: 'walkin-pass-1' });
    assert.equal(off.statusCode, 403);
    assert.match(off.body, /self-registration is off/);
    t.ctx.selfRegistration = 'org-a';
    try {
      const withRoles = await t.req('POST', '/api/auth/register', undefined, { name: 'walkin', password: 'walkin-pass-1', roles: ['Admin'] });
      assert.equal(withRoles.statusCode, 403, 'no chosen roles');
      const on = await t.req('POST', '/api/auth/register', undefined, { name: 'walkin', password: 'walkin-pass-1' });
      assert.equal(on.statusCode, 200, on.body);
      assert.deepEqual((on.json() as UserDoc).roles, ['Application_Provider']);
      assert.equal((on.json() as UserDoc).organization, 'org-a');
      const tok = ((await t.req('POST', '/api/auth/login', undefined, { username: 'walkin', password: 'walkin-pass-1' })).json() as TokenPair).token;
      assert.equal((await t.req('GET', '/api/applications/', tok)).statusCode, 200);
      // hostile: bodies out of shape, then a flood from one address
      for (const bad of [{}, { name: '' }, { name: 'a'.repeat(500), password: 'long-enough-1' }, { name: 'ok-name', password: 'short' }, 'text', [1, 2]]) {
        const r = await t.req('POST', '/api/auth/register', undefined, bad);
        assert.ok(r.statusCode >= 400 && r.statusCode < 500, `${JSON.stringify(bad).slice(0, 40)} -> ${r.statusCode}`);
      }
      let limited = 0;
      for (let i = 0; i < SELF_REGISTRATIONS_PER_HOUR + 2; i++) {
        const r = await t.req('POST', '/api/auth/register', undefined, { name: `flood${i}`, password: 'flood-pass-12' });
        if (r.statusCode === 429) {
          limited++;
          assert.equal(code(r), 'OAK_RATE_LIMITED');
          assert.ok(Number(r.headers['retry-after']) > 0);
        }
      }
      assert.ok(limited >= 2, `429 after ${SELF_REGISTRATIONS_PER_HOUR} registrations per hour (got ${limited} refusals)`);
    } finally {
      delete t.ctx.selfRegistration;
    }
  });
});

test('--self-registration / OAK_SELF_REGISTRATION: an organisation name, checked', () => {
  const cfg = (argv: string[], env: NodeJS.ProcessEnv) => {
    const c = configFromArgs(argv, env);
    assert.notEqual(c, 'help');
    return c as Exclude<typeof c, 'help'>;
  };
  assert.equal(cfg(['--self-registration', 'guests'], {}).selfRegistration, 'guests');
  assert.equal(cfg([], { OAK_SELF_REGISTRATION: 'guests' }).selfRegistration, 'guests');
  assert.equal(cfg([], {}).selfRegistration, undefined);
  assert.throws(() => cfg(['--self-registration', 'a b;rm'], {}), /organisation name/);
});
