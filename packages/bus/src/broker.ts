/**
 * The embedded MQTT 3.1.1 broker (aedes) for 1-DOC and tests: one TCP or TLS listener, closed
 * cleanly (clients disconnected, sockets destroyed, port released).
 *
 * With `auth`, every client must authenticate (anonymous clients are refused at connect) and every
 * publish and subscribe is checked against the ACL in acl.ts. A refused publish closes that
 * client's connection (aedes cannot drop a single publish; MQTT 3.1.1 has no negative PUBACK), a
 * refused subscription is answered with the failure code 0x80; both are logged once per client
 * with the topic. `disconnect()` ends the connections of a principal at once (revocation).
 *
 * With `tls`, the listener speaks MQTT over TLS. `tls: 'later'` opens the port before the
 * certificate exists (handshakes fail until `setSecureContext` gives one), so that a cluster can
 * listen at once and get its certificate from the root afterwards.
 */
import type { Client } from 'aedes';
import { createServer } from 'node:net';
import { Duplex } from 'node:stream';
import type { Server } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { SecureContextOptions, Server as TlsServer } from 'node:tls';
import { mayPublish, maySubscribe } from './acl.ts';
import type { BrokerPrincipal } from './acl.ts';
import { silentLogger } from './log.ts';
import { guardReads } from './read-guard.ts';
import { createLocalBus } from './local-bus.ts';
import type { LocalBusOptions } from './local-bus.ts';
import type { Bus } from './bus.ts';
import type { Logger } from './log.ts';

export type BrokerAuthenticate = (clientId: string, username: string | undefined, password: Buffer | undefined) => BrokerPrincipal | null;

export interface EmbeddedBrokerOptions {
  /** default 127.0.0.1 */
  host?: string;
  /** 0 picks a free port */
  port: number;
  /** who a connecting client is; null refuses it. Without it the broker is open (tests, benches). */
  auth?: BrokerAuthenticate;
  /** MQTT over TLS with this certificate, or 'later' (see setSecureContext) */
  tls?: SecureContextOptions | 'later';
  log?: Logger;
}

export interface EmbeddedBroker {
  /** mqtt://host:port or mqtts://host:port (a wildcard host is reported as 127.0.0.1) */
  url: string;
  port: number;
  /** the listener speaks TLS */
  readonly tls: boolean;
  /** number of connected MQTT clients */
  readonly clients: number;
  /** refused connects, publishes and subscriptions so far */
  readonly refusals: { connect: number; publish: number; subscribe: number };
  /** the certificate of a TLS listener (new connections use it) */
  setSecureContext(opts: SecureContextOptions): void;
  /** closes the connections of every client `match` selects; returns how many */
  disconnect(match: (p: BrokerPrincipal) => boolean): number;
  /**
   * A connection inside this process (no socket, no TLS): the broker serves one end, the caller
   * speaks MQTT on the other (connectBus's `stream`). For the program that runs the broker: its own
   * client then costs no encryption and no loopback round trip per message. Authenticated as usual.
   */
  localStream(): Duplex;
  /**
   * Serves one MQTT connection on `conn` (what the listener does with each socket; localStream
   * with one end of its pair): the broker reads and writes it and destroys it at close(). A broker
   * already closing destroys it at once.
   */
  serve(conn: Duplex): void;
  /**
   * A Bus that is this broker itself (local-bus.ts): publishes and subscriptions go straight into
   * aedes, no MQTT packets, no connection; every publish and subscribe is checked against the ACL
   * for `principal`. For the program that runs the broker (the cluster's own client).
   */
  bus(opts: LocalBusOptions): Bus;
  close(): Promise<void>;
}

const principals = new WeakMap<Client, BrokerPrincipal>();

function describe(p: BrokerPrincipal): string {
  return p.role === 'admin' ? `admin ${p.name}` : `worker ${p.workerId}`;
}

