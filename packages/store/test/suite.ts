/**
 * The one behaviour suite every Store backend must pass. A backend gives `open()`, which opens a
 * Store on the same underlying database each time (so reopening shows what persisted).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConflictError, NotFoundError, OakError } from '@oak/contracts';
import type { Microservice } from '@oak/contracts';
import { serviceFingerprint } from '../src/index.ts';
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

/** waits (bounded) for a condition that asynchronous deliveries make true */
export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
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

    it('addInstance numbers from the service counter, never reused; delete and NotFound rules', async () => {
      const f = await fixture();
      const id = f.services[0]!.id;
      const i0 = await s.addInstance(id, 'REQUESTED');
      assert.deepEqual(
        { ...i0, created_at: '', updated_at: '' },
        {
          service_id: id, instance_number: 0, status: 'REQUESTED', status_detail: '', cluster_id: null, worker_id: null,
          publicip: null, instance_ip: null, instance_ip_v6: null, net: null, created_at: '', updated_at: '',
          service_version: 1, desired: 'run', epoch: 0, replaces: null, status_at: i0.created_at, last_cluster_id: null, lost_at: null, health: null, restarts: 0,
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
      // numbers are never reused, not even the newest one's after its delete
      assert.equal((await s.addInstance(id, 'REQUESTED')).instance_number, 4);
      assert.deepEqual((await s.listInstances({ service_id: id })).map((i) => i.instance_number), [0, 2, 4]);
      assert.equal((await s.getService(id))?.next_instance, 5);
      assert.deepEqual(await s.getInstance(id, 0), i0);

      const before = await snapshot();
      await assert.rejects(s.addInstance('missing', 'REQUESTED'), isNotFound);
      await assert.rejects(s.deleteInstance(id, 1), isNotFound);
      await assert.rejects(s.updateInstance(id, 99, { status: 'RUNNING' }), isNotFound);
      await assert.rejects(s.updateInstance('missing', 0, {}), isNotFound);
      assert.deepEqual(await snapshot(), before);
    });

    it('live rows, finished rows due for their purge and the placements are read without the rest', async () => {
      const f = await fixture();
      const id = f.services[0]!.id;
      const cid = (await s.upsertCluster(uniq('cluster'), null)).id;
      const rows = [];
      for (let k = 0; k < 5; k++) rows.push(await s.addInstance(id, 'REQUESTED'));
      // 0 runs placed; 1 and 2 are finished (stopped, UNDEPLOYED, no addresses); 3 is stopping (still UNDEPLOYED with its address); 4 waits
      await s.updateInstance(id, 0, { status: 'RUNNING', cluster_id: cid });
      for (const n of [1, 2]) await s.updateInstance(id, n, { desired: 'stop', status: 'UNDEPLOYED' });
      await s.updateInstance(id, 3, { desired: 'stop', status: 'UNDEPLOYED', instance_ip: '10.30.0.9' });
      assert.deepEqual((await s.listInstances({ service_id: id, live: true })).map((r) => r.instance_number), [0, 3, 4]);
      assert.deepEqual((await s.listInstances({ service_id: id })).map((r) => r.instance_number), [0, 1, 2, 3, 4]);
      const t1 = (await s.getInstance(id, 1))!.status_at;
      // nothing due before the first finish; then the earliest is named (1 finished first)
      const none = await s.finishedInstances(id, '2000-01-01T00:00:00.000Z');
      assert.deepEqual(none.due, []);
      assert.equal(none.next, t1);
      const all = await s.finishedInstances(id, '2999-01-01T00:00:00.000Z');
      assert.deepEqual(all.due.map((r) => r.instance_number), [1, 2]);
      assert.equal(all.next, null);
      assert.deepEqual((await s.finishedInstances(id, '2999-01-01T00:00:00.000Z', 1)).due.map((r) => r.instance_number), [1]);
      assert.deepEqual((await s.listPlacements()).filter((p) => p.service_id === id), [{ service_id: id, cluster_id: cid }]);
      // a placed row that stops is no placement any more
      await s.updateInstance(id, 0, { desired: 'stop' });
      assert.deepEqual((await s.listPlacements()).filter((p) => p.service_id === id), []);
      assert.deepEqual((await s.finishedInstances('missing', '2999-01-01T00:00:00.000Z')), { due: [], next: null });
    });

    it('updateInstance writes the statuses passed on the way, each at its own time, in one write', async () => {
      const f = await fixture();
      const id = f.services[0]!.id;
      await s.addInstance(id, 'CLUSTER_SCHEDULED', 'sent');
      const t0 = new Date(Date.now() - 50).toISOString();
      const t1 = new Date(Date.now() - 20).toISOString();
      const passed = [
        { status: 'NODE_SCHEDULED', status_detail: 'on w1', at: t0 },
        { status: 'CREATING', status_detail: 'pulling', at: t1 },
      ] as const;
      const row = await s.updateInstance(id, 0, { status: 'RUNNING', status_detail: 'up', worker_id: 'w1' }, passed);
      assert.equal(row.status, 'RUNNING');
      assert.equal(row.worker_id, 'w1');
      const h = await s.instanceHistory(id, 0);
      assert.deepEqual(
        h.map((r) => [r.status, r.status_detail]),
        [['CLUSTER_SCHEDULED', 'sent'], ['NODE_SCHEDULED', 'on w1'], ['CREATING', 'pulling'], ['RUNNING', 'up']],
      );
      assert.deepEqual(h.slice(1, 3).map((r) => r.at), [t0, t1]);
      assert.equal(h[3]!.at, row.status_at);
      // a passed status equal to the stored one, or to the new one, is no row of its own; without a
      // change of status nothing passed is written
      await s.addInstance(id, 'NODE_SCHEDULED', 'on w2');
      await s.updateInstance(id, 1, { status: 'CREATING' }, [{ status: 'NODE_SCHEDULED', status_detail: 'again', at: t1 }, { status: 'CREATING', status_detail: 'x', at: t1 }]);
      assert.deepEqual((await s.instanceHistory(id, 1)).map((r) => r.status), ['NODE_SCHEDULED', 'CREATING']);
      await s.updateInstance(id, 1, { status: 'CREATING', publicip: '192.0.2.1' }, [{ status: 'NODE_SCHEDULED', status_detail: 'late', at: t1 }]);
      assert.equal((await s.instanceHistory(id, 1)).length, 2);
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
        { ...placed, updated_at: '', status_at: '' },
        { ...i, status: 'RUNNING', status_detail: 'now RUNNING', cluster_id: 'c1', worker_id: 'w1', publicip: '192.0.2.7', instance_ip: '10.18.0.5', updated_at: '', status_at: '' },
      );
      // status_at: when the status last changed (the RUNNING step), not moved by other patches
      assert.equal(placed.status_at, (await s.instanceHistory(id, 0)).at(-1)!.at);
      assert.ok(placed.updated_at >= placed.status_at);
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
      // every instance's history at once: the same rows, by instance number
      await s.addInstance(id, 'REQUESTED', 'second');
      const all = await s.serviceHistory(id);
      assert.deepEqual([...all.keys()], [0, 1]);
      assert.deepEqual(all.get(0), h);
      assert.deepEqual(all.get(1), await s.instanceHistory(id, 1));
      assert.deepEqual((await s.serviceHistory(`${id}-none`)).size, 0);
      await s.deleteInstance(id, 1);

      assert.equal(dead.status_at, dead.updated_at);
      // history of a deleted instance goes with it; the next instance has a new number and its own history
      await s.deleteInstance(id, 0);
      assert.deepEqual(await s.instanceHistory(id, 0), []);
      assert.equal((await s.addInstance(id, 'REQUESTED')).instance_number, 2);
      assert.equal((await s.instanceHistory(id, 2)).length, 1);
      assert.deepEqual(await s.instanceHistory(id, 0), []);
      assert.deepEqual([...(await s.serviceHistory(id)).keys()], [2]);
    });

    it('deleteInstance remembers where a placed instance ran (its logs outlive it); prune and service delete forget', async () => {
      const f = await fixture();
      const id = f.services[0]!.id;
      const cl = uniq('cluster');
      await s.addInstance(id, 'REQUESTED');
      await s.addInstance(id, 'REQUESTED');
      const failed = await s.updateInstance(id, 0, { status: 'FAILED', status_detail: 'exited with code 3', cluster_id: cl, worker_id: 'w-1' });
      await s.updateInstance(id, 0, { desired: 'stop' });
      const t0 = new Date().toISOString();
      await s.deleteInstance(id, 0);
      await s.deleteInstance(id, 1); // never placed: nothing to remember
      const e = await s.getEndedInstance(id, 0);
      assert.ok(e);
      assert.deepEqual({ ...e, removed_at: '' }, { service_id: id, instance_number: 0, status: 'FAILED', status_detail: 'exited with code 3', cluster_id: cl, worker_id: 'w-1', ended_at: failed.status_at, removed_at: '' });
      assert.ok(e.removed_at >= t0);
      assert.equal(await s.getEndedInstance(id, 1), undefined);
      assert.equal(await s.getEndedInstance(id, 7), undefined);
      await s.pruneEndedInstances(t0);
      assert.ok(await s.getEndedInstance(id, 0), 'removed after t0: kept');
      assert.ok((await s.pruneEndedInstances(new Date(Date.now() + 1000).toISOString())) >= 1);
      assert.equal(await s.getEndedInstance(id, 0), undefined);
      // a service delete takes its records along
      const n = (await s.addInstance(id, 'RUNNING')).instance_number;
      await s.updateInstance(id, n, { cluster_id: cl, worker_id: null });
      await s.deleteInstance(id, n);
      assert.equal((await s.getEndedInstance(id, n))?.worker_id, null);
      await s.deleteService(id);
      assert.equal(await s.getEndedInstance(id, n), undefined);
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

    it('service versions: 1 at creation, bumped only by a fingerprint change, superseded, outcome, removed with the service', async () => {
      const f = await fixture(['v']);
      const sv = f.services[0]!;
      assert.equal(sv.version, 1);
      assert.equal(sv.next_instance, 0);
      const [v1] = await s.listServiceVersions(sv.id);
      assert.ok(v1);
      assert.deepEqual(
        { ...v1, created_at: '' },
        { service_id: sv.id, version: 1, sla: sv.sla, fingerprint: serviceFingerprint(sv.job_name, sv.sla), created_at: '', created_by: f.user.id, reason: 'created', outcome: null },
      );
      assert.equal(v1.created_at, sv.created_at);
      assert.deepEqual(await s.getServiceVersion(sv.id, 1), v1);
      assert.equal(await s.getServiceVersion(sv.id, 2), undefined);

      // the same SLA with its keys in another order, a rename of the display name: no new version
      const reordered = Object.fromEntries(Object.entries(sv.sla).reverse()) as Microservice;
      const same = await s.updateService(sv.id, { sla: reordered, name: 'v-renamed' });
      assert.equal(same.version, 1);
      assert.equal((await s.listServiceVersions(sv.id)).length, 1);

      const sla2 = { ...sv.sla, memory: 512 } as Microservice;
      const u2 = await s.updateService(sv.id, { sla: sla2 }, { created_by: f.user.id });
      assert.equal(u2.version, 2);
      assert.deepEqual(await s.getService(sv.id), u2);
      const v2 = await s.getServiceVersion(sv.id, 2);
      assert.deepEqual(
        { ...v2, created_at: '' },
        { service_id: sv.id, version: 2, sla: sla2, fingerprint: serviceFingerprint(sv.job_name, sla2), created_at: '', created_by: f.user.id, reason: 'updated', outcome: null },
      );
      assert.equal((await s.getServiceVersion(sv.id, 1))?.outcome, 'superseded');
      await s.setVersionOutcome(sv.id, 2, 'complete');

      // a job_name change is a new version too; an outcome already set is kept
      const u3 = await s.updateService(sv.id, { job_name: `${f.appName}.test.w.test` }, { reason: 'rollback to 1', created_by: null });
      assert.equal(u3.version, 3);
      const all = await s.listServiceVersions(sv.id);
      assert.deepEqual(all.map((v) => [v.version, v.reason, v.outcome, v.created_by]), [
        [1, 'created', 'superseded', f.user.id],
        [2, 'updated', 'complete', f.user.id],
        [3, 'rollback to 1', null, null],
      ]);
      assert.equal(all[2]!.fingerprint, serviceFingerprint(`${f.appName}.test.w.test`, sla2));
      await s.setVersionOutcome(sv.id, 3, 'stopped: FAILED');
      await s.setVersionOutcome(sv.id, 3, null);
      assert.equal((await s.getServiceVersion(sv.id, 3))?.outcome, null);
      await assert.rejects(s.setVersionOutcome(sv.id, 9, 'complete'), isNotFound);
      await assert.rejects(s.setVersionOutcome('missing', 1, 'complete'), isNotFound);
      // a refused update (job name taken) writes no version
      const other = await s.createService(f.app.id, svc(f.appName, 'other'), { reason: 'imported', created_by: null });
      assert.deepEqual((await s.listServiceVersions(other.id)).map((v) => [v.version, v.reason, v.created_by]), [[1, 'imported', null]]);
      await assert.rejects(s.updateService(sv.id, { job_name: other.job_name }), isConflict);
      assert.equal((await s.listServiceVersions(sv.id)).length, 3);
      assert.equal((await s.getService(sv.id))?.version, 3);

      await s.deleteService(sv.id);
      assert.deepEqual(await s.listServiceVersions(sv.id), []);
      await s.deleteApplication(f.app.id);
      assert.deepEqual(await s.listServiceVersions(other.id), []);
    });

    it('serviceFingerprint: key order does not matter, array order and values do', () => {
      const a = { b: 1, a: { y: [1, { q: 1, p: 2 }], x: null } };
      const b = { a: { x: null, y: [1, { p: 2, q: 1 }] }, b: 1 };
      assert.equal(serviceFingerprint('j', a), serviceFingerprint('j', b));
      assert.equal(serviceFingerprint('j', a), JSON.stringify(['j', { a: { x: null, y: [1, { p: 2, q: 1 }] }, b: 1 }]));
      assert.notEqual(serviceFingerprint('j', a), serviceFingerprint('k', a));
      assert.notEqual(serviceFingerprint('j', { l: [1, 2] }), serviceFingerprint('j', { l: [2, 1] }));
    });

    it('instances: options of addInstance, the new patch fields, the desired filter', async () => {
      const f = await fixture(['d']);
      const id = f.services[0]!.id;
      await s.updateService(id, { sla: { ...f.services[0]!.sla, memory: 300 } as Microservice });
      const a = await s.addInstance(id, 'REQUESTED');
      assert.deepEqual([a.service_version, a.desired, a.epoch, a.replaces], [2, 'run', 0, null]);
      const b2 = await s.addInstance(id, 'REQUESTED', '', { service_version: 1, replaces: a.instance_number, desired: 'stop' });
      assert.deepEqual([b2.instance_number, b2.service_version, b2.desired, b2.replaces], [1, 1, 'stop', 0]);
      assert.deepEqual(await s.getInstance(id, 1), b2);
      const before = await snapshot();
      await assert.rejects(s.addInstance(id, 'REQUESTED', '', { service_version: 7 }), isNotFound);
      assert.deepEqual(await snapshot(), before, 'a refused addInstance takes no number');

      const placed = await s.updateInstance(id, 0, { status: 'CLUSTER_SCHEDULED', cluster_id: 'c1', epoch: 1 });
      assert.equal(placed.epoch, 1);
      assert.equal(placed.status_at, placed.updated_at);
      const lost = await s.updateInstance(id, 0, { lost_at: '2030-01-01T00:00:00.000Z', last_cluster_id: 'c1', desired: 'stop', service_version: 1 });
      assert.deepEqual(
        [lost.lost_at, lost.last_cluster_id, lost.desired, lost.service_version, lost.status_at],
        ['2030-01-01T00:00:00.000Z', 'c1', 'stop', 1, placed.status_at],
      );
      assert.deepEqual(await s.getInstance(id, 0), lost);
      const back = await s.updateInstance(id, 0, { lost_at: null, last_cluster_id: null, desired: 'run' });
      assert.deepEqual([back.lost_at, back.last_cluster_id, back.desired], [null, null, 'run']);

      assert.deepEqual((await s.listInstances({ service_id: id, desired: 'run' })).map((r) => r.instance_number), [0]);
      assert.deepEqual((await s.listInstances({ service_id: id, desired: 'stop' })).map((r) => r.instance_number), [1]);
      assert.deepEqual((await s.listInstances({ service_id: id, desired: 'stop', statuses: ['RUNNING'] })), []);
    });

    it('concurrent addInstance calls (PostgreSQL: from two stores) take distinct numbers, never one deleted before', async () => {
      const f = await fixture();
      const id = f.services[0]!.id;
      const other = b.kind === 'postgres' ? await b.open() : s;
      try {
        const first = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? s : other).addInstance(id, 'REQUESTED')));
        for (const r of first) await s.deleteInstance(id, r.instance_number);
        const second = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? other : s).addInstance(id, 'REQUESTED')));
        const nums = [...first, ...second].map((r) => r.instance_number).sort((x, y) => x - y);
        assert.deepEqual(nums, Array.from({ length: 20 }, (_, i) => i));
        assert.deepEqual(second.map((r) => r.instance_number).sort((x, y) => x - y), Array.from({ length: 10 }, (_, i) => i + 10));
        assert.equal((await other.getService(id))?.next_instance, 20);
      } finally {
        if (other !== s) await other.close();
      }
    });

    it('leases: take, renew, refuse another holder, expire, release; bad ttl', async () => {
      const name = uniq('lease');
      const a = await s.tryLease(name, 'root-a', 60_000, '{"api":"http://a"}');
      assert.deepEqual({ ...a, expires_at: '' }, { name, holder: 'root-a', info: '{"api":"http://a"}', expires_at: '', held: true });
      assert.match(a.expires_at, ISO);
      const refused = await s.tryLease(name, 'root-b', 60_000, 'b');
      assert.deepEqual(refused, { ...a, held: false }, 'the holder and its info are answered');
      const renewed = await s.tryLease(name, 'root-a', 60_000);
      assert.equal(renewed.held, true);
      assert.equal(renewed.info, null, 'a renewal replaces info');
      assert.ok(renewed.expires_at >= a.expires_at);
      await s.releaseLease(name, 'root-b');
      assert.equal((await s.tryLease(name, 'root-b', 60_000)).held, false, 'only the holder releases');
      await s.releaseLease(name, 'root-a');
      const b1 = await s.tryLease(name, 'root-b', 50);
      assert.equal(b1.held, true, 'released: free at once');
      // expiry by the database's clock: poll until root-a gets it (bounded)
      const deadline = Date.now() + 5000;
      let got = await s.tryLease(name, 'root-a', 60_000);
      while (!got.held && Date.now() < deadline) {
        assert.equal(got.holder, 'root-b');
        await new Promise((r) => setTimeout(r, 20));
        got = await s.tryLease(name, 'root-a', 60_000);
      }
      assert.equal(got.held, true, 'taken after the ttl');
      assert.equal(got.holder, 'root-a');
      const badRequest = (e: unknown): boolean => e instanceof OakError && e.code === 'OAK_BAD_REQUEST';
      for (const bad of [0, -1, 1.5, Number.NaN, 1e12]) await assert.rejects(s.tryLease(name, 'root-a', bad), badRequest);
      await assert.rejects(s.tryLease('', 'root-a', 1000), badRequest);
      await assert.rejects(s.tryLease(name, 'x'.repeat(201), 1000), badRequest);
      await assert.rejects(s.tryLease(name, 'root-a', 1000, 'i'.repeat(7001)), badRequest);
      await assert.rejects(s.releaseLease(name, ''), badRequest);
      await assert.rejects(s.tryLease(name, 'root\u0000a', 1000), badRequest);
      await assert.rejects(s.tryLease(name, 'root-a', 1000, 'nul\u0000'), badRequest);
      assert.equal((await s.tryLease(name, 'root-a', 60_000)).held, true, 'refused calls changed nothing');
      await s.releaseLease(name, 'root-a');
    });

    it('notify/listen: every listener gets the payloads, stop ends it; hostile channels and payloads refused', async () => {
      const got: string[] = [];
      const got2: string[] = [];
      const stop = await s.listen('oak_test_events', (p) => got.push(p));
      const stop2 = await s.listen('oak_test_events', (p) => {
        got2.push(p);
        throw new Error('a throwing listener harms nobody');
      });
      const stopOther = await s.listen('oak_test_other', () => assert.fail('another channel'));
      await s.notify('oak_test_events', 'one');
      await s.notify('oak_test_events', 'ü'.repeat(3500));
      await s.notify('oak_test_events', '');
      await until(() => got.length === 3 && got2.length === 3);
      assert.deepEqual(got, ['one', 'ü'.repeat(3500), '']);
      await stop2();
      await stop2();
      await s.notify('oak_test_events', 'two');
      await until(() => got.length === 4);
      assert.equal(got2.length, 3);
      await stop();
      await stopOther();
      await s.notify('oak_test_events', 'unheard');

      const bad = (e: unknown): boolean => e instanceof OakError && e.code === 'OAK_BAD_REQUEST' && e.status === 400;
      for (const ch of ['', 'UPPER', 'with-dash', 'a'.repeat(41), 'x"; drop table leases; --', 'oak events', 'ä']) {
        await assert.rejects(s.notify(ch, 'x'), bad, ch);
        await assert.rejects(s.listen(ch, () => undefined), bad, ch);
      }
      await assert.rejects(s.notify('oak_test_events', 'x'.repeat(7001)), bad);
      await assert.rejects(s.notify('oak_test_events', 'nul\u0000byte'), bad);
      await assert.rejects(s.notify('oak_test_events', 42 as unknown as string), bad);
      await assert.rejects(s.notify('oak_test_events', 'ü'.repeat(3501)), bad, 'bytes, not characters');
      await s.notify('oak_test_events', 'x'.repeat(7000));
      assert.equal(got.length, 4);
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
      assert.equal(await s.getClusterLocation(c.id), '48.1,11.5,50');
      assert.equal(await s.getClusterLocation(c.id + 'x'), undefined);

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
      assert.equal(await s.getClusterLocation(c.id), null);
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

    it('fleet artifacts and rollouts (migration 9): bytes round-trip, kept once per sha256, chunked reads, rollout state replaced, persisted', async () => {
      const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251));
      const sha = uniq('sha').padEnd(64, '0').slice(0, 64);
      const row = { sha256: sha, program: 'node-engine', version: '0.2.0', arch: 'amd64', size: data.length, uploaded_at: new Date().toISOString(), uploaded_by: null };
      assert.equal(await s.putFleetArtifact(row, data), true);
      assert.equal(await s.putFleetArtifact(row, Buffer.from('other')), false, 'the same sha256 is kept once');
      assert.deepEqual(await s.getFleetArtifact(sha), row);
      assert.ok((await s.listFleetArtifacts()).some((a) => a.sha256 === sha));
      assert.deepEqual(await s.readFleetArtifact(sha, 0, 5000), data);
      assert.deepEqual(await s.readFleetArtifact(sha, 4000, 4096), data.subarray(4000));
      assert.equal(await s.readFleetArtifact('f'.repeat(64), 0, 10), undefined);
      const id = uniq('r').replace(/[^a-z0-9]/g, '').slice(0, 40);
      await s.putFleetRollout(id, 'running', '{"step":1}', new Date().toISOString());
      await s.putFleetRollout(id, 'failed', '{"step":2}', new Date().toISOString());
      const other = await b.open();
      try {
        assert.deepEqual(await other.getFleetRollout(id), { id, status: 'failed', state: '{"step":2}' });
        assert.ok((await other.listFleetRollouts(100)).some((r) => r.id === id));
      } finally {
        await other.close();
      }
      assert.equal(await s.deleteFleetArtifact(sha), true);
      assert.equal(await s.getFleetArtifact(sha), undefined);
    });

    it('registry credentials: put, replace, per organisation, list by host, delete, unknown organisation, persisted', async () => {
      const a = await s.createOrganization(uniq('rega'));
      const bOrg = await s.createOrganization(uniq('regb'));
      const first = await s.putRegistryCredential({ organization_id: a.id, host: 'registry.example.com', username: 'alice', secret: 'v1.c1', created_by: 'u1' });
      assert.equal(first.replaced, false);
      assert.match(first.row.created_at, ISO);
      assert.equal(first.row.created_at, first.row.updated_at);
      await s.putRegistryCredential({ organization_id: a.id, host: '127.0.0.1:5000', username: 'bob', secret: 'v1.c2', created_by: 'u1' });
      await s.putRegistryCredential({ organization_id: bOrg.id, host: 'registry.example.com', username: 'carol', secret: 'v1.c3', created_by: 'u2' });
      await new Promise((r) => setTimeout(r, 3));
      const again = await s.putRegistryCredential({ organization_id: a.id, host: 'registry.example.com', username: 'alice2', secret: 'v1.c4', created_by: 'u9' });
      assert.equal(again.replaced, true);
      assert.deepEqual([again.row.username, again.row.secret, again.row.created_by, again.row.created_at], ['alice2', 'v1.c4', 'u1', first.row.created_at]);
      assert.ok(again.row.updated_at > first.row.updated_at);
      assert.deepEqual(await s.getRegistryCredential(a.id, 'registry.example.com'), again.row);
      assert.deepEqual((await s.listRegistryCredentials(a.id)).map((r) => [r.host, r.username]), [['127.0.0.1:5000', 'bob'], ['registry.example.com', 'alice2']]);
      assert.deepEqual((await s.listRegistryCredentials(bOrg.id)).map((r) => [r.host, r.username, r.secret]), [['registry.example.com', 'carol', 'v1.c3']]);
      assert.equal(await s.getRegistryCredential(bOrg.id, '127.0.0.1:5000'), undefined);
      await assert.rejects(s.putRegistryCredential({ organization_id: 'nope', host: 'h', username: 'u', secret: 's', created_by: null }), isNotFound);
      // persisted: another store object on the same database sees them
      const other = await b.open();
      try {
        assert.deepEqual(await other.getRegistryCredential(a.id, 'registry.example.com'), again.row);
      } finally {
        await other.close();
      }
      assert.equal(await s.deleteRegistryCredential(a.id, 'registry.example.com'), true);
      assert.equal(await s.deleteRegistryCredential(a.id, 'registry.example.com'), false);
      assert.equal(await s.getRegistryCredential(a.id, 'registry.example.com'), undefined);
      assert.equal((await s.listRegistryCredentials(bOrg.id)).length, 1, 'the other organisation keeps its own');
      // an organisation without users or applications can be deleted with its logins
      await s.deleteOrganization(a.id);
      assert.deepEqual(await s.listRegistryCredentials(a.id), []);
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

    it('overlay: the IPAM row is read-modify-written under its lock, with its side writes in the same transaction', async () => {
      const f = await fixture(['ov']);
      const sv = f.services[0]!;
      assert.deepEqual([sv.service_ip, sv.service_ip_v6, sv.closest_ip, sv.closest_ip_v6], [null, null, null, null]);
      const inst = await s.addInstance(sv.id, 'REQUESTED');
      assert.equal(inst.instance_ip_v6, null);
      assert.equal(inst.net, null);
      const start = await s.getIpam();
      const r = await s.updateIpam((cur) => {
        assert.equal(cur.version, start.version);
        return {
          state: { n: ((cur.state as { n?: number } | null)?.n ?? 0) + 1 },
          services: [{ id: sv.id, service_ip: '10.30.0.1', service_ip_v6: 'fdff::1', closest_ip: '10.30.0.2', closest_ip_v6: 'fdff::2' }],
          instances: [{ service_id: sv.id, instance_number: 0, instance_ip: '10.30.0.3', instance_ip_v6: 'fdff::3' }, { service_id: sv.id, instance_number: 99, instance_ip: 'x', instance_ip_v6: null }],
          result: 'ok',
        };
      });
      assert.equal(r, 'ok');
      const after1 = await s.getIpam();
      assert.equal(after1.version, start.version + 1);
      assert.match(after1.updated_at, ISO);
      const got = await s.getService(sv.id);
      assert.deepEqual([got?.service_ip, got?.service_ip_v6, got?.closest_ip, got?.closest_ip_v6], ['10.30.0.1', 'fdff::1', '10.30.0.2', 'fdff::2']);
      const gi = await s.getInstance(sv.id, 0);
      assert.deepEqual([gi?.instance_ip, gi?.instance_ip_v6], ['10.30.0.3', 'fdff::3']);
      assert.equal(await s.getInstance(sv.id, 99), undefined, 'a missing instance is skipped, not created');

      // a throwing step changes nothing: neither the state nor its side writes
      const before = await snapshot();
      await assert.rejects(
        s.updateIpam(() => {
          throw new ConflictError('refused');
        }),
        isConflict,
      );
      const afterAll = await snapshot();
      assert.deepEqual(afterAll.services.map((x) => ({ ...x, updated_at: '' })), before.services.map((x) => ({ ...x, updated_at: '' })));
      assert.deepEqual((await s.getIpam()).state, after1.state);
      // no state: nothing is written, the version stays
      const v = (await s.getIpam()).version;
      assert.equal(await s.updateIpam(() => ({ result: 7 })), 7);
      assert.equal((await s.getIpam()).version, v);
    });

    it('overlay: concurrent updates (PostgreSQL: from two stores on the same database) never lose one', async () => {
      // SQLite is one root's own file (better-sqlite3 waits for a lock synchronously: two stores in
      // one process would wait for each other), so there the concurrent callers share the store
      const other = b.kind === 'postgres' ? await b.open() : s;
      try {
        const base = ((await s.getIpam()).state as { count?: number } | null)?.count ?? 0;
        const bump = (st: Store) =>
          st.updateIpam(async (cur) => {
            const c = ((cur.state as { count?: number } | null)?.count ?? 0) + 1;
            await new Promise((r) => setTimeout(r, 1));
            return { state: { ...(cur.state as object | null), count: c }, result: c };
          });
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => bump(i % 2 === 0 ? s : other)));
        assert.deepEqual([...results].sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => base + i + 1), 'each saw the one before');
        assert.equal(((await other.getIpam()).state as { count: number }).count, base + 20);
      } finally {
        if (other !== s) await other.close();
      }
    });

    it('overlay: instance net info and IPv6 address round-trip; null clears', async () => {
      const f = await fixture(['net']);
      const sv = f.services[0]!;
      await s.addInstance(sv.id, 'RUNNING');
      const net = { nsip: '10.18.0.66', nsip_v6: 'fdff:18:0:1::2', host_ip: '192.0.2.1', host_port: 50103, subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64' };
      const u = await s.updateInstance(sv.id, 0, { net, instance_ip_v6: 'fdff::9' });
      assert.deepEqual(u.net, net);
      assert.deepEqual((await s.getInstance(sv.id, 0))?.net, net);
      assert.equal((await s.getInstance(sv.id, 0))?.instance_ip_v6, 'fdff::9');
      assert.equal((await s.instanceHistory(sv.id, 0)).length, 1, 'no status change, no history row');
      await s.updateInstance(sv.id, 0, { net: null });
      assert.equal((await s.getInstance(sv.id, 0))?.net, null);
    });

    it('data survives closing and reopening the store', async () => {
      const f = await fixture(['p']);
      const inst = await s.addInstance(f.services[0]!.id, 'RUNNING');
      const key = uniq('k');
      await s.setSettingIfAbsent(key, 'kept');
      const cl = await s.upsertCluster(uniq('cluster'), '1,2');
      await s.close();
      await s.close();
      s = await b.open();
      assert.deepEqual(await s.getApplication(f.app.id), f.app as ApplicationRow);
      assert.deepEqual(await s.getService(f.services[0]!.id), { ...f.services[0], next_instance: 1 });
      assert.deepEqual(await s.getInstance(inst.service_id, 0), inst);
      assert.equal((await s.instanceHistory(inst.service_id, 0)).length, 1);
      assert.equal(await s.getSetting(key), 'kept');
      assert.deepEqual(await s.getCluster(cl.id), cl);
      assert.deepEqual(await s.getUser(f.user.id), f.user);
    });
  });
}
