import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connectBus, silentLogger } from '@oak/bus';
import { startMosquitto, waitFor } from '@oak/testkit';
import type { MosquittoInstance } from '@oak/testkit';
import { startCluster } from '../src/index.ts';
import type { ClusterConfig, ClusterHandle } from '../src/index.ts';
import { assignment, registration } from './fixtures.ts';
import { startFakeRoot, startFakeWorker } from './harness.ts';
import type { FakeRoot, FakeWorker } from './harness.ts';

const INTERVAL = 200;

function clusterConfig(root: FakeRoot | undefined, extra: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    name: 'c1',
    host: '127.0.0.1',
    port: 0,
    mqttPort: 0,
    reportIntervalMs: INTERVAL,
    aggregateIntervalMs: 500,
    log: silentLogger,
    ...(root ? { root: { address: root.address, token: root.token } } : {}),
    ...extra,
  };
}

async function post(url: string, body: string, type = 'application/json'): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': type }, body });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('cluster: worker registration over HTTP', () => {
  let cluster: ClusterHandle;
  before(async () => { cluster = await startCluster(clusterConfig(undefined)); });
  after(async () => { await cluster.close(); });

  test('a valid registration gets an id, the broker port and the report interval', async () => {
    const r = await post(cluster.registrationUrl, JSON.stringify(registration('w1')));
    assert.equal(r.status, 200);
    assert.equal(typeof r.json.id, 'string');
    assert.equal(r.json.MQTT_BROKER_PORT, cluster.mqttPort);
    assert.equal(r.json.report_interval_ms, INTERVAL);
    assert.equal(r.json.MQTT_BROKER_URL, undefined, 'embedded broker: the cluster host at MQTT_BROKER_PORT');
    // a worker that sends its previous id keeps it
    const again = await post(cluster.registrationUrl, JSON.stringify({ ...registration('w1'), id: r.json.id }));
    assert.equal(again.json.id, r.json.id);
    const nodes = (await (await fetch(`${cluster.httpUrl}/api/nodes`)).json()) as { id: string; name: string; alive: boolean }[];
    assert.deepEqual(nodes.map((n) => [n.id, n.name, n.alive]), [[r.json.id, 'w1', true]]);
    const health = (await (await fetch(`${cluster.httpUrl}/healthz`)).json()) as Record<string, unknown>;
    assert.equal(health.status, 'ok');
    assert.equal(health.workers, 1);
    assert.equal(health.root_connected, false);
  });

  test('invalid registrations are refused with the error shape and change nothing', async () => {
    const before = cluster.core.workers.size;
    const missing = await post(cluster.registrationUrl, JSON.stringify({ node_name: 'x' }));
    assert.equal(missing.status, 422);
    const err = missing.json.error as { code: string; message: string; path: string };
    assert.equal(err.code, 'OAK_VALIDATION');
    assert.match(err.message, /node registration/);
    const badVirt = await post(cluster.registrationUrl, JSON.stringify({ ...registration('w9'), virtualizations: ['docker'] }));
    assert.equal(badVirt.status, 422);
    assert.match((badVirt.json.error as { path: string }).path, /virtualizations/);
    const badId = await post(cluster.registrationUrl, JSON.stringify({ ...registration('w9'), id: 'a/b' }));
    assert.equal(badId.status, 422);
    const malformed = await post(cluster.registrationUrl, '{"node_name":');
    assert.equal(malformed.status, 400);
    assert.equal((malformed.json.error as { code: string }).code, 'OAK_MALFORMED_JSON');
    const nf = await fetch(`${cluster.httpUrl}/api/nope`);
    assert.equal(nf.status, 404);
    assert.equal(cluster.core.workers.size, before);
  });

  test('invalid MQTT payloads are dropped without harm', async () => {
    const bus = await connectBus(cluster.mqttUrl);
    await bus.publish('nodes/w1/information', 'not json');
    await bus.publishJson('nodes/w1/information', { cpu_percent: 'high' });
    await bus.publishJson('nodes/w1/job', { job_name: '', instance_number: -1 });
    await bus.publish('nodes/w1/jobs/resources', Buffer.from([0xff, 0xfe]));
    await bus.publishJson('nodes/w1/logs/nobody', { lines: 'x' });
    await bus.close();
    const health = await fetch(`${cluster.httpUrl}/healthz`);
    assert.equal(health.status, 200);
  });
});

