/**
 * Oakestra's root API paths (issue 12, point 1): an Oakestra client's requests, replayed against
 * a real root app (fastify inject, SQLite store): paths, bodies, answer shapes and status codes,
 * inside our organisation isolation and roles, with hostile inputs.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import type { ApplicationDoc, ClusterDoc, InstanceDoc, ServiceDoc, TokenPair, UserDoc } from '@oak/contracts';
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

/**
 * An Oakestra client's session replayed (issue 12): the requests Oakestra's Go CLI and dashboard
 * send, in their order, with the paths as they write them (with and without the trailing
 * slash), against a real root app; each answer's status and the fields those clients read.
 */
describe("an Oakestra client's session against the root", () => {
  let t: TestRoot;
  let token: string;
  let refresh: string;
  const oakestraSla = (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    sla_version: 'v2.0',
    customerID: 'Admin',
    applications: [{
      applicationID: '',
      application_name: name,
      application_namespace: 'test',
      application_desc: 'replayed',
      microservices: [{
        microserviceID: '',
        microservice_name: 'web',
        microservice_namespace: 'test',
        virtualization: 'container',
        cmd: [],
        memory: 100,
        vcpus: 1,
        vgpus: 0,
        vtpus: 0,
        bandwidth_in: 0,
        bandwidth_out: 0,
        storage: 0,
        code: 'docker.io/library/nginx:latest',
        state: '',
        port: '80:80',
        added_files: [],
        constraints: [],
        connectivity: [],
        ...extra,
      }],
    }],
  });
  before(async () => {
    t = await testRoot();
  });
  after(() => t.close());

  test('POST /api/auth/login {username, password}: 200 {token, refresh_token}; wrong password 401; refresh with the bearer refresh token', async () => {
    const r = await t.req('POST', '/api/auth/login', undefined, { username: 'Admin', password: ADMIN_PASSWORD });
    assert.equal(r.statusCode, 200);
    const pair = r.json() as TokenPair;
    assert.equal(typeof pair.token, 'string');
    assert.equal(typeof pair.refresh_token, 'string');
    token = pair.token;
    refresh = pair.refresh_token;
    assert.equal((await t.req('POST', '/api/auth/login', undefined, { username: 'Admin', password: 'not-the-password' })).statusCode, 401);
    assert.equal((await t.req('POST', '/api/auth/login', undefined, { username: 'Admin' })).statusCode, 422, 'no password: refused, not a crash');
    // flask_jwt_extended's refresh: the refresh token as bearer, no body
    const viaHeader = await t.req('POST', '/api/auth/refresh', refresh);
    assert.equal(viaHeader.statusCode, 200, viaHeader.body);
    assert.equal(typeof (viaHeader.json() as TokenPair).token, 'string');
    assert.equal((await t.req('POST', '/api/auth/refresh', token)).statusCode, 401, 'an access token is not a refresh token');
    assert.equal((await t.req('POST', '/api/auth/refresh', 'garbage.token.here')).statusCode, 401);
  });

  test('GET /api/permission/Admin and the lists of an empty root: 200 with []', async () => {
    assert.deepEqual((await t.req('GET', '/api/permission/Admin', token)).json(), { roles: ['Admin'] });
    for (const path of ['/api/applications', '/api/applications/', '/api/services/', '/api/clusters/', '/api/clusters/active']) {
      const r = await t.req('GET', path, token);
      assert.equal(r.statusCode, 200, path);
      assert.deepEqual(r.json(), [], path);
    }
    for (const path of ['/api/applications', '/api/services/', '/api/clusters/', '/api/organization/', '/api/users/']) {
      assert.equal((await t.req('GET', path)).statusCode, 401, `${path} without a token`);
    }
  });

  let appId = '';
  let serviceId = '';
  test("POST /api/application (the Go CLI's path, no slash) with an Oakestra SLA: the list of created applications, warnings for the unhonoured fields", async () => {
    const r = await t.req('POST', '/api/application', token, oakestraSla('replay', { addresses: { rr_ip: '192.168.178.4' }, state: 'https://example.invalid/state.json' }));
    // 200 as Oakestra: its Go and Python CLIs take any other code (201 too) for a failure
    assert.equal(r.statusCode, 200, r.body);
    const docs = r.json() as (ApplicationDoc & { warnings?: { path: string; message: string }[] })[];
    assert.equal(docs.length, 1);
    const [a] = docs;
    assert.ok(a);
    for (const k of ['applicationID', 'application_name', 'application_namespace', 'application_desc'] as const) assert.equal(typeof a[k], 'string', k);
    assert.ok(Array.isArray(a.microservices) && a.microservices.every((m) => typeof m === 'string'), 'microservices are ids');
    const warned = (a.warnings ?? []).map((w) => w.path);
    assert.ok(warned.includes('applications[0].microservices[0].addresses.rr_ip'), JSON.stringify(a.warnings));
    assert.ok(warned.includes('applications[0].microservices[0].state'));
    appId = a.applicationID;
    serviceId = a.microservices[0] ?? '';
    // a flawed Oakestra SLA: 422 with the path of each problem
    const bad = await t.req('POST', '/api/application/', token, { customerID: 'Admin', applications: [{ application_name: 'Bad Name', microservices: [{ microservice_name: 'x.y', virtualization: 'container', code: 'c' }] }] });
    assert.equal(bad.statusCode, 422);
    const paths = ((bad.json() as { error: { details?: { path: string }[] } }).error.details ?? []).map((d) => d.path);
    for (const p of ['sla_version', 'applications[0].application_name', 'applications[0].application_namespace', 'applications[0].microservices[0].microservice_name', 'applications[0].microservices[0].microservice_namespace']) assert.ok(paths.includes(p), `${p} in ${paths.join(', ')}`);
  });

  test('GET /api/application/<id>, GET /api/applications, GET /api/services/<appid>, GET /api/service/<id>: the fields the Go CLI reads', async () => {
    const one = await t.req('GET', `/api/application/${appId}`, token);
    assert.equal(one.statusCode, 200);
    assert.equal((one.json() as ApplicationDoc).application_name, 'replay');
    const list = (await t.req('GET', '/api/applications', token)).json() as ApplicationDoc[];
    assert.deepEqual(list.map((a) => a.applicationID), [appId]);
    const svcs = (await t.req('GET', `/api/services/${appId}`, token)).json() as ServiceDoc[];
    assert.equal(svcs.length, 1);
    const s = svcs[0] as ServiceDoc & Record<string, unknown>;
    for (const k of ['microserviceID', 'microservice_name', 'microservice_namespace', 'applicationID', 'application_name', 'application_namespace', 'code', 'virtualization', 'port']) assert.equal(typeof s[k], 'string', k);
    assert.ok(Array.isArray(s.instance_list));
    const d = (await t.req('GET', `/api/service/${serviceId}`, token)).json() as ServiceDoc & Record<string, unknown>;
    assert.equal(d['app_name'], 'replay', "the detail's app_name");
    assert.equal(d['app_ns'], 'test');
    assert.match(String(d['RR_ip']), /^10\.30\.\d+\.\d+$/, 'RR_ip: an address of the range, not the SLA\'s 192.168.178.4');
    assert.equal(d['RR_ip'], d.service_ip);
    assert.equal(d.memory, 100);
    assert.equal(d.vcpus, 1);
    assert.equal((await t.req('GET', '/api/service/0123456789abcdef01234567', token)).statusCode, 404);
    assert.equal((await t.req('GET', '/api/application/0123456789abcdef01234567', token)).statusCode, 404);
  });

  test('POST /api/service/<id>/instance, DELETE /api/service/<id>/instance/<n>: deploy and undeploy one instance (no body)', async () => {
    const dep = await t.req('POST', `/api/service/${serviceId}/instance`, token);
    // 200 as Oakestra (whose body is {"message": "ok"}; ours is the instance document)
    assert.equal(dep.statusCode, 200, dep.body);
    const inst = dep.json() as InstanceDoc;
    assert.equal(inst.instance_number, 0);
    assert.equal(inst.status, 'REQUESTED');
    const d = (await t.req('GET', `/api/service/${serviceId}`, token)).json() as ServiceDoc;
    const i = d.instance_list[0] as InstanceDoc & Record<string, unknown>;
    for (const k of ['instance_number', 'status', 'status_detail', 'publicip', 'cluster_id', 'worker_id']) assert.ok(k in i, k);
    // Oakestra's usage fields in their empty shape before the instance is placed or read
    assert.deepEqual(
      { cpu: i.cpu_percent, mem: i.memory_percent, disk: i.disk, ch: i.cpu_history, mh: i.memory_history, logs: i.logs, hip: i.host_ip, hport: i.host_port, loc: i.cluster_location },
      { cpu: null, mem: null, disk: null, ch: [], mh: [], logs: '', hip: null, hport: null, loc: null },
    );
    // placed on a cluster at "48.26,11.67,10" on a worker whose NetManager is 192.0.2.7:50103, with two readings
    const cl = await t.store.upsertCluster('edge1', '48.26,11.67,10');
    await t.store.updateInstance(serviceId, 0, { cluster_id: cl.id, worker_id: 'w-replay', publicip: '192.0.2.7', status: 'RUNNING', net: { nsip: '10.18.0.2', host_ip: '192.0.2.7', host_port: 50103, subnet: '10.18.0.0/26' } });
    const svcRow = await t.store.getService(serviceId);
    for (const [at, cpu, mb] of [[1_700_000_000_000, 12.345, 25], [1_700_000_005_000, 40, 50]] as const) {
      t.ctx.events.publish({ type: 'metrics', microserviceID: serviceId, applicationID: appId, job_name: svcRow?.job_name ?? '', at, instances: [{ instance_number: 0, cpu_percent: cpu, memory_mb: mb }] });
    }
    for (const url of [`/api/service/${serviceId}/instance/0`, `/api/service/${serviceId}`]) {
      const r = (await t.req('GET', url, token)).json() as InstanceDoc & ServiceDoc;
      const got = (url.endsWith('/0') ? r : r.instance_list[0]) as InstanceDoc;
      assert.equal(got.cpu_percent, 40, url);
      assert.equal(got.memory_percent, 50, `${url}: 50 of the SLA's 100 MB`);
      assert.deepEqual(got.cpu_history, [{ value: 12.35, timestamp: '2023-11-14T22:13:20.000Z' }, { value: 40, timestamp: '2023-11-14T22:13:25.000Z' }], url);
      assert.deepEqual(got.memory_history?.map((h) => h.value), [25, 50], url);
      assert.equal(got.disk, null);
      assert.equal(got.logs, '');
      assert.equal(got.host_ip, '192.0.2.7');
      assert.equal(got.host_port, 50103);
      assert.equal(got.cluster_location, '48.26,11.67,10');
    }
    const und = await t.req('DELETE', `/api/service/${serviceId}/instance/0`, token);
    assert.equal(und.statusCode, 200, und.body);
    assert.equal((await t.req('DELETE', `/api/service/${serviceId}/instance/99`, token)).statusCode, 404);
    assert.equal((await t.req('POST', '/api/service/0123456789abcdef01234567/instance', token)).statusCode, 404);
    assert.equal((await t.req('DELETE', `/api/service/${serviceId}/instance/-1`, token)).statusCode, 400, 'hostile: negative instance number');
  });

  test('POST /api/service/ in the SLA shape adds a service; PUT /api/service/<id> changes it; DELETE removes it', async () => {
    const body = oakestraSla('replay');
    const app = (body['applications'] as Record<string, unknown>[])[0] as Record<string, unknown>;
    app['applicationID'] = appId;
    (app['microservices'] as Record<string, unknown>[])[0]!['microservice_name'] = 'api';
    const r = await t.req('POST', '/api/service/', token, body);
    assert.equal(r.statusCode, 200, r.body);
    const created = r.json() as ServiceDoc | ServiceDoc[];
    const sid = (Array.isArray(created) ? created[0] : created)?.microserviceID ?? '';
    assert.match(sid, /^[0-9a-f]{24}$/);
    const put = await t.req('PUT', `/api/service/${sid}`, token, { memory: 200 });
    assert.equal(put.statusCode, 200, put.body);
    assert.equal(((await t.req('GET', `/api/service/${sid}`, token)).json() as ServiceDoc).memory, 200);
    assert.equal((await t.req('DELETE', `/api/service/${sid}`, token)).statusCode, 200);
    assert.equal((await t.req('GET', `/api/service/${sid}`, token)).statusCode, 404);
  });

  test('GET /api/clusters/ and /api/clusters/active: the flat fields Oakestra\'s clients read', async () => {
    const row = await t.store.upsertCluster('edge1', '48.26,11.67,10');
    await t.store.updateCluster(row.id, {
      status: 'ACTIVE',
      last_seen: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)).toISOString(),
      resources: { cpu_cores_free: 3, cpu_cores_total: 4, memory_free_mb: 1000, memory_total_mb: 2048, gpus_free: 0, virtualizations: ['container', 'process'], workers: 2, worker_summary: [] },
    });
    await t.store.upsertCluster('edge2', 'Lab_Two');
    const all = (await t.req('GET', '/api/clusters/', token)).json() as (ClusterDoc & Record<string, unknown>)[];
    assert.deepEqual(all.map((c) => c.cluster_name).sort(), ['edge1', 'edge2']);
    const c = all.find((x) => x.cluster_name === 'edge1');
    assert.ok(c);
    assert.equal(c._id, row.id);
    assert.equal(c['active'], true);
    assert.equal(c['active_nodes'], 2);
    assert.equal(c['total_cpu_cores'], 4);
    assert.equal(c['memory_in_mb'], 2048);
    assert.deepEqual(c['virtualization'], ['container', 'process']);
    assert.equal(c['last_modified_timestamp'], Date.UTC(2026, 0, 2, 3, 4, 5) / 1000);
    assert.equal(c.cluster_location, '48.26,11.67,10');
    const other = all.find((x) => x.cluster_name === 'edge2');
    assert.equal(other?.['active'], false);
    assert.equal(other?.['last_modified_timestamp'], 0);
    assert.equal(other?.cluster_location, 'Lab_Two');
    const active = (await t.req('GET', '/api/clusters/active', token)).json() as ClusterDoc[];
    assert.deepEqual(active.map((x) => x.cluster_name), ['edge1']);
  });

  test('organisations and users: GET/POST /api/organization/, DELETE /api/organization/<id>, /api/user/<name>, /api/users/', async () => {
    const created = await t.req('POST', '/api/organization/', token, { name: 'replay-org' });
    assert.equal(created.statusCode, 200, created.body);
    const org = created.json() as { _id: string; name: string };
    assert.equal(org.name, 'replay-org');
    const orgs = (await t.req('GET', '/api/organization/', token)).json() as { _id: string; name: string }[];
    assert.ok(orgs.some((o) => o._id === org._id));
    const u = await t.req('POST', '/api/user/', token, { name: 'replayer', password: 'replay-pass-1', organization: 'replay-org' });
    assert.equal(u.statusCode, 201, u.body); // POST /api/user/ is ours (Oakestra adds users with PUT /api/user/<name>)
    const got = await t.req('GET', '/api/user/replayer', token);
    assert.equal(got.statusCode, 200);
    const doc = got.json() as UserDoc;
    assert.equal(doc.name, 'replayer');
    assert.deepEqual(doc.roles, ['Application_Provider']);
    assert.ok(!JSON.stringify(doc).includes('replay-pass-1') && !('password' in doc));
    assert.ok(((await t.req('GET', '/api/users/', token)).json() as UserDoc[]).some((x) => x.name === 'replayer'));
    assert.deepEqual(((await t.req('GET', `/api/users/${org._id}`, token)).json() as UserDoc[]).map((x) => x.name), ['replayer']);
    assert.equal((await t.req('DELETE', '/api/user/replayer', token)).statusCode, 200);
    assert.equal((await t.req('GET', '/api/user/replayer', token)).statusCode, 404);
    assert.equal((await t.req('DELETE', `/api/organization/${org._id}`, token)).statusCode, 200);
    assert.equal((await t.req('POST', '/api/organization/', token, { name: 'a b;drop' })).statusCode, 422, 'hostile organisation name');
  });

  test("Oakestra's test SLAs (our field-for-field fixtures): the valid ones are created and deployed, with warnings; the flawed ones 422 at their paths", async () => {
    const dir = new URL('../../../packages/contracts/test/fixtures/oakestra/', import.meta.url);
    const load = (f: string): unknown => JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as unknown;
    for (const f of readdirSync(dir).filter((n) => n.startsWith('valid-')).sort()) {
      const r = await t.req('POST', '/api/application/?deploy=true', token, load(f));
      assert.equal(r.statusCode, 200, `${f}: ${r.body.slice(0, 400)}`);
      const [a] = r.json() as ApplicationDoc[];
      assert.ok(a, f);
      for (const sid of a.microservices) {
        const d = (await t.req('GET', `/api/service/${sid}`, token)).json() as ServiceDoc;
        assert.equal(d.instance_list.length, 1, `${f}: one instance deployed`);
        assert.match(d.service_ip ?? '', /^10\.30\.\d+\.\d+$/, `${f}: a service address of the range`);
      }
      assert.equal((await t.req('DELETE', `/api/application/${a.applicationID}`, token)).statusCode, 200);
    }
    for (const f of readdirSync(dir).filter((n) => n.startsWith('flawed-')).sort()) {
      const r = await t.req('POST', '/api/application/?deploy=true', token, load(f));
      assert.equal(r.statusCode, 422, `${f}: ${r.body.slice(0, 300)}`);
      const details = (r.json() as { error: { details?: { path: string }[] } }).error.details ?? [];
      assert.ok(details.length >= 1 && details.every((d) => typeof d.path === 'string'), f);
      if (f === 'flawed-connectivity.json') {
        // only the connectivity is wrong: the answer's path is the faulty threshold itself
        const e = (r.json() as { error: { path?: string } }).error;
        assert.equal(e.path, 'applications[0].microservices[0].connectivity[0].con_constraints[0].threshold', r.body);
        assert.deepEqual(details.map((d) => d.path), ['applications[0].microservices[0].connectivity[0].con_constraints[0].threshold', 'applications[0].microservices[0].connectivity[1].target_microservice_id']);
      }
    }
    assert.deepEqual(((await t.req('GET', '/api/applications/', token)).json() as ApplicationDoc[]).map((a) => a.application_name), ['replay'], 'nothing of the flawed ones was stored');
  });

  test('PUT /api/application/<id> and DELETE /api/application/<id>: the application and its services go', async () => {
    const put = await t.req('PUT', `/api/application/${appId}`, token, { application_desc: 'changed' });
    assert.equal(put.statusCode, 200, put.body);
    assert.equal(((await t.req('GET', `/api/application/${appId}`, token)).json() as ApplicationDoc).application_desc, 'changed');
    const del = await t.req('DELETE', `/api/application/${appId}`, token);
    assert.equal(del.statusCode, 200);
    assert.equal((await t.req('GET', `/api/application/${appId}`, token)).statusCode, 404);
    assert.equal((await t.req('GET', `/api/service/${serviceId}`, token)).statusCode, 404);
    assert.deepEqual((await t.req('GET', '/api/applications/', token)).json(), []);
  });
});
