/**
 * Broker authentication and ACLs (docs/security.md): the pure rules, the embedded aedes with its
 * authenticate/authorize hooks (plain and over TLS), and a private Mosquitto provisioned through
 * its dynamic-security plugin. Each refusal is asserted together with "nothing got through".
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMosquitto, waitFor } from '@oak/testkit';
import type { MosquittoInstance } from '@oak/testkit';
import { createCa, issueIdentity, pinnedTlsOptions } from '@oak/trust';
import { DynsecProvisioner, connectBus, provisionClusterClient, mayPublish, maySubscribe, startEmbeddedBroker, workerDynsecAcls, workerOfClient } from '../src/index.ts';
import type { BrokerPrincipal, Bus, EmbeddedBroker, Logger } from '../src/index.ts';

const W = (id: string): BrokerPrincipal => ({ role: 'worker', workerId: id });

describe('ACL rules', () => {
  test('a worker publishes only under nodes/<its id>/', () => {
    assert.equal(mayPublish(W('a'), 'nodes/a/information'), true);
    assert.equal(mayPublish(W('a'), 'nodes/a/logs/r1'), true);
    assert.equal(mayPublish(W('a'), 'nodes/b/information'), false);
    assert.equal(mayPublish(W('a'), 'nodes/a'), false);
    assert.equal(mayPublish(W('a'), 'nodes/ab/job'), false);
    assert.equal(mayPublish(W('a'), 'nodes/a/'), false);
    assert.equal(mayPublish(W('a'), '$SYS/x'), false);
    assert.equal(mayPublish({ role: 'admin', name: 'c' }, 'nodes/b/control/deploy'), true);
  });
  test('a worker subscribes only to its control and net branches', () => {
    for (const ok of ['nodes/a/control/deploy', 'nodes/a/control/#', 'nodes/a/control/+', 'nodes/a/net/#', 'nodes/a/control/logs/cancel']) assert.equal(maySubscribe(W('a'), ok), true, ok);
    for (const no of ['nodes/b/control/deploy', 'nodes/+/control/deploy', 'nodes/#', '#', 'nodes/a/#', 'nodes/a/+/deploy', 'nodes/a/information', 'nodes/a', '$SYS/#', '+/a/control/x']) assert.equal(maySubscribe(W('a'), no), false, no);
    assert.equal(maySubscribe({ role: 'admin', name: 'c' }, '#'), true);
  });
  test('a worker reads net/peers and jobs/<job>/updates_available, never publishes there', () => {
    for (const ok of ['net/peers', 'jobs/+/updates_available', 'jobs/a.a.web.a/updates_available']) assert.equal(maySubscribe(W('a'), ok), true, ok);
    for (const no of ['net/#', 'net/+', 'net/peers/#', 'jobs/#', 'jobs/+/#', 'jobs/+/+', 'jobs/x/updates_available/#', 'jobs//updates_available', 'jobs/#/updates_available', 'jobs/a+/updates_available', 'jobs/x/y/updates_available', '+/+/updates_available', 'jobs/x/deploy']) {
      assert.equal(maySubscribe(W('a'), no), false, no);
    }
    for (const no of ['net/peers', 'jobs/a.a.web.a/updates_available', 'jobs/x/deploy', 'nodes/b/net/service/deployed', 'nodes/b/net/subnet', 'nodes/b/net/rtt']) assert.equal(mayPublish(W('a'), no), false, no);
    assert.equal(mayPublish(W('a'), 'nodes/a/net/service/deployed'), true);
  });
  test('client ids: exactly <id> (NodeEngine) and <id>-net (NetManager) for a worker', () => {
    const known = (id: string): boolean => id === 'a' || id === 'b';
    assert.equal(workerOfClient('a', 'a', known), 'a');
    assert.equal(workerOfClient('a-net', 'a', known), 'a');
    assert.equal(workerOfClient('a-net', 'a-net', known), 'a', 'Mosquitto form: a client of its own');
    for (const [cid, user] of [['b', 'a'], ['b-net', 'a'], ['a-net-net', 'a'], ['a-net2', 'a'], ['a', 'a-net'], ['x', 'x'], ['x-net', 'x'], ['-net', '-net'], ['a/net', 'a'], ['a-NET', 'a'], ['', 'a']] as const) {
      assert.equal(workerOfClient(cid, user, known), null, `${cid} as ${user}`);
    }
    // a worker whose own id ends in -net keeps it
    assert.equal(workerOfClient('c-net', 'c-net', (id) => id === 'c-net'), 'c-net');
  });
  test('the Mosquitto role says the same', () => {
    const acls = workerDynsecAcls('a');
    assert.deepEqual(acls.filter((x) => x.acltype === 'publishClientSend').map((x) => x.topic), ['nodes/a/#']);
    assert.deepEqual(acls.filter((x) => x.acltype === 'subscribePattern').map((x) => x.topic), ['nodes/a/control/#', 'nodes/a/net/#', 'net/peers', 'jobs/+/updates_available']);
  });
});

function recordingLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, debug: () => {}, info: () => {}, warn: (m) => lines.push(m), error: (m) => lines.push(m) };
}

/** a worker auth table like the cluster's: user = client id = worker id, password per worker */
function authOf(passwords: Map<string, string>, admin: { user: string; password: string }) {
  return (clientId: string, user: string | undefined, pw: Buffer | undefined): BrokerPrincipal | null => {
    if (user === undefined || pw === undefined) return null;
    if (user === admin.user) return pw.toString() === admin.password ? { role: 'admin', name: user } : null;
    const wid = workerOfClient(clientId, user, (id) => passwords.has(id));
    return wid !== null && passwords.get(wid) === pw.toString() ? W(wid) : null;
  };
}

