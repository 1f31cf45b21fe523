/**
 * The one behaviour suite every Store backend must pass. A backend gives `open()`, which opens a
 * Store on the same underlying database each time (so reopening shows what persisted).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConflictError, NotFoundError } from '@oak/contracts';
import type { Microservice } from '@oak/contracts';
import type { ApplicationRow, NewService, Store } from '../src/index.ts';

export interface Backend {
  kind: 'sqlite' | 'postgres';
  open(): Promise<Store>;
  cleanup?(): Promise<void>;
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const HEX24 = /^[0-9a-f]{24}$/;

let seq = 0;
const uniq = (p: string): string => `${p}${++seq}x${Math.random().toString(36).slice(2, 8)}`;

function svc(app: string, name: string, extra: Record<string, unknown> = {}): NewService {
  const sla = {
    microservice_name: name,
    microservice_namespace: 'test',
    virtualization: 'container',
    code: 'docker.io/library/nginx:latest',
    memory: 100,
    vcpus: 1,
    ...extra,
  } as Microservice;
  return { job_name: `${app}.test.${name}.test`, name, namespace: 'test', sla };
}

const isConflict = (e: unknown): boolean => e instanceof ConflictError && e.code === 'OAK_CONFLICT' && e.status === 409;
const isNotFound = (e: unknown): boolean => e instanceof NotFoundError && e.code === 'OAK_NOT_FOUND' && e.status === 404;

export function storeSuite(b: Backend): void {
  describe(`Store on ${b.kind}`, () => {
    let s: Store;

    before(async () => {
      s = await b.open();
    });
    after(async () => {
      await s?.close();
      await b.cleanup?.();
    });

    /** an organisation, a user in it and an application with the given services */
    async function fixture(services: string[] = ['server']) {
      const org = await s.createOrganization(uniq('org'));
      const user = await s.createUser({ name: uniq('user'), password_hash: 'h', roles: ['Application_Provider'], organization_id: org.id });
      const appName = uniq('app');
      const created = await s.createApplication(
        { name: appName, namespace: 'test', description: 'demo', user_id: user.id, organization_id: org.id },
        services.map((n) => svc(appName, n)),
      );
      return { org, user, appName, app: created.application, services: created.services };
    }

    /** everything an application owns, to compare before and after a refused write */
    async function snapshot() {
      const services = await s.listServices();
      const instances = await s.listInstances();
      return {
        orgs: await s.listOrganizations(),
        users: await s.listUsers(),
        apps: await s.listApplications(),
        services,
        instances,
        history: await Promise.all(instances.map((i) => s.instanceHistory(i.service_id, i.instance_number))),
        clusters: await s.listClusters(),
      };
    }

    it('reports its backend and migrates idempotently', async () => {
      assert.equal(s.kind, b.kind);
      await s.migrate();
      await s.migrate();
      const again = await b.open();
      await again.close();
    });

    it('organisations: create, read, unique name, delete rules', async () => {
      const name = uniq('org');
      const o = await s.createOrganization(name);
      assert.match(o.id, HEX24);
      assert.match(o.created_at, ISO);
      assert.deepEqual(await s.getOrganization(o.id), o);
      assert.deepEqual(await s.getOrganizationByName(name), o);
      assert.equal(await s.getOrganization('0'.repeat(24)), undefined);
      assert.equal(await s.getOrganizationByName('nope'), undefined);
      assert.ok((await s.listOrganizations()).some((x) => x.id === o.id));

      const before = await snapshot();
      await assert.rejects(s.createOrganization(name), isConflict);
      await assert.rejects(s.deleteOrganization('f'.repeat(24)), isNotFound);
      assert.deepEqual(await snapshot(), before);

      const user = await s.createUser({ name: uniq('u'), password_hash: 'h', roles: [], organization_id: o.id });
      await assert.rejects(s.deleteOrganization(o.id), isConflict);
      assert.deepEqual(await s.getOrganization(o.id), o);
      await s.deleteUser(user.id);
      await s.deleteOrganization(o.id);
      assert.equal(await s.getOrganization(o.id), undefined);
      await assert.rejects(s.deleteOrganization(o.id), isNotFound);
    });

    it('organisations with applications cannot be deleted', async () => {
      const f = await fixture();
      await assert.rejects(s.deleteOrganization(f.org.id), isConflict);
      assert.ok(await s.getOrganization(f.org.id));
      assert.ok(await s.getApplication(f.app.id));
    });

    it('users: create, read, update, list, unique name, delete rules', async () => {
      const org = await s.createOrganization(uniq('org'));
      const other = await s.createOrganization(uniq('org'));
      const name = uniq('user');
      const u = await s.createUser({ name, password_hash: 'hash1', roles: ['Admin', 'Organization_Admin'], organization_id: org.id });
      assert.match(u.id, HEX24);
      assert.match(u.created_at, ISO);
      assert.equal(u.email, null);
      assert.deepEqual(await s.getUser(u.id), u);
      assert.deepEqual(await s.getUserByName(name), u);
      assert.equal(await s.getUser('nope'), undefined);
      assert.equal(await s.getUserByName('nope'), undefined);
      const v = await s.createUser({ name: uniq('user'), email: 'v@example.org', password_hash: 'h', roles: [], organization_id: other.id });
      assert.equal(v.email, 'v@example.org');
      assert.deepEqual(await s.listUsers({ organization_id: org.id }), [u]);
      assert.deepEqual(await s.listUsers({ organization_id: other.id }), [v]);
      const all = await s.listUsers();
      assert.ok(all.some((x) => x.id === u.id) && all.some((x) => x.id === v.id));

      const before = await snapshot();
      await assert.rejects(s.createUser({ name, password_hash: 'x', roles: [], organization_id: other.id }), isConflict);
      await assert.rejects(s.createUser({ name: uniq('user'), password_hash: 'x', roles: [], organization_id: 'missing' }), isNotFound);
      await assert.rejects(s.updateUser('missing', { email: 'x' }), isNotFound);
      await assert.rejects(s.deleteUser('missing'), isNotFound);
      assert.deepEqual(await snapshot(), before);

      const upd = await s.updateUser(u.id, { email: 'u@example.org', roles: ['Application_Provider'], password_hash: 'hash2' });
      assert.deepEqual(upd, { ...u, email: 'u@example.org', roles: ['Application_Provider'], password_hash: 'hash2', token_version: u.token_version + 1 });
      assert.deepEqual(await s.getUser(u.id), upd);
      assert.deepEqual(await s.updateUser(u.id, {}), upd);
      const cleared = await s.updateUser(u.id, { email: null });
      assert.equal(cleared.email, null);

      await s.deleteUser(v.id);
      assert.equal(await s.getUser(v.id), undefined);
      await assert.rejects(s.deleteUser(v.id), isNotFound);
    });

    it('users who own applications cannot be deleted', async () => {
      const f = await fixture();
      await assert.rejects(s.deleteUser(f.user.id), isConflict);
      assert.deepEqual(await s.getUser(f.user.id), f.user);
    });

    it('createApplication stores the application and its services; SLA JSON round-trips', async () => {
      const org = await s.createOrganization(uniq('org'));
      const user = await s.createUser({ name: uniq('user'), password_hash: 'h', roles: [], organization_id: org.id });
      const appName = uniq('app');
      const odd = {
        port: '8080:80/tcp;9000/udp',
        cmd: ['nginx', '-g', 'daemon off;'],
        constraints: [{ type: 'geo', location: '48.1,11.5', threshold: 100 }],
        x_unknown: { nested: [1, 'two', null, true, { deep: 'é ☃ "q"' }], n: 1.5e-7 },
        labels: { tier: 'front' },
      };
      const { application, services } = await s.createApplication(
        { name: appName, namespace: 'test', description: 'd', user_id: user.id, organization_id: org.id },
        [svc(appName, 'server', odd), svc(appName, 'client')],
      );
      assert.match(application.id, HEX24);
      assert.match(application.created_at, ISO);
      assert.equal(application.created_at, application.updated_at);
      assert.deepEqual(await s.getApplication(application.id), application);
      assert.equal(services.length, 2);
      for (const sv of services) {
        assert.match(sv.id, HEX24);
        assert.equal(sv.application_id, application.id);
        assert.equal(sv.organization_id, org.id);
        assert.equal(sv.user_id, user.id);
        assert.deepEqual(await s.getService(sv.id), sv);
      }
      const server = await s.getServiceByJobName(`${appName}.test.server.test`);
      assert.deepEqual(server?.sla, svc(appName, 'server', odd).sla);
      assert.deepEqual((server?.sla as Record<string, unknown>)['x_unknown'], odd.x_unknown);
      assert.deepEqual(await s.listServices({ application_id: application.id }), services);
      assert.deepEqual(await s.listServices({ organization_id: org.id }), services);
      assert.deepEqual(await s.listApplications({ organization_id: org.id }), [application]);
      assert.deepEqual(await s.listApplications({ user_id: user.id }), [application]);
      assert.deepEqual(await s.listApplications({ organization_id: org.id, user_id: 'other' }), []);
      assert.ok((await s.listApplications()).some((a) => a.id === application.id));

      // an application without services is allowed
      const empty = await s.createApplication(
        { name: uniq('app'), namespace: 'test', description: '', user_id: user.id, organization_id: org.id },
        [],
      );
      assert.deepEqual(empty.services, []);
    });

    it('application uniqueness is (organization, name, namespace)', async () => {
      const f = await fixture();
      const base = { name: f.appName, namespace: 'test', description: '', user_id: f.user.id, organization_id: f.org.id };
      const before = await snapshot();
      await assert.rejects(s.createApplication(base, []), isConflict);
      await assert.rejects(s.createApplication(base, [svc(uniq('other'), 'server')]), isConflict);
      assert.deepEqual(await snapshot(), before);
      // another namespace, or another organisation, is fine
      await s.createApplication({ ...base, namespace: 'prod' }, []);
      const org2 = await s.createOrganization(uniq('org'));
      const user2 = await s.createUser({ name: uniq('user'), password_hash: 'h', roles: [], organization_id: org2.id });
      await s.createApplication({ ...base, user_id: user2.id, organization_id: org2.id }, []);
      // unknown organisation or user
      await assert.rejects(s.createApplication({ ...base, name: uniq('a'), organization_id: 'missing' }, []), isNotFound);
      await assert.rejects(s.createApplication({ ...base, name: uniq('a'), user_id: 'missing' }, []), isNotFound);
    });

    it('createApplication is atomic: a failing service insert leaves no application', async () => {
      const f = await fixture(['server']);
      const before = await snapshot();
      const name = uniq('app');
      const app = { name, namespace: 'test', description: '', user_id: f.user.id, organization_id: f.org.id };
      // second service clashes with an existing job name
      await assert.rejects(
        s.createApplication(app, [svc(name, 'fine'), { ...svc(name, 'clash'), job_name: f.services[0]!.job_name }]),
        isConflict,
      );
      // two services with the same job name in one request
      await assert.rejects(s.createApplication(app, [svc(name, 'twin'), svc(name, 'twin')]), isConflict);
      assert.deepEqual(await snapshot(), before);
      assert.equal(await s.getServiceByJobName(`${name}.test.fine.test`), undefined);
      assert.deepEqual(await s.listApplications({ organization_id: f.org.id }), [f.app]);
    });

    it('updateApplication changes fields, keeps uniqueness, knows unknown ids', async () => {
      const f = await fixture();
      const g = await s.createApplication(
        { name: uniq('app'), namespace: 'test', description: '', user_id: f.user.id, organization_id: f.org.id },
        [],
      );
      await new Promise((r) => setTimeout(r, 5));
      const upd = await s.updateApplication(f.app.id, { description: 'new text' });
      assert.equal(upd.description, 'new text');
      assert.equal(upd.name, f.app.name);
      assert.equal(upd.created_at, f.app.created_at);
      assert.ok(upd.updated_at > f.app.updated_at);
      assert.match(upd.updated_at, ISO);
      assert.deepEqual(await s.getApplication(f.app.id), upd);
      assert.deepEqual(await s.updateApplication(f.app.id, {}), upd);

      const before = await snapshot();
      await assert.rejects(s.updateApplication(g.application.id, { name: f.app.name }), isConflict);
      await assert.rejects(s.updateApplication('missing', { description: 'x' }), isNotFound);
      await assert.rejects(s.updateApplication('missing', {}), isNotFound);
      assert.deepEqual(await snapshot(), before);

      const renamed = await s.updateApplication(g.application.id, { name: f.app.name, namespace: 'other' });
      assert.equal(renamed.namespace, 'other');
    });

    it('deleteApplication removes its services, instances and history', async () => {
      const f = await fixture(['a', 'b']);
      const keep = await fixture(['k']);
      for (const sv of f.services) {
        const i = await s.addInstance(sv.id, 'REQUESTED');
        await s.updateInstance(sv.id, i.instance_number, { status: 'RUNNING' });
      }
      const kept = await s.addInstance(keep.services[0]!.id, 'REQUESTED');
      await s.deleteApplication(f.app.id);
      assert.equal(await s.getApplication(f.app.id), undefined);
      for (const sv of f.services) {
        assert.equal(await s.getService(sv.id), undefined);
        assert.equal(await s.getServiceByJobName(sv.job_name), undefined);
        assert.deepEqual(await s.listInstances({ service_id: sv.id }), []);
        assert.deepEqual(await s.instanceHistory(sv.id, 0), []);
      }
      assert.deepEqual(await s.listServices({ application_id: f.app.id }), []);
      assert.deepEqual(await s.getInstance(kept.service_id, 0), kept);
      assert.equal((await s.instanceHistory(kept.service_id, 0)).length, 1);
      await assert.rejects(s.deleteApplication(f.app.id), isNotFound);
      // the names are free again
      await s.createApplication(
        { name: f.appName, namespace: 'test', description: '', user_id: f.user.id, organization_id: f.org.id },
        [svc(f.appName, 'a')],
      );
    });

    it('services: create, read, update, unique job name, delete', async () => {
      const f = await fixture(['one']);
      const sv = await s.createService(f.app.id, svc(f.appName, 'two', { replicas: 3 }));
      assert.match(sv.id, HEX24);
      assert.equal(sv.organization_id, f.org.id);
      assert.equal(sv.user_id, f.user.id);
      assert.match(sv.created_at, ISO);
      assert.deepEqual(await s.getService(sv.id), sv);
      assert.deepEqual(await s.getServiceByJobName(sv.job_name), sv);
      assert.equal(await s.getService('missing'), undefined);
      assert.equal(await s.getServiceByJobName('a.b.c.d'), undefined);
      assert.deepEqual(await s.listServices({ application_id: f.app.id }), [f.services[0], sv]);
      assert.deepEqual(await s.listServices({ application_id: f.app.id, organization_id: 'other' }), []);

      const before = await snapshot();
      await assert.rejects(s.createService(f.app.id, svc(f.appName, 'one')), isConflict);
      await assert.rejects(s.createService('missing', svc(uniq('x'), 'one')), isNotFound);
      await assert.rejects(s.updateService(sv.id, { job_name: f.services[0]!.job_name }), isConflict);
      await assert.rejects(s.updateService('missing', { name: 'x' }), isNotFound);
      await assert.rejects(s.deleteService('missing'), isNotFound);
      assert.deepEqual(await snapshot(), before);

      const newSla = { ...sv.sla, memory: 256, extra_field: { keep: ['me'] } } as Microservice;
      const upd = await s.updateService(sv.id, { sla: newSla });
      assert.deepEqual(upd.sla, newSla);
      assert.equal(upd.job_name, sv.job_name);
      assert.deepEqual(await s.getService(sv.id), upd);
      assert.deepEqual(await s.updateService(sv.id, {}), upd);
      const renamed = await s.updateService(sv.id, { job_name: `${f.appName}.test.three.test`, name: 'three' });
      assert.deepEqual(await s.getServiceByJobName(`${f.appName}.test.three.test`), renamed);
      assert.equal(await s.getServiceByJobName(sv.job_name), undefined);

      await s.addInstance(sv.id, 'RUNNING');
      await s.deleteService(sv.id);
      assert.equal(await s.getService(sv.id), undefined);
      assert.deepEqual(await s.listInstances({ service_id: sv.id }), []);
      assert.deepEqual(await s.instanceHistory(sv.id, 0), []);
      assert.deepEqual(await s.listServices({ application_id: f.app.id }), [f.services[0]]);
      await assert.rejects(s.deleteService(sv.id), isNotFound);
    });

    it('addInstance numbers max + 1 from 0; delete and NotFound rules', async () => {
      const f = await fixture();
      const id = f.services[0]!.id;
      const i0 = await s.addInstance(id, 'REQUESTED');
      assert.deepEqual(
        { ...i0, created_at: '', updated_at: '' },
        {
          service_id: id, instance_number: 0, status: 'REQUESTED', status_detail: '', cluster_id: null, worker_id: null,
          publicip: null, instance_ip: null, created_at: '', updated_at: '',
        },
      );
      assert.match(i0.created_at, ISO);
      const i1 = await s.addInstance(id, 'REQUESTED', 'NoActiveClusterWithCapacity');
      assert.equal(i1.instance_number, 1);
      assert.equal(i1.status_detail, 'NoActiveClusterWithCapacity');
      assert.equal((await s.addInstance(id, 'REQUESTED')).instance_number, 2);
      await s.deleteInstance(id, 1);
      assert.equal(await s.getInstance(id, 1), undefined);
      assert.equal((await s.addInstance(id, 'REQUESTED')).instance_number, 3);
      await s.deleteInstance(id, 3);
      assert.equal((await s.addInstance(id, 'REQUESTED')).instance_number, 3);
      assert.deepEqual((await s.listInstances({ service_id: id })).map((i) => i.instance_number), [0, 2, 3]);
      assert.deepEqual(await s.getInstance(id, 0), i0);

      const before = await snapshot();
      await assert.rejects(s.addInstance('missing', 'REQUESTED'), isNotFound);
      await assert.rejects(s.deleteInstance(id, 1), isNotFound);
      await assert.rejects(s.updateInstance(id, 99, { status: 'RUNNING' }), isNotFound);
      await assert.rejects(s.updateInstance('missing', 0, {}), isNotFound);
      assert.deepEqual(await snapshot(), before);
    });

    it('concurrent addInstance calls never share a number', async () => {
      const f = await fixture();
      const id = f.services[0]!.id;
      const got = await Promise.all(Array.from({ length: 25 }, () => s.addInstance(id, 'REQUESTED')));
      assert.deepEqual(got.map((i) => i.instance_number).sort((a, b) => a - b), Array.from({ length: 25 }, (_, i) => i));
      assert.equal((await s.listInstances({ service_id: id })).length, 25);
    });

    it('updateInstance patches fields and appends history on status changes, in order', async () => {
      const f = await fixture();
      const id = f.services[0]!.id;
      const i = await s.addInstance(id, 'REQUESTED', 'waiting');
      const steps = ['CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'CREATED', 'RUNNING'] as const;
      let last = i;
      for (const st of steps) last = await s.updateInstance(id, 0, { status: st, status_detail: `now ${st}` });
      assert.equal(last.status, 'RUNNING');
      // same status, or no status: no history row
      await s.updateInstance(id, 0, { status: 'RUNNING', publicip: '192.0.2.7' });
      const placed = await s.updateInstance(id, 0, { cluster_id: 'c1', worker_id: 'w1', instance_ip: '10.18.0.5' });
      assert.deepEqual(
        { ...placed, updated_at: '' },
        { ...i, status: 'RUNNING', status_detail: 'now RUNNING', cluster_id: 'c1', worker_id: 'w1', publicip: '192.0.2.7', instance_ip: '10.18.0.5', updated_at: '' },
      );
      assert.equal(placed.created_at, i.created_at);
      assert.deepEqual(await s.getInstance(id, 0), placed);
      assert.deepEqual(await s.updateInstance(id, 0, {}), placed);
      const dead = await s.updateInstance(id, 0, { status: 'DEAD', status_detail: 'worker lost' });

      const h = await s.instanceHistory(id, 0);
      assert.deepEqual(
        h.map((r) => [r.status, r.status_detail]),
        [['REQUESTED', 'waiting'], ...steps.map((st) => [st, `now ${st}`]), ['DEAD', 'worker lost']],
      );
      for (const r of h) {
        assert.equal(r.service_id, id);
        assert.equal(r.instance_number, 0);
        assert.match(r.at, ISO);
      }
      assert.equal(h[0]!.at, i.created_at);
      assert.equal(h.at(-1)!.at, dead.updated_at);
      for (let k = 1; k < h.length; k++) assert.ok(h[k]!.at >= h[k - 1]!.at);
      assert.deepEqual(await s.instanceHistory(id, 42), []);

      // history of a deleted instance goes with it, and a reused number starts fresh
      await s.deleteInstance(id, 0);
      assert.deepEqual(await s.instanceHistory(id, 0), []);
      await s.addInstance(id, 'REQUESTED');
      assert.equal((await s.instanceHistory(id, 0)).length, 1);
    });

    it('listInstances filters by service, cluster and statuses', async () => {
      const f = await fixture(['a', 'b']);
      const [a, b2] = [f.services[0]!.id, f.services[1]!.id];
      const cl = uniq('cluster');
      await s.addInstance(a, 'RUNNING');
      await s.addInstance(a, 'REQUESTED');
      await s.addInstance(b2, 'FAILED', 'oom');
      await s.updateInstance(a, 0, { cluster_id: cl });
      await s.updateInstance(b2, 0, { cluster_id: cl });
      const key = (r: { service_id: string; instance_number: number }) => `${r.service_id === a ? 'a' : 'b'}${r.instance_number}`;
      assert.deepEqual((await s.listInstances({ service_id: a })).map(key), ['a0', 'a1']);
      assert.deepEqual((await s.listInstances({ cluster_id: cl })).map(key).sort(), ['a0', 'b0']);
      assert.deepEqual((await s.listInstances({ cluster_id: cl, statuses: ['RUNNING', 'CREATED'] })).map(key), ['a0']);
      assert.deepEqual((await s.listInstances({ service_id: a, statuses: ['REQUESTED'] })).map(key), ['a1']);
      assert.deepEqual(await s.listInstances({ service_id: a, statuses: [] }), []);
      const all = await s.listInstances({ statuses: ['FAILED'] });
      assert.ok(all.some((r) => r.service_id === b2) && all.every((r) => r.status === 'FAILED'));
      assert.ok((await s.listInstances()).length >= 3);
    });

    it('clusters: upsert by name, update, JSON resources, NotFound', async () => {
      const name = uniq('cluster');
      const c = await s.upsertCluster(name, null);
      assert.match(c.id, HEX24);
      assert.match(c.created_at, ISO);
      assert.deepEqual({ ...c, id: '', created_at: '' }, { id: '', name, location: null, status: 'INACTIVE', last_seen: null, resources: null, created_at: '' });
      assert.deepEqual(await s.upsertCluster(name, null), c);
      const moved = await s.upsertCluster(name, '48.1,11.5,50');
      assert.deepEqual(moved, { ...c, location: '48.1,11.5,50' });
      assert.deepEqual(await s.upsertCluster(name, null), moved);
      assert.deepEqual(await s.getCluster(c.id), moved);

      const resources = {
        cpu_cores_free: 3.5, cpu_cores_total: 4, memory_free_mb: 1024, memory_total_mb: 2048, gpus_free: 0,
        virtualizations: ['container', 'wasm'], workers: 1,
        worker_summary: [{ id: 'w1', name: 'pi', cpu_cores_free: 3.5, memory_free_mb: 1024, virtualizations: ['container'], location: null }],
      } as const;
      const seen = new Date().toISOString();
      const upd = await s.updateCluster(c.id, { status: 'ACTIVE', last_seen: seen, resources: structuredClone(resources) as never });
      assert.deepEqual(upd, { ...moved, status: 'ACTIVE', last_seen: seen, resources });
      assert.deepEqual(await s.getCluster(c.id), upd);
      assert.deepEqual(await s.updateCluster(c.id, {}), upd);
      const cleared = await s.updateCluster(c.id, { resources: null, location: null, status: 'INACTIVE' });
      assert.equal(cleared.resources, null);
      assert.equal(cleared.location, null);
      assert.ok((await s.listClusters()).some((x) => x.id === c.id));

      const other = await s.upsertCluster(uniq('cluster'), 'x');
      assert.notEqual(other.id, c.id);
      const before = await snapshot();
      await assert.rejects(s.updateCluster('missing', { status: 'ACTIVE' }), isNotFound);
      await assert.rejects(s.updateCluster('missing', {}), isNotFound);
      assert.deepEqual(await snapshot(), before);
      assert.equal(await s.getCluster('missing'), undefined);
      // concurrent upserts of one name agree on one cluster
      const n2 = uniq('cluster');
      const many = await Promise.all(Array.from({ length: 8 }, () => s.upsertCluster(n2, null)));
      assert.equal(new Set(many.map((x) => x.id)).size, 1);
    });

    it('settings: insert if absent, concurrent callers agree', async () => {
      const key = uniq('jwt_secret');
      assert.equal(await s.getSetting(key), undefined);
      assert.equal(await s.setSettingIfAbsent(key, 'first'), 'first');
      assert.equal(await s.setSettingIfAbsent(key, 'second'), 'first');
      assert.equal(await s.getSetting(key), 'first');
      const k2 = uniq('link_token');
      const got = await Promise.all(Array.from({ length: 10 }, (_, i) => s.setSettingIfAbsent(k2, `v${i}`)));
      assert.equal(new Set(got).size, 1);
      assert.equal(await s.getSetting(k2), got[0]);
    });

    it('join tokens: create, list, bind once, record use, revoke, NotFound, Conflict', async () => {
      const id = uniq('t').slice(-8).padStart(8, 'a');
      const c = await s.createJoinToken({ id, kind: 'cluster', name: null, cluster: null, secret_hash: 'ab'.repeat(32), created_by: null, expires_at: null });
      assert.match(c.created_at, ISO);
      assert.deepEqual({ ...c, created_at: '' }, {
        id, kind: 'cluster', name: null, cluster: null, secret_hash: 'ab'.repeat(32), created_by: null, created_at: '',
        expires_at: null, revoked_at: null, last_used_at: null, uses: 0,
      });
      assert.deepEqual(await s.getJoinToken(id), c);
      await assert.rejects(s.createJoinToken({ ...c }), isConflict);
      // the first bind wins, concurrently too; later binds return the stored name
      const bound = await Promise.all(['east', 'west', 'north'].map((n) => s.bindJoinToken(id, n)));
      const names = new Set(bound.map((b2) => b2?.name));
      assert.equal(names.size, 1);
      const name = [...names][0];
      assert.ok(name === 'east' || name === 'west' || name === 'north');
      assert.equal((await s.bindJoinToken(id, 'other'))?.name, name);
      assert.equal(await s.bindJoinToken('zzzzzzzz', 'x'), undefined);

      const wid = uniq('w').slice(-8).padStart(8, 'b');
      const exp = new Date(Date.now() + 3600_000).toISOString();
      const w = await s.createJoinToken({ id: wid, kind: 'worker', name: null, cluster: 'east', secret_hash: 'cd'.repeat(32), created_by: 'u1', expires_at: exp });
      assert.equal((await s.bindJoinToken(wid, 'east'))?.name, null, 'worker tokens are never bound');
      await s.recordJoinTokenUse(wid);
      await Promise.all([s.recordJoinTokenUse(wid), s.recordJoinTokenUse(wid)]);
      const used = await s.getJoinToken(wid);
      assert.equal(used?.uses, 3);
      assert.match(used?.last_used_at ?? '', ISO);
      assert.ok((await s.listJoinTokens({ kind: 'worker' })).some((t) => t.id === wid));
      assert.ok(!(await s.listJoinTokens({ kind: 'worker' })).some((t) => t.id === id));
      assert.deepEqual((await s.listJoinTokens({ cluster: 'east' })).filter((t) => t.id === wid).map((t) => t.id), [wid]);
      const all = await s.listJoinTokens();
      assert.ok(all.findIndex((t) => t.id === id) < all.findIndex((t) => t.id === wid));

      const r1 = await s.revokeJoinToken(wid);
      assert.match(r1.revoked_at ?? '', ISO);
      const r2 = await s.revokeJoinToken(wid);
      assert.equal(r2.revoked_at, r1.revoked_at, 'the first revocation time is kept');
      assert.equal(r2.expires_at, w.expires_at);
      await assert.rejects(s.revokeJoinToken('missing0'), isNotFound);
    });

    it('token_version: 0 at creation; bumped by revokeUserTokens and by password or role changes only', async () => {
      const org = await s.createOrganization(uniq('org'));
      const u = await s.createUser({ name: uniq('user'), password_hash: 'h', roles: ['Application_Provider'], organization_id: org.id });
      assert.equal(u.token_version, 0);
      assert.equal((await s.getUser(u.id))?.token_version, 0);
      assert.equal(await s.revokeUserTokens(u.id), 1);
      assert.equal((await s.getUserByName(u.name))?.token_version, 1);
      assert.equal((await s.updateUser(u.id, { email: 'a@b.c' })).token_version, 1, 'an email change keeps the tokens');
      assert.equal((await s.updateUser(u.id, { roles: ['Application_Provider'] })).token_version, 1, 'the same roles keep the tokens');
      assert.equal((await s.updateUser(u.id, { roles: ['Infrastructure_Provider'] })).token_version, 2, 'a role change revokes');
      assert.equal((await s.updateUser(u.id, { password_hash: 'h2' })).token_version, 3, 'a password change revokes');
      assert.equal((await s.listUsers({ organization_id: org.id }))[0]?.token_version, 3);
      await assert.rejects(s.revokeUserTokens('nope'), isNotFound);
    });

    it('audit: append, newest first, filters, paging, bounded pages, prune by count and age', async () => {
      const actor = uniq('auditor');
      const base = { user_id: 'u1', method: 'POST', route: '/api/application/', target: null, status: 201, error_code: null, address: '127.0.0.1' };
      const old = await s.addAudit({ ...base, user_name: actor, action: 'POST /api/application/', at: '2001-01-01T00:00:00.000Z' });
      assert.equal(old.at, '2001-01-01T00:00:00.000Z');
      const added = [];
      for (let i = 0; i < 5; i++) {
        added.push(await s.addAudit({ ...base, user_name: actor, action: i % 2 === 0 ? 'auth.login' : 'DELETE /api/user/:user', target: `t${i}`, status: i === 4 ? 403 : 200, error_code: i === 4 ? 'OAK_FORBIDDEN' : null }));
      }
      for (const e of added) {
        assert.ok(e.seq > old.seq);
        assert.match(e.at, ISO);
      }
      const mine = await s.listAudit({ user: actor });
      assert.deepEqual(mine.map((e) => e.seq), [...added, old].map((e) => e.seq).sort((a, b) => b - a), 'newest first');
      assert.deepEqual(mine[0], added[4]);
      assert.equal((await s.listAudit({ user: 'u1', limit: 1000 })).length >= 6, true, 'user matches the id too');
      assert.deepEqual((await s.listAudit({ user: actor, action: 'LOGIN' })).map((e) => e.target), ['t4', 't2', 't0'], 'action: case-insensitive substring');
      assert.deepEqual(await s.listAudit({ user: actor, action: '%' }), [], '% is a literal');
      assert.deepEqual(await s.listAudit({ user: actor, action: '_' }), [], '_ is a literal');
      assert.equal((await s.listAudit({ user: actor, action: 'user/:user' })).length, 2);
      assert.equal((await s.listAudit({ user: actor, since: '2002-01-01T00:00:00.000Z' })).length, 5);
      assert.deepEqual((await s.listAudit({ user: actor, until: '2002-01-01T00:00:00.000Z' })).map((e) => e.seq), [old.seq]);
      const page1 = await s.listAudit({ user: actor, limit: 2 });
      const page2 = await s.listAudit({ user: actor, limit: 2, before: page1[1]!.seq });
      assert.deepEqual([...page1, ...page2].map((e) => e.target), ['t4', 't3', 't2', 't1']);
      assert.equal((await s.listAudit({ limit: 0 })).length <= 1, true, 'limit below 1 becomes 1');
      assert.equal((await s.listAudit({ limit: 1e9 })).length <= 1000, true);

      assert.equal(await s.pruneAudit({ maxAgeSec: 3600 }) >= 1, true, 'the 2001 entry is older than an hour');
      assert.equal((await s.listAudit({ user: actor })).length, 5);
      await s.pruneAudit({ maxRows: 3 });
      const left = await s.listAudit({ limit: 1000 });
      assert.deepEqual(left.map((e) => e.target), ['t4', 't3', 't2'], 'the newest 3 stay');
      assert.equal(await s.pruneAudit({ maxRows: 3 }), 0);
      assert.equal(await s.pruneAudit({ maxRows: 0 }), 3);
      assert.deepEqual(await s.listAudit(), []);
    });

    it('data survives closing and reopening the store', async () => {
      const f = await fixture(['p']);
      const inst = await s.addInstance(f.services[0]!.id, 'RUNNING');
      const key = uniq('k');
      await s.setSettingIfAbsent(key, 'kept');
      const cl = await s.upsertCluster(uniq('cluster'), '1,2');
      await s.close();
      s = await b.open();
      assert.deepEqual(await s.getApplication(f.app.id), f.app as ApplicationRow);
      assert.deepEqual(await s.getService(f.services[0]!.id), f.services[0]);
      assert.deepEqual(await s.getInstance(inst.service_id, 0), inst);
      assert.equal((await s.instanceHistory(inst.service_id, 0)).length, 1);
      assert.equal(await s.getSetting(key), 'kept');
      assert.deepEqual(await s.getCluster(cl.id), cl);
      assert.deepEqual(await s.getUser(f.user.id), f.user);
    });
  });
}
