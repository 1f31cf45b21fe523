/**
 * The cluster orchestrator on NATS server's MQTT mode (a real nats-server with JetStream, its own
 * config, ports and users file): a registered worker gets a user in the file, its deploys and
 * RUNNING, cannot speak for another id, is disconnected on revocation; a restarted cluster finds
 * its workers in the file; the start says what NATS cannot do, and refuses a server without
 * JetStream or MQTT_URL without the cluster's NATS user; the flags go together.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { connectBus } from '@oak/bus';
import { netTopics } from '@oak/contracts';
import type { ClusterToRoot } from '@oak/contracts';
import type { Bus, Logger } from '@oak/bus';
import { freePort, startNats, waitFor } from '@oak/testkit';
import type { NatsInstance } from '@oak/testkit';
import { startCluster } from '../src/index.ts';
import type { ClusterConfig, ClusterHandle } from '../src/index.ts';
import { configFromArgs } from '../src/main.ts';
import { assignment } from './fixtures.ts';
import { join, joinConfig, startFakeRoot, startFakeWorker } from './harness.ts';
import type { FakeRoot, FakeWorker } from './harness.ts';

function capture(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const put = (m: string): void => { lines.push(m); };
  return { lines, debug: () => {}, info: put, warn: put, error: put };
}

function config(n: NatsInstance, root: FakeRoot | undefined, log: Logger, extra: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    name: 'c-nats',
    host: '127.0.0.1',
    port: 0,
    mqttPort: 0,
    reportIntervalMs: 200,
    aggregateIntervalMs: 500,
    log,
    mqttUrl: n.adminUrl,
    natsAuth: { file: n.usersFile, pidFile: n.pidFile, monitorUrl: n.monitorUrl },
    ...(root ? { root: { address: root.address, token: root.token } } : {}),
    ...joinConfig(),
    ...extra,
  };
}

describe('cluster on NATS MQTT (users file, reload)', () => {
  let n: NatsInstance;
  let root: FakeRoot;
  let cluster: ClusterHandle;
  let worker: FakeWorker | undefined;
  let spy: Bus;
  const log = capture();
  before(async () => {
    n = await startNats({ adminUser: 'oak-c', adminPassword: 'nats-cluster-secret' });
    root = await startFakeRoot();
    cluster = await startCluster(config(n, root, log));
    spy = await connectBus(n.url, { clientId: 'test-spy', username: 'oak-c', password: 'nats-cluster-secret', reconnectPeriodMs: 0 });
  });
  after(async () => {
    await worker?.close();
    await spy?.close();
    await cluster?.close();
    await root?.close();
    await n?.stop();
  });

  test('the start says which NATS and what it cannot do', () => {
    const all = log.lines.join('\n');
    assert.match(all, /NATS MQTT \d+\.\d+\.\d+: worker users in /);
    if (/^2\.[0-9]\./.test(/NATS MQTT (\S+):/.exec(all)?.[1] ?? '')) assert.match(all, /refuses MQTT topics holding "\."/);
    assert.match(all, /client ids/);
  });

  test('a worker registers, gets a user, its deploys, RUNNING; cannot speak for another id; revocation disconnects it', async () => {
    await assert.rejects(connectBus(n.url, { clientId: 'anon', connectTimeoutMs: 2000, reconnectPeriodMs: 0 }));
    worker = await startFakeWorker(cluster.registrationUrl, 'n1');
    assert.equal(worker.answer.MQTT_BROKER_URL, n.url, 'the URL without the cluster\'s credentials');
    assert.match(await readFile(n.usersFile, 'utf8'), new RegExp(`# oak-worker ${worker.id} [a-z0-9]{8}`));
    await waitFor(() => cluster.rootConnected);
    root.send({ type: 'sync', instances: [assignment('n.n.n.n', 0)] });
    await waitFor(() => root.statuses('n.n.n.n', 0).some((s) => s.status === 'RUNNING'), { message: 'RUNNING via NATS' });
    const seen: string[] = [];
    await spy.subscribe('nodes/phantom/#', (t) => { seen.push(t); });
    await worker.bus.publishJson('nodes/phantom/information', { cpu_percent: 1 }).catch(() => undefined);
    await spy.publishJson('nodes/phantom/control/probe', {});
    await waitFor(() => seen.includes('nodes/phantom/control/probe'), { timeoutMs: 3000, message: 'probe' });
    assert.deepEqual(seen, ['nodes/phantom/control/probe'], 'NATS dropped the phantom report');
    assert.equal(cluster.core.workers.has('phantom'), false);
    assert.ok(worker.bus.connected);

    // its token revoked (else it would register again when asked): its users go, the reload kicks it
    join.revoke(worker.token);
    const tokenId = cluster.credentials().get(worker.id) ?? '';
    assert.deepEqual(await cluster.revokeWorkers({ token_id: tokenId }), [worker.id]);
    const w = worker;
    await waitFor(() => !w.bus.connected, { timeoutMs: 3000, message: 'the reload disconnected the worker' });
    assert.doesNotMatch(await readFile(n.usersFile, 'utf8'), new RegExp(w.id));
  });

  test('a restarted cluster knows the workers in the file and which token each joined with', async () => {
    const port = await freePort();
    const l2 = capture();
    let c = await startCluster(config(n, undefined, l2, { port }));
    try {
      const w = await startFakeWorker(c.registrationUrl, 'r1');
      try {
        await c.close();
        c = await startCluster(config(n, undefined, l2, { port }));
        assert.match(c.credentials().get(w.id) ?? '', /^[a-z0-9]{8}$/);
        assert.equal(c.core.isRegistered(w.id), false, 'it must register again to count');
        await waitFor(async () => {
          if (c.core.isRegistered(w.id)) return true;
          await w.report();
          return undefined;
        }, { timeoutMs: 25_000, intervalMs: 500, message: 're-registered on request' });
      } finally {
        await w.close();
      }
    } finally {
      await c.close();
    }
  });
});

describe('cluster on NATS before 2.10: topics holding "." are not published (NATS would close the connection)', () => {
  test('a service table update for a dotted job name is dropped with a warning; the cluster stays connected and working', async (t) => {
    const JOB = 'app.ns.web.ns';
    const n = await startNats({ adminUser: 'oak-c', adminPassword: 'nats-cluster-secret' });
    t.after(() => n.stop());
    const root = await startFakeRoot();
    t.after(() => root.close());
    root.onMessage((m: ClusterToRoot) => {
      if (m.type === 'subnet_request') root.send({ type: 'subnet_result', request_id: m.request_id, subnet: '10.18.0.64/26', subnet_v6: null });
      else if (m.type === 'table_query') root.send({ type: 'table_result', request_id: m.request_id, table: { job_name: m.job_name ?? JOB, service_ip: '10.30.0.10', instances: [] } });
    });
    const log = capture();
    const cluster = await startCluster(config(n, root, log));
    t.after(() => cluster.close());
    const dots = log.lines.some((l) => /refuses MQTT topics holding "\."/.test(l));
    if (!dots) {
      t.skip('this NATS takes dots in topics (2.10 or later)');
      return;
    }
    await waitFor(() => cluster.rootConnected);
    root.send({ type: 'sync', instances: [] });
    const w = await startFakeWorker(cluster.registrationUrl, 'd1');
    t.after(() => w.close());
    const nm = await connectBus(n.url, { clientId: `${w.id}-net`, username: `${w.id}-net`, password: w.answer.mqtt_password ?? '', reconnectPeriodMs: 0 });
    t.after(() => nm.close());
    const results: string[] = [];
    await nm.subscribe(`nodes/${w.id}/net/#`, (topic) => { results.push(topic); });
    // NATS itself refuses the NetManager's subscription to the dotted topic
    await assert.rejects(nm.subscribe(`jobs/${JOB}/updates_available`, () => {}));
    // a table query makes the cluster follow the job; an instance of it reported makes the table change
    await nm.publishJson(netTopics.tableQueryRequest(w.id), { request_id: 'q1', job_name: JOB });
    await waitFor(() => results.includes(netTopics.tableQueryResult(w.id)), { message: 'table query answered' });
    const overlay = { service_ip: '10.30.0.10', service_ip_v6: 'fdff::a', closest_ip: '10.30.0.11', instance_ip: '10.30.1.0', instance_ip_v6: 'fdff::1:0' };
    root.send({ type: 'deploy', instance: { ...assignment(JOB, 0), overlay } });
    await waitFor(() => root.statuses(JOB, 0).some((s) => s.status === 'RUNNING'), { message: 'RUNNING' });
    await nm.publishJson(netTopics.serviceDeployed(w.id), { job_name: JOB, instance_number: 0, nsip: '10.18.0.70', host_ip: '127.0.0.2', host_port: 50103, subnet: '10.18.0.64/26' });
    await waitFor(() => log.lines.some((l) => l.includes(`jobs/${JOB}/updates_available not published`)), { timeoutMs: 5000, message: 'the dropped update' });
    // still connected and working: another deploy reaches RUNNING
    root.send({ type: 'deploy', instance: assignment('other.ns.x.ns', 0) });
    await waitFor(() => root.statuses('other.ns.x.ns', 0).some((s) => s.status === 'RUNNING'), { message: 'RUNNING after the dropped update' });
    assert.ok(nm.connected && w.bus.connected);
  });
});

describe('cluster on NATS: refused configurations', () => {
  test('MQTT_URL without the cluster\'s user, a server without JetStream, flags that do not go together', async () => {
    const n = await startNats();
    const varz = createServer((_req, res) => { res.setHeader('content-type', 'application/json'); res.end(JSON.stringify({ version: '2.11.0', config_load_time: 'x' })); });
    await new Promise<void>((r) => varz.listen(0, '127.0.0.1', r));
    const noJs = `http://127.0.0.1:${(varz.address() as { port: number }).port}`;
    try {
      await assert.rejects(startCluster(config(n, undefined, capture(), { mqttUrl: n.url })), /MQTT_URL must carry the cluster's NATS user/);
      await assert.rejects(startCluster(config(n, undefined, capture(), { natsAuth: { file: n.usersFile, pidFile: n.pidFile, monitorUrl: noJs } })), /without JetStream/);
      await assert.rejects(startCluster(config(n, undefined, capture(), { natsAuth: { file: n.usersFile, pidFile: n.pidFile, monitorUrl: 'http://127.0.0.1:1' } })), /monitoring endpoint .* does not answer/);
    } finally {
      await new Promise<void>((r) => varz.close(() => r()));
      await n.stop();
    }
    assert.throws(() => configFromArgs(['--nats-users-file', '/x'], {}), /go together/);
    assert.throws(() => configFromArgs(['--nats-users-file', '/x', '--nats-pid-file', '/y'], {}), /needs --mqtt-url/);
    assert.throws(() => configFromArgs(['--mqtt-url', 'mqtt://a:b@h:1', '--nats-users-file', '/x', '--nats-pid-file', '/y', '--nats-monitor-url', 'file:///etc'], {}), /http/);
    const cfg = configFromArgs([], { MQTT_URL: 'mqtt://a:b@h:1', OAK_NATS_USERS_FILE: '/x', OAK_NATS_PID_FILE: '/y', OAK_NATS_MONITOR_URL: 'http://h:8222' });
    assert.ok(cfg !== 'help');
    assert.deepEqual(cfg.natsAuth, { file: '/x', pidFile: '/y', monitorUrl: 'http://h:8222' });
  });
});
