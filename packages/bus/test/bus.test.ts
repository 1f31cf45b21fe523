import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMosquitto, waitFor } from '@oak/testkit';
import type { MosquittoInstance } from '@oak/testkit';
import { connectBus, duplexPair, reconnectPeriod, startEmbeddedBroker } from '../src/index.ts';
import type { Bus, EmbeddedBroker } from '../src/index.ts';

interface Got { topic: string; body: unknown }

async function roundTrip(url: string): Promise<void> {
  const a = await connectBus(url, { clientId: `a-${Date.now()}` });
  const b = await connectBus(url, { clientId: `b-${Date.now()}` });
  try {
    const got: Got[] = [];
    await b.subscribe('nodes/+/information', (topic, payload) => { got.push({ topic, body: JSON.parse(payload.toString()) }); });
    const hash: string[] = [];
    await b.subscribe('nodes/#', (topic) => { hash.push(topic); });
    await a.publishJson('nodes/w1/information', { cpu: 1 });
    await a.publishJson('nodes/w1/job', { x: 1 });
    await a.publishJson('other/w1/information', { no: true });
    await waitFor(() => got.length === 1 && hash.length === 2, { timeoutMs: 3000, message: 'messages' });
    assert.deepEqual(got[0], { topic: 'nodes/w1/information', body: { cpu: 1 } });
    assert.deepEqual(hash.sort(), ['nodes/w1/information', 'nodes/w1/job']);

    // a throwing handler does not break dispatch
    const ok: string[] = [];
    await b.subscribe('boom/+', () => { throw new Error('handler failure'); });
    await b.subscribe('boom/+', (t) => { ok.push(t); });
    await a.publishJson('boom/1', {});
    await waitFor(() => ok.length === 1, { timeoutMs: 3000 });

    // unsubscribe stops delivery for that handler
    const seen: string[] = [];
    const unsub = await b.subscribe('u/+', (t) => { seen.push(t); });
    await a.publishJson('u/1', {});
    await waitFor(() => seen.length === 1, { timeoutMs: 3000 });
    await unsub();
    await a.publishJson('u/2', {});
    await a.publishJson('nodes/w2/job', {});
    await waitFor(() => hash.length === 3, { timeoutMs: 3000 });
    assert.deepEqual(seen, ['u/1']);

    // retained: a later subscriber gets the last one; a plain publish is not kept
    await a.publishJson('r/peers', { v: 1 }, 1, { retain: true });
    await a.publishJson('r/peers', { v: 2 }, 1, { retain: true });
    await a.publishJson('r/plain', { v: 3 });
    const late: Got[] = [];
    await b.subscribe('r/+', (topic, p) => { late.push({ topic, body: JSON.parse(p.toString()) }); });
    await waitFor(() => late.length === 1, { timeoutMs: 3000, message: 'retained message' });
    await a.publishJson('r/peers', {}, 1, { retain: true });
    await waitFor(() => late.length === 2, { timeoutMs: 3000 });
    assert.deepEqual(late[0], { topic: 'r/peers', body: { v: 2 } });
  } finally {
    await a.close();
    await b.close();
  }
}

