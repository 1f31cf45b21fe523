/**
 * The root <-> cluster link end to end: a real root (API + link + control plane on an in-memory
 * store), real clusters (startCluster and the oak-cluster binary), and fake workers that speak
 * the MQTT protocol like a NodeEngine.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '@oak/bus';
import { startCluster } from '@oak/cluster';
import type { ClusterConfig, ClusterHandle } from '@oak/cluster';
import type { ApplicationDoc, ClusterDoc, ServiceDoc, TokenPair } from '@oak/contracts';
import { createStore } from '@oak/store';
import type { Store } from '@oak/store';
import { freePort, waitFor } from '@oak/testkit';
import { startFakeWorker } from '../../cluster/test/harness.ts';
import type { FakeWorker } from '../../cluster/test/harness.ts';
import { linkControl } from '../src/link/index.ts';
import type { LinkControlPlane } from '../src/link/index.ts';
import { startRoot } from '../src/server.ts';
import { clusterJoinToken, rawLinkCall, workerJoinToken } from './join.ts';
import type { RootHandle } from '../src/server.ts';

const ADMIN_PASSWORD = 'admin-secret-1';
const INTERVAL = 200;

interface TestRoot {
  root: RootHandle;
  control: LinkControlPlane;
  linkAddress: string;
  api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  close(): Promise<void>;
}

async function startTestRoot(store: Store, linkPort = 0, graceMs = 1500): Promise<TestRoot> {
  const root = await startRoot({
    host: '127.0.0.1',
    port: 0,
    store,
    adminPassword: ADMIN_PASSWORD,
    logLevel: 'silent',
    announce: () => {},
    control: linkControl({ host: '127.0.0.1', port: linkPort, graceMs, retryMs: 500, pingIntervalMs: 200, pingTimeoutMs: 1000 }),
  });
  const control = root.ctx.control as LinkControlPlane;
  const login = await fetch(`${root.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'Admin', password: ADMIN_PASSWORD }) });
  const { token } = (await login.json()) as TokenPair;
  return {
    root,
    control,
    linkAddress: control.link.address,
    async api<T>(method: string, path: string, body?: unknown) {
      const res = await fetch(`${root.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, body: (text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text) as T };
    },
    close: () => root.close(),
  };
}

/** a worker join token of the root for cluster `name` */
async function workerToken(r: TestRoot, name: string): Promise<string> {
  return (await workerJoinToken(r.root.ctx, name)).token;
}

async function clusterConfig(r: TestRoot, name: string, extra: Partial<ClusterConfig> = {}): Promise<ClusterConfig> {
  return {
    name,
    host: '127.0.0.1',
    port: 0,
    mqttPort: 0,
    reportIntervalMs: INTERVAL,
    aggregateIntervalMs: 300,
    linkMaxBackoffMs: 300,
    linkSilenceTimeoutMs: 2000,
    log: silentLogger,
    root: { address: r.linkAddress, token: await clusterJoinToken(r.root.ctx, name) },
    ...extra,
  };
}

function sla(app: string, opts: { replicas?: number; vcpus?: number } = {}): unknown {
  return {
    sla_version: 'v2.0',
    customerID: 'Admin',
    applications: [
      {
        application_name: app,
        application_namespace: 'test',
        application_desc: 'link test',
        microservices: [
          {
            microservice_name: 'web',
            microservice_namespace: 'test',
            virtualization: 'container',
            code: 'docker.io/library/nginx:latest',
            memory: 100,
            vcpus: opts.vcpus ?? 1,
            replicas: opts.replicas ?? 1,
          },
        ],
      },
    ],
  };
}

async function deployApp(r: TestRoot, app: string, opts: { replicas?: number; vcpus?: number } = {}): Promise<string> {
  const res = await r.api<ApplicationDoc[]>('POST', '/api/application/?deploy=true', sla(app, opts));
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const id = res.body[0]?.microservices[0];
  assert.ok(id);
  return id;
}

async function service(r: TestRoot, id: string): Promise<ServiceDoc> {
  const res = await r.api<ServiceDoc>('GET', `/api/service/${id}`);
  assert.equal(res.status, 200);
  return res.body;
}

async function cluster(r: TestRoot, name: string): Promise<ClusterDoc | undefined> {
  return (await r.api<ClusterDoc[]>('GET', '/api/clusters/')).body.find((c) => c.cluster_name === name);
}

