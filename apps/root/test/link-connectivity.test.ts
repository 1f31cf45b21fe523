/**
 * connectivity through the real root (API, store, control plane, link) with two fake clusters
 * speaking the link protocol (issue 12): the second service of an application is placed on the
 * cluster whose worker is within the RTT threshold of the first service's worker (RTTs from the
 * clusters' worker summaries), and its deploy carries the rule with that worker to the cluster.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ApplicationDoc, ClusterResources, RootToCluster, TokenPair } from '@oak/contracts';
import { createStore } from '@oak/store';
import { waitFor } from '@oak/testkit';
import { createLinkControlPlane, startLinkServer } from '../src/link/index.ts';
import type { LinkControlPlane } from '../src/link/index.ts';
import { startRoot } from '../src/server.ts';
import { rootTrust } from '../src/trust.ts';
import { clusterJoinToken, rawLinkCall } from './join.ts';

const ADMIN_PASSWORD = 'admin-secret-1';
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
});

function resources(cpu: number, worker: string, rtt: { worker_id: string; rtt_ms: number }[]): ClusterResources {
  return {
    cpu_cores_free: cpu,
    cpu_cores_total: cpu,
    memory_free_mb: 4096,
    memory_total_mb: 4096,
    gpus_free: 0,
    virtualizations: ['container'],
    workers: 1,
    worker_summary: [{ id: worker, name: worker, cpu_cores_free: cpu, memory_free_mb: 4096, virtualizations: ['container'], net: { subnet: null, rtt } }],
  };
}

test('the api is placed within 10 ms RTT of the db\'s worker, and its deploy carries the rule', { timeout: 60_000 }, async () => {
  const store = await createStore({ sqlitePath: ':memory:' });
  cleanups.push(() => store.close());
  const root = await startRoot({
    host: '127.0.0.1',
    port: 0,
    store,
    adminPassword: ADMIN_PASSWORD,
    logLevel: 'silent',
    announce: () => {},
    control: async (ctx) => {
      const link = await startLinkServer({ host: '127.0.0.1', port: 0, store: ctx.store, events: ctx.events, trust: await rootTrust(ctx), pingIntervalMs: 200, pingTimeoutMs: 5000 });
      return createLinkControlPlane({ link, store: ctx.store, events: ctx.events, retryMs: 300, settleMs: 0 });
    },
  });
  cleanups.push(() => root.close());
  const control = root.ctx.control as LinkControlPlane;
  const login = await fetch(`${root.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'Admin', password: ADMIN_PASSWORD }) });
  const { token } = (await login.json()) as TokenPair;
  const api = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${root.url}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, body: (await res.json()) as T };
  };

  /** a cluster that runs what it is given on its one worker */
  const connect = async (name: string, res: ClusterResources): Promise<{ id: string; deploys: RootToCluster[] }> => {
    const { client, call } = await rawLinkCall(root.ctx, control.link.address, { ownConnection: true });
    cleanups.push(() => {
      call.cancel();
      client.close();
    });
    const got: RootToCluster[] = [];
    const worker = res.worker_summary[0]?.id ?? 'w';
    call.on('data', (m: RootToCluster) => {
      if (m.type === 'ping') return void call.write({ type: 'pong', t: m.t });
      got.push(m);
      if (m.type === 'deploy') {
        for (const status of ['NODE_SCHEDULED', 'RUNNING']) {
          call.write({ type: 'instance_status', job_name: m.instance.job_name, instance_number: m.instance.instance_number, status, status_detail: '', worker_id: worker, epoch: m.instance.epoch });
        }
      }
    });
    call.on('error', () => undefined);
    call.write({ type: 'hello', token: await clusterJoinToken(root.ctx, name), cluster_name: name, cluster_location: null, version: 'test' });
    const welcome = await waitFor(() => got.find((m): m is Extract<RootToCluster, { type: 'welcome' }> => m.type === 'welcome'), { message: `${name} welcomed` });
    call.write({ type: 'aggregate', resources: res });
    await waitFor(async () => (await store.getCluster(welcome.cluster_id))?.resources?.workers === 1, { message: `${name} aggregate stored` });
    return { id: welcome.cluster_id, deploys: got };
  };

  // small: best-fit alone takes it, but its worker is 50 ms from the db's; big: 2 ms
  const small = await connect('small', resources(4, 'small-w', [{ worker_id: 'db-w', rtt_ms: 50 }]));
  const big = await connect('big', resources(16, 'big-w', [{ worker_id: 'db-w', rtt_ms: 2 }]));
  // the db's own cluster (0 ms) has no room for the api (3 cores)
  await connect('dbc', resources(2, 'db-w', []));
  const svc = (name: string, extra: object) => ({ microservice_name: name, microservice_namespace: 'test', virtualization: 'container', code: 'docker.io/library/nginx:latest', memory: 10, vcpus: 1, ...extra });
  const created = await api<ApplicationDoc[]>('POST', '/api/application/', {
    sla_version: 'v2.0',
    customerID: 'Admin',
    applications: [{
      application_name: 'conn', application_namespace: 'test', application_desc: '',
      microservices: [
        svc('db', { constraints: [{ type: 'direct', cluster: 'dbc' }] }),
        svc('api', { vcpus: 3, connectivity: [{ target_microservice_id: 'db', con_constraints: [{ type: 'latency', threshold: 10, rigidness: 1, convergence_time: 300 }] }] }),
      ],
    }],
  });
  // 201 before issue 12's API work, 200 (Oakestra's code) after
  assert.ok(created.status === 200 || created.status === 201, JSON.stringify(created.body));
  const [dbId, apiId] = created.body[0]?.microservices ?? [];
  assert.ok(dbId && apiId);
  assert.ok([200, 201].includes((await api('POST', `/api/service/${dbId}/instance`)).status));
  await waitFor(async () => (await store.getInstance(dbId, 0))?.worker_id === 'db-w', { message: 'db RUNNING on db-w' });
  assert.ok([200, 201].includes((await api('POST', `/api/service/${apiId}/instance`)).status));
  const row = await waitFor(async () => {
    const r = await store.getInstance(apiId, 0);
    return r?.status === 'RUNNING' ? r : undefined;
  }, { message: 'api RUNNING' });
  assert.equal(row.cluster_id, big.id, 'placed within the threshold, not on the best-fit cluster');
  assert.ok(!small.deploys.some((m) => m.type === 'deploy'));
  const d = big.deploys.find((m): m is Extract<RootToCluster, { type: 'deploy' }> => m.type === 'deploy');
  assert.deepEqual(d?.instance.peers, [{ target: 'conn.test.db.test', threshold_ms: 10, rigidness: 1, workers: ['db-w'] }]);
});
