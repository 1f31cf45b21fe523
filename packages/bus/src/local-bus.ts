/**
 * A Bus inside the broker's own process that is the broker itself (EmbeddedBroker.bus): publishes
 * go straight into aedes (the same path a client's publish takes once parsed: retained store,
 * offline queues, delivery to every subscriber) and subscriptions are listeners on aedes' emitter.
 * No MQTT packet is encoded or parsed, no connection, no per-client session or in-flight window
 * (issue 13: at 10,000 workers the cluster's own client, on an in-process stream, parsed and
 * acknowledged every report a second time).
 *
 * Semantics kept from a client connection: topic filters with `+` and `#` (a filter starting with a
 * wildcard never matches a `$` topic), QoS 0 and 1 (a QoS 1 publish resolves once the broker has
 * handed it to every subscriber, as a PUBACK would), retained messages (stored on publish, sent to a
 * new subscription), and authorization: the bus acts for one principal and every publish and
 * subscribe is checked against the ACL (acl.ts) as the broker checks a client's. It never
 * disconnects: `onConnect` hooks never run, credentials and a will have no meaning here.
 */
import type { Aedes, AedesPublishPacket, PublishPacket } from 'aedes';
import { mayPublish, maySubscribe } from './acl.ts';
import type { BrokerPrincipal } from './acl.ts';
import type { Bus, MessageHandler, PublishOptions, PublishQoS } from './bus.ts';
import { silentLogger } from './log.ts';
import type { Logger } from './log.ts';
import { isValidFilter, topicMatches } from './topic.ts';

export interface LocalBusOptions {
  /** who this bus acts for (its publishes and subscriptions are checked against the ACL) */
  principal: BrokerPrincipal;
  /** reported as Bus.clientId */
  clientId: string;
  log?: Logger;
}

type Deliver = (packet: AedesPublishPacket, cb: () => void) => void;

function describe(p: BrokerPrincipal): string {
  return p.role === 'admin' ? `admin ${p.name}` : `worker ${p.workerId}`;
}

export function createLocalBus(broker: Aedes, opts: LocalBusOptions): Bus {
  const log = opts.log ?? silentLogger;
  const { principal } = opts;
  let closed = false;
  /** the emitter listeners of this bus, removed at close */
  const listeners = new Set<{ pattern: string; fn: Deliver }>();

  const dispatch = (pattern: string, handler: MessageHandler, topic: string, payload: Buffer): void => {
    try {
      const r = handler(topic, payload);
      if (r instanceof Promise) r.catch((err: unknown) => log.warn(`bus handler for ${pattern} failed`, err));
    } catch (err) {
      log.warn(`bus handler for ${pattern} failed`, err);
    }
  };
  const asBuffer = (p: Buffer | string): Buffer => (typeof p === 'string' ? Buffer.from(p) : p);

  const bus: Bus = {
    get connected() {
      return !closed && !broker.closed;
    },
    clientId: opts.clientId,
    publishJson(topic, obj, qos = 1, o = {}) {
      return bus.publish(topic, JSON.stringify(obj), qos, o);
    },
    publish(topic: string, payload: string | Buffer, qos: PublishQoS = 1, o: PublishOptions = {}) {
      if (closed) return Promise.reject(new Error('bus is closed'));
      if (topic.length === 0 || topic.includes('+') || topic.includes('#')) return Promise.reject(new Error(`invalid MQTT topic: ${topic}`));
      if (!mayPublish(principal, topic)) {
        return Promise.reject(new Error(`publish by ${describe(principal)} on ${JSON.stringify(topic.slice(0, 200))} not authorized`));
      }
      const packet: PublishPacket = { cmd: 'publish', topic, payload: asBuffer(payload), qos, retain: o.retain === true, dup: false };
      return new Promise<void>((resolve, reject) => {
        broker.publish(packet, (err?: Error) => (err ? reject(err) : resolve()));
      });
    },
    async subscribe(pattern, handler) {
      if (closed) throw new Error('bus is closed');
      if (!isValidFilter(pattern)) throw new Error(`invalid MQTT topic filter: ${pattern}`);
      if (!maySubscribe(principal, pattern)) throw new Error(`Subscribe error: ${pattern} refused by the broker`);
      let active = true;
      const fn: Deliver = (packet, cb) => {
        // aedes' emitter matches `#` against $SYS too; a client's subscription would not
        if (active && topicMatches(pattern, packet.topic)) dispatch(pattern, handler, packet.topic, asBuffer(packet.payload));
        cb();
      };
      const entry = { pattern, fn };
      await new Promise<void>((resolve, reject) => {
        broker.subscribe(pattern, fn, (err?: Error) => (err ? reject(err) : resolve()));
      });
      listeners.add(entry);
      // a new subscription gets the retained messages it matches, as a client's SUBSCRIBE does
      const persistence = (broker as unknown as { persistence: { createRetainedStreamCombi(p: string[]): AsyncIterable<AedesPublishPacket> } }).persistence;
      const retained = persistence.createRetainedStreamCombi([pattern]);
      for await (const p of retained) {
        if (active && topicMatches(pattern, p.topic)) dispatch(pattern, handler, p.topic, asBuffer(p.payload));
      }
      return async () => {
        if (!active) return;
        active = false;
        listeners.delete(entry);
        await new Promise<void>((resolve) => broker.unsubscribe(pattern, fn, () => resolve()));
      };
    },
    onConnect() {
      // never reconnects
      return () => {};
    },
    setCredentials() {},
    setWill() {},
    async close() {
      if (closed) return;
      closed = true;
      const all = [...listeners];
      listeners.clear();
      if (broker.closed) return;
      await Promise.all(all.map((l) => new Promise<void>((resolve) => broker.unsubscribe(l.pattern, l.fn, () => resolve()))));
    },
  };
  return bus;
}
