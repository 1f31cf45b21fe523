/**
 * The bus over our own MQTT client against a scripted broker (a raw TCP server that answers what
 * each test tells it to): what a real broker rarely does on demand — withholding a PUBACK,
 * refusing a subscription, QoS 2 deliveries, oversized packets, silence after CONNACK.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { waitFor } from '@oak/testkit';
import { connectBus } from '../src/index.ts';
import type { Bus } from '../src/index.ts';

interface ClientPacket { type: number; flags: number; body: Buffer }
interface Conn {
  sock: net.Socket;
  packets: ClientPacket[];
  closed: boolean;
  send(bytes: number[] | Buffer): void;
}

/** a broker that records what each connection sends; `onPacket` answers */
class ScriptedBroker {
  readonly conns: Conn[] = [];
  onPacket: (c: Conn, p: ClientPacket) => void = (c, p) => { if (p.type === 1) c.send([0x20, 2, 0, 0]); };
  server = net.createServer((sock) => {
    const c: Conn = { sock, packets: [], closed: false, send: (b) => { if (!sock.destroyed) sock.write(Buffer.from(b)); } };
    this.conns.push(c);
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (buf.length < 2) return;
        let n = 0;
        let mul = 1;
        let i = 1;
        for (;; i++) {
          const b = buf[i];
          if (b === undefined) return;
          n += (b & 0x7f) * mul;
          mul *= 128;
          if ((b & 0x80) === 0) break;
        }
        if (buf.length < i + 1 + n) return;
        const first = buf[0] ?? 0;
        const p = { type: first >> 4, flags: first & 0x0f, body: buf.subarray(i + 1, i + 1 + n) };
        buf = buf.subarray(i + 1 + n);
        c.packets.push(p);
        this.onPacket(c, p);
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => { c.closed = true; });
  });
  get url(): string {
    return `mqtt://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return this;
  }
  async close(): Promise<void> {
    for (const c of this.conns) c.sock.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

const idOf = (p: ClientPacket, topicFirst = true): number => {
  if (!topicFirst) return p.body.readUInt16BE(0);
  const tl = p.body.readUInt16BE(0);
  return p.body.readUInt16BE(2 + tl);
};
const topicOf = (p: ClientPacket): string => p.body.subarray(2, 2 + p.body.readUInt16BE(0)).toString();
const ofType = (c: Conn | undefined, type: number): ClientPacket[] => (c?.packets ?? []).filter((p) => p.type === type);
const pub = (topic: string, payload: string, qos: number, id = 0, dup = false): Buffer => {
  const t = Buffer.from(topic);
  const body = Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, qos > 0 ? Buffer.from([id >> 8, id & 0xff]) : Buffer.alloc(0), Buffer.from(payload)]);
  return Buffer.concat([Buffer.from([0x30 | (dup ? 8 : 0) | (qos << 1), body.length]), body]);
};

describe('the bus over its own MQTT client (scripted broker)', () => {
  const brokers: ScriptedBroker[] = [];
  const buses: Bus[] = [];
  const broker = async (): Promise<ScriptedBroker> => {
    const b = await new ScriptedBroker().start();
    brokers.push(b);
    return b;
  };
  after(async () => {
    for (const b of buses) await b.close();
    for (const b of brokers) await b.close();
  });

  test('a QoS 1 publish made before CONNACK is sent once connected and resolves on its PUBACK', async () => {
    const b = await broker();
    let connack: (() => void) | undefined;
    b.onPacket = (c, p) => {
      if (p.type === 1) connack = () => c.send([0x20, 2, 0, 0]);
      if (p.type === 3) c.send([0x40, 2, ...[idOf(p) >> 8, idOf(p) & 0xff]]);
    };
    const bus = await connectBus(b.url, { waitForConnect: false });
    buses.push(bus);
    let done = false;
    const sent = bus.publishJson('a/b', { v: 1 }).then(() => { done = true; });
    await waitFor(() => connack !== undefined, { message: 'CONNECT' });
    assert.equal(ofType(b.conns[0], 3).length, 0, 'nothing published before CONNACK');
    assert.equal(done, false);
    connack?.();
    await sent;
    const [p] = ofType(b.conns[0], 3);
    assert.ok(p);
    assert.equal(topicOf(p), 'a/b');
    assert.equal(p.flags, 0x02, 'QoS 1, no DUP, no retain');
  });

  test('an unacknowledged QoS 1 publish is sent again with DUP on the next connection; its promise resolves on that PUBACK', async () => {
    const b = await broker();
    b.onPacket = (c, p) => {
      if (p.type === 1) c.send([0x20, 2, 0, 0]);
      // the first connection swallows it and dies; the second acknowledges
      if (p.type === 3 && b.conns.indexOf(c) === 0) c.sock.destroy();
      if (p.type === 3 && b.conns.indexOf(c) === 1) c.send([0x40, 2, idOf(p) >> 8, idOf(p) & 0xff]);
    };
    const connects: boolean[] = [];
    const bus = await connectBus(b.url, { reconnectPeriodMs: 50, onConnect: (re) => { connects.push(re); } });
    buses.push(bus);
    await bus.publish('r/1', 'one', 1, { retain: true });
    const [first] = ofType(b.conns[0], 3);
    const [again] = ofType(b.conns[1], 3);
    assert.ok(first && again);
    assert.equal(first.flags, 0x03, 'QoS 1 retained');
    assert.equal(again.flags, 0x0b, 'the same, with DUP');
    assert.equal(idOf(again), idOf(first), 'the same packet identifier');
    assert.equal(again.body.subarray(again.body.length - 3).toString(), 'one');
    await waitFor(() => connects.length === 2);
    assert.deepEqual(connects, [false, true]);
  });

  test('QoS 1 publishes made while the broker is away go out after the reconnect, in order', async () => {
    const b = await broker();
    b.onPacket = (c, p) => {
      if (p.type === 1) c.send([0x20, 2, 0, 0]);
      if (p.type === 3 && (p.flags & 0x06) !== 0) c.send([0x40, 2, idOf(p) >> 8, idOf(p) & 0xff]);
    };
    const bus = await connectBus(b.url, { reconnectPeriodMs: 100 });
    buses.push(bus);
    b.conns[0]?.sock.destroy();
    await waitFor(() => !bus.connected, { message: 'offline' });
    const sent = Promise.all([bus.publish('o/1', '1'), bus.publish('o/2', '2', 0), bus.publish('o/3', '3')]);
    await sent;
    assert.deepEqual(ofType(b.conns[1], 3).map(topicOf), ['o/1', 'o/2', 'o/3']);
    assert.deepEqual(ofType(b.conns[1], 3).map((p) => p.flags), [0x02, 0x00, 0x02], 'never sent before: no DUP');
  });

  test('a SUBACK failure (0x80) rejects the subscribe and its handler hears nothing; granted ones dispatch', async () => {
    const b = await broker();
    b.onPacket = (c, p) => {
      if (p.type === 1) c.send([0x20, 2, 0, 0]);
      if (p.type === 8) {
        const id = idOf(p, false);
        const filter = p.body.subarray(4, 4 + p.body.readUInt16BE(2)).toString();
        c.send([0x90, 3, id >> 8, id & 0xff, filter.startsWith('no/') ? 0x80 : 1]);
      }
    };
    const bus = await connectBus(b.url);
    buses.push(bus);
    const got: string[] = [];
    await assert.rejects(bus.subscribe('no/#', (t) => { got.push(`no ${t}`); }), /Subscribe error/);
    await bus.subscribe('yes/+', (t) => { got.push(t); });
    b.conns[0]?.send(pub('no/x', '', 0));
    b.conns[0]?.send(pub('yes/x', '', 0));
    await waitFor(() => got.length > 0);
    assert.deepEqual(got, ['yes/x']);
    const [sub] = ofType(b.conns[0], 8);
    assert.equal(sub?.flags, 0x02, 'SUBSCRIBE flags 0010');
    assert.equal(sub?.body[sub.body.length - 1], 1, 'requested at QoS 1');
  });

  test('inbound QoS 1 is acknowledged; inbound QoS 2 is delivered once, PUBREC then PUBCOMP', async () => {
    const b = await broker();
    b.onPacket = (c, p) => {
      if (p.type === 1) c.send([0x20, 2, 0, 0]);
      if (p.type === 8) c.send([0x90, 3, ...p.body.subarray(0, 2), 1]);
    };
    const bus = await connectBus(b.url);
    buses.push(bus);
    const got: string[] = [];
    await bus.subscribe('in/#', (t, payload) => { got.push(`${t}=${payload.toString()}`); });
    const c = b.conns[0];
    c?.send(pub('in/1', 'a', 1, 0x0102));
    await waitFor(() => ofType(c, 4).length === 1, { message: 'PUBACK' });
    assert.equal(idOf(ofType(c, 4)[0] as ClientPacket, false), 0x0102);
    c?.send(pub('in/2', 'b', 2, 9));
    c?.send(pub('in/2', 'b', 2, 9, true)); // a resend before PUBREL: not delivered again
    await waitFor(() => ofType(c, 5).length === 2, { message: 'PUBREC twice' });
    c?.send([0x62, 2, 0, 9]);
    await waitFor(() => ofType(c, 7).length === 1, { message: 'PUBCOMP' });
    assert.equal(idOf(ofType(c, 7)[0] as ClientPacket, false), 9);
    assert.deepEqual(got, ['in/1=a', 'in/2=b']);
    assert.ok(bus.connected);
  });

  test('a packet over the inbound limit closes the connection before its body arrives; the client reconnects', async () => {
    const b = await broker();
    const bus = await connectBus(b.url, { reconnectPeriodMs: 50, maxPacketSize: 1024 * 1024 });
    buses.push(bus);
    const first = b.conns[0];
    // a PUBLISH claiming 200 MiB; only its fixed header and a little of it are sent
    first?.send([0x30, 0x80, 0x80, 0x80, 0x64, 0, 1, 0x74]);
    await waitFor(() => first?.closed, { message: 'closed by the client' });
    await waitFor(() => b.conns.length === 2 && bus.connected, { message: 'reconnected' });
    // garbage: a packet type no broker sends
    b.conns[1]?.send([0x10, 0]);
    await waitFor(() => b.conns[1]?.closed, { message: 'closed on garbage' });
    // and the default limit is 16 MiB
    const plain = await connectBus(b.url, { clientId: 'plain-one', reconnectPeriodMs: 0 });
    buses.push(plain);
    const mine = (): Conn[] => b.conns.filter((x) => x.packets[0]?.body.includes(Buffer.from('plain-one')));
    const c = mine()[0];
    c?.send([0x30, 0x81, 0x80, 0x80, 0x08]); // 16 MiB + 1 of remaining length
    await waitFor(() => c?.closed, { message: 'over 16 MiB refused' });
    await waitFor(() => !plain.connected, { message: 'the client saw it' });
    assert.equal(mine().length, 1, 'reconnectPeriodMs 0: no redial');
  });

  test('keepalive: PINGREQ when idle; a connection whose PINGRESP does not come is given up and redialled', async () => {
    const b = await broker();
    let answer = true;
    b.onPacket = (c, p) => {
      if (p.type === 1) c.send([0x20, 2, 0, 0]);
      if (p.type === 12 && answer) c.send([0xd0, 0]);
    };
    const bus = await connectBus(b.url, { keepaliveS: 1, reconnectPeriodMs: 50 });
    buses.push(bus);
    const c = b.conns[0];
    assert.equal(c?.packets[0]?.body.readUInt16BE(8), 1, 'keepalive of 1 s in CONNECT');
    await waitFor(() => ofType(c, 12).length >= 2, { timeoutMs: 5000, message: 'two answered PINGREQs' });
    assert.ok(bus.connected && c?.closed === false, 'answered pings keep it');
    answer = false;
    const t0 = Date.now();
    await waitFor(() => c?.closed, { timeoutMs: 5000, message: 'dead connection detected' });
    assert.ok(Date.now() - t0 <= 3000, `detected after ${Date.now() - t0} ms`);
    await waitFor(() => b.conns.length === 2 && bus.connected, { message: 'redialled' });
  });

  test('keepalive: a broker that goes silent while we keep publishing (no PUBACKs) is pinged and given up', async () => {
    const b = await broker();
    let silent = false;
    b.onPacket = (c, p) => {
      if (p.type === 1) c.send([0x20, 2, 0, 0]);
      if (silent) return;
      if (p.type === 12) c.send([0xd0, 0]);
      if (p.type === 3) c.send([0x40, 2, idOf(p) >> 8, idOf(p) & 0xff]);
    };
    const bus = await connectBus(b.url, { keepaliveS: 1, reconnectPeriodMs: 0 });
    buses.push(bus);
    const c = b.conns[0];
    const timer = setInterval(() => { void bus.publish('busy/x', 'x').catch(() => {}); }, 100);
    try {
      await waitFor(() => ofType(c, 3).length >= 5, { message: 'publishing' });
      silent = true;
      const t0 = Date.now();
      await waitFor(() => ofType(c, 12).length >= 1, { timeoutMs: 3000, message: 'a PINGREQ although we keep sending' });
      await waitFor(() => c?.closed, { timeoutMs: 4000, message: 'dead connection detected' });
      assert.ok(Date.now() - t0 <= 3500, `detected after ${Date.now() - t0} ms`);
      assert.equal(bus.connected, false);
    } finally {
      clearInterval(timer);
    }
  });

  test('a refused CONNACK rejects connectBus with its code; when not waiting, onRefused is called and the client retries with new credentials', async () => {
    const b = await broker();
    b.onPacket = (c, p) => {
      if (p.type !== 1) return;
      const ok = p.body.includes(Buffer.from('good-pw'));
      c.send([0x20, 2, 0, ok ? 0 : 5]);
    };
    const err = await connectBus(b.url, { username: 'u', password: 'bad', reconnectPeriodMs: 50 }).then(() => undefined, (e: unknown) => e as Error & { code?: unknown });
    assert.match(err?.message ?? '', /Connection refused: Not authorized/);
    assert.equal(err?.code, 5);
    const refused: number[] = [];
    const bus: Bus = await connectBus(b.url, {
      username: 'u', password: 'bad', reconnectPeriodMs: 50, waitForConnect: false,
      onRefused: (code) => { refused.push(code); if (refused.length === 2) bus.setCredentials('u', 'good-pw'); },
    });
    buses.push(bus);
    await waitFor(() => bus.connected, { message: 'connected with the new password' });
    assert.deepEqual(refused, [5, 5]);
  });

  test('onDisconnect: once per accepted connection that ends, not for refused attempts, not at close', async () => {
    const b = await broker();
    let refuse = false;
    b.onPacket = (c, p) => {
      if (p.type === 1) c.send([0x20, 2, 0, refuse ? 5 : 0]);
    };
    let drops = 0;
    let connects = 0;
    const bus = await connectBus(b.url, { reconnectPeriodMs: 50, onDisconnect: () => { drops++; }, onConnect: () => { connects++; } });
    buses.push(bus);
    refuse = true;
    b.conns[0]?.sock.destroy();
    await waitFor(() => b.conns.length >= 4, { message: 'refused attempts' });
    assert.equal(drops, 1, 'the accepted connection that ended');
    refuse = false;
    await waitFor(() => bus.connected, { message: 'accepted again' });
    assert.equal(connects, 2);
    await bus.close();
    assert.equal(drops, 1, 'close is not a drop');
  });

  test('close sends DISCONNECT when connected, and never hangs on a silent broker', async () => {
    const b = await broker();
    const bus = await connectBus(b.url);
    await bus.close();
    await waitFor(() => b.conns[0]?.closed, { message: 'closed' });
    assert.equal(b.conns[0]?.packets.at(-1)?.type, 14, 'DISCONNECT last');
    await assert.rejects(bus.publish('x', 'y'), /closed/);

    // connected, a QoS 1 publish never acknowledged, the broker never closing: bounded, the publish rejected
    const silent = await broker();
    silent.onPacket = (c, p) => { if (p.type === 1) c.send([0x20, 2, 0, 0]); };
    const s = await connectBus(silent.url);
    const pending = s.publish('never/acked', 'x').then(() => 'acked', (e: unknown) => String(e));
    await waitFor(() => ofType(silent.conns[0], 3).length === 1);
    const t0 = Date.now();
    await s.close();
    assert.ok(Date.now() - t0 < 3000, `close took ${Date.now() - t0} ms`);
    assert.match(await pending, /closed/);
    assert.equal(silent.conns[0]?.packets.at(-1)?.type, 14);

    // a broker that accepts TCP and never answers CONNECT
    const mute = await broker();
    mute.onPacket = () => {};
    const m = await connectBus(mute.url, { waitForConnect: false });
    await waitFor(() => mute.conns[0]?.packets.length === 1, { message: 'CONNECT sent' });
    const t1 = Date.now();
    await m.close();
    assert.ok(Date.now() - t1 < 1500, `close took ${Date.now() - t1} ms`);
    assert.equal(mute.conns[0]?.packets.some((p) => p.type === 14), false, 'no DISCONNECT without a CONNACK');
  });

  test('mqtt:// with user and password in the URL, and a connect timeout on silence', async () => {
    const b = await broker();
    b.onPacket = (c, p) => { if (p.type === 1) c.send([0x20, 2, 0, p.body.includes(Buffer.from('url-pw')) ? 0 : 4]); };
    const bus = await connectBus(b.url.replace('mqtt://', 'mqtt://url-user:url-pw@'));
    buses.push(bus);
    assert.ok(b.conns[0]?.packets[0]?.body.includes(Buffer.from('url-user')));
    const mute = await broker();
    mute.onPacket = () => {};
    await assert.rejects(connectBus(mute.url, { connectTimeoutMs: 300 }), /could not connect/);
  });
});
