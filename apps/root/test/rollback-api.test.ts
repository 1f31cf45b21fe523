/**
 * Service versions over the API (issue 9): GET /api/service/{id}/history, POST
 * /api/service/{id}/rollback (default target, `to`, 404/409, hostile bodies, roles, audit), and
 * the version/desired/epoch fields of the documents.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { InstanceDoc, ServiceDoc, ServiceVersionDoc } from '@oak/contracts';
import { createApp, testRoot, type TestRoot } from './helpers.ts';

interface Err {
  error: { code: string; message: string; path?: string; hint?: string; details?: { path: string; message: string }[] };
}

describe('service history and rollback', () => {
  let t: TestRoot;
  let tok: string;
  before(async () => {
    t = await testRoot();
    tok = await t.user('alice', 'orgA', ['Application_Provider']);
  });
  after(async () => t.close());

  /** a service with versions 1 (memory 100), 2 (memory 200), 3 (memory 300) */
  async function threeVersions(name: string): Promise<string> {
    const app = await createApp(t, tok, name, ['web']);
    const sid = app.microservices[0]!;
    for (const memory of [200, 300]) {
      const r = await t.req('PUT', `/api/service/${sid}`, tok, { memory });
      assert.equal(r.statusCode, 200, r.body);
    }
    return sid;
  }
  const history = async (sid: string): Promise<ServiceVersionDoc[]> => {
    const r = await t.req('GET', `/api/service/${sid}/history`, tok);
    assert.equal(r.statusCode, 200, r.body);
    return r.json() as ServiceVersionDoc[];
  };

  test('history lists every version oldest first with who, why, outcome and the SLA; ServiceDoc has version', async () => {
    const sid = await threeVersions('hist');
    const doc = (await t.req('GET', `/api/service/${sid}`, tok)).json() as ServiceDoc;
    assert.equal(doc.version, 3);
    const h = await history(sid);
    assert.deepEqual(h.map((v) => [v.version, v.reason, v.current, v.sla.memory]), [
      [1, 'created', false, 100],
      [2, 'updated', false, 200],
      [3, 'updated', true, 300],
    ]);
    for (const v of h) {
      assert.equal(v.created_by_name, 'alice');
      assert.equal(typeof v.created_by, 'string');
      assert.ok(!Number.isNaN(Date.parse(v.created_at)));
    }
    // the older versions were superseded; the newest rolls (no outcome yet)
    assert.equal(h[2]?.outcome, null);
    assert.equal(h[0]?.outcome, 'superseded');
    // ?limit=N: the newest N; a bad limit is 400
    const two = (await t.req('GET', `/api/service/${sid}/history?limit=2`, tok)).json() as ServiceVersionDoc[];
    assert.deepEqual(two.map((v) => v.version), [2, 3]);
    for (const bad of ['0', '-1', 'x', '1001', '1e2', '1.5']) assert.equal((await t.req('GET', `/api/service/${sid}/history?limit=${bad}`, tok)).statusCode, 400, bad);
    // a PUT that changes nothing in the SLA is no new version
    assert.equal((await t.req('PUT', `/api/service/${sid}`, tok, { memory: 300 })).statusCode, 200);
    assert.equal((await history(sid)).length, 3);
  });

  test('rollback without `to`: the newest earlier version whose rollout completed, else the previous one', async () => {
    const sid = await threeVersions('rbdef');
    // nothing completed: the previous one (2)
    let r = await t.req('POST', `/api/service/${sid}/rollback`, tok, {});
    assert.equal(r.statusCode, 200, r.body);
    let doc = r.json() as ServiceDoc;
    assert.equal(doc.version, 4);
    assert.equal(doc.memory, 200);
    assert.ok(t.control.updated.some((s) => s.id === sid && s.version === 4), 'the control plane was told');
    let h = await history(sid);
    assert.equal(h.at(-1)?.reason, 'rollback to 2');
    assert.equal(h.at(-1)?.created_by_name, 'alice');
    assert.equal(h.at(-1)?.current, true);
    // version 1 completed: it is the default now
    await t.store.setVersionOutcome(sid, 1, 'complete');
    r = await t.req('POST', `/api/service/${sid}/rollback`, tok);
    assert.equal(r.statusCode, 200, r.body);
    doc = r.json() as ServiceDoc;
    assert.equal(doc.version, 5);
    assert.equal(doc.memory, 100);
    h = await history(sid);
    assert.equal(h.at(-1)?.reason, 'rollback to 1');
    assert.equal(h.length, 5);
  });

  test('rollback --to N; 404 for an unknown version; 409 for the current one or one with the same SLA', async () => {
    const sid = await threeVersions('rbto');
    const r = await t.req('POST', `/api/service/${sid}/rollback`, tok, { to: 1 });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal((r.json() as ServiceDoc).memory, 100);
    assert.equal((r.json() as ServiceDoc).version, 4);
    const nf = await t.req('POST', `/api/service/${sid}/rollback`, tok, { to: 99 });
    assert.equal(nf.statusCode, 404);
    assert.equal((nf.json() as Err).error.code, 'OAK_NOT_FOUND');
    const cur = await t.req('POST', `/api/service/${sid}/rollback`, tok, { to: 4 });
    assert.equal(cur.statusCode, 409);
    assert.match((cur.json() as Err).error.message, /current version/);
    // version 1 runs what 4 runs
    const same = await t.req('POST', `/api/service/${sid}/rollback`, tok, { to: 1 });
    assert.equal(same.statusCode, 409);
    assert.match((same.json() as Err).error.message, /same SLA/);
    assert.ok((same.json() as Err).error.hint);
    assert.equal((await history(sid)).length, 4, 'nothing stored by refused rollbacks');
  });

  test('rollback of a service with one version is 409 (nothing earlier)', async () => {
    const app = await createApp(t, tok, 'rbone', ['web']);
    const sid = app.microservices[0]!;
    const r = await t.req('POST', `/api/service/${sid}/rollback`, tok, {});
    assert.equal(r.statusCode, 409);
    assert.match((r.json() as Err).error.message, /no earlier version/);
  });

  test('hostile bodies: to -1, 0, "x", 1.5, 1e12, null, extra fields, not an object; nothing stored', async () => {
    const sid = await threeVersions('rbhost');
    const before = JSON.stringify(await history(sid));
    const bodies: unknown[] = [{ to: -1 }, { to: 0 }, { to: 'x' }, { to: '2' }, { to: 1.5 }, { to: 1e12 }, { to: null }, { to: [2] }, { to: { $gt: 0 } }, { to: 2, extra: 1 }, { force: true }, [1], 'to=2'];
    for (const b of bodies) {
      const r = await t.req('POST', `/api/service/${sid}/rollback`, tok, b);
      assert.ok(r.statusCode === 400 || r.statusCode === 415 || r.statusCode === 422, `${JSON.stringify(b)} -> ${r.statusCode} ${r.body}`);
      const e = (r.json() as Err).error;
      assert.match(e.code, /^OAK_/);
    }
    const bad = await t.req('POST', `/api/service/${sid}/rollback`, tok, { to: 1e12 });
    assert.equal(bad.statusCode, 422);
    assert.ok((bad.json() as Err).error.details?.some((d) => d.path === 'to'), bad.body);
    const extra = await t.req('POST', `/api/service/${sid}/rollback`, tok, { to: 2, sla: { privileged: true } });
    assert.equal(extra.statusCode, 422);
    assert.ok((extra.json() as Err).error.details?.some((d) => d.path.includes('sla')), extra.body);
    assert.equal(JSON.stringify(await history(sid)), before, 'nothing stored');
    // a huge or odd id is a 400 or 404, not a crash
    assert.equal((await t.req('POST', `/api/service/${'x'.repeat(5000)}/rollback`, tok, {})).statusCode, 400);
    assert.equal((await t.req('GET', '/api/service/nope/history', tok)).statusCode, 404);
    assert.equal((await t.req('POST', '/api/service/nope/rollback', tok, {})).statusCode, 404);
  });

  test('roles and organisations: as for updating a service; anonymous 401; audited', async () => {
    const sid = await threeVersions('rbrole');
    const infra = await t.user('ivan', 'orgA', ['Infrastructure_Provider']);
    const other = await t.user('bob', 'orgB', ['Application_Provider']);
    const orgAdmin = await t.user('olga', 'orgA', ['Organization_Admin']);
    for (const [who, want] of [
      [infra, 403],
      [other, 403],
    ] as const) {
      assert.equal((await t.req('GET', `/api/service/${sid}/history`, who)).statusCode, want);
      assert.equal((await t.req('POST', `/api/service/${sid}/rollback`, who, {})).statusCode, want);
      // PUT gives the same answer
      assert.equal((await t.req('PUT', `/api/service/${sid}`, who, { memory: 1 })).statusCode, want);
    }
    assert.equal((await t.req('GET', `/api/service/${sid}/history`)).statusCode, 401);
    assert.equal((await t.req('POST', `/api/service/${sid}/rollback`, undefined, {})).statusCode, 401);
    assert.equal((await history(sid)).length, 3);
    const ok = await t.req('POST', `/api/service/${sid}/rollback`, orgAdmin, { to: 1 });
    assert.equal(ok.statusCode, 200, ok.body);
    const admin = await t.login('Admin');
    const ok2 = await t.req('POST', `/api/service/${sid}/rollback`, admin, { to: 2 });
    assert.equal(ok2.statusCode, 200, ok2.body);
    const h = await history(sid);
    assert.deepEqual(h.slice(3).map((v) => [v.reason, v.created_by_name]), [
      ['rollback to 1', 'olga'],
      ['rollback to 2', 'Admin'],
    ]);
    await t.ctx.audit!.idle();
    const audit = await t.store.listAudit({});
    const rb = audit.filter((e) => e.route === '/api/service/:id/rollback');
    assert.ok(rb.some((e) => e.user_name === 'olga' && e.status === 200 && e.target === sid), JSON.stringify(rb));
    assert.ok(rb.some((e) => e.user_name === 'ivan' && e.status === 403));
  });

  test('a rollback to a privileged SLA needs an Admin, like setting it', async () => {
    const admin = await t.login('Admin');
    const app = await createApp(t, admin, 'rbpriv', ['web']);
    const sid = app.microservices[0]!;
    assert.equal((await t.req('PUT', `/api/service/${sid}`, admin, { privileged: true })).statusCode, 200);
    assert.equal((await t.req('PUT', `/api/service/${sid}`, admin, { privileged: false })).statusCode, 200);
    const orgAdmin = await t.user('pia', (await t.store.getOrganization(app.organization_id))!.name, ['Organization_Admin']);
    const r = await t.req('POST', `/api/service/${sid}/rollback`, orgAdmin, { to: 2 });
    assert.equal(r.statusCode, 403, r.body);
    assert.equal((await t.req('POST', `/api/service/${sid}/rollback`, admin, { to: 2 })).statusCode, 200);
  });

  test('delete paths with stopping instances: service and application deletes still work; a rename waits until the stop is finished', async () => {
    const app = await createApp(t, tok, 'rbdel', ['web', 'db']);
    const [web, db] = app.microservices as [string, string];
    for (const sid of [web, web, db]) assert.equal((await t.req('POST', `/api/service/${sid}/instance`, tok)).statusCode, 200);
    assert.equal((await t.req('DELETE', `/api/service/${web}/instance/0`, tok)).statusCode, 200);
    // a rename of the service waits for the stopping instance to be UNDEPLOYED (and the other one to go)
    assert.equal((await t.req('DELETE', `/api/service/${web}/instance/1`, tok)).statusCode, 200);
    const early = await t.req('PUT', `/api/service/${web}`, tok, { microservice_name: 'web2' });
    assert.equal(early.statusCode, 409, early.body);
    for (const n of [0, 1]) await t.store.updateInstance(web, n, { status: 'UNDEPLOYED', status_detail: 'confirmed' });
    const renamed = await t.req('PUT', `/api/service/${web}`, tok, { microservice_name: 'web2' });
    assert.equal(renamed.statusCode, 200, renamed.body);
    // the service delete takes its rows with it and tells the control plane about the unfinished ones
    const told = t.control.undeployed.length;
    assert.equal((await t.req('DELETE', `/api/service/${db}`, tok)).statusCode, 200);
    const und = t.control.undeployed.slice(told);
    assert.deepEqual(und.map((u) => [u.service.id, u.instances.map((i) => [i.instance_number, i.desired])]), [[db, [[0, 'stop']]]]);
    assert.equal((await t.req('GET', `/api/service/${db}/history`, tok)).statusCode, 404);
    assert.deepEqual(await t.store.listInstances({ service_id: db }), []);
    assert.equal((await t.req('DELETE', `/api/application/${app.applicationID}`, tok)).statusCode, 200);
    assert.deepEqual(await t.store.listInstances({ service_id: web }), []);
  });

  test('the OpenAPI document lists history, rollback (with its body) and the new instance routes', async () => {
    const r = await t.req('GET', '/api/docs/json');
    assert.equal(r.statusCode, 200);
    const spec = r.json() as { paths: Record<string, Record<string, { requestBody?: object; responses?: Record<string, unknown> }>> };
    assert.ok(spec.paths['/api/service/{id}/history']?.get?.responses?.['200']);
    assert.ok(spec.paths['/api/service/{id}/rollback']?.post?.requestBody);
    assert.ok(spec.paths['/api/service/{id}/instances']?.get);
    assert.ok(spec.paths['/api/service/{id}/instance/{n}']?.get);
    assert.ok(spec.paths['/api/service/{id}/instance/{n}']?.delete);
  });

  test('instances carry service_version, desired, epoch and replaces', async () => {
    const app = await createApp(t, tok, 'rbinst', ['web']);
    const sid = app.microservices[0]!;
    assert.equal((await t.req('PUT', `/api/service/${sid}`, tok, { memory: 150 })).statusCode, 200);
    const i = (await t.req('POST', `/api/service/${sid}/instance`, tok)).json() as InstanceDoc;
    assert.equal(i.service_version, 2);
    assert.equal(i.desired, 'run');
    assert.equal(i.epoch, 0);
    assert.equal(i.replaces, null);
    const doc = (await t.req('GET', `/api/service/${sid}`, tok)).json() as ServiceDoc;
    assert.deepEqual(doc.instance_list.map((x) => [x.instance_number, x.service_version, x.desired]), [[i.instance_number, 2, 'run']]);
  });
});