describe('root <-> cluster link', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  test('deploy through the API: placed on the cluster, spread over two workers, RUNNING with worker ids; logs round trip', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    const r = await startTestRoot(store);
    cleanups.push(() => store.close(), () => r.close());
    const c1 = await startCluster(await clusterConfig(r, 'c1'));
    cleanups.push(() => c1.close());
    const w1 = await startFakeWorker(c1.registrationUrl, 'w1', { logLines: ['one', 'two', 'three'], token: await workerToken(r, 'c1') });
    const w2 = await startFakeWorker(c1.registrationUrl, 'w2', { logLines: ['one', 'two', 'three'], token: await workerToken(r, 'c1') });
    cleanups.push(() => w1.close(), () => w2.close());
    await waitFor(async () => (await cluster(r, 'c1'))?.resources?.workers === 2, { message: 'aggregate with 2 workers at the root' });
    // a worker is a placement candidate once its first report is in (under load that can lag)
    await waitFor(() => [w1.id, w2.id].every((id) => c1.core.workers.get(id)?.awaitingReport === false) || undefined, { message: 'both workers reported' });
    const c = await cluster(r, 'c1');
    assert.equal(c?.status, 'ACTIVE');
    assert.equal(c?.resources?.cpu_cores_total, 8);

    const sid = await deployApp(r, 'spread', { replicas: 2 });
    const doc = await waitFor(async () => {
      const s = await service(r, sid);
      return s.instance_list.length === 2 && s.instance_list.every((i) => i.status === 'RUNNING') ? s : undefined;
    }, { message: 'two RUNNING instances' });
    assert.ok(doc.instance_list.every((i) => i.cluster_id === c?._id));
    assert.deepEqual(new Set(doc.instance_list.map((i) => i.worker_id)), new Set([w1.id, w2.id]), JSON.stringify(doc.instance_list.map((i) => ({ n: i.instance_number, w: i.worker_id, h: i.history }))));
    const history = (await r.api<ServiceDoc>('GET', `/api/service/${sid}`)).body.instance_list[0]?.history?.map((h) => h.status);
    assert.deepEqual(history?.slice(0, 2), ['REQUESTED', 'CLUSTER_SCHEDULED']);
    assert.ok(history?.includes('RUNNING'));

    // logs: root -> cluster -> worker and back, through the HTTP API
    const logs = await r.api<string>('GET', `/api/service/${sid}/instance/0/logs?tail=5`);
    assert.equal(logs.status, 200);
    assert.equal(logs.body, 'one\ntwo\nthree\n');
    const w = [w1, w2].find((x) => x.logRequests.length > 0);
    assert.equal(w?.logRequests[0]?.tail, 5);
    assert.equal(w?.logRequests[0]?.follow, false);

    // follow: lines arrive while the worker sends them; abort cancels at the worker
    const svcRow = await store.getService(sid);
    const instRow = await store.getInstance(sid, 0);
    assert.ok(svcRow && instRow && r.control.logs);
    const ac = new AbortController();
    const got: string[] = [];
    for await (const line of await r.control.logs(svcRow, instRow, { follow: true, signal: ac.signal })) {
      got.push(line);
      if (got.length === 3) ac.abort();
    }
    assert.deepEqual(got, ['one', 'two', 'three']);
    await waitFor(() => [w1, w2].some((x) => x.logCancels.length > 0), { message: 'cancel reached the worker' });

    // undeploy through the API reaches the worker
    const del = await r.api('DELETE', `/api/service/${sid}/instance/1`);
    assert.ok(del.status < 300, String(del.status));
    await waitFor(() => [w1, w2].some((x) => x.deletes.some((d) => d.instance_number === 1)), { message: 'delete on the worker' });
  });

  test('a cluster that stops answering pings is INACTIVE within the ping timeout', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    const r = await startTestRoot(store);
    cleanups.push(() => store.close(), () => r.close());
    const { client, call } = await rawLinkCall(r.root.ctx, r.linkAddress);
    call.on('error', () => {});
    call.on('data', () => {}); // reads pings, never answers
    call.write({ type: 'hello', token: await clusterJoinToken(r.root.ctx, 'mute'), cluster_name: 'mute', cluster_location: '48.1,11.6', version: 'test' });
    await waitFor(async () => (await cluster(r, 'mute'))?.status === 'ACTIVE', { message: 'ACTIVE' });
    assert.equal((await cluster(r, 'mute'))?.cluster_location, '48.1,11.6');
    const t0 = Date.now();
    await waitFor(async () => (await cluster(r, 'mute'))?.status === 'INACTIVE', { timeoutMs: 5000, message: 'INACTIVE' });
    const ms = Date.now() - t0;
    assert.ok(ms < 2500, `INACTIVE after ${ms} ms (timeout 1000 ms)`);
    call.cancel();
    client.close();
  });

  test('nothing fits: REQUESTED with the reason, placed once a cluster with capacity connects', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    const r = await startTestRoot(store);
    cleanups.push(() => store.close(), () => r.close());
    const sid = await deployApp(r, 'waiting', { vcpus: 2 });
    await waitFor(async () => (await service(r, sid)).instance_list[0]?.status_detail === 'NoActiveClusterWithCapacity', { message: 'reason at the root' });
    assert.equal((await service(r, sid)).instance_list[0]?.status, 'REQUESTED');
    const c = await startCluster(await clusterConfig(r, 'late'));
    cleanups.push(() => c.close());
    const w = await startFakeWorker(c.registrationUrl, 'lw', { token: await workerToken(r, 'late') });
    cleanups.push(() => w.close());
    await waitFor(async () => (await service(r, sid)).instance_list[0]?.status === 'RUNNING', { message: 'RUNNING once capacity appeared' });
  });

  test('cluster process killed: INACTIVE within seconds; restarted: ACTIVE again, instances adopted, undesired ones deleted', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    // the grace period is longer than a restart of the binary: the instances stay where they are
    const r = await startTestRoot(store, 0, 20_000);
    cleanups.push(() => store.close(), () => r.close());
    const [httpPort, mqttPort] = [await freePort(), await freePort()];
    const bin = fileURLToPath(new URL('../../cluster/bin/oak-cluster.mjs', import.meta.url));
    const procToken = await clusterJoinToken(r.root.ctx, 'proc');
    const spawnCluster = (): ChildProcess =>
      spawn(process.execPath, [bin, '--host', '127.0.0.1', '--port', String(httpPort), '--mqtt-port', String(mqttPort), '--report-interval', String(INTERVAL)], {
        env: { ...process.env, CLUSTER_NAME: 'proc', SYSTEM_MANAGER_URL: r.linkAddress, OAK_JOIN_TOKEN: procToken },
        stdio: 'ignore',
      });
    let proc = spawnCluster();
    cleanups.push(async () => { proc.kill('SIGKILL'); });
    await waitFor(async () => (await cluster(r, 'proc'))?.status === 'ACTIVE', { timeoutMs: 20_000, message: 'binary cluster ACTIVE' });
    const regUrl = `https://127.0.0.1:${httpPort}/api/node/register`;
    const w = await startFakeWorker(regUrl, 'pw', { token: await workerToken(r, 'proc') });
    cleanups.push(() => w.close());
    const keep = await deployApp(r, 'keep');
    const drop = await deployApp(r, 'drop');
    await waitFor(async () => (await service(r, keep)).instance_list[0]?.status === 'RUNNING' && (await service(r, drop)).instance_list[0]?.status === 'RUNNING', { message: 'both RUNNING' });
    const deploysBefore = w.deploys.length;

    const t0 = Date.now();
    proc.kill('SIGKILL');
    await waitFor(async () => (await cluster(r, 'proc'))?.status === 'INACTIVE', { timeoutMs: 5000, message: 'INACTIVE' });
    const inactiveAfterMs = Date.now() - t0;
    assert.ok(inactiveAfterMs < 3000, `INACTIVE after ${inactiveAfterMs} ms`);

    // while the cluster is away, one service is deleted: its instance must go when the cluster is back
    const del = await r.api('DELETE', `/api/service/${drop}`);
    assert.ok(del.status < 300, String(del.status));

    proc = spawnCluster();
    await waitFor(async () => (await cluster(r, 'proc'))?.status === 'ACTIVE', { timeoutMs: 20_000, message: 'ACTIVE again' });
    await waitFor(() => w.deletes.some((d) => d.job_name === 'drop.test.web.test'), { timeoutMs: 10_000, message: 'sync deleted the undesired instance' });
    assert.ok(w.running.has('keep.test.web.test.instance.0'), 'the desired instance still runs');
    const inst = (await service(r, keep)).instance_list[0];
    assert.equal(inst?.status, 'RUNNING', JSON.stringify(inst?.history));
    assert.equal(inst?.worker_id, w.id);
    assert.ok(!inst?.history?.some((h) => h.status === 'DEAD'), 'never DEAD');
    assert.ok(w.deploys.length - deploysBefore <= 1, 'at most a status probe, no second instance');
    assert.equal(w.running.size, 1);
  });

  test('root restart: the cluster reconnects by itself and nothing is lost', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    cleanups.push(() => store.close());
    const linkPort = await freePort();
    let r = await startTestRoot(store, linkPort);
    const c = await startCluster(await clusterConfig(r, 'rr'));
    cleanups.push(() => c.close());
    const w = await startFakeWorker(c.registrationUrl, 'rw', { token: await workerToken(r, 'rr') });
    cleanups.push(() => w.close());
    const sid = await deployApp(r, 'survive');
    await waitFor(async () => (await service(r, sid)).instance_list[0]?.status === 'RUNNING', { message: 'RUNNING' });
    await r.close();
    await waitFor(() => !c.rootConnected, { message: 'link down' });
    r = await startTestRoot(store, linkPort);
    const again = r;
    cleanups.push(() => again.close());
    await waitFor(async () => (await cluster(r, 'rr'))?.status === 'ACTIVE', { timeoutMs: 10_000, message: 'ACTIVE after the root restart' });
    await r.control.idle();
    const inst = (await service(r, sid)).instance_list[0];
    assert.equal(inst?.status, 'RUNNING');
    // a deploy again for the same copy is the cluster asking a worker whose report it has not seen
    // yet (a status probe, idempotent); a new copy would be a second instance
    assert.ok(w.deploys.length <= 2, `no redeploy beyond a status probe (${w.deploys.length} deploys)`);
    assert.equal(new Set(w.deploys.map((d) => `${d.job_name}/${d.instance_number}`)).size, 1, 'the same copy every time');
    assert.equal(w.running.size, 1, 'one copy runs');
    assert.equal(w.deletes.length, 0, 'no delete');
  });

  test('a cluster that stays away past the grace period loses its instance to another cluster; back, it deletes its copy', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    const r = await startTestRoot(store);
    cleanups.push(() => store.close(), () => r.close());
    const [httpA, mqttA] = [await freePort(), await freePort()];
    let a: ClusterHandle = await startCluster(await clusterConfig(r, 'ca', { port: httpA, mqttPort: mqttA }));
    const wa: FakeWorker = await startFakeWorker(a.registrationUrl, 'wa', { cores: 8, token: await workerToken(r, 'ca') });
    cleanups.push(() => wa.close());
    await waitFor(async () => (await cluster(r, 'ca'))?.resources?.workers === 1);
    const sid = await deployApp(r, 'move', { vcpus: 1 });
    await waitFor(async () => (await service(r, sid)).instance_list[0]?.status === 'RUNNING', { message: 'RUNNING on ca' });
    const ca = await cluster(r, 'ca');
    assert.equal((await service(r, sid)).instance_list[0]?.cluster_id, ca?._id);

    const b = await startCluster(await clusterConfig(r, 'cb'));
    cleanups.push(() => b.close());
    const wb = await startFakeWorker(b.registrationUrl, 'wb', { token: await workerToken(r, 'cb') });
    cleanups.push(() => wb.close());
    await waitFor(async () => (await cluster(r, 'cb'))?.resources?.workers === 1);

    const t0 = Date.now();
    await a.close();
    const moved = await waitFor(async () => {
      const i = (await service(r, sid)).instance_list[0];
      return i?.status === 'RUNNING' && i.cluster_id !== ca?._id ? i : undefined;
    }, { timeoutMs: 15_000, message: 'RUNNING on cb' });
    const movedAfterMs = Date.now() - t0;
    assert.equal(moved.worker_id, wb.id);
    const hist = (await service(r, sid)).instance_list[0]?.history?.map((h) => h.status) ?? [];
    assert.deepEqual(hist.slice(hist.indexOf('DEAD')), ['DEAD', 'REQUESTED', 'CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'RUNNING']);
    assert.ok(movedAfterMs < 8000, `moved after ${movedAfterMs} ms`);

    // ca comes back (same ports): its worker still runs the old copy, which the sync removes
    a = await startCluster(await clusterConfig(r, 'ca', { port: httpA, mqttPort: mqttA }));
    const back = a;
    cleanups.push(() => back.close());
    await waitFor(() => wa.deletes.some((d) => d.job_name === 'move.test.web.test'), { timeoutMs: 10_000, message: 'old copy deleted' });
    const final = (await service(r, sid)).instance_list[0];
    assert.equal(final?.status, 'RUNNING');
    assert.equal(final?.worker_id, wb.id);
  });
});