describe('cluster: placement, statuses, liveness (embedded broker, fake root and workers)', () => {
  let root: FakeRoot;
  let cluster: ClusterHandle;
  const workers: FakeWorker[] = [];
  before(async () => {
    root = await startFakeRoot();
    cluster = await startCluster(clusterConfig(root));
    await waitFor(() => cluster.rootConnected, { message: 'link welcome' });
  });
  after(async () => {
    for (const w of workers) await w.close();
    await cluster.close();
    await root.close();
  });

  test('the link says hello with the token; the aggregate follows the welcome', async () => {
    assert.equal(cluster.clusterId, 'cid-c1');
    const hello = root.received.find((m) => m.type === 'hello');
    assert.ok(hello && hello.type === 'hello' && hello.token === root.token && hello.cluster_name === 'c1');
    await waitFor(() => root.lastAggregate() !== undefined);
  });

  test('a worker gets the deploy command and its job statuses reach the root; replicas spread over two workers', async () => {
    workers.push(await startFakeWorker(cluster.registrationUrl, 'w1'));
    workers.push(await startFakeWorker(cluster.registrationUrl, 'w2'));
    await waitFor(() => root.lastAggregate()?.workers === 2, { message: 'aggregate with 2 workers' });
    root.send({ type: 'sync', instances: [] });
    root.send({ type: 'deploy', instance: assignment('a.a.web.a', 0) });
    root.send({ type: 'deploy', instance: assignment('a.a.web.a', 1) });
    await waitFor(() => root.statuses('a.a.web.a').filter((s) => s.status === 'RUNNING').length === 2, { message: 'both RUNNING at the root' });
    const [w1, w2] = workers as [FakeWorker, FakeWorker];
    assert.equal(w1.deploys.length, 1);
    assert.equal(w2.deploys.length, 1);
    const cmd = w1.deploys[0];
    assert.ok(cmd);
    assert.equal(cmd.job_name, 'a.a.web.a');
    assert.equal(cmd.code, 'docker.io/library/nginx:latest');
    assert.equal(cmd.microserviceID, 'svc-a.a.web.a');
    const running = root.statuses('a.a.web.a').filter((s) => s.status === 'RUNNING');
    assert.deepEqual(new Set(running.map((s) => s.worker_id)), new Set([w1.id, w2.id]));
    assert.deepEqual(root.statuses('a.a.web.a', 0).map((s) => s.status), ['NODE_SCHEDULED', 'CREATING', 'RUNNING']);
  });

  test('what fits nowhere waits with a reason and is placed when a bigger worker registers', async () => {
    root.send({ type: 'deploy', instance: assignment('b.b.big.b', 0, { vcpus: 16 }) });
    await waitFor(() => root.statuses('b.b.big.b', 0).some((s) => s.status === 'CLUSTER_SCHEDULED' && s.status_detail === 'NO_WORKER_CAPACITY'), { message: 'pending reason' });
    const big = await startFakeWorker(cluster.registrationUrl, 'big', { cores: 32, memory: 65536 });
    workers.push(big);
    await waitFor(() => root.statuses('b.b.big.b', 0).some((s) => s.status === 'RUNNING' && s.worker_id === big.id), { message: 'placed on the big worker' });
  });

  test('a worker that stops reporting is dead within ~3 intervals; its instance goes DEAD and is rescheduled', async () => {
    const victim = workers.find((w) => w.name === 'w1');
    assert.ok(victim);
    const n = victim.deploys[0]?.instance_number ?? 0;
    const t0 = Date.now();
    victim.silence();
    await waitFor(() => root.statuses('a.a.web.a', n).some((s) => s.status === 'DEAD'), { timeoutMs: 5000, message: 'DEAD' });
    const detectedMs = Date.now() - t0;
    assert.ok(detectedMs < 6 * INTERVAL, `death detected after ${detectedMs} ms`);
    await waitFor(() => {
      const last = root.statuses('a.a.web.a', n).at(-1);
      return last?.status === 'RUNNING' && last.worker_id !== victim.id;
    }, { message: 'rescheduled and RUNNING elsewhere' });
    const seq = root.statuses('a.a.web.a', n).map((s) => s.status);
    assert.deepEqual(seq.slice(seq.indexOf('DEAD')), ['DEAD', 'NODE_SCHEDULED', 'CREATING', 'RUNNING']);
    await waitFor(() => root.lastAggregate()?.workers === 2, { message: 'dead worker dropped from the aggregate' });
    // it comes back, still running the instance: the cluster deletes it there
    await victim.report();
    await waitFor(() => victim.deletes.some((d) => d.job_name === 'a.a.web.a' && d.instance_number === n), { message: 'delete on the returning worker' });
  });

  test('sync deletes undesired instances and keeps the desired ones', async () => {
    const all = workers.flatMap((w) => [...w.running]);
    assert.ok(all.includes('b.b.big.b.instance.0'));
    root.send({ type: 'sync', instances: [assignment('b.b.big.b', 0, { vcpus: 16 })] });
    await waitFor(() => workers.every((w) => ![...w.running].some((r) => r.startsWith('a.a.web.a'))), { message: 'a.a.web.a deleted everywhere' });
    assert.ok(workers.some((w) => w.running.has('b.b.big.b.instance.0')));
  });

  test('logs: a request from the root reaches the worker and the lines come back', async () => {
    const big = workers.find((w) => w.name === 'big');
    assert.ok(big);
    root.send({ type: 'logs', request_id: 'r1', job_name: 'b.b.big.b', instance_number: 0, follow: false, tail: 10 });
    await waitFor(() => root.received.some((m) => m.type === 'logs_end' && m.request_id === 'r1'), { message: 'logs_end' });
    assert.equal(big.logRequests[0]?.tail, 10);
    root.send({ type: 'logs', request_id: 'r2', job_name: 'nope.a.b.c', instance_number: 0, follow: false });
    await waitFor(() => root.received.some((m) => m.type === 'logs_end' && m.request_id === 'r2' && m.error !== undefined));
  });
});

describe('cluster on an external Mosquitto (MQTT_URL)', () => {
  let mosq: MosquittoInstance;
  let root: FakeRoot;
  let cluster: ClusterHandle;
  let worker: FakeWorker | undefined;
  before(async () => {
    mosq = await startMosquitto();
    root = await startFakeRoot();
    cluster = await startCluster(clusterConfig(root, { mqttUrl: mosq.url }));
  });
  after(async () => {
    await worker?.close();
    await cluster.close();
    await root.close();
    await mosq.stop();
  });

  test('workers are told the broker URL and get their deploys through it', async () => {
    worker = await startFakeWorker(cluster.registrationUrl, 'm1');
    assert.equal(worker.answer.MQTT_BROKER_URL, mosq.url);
    assert.equal(worker.answer.MQTT_BROKER_PORT, mosq.port);
    await waitFor(() => cluster.rootConnected);
    root.send({ type: 'sync', instances: [assignment('m.m.m.m', 0)] });
    await waitFor(() => root.statuses('m.m.m.m', 0).some((s) => s.status === 'RUNNING'), { message: 'RUNNING via mosquitto' });
  });
});
