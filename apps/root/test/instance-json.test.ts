/**
 * Instance and service documents as prebuilt JSON text (docs.ts instanceJson/serviceJson, the
 * UsageBook's prebuilt history strings): the bytes the routes send equal what Fastify's
 * serializer writes for the documents built as objects (the path before), after each kind of
 * change: readings arriving (and the ring wrapping past Oakestra's 100), the SLA's memory
 * changing or going, the instance's row and status history changing, its cluster moving.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify, { type FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { OakEvent } from '@oak/contracts';
import { loadInstanceDoc, loadServiceDoc } from '../src/docs.ts';
import { InstanceDocSchema, ServiceDocSchema } from '../src/schemas.ts';
import { ADMIN_PASSWORD, testRoot, type TestRoot } from './helpers.ts';

let t: TestRoot;
let ref: FastifyInstance;
let token: string;
let appId = '';
let sid = '';

before(async () => {
  t = await testRoot();
  token = await t.login('Admin', ADMIN_PASSWORD);
  // the documents as objects through Fastify's serializer of the routes' schemas: what the routes sent before
  ref = Fastify();
  const svc = async (id: string) => {
    const s = await t.store.getService(id);
    const a = s && (await t.store.getApplication(s.application_id));
    if (!s || !a) throw new Error('no such service');
    return { s, a };
  };
  ref.get<{ Params: { id: string } }>('/svc/:id', { schema: { response: { 200: ServiceDocSchema } } }, async (req) => {
    const { s, a } = await svc(req.params.id);
    return loadServiceDoc(t.store, s, a, t.ctx.usage);
  });
  ref.get<{ Params: { id: string } }>('/app/:id', { schema: { response: { 200: Type.Array(ServiceDocSchema) } } }, async (req) => {
    const a = await t.store.getApplication(req.params.id);
    if (!a) throw new Error('no such application');
    return Promise.all((await t.store.listServices({ application_id: a.id })).map((s) => loadServiceDoc(t.store, s, a, t.ctx.usage)));
  });
  ref.get('/all', { schema: { response: { 200: Type.Array(ServiceDocSchema) } } }, async () => {
    const apps = new Map((await t.store.listApplications({})).map((a) => [a.id, a]));
    const out = [];
    for (const s of await t.store.listServices({})) {
      const a = apps.get(s.application_id);
      if (a) out.push(await loadServiceDoc(t.store, s, a, t.ctx.usage));
    }
    return out;
  });
  ref.get<{ Params: { id: string } }>('/inst/:id', { schema: { response: { 200: Type.Array(InstanceDocSchema) } } }, async (req) => {
    const { s, a } = await svc(req.params.id);
    return (await loadServiceDoc(t.store, s, a, t.ctx.usage)).instance_list;
  });
  ref.get<{ Params: { id: string; n: string } }>('/one/:id/:n', { schema: { response: { 200: InstanceDocSchema } } }, async (req) => {
    const { s } = await svc(req.params.id);
    const r = await t.store.getInstance(s.id, Number(req.params.n));
    if (!r) throw new Error('no such instance');
    return loadInstanceDoc(t.store, s, r, t.ctx.usage);
  });
  await ref.ready();
  const r = await t.req('POST', '/api/application/', token, {
    sla_version: 'v2.0',
    customerID: 'Admin',
    applications: [{
      application_name: 'shop',
      application_namespace: 'prod',
      application_desc: 'a "quoted" \\ description \u2028 with ünïcode',
      microservices: [
        { microservice_name: 'web', microservice_namespace: 'prod', virtualization: 'container', code: 'docker.io/library/nginx:1', memory: 100, vcpus: 1, port: '80:8080', environment: ['A="b"'], labels: { tier: 'front' } },
        { microservice_name: 'db', microservice_namespace: 'prod', virtualization: 'container', code: 'docker.io/library/postgres:16', vcpus: 1 },
      ],
    }],
  });
  assert.equal(r.statusCode, 200, r.body);
  const a = (r.json() as { applicationID: string; microservices: string[] }[])[0];
  appId = a?.applicationID ?? '';
  sid = a?.microservices[0] ?? '';
});

after(async () => {
  await ref.close();
  await t.close();
});

/** every route that carries instance documents answers the same bytes as the object path */
async function same(what: string): Promise<void> {
  const services = await t.store.listServices({ application_id: appId });
  const pairs: [string, string][] = [[`/api/services/${appId}`, `/app/${appId}`], ['/api/services/', '/all']];
  for (const s of services) {
    pairs.push([`/api/service/${s.id}`, `/svc/${s.id}`], [`/api/service/${s.id}/instances`, `/inst/${s.id}`]);
    for (const i of await t.store.listInstances({ service_id: s.id })) pairs.push([`/api/service/${s.id}/instance/${i.instance_number}`, `/one/${s.id}/${i.instance_number}`]);
  }
  for (const [url, refUrl] of pairs) {
    const got = await t.req('GET', url, token);
    const want = await ref.inject({ method: 'GET', url: refUrl });
    assert.equal(got.statusCode, 200, `${what}: ${url}: ${got.body}`);
    assert.equal(want.statusCode, 200, `${what}: ${refUrl}: ${want.body}`);
    assert.equal(got.headers['content-type'], want.headers['content-type'], `${what}: ${url}`);
    assert.equal(got.body, want.body, `${what}: ${url}`);
  }
}