describe('bus on embedded aedes', () => {
  const brokers: EmbeddedBroker[] = [];
  after(async () => { for (const b of brokers) await b.close(); });

  test('publish/subscribe with wildcards', async () => {
    const broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 });
    brokers.push(broker);
    assert.match(broker.url, /^mqtt:\/\/127\.0\.0\.1:\d+$/);
    await roundTrip(broker.url);
  });

  test('reconnects after a broker restart, resubscribes and runs onConnect', async () => {
    const first = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 });
    const port = first.port;
    const connects: boolean[] = [];
    const sub = await connectBus(first.url, { reconnectPeriodMs: 100, onConnect: (re) => { connects.push(re); } });
    const got: string[] = [];
    await sub.subscribe('x/+', (t) => { got.push(t); });
    await waitFor(() => connects.length === 1);
    assert.deepEqual(connects, [false]);
    await first.close();
    await waitFor(() => !sub.connected, { timeoutMs: 3000, message: 'disconnect seen' });
    const broker = await startEmbeddedBroker({ host: '127.0.0.1', port });
    brokers.push(broker);
    await waitFor(() => connects.length === 2, { timeoutMs: 5000, message: 'reconnect' });
    assert.equal(connects[1], true);
    const pub = await connectBus(broker.url);
    await pub.publishJson('x/after', { ok: true });
    await waitFor(() => got.includes('x/after'), { timeoutMs: 3000, message: 'message after reconnect' });
    await pub.close();
    await sub.close();
  });

  test('reconnect periods are spread: clients dropped at one moment do not come back in step', async () => {
    // every connect attempt, by client id (the broker asks auth for each one)
    const attempts = new Map<string, number[]>();
    const broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      auth: (clientId, user) => {
        attempts.set(clientId, [...(attempts.get(clientId) ?? []), performance.now()]);
        return { role: 'admin', name: user ?? clientId };
      },
    });
    brokers.push(broker);
    const period = 400;
    const buses = await Promise.all(Array.from({ length: 8 }, (_, i) => connectBus(broker.url, { clientId: `j${i}`, username: `j${i}`, password: 'x', reconnectPeriodMs: period })));
    try {
      const dropped = performance.now();
      assert.equal(broker.disconnect(() => true), 8);
      await waitFor(() => [...attempts.values()].every((a) => a.length >= 2) && buses.every((b) => b.connected), { timeoutMs: 10_000, message: 'every client back' });
      const delays = [...attempts.values()].map((a) => (a[1] ?? 0) - dropped);
      // each within 0.5x..1.5x of the period (plus the loop's lateness), and not all in step: 8
      // uniform draws over 400 ms all within 40 ms of each other have a chance of about 1e-6
      for (const d of delays) assert.ok(d >= period * 0.5 - 5 && d <= period * 1.5 + 250, `reconnect after ${d.toFixed(0)} ms`);
      assert.ok(Math.max(...delays) - Math.min(...delays) > period * 0.1, `reconnects at ${delays.map((d) => d.toFixed(0)).join(', ')} ms: in step`);
    } finally {
      for (const b of buses) await b.close();
    }
  });

  test('a client in the broker\'s process on localStream: authenticated, ACL-checked, reconnects after a disconnect', async () => {
    const users = new Map([['admin', 'pw'], ['w1', 'pw1']]);
    const broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      auth: (clientId, user, pw) => {
        if (user === undefined || users.get(user) !== pw?.toString()) return null;
        return user === 'admin' ? { role: 'admin', name: user } : { role: 'worker', workerId: user };
      },
    });
    brokers.push(broker);
    const connects: boolean[] = [];
    const local = await connectBus('mqtt://in-process', { clientId: 'admin', username: 'admin', password: 'pw', stream: () => broker.localStream(), reconnectPeriodMs: 50, onConnect: (re) => { connects.push(re); } });
    const worker = await connectBus(broker.url, { clientId: 'w1', username: 'w1', password: 'pw1' });
    try {
      const got: string[] = [];
      await local.subscribe('nodes/+/information', (t, p) => { got.push(`${t} ${p.toString()}`); });
      await worker.subscribe('nodes/w1/control/deploy', (t, p) => { got.push(`${t} ${p.toString()}`); });
      await worker.publish('nodes/w1/information', 'report');
      await local.publish('nodes/w1/control/deploy', 'go');
      await waitFor(() => got.length === 2, { timeoutMs: 3000, message: 'both directions' });
      assert.deepEqual(got.sort(), ['nodes/w1/control/deploy go', 'nodes/w1/information report']);
      // a wrong password is refused on the local stream too
      await assert.rejects(connectBus('mqtt://in-process', { clientId: 'admin2', username: 'admin', password: 'nope', stream: () => broker.localStream(), reconnectPeriodMs: 0 }));
      // dropped by the broker: it comes back on a fresh stream and resubscribes
      assert.equal(broker.disconnect((p) => p.role === 'admin'), 1);
      await waitFor(() => connects.length === 2 && local.connected, { timeoutMs: 5000, message: 'local client back' });
      await worker.publish('nodes/w1/information', 'again');
      await waitFor(() => got.length === 3, { timeoutMs: 3000, message: 'a report after the reconnect' });
    } finally {
      await local.close();
      await worker.close();
    }
  });

  test('duplexPair: bytes both ways, backpressure, the end and destroy reach the other side', async () => {
    const [a, b] = duplexPair();
    const chunks: Buffer[] = [];
    b.on('data', (c: Buffer) => chunks.push(c));
    a.write('x'.repeat(100_000));
    a.write('y');
    b.write('back');
    const backToA = await new Promise<string>((r) => a.once('data', (c: Buffer) => r(c.toString())));
    assert.equal(backToA, 'back');
    await waitFor(() => Buffer.concat(chunks).length === 100_001, { timeoutMs: 3000 });
    const ended = new Promise<void>((r) => b.once('end', () => r()));
    a.end();
    await ended;
    const [c, d] = duplexPair();
    const closed = new Promise<void>((r) => d.once('close', () => r()));
    c.destroy();
    await closed;
    assert.ok(d.destroyed);
  });

  test('reconnectPeriod spreads the base period by the jitter', () => {
    assert.equal(reconnectPeriod(1000, 0.5, 0), 500);
    assert.equal(reconnectPeriod(1000, 0.5, 0.5), 1000);
    assert.equal(reconnectPeriod(1000, 0.5, 0.999), 1499);
    assert.equal(reconnectPeriod(1000, 0, 0.9), 1000);
    // a jitter beyond 1 is 1: never 0 ms or negative
    assert.equal(reconnectPeriod(1000, 3, 0), 1);
  });

  test('close releases the port and clients', async () => {
    const b = await startEmbeddedBroker({ port: 0 });
    const c = await connectBus(b.url);
    assert.equal(b.clients, 1);
    await b.close();
    await b.close(); // idempotent
    await waitFor(() => !c.connected, { timeoutMs: 3000 });
    await c.close();
    const again = await startEmbeddedBroker({ port: b.port });
    await again.close();
  });

  test('connectBus rejects when nothing listens', async () => {
    const b = await startEmbeddedBroker({ port: 0 });
    const url = b.url;
    await b.close();
    await assert.rejects(connectBus(url, { connectTimeoutMs: 300 }), /could not connect/);
  });

  test('waitForConnect false returns at once and subscribes once connected', async () => {
    const b = await startEmbeddedBroker({ port: 0 });
    let bus: Bus | undefined;
    try {
      bus = await connectBus(b.url, { waitForConnect: false });
      const got: string[] = [];
      await bus.subscribe('late/#', (t) => { got.push(t); });
      await waitFor(() => bus?.connected);
      const pub = await connectBus(b.url);
      await waitFor(async () => { await pub.publishJson('late/1', 1); return got.length > 0; }, { timeoutMs: 3000 });
      await pub.close();
    } finally {
      await bus?.close();
      await b.close();
    }
  });
});

describe('bus on a private Mosquitto', () => {
  let mosq: MosquittoInstance | undefined;
  after(async () => { await mosq?.stop(); });

  test('publish/subscribe with wildcards', async () => {
    mosq = await startMosquitto();
    await roundTrip(mosq.url);
  });

  test('QoS 1 messages and large payloads', async () => {
    assert.ok(mosq);
    const a = await connectBus(mosq.url);
    const b = await connectBus(mosq.url);
    const got: number[] = [];
    await b.subscribe('bulk/+', (_t, p) => { got.push((JSON.parse(p.toString()) as { i: number; pad: string }).i); });
    const pad = 'x'.repeat(100_000);
    await Promise.all(Array.from({ length: 200 }, (_, i) => a.publishJson(`bulk/${i % 7}`, { i, pad })));
    await waitFor(() => got.length === 200, { timeoutMs: 5000 });
    assert.equal(new Set(got).size, 200);
    await a.close();
    await b.close();
  });
});
