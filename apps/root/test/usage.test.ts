/**
 * Per-instance CPU and memory readings end to end (issue 11): fake workers publish
 * nodes/{id}/jobs/resources, a real cluster passes the readings of the instances it placed on
 * each worker up the link, the real root keeps a bounded history (GET /api/service/:id/metrics)
 * and publishes `metrics` events, each organisation seeing its own only. Also the workers'
 * measured readings in /api/clusters (the infrastructure view's bars).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '@oak/bus';
import { startCluster, type ClusterHandle } from '@oak/cluster';
import { topics, type ApplicationDoc, type ClusterDoc, type OakEvent, type TokenPair } from '@oak/contracts';
import { createStore, type Store } from '@oak/store';
import { waitFor } from '@oak/testkit';
import { startFakeWorker, type FakeWorker } from '../../cluster/test/harness.ts';
import { hashPassword } from '../src/auth/passwords.ts';
import { linkControl } from '../src/link/index.ts';
import { startRoot, type RootHandle } from '../src/server.ts';
import { clusterJoinToken, rawLinkCall, workerJoinToken } from './join.ts';

const PASSWORD = 'password-123';

interface ServiceMetrics {
  microserviceID: string;
  job_name: string;
  max_samples: number;
  instances: { instance_number: number; samples: { at: number; cpu_percent: number; memory_mb: number }[] }[];
}

let store: Store;
let root: RootHandle;
let cluster: ClusterHandle;
let w1: FakeWorker;
let w2: FakeWorker;
const tokens: Record<string, string> = {};
const cleanups: (() => Promise<unknown>)[] = [];

async function api<T>(method: string, path: string, token: string | undefined, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${root.url}${path}`, {
    method,
    headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: (text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text) as T };
}

async function login(name: string, password = PASSWORD): Promise<string> {
  const r = await api<TokenPair>('POST', '/api/auth/login', undefined, { username: name, password });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.token;
}

async function user(name: string, org: string): Promise<string> {
  const o = (await store.getOrganizationByName(org)) ?? (await store.createOrganization(org));
  await store.createUser({ name, password_hash: await hashPassword(PASSWORD), roles: ['Application_Provider'], organization_id: o.id, email: null });
  return login(name);
}

function sla(app: string): unknown {
  return {
    sla_version: 'v2.0',
    customerID: 'x',
    applications: [
      {
        application_name: app,
        application_namespace: 'test',
        application_desc: 'usage test',
        microservices: [{ microservice_name: 'web', microservice_namespace: 'test', virtualization: 'container', code: 'docker.io/library/nginx:latest', memory: 100, vcpus: 1 }],
      },
    ],
  };
}

/** an SSE stream of /api/events collecting the parsed events */
function events(path: string, token: string): { got: OakEvent[]; status: Promise<number>; close(): void } {
  const ac = new AbortController();
  const got: OakEvent[] = [];
  const status = (async () => {
    const res = await fetch(`${root.url}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
    if (res.body === null || res.status !== 200) return res.status;
    void (async () => {
      const dec = new TextDecoder();
      let buf = '';
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += dec.decode(chunk, { stream: true });
          for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
            const frame = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = frame.split('\n').find((l) => l.startsWith('data: '));
            if (data !== undefined) got.push(JSON.parse(data.slice(6)) as OakEvent);
          }
        }
      } catch {
        // aborted
      }
    })();
    return res.status;
  })();
  return { got, status, close: () => ac.abort() };
}

/** publishes a jobs/resources report for the worker */
function resources(w: FakeWorker, instances: { job_name: string; instance_number: number; cpu_percent: number; memory_mb: number }[]): Promise<void> {
  return w.bus.publishJson(topics.jobResources(w.id), { instances });
}

let sidA = '';
let sidB = '';
const JOB_A = 'usagea.test.web.test';
const JOB_B = 'usageb.test.web.test';

before(async () => {
  store = await createStore({ sqlitePath: ':memory:' });
  cleanups.push(() => store.close());
  root = await startRoot({
    host: '127.0.0.1',
    port: 0,
    store,
    adminPassword: 'admin-secret-1',
    logLevel: 'silent',
    announce: () => {},
    control: linkControl({ host: '127.0.0.1', port: 0, graceMs: 1500, retryMs: 500, pingIntervalMs: 200, pingTimeoutMs: 1000 }),
  });
  cleanups.push(() => root.close());
  const control = root.ctx.control as unknown as { link: { address: string } };
  cluster = await startCluster({
    name: 'uc',
    host: '127.0.0.1',
    port: 0,
    mqttPort: 0,
    reportIntervalMs: 200,
    aggregateIntervalMs: 200,
    linkMaxBackoffMs: 300,
    linkSilenceTimeoutMs: 2000,
    log: silentLogger,
    root: { address: control.link.address, token: await clusterJoinToken(root.ctx, 'uc') },
  });
  cleanups.push(() => cluster.close());
  w1 = await startFakeWorker(cluster.registrationUrl, 'uw1', { token: (await workerJoinToken(root.ctx, 'uc')).token, cores: 4 });
  cleanups.push(() => w1.close());
  await waitFor(() => cluster.core.workers.get(w1.id)?.awaitingReport === false || undefined, { message: 'w1 reported' });
  tokens.alice = await user('alice', 'orgA');
  tokens.bob = await user('bob', 'orgB');
  const a = await api<ApplicationDoc[]>('POST', '/api/application/?deploy=true', tokens.alice, sla('usagea'));
  assert.equal(a.status, 201, JSON.stringify(a.body));
  sidA = a.body[0]?.microservices[0] ?? '';
  const b = await api<ApplicationDoc[]>('POST', '/api/application/?deploy=true', tokens.bob, sla('usageb'));
  assert.equal(b.status, 201, JSON.stringify(b.body));
  sidB = b.body[0]?.microservices[0] ?? '';
  await waitFor(() => (w1.running.has(`${JOB_A}.instance.0`) && w1.running.has(`${JOB_B}.instance.0`)) || undefined, { message: 'both instances on w1' });
  // the hostile worker joins after the placements: nothing runs on it
  w2 = await startFakeWorker(cluster.registrationUrl, 'uw2', { token: (await workerJoinToken(root.ctx, 'uc')).token, cores: 1, memory: 64 });
  cleanups.push(() => w2.close());
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe('per-instance readings', () => {
  test('readings reach the history and the event streams of their own organisation only; a worker cannot report instances it does not run', async () => {
    const alice = events('/api/events?types=metrics', tokens.alice ?? '');
    const bob = events('/api/events?types=metrics', tokens.bob ?? '');
    const plain = events('/api/events', tokens.alice ?? '');
    cleanups.push(async () => alice.close(), async () => bob.close(), async () => plain.close());
    assert.equal(await alice.status, 200);
    assert.equal(await bob.status, 200);
    assert.equal(await plain.status, 200);
    // w2 first claims both instances (and one that does not exist), and the cluster has taken it in
    await resources(w2, [
      { job_name: JOB_A, instance_number: 0, cpu_percent: 99, memory_mb: 999 },
      { job_name: JOB_B, instance_number: 0, cpu_percent: 99, memory_mb: 999 },
      { job_name: 'ghost.test.web.test', instance_number: 0, cpu_percent: 99, memory_mb: 999 },
    ]);
    await waitFor(() => (cluster.core.workers.get(w2.id)?.resources?.instances.length === 3) || undefined, { message: 'w2 reading at the cluster' });
    await resources(w1, [
      { job_name: JOB_A, instance_number: 0, cpu_percent: 12.5, memory_mb: 42 },
      { job_name: JOB_B, instance_number: 0, cpu_percent: 7, memory_mb: 21 },
    ]);
    const m = await waitFor(async () => {
      const r = await api<ServiceMetrics>('GET', `/api/service/${sidA}/metrics`, tokens.alice);
      return r.status === 200 && (r.body.instances[0]?.samples.length ?? 0) >= 2 ? r.body : undefined;
    }, { message: 'two readings of instance 0 at the root' });
    assert.equal(m.job_name, JOB_A);
    assert.ok(m.max_samples > 0);
    assert.ok(m.instances[0]?.samples.every((s) => s.cpu_percent === 12.5 && s.memory_mb === 42), JSON.stringify(m.instances[0]?.samples));
    const one = await api<{ samples: { at: number }[] }>('GET', `/api/service/${sidA}/instance/0/metrics`, tokens.alice);
    assert.equal(one.status, 200);
    assert.ok(one.body.samples.length >= 2);
    assert.ok(one.body.samples.every((s, i, all) => i === 0 || s.at >= (all[i - 1]?.at ?? 0)), 'oldest first');

    // live: each stream gets its own organisation's readings, never the other's
    await waitFor(() => alice.got.some((e) => e.type === 'metrics' && e.microserviceID === sidA) || undefined, { message: 'metrics event for alice' });
    await waitFor(() => bob.got.some((e) => e.type === 'metrics' && e.microserviceID === sidB) || undefined, { message: 'metrics event for bob' });
    assert.ok(alice.got.every((e) => e.type === 'metrics' && e.microserviceID === sidA && e.instances.every((i) => i.cpu_percent === 12.5)), JSON.stringify(alice.got));
    assert.ok(bob.got.every((e) => e.type === 'metrics' && e.microserviceID === sidB && e.instances.every((i) => i.cpu_percent === 7)), JSON.stringify(bob.got));
    // metrics are opt-in: a stream without ?types gets none (it got alice's instance events meanwhile)
    assert.ok(plain.got.every((e) => e.type !== 'metrics'), JSON.stringify(plain.got));
  });

  test('another organisation, no token, malformed paths: refused', async () => {
    assert.equal((await api('GET', `/api/service/${sidA}/metrics`, undefined)).status, 401);
    const bob = await api<{ code: string }>('GET', `/api/service/${sidA}/metrics`, tokens.bob);
    assert.ok(bob.status === 403 || bob.status === 404, String(bob.status));
    assert.doesNotMatch(JSON.stringify(bob.body), /12\.5|usagea/);
    assert.ok([403, 404].includes((await api('GET', `/api/service/${sidA}/instance/0/metrics`, tokens.bob)).status));
    assert.equal((await api('GET', `/api/service/${sidA}/instance/-1/metrics`, tokens.alice)).status, 400);
    assert.equal((await api('GET', `/api/service/${sidA}/instance/99999999999/metrics`, tokens.alice)).status, 400);
    assert.equal((await api('GET', `/api/service/${sidA}/instance/1/metrics`, tokens.alice)).status, 404);
    assert.equal((await api('GET', `/api/service/${sidA}/instance/abc/metrics`, tokens.alice)).status, 400);
    // an id longer than the router takes matches no route: the API's 404, not the dashboard's page
    const long = await api<{ error?: { code: string } }>('GET', `/api/service/${'x'.repeat(300)}/metrics`, tokens.alice);
    assert.equal(long.status, 404);
    assert.equal(typeof long.body.error?.code, 'string');
    assert.equal((await api('GET', `/api/events?types=${'metrics,'.repeat(40)}`, tokens.alice)).status, 400);
  });

  test("a cluster cannot send readings for another cluster's instances", async () => {
    const before = (await api<ServiceMetrics>('GET', `/api/service/${sidA}/metrics`, tokens.alice)).body.instances[0]?.samples.length ?? 0;
    const { client, call } = await rawLinkCall(root.ctx, (root.ctx.control as unknown as { link: { address: string } }).link.address);
    cleanups.push(async () => {
      call.cancel();
      client.close();
    });
    call.on('error', () => {});
    call.on('data', () => {});
    call.write({ type: 'hello', token: await clusterJoinToken(root.ctx, 'evil'), cluster_name: 'evil', cluster_location: null, version: 'test' });
    const agg = (cpu: number): unknown => ({
      type: 'aggregate',
      resources: { cpu_cores_free: 1, cpu_cores_total: 1, memory_free_mb: 1, memory_total_mb: 1, gpus_free: 0, virtualizations: ['container'], workers: 0, worker_summary: [] },
      usage: [{ job_name: JOB_A, instance_number: 0, worker_id: w1.id, cpu_percent: cpu, memory_mb: 1 }],
    });
    await waitFor(async () => ((await api<ClusterDoc[]>('GET', '/api/clusters/', tokens.alice)).body.find((c) => c.cluster_name === 'evil')?.status === 'ACTIVE') || undefined, {
      message: 'evil cluster ACTIVE',
      timeoutMs: 10_000,
    });
    call.write(agg(55));
    // the legitimate cluster's next readings arrive after the evil aggregate was taken in
    await waitFor(async () => ((await api<ServiceMetrics>('GET', `/api/service/${sidA}/metrics`, tokens.alice)).body.instances[0]?.samples.length ?? 0) >= before + 5 || undefined, { message: 'more readings' });
    const m = (await api<ServiceMetrics>('GET', `/api/service/${sidA}/metrics`, tokens.alice)).body;
    assert.ok(m.instances[0]?.samples.every((s) => s.cpu_percent === 12.5), JSON.stringify(m.instances[0]?.samples));
  });

  test('the infrastructure view: measured worker readings in /api/clusters', async () => {
    const c = await waitFor(async () => (await api<ClusterDoc[]>('GET', '/api/clusters/', tokens.alice)).body.find((x) => x.cluster_name === 'uc' && x.resources?.worker_summary.length === 2), { message: 'two workers in the aggregate' });
    const s = c.resources?.worker_summary.find((w) => w.id === w1.id);
    assert.ok(s);
    assert.equal(s.cpu_cores_total, 4);
    assert.equal(typeof s.cpu_percent, 'number');
    assert.ok((s.cpu_percent ?? -1) >= 0 && (s.cpu_percent ?? 101) <= 100);
    assert.ok((s.memory_total_mb ?? 0) > 0);
    assert.equal(typeof s.memory_available_mb, 'number');
    assert.equal(typeof s.disk_free_mb, 'number');
    assert.equal(typeof s.arch, 'string');
  });
});
