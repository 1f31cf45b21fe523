/**
 * The embedded broker under a flood on one connection (issue 13): a connection whose every read
 * hands over its next chunk at once. Publishes nobody subscribes to are handled at once, so aedes
 * read the next chunk from within the parse of the last one, one stack level deeper per chunk:
 * its parser lost its place and the connection was closed after 1,469 of the 50,002 chunks (on a
 * smaller stack: "Maximum call stack size exceeded", uncaught). See src/read-guard.ts.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { waitFor } from '@oak/testkit';
import { connectBus, startEmbeddedBroker } from '../src/index.ts';
import type { EmbeddedBroker } from '../src/index.ts';
import { encodeConnect, encodePublish } from '../src/mqtt/packet.ts';

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
});
