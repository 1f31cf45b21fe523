import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DynsecProvisioner, connectBus, silentLogger } from '@oak/bus';
import type { Bus } from '@oak/bus';
import { createHmac } from 'node:crypto';
import { freePort, requestJson, startMosquitto, waitFor } from '@oak/testkit';
import type { MosquittoInstance } from '@oak/testkit';
import { startCluster } from '../src/index.ts';
import type { ClusterConfig, ClusterHandle } from '../src/index.ts';
import { assignment, registration } from './fixtures.ts';
import { join, joinConfig, startFakeRoot, startFakeWorker } from './harness.ts';
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
    ...joinConfig(),
    ...extra,
  };
}

async function post(url: string, body: unknown, type = 'application/json'): Promise<{ status: number; json: Record<string, unknown> }> {
  return requestJson(url, { method: 'POST', body, contentType: type, tls: join.clientTls() });
}
const get = (url: string): Promise<{ status: number; json: Record<string, unknown> }> => requestJson(url, { tls: join.clientTls() });
const errorOf = (r: { json: Record<string, unknown> }): { code: string; message: string; path?: string; hint?: string } => r.json.error as { code: string; message: string; path?: string; hint?: string };

describe('cluster: worker registration (HTTPS, join token)', () => {
  let cluster: ClusterHandle;
  before(async () => { cluster = await startCluster(clusterConfig(undefined)); });
  after(async () => { await cluster.close(); });

  test('a valid registration gets an id, its own MQTT credentials, the broker port and the report interval', async () => {
    assert.match(cluster.registrationUrl, /^https:/);
    const r = await post(cluster.registrationUrl, { ...registration('w1'), token: join.workerToken() });
    assert.equal(r.status, 200);
    const id = r.json.id as string;
    assert.equal(typeof id, 'string');
    assert.equal(r.json.MQTT_BROKER_PORT, cluster.mqttPort);
    assert.equal(r.json.report_interval_ms, INTERVAL);
    assert.equal(r.json.MQTT_BROKER_URL, undefined, 'embedded broker: the cluster host at MQTT_BROKER_PORT');
    assert.equal(r.json.mqtt_username, id);
    assert.equal(r.json.mqtt_password, createHmac('sha256', join.mqttSecret).update(`oak-mqtt:${id}`).digest('base64url'));
    assert.equal(r.json.mqtt_tls, true);
    assert.deepEqual(join.checks.at(-1), { token: join.checks.at(-1)?.token, workerId: id, ok: true });
    // its owner keeps its id (it proves it with its password); anyone else asking for it gets a new one
    const again = await post(cluster.registrationUrl, { ...registration('w1'), token: join.workerToken(), id, id_proof: r.json.mqtt_password });
    assert.equal(again.json.id, id);
    const thief = await post(cluster.registrationUrl, { ...registration('evil'), token: join.workerToken(), id });
    assert.equal(thief.status, 200);
    assert.notEqual(thief.json.id, id, 'an id without its proof is not handed out');
    const forged = await post(cluster.registrationUrl, { ...registration('evil'), token: join.workerToken(), id, id_proof: 'x'.repeat(43) });
    assert.notEqual(forged.json.id, id);
    const nodes = await get(`${cluster.httpUrl}/api/nodes`);
    assert.ok((nodes.json as unknown as { id: string }[]).some((n) => n.id === id));
    const health = await get(`${cluster.httpUrl}/healthz`);
    assert.equal(health.json.status, 'ok');
    assert.equal(health.json.root_connected, false);
  });

  test('no token, a malformed, a cluster, a revoked or an unknown (other cluster, expired) token: 401 with a hint, nothing recorded', async () => {
    const workers = cluster.core.workers.size;
    const creds = cluster.credentials().size;
    const revoked = join.workerToken();
    join.revoke(revoked);
    const other = `oak1.w.zzzzzzzz.${'A'.repeat(32)}.${join.caHash}`;
    const clusterToken = `oak1.c.abcdefgh.${'B'.repeat(32)}.${join.caHash}`;
    for (const token of [undefined, 'nope', clusterToken, revoked, other]) {
      const r = await post(cluster.registrationUrl, { ...registration('intruder'), ...(token !== undefined ? { token } : {}) });
      assert.equal(r.status, 401, `token ${String(token)}`);
      const e = errorOf(r);
      assert.equal(e.code, 'OAK_JOIN_TOKEN_INVALID');
      assert.match(e.hint ?? '', /oak token create worker --cluster <name>/);
    }
    assert.equal(cluster.core.workers.size, workers, 'no worker in the core');
    assert.equal(cluster.credentials().size, creds, 'no credentials');
    assert.ok(![...cluster.core.workers.values()].some((w) => w.name === 'intruder'));
  });

  test('the root unreachable: 503 with a hint, nothing recorded', async () => {
    const workers = cluster.core.workers.size;
    join.down = true;
    try {
      const r = await post(cluster.registrationUrl, { ...registration('later'), token: join.workerToken() });
      assert.equal(r.status, 503);
      assert.equal(errorOf(r).code, 'OAK_UNAVAILABLE');
      assert.ok(errorOf(r).hint);
    } finally {
      join.down = false;
    }
    assert.equal(cluster.core.workers.size, workers);
  });

  test('body and field limits: 413 for a big body, 422 naming the field; invalid ones change nothing', async () => {
    const before = cluster.core.workers.size;
    const token = join.workerToken();
    const big = await post(cluster.registrationUrl, { ...registration('big'), token, padding: 'x'.repeat(64 * 1024) });
    assert.equal(big.status, 413);
    assert.equal(errorOf(big).code, 'OAK_BODY_TOO_LARGE');
    const longName = await post(cluster.registrationUrl, { ...registration('n'.repeat(300)), token });
    assert.equal(longName.status, 422);
    assert.equal(errorOf(longName).path, 'node_name');
    assert.equal(errorOf(longName).code, 'OAK_LIMIT_EXCEEDED');
    const manyVirt = await post(cluster.registrationUrl, { ...registration('v'), token, virtualizations: Array(17).fill('container') });
    assert.equal(manyVirt.status, 422);
    assert.equal(errorOf(manyVirt).path, 'virtualizations');
    const missing = await post(cluster.registrationUrl, { node_name: 'x', token });
    assert.equal(missing.status, 422);
    assert.equal(errorOf(missing).code, 'OAK_VALIDATION');
    assert.match(errorOf(missing).message, /node registration/);
    const badVirt = await post(cluster.registrationUrl, { ...registration('w9'), token, virtualizations: ['docker'] });
    assert.equal(badVirt.status, 422);
    assert.match(errorOf(badVirt).path ?? '', /virtualizations/);
    const badId = await post(cluster.registrationUrl, { ...registration('w9'), token, id: 'a/b' });
    assert.equal(badId.status, 422);
    const malformed = await post(cluster.registrationUrl, '{"node_name":');
    assert.equal(malformed.status, 400);
    assert.equal(errorOf(malformed).code, 'OAK_MALFORMED_JSON');
    const nf = await get(`${cluster.httpUrl}/api/nope`);
    assert.equal(nf.status, 404);
    assert.equal(cluster.core.workers.size, before);
  });

  test('plain HTTP on the HTTPS port gets nothing', async () => {
    await assert.rejects(fetch(cluster.registrationUrl.replace('https:', 'http:'), { method: 'POST', body: '{}' }));
  });
});

