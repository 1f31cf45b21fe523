import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '@oak/testkit';
import { connectBus, startEmbeddedBroker } from '../src/index.ts';
import type { Bus, EmbeddedBroker } from '../src/index.ts';

describe('EmbeddedBroker.bus: the broker itself as a bus', () => {
  const users = new Map([['w1', 'pw1'], ['w2', 'pw2']]);
  let broker: EmbeddedBroker;
  const buses: Bus[] = [];
  const start = async (): Promise<EmbeddedBroker> => {
    broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      auth: (_clientId, user, pw) => (user !== undefined && users.get(user) === pw?.toString() ? { role: 'worker', workerId: user } : null),
    });
    return broker;
  };
  const worker = async (id: string): Promise<Bus> => {
    const b = await connectBus(broker.url, { clientId: id, username: id, password: users.get(id) ?? '' });
    buses.push(b);
    return b;
  };
  after(async () => {
    for (const b of buses) await b.close();
    await broker.close();
  });

  test('both directions, wildcards, QoS 0 and 1, retained, unsubscribe, no client counted', async () => {
    await start();
    const admin = broker.bus({ principal: { role: 'admin', name: 'cluster' }, clientId: 'cluster' });
    buses.push(admin);
    assert.equal(admin.connected, true);
    const w1 = await worker('w1');
    const w2 = await worker('w2');
    assert.equal(broker.clients, 2, 'the local bus is no MQTT client');

    const got: string[] = [];
    const hash: string[] = [];
    await admin.subscribe('nodes/+/information', (t, p) => { got.push(`${t} ${p.toString()}`); });
    await admin.subscribe('#', (t) => { hash.push(t); });
    await w1.publish('nodes/w1/information', 'a', 0);
    await w2.publish('nodes/w2/information', 'b', 1);
    await w2.publish('nodes/w2/job', 'c', 1);
    await waitFor(() => got.length === 2 && hash.length === 3, { timeoutMs: 3000, message: 'reports of both workers' });
    assert.deepEqual(got.sort(), ['nodes/w1/information a', 'nodes/w2/information b']);
    // `#` does not match the broker's $SYS topics (aedes publishes new/clients on every connect)
    assert.ok(hash.every((t) => !t.startsWith('$')), hash.join(','));

    // to a worker, QoS 1: resolved once delivered; only the addressed worker sees it
    const w1got: string[] = [];
    const w2got: string[] = [];
    await w1.subscribe('nodes/w1/control/#', (t, p) => { w1got.push(`${t} ${p.toString()}`); });
    await w2.subscribe('nodes/w2/control/#', (t) => { w2got.push(t); });
    await admin.publishJson('nodes/w1/control/deploy', { job: 'x' });
    await admin.publish('nodes/w1/control/deploy', 'q0', 0);
    await waitFor(() => w1got.length === 2, { timeoutMs: 3000, message: 'deploys at w1' });
    assert.deepEqual(w1got, ['nodes/w1/control/deploy {"job":"x"}', 'nodes/w1/control/deploy q0']);
    assert.deepEqual(w2got, []);

    // retained: a worker subscribing later gets it, and so does a later local subscription
    await admin.publishJson('net/peers', { v: 1 }, 1, { retain: true });
    await admin.publishJson('net/peers', { v: 2 }, 1, { retain: true });
    const peers: string[] = [];
    await w2.subscribe('net/peers', (_t, p) => { peers.push(p.toString()); });
    await waitFor(() => peers.length === 1, { timeoutMs: 3000, message: 'retained at a worker' });
    assert.deepEqual(peers, ['{"v":2}']);
    const localPeers: string[] = [];
    await admin.subscribe('net/+', (_t, p) => { localPeers.push(p.toString()); });
    assert.deepEqual(localPeers, ['{"v":2}'], 'delivered before subscribe resolves');

    // unsubscribe stops that handler only
    const seen: string[] = [];
    const unsub = await admin.subscribe('nodes/+/job', (t) => { seen.push(t); });
    await w1.publish('nodes/w1/job', '1');
    await waitFor(() => seen.length === 1, { timeoutMs: 3000 });
    await unsub();
    const before = hash.length;
    await w1.publish('nodes/w1/job', '2');
    await waitFor(() => hash.length === before + 1, { timeoutMs: 3000 });
    assert.deepEqual(seen, ['nodes/w1/job']);

    // a throwing handler breaks nothing
    const ok: string[] = [];
    await admin.subscribe('nodes/+/boom', () => { throw new Error('handler failure'); });
    await admin.subscribe('nodes/+/boom', (t) => { ok.push(t); });
    await w1.publish('nodes/w1/boom', 'x');
    await waitFor(() => ok.length === 1, { timeoutMs: 3000 });

    // closed: nothing more arrives, publishing fails
    await admin.close();
    assert.equal(admin.connected, false);
    await assert.rejects(admin.publish('nodes/w1/control/x', 'late'), /closed/);
    const n = got.length;
    // QoS 1: w1 has its PUBACK once the broker handed the publish to every subscriber
    await w1.publish('nodes/w1/information', 'after close', 1);
    assert.equal(got.length, n);
  });

  test('acts for its principal: the ACL applies as to a client', async () => {
    const as = broker.bus({ principal: { role: 'worker', workerId: 'w1' }, clientId: 'w1-local' });
    buses.push(as);
    await assert.rejects(as.publish('nodes/w2/information', 'x'), /not authorized/);
    await assert.rejects(as.subscribe('nodes/+/information', () => {}), /refused/);
    await assert.rejects(as.subscribe('bad/#/x', () => {}), /invalid/);
    await assert.rejects(as.publish('nodes/w1/+', 'x'), /invalid/);
    const mine: string[] = [];
    await as.subscribe('nodes/w1/control/#', (t) => { mine.push(t); });
    const admin = broker.bus({ principal: { role: 'admin', name: 'cluster' }, clientId: 'cluster2' });
    buses.push(admin);
    await admin.publish('nodes/w1/control/deploy', 'go');
    assert.deepEqual(mine, ['nodes/w1/control/deploy'], 'delivered before a QoS 1 publish resolves');
    await as.publish('nodes/w1/information', 'ok');
  });
});
