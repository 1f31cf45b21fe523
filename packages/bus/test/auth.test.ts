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
import { DynsecProvisioner, connectBus, provisionClusterClient, mayPublish, maySubscribe, startEmbeddedBroker, workerDynsecAcls } from '../src/index.ts';
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
  test('the Mosquitto role says the same', () => {
    const acls = workerDynsecAcls('a');
    assert.deepEqual(acls.filter((x) => x.acltype === 'publishClientSend').map((x) => x.topic), ['nodes/a/#']);
    assert.deepEqual(acls.filter((x) => x.acltype === 'subscribePattern').map((x) => x.topic), ['nodes/a/control/#', 'nodes/a/net/#']);
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
    return passwords.get(user) === pw.toString() && clientId === user ? W(user) : null;
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
});