describe('cluster: a standalone cluster without a token check', () => {
  test('refuses every registration with a hint', async () => {
    const c = await startCluster({ ...clusterConfig(undefined), tokenCheck: undefined as never });
    try {
      const r = await post(c.registrationUrl, { ...registration('w'), token: join.workerToken() });
      assert.equal(r.status, 503);
      assert.match(errorOf(r).hint ?? '', /SYSTEM_MANAGER_URL/);
      assert.equal(c.core.workers.size, 0);
    } finally {
      await c.close();
    }
  });
});

describe('cluster: MQTT identity (embedded broker)', () => {
  let cluster: ClusterHandle;
  let root: FakeRoot;
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

  test('anonymous and guessed credentials are refused; invalid payloads of a worker are dropped without harm', async () => {
    await assert.rejects(connectBus(cluster.mqttUrl, { clientId: 'anon', tls: join.clientTls(), connectTimeoutMs: 2000 }));
    await assert.rejects(connectBus(cluster.mqttUrl, { clientId: 'x', username: 'x', password: 'y', tls: join.clientTls(), connectTimeoutMs: 2000 }));
    const w = await startFakeWorker(cluster.registrationUrl, 'p1');
    workers.push(w);
    await w.bus.publish(`nodes/${w.id}/information`, 'not json');
    await w.bus.publishJson(`nodes/${w.id}/information`, { cpu_percent: 'high' });
    await w.bus.publishJson(`nodes/${w.id}/job`, { job_name: '', instance_number: -1 });
    await w.bus.publish(`nodes/${w.id}/jobs/resources`, Buffer.from([0xff, 0xfe]));
    await w.bus.publishJson(`nodes/${w.id}/logs/nobody`, { lines: 'x' });
    const health = await get(`${cluster.httpUrl}/healthz`);
    assert.equal(health.status, 200);
  });

  test("worker A cannot forge B's FAILED status nor see B's commands", async () => {
    const a = await startFakeWorker(cluster.registrationUrl, 'a');
    const b = await startFakeWorker(cluster.registrationUrl, 'b');
    workers.push(a, b);
    await waitFor(() => root.lastAggregate()?.workers === 3, { message: '3 workers' });
    root.send({ type: 'sync', instances: [] });
    root.send({ type: 'deploy', instance: assignment('f.f.f.f', 0, { worker_id: null }) });
    await waitFor(() => root.statuses('f.f.f.f', 0).some((s) => s.status === 'RUNNING'), { message: 'RUNNING' });
    const home = workers.find((w) => w.running.has('f.f.f.f.instance.0'));
    assert.ok(home);
    const attacker = workers.find((w) => w !== home && w.name !== 'p1') ?? a;
    const before = root.statuses('f.f.f.f', 0).length;
    await assert.rejects(attacker.bus.subscribe(`nodes/${home.id}/control/#`, () => {}), /Subscribe error/);
    void attacker.bus.publishJson(`nodes/${home.id}/job`, { job_name: 'f.f.f.f', instance_number: 0, status: 'FAILED', status_detail: 'forged' }, 0).catch(() => undefined);
    await waitFor(() => !attacker.bus.connected, { timeoutMs: 3000, message: 'the forger is disconnected' });
    await new Promise((r) => setTimeout(r, 3 * INTERVAL));
    assert.equal(root.statuses('f.f.f.f', 0).length, before, 'nothing reached the root');
    assert.equal(cluster.core.desired.get('f.f.f.f.instance.0')?.status, 'RUNNING');
  });

  test('revoking a token disconnects its workers at once; their reports change nothing; the token no longer registers', async () => {
    const token = join.workerToken();
    const v = await startFakeWorker(cluster.registrationUrl, 'victim', { token });
    workers.push(v);
    assert.equal(cluster.credentials().get(v.id), token.split('.')[2]);
    await waitFor(() => cluster.core.workers.get(v.id)?.info != null, { message: 'first report' });
    join.revoke(token);
    root.send({ type: 'revoke_workers', token_id: token.split('.')[2] });
    await waitFor(() => !v.bus.connected, { timeoutMs: 3000, message: 'victim disconnected' });
    await waitFor(() => !cluster.core.workers.has(v.id), { message: 'victim forgotten' });
    assert.equal(cluster.credentials().has(v.id), false);
    // it cannot come back with the same password, nor register again with the token
    await assert.rejects(connectBus(cluster.mqttUrl, { clientId: v.id, username: v.id, password: v.answer.mqtt_password ?? '', tls: join.clientTls(), connectTimeoutMs: 2000 }));
    const again = await post(cluster.registrationUrl, { ...registration('victim'), token, id: v.id, id_proof: v.answer.mqtt_password });
    assert.equal(again.status, 401);
    assert.equal(cluster.core.workers.has(v.id), false);
    // by worker id (oak node rm)
    const r = await startFakeWorker(cluster.registrationUrl, 'removed');
    workers.push(r);
    assert.deepEqual(await cluster.revokeWorkers({ worker_ids: [r.id] }), [r.id]);
    await waitFor(() => !r.bus.connected, { timeoutMs: 3000, message: 'removed worker disconnected' });
    assert.equal(cluster.core.workers.has(r.id), false);
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

  test('epochs over the link: statuses echo the deploy\'s epoch; a stale undeploy leaves the copy, the matching one removes it', async () => {
    const job = 'e.e.ep.e';
    root.send({ type: 'deploy', instance: { ...assignment(job, 0), epoch: 5 } });
    await waitFor(() => root.statuses(job, 0).some((s) => s.status === 'RUNNING'), { message: 'RUNNING' });
    assert.deepEqual([...new Set(root.statuses(job, 0).map((s) => s.epoch))], [5], 'every status carries epoch 5');
    const home = workers.find((w) => w.running.has(`${job}.instance.0`));
    assert.ok(home, 'a worker runs it');
    // the stale undeploy comes first on the ordered link; a later deploy of another instance shows it was handled
    root.send({ type: 'undeploy', job_name: job, instance_number: 0, epoch: 4 });
    root.send({ type: 'deploy', instance: { ...assignment(job, 1), epoch: 1 } });
    await waitFor(() => root.statuses(job, 1).some((s) => s.status === 'RUNNING' && s.epoch === 1), { message: 'instance 1 RUNNING' });
    assert.ok(home.running.has(`${job}.instance.0`), 'the copy of epoch 5 stays');
    assert.equal(home.deletes.filter((d) => d.job_name === job && d.instance_number === 0).length, 0);
    root.send({ type: 'undeploy', job_name: job, instance_number: 0, epoch: 5 });
    await waitFor(() => home.deletes.some((d) => d.job_name === job && d.instance_number === 0), { message: 'deleted on its worker' });
    // hostile epochs are refused by the link codec: nothing happens to instance 1
    root.send({ type: 'undeploy', job_name: job, instance_number: 1, epoch: -1 } as never);
    root.send({ type: 'undeploy', job_name: job, instance_number: 1, epoch: 'x' } as never);
    root.send({ type: 'undeploy', job_name: job, instance_number: 1, epoch: 1 });
    await waitFor(() => workers.some((w) => w.deletes.some((d) => d.job_name === job && d.instance_number === 1)), { message: 'instance 1 deleted by the valid undeploy' });
  });
});

describe('cluster on an external Mosquitto with dynamic security (MQTT_URL with admin credentials)', () => {
  let mosq: MosquittoInstance;
  let root: FakeRoot;
  let cluster: ClusterHandle;
  let worker: FakeWorker | undefined;
  let dynsec: DynsecProvisioner;
  let admin: Bus;
  before(async () => {
    mosq = await startMosquitto({ dynsec: { adminUser: 'oak-admin', adminPassword: 'dynsec-secret' } });
    root = await startFakeRoot();
    cluster = await startCluster(clusterConfig(root, { mqttUrl: mosq.adminUrl ?? '' }));
    admin = await connectBus(mosq.url, { clientId: 'test-observer', username: 'oak-admin', password: 'dynsec-secret' });
    dynsec = await DynsecProvisioner.attach(admin);
  });
  after(async () => {
    await worker?.close();
    await admin.close();
    await cluster.close();
    await root.close();
    await mosq.stop();
  });

  test('anonymous is refused; a registered worker is provisioned, gets its deploys, is deleted from the broker on revocation', async () => {
    await assert.rejects(connectBus(mosq.url, { clientId: 'anon', connectTimeoutMs: 2000 }));
    worker = await startFakeWorker(cluster.registrationUrl, 'm1');
    assert.equal(worker.answer.MQTT_BROKER_URL, mosq.url, 'the URL without the admin credentials');
    assert.equal(worker.answer.MQTT_BROKER_PORT, mosq.port);
    assert.equal(worker.answer.mqtt_tls, false);
    assert.ok((await dynsec.listClients()).includes(worker.id));
    await waitFor(() => cluster.rootConnected);
    root.send({ type: 'sync', instances: [assignment('m.m.m.m', 0)] });
    await waitFor(() => root.statuses('m.m.m.m', 0).some((s) => s.status === 'RUNNING'), { message: 'RUNNING via mosquitto' });
    // a phantom: the worker publishes for an id of its own invention; Mosquitto drops it
    await worker.bus.publishJson('nodes/phantom/information', { cpu_percent: 1 });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(cluster.core.workers.has('phantom'), false);

    await cluster.revokeWorkers({ worker_ids: [worker.id] });
    const w = worker;
    await waitFor(() => !w.bus.connected, { timeoutMs: 3000, message: 'Mosquitto kicked the worker' });
    assert.equal((await dynsec.listClients()).includes(w.id), false);
  });

  test('a restarted cluster (stateless) drops reports of workers it does not know, asks them to register, and re-provisions them', async () => {
    const port = await freePort();
    let c = await startCluster(clusterConfig(undefined, { mqttUrl: mosq.adminUrl ?? '', port }));
    try {
      const w = await startFakeWorker(c.registrationUrl, 'r1');
      try {
        assert.ok(c.credentials().has(w.id));
        await c.close();
        // the worker stays connected to Mosquitto; the new cluster has never seen it
        c = await startCluster(clusterConfig(undefined, { mqttUrl: mosq.adminUrl ?? '', port }));
        // it knows from the broker which token the worker joined with (a revocation reaches it now)
        const tokenId = c.credentials().get(w.id);
        assert.match(tokenId ?? '', /^[a-z0-9]{8}$/);
        assert.equal(c.core.isRegistered(w.id), false, 'but the worker must register again to count');
        // a worker reports every few seconds: the first report may reach the broker before the
        // restarted cluster's subscription does, so report until the cluster asks (at most every
        // 10 s: a first attempt lost under load gets a second ask)
        await waitFor(async () => {
          if (c.core.isRegistered(w.id)) return true;
          await w.report();
          return undefined;
        }, { timeoutMs: 25_000, intervalMs: 500, message: 're-registered on request' });
        await waitFor(() => c.core.workers.get(w.id)?.info != null, { timeoutMs: 5000, message: 'its reports count again' });
        assert.ok((await dynsec.listClients()).includes(w.id));

        // restarted once more, the token is revoked before the worker registered again: it goes at once
        await c.close();
        c = await startCluster(clusterConfig(undefined, { mqttUrl: mosq.adminUrl ?? '', port }));
        join.revoke(w.token);
        assert.deepEqual(await c.revokeWorkers({ token_id: tokenId ?? '' }), [w.id]);
        await waitFor(() => !w.bus.connected || undefined, { timeoutMs: 5000, message: 'kicked by Mosquitto' });
        assert.equal((await dynsec.listClients()).includes(w.id), false);
      } finally {
        await w.close();
      }
    } finally {
      await c.close();
    }
  });
});
