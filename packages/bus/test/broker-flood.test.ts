/**
 * The embedded broker under floods (issue 13), two ways aedes recursed once per message:
 *
 * - a connection whose every read hands over its next chunk at once. Publishes nobody subscribes
 *   to are handled at once, so aedes read the next chunk from within the parse of the last one,
 *   one stack level deeper per chunk: its parser lost its place and the connection was closed
 *   after 1,469 of the 50,002 chunks (on a smaller stack: "Maximum call stack size exceeded",
 *   uncaught). See src/read-guard.ts.
 * - publishes queued behind deliveries to a slow subscriber (aedes let 100 be in flight at once):
 *   when it drained, each queued publish nobody subscribes to started the next in the same stack,
 *   and 80,000 of them from 40 TCP clients ended in "Maximum call stack size exceeded", uncaught.
 *   See `concurrency` in src/broker.ts.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { waitFor } from '@oak/testkit';
import { connectBus, startEmbeddedBroker } from '../src/index.ts';
import type { EmbeddedBroker } from '../src/index.ts';
import { encodeConnect, encodePublish, encodeSubscribe } from '../src/mqtt/packet.ts';

const FLOOD = 50_000;

/** a connection that pushes its next chunk synchronously whenever it is read; what it is written is dropped */
function eagerStream(chunks: Buffer[]): { conn: Duplex; read: () => number } {
  let next = 0;
  const conn = new Duplex({
    read() {
      const chunk = chunks[next];
      if (chunk === undefined) return; // all given: stays open, nothing more to read
      next++;
      this.push(chunk);
    },
    write(_chunk, _enc, cb) {
      cb();
    },
  });
  return { conn, read: () => next };
}

describe('embedded broker under a flood on one connection', () => {
  const brokers: EmbeddedBroker[] = [];
  after(async () => { for (const b of brokers) await b.close(); });

  test(`${FLOOD} QoS 0 publishes, each pushed synchronously when read: no stack overflow, every chunk read, the last message delivered`, async () => {
    const broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 });
    brokers.push(broker);
    const sub = await connectBus(broker.url, { clientId: 'listener' });
    try {
      const got: string[] = [];
      await sub.subscribe('flood/end', (_t, p) => { got.push(p.toString()); });
      const publish = encodePublish({ topic: 'flood/x', payload: Buffer.from('x'), qos: 0 });
      const chunks = [
        encodeConnect({ clientId: 'flooder', keepaliveS: 0, clean: true }),
        ...Array.from({ length: FLOOD }, () => publish),
        encodePublish({ topic: 'flood/end', payload: Buffer.from('done'), qos: 0 }),
      ];
      const { conn, read } = eagerStream(chunks);
      const closed = new Promise<void>((r) => conn.once('close', () => r()));
      broker.serve(conn);
      // the broker closing the connection (its parser lost its place) ends the wait too
      await waitFor(() => got.length === 1 || conn.destroyed, { timeoutMs: 20_000, message: 'the message after the flood' });
      assert.equal(conn.destroyed, false, `the broker closed the flooding connection after ${read()} of ${chunks.length} chunks`);
      assert.equal(read(), chunks.length, 'every chunk read');
      assert.deepEqual(got, ['done']);
      conn.destroy();
      await closed;
    } finally {
      await sub.close();
    }
  });

  test('publishes held up behind a slow subscriber, from 40 TCP clients: no stack overflow when it drains', async () => {
    const broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 });
    brokers.push(broker);
    const listener = await connectBus(broker.url, { clientId: 'listener' });
    const publishers: Socket[] = [];
    try {
      const ends: string[] = [];
      await listener.subscribe('flood/end/+', (t) => { ends.push(t); });
      // the slow subscriber (the cluster's own client, busy): its writes do not complete until released
      const slowIn = [encodeConnect({ clientId: 'slow', keepaliveS: 0, clean: true }), encodeSubscribe(1, [{ filter: 'slow/#', qos: 0 }])];
      let hold = false;
      let received = 0;
      const held: (() => void)[] = [];
      const slow = new Duplex({
        read() {
          const c = slowIn.shift();
          if (c !== undefined) this.push(c);
        },
        write(chunk: Buffer, _enc, cb) {
          received += chunk.length;
          if (hold) held.push(cb);
          else cb();
        },
      });
      broker.serve(slow);
      for (let i = 0; i < 40; i++) {
        const s = connect(broker.port, '127.0.0.1');
        publishers.push(s);
        s.on('error', () => {});
        await new Promise<void>((r) => s.once('connect', () => r()));
        s.write(encodeConnect({ clientId: `p${i}`, keepaliveS: 0, clean: true }));
        await new Promise<void>((r) => s.once('data', () => r())); // CONNACK
        s.on('data', () => {});
      }
      const [first] = publishers;
      assert.ok(first);
      hold = true;
      // more deliveries to the slow subscriber than aedes lets be in flight at once (100 by default)
      const slowMsg = encodePublish({ topic: 'slow/x', payload: Buffer.from('y'), qos: 0 });
      await new Promise<void>((r) => first.write(Buffer.concat(Array.from({ length: 3000 }, () => slowMsg)), () => r()));
      await waitFor(() => held.length > 0, { timeoutMs: 5000, message: 'the slow subscriber stalled' });
      await new Promise((r) => setTimeout(r, 200));
      // then publishes nobody subscribes to from every client, and after them one each that the listener awaits
      const x = encodePublish({ topic: 'flood/x', payload: Buffer.from('x'), qos: 0 });
      const burst = Buffer.concat(Array.from({ length: 2000 }, () => x));
      await Promise.all(publishers.map((s) => new Promise<void>((r) => s.write(burst, () => r()))));
      await new Promise((r) => setTimeout(r, 200));
      await Promise.all(publishers.map((s, i) => new Promise<void>((r) => s.write(encodePublish({ topic: `flood/end/${i}`, payload: Buffer.from('e'), qos: 0 }), () => r()))));
      await new Promise((r) => setTimeout(r, 500));
      hold = false;
      for (const cb of held.splice(0)) cb();
      await waitFor(() => ends.length === publishers.length, { timeoutMs: 20_000, message: 'the last message of every publisher' });
      await waitFor(() => received >= 3000 * slowMsg.length, { timeoutMs: 5000, message: 'every delivery to the slow subscriber' });
      assert.equal(publishers.filter((s) => s.destroyed).length, 0, 'every publisher still connected');
      slow.destroy();
    } finally {
      for (const s of publishers) s.destroy();
      await listener.close();
    }
  });
});