export async function startEmbeddedBroker(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const host = opts.host ?? '127.0.0.1';
  const log = opts.log ?? silentLogger;
  const auth = opts.auth;
  const refusals = { connect: 0, publish: 0, subscribe: 0 };
  /** refusals already logged (once per client and kind) */
  const logged = new WeakMap<Client, Set<string>>();
  const logOnce = (client: Client | null, kind: 'publish' | 'subscribe', msg: string): void => {
    if (client) {
      const kinds = logged.get(client) ?? new Set<string>();
      if (kinds.has(kind)) return;
      kinds.add(kind);
      logged.set(client, kinds);
    }
    log.warn(msg);
  };
  const live = new Set<Client>();
  // loaded here, not at import: the bus package is imported by every program, the broker runs in few
  const { Aedes } = await import('aedes');
  const broker = await Aedes.createBroker({
    // No limit on the publishes aedes' mqemitter handles at once (its default: 100, the rest queued).
    // The queue recursed: when a publish in flight completes, mqemitter starts the next queued one
    // in the same stack, and one with no subscriber (or only internal, synchronous ones: $SYS)
    // completes at once and starts the next: one stack level per queued publish. 100 deliveries
    // held up by one slow subscriber (the cluster's own client, busy) queued every other publish
    // of every client behind them, and tens of thousands queued ended in "Maximum call stack size
    // exceeded" when it drained (issue 13; test/broker-flood.test.ts). Without the limit nothing
    // queues, and a slow subscriber holds up only the clients that publish to it (aedes reads a
    // client's next batch once its publishes are delivered), not the whole broker.
    concurrency: 0,
    ...(auth === undefined
      ? {}
      : {
          authenticate: (client, username, password, done) => {
            let p: BrokerPrincipal | null = null;
            try {
              p = auth(client.id, username, password);
            } catch (err) {
              log.warn(`broker: authentication of ${client.id} failed`, err);
            }
            if (p === null) {
              refusals.connect++;
              log.debug(`broker: refused client ${JSON.stringify(client.id)} (user ${JSON.stringify(username ?? null)})`);
              const e = Object.assign(new Error('not authorized'), { returnCode: username === undefined ? 5 : 4 });
              done(e as never, false);
              return;
            }
            // a last will must obey the same ACL as a publish (aedes checks it only when it is sent)
            const will = (client as unknown as { _will?: { topic?: unknown } })._will;
            if (will !== undefined && will !== null && (typeof will.topic !== 'string' || !mayPublish(p, will.topic))) {
              refusals.connect++;
              log.warn(`broker: refused ${describe(p)}: its last will names ${JSON.stringify(String(will.topic).slice(0, 200))}, outside what it may publish`);
              done(Object.assign(new Error('will not authorized'), { returnCode: 5 }) as never, false);
              return;
            }
            principals.set(client, p);
            done(null, true);
          },
          authorizePublish: (client, packet, done) => {
            // client is null for a will published after its client went away: it was checked at connect
            if (client === null) return done(null);
            const p = principals.get(client);
            if (p !== undefined && mayPublish(p, packet.topic)) return done(null);
            refusals.publish++;
            logOnce(client, 'publish', `broker: refused publish by ${p ? describe(p) : client.id} on ${JSON.stringify(packet.topic.slice(0, 200))}; connection closed`);
            done(new Error('publish not authorized'));
          },
          authorizeSubscribe: (client, sub, done) => {
            const p = principals.get(client);
            if (p !== undefined && maySubscribe(p, sub.topic)) return done(null, sub);
            refusals.subscribe++;
            logOnce(client, 'subscribe', `broker: refused subscription by ${p ? describe(p) : client.id} to ${JSON.stringify(sub.topic.slice(0, 200))}`);
            done(null, null);
          },
        }),
  });
  broker.on('client', (c) => live.add(c));
  broker.on('clientDisconnect', (c) => live.delete(c));
  /** the connections served, destroyed at close() */
  const conns = new Set<Duplex>();
  let closing: Promise<void> | undefined;
  const serve = (conn: Duplex): void => {
    if (closing !== undefined) {
      conn.destroy();
      return;
    }
    conns.add(conn);
    conn.on('close', () => conns.delete(conn));
    conn.on('error', () => conn.destroy());
    // aedes must not be handed a chunk while it is still parsing the last one (read-guard.ts)
    guardReads(conn);
    broker.handle(conn);
  };
  let server: Server;
  let tlsServer: TlsServer | undefined;
  if (opts.tls !== undefined) {
    tlsServer = createTlsServer(opts.tls === 'later' ? {} : opts.tls, (s) => {
      s.setNoDelay(true);
      serve(s);
    });
    // a failed handshake (no certificate yet, a client that does not trust it) is that client's problem
    tlsServer.on('tlsClientError', (_err, s) => s.destroy());
    server = tlsServer;
  } else {
    server = createServer({ noDelay: true }, serve);
  }
  // a broken client connection must not take the broker down
  broker.on('clientError', () => {});
  broker.on('connectionError', () => {});
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await new Promise<void>((r) => broker.close(() => r()));
    throw err;
  }
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : opts.port;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return {
    url: `${tlsServer ? 'mqtts' : 'mqtt'}://${urlHost}:${port}`,
    port,
    tls: tlsServer !== undefined,
    get clients() {
      return broker.connectedClients;
    },
    refusals,
    setSecureContext(ctx) {
      if (!tlsServer) throw new Error('this broker does not listen with TLS');
      tlsServer.setSecureContext(ctx);
    },
    localStream() {
      const [ours, theirs] = duplexPair();
      // closed: ours is destroyed at once, so theirs ends (a client reconnecting meanwhile just tries again)
      serve(ours);
      return theirs;
    },
    serve,
    bus(o) {
      return createLocalBus(broker, o);
    },
    disconnect(match) {
      let n = 0;
      for (const c of [...live]) {
        const p = principals.get(c);
        if (p !== undefined && match(p)) {
          n++;
          live.delete(c);
          c.close();
        }
      }
      return n;
    },
    close() {
      closing ??= (async () => {
        const serverClosed = new Promise<void>((r) => server.close(() => r()));
        await new Promise<void>((r) => broker.close(() => r()));
        for (const c of conns) c.destroy();
        await serverClosed;
      })();
      return closing;
    },
  };
}