async function refusedConnect(url: string, opts: Parameters<typeof connectBus>[1]): Promise<Error> {
  try {
    const b = await connectBus(url, { connectTimeoutMs: 3000, ...opts });
    await b.close();
  } catch (err) {
    return err as Error;
  }
  throw new Error('the broker accepted the client');
}

describe('embedded aedes with authentication', () => {
  let broker: EmbeddedBroker;
  const log = recordingLog();
  const pw = new Map([['wa', 'pa'], ['wb', 'pb']]);
  const admin = { user: 'cluster', password: 'adminpw' };
  let cluster: Bus;
  const seen: { topic: string; body: string }[] = [];
  before(async () => {
    broker = await startEmbeddedBroker({ port: 0, auth: authOf(pw, admin), log });
    cluster = await connectBus(broker.url, { clientId: 'cluster-1', username: admin.user, password: admin.password });
    await cluster.subscribe('nodes/#', (topic, p) => { seen.push({ topic, body: p.toString() }); });
  });
  after(async () => {
    await cluster.close();
    await broker.close();
  });

  test('anonymous, wrong password and a stolen client id are refused at connect', async () => {
    const before = broker.refusals.connect;
    assert.match((await refusedConnect(broker.url, { clientId: 'anon' })).message, /not authori[sz]ed|Connection refused/i);
    await refusedConnect(broker.url, { clientId: 'wa', username: 'wa', password: 'wrong' });
    // worker b's credentials but worker a's client id (would take a's session over)
    await refusedConnect(broker.url, { clientId: 'wa', username: 'wb', password: 'pb' });
    assert.equal(broker.refusals.connect, before + 3);
    assert.equal(broker.clients, 1, 'only the cluster is connected');
  });

  test("worker A cannot subscribe to or publish on worker B's topics; its own work", async () => {
    const a = await connectBus(broker.url, { clientId: 'wa', username: 'wa', password: 'pa', reconnectPeriodMs: 60_000 });
    try {
      const got: string[] = [];
      await a.subscribe('nodes/wa/control/#', (t) => { got.push(t); });
      for (const f of ['nodes/wb/control/#', 'nodes/+/control/#', '#']) await assert.rejects(a.subscribe(f, (t) => { got.push(t); }), /Subscribe error/);
      await cluster.publishJson('nodes/wb/control/deploy', { for: 'b' });
      await cluster.publishJson('nodes/wa/control/deploy', { for: 'a' });
      await waitFor(() => got.includes('nodes/wa/control/deploy'), { timeoutMs: 3000, message: 'own command' });
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(got, ['nodes/wa/control/deploy'], "nothing of B's reached A");
      assert.equal(broker.refusals.subscribe, 3);
      assert.equal(log.lines.filter((l) => l.includes('refused subscription by worker wa')).length, 1, 'logged once per client');

      await a.publishJson('nodes/wa/information', { own: true });
      await waitFor(() => seen.some((s) => s.topic === 'nodes/wa/information'), { timeoutMs: 3000, message: 'own report' });
      // a forged status for B: refused, the connection closed, nothing delivered
      void a.publishJson('nodes/wb/job', { forged: true }, 0).catch(() => undefined);
      await waitFor(() => broker.refusals.publish === 1, { timeoutMs: 3000, message: 'publish refused' });
      await waitFor(() => !a.connected, { timeoutMs: 3000, message: 'connection closed' });
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(seen.filter((s) => s.topic === 'nodes/wb/job').length, 0);
      assert.ok(log.lines.some((l) => l.includes('refused publish by worker wa on "nodes/wb/job"')));
    } finally {
      await a.close();
    }
  });

  test('a worker and its NetManager (<id>-net) both connect; the NetManager reads peers and tables, publishes only its own net topics', async () => {
    const eng = await connectBus(broker.url, { clientId: 'wa', username: 'wa', password: 'pa', reconnectPeriodMs: 60_000 });
    const net = await connectBus(broker.url, { clientId: 'wa-net', username: 'wa', password: 'pa', reconnectPeriodMs: 60_000 });
    const refusedBefore = broker.refusals.publish;
    try {
      await refusedConnect(broker.url, { clientId: 'wb-net', username: 'wa', password: 'pa' });
      await refusedConnect(broker.url, { clientId: 'wa-net', username: 'wa', password: 'pb' });
      await refusedConnect(broker.url, { clientId: 'wa-net', username: 'wb', password: 'pb' });
      const got: string[] = [];
      await net.subscribe('net/peers', (t) => { got.push(t); });
      await net.subscribe('jobs/+/updates_available', (t) => { got.push(t); });
      await net.subscribe('nodes/wa/net/#', (t) => { got.push(t); });
      for (const f of ['jobs/#', 'net/#', 'nodes/wb/net/#']) await assert.rejects(net.subscribe(f, () => {}), /Subscribe error/);
      await cluster.publishJson('net/peers', { peers: [] });
      await cluster.publishJson('jobs/x.x.x.x/updates_available', { job_name: 'x.x.x.x' });
      await cluster.publishJson('nodes/wa/net/subnet/result', { subnet: '10.18.0.64/26' });
      await cluster.publishJson('nodes/wb/net/subnet/result', { subnet: '10.18.0.128/26' });
      await waitFor(() => got.length >= 3, { timeoutMs: 3000, message: 'peers, table and own result' });
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(got.sort(), ['jobs/x.x.x.x/updates_available', 'net/peers', 'nodes/wa/net/subnet/result']);
      await net.publishJson('nodes/wa/net/service/deployed', { own: true });
      await waitFor(() => seen.some((s) => s.topic === 'nodes/wa/net/service/deployed'), { timeoutMs: 3000, message: 'own net report' });
      assert.ok(eng.connected && net.connected, 'both connections stay');
    } finally {
      await net.close();
      await eng.close();
    }
    // hostile: a NetManager publishing a table, the peers, or another worker's net topics is cut off
    for (const topic of ['jobs/x.x.x.x/updates_available', 'net/peers', 'nodes/wb/net/service/deployed']) {
      const evil = await connectBus(broker.url, { clientId: 'wa-net', username: 'wa', password: 'pa', reconnectPeriodMs: 60_000 });
      try {
        const n = broker.refusals.publish;
        void evil.publishJson(topic, { forged: true }, 0).catch(() => undefined);
        await waitFor(() => broker.refusals.publish === n + 1, { timeoutMs: 3000, message: `publish on ${topic} refused` });
        await waitFor(() => !evil.connected, { timeoutMs: 3000, message: 'connection closed' });
      } finally {
        await evil.close();
      }
    }
    assert.equal(broker.refusals.publish, refusedBefore + 3);
    assert.equal(seen.filter((s) => s.topic === 'nodes/wb/net/service/deployed').length, 0);
  });

  test('a last will outside the worker’s topics is refused at connect', async () => {
    await refusedConnect(broker.url, { clientId: 'wa', username: 'wa', password: 'pa', will: { topic: 'nodes/wb/job', payload: '{"status":"FAILED"}' } });
    assert.deepEqual(seen.filter((s) => s.topic === 'nodes/wb/job'), []);
  });

  test('disconnect() ends the connections of a revoked worker at once', async () => {
    const b = await connectBus(broker.url, { clientId: 'wb', username: 'wb', password: 'pb', reconnectPeriodMs: 100 });
    try {
      assert.equal(broker.disconnect((p) => p.role === 'worker' && p.workerId === 'wb'), 1);
      pw.delete('wb');
      await waitFor(() => !b.connected, { timeoutMs: 3000, message: 'b disconnected' });
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(b.connected, false, 'its reconnects are refused');
    } finally {
      await b.close();
    }
  });
});