const readings = (at: number, list: { n: number; cpu: number; mb: number }[], service = sid): void => {
  const s = { microserviceID: service, applicationID: appId, job_name: 'shop.prod.web.prod' };
  t.ctx.events.publish({ type: 'metrics', ...s, at, instances: list.map((x) => ({ instance_number: x.n, cpu_percent: x.cpu, memory_mb: x.mb })) } as OakEvent);
};

test('the routes answer the bytes of the object documents after every kind of change', async () => {
  const db = (await t.store.listServices({ application_id: appId })).find((s) => s.id !== sid)?.id ?? '';
  await same('no instances');
  for (const id of [sid, sid, sid, db]) assert.equal((await t.req('POST', `/api/service/${id}/instance`, token)).statusCode, 200);
  await same('requested, never placed, no readings');
  const cl = await t.store.upsertCluster('edge1', '48.26,11.67,10');
  await t.store.updateInstance(sid, 0, { cluster_id: cl.id, worker_id: 'w1', publicip: '192.0.2.7', status: 'RUNNING', status_detail: 'up "and" running\n', net: { nsip: '10.18.0.2', host_ip: '192.0.2.7', host_port: 50103, subnet: '10.18.0.0/26' } });
  await t.store.updateInstance(sid, 1, { cluster_id: cl.id, worker_id: 'w2', publicip: null, status: 'CREATING' });
  await same('placed, status history grown');
  readings(1_700_000_000_000, [{ n: 0, cpu: 12.345, mb: 25 }, { n: 1, cpu: 0, mb: 0 }]);
  await same('one reading');
  // past Oakestra's 100 and past the ring's 120: the ring wraps
  for (let k = 1; k <= 130; k++) readings(1_700_000_000_000 + k * 5000, [{ n: 0, cpu: (k * 7.777) % 100, mb: (k * 3.1) % 100 }, { n: 2, cpu: 1e-7 * k, mb: 1e6 / k }]);
  await same('130 readings');
  const one = (await t.req('GET', `/api/service/${sid}/instance/0`, token)).json() as { cpu_history: unknown[]; memory_history: unknown[] };
  assert.deepEqual([one.cpu_history.length, one.memory_history.length], [100, 100], "Oakestra's last 100 of the ring's 120");
  assert.equal((await t.req('PUT', `/api/service/${sid}`, token, { memory: 300 })).statusCode, 200);
  await same('the SLA memory changed (memory_percent of another base)');
  readings(1_700_001_000_000, [{ n: 0, cpu: 99.999, mb: 299.995 }]);
  await same('a reading after the memory changed');
  const sla = { ...(await t.store.getService(sid))?.sla } as Record<string, unknown>;
  delete sla.memory;
  await t.store.updateService(sid, { sla: sla as never });
  await same('no memory in the SLA any more (memory_percent null, memory_history empty)');
  const cl2 = await t.store.upsertCluster('edge2', '');
  await t.store.updateInstance(sid, 0, { cluster_id: cl2.id, worker_id: 'w9', status: 'RUNNING', net: null, restarts: 3, health: 'unhealthy' } as never);
  await same('moved to a cluster without a location, restarted, unhealthy');
  readings(1_700_002_000_000, [{ n: 0, cpu: 5, mb: 5 }], db);
  await same('readings of another service');
  assert.equal((await t.req('DELETE', `/api/service/${sid}/instance/1`, token)).statusCode, 200);
  await same('one instance on its way out (left out of the lists)');
});

test('a reading whose time has no ISO text is no reading (it would fail every document of its instance)', async () => {
  readings(8.64e15 + 1, [{ n: 0, cpu: 1, mb: 1 }]);
  readings(Number.NaN, [{ n: 0, cpu: 1, mb: 1 }]);
  await same('after hostile times');
});
