/**
 * Overlay addresses through the API (inject): service IPs on create (rr_ip honoured, a taken one
 * refused with 409 OAK_ADDRESS_CONFLICT naming the owner and nothing changed), moved on update,
 * instance IPs on deploy, released on undeploy and delete and handed out again, kept across a
 * restart of the root on a SQLite data dir, given lazily to services stored before the overlay.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApplicationDoc, InstanceDoc, ServiceDoc } from '@oak/contracts';
import { createStore } from '@oak/store';
import { testRoot, sla, snapshot, type TestRoot } from './helpers.ts';
import { releaseInstances } from '../src/ops.ts';

const V4 = /^10\.30\.\d+\.\d+$/;
const V6 = /^fdff::[0-9a-f:]+$/;

interface ErrorAnswer {
  error: { code: string; message: string; path?: string; hint?: string };
}

async function createApp(t: TestRoot, token: string, name: string, services: string[], extra: Record<string, unknown> = {}): Promise<{ app: ApplicationDoc; services: ServiceDoc[] }> {
  const r = await t.req('POST', '/api/application/', token, sla(name, services, extra));
  assert.equal(r.statusCode, 200, r.body);
  const [app] = r.json() as ApplicationDoc[];
  assert.ok(app);
  const docs: ServiceDoc[] = [];
  for (const id of app.microservices) docs.push((await t.req('GET', `/api/service/${id}`, token)).json() as ServiceDoc);
  return { app, services: docs };
}

describe('overlay addresses through the API', () => {
  let t: TestRoot;
  let admin: string;
  before(async () => {
    t = await testRoot();
    admin = await t.login('Admin');
  });
  after(() => t.close());

  test('every service gets a round-robin and a closest address of each family, all distinct', async () => {
    const { services } = await createApp(t, admin, 'addr', ['a', 'b']);
    const all: string[] = [];
    for (const s of services) {
      assert.match(s.service_ip ?? '', V4);
      assert.match(s.closest_ip ?? '', V4);
      assert.match(s.service_ip_v6 ?? '', V6);
      assert.match(s.closest_ip_v6 ?? '', V6);
      all.push(s.service_ip!, s.closest_ip!, s.service_ip_v6!, s.closest_ip_v6!);
    }
    assert.equal(new Set(all).size, all.length);
  });

  test('rr_ip is honoured; the same rr_ip again is 409 OAK_ADDRESS_CONFLICT naming the owner, and nothing is created', async () => {
    const { services } = await createApp(t, admin, 'rr', ['web'], { addresses: { rr_ip: '10.30.55.55', rr_ip_v6: 'fdff::55' } });
    assert.equal(services[0]?.service_ip, '10.30.55.55');
    assert.equal(services[0]?.service_ip_v6, 'fdff::55');
    const ipamBefore = await t.store.getIpam();
    const before = await snapshot(t.store);
    for (const body of [
      sla('rr2', ['web'], { addresses: { rr_ip: '10.30.55.55' } }),
      sla('rr3', ['x', 'y'], { addresses: { rr_ip_v6: 'fdff::55' } }),
    ]) {
      const r = await t.req('POST', '/api/application/', admin, body);
      assert.equal(r.statusCode, 409, r.body);
      const e = (r.json() as ErrorAnswer).error;
      assert.equal(e.code, 'OAK_ADDRESS_CONFLICT');
      assert.match(e.message, /rr\.test\.web\.test/, 'the owner is named');
      assert.match(e.path ?? '', /addresses\.rr_ip/);
    }
    // two new services asking for the same free address in one request: the second is refused
    const twice = await t.req('POST', '/api/application/', admin, sla('rr4', ['p', 'q'], { addresses: { rr_ip: '10.30.66.66' } }));
    assert.equal(twice.statusCode, 409, twice.body);
    assert.match((twice.json() as ErrorAnswer).error.message, /rr4\.test\.p\.test/);
    // POST /api/service/ is checked the same way
    const appId = (await t.req('GET', '/api/applications/', admin)).json() as ApplicationDoc[];
    const target = appId.find((a) => a.application_name === 'rr');
    const svc = await t.req('POST', '/api/service/', admin, { applicationID: target?.applicationID, microservice_name: 'other', microservice_namespace: 'test', virtualization: 'container', code: 'x', memory: 10, vcpus: 1, addresses: { rr_ip: '10.30.55.55' } });
    assert.equal(svc.statusCode, 409, svc.body);
    assert.equal((svc.json() as ErrorAnswer).error.code, 'OAK_ADDRESS_CONFLICT');
    assert.equal(await snapshot(t.store), before, 'nothing was created by the refused requests');
    assert.equal((await t.store.getIpam()).version, ipamBefore.version, 'the IPAM state is untouched');
    // an address in the worker pool is not a service address: outside the range, so one of the range instead
    const bad = await createApp(t, admin, 'rr5', ['web'], { addresses: { rr_ip_v6: 'fdff:18::5' } });
    assert.match(bad.services[0]?.service_ip_v6 ?? '', V6);
  });

  test('an rr_ip outside 10.30.0.0/16 (Oakestra\'s example 192.168.178.4) is accepted with a warning naming the range; the service gets an address of the range', async () => {
    const r = await t.req('POST', '/api/application/', admin, sla('outside', ['web'], { addresses: { rr_ip: '192.168.178.4', rr_ip_v6: '2001:db8::4' } }));
    assert.equal(r.statusCode, 200, r.body);
    const [app] = r.json() as (ApplicationDoc & { warnings?: { path: string; message: string }[] })[];
    const paths = (app?.warnings ?? []).map((w) => w.path);
    assert.ok(paths.includes('applications[0].microservices[0].addresses.rr_ip'), JSON.stringify(app?.warnings));
    assert.ok(paths.includes('applications[0].microservices[0].addresses.rr_ip_v6'), JSON.stringify(app?.warnings));
    assert.match(app?.warnings?.find((w) => w.path.endsWith('rr_ip'))?.message ?? '', /outside the service range 10\.30\.0\.0\/16/);
    assert.match(r.headers['oak-warnings'] as string, /10\.30\.0\.0\/16/);
    const svc = (await t.req('GET', `/api/service/${app?.microservices[0] ?? ''}`, admin)).json() as ServiceDoc;
    assert.match(svc.service_ip ?? '', V4);
    assert.match(svc.service_ip_v6 ?? '', V6);
    assert.deepEqual(svc.addresses, { rr_ip: '192.168.178.4', rr_ip_v6: '2001:db8::4' }, 'the SLA is kept as written');
    // two services asking for the same outside address do not conflict: neither gets it
    const again = await createApp(t, admin, 'outside2', ['web'], { addresses: { rr_ip: '192.168.178.4' } });
    assert.match(again.services[0]?.service_ip ?? '', V4);
    assert.notEqual(again.services[0]?.service_ip, svc.service_ip);
  });

  test('PUT moves a service to a free rr_ip, refuses a taken one (409, unchanged)', async () => {
    const { services } = await createApp(t, admin, 'mv', ['web']);
    const s = services[0]!;
    const moved = await t.req('PUT', `/api/service/${s.microserviceID}`, admin, { addresses: { rr_ip: '10.30.77.77' } });
    assert.equal(moved.statusCode, 200, moved.body);
    assert.equal((moved.json() as ServiceDoc).service_ip, '10.30.77.77');
    assert.equal((moved.json() as ServiceDoc).closest_ip, s.closest_ip, 'the closest IP stays');
    const taken = await t.req('PUT', `/api/service/${s.microserviceID}`, admin, { addresses: { rr_ip: '10.30.55.55' } });
    assert.equal(taken.statusCode, 409, taken.body);
    assert.equal((taken.json() as ErrorAnswer).error.code, 'OAK_ADDRESS_CONFLICT');
    const now = (await t.req('GET', `/api/service/${s.microserviceID}`, admin)).json() as ServiceDoc;
    assert.equal(now.service_ip, '10.30.77.77');
    assert.deepEqual(now.addresses, { rr_ip: '10.30.77.77' }, 'the refused SLA was not stored');
    // the old address is free again
    const reuse = await createApp(t, admin, 'mv2', ['web'], { addresses: { rr_ip: s.service_ip } });
    assert.equal(reuse.services[0]?.service_ip, s.service_ip);
  });

  test('instances get stable addresses; undeployed ones are released and handed out again; deleting a service frees everything', async () => {
    const { services } = await createApp(t, admin, 'inst', ['web']);
    const s = services[0]!;
    const add = async (): Promise<InstanceDoc> => {
      const r = await t.req('POST', `/api/service/${s.microserviceID}/instance`, admin);
      assert.equal(r.statusCode, 200, r.body);
      return r.json() as InstanceDoc;
    };
    const i0 = await add();
    const i1 = await add();
    for (const i of [i0, i1]) {
      assert.match(i.instance_ip ?? '', V4);
      assert.match(i.instance_ip_v6 ?? '', V6);
      assert.equal(i.nsip, null);
    }
    assert.notEqual(i0.instance_ip, i1.instance_ip);
    // the control plane was told with the addresses already stored
    const told = t.control.requested.at(-1)?.instances[0];
    assert.equal(told?.instance_ip, i1.instance_ip);
    const doc = (await t.req('GET', `/api/service/${s.microserviceID}`, admin)).json() as ServiceDoc;
    assert.deepEqual(doc.instance_list.map((i) => i.instance_ip), [i0.instance_ip, i1.instance_ip]);

    const del = await t.req('DELETE', `/api/service/${s.microserviceID}/instance/1`, admin);
    assert.equal(del.statusCode, 200, del.body);
    // issue 9: a stopping instance keeps its address until the control plane finishes it
    const i2 = await add();
    assert.equal(i2.instance_number, 2, 'numbers are never reused');
    assert.notEqual(i2.instance_ip, i1.instance_ip, 'the stopping instance still holds its address');
    // the control plane finishes the stop (its cluster confirmed): the address is released
    const row = await t.store.getService(s.microserviceID);
    await releaseInstances(t.ctx, row!, [(await t.store.getInstance(s.microserviceID, 1))!]);
    const i3 = await add();
    assert.equal(i3.instance_ip, i1.instance_ip, 'the released address is the lowest free one again');

    const before = await t.store.getIpam();
    const gone = await t.req('DELETE', `/api/service/${s.microserviceID}`, admin);
    assert.equal(gone.statusCode, 200, gone.body);
    const stats = (await t.store.getIpam()).state as { ipam: { services: { job: string }[]; instances: { job: string }[] } };
    assert.ok((await t.store.getIpam()).version > before.version);
    assert.equal(stats.ipam.services.some((e) => e.job.startsWith('inst.test.web.test')), false);
    assert.equal(stats.ipam.instances.some((e) => e.job === 'inst.test.web.test'), false);
    const again = await createApp(t, admin, 'inst2', ['web'], { addresses: { rr_ip: s.service_ip } });
    assert.equal(again.services[0]?.service_ip, s.service_ip);
  });

  test('deleting an application frees its services\' addresses', async () => {
    const { app, services } = await createApp(t, admin, 'gone', ['web'], { addresses: { rr_ip: '10.30.88.88' } });
    assert.equal(services[0]?.service_ip, '10.30.88.88');
    assert.equal((await t.req('DELETE', `/api/application/${app.applicationID}`, admin)).statusCode, 200);
    const again = await createApp(t, admin, 'gone2', ['web'], { addresses: { rr_ip: '10.30.88.88' } });
    assert.equal(again.services[0]?.service_ip, '10.30.88.88');
  });

  test('a service stored before the overlay (no addresses) gets them with its next instance', async () => {
    const org = await t.store.getOrganizationByName('root');
    const user = await t.store.getUserByName('Admin');
    assert.ok(org && user);
    const { services } = await t.store.createApplication({ name: 'old', namespace: 'test', description: '', user_id: user.id, organization_id: org.id }, [
      { job_name: 'old.test.web.test', name: 'web', namespace: 'test', sla: { microservice_name: 'web', microservice_namespace: 'test', virtualization: 'container', code: 'x', memory: 10, vcpus: 1 } },
    ]);
    const sid = services[0]!.id;
    assert.equal(((await t.req('GET', `/api/service/${sid}`, admin)).json() as ServiceDoc).service_ip, null);
    const r = await t.req('POST', `/api/service/${sid}/instance`, admin);
    assert.equal(r.statusCode, 200, r.body);
    assert.match((r.json() as InstanceDoc).instance_ip ?? '', V4);
    const doc = (await t.req('GET', `/api/service/${sid}`, admin)).json() as ServiceDoc;
    assert.match(doc.service_ip ?? '', V4);
    assert.match(doc.closest_ip_v6 ?? '', V6);
  });

  test('the OpenAPI document describes the overlay fields', async () => {
    const r = await t.req('GET', '/api/docs/json');
    assert.equal(r.statusCode, 200);
    const text = r.body;
    for (const f of ['service_ip', 'service_ip_v6', 'closest_ip', 'closest_ip_v6', 'instance_ip_v6', 'nsip', 'nsip_v6']) assert.ok(text.includes(`"${f}"`), f);
  });
});

describe('overlay addresses survive a restart of the root (SQLite data dir)', () => {
  test('the same addresses after a restart; new ones never collide with them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oak-overlay-'));
    try {
      const file = join(dir, 'oak.db');
      let store = await createStore({ sqlitePath: file });
      let t = await testRoot({ store });
      let admin = await t.login('Admin');
      const { services } = await createApp(t, admin, 'keep', ['web']);
      const s = services[0]!;
      const i0 = (await t.req('POST', `/api/service/${s.microserviceID}/instance`, admin)).json() as InstanceDoc;
      await t.close();
      await store.close();

      store = await createStore({ sqlitePath: file });
      t = await testRoot({ store });
      admin = await t.login('Admin');
      try {
        const doc = (await t.req('GET', `/api/service/${s.microserviceID}`, admin)).json() as ServiceDoc;
        assert.deepEqual([doc.service_ip, doc.service_ip_v6, doc.closest_ip, doc.closest_ip_v6], [s.service_ip, s.service_ip_v6, s.closest_ip, s.closest_ip_v6]);
        assert.equal(doc.instance_list[0]?.instance_ip, i0.instance_ip);
        const other = await createApp(t, admin, 'fresh', ['web']);
        const i1 = (await t.req('POST', `/api/service/${other.services[0]!.microserviceID}/instance`, admin)).json() as InstanceDoc;
        const taken = [s.service_ip, s.closest_ip, i0.instance_ip];
        for (const a of [other.services[0]?.service_ip, other.services[0]?.closest_ip, i1.instance_ip]) assert.ok(!taken.includes(a), `${a} is new`);
      } finally {
        await t.close();
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