describe('embedded aedes over TLS', () => {
  test("listens before the certificate exists ('later'), serves it once set", async () => {
    const ca = await createCa({ commonName: 'bus test CA' });
    const id = await issueIdentity(ca, { commonName: 'oak-cluster', dnsNames: ['oak-cluster'] });
    const broker = await startEmbeddedBroker({ port: 0, tls: 'later', auth: authOf(new Map([['w', 'p']]), { user: 'c', password: 'c' }) });
    try {
      assert.match(broker.url, /^mqtts:\/\//);
      const tls = pinnedTlsOptions(ca.certPem, 'oak-cluster');
      await assert.rejects(connectBus(broker.url, { clientId: 'w', username: 'w', password: 'p', tls, connectTimeoutMs: 500 }));
      broker.setSecureContext({ cert: id.chainPem, key: id.keyPem });
      const w = await connectBus(broker.url, { clientId: 'w', username: 'w', password: 'p', tls });
      await w.close();
      // a certificate of another CA is refused by the client; a plain client gets nothing from a TLS port
      const other = await createCa({ commonName: 'other CA' });
      await assert.rejects(connectBus(broker.url, { clientId: 'w', username: 'w', password: 'p', tls: pinnedTlsOptions(other.certPem, 'oak-cluster'), connectTimeoutMs: 500 }));
      await assert.rejects(connectBus(broker.url.replace('mqtts', 'mqtt'), { clientId: 'w', username: 'w', password: 'p', connectTimeoutMs: 500 }));
    } finally {
      await broker.close();
    }
  });
});

describe('Mosquitto with dynamic security', () => {
  let mq: MosquittoInstance;
  let admin: Bus;
  let dynsec: DynsecProvisioner;
  before(async () => {
    mq = await startMosquitto({ dynsec: { adminUser: 'oak-admin', adminPassword: 'admin-secret' } });
    await provisionClusterClient(mq.url, 'oak-admin', 'admin-secret');
    admin = await connectBus(mq.url, { clientId: 'oak-cluster-test', username: 'oak-admin', password: 'admin-secret' });
    dynsec = await DynsecProvisioner.attach(admin, { timeoutMs: 3000 });
    assert.equal(await dynsec.ensureClusterRole('oak-admin'), false, 'the role is there already');
  });
  after(async () => {
    await admin?.close();
    await mq?.stop();
  });

  test('anonymous is refused; a provisioned worker has exactly its ACL; removal disconnects it', async () => {
    await refusedConnect(mq.url, { clientId: 'anon' });
    await dynsec.upsertWorker('wa', 'pa');
    await dynsec.upsertWorker('wb', 'pb');
    // idempotent: a second registration repairs, never fails
    await dynsec.upsertWorker('wa', 'pa');
    assert.ok((await dynsec.listClients()).includes('wa'));
    await refusedConnect(mq.url, { clientId: 'wa', username: 'wa', password: 'wrong' });
    await refusedConnect(mq.url, { clientId: 'wa', username: 'wb', password: 'pb' });

    const seen: string[] = [];
    await admin.subscribe('nodes/#', (t) => { seen.push(t); });
    const a = await connectBus(mq.url, { clientId: 'wa', username: 'wa', password: 'pa', reconnectPeriodMs: 200 });
    try {
      const got: string[] = [];
      await a.subscribe('nodes/wa/control/#', (t) => { got.push(t); });
      for (const f of ['nodes/wb/control/#', 'nodes/+/control/#']) await assert.rejects(a.subscribe(f, (t) => { got.push(t); }), /Subscribe error/);
      await admin.publishJson('nodes/wb/control/deploy', { for: 'b' });
      await admin.publishJson('nodes/wa/control/deploy', { for: 'a' });
      await waitFor(() => got.includes('nodes/wa/control/deploy'), { timeoutMs: 3000, message: 'own command' });
      await a.publishJson('nodes/wb/job', { forged: true });
      await a.publishJson('nodes/wa/job', { own: true });
      await waitFor(() => seen.includes('nodes/wa/job'), { timeoutMs: 3000, message: 'own status' });
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(got, ['nodes/wa/control/deploy'], "nothing of B's reached A");
      assert.equal(seen.filter((t) => t === 'nodes/wb/job').length, 0, 'the forged status was dropped');

      // the cluster removes A: Mosquitto kicks it and refuses it from then on
      await dynsec.removeWorker('wa');
      await waitFor(() => !a.connected, { timeoutMs: 3000, message: 'A disconnected' });
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(a.connected, false);
      await refusedConnect(mq.url, { clientId: 'wa', username: 'wa', password: 'pa' });
      assert.ok(!(await dynsec.listClients()).includes('wa'));
      await dynsec.removeWorker('wa');
    } finally {
      await a.close();
    }
  });

  test('a worker\'s NetManager (wn-net, same password) connects too; it reads peers and tables, its forged publishes are dropped', async () => {
    await dynsec.upsertWorker('wn', 'pn');
    await dynsec.upsertWorker('wm', 'pm');
    await dynsec.upsertWorker('wn', 'pn');
    assert.ok((await dynsec.listClients()).includes('wn-net'));
    assert.deepEqual([...(await dynsec.workerTokens()).keys()].filter((k) => k.endsWith('-net')), [], 'NetManager clients are no workers');
    await refusedConnect(mq.url, { clientId: 'wn-net', username: 'wm-net', password: 'pm' });
    await refusedConnect(mq.url, { clientId: 'wn', username: 'wn-net', password: 'pn' });
    await refusedConnect(mq.url, { clientId: 'wn-net', username: 'wn-net', password: 'pm' });
    const seen: string[] = [];
    await admin.subscribe('#', (t) => { seen.push(t); });
    const eng = await connectBus(mq.url, { clientId: 'wn', username: 'wn', password: 'pn', reconnectPeriodMs: 200 });
    const net = await connectBus(mq.url, { clientId: 'wn-net', username: 'wn-net', password: 'pn', reconnectPeriodMs: 200 });
    try {
      const got: string[] = [];
      await net.subscribe('net/peers', (t) => { got.push(t); });
      await net.subscribe('jobs/+/updates_available', (t) => { got.push(t); });
      await net.subscribe('jobs/y.y.y.y/updates_available', (t) => { got.push(`literal ${t}`); });
      await net.subscribe('nodes/wn/net/#', (t) => { got.push(t); });
      for (const f of ['jobs/#', 'net/#', 'nodes/wm/net/#']) await assert.rejects(net.subscribe(f, () => {}), /Subscribe error/);
      await admin.publishJson('net/peers', { peers: [] });
      await admin.publishJson('jobs/y.y.y.y/updates_available', { job_name: 'y.y.y.y' });
      await admin.publishJson('nodes/wn/net/subnet/result', {});
      await admin.publishJson('nodes/wm/net/subnet/result', {});
      await waitFor(() => got.length >= 4, { timeoutMs: 3000, message: 'peers, table (twice) and own result' });
      for (const t of ['net/peers', 'jobs/y.y.y.y/updates_available', 'nodes/wm/net/service/deployed']) await net.publishJson(t, { forged: true });
      await net.publishJson('nodes/wn/net/service/deployed', { own: true });
      await waitFor(() => seen.includes('nodes/wn/net/service/deployed'), { timeoutMs: 3000, message: 'own net report' });
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(got.filter((t) => t !== 'nodes/wn/net/service/deployed').sort(), ['jobs/y.y.y.y/updates_available', 'literal jobs/y.y.y.y/updates_available', 'net/peers', 'nodes/wn/net/subnet/result']);
      assert.equal(seen.filter((t) => t === 'net/peers' || t === 'jobs/y.y.y.y/updates_available').length, 2, 'only the cluster\'s own two');
      assert.equal(seen.includes('nodes/wm/net/service/deployed'), false);
      assert.ok(eng.connected && net.connected);
      await dynsec.removeWorker('wn');
      await waitFor(() => !net.connected && !eng.connected, { timeoutMs: 3000, message: 'both disconnected on removal' });
      assert.equal((await dynsec.listClients()).some((c) => c === 'wn' || c === 'wn-net'), false);
    } finally {
      await net.close();
      await eng.close();
      await dynsec.removeWorker('wm');
    }
  });
});