/**
 * Two connected in-memory streams: what one end writes the other reads. A write completes when the
 * other end has taken it (backpressure as on a socket); ending or destroying one end ends the other.
 */
export function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const waiting: (((err?: Error | null) => void) | undefined)[] = [undefined, undefined];
  const make = (me: number): Duplex => {
    const other = 1 - me;
    return new Duplex({
      read() {
        // the other end may write again, on the next tick: a reader that reads in its data
        // handler (aedes does) must not pull the next chunk within the same stack, chunk after
        // chunk (aedes' own sockets have hit "Maximum call stack size exceeded" so under load)
        const cb = waiting[other];
        waiting[other] = undefined;
        if (cb !== undefined) process.nextTick(cb);
      },
      write(chunk: Buffer, _enc, cb) {
        const peer = ends[other];
        if (peer === undefined || peer.destroyed) return cb(new Error('the other end is closed'));
        if (peer.push(chunk)) cb();
        else waiting[me] = cb;
      },
      final(cb) {
        ends[other]?.push(null);
        cb();
      },
      destroy(err, cb) {
        const cbw = waiting[me];
        waiting[me] = undefined;
        cbw?.(err ?? new Error('closed'));
        const peer = ends[other];
        if (peer !== undefined && !peer.destroyed) peer.destroy();
        cb(err);
      },
    });
  };
  ends.push(make(0), make(1));
  return [ends[0] as Duplex, ends[1] as Duplex];
}
