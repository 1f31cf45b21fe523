/** Every endpoint's success path (and a few of their specific failures), through inject(). */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ApplicationDoc, ClusterDoc, InstanceDoc, OrganizationDoc, ServiceDoc, TokenPair, UserDoc } from '@oak/contracts';
import { verify } from '@node-rs/argon2';
import type { InstanceRow, ServiceRow } from '@oak/store';
import type { ControlPlane, LogOptions } from '../src/control.ts';
import type { LogTarget } from '../src/reconcile/logs.ts';
import { ADMIN_PASSWORD, PASSWORD, createApp, sla, testRoot, type TestRoot } from './helpers.ts';

describe('auth', () => {
  let t: TestRoot;
  before(async () => {
    t = await testRoot();
  });
  after(() => t.close());

  test('login answers a token pair whose claims name the user, roles and organisation', async () => {
    const r = await t.req('POST', '/api/auth/login', undefined, { username: 'Admin', password: ADMIN_PASSWORD });
    assert.equal(r.statusCode, 200);
    const pair = r.json() as TokenPair;
    assert.equal(pair.expires_in, 600);
    const claims = JSON.parse(Buffer.from(pair.token.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
    const admin = await t.store.getUserByName('Admin');
    assert.equal(claims.sub, admin?.id);
    assert.equal(claims.name, 'Admin');
    assert.deepEqual(claims.roles, ['Admin']);
    assert.equal(claims.org, admin?.organization_id);
    assert.equal(claims.typ, 'access');
  });

  test('refresh by body and by bearer header', async () => {
    const pair = (await t.req('POST', '/api/auth/login', undefined, { username: 'Admin', password: ADMIN_PASSWORD })).json() as TokenPair;
    const byBody = await t.req('POST', '/api/auth/refresh', undefined, { refresh_token: pair.refresh_token });
    assert.equal(byBody.statusCode, 200);
    const fresh = byBody.json() as TokenPair;
    assert.equal((await t.req('GET', '/api/users/', fresh.token)).statusCode, 200);
    const byHeader = await t.req('POST', '/api/auth/refresh', pair.refresh_token);
    assert.equal(byHeader.statusCode, 200);
  });

  test('a deleted user\'s token stops working at once', async () => {
    const admin = await t.login('Admin');
    const tok = await t.user('temp', 'root', ['Application_Provider']);
    assert.equal((await t.req('GET', '/api/applications/', tok)).statusCode, 200);
    assert.equal((await t.req('DELETE', '/api/user/temp', admin)).statusCode, 200);
    const r = await t.req('GET', '/api/applications/', tok);
    assert.equal(r.statusCode, 401);
  });

  test('an expired access token is OAK_TOKEN_EXPIRED', async () => {
    const short = await testRoot({ accessTtlSec: 1 });
    try {
      const tok = await short.login('Admin');
      await new Promise((r) => setTimeout(r, 2100));
      const r = await short.req('GET', '/api/applications/', tok);
      assert.equal(r.statusCode, 401);
      assert.equal((r.json() as { error: { code: string } }).error.code, 'OAK_TOKEN_EXPIRED');
    } finally {
      await short.close();
    }
  });
});

describe('users and organisations', () => {
  let t: TestRoot;
  let admin = '';
  before(async () => {
    t = await testRoot();
    admin = await t.login('Admin');
  });
  after(() => t.close());

  test('organisation CRUD (Admin)', async () => {
    const c = await t.req('POST', '/api/organization/', admin, { name: 'acme' });
    assert.equal(c.statusCode, 200);
    const org = c.json() as OrganizationDoc;
    assert.equal(org.name, 'acme');
    const list = (await t.req('GET', '/api/organizations/', admin)).json() as OrganizationDoc[];
    assert.deepEqual(list.map((o) => o.name).sort(), ['acme', 'root']);
    assert.equal((await t.req('GET', `/api/organization/${org._id}`, admin)).statusCode, 200);
    assert.equal((await t.req('GET', '/api/organization/acme', admin)).statusCode, 200);
    assert.equal((await t.req('DELETE', `/api/organization/${org._id}`, admin)).statusCode, 200);
    assert.equal((await t.req('GET', `/api/organization/${org._id}`, admin)).statusCode, 404);
  });

  test('user CRUD: Admin creates an org admin, who manages its own organisation', async () => {
    await t.req('POST', '/api/organization/', admin, { name: 'lab' });
    const c = await t.req('POST', '/api/user/', admin, { name: 'olga', password: PASSWORD, email: 'olga@lab.example', roles: [{ name: 'Organization_Admin' }], organization: 'lab' });
    assert.equal(c.statusCode, 201, c.body);
    const olgaDoc = c.json() as UserDoc;
    assert.deepEqual(olgaDoc.roles, ['Organization_Admin']);
    assert.equal(olgaDoc.organization, 'lab');
    assert.equal((olgaDoc as unknown as Record<string, unknown>).password_hash, undefined, 'no hash in documents');
    const olga = await t.login('olga');

    const u = await t.req('POST', '/api/user/', olga, { name: 'paul', password: PASSWORD });
    assert.equal(u.statusCode, 201, u.body);
    const paul = u.json() as UserDoc;
    assert.deepEqual(paul.roles, ['Application_Provider']);
    assert.equal(paul.organization_id, olgaDoc.organization_id);
    // stored hashed with argon2
    const row = await t.store.getUserByName('paul');
    assert.match(row?.password_hash ?? '', /^\$argon2id\$/);
    assert.ok(await verify(row?.password_hash ?? '', PASSWORD));

    const list = (await t.req('GET', '/api/users/', olga)).json() as UserDoc[];
    assert.deepEqual(list.map((x) => x.name).sort(), ['olga', 'paul']);
    const all = (await t.req('GET', '/api/users/', admin)).json() as UserDoc[];
    assert.ok(all.length >= 3);
    assert.equal((await t.req('GET', `/api/user/${paul._id}`, olga)).statusCode, 200);
    const upd = await t.req('PUT', '/api/user/paul', olga, { roles: ['Application_Provider', 'Infrastructure_Provider'], email: 'p@lab.example' });
    assert.equal(upd.statusCode, 200, upd.body);
    assert.deepEqual((upd.json() as UserDoc).roles, ['Application_Provider', 'Infrastructure_Provider']);
    // olga may not touch users of another organisation
    assert.equal((await t.req('POST', '/api/user/', olga, { name: 'x1', password: PASSWORD, organization: 'root' })).statusCode, 403);
    // another organisation's user answers like a missing one (no user enumeration)
    assert.equal((await t.req('GET', '/api/user/Admin', olga)).statusCode, 404);

    // own user: read, email, password (with the old one)
    const paulTok = await t.login('paul');
    assert.equal((await t.req('GET', '/api/user/paul', paulTok)).statusCode, 200);
    assert.equal((await t.req('PUT', '/api/user/paul', paulTok, { email: 'new@lab.example' })).statusCode, 200);
    const pw = await t.req('PUT', '/api/user/paul/password', paulTok, { old_password: PASSWORD, password: 'brand-new-pw' });
    assert.equal(pw.statusCode, 200, pw.body);
    await t.login('paul', 'brand-new-pw');
    // admin resets it
    assert.equal((await t.req('PUT', '/api/user/paul/password', admin, { password: PASSWORD })).statusCode, 200);
    await t.login('paul');

    assert.equal((await t.req('DELETE', '/api/user/paul', olga)).statusCode, 200);
    assert.equal((await t.req('GET', '/api/user/paul', olga)).statusCode, 404);
    assert.equal((await t.req('DELETE', '/api/user/olga', olga)).statusCode, 409, 'not yourself');
  });

  test('non-admins see only their organisation', async () => {
    const tok = await t.user('nina', 'nina-org', ['Application_Provider']);
    const list = (await t.req('GET', '/api/organizations/', tok)).json() as OrganizationDoc[];
    assert.deepEqual(list.map((o) => o.name), ['nina-org']);
    assert.equal((await t.req('GET', '/api/organization/root', tok)).statusCode, 404, 'another organisation answers like a missing one');
  });
});

describe('applications, services and instances', () => {
  let t: TestRoot;
  let tok = '';
  before(async () => {
    t = await testRoot();
    tok = await t.user('alice', 'orgA', ['Application_Provider']);
  });
  after(() => t.close());

  test('create from an SLA answers the created applications with their service ids', async () => {
    const body = sla('shop', ['web', 'db']);
    (body.applications as Record<string, unknown>[])[0]!.futureField = 1;
    const r = await t.req('POST', '/api/application/', tok, body);
    assert.equal(r.statusCode, 200, r.body);
    const [doc] = r.json() as ApplicationDoc[];
    assert.ok(doc);
    assert.equal(doc.application_name, 'shop');
    assert.equal(doc.application_namespace, 'test');
    assert.equal(doc.microservices.length, 2);
    assert.equal(doc.userId, (await t.store.getUserByName('alice'))?.id);
    assert.match(String(r.headers['oak-warnings']), /futureField/);
    const services = (await t.req('GET', `/api/services/${doc.applicationID}`, tok)).json() as ServiceDoc[];
    assert.deepEqual(services.map((s) => s.job_name).sort(), ['shop.test.db.test', 'shop.test.web.test']);
    assert.ok(services.every((s) => s.applicationID === doc.applicationID && s.instance_list.length === 0 && s.port === '8080:80/tcp'));
    assert.deepEqual(
      t.events.filter((e) => e.type !== 'instance').slice(-3).map((e) => e.type),
      ['application', 'service', 'service'],
    );
    assert.equal(t.control.requested.length, 0, 'nothing deployed without ?deploy=true');
  });

  test('workload fields (issue 10.8): args/added_files/volumes are stored; what is not honoured is warned about in the answer; bad shapes are 422 at their path', async () => {
    const body = sla('wfields', ['web'], {
      args: ['--verbose'],
      added_files: ['https://example.com/repositories/example/asset_1.jpg', { url: 'https://example.com/c.json', path: '/etc/c.json' }],
      volumes: [{ name: 'data', target: '/data' }, { volume_id: 'v1', csi_driver: 'csi.oakestra.io', mount_path: '/mnt' }],
      storage: 100,
    });
    const r = await t.req('POST', '/api/application/', tok, body);
    assert.equal(r.statusCode, 200, r.body);
    const w = String(r.headers['oak-warnings']);
    assert.match(w, /volumes\[0\]|volumes\[1\]/);
    assert.match(w, /not honoured/);
    assert.match(w, /storage 100 MB is not enforced for container/);
    assert.doesNotMatch(w, /args|added_files/, 'args and added_files are known fields');
    const [doc] = r.json() as ApplicationDoc[];
    const [svc] = (await t.req('GET', `/api/services/${doc?.applicationID ?? ''}`, tok)).json() as Record<string, unknown>[];
    assert.deepEqual(svc?.['args'], ['--verbose']);
    assert.equal((svc?.['added_files'] as unknown[]).length, 2);
    const bad = await t.req('POST', '/api/application/', tok, sla('wbad', ['web'], { added_files: ['file:///etc/shadow'], volumes: [{ name: '../x', target: '/x' }] }));
    assert.equal(bad.statusCode, 422, bad.body);
    const paths = ((bad.json() as { error: { details: { path: string }[] } }).error.details).map((d) => d.path);
    assert.deepEqual(paths, ['applications[0].microservices[0].added_files[0]', 'applications[0].microservices[0].volumes[0].name']);
  });

  test('?deploy=true deploys `replicas` instances of every service', async () => {
    const body = sla('multi', ['a', 'b'], { replicas: 2 });
    const r = await t.req('POST', '/api/application/?deploy=true', tok, body);
    assert.equal(r.statusCode, 200, r.body);
    const [doc] = r.json() as ApplicationDoc[];
    const services = (await t.req('GET', `/api/services/${doc?.applicationID}`, tok)).json() as ServiceDoc[];
    for (const s of services) {
      assert.deepEqual(s.instance_list.map((i) => [i.instance_number, i.status]), [[0, 'REQUESTED'], [1, 'REQUESTED']]);
    }
    assert.equal(t.control.requested.filter((x) => x.service.application_id === doc?.applicationID).length, 2);
  });

  test('list, get, update and delete an application', async () => {
    const app = await createApp(t, tok, 'crud', ['svc']);
    const list = (await t.req('GET', '/api/applications/', tok)).json() as ApplicationDoc[];
    assert.ok(list.some((a) => a.applicationID === app.applicationID && a.microservices.length === 1));
    const got = (await t.req('GET', `/api/application/${app.applicationID}`, tok)).json() as ApplicationDoc;
    assert.equal(got.application_desc, 'Simple demo');

    // rename + new description + one changed and one new service
    const ms = (sla('crud', ['svc']).applications as { microservices: Record<string, unknown>[] }[])[0]!.microservices[0]!;
    const put = await t.req('PUT', `/api/application/${app.applicationID}`, tok, {
      application_name: 'crud2',
      application_desc: 'changed',
      microservices: [{ ...ms, memory: 256 }, { ...ms, microservice_name: 'extra' }],
    });
    assert.equal(put.statusCode, 200, put.body);
    const upd = put.json() as ApplicationDoc;
    assert.equal(upd.application_name, 'crud2');
    assert.equal(upd.application_desc, 'changed');
    assert.equal(upd.microservices.length, 2);
    const services = (await t.req('GET', `/api/services/${app.applicationID}`, tok)).json() as ServiceDoc[];
    assert.deepEqual(services.map((s) => s.job_name).sort(), ['crud2.test.extra.test', 'crud2.test.svc.test']);
    assert.equal(services.find((s) => s.microservice_name === 'svc')?.memory, 256);
    assert.ok(t.control.updated.some((s) => s.name === 'svc'));

    // SLA-shaped update
    const slaPut = await t.req('PUT', `/api/application/${app.applicationID}`, tok, { sla_version: 'v2.0', customerID: 'x', applications: [{ application_desc: 'via sla' }] });
    assert.equal(slaPut.statusCode, 200, slaPut.body);
    assert.equal((slaPut.json() as ApplicationDoc).application_desc, 'via sla');

    // deploy, then delete: everything undeployed and gone
    const sid = upd.microservices[0]!;
    assert.equal((await t.req('POST', `/api/service/${sid}/instance`, tok)).statusCode, 200);
    const del = await t.req('DELETE', `/api/application/${app.applicationID}`, tok);
    assert.equal(del.statusCode, 200);
    assert.deepEqual(del.json(), { deleted: app.applicationID });
    const und = t.control.undeployed.filter((u) => u.service.id === sid);
    assert.equal(und.length, 1);
    assert.equal(und[0]?.instances[0]?.instance_number, 0);
    assert.equal((await t.req('GET', `/api/application/${app.applicationID}`, tok)).statusCode, 404);
    assert.equal((await t.req('GET', `/api/service/${sid}`, tok)).statusCode, 404);
    assert.equal((await t.store.listInstances({ service_id: sid })).length, 0);
    const last = t.events.at(-1);
    assert.equal(last?.type, 'application');
    assert.ok(t.events.some((e) => e.type === 'instance' && e.microserviceID === sid && e.instance.status === 'UNDEPLOYED'));
  });

  test('services: add (flat and SLA-shaped), read, update, delete', async () => {
    const app = await createApp(t, tok, 'svcs', ['first']);
    const flat = await t.req('POST', '/api/service/', tok, { applicationID: app.applicationID, microservice_name: 'second', microservice_namespace: 'test', virtualization: 'process', code: '/bin/sleep', cmd: ['60'] });
    assert.equal(flat.statusCode, 200, flat.body);
    const second = flat.json() as ServiceDoc;
    assert.equal(second.job_name, 'svcs.test.second.test');
    assert.equal(second.virtualization, 'process');
    assert.equal((second as unknown as Record<string, unknown>).applicationID, app.applicationID);

    const shaped = await t.req('POST', '/api/service/?deploy=true', tok, {
      sla_version: 'v2.0',
      customerID: 'alice',
      applications: [{ application_name: 'svcs', application_namespace: 'test', microservices: [{ microservice_name: 'third', microservice_namespace: 'test', virtualization: 'wasm', code: '/srv/app.wasm' }] }],
    });
    assert.equal(shaped.statusCode, 200, shaped.body);
    const [third] = shaped.json() as ServiceDoc[];
    assert.equal(third?.instance_list.length, 1);

    const got = (await t.req('GET', `/api/service/${second.microserviceID}`, tok)).json() as ServiceDoc;
    assert.deepEqual(got.cmd, ['60']);
    const put = await t.req('PUT', `/api/service/${second.microserviceID}`, tok, { memory: 64, cmd: ['120'] });
    assert.equal(put.statusCode, 200, put.body);
    const upd = put.json() as ServiceDoc;
    assert.equal(upd.memory, 64);
    assert.deepEqual(upd.cmd, ['120']);
    assert.equal(upd.code, '/bin/sleep', 'other fields kept');
    const appDoc = (await t.req('GET', `/api/application/${app.applicationID}`, tok)).json() as ApplicationDoc;
    assert.equal(appDoc.microservices.length, 3);

    assert.equal((await t.req('DELETE', `/api/service/${third?.microserviceID}`, tok)).statusCode, 200);
    assert.ok(t.control.undeployed.some((u) => u.service.id === third?.microserviceID));
    assert.equal((await t.req('GET', `/api/service/${third?.microserviceID}`, tok)).statusCode, 404);
  });

  test('instances: deploy is REQUESTED with history, undeploy sets desired stop (row kept, left out of listings)', async () => {
    const app = await createApp(t, tok, 'inst', ['w']);
    const sid = app.microservices[0]!;
    const a = await t.req('POST', `/api/service/${sid}/instance`, tok);
    const b = await t.req('POST', `/api/service/${sid}/instance`, tok);
    assert.equal(a.statusCode, 200);
    const i0 = a.json() as InstanceDoc;
    const i1 = b.json() as InstanceDoc;
    assert.deepEqual([i0.instance_number, i1.instance_number], [0, 1]);
    assert.equal(i0.status, 'REQUESTED');
    assert.deepEqual(i0.history?.map((h) => h.status), ['REQUESTED']);
    const req = t.control.requested.filter((x) => x.service.id === sid);
    assert.deepEqual(req.map((x) => x.instances.map((i) => i.instance_number)), [[0], [1]]);
    const ev = t.events.filter((e) => e.type === 'instance' && e.microserviceID === sid);
    assert.equal(ev.length, 2);

    assert.equal(i0.desired, 'run');
    assert.equal(i0.epoch, 0);
    assert.equal(i0.replaces, null);
    assert.equal(i0.service_version, 1);

    const d = await t.req('DELETE', `/api/service/${sid}/instance/0`, tok);
    assert.equal(d.statusCode, 200);
    const gone = d.json() as InstanceDoc;
    // the control plane finishes it (UNDEPLOYED once its cluster confirms); the row stays until then
    assert.equal(gone.desired, 'stop');
    assert.equal(gone.status, 'REQUESTED');
    assert.equal((await t.store.getInstance(sid, 0))?.desired, 'stop');
    const svc = (await t.req('GET', `/api/service/${sid}`, tok)).json() as ServiceDoc;
    assert.deepEqual(svc.instance_list.map((i) => i.instance_number), [1]);
    const list = (await t.req('GET', `/api/service/${sid}/instances`, tok)).json() as InstanceDoc[];
    assert.deepEqual(list.map((i) => i.instance_number), [1]);
    const one = await t.req('GET', `/api/service/${sid}/instance/0`, tok);
    assert.equal(one.statusCode, 200);
    assert.equal((one.json() as InstanceDoc).desired, 'stop');
    const last = t.events.at(-1);
    assert.ok(last?.type === 'instance' && last.instance.desired === 'stop' && last.instance.instance_number === 0);
    assert.equal(t.control.undeployed.at(-1)?.instances[0]?.instance_number, 0);
    assert.equal(t.control.undeployed.at(-1)?.instances[0]?.desired, 'stop');
    // a second DELETE answers the stopping instance and tells nobody again
    const told = t.control.undeployed.length;
    const again = await t.req('DELETE', `/api/service/${sid}/instance/0`, tok);
    assert.equal(again.statusCode, 200);
    assert.equal((again.json() as InstanceDoc).desired, 'stop');
    assert.equal(t.control.undeployed.length, told);
    // numbers are never reused
    const c = (await t.req('POST', `/api/service/${sid}/instance`, tok)).json() as InstanceDoc;
    assert.equal(c.instance_number, 2);
    assert.equal((await t.req('GET', `/api/service/${sid}/instance/9`, tok)).statusCode, 404);
  });

  test('clusters: list, active, one', async () => {
    const c1 = await t.store.upsertCluster('c1', '48.1,11.5');
    await t.store.updateCluster(c1.id, {
      status: 'ACTIVE',
      last_seen: new Date().toISOString(),
      resources: { cpu_cores_free: 4, cpu_cores_total: 8, memory_free_mb: 1000, memory_total_mb: 4000, gpus_free: 0, virtualizations: ['container'], workers: 1, worker_summary: [] },
    });
    await t.store.upsertCluster('c2', null);
    const infra = await t.user('ivan', 'orgA', ['Infrastructure_Provider']);
    const all = (await t.req('GET', '/api/clusters/', infra)).json() as ClusterDoc[];
    assert.deepEqual(all.map((c) => c.cluster_name).sort(), ['c1', 'c2']);
    const active = (await t.req('GET', '/api/clusters/active', infra)).json() as ClusterDoc[];
    assert.deepEqual(active.map((c) => c.cluster_name), ['c1']);
    const one = (await t.req('GET', `/api/cluster/${c1.id}`, tok)).json() as ClusterDoc;
    assert.equal(one.resources?.cpu_cores_free, 4);
    assert.equal(one.cluster_location, '48.1,11.5');
    assert.equal((await t.req('GET', '/api/cluster/c2', tok)).statusCode, 200);
  });
});

describe('logs', () => {
  class LogControl implements ControlPlane {
    seen: LogOptions[] = [];
    instancesRequested(): void {}
    instancesUndeployed(): void {}
    async *logs(service: ServiceRow, instance: InstanceRow, opts: LogOptions): AsyncIterable<string> {
      this.seen.push(opts);
      yield `${service.job_name}.instance.${instance.instance_number} line 1`;
      yield 'line 2\n';
    }
  }
  test('streams lines as text/plain; honours tail and follow; query token accepted', async () => {
    const control = new LogControl();
    const t = await testRoot({ control });
    try {
      const tok = await t.user('alice', 'orgA', ['Application_Provider']);
      const app = await createApp(t, tok, 'logs', ['w']);
      const sid = app.microservices[0]!;
      await t.req('POST', `/api/service/${sid}/instance`, tok);
      const r = await t.req('GET', `/api/service/${sid}/instance/0/logs?tail=5&follow=1`, tok);
      assert.equal(r.statusCode, 200);
      assert.match(String(r.headers['content-type']), /text\/plain/);
      assert.equal(r.body, 'logs.test.w.test.instance.0 line 1\nline 2\n');
      assert.equal(control.seen[0]?.tail, 5);
      assert.equal(control.seen[0]?.follow, true);
      const q = await t.req('GET', `/api/service/${sid}/instance/0/logs?token=${tok}`);
      assert.equal(q.statusCode, 200);
      assert.equal(control.seen[1]?.follow, false);
      const other = await t.user('bob', 'orgB', ['Application_Provider']);
      assert.equal((await t.req('GET', `/api/service/${sid}/instance/0/logs`, other)).statusCode, 403);
    } finally {
      await t.close();
    }
  });
});

describe('logs of ended and removed instances', () => {
  test('a removed instance is asked where it ran; one the root forgot is 410; numbers and paths out of range are refused', async () => {
    const targets: LogTarget[] = [];
    const control: ControlPlane = {
      instancesRequested() {},
      instancesUndeployed() {},
      async *logs(_s: ServiceRow, instance: LogTarget) {
        targets.push(instance);
        yield 'kept line';
      },
    };
    const t = await testRoot({ control });
    try {
      const tok = await t.user('carol', 'orgC', ['Application_Provider']);
      const app = await createApp(t, tok, 'gone', ['w']);
      const sid = app.microservices[0]!;
      await t.req('POST', `/api/service/${sid}/instance`, tok);
      await t.req('POST', `/api/service/${sid}/instance`, tok);
      // 0 ran on worker w-9 of cluster c-9, FAILED, then was stopped and purged; 1 never ran
      await t.store.updateInstance(sid, 0, { status: 'FAILED', status_detail: 'exited with code 3', cluster_id: 'c-9', worker_id: 'w-9' });
      await t.store.deleteInstance(sid, 0);
      await t.store.deleteInstance(sid, 1);
      const r = await t.req('GET', `/api/service/${sid}/instance/0/logs?follow=1`, tok);
      assert.equal(r.statusCode, 200);
      assert.equal(r.body, 'kept line\n');
      assert.deepEqual({ ...targets[0], status_at: '' }, { service_id: sid, instance_number: 0, status: 'FAILED', status_detail: 'exited with code 3', cluster_id: 'c-9', worker_id: 'w-9', ended_at: targets[0]?.status_at, removed_at: (targets[0] as { removed_at?: string }).removed_at, status_at: '', removed: true });
      const forgotten = await t.req('GET', `/api/service/${sid}/instance/1/logs`, tok);
      assert.equal(forgotten.statusCode, 410);
      const body = forgotten.json() as { error: { code: string; message: string; hint?: string } };
      assert.equal(body.error.code, 'OAK_LOGS_GONE');
      assert.equal(body.error.message, 'gone.test.w.test.instance.1 was removed and the root no longer knows where it ran, so its logs cannot be asked for');
      // never existed: 404; out of range or not a number: 400, nothing asked
      assert.equal((await t.req('GET', `/api/service/${sid}/instance/2/logs`, tok)).statusCode, 404);
      for (const bad of ['1000001', '-1', '99999999999999999999', '1.5', '..%2F..%2Fetc', '0%2F..']) {
        const res = await t.req('GET', `/api/service/${sid}/instance/${bad}/logs`, tok);
        assert.ok(res.statusCode === 400 || res.statusCode === 404, `${bad}: ${res.statusCode}`);
      }
      assert.equal((await t.req('GET', `/api/service/..%2F${sid}/instance/0/logs`, tok)).statusCode >= 400, true);
      assert.equal(targets.length, 1, 'only the valid request reached the control plane');
      // another organisation gets nothing of it
      const other = await t.user('dave', 'orgD', ['Application_Provider']);
      assert.equal((await t.req('GET', `/api/service/${sid}/instance/0/logs`, other)).statusCode, 403);
    } finally {
      await t.close();
    }
  });
});

describe('control plane failures', () => {
  test('a throwing control plane does not fail the request; the instance stays stored', async () => {
    const broken: ControlPlane = {
      instancesRequested() {
        throw new Error('link down');
      },
      instancesUndeployed() {
        throw new Error('link down');
      },
    };
    const t = await testRoot({ control: broken });
    try {
      const tok = await t.login('Admin');
      const app = await createApp(t, tok, 'broken', ['w']);
      const sid = app.microservices[0]!;
      const r = await t.req('POST', `/api/service/${sid}/instance`, tok);
      assert.equal(r.statusCode, 200);
      assert.equal((await t.store.listInstances({ service_id: sid })).length, 1);
      assert.equal((await t.req('DELETE', `/api/service/${sid}/instance/0`, tok)).statusCode, 200);
      assert.deepEqual((await t.store.listInstances({ service_id: sid })).map((i) => i.desired), ['stop']);
    } finally {
      await t.close();
    }
  });
});
