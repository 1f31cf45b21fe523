/**
 * A small MQTT 3.1.1 client over our own protocol code (./mqtt/: mqtt.js and its streams cost a
 * NodeEngine about 20 MB): JSON publishing, wildcard subscriptions dispatched to handlers,
 * automatic reconnect with resubscription, and a hook that runs on every (re)connect. Handler
 * errors are logged and never break the client.
 *
 * Inbound QoS: every subscription is made at QoS 1, so a broker delivers at most QoS 1 (it
 * downgrades to the granted QoS); a QoS 2 delivery is handled correctly all the same (./mqtt/client.ts).
 */
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { ConnectionLostError, MqttClient, reconnectPeriod } from './mqtt/client.ts';
import type { ClientOptions } from './mqtt/client.ts';
import { DEFAULT_MAX_PACKET_SIZE } from './mqtt/packet.ts';
import { silentLogger } from './log.ts';
import type { Logger } from './log.ts';
import { isValidFilter, topicMatches } from './topic.ts';

export type QoS = 0 | 1 | 2;
/** publishing is at QoS 0 or 1 */
export type PublishQoS = 0 | 1;
export type MessageHandler = (topic: string, payload: Buffer) => void | Promise<void>;

export interface BusOptions {
  clientId?: string;
  username?: string;
  password?: string;
  /** delay between reconnect attempts, default 1000 ms (each outage picks it anew within reconnectJitter) */
  reconnectPeriodMs?: number;
  /**
   * how far each outage's reconnect period is spread around reconnectPeriodMs, as a fraction
   * (default 0.5: 0.5x to 1.5x). A fleet that lost its broker at one moment (a cluster restart)
   * then does not come back in step, all of it in the same millisecond of every period.
   */
  reconnectJitter?: number;
  /** default 5000 ms */
  connectTimeoutMs?: number;
  /** MQTT keepalive in seconds, default 30 */
  keepaliveS?: number;
  /** called on every successful (re)connect, after subscriptions are restored */
  onConnect?: (reconnect: boolean) => void | Promise<void>;
  /** called when a connection that the broker had accepted ends (not for failed attempts) */
  onDisconnect?: () => void;
  /** resolve connectBus only once connected (default true); when false it returns at once */
  waitForConnect?: boolean;
  /** TLS options for mqtts:// (CA, servername, checkServerIdentity: e.g. pinnedTlsOptions) */
  tls?: ConnectionOptions;
  /**
   * the broker refused this client's credentials (CONNACK 4 or 5) on a connect or a reconnect;
   * the client keeps retrying with the credentials it has (see setCredentials)
   */
  onRefused?: (code: number) => void;
  /**
   * a connection of our own instead of dialling `url` (EmbeddedBroker.localStream of a broker in
   * this process); called again for every reconnect
   */
  stream?: () => Duplex;
  /** last will, published by the broker when this client vanishes */
  will?: { topic: string; payload: string; qos?: QoS; retain?: boolean };
  /** the largest inbound packet accepted (default 16 MiB); a larger one closes the connection */
  maxPacketSize?: number;
  log?: Logger;
}

export interface PublishOptions {
  /** the broker keeps the message for later subscribers (an empty payload clears it) */
  retain?: boolean;
}

export interface Bus {
  readonly connected: boolean;
  readonly clientId: string;
  /** QoS 1 (the default) resolves on the PUBACK; made while offline, it is sent once connected */
  publishJson(topic: string, obj: unknown, qos?: PublishQoS, opts?: PublishOptions): Promise<void>;
  publish(topic: string, payload: string | Buffer, qos?: PublishQoS, opts?: PublishOptions): Promise<void>;
  /** subscribes (QoS 1) and resolves once the broker acknowledged or, when offline, at once (restored on connect) */
  subscribe(pattern: string, handler: MessageHandler): Promise<() => Promise<void>>;
  /** registers a hook for every (re)connect; returns a function that removes it */
  onConnect(fn: (reconnect: boolean) => void | Promise<void>): () => void;
  /** credentials (and client id) for the next (re)connect */
  setCredentials(username: string, password: string, clientId?: string): void;
  /** the last will for the next (re)connect (undefined: none) */
  setWill(will: BusOptions['will']): void;
  close(): Promise<void>;
}

export { reconnectPeriod };

interface Sub {
  pattern: string;
  handler: MessageHandler;
}


/** mqtt://, tcp:// (plain) and mqtts://, ssl://, tls:// (TLS); user and password in the URL are defaults */
export function parseBrokerUrl(url: string): { host: string; port: number; tls: boolean; username?: string; password?: string } {
  const u = new URL(url);
  const scheme = u.protocol.replace(/:$/, '');
  const secure = scheme === 'mqtts' || scheme === 'ssl' || scheme === 'tls';
  if (!secure && scheme !== 'mqtt' && scheme !== 'tcp') throw new Error(`unsupported MQTT URL scheme ${scheme}:// (mqtt:// or mqtts://)`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new Error(`MQTT URL ${url} has no host`);
  const port = u.port === '' ? (secure ? 8883 : 1883) : Number(u.port);
  return {
    host,
    port,
    tls: secure,
    ...(u.username !== '' ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password !== '' ? { password: decodeURIComponent(u.password) } : {}),
  };
}

const SUBACK_FAILURE = 0x80;

function willOf(will: BusOptions['will']): ClientOptions['will'] {
  return will === undefined ? undefined : { topic: will.topic, payload: Buffer.from(will.payload), qos: will.qos ?? 1, retain: will.retain ?? false };
}

export async function connectBus(url: string, opts: BusOptions = {}): Promise<Bus> {
  const log = opts.log ?? silentLogger;
  const clientId = opts.clientId ?? `oak-${Math.random().toString(16).slice(2, 10)}`;
  // with a stream of our own the URL only names the broker (mqtt://in-process)
  const target = parseBrokerUrl(url);
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
  const subs = new Set<Sub>();
  const hooks = new Set<(reconnect: boolean) => void | Promise<void>>();
  if (opts.onConnect) hooks.add(opts.onConnect);
  let connectedOnce = false;
  let closed = false;
  let waiter: { resolve: () => void; reject: (err: Error) => void } | undefined;

  const runHook = (fn: (reconnect: boolean) => void | Promise<void>, reconnect: boolean): void => {
    try {
      const r = fn(reconnect);
      if (r instanceof Promise) r.catch((err: unknown) => log.warn('bus onConnect hook failed', err));
    } catch (err) {
      log.warn('bus onConnect hook failed', err);
    }
  };
  const patternsOf = (): string[] => [...new Set([...subs].map((s) => s.pattern))];
  /** subscribes `patterns` (QoS 1); the ones the broker refused */
  const subscribeAll = async (patterns: string[]): Promise<string[]> => {
    const granted = await client.subscribe(patterns, 1);
    return patterns.filter((_, i) => granted[i] === SUBACK_FAILURE);
  };

  /** counts connections, so that a resubscribe retry for an older one stops */
  let connection = 0;
  const onConnected = (): void => {
    connection++;
    const conn = connection;
    const reconnect = connectedOnce;
    connectedOnce = true;
    log.debug(`bus ${clientId} connected to ${url}${reconnect ? ' (reconnect)' : ''}`);
    const patterns = patternsOf();
    const restored = patterns.length > 0 ? subscribeAll(patterns) : Promise.resolve([]);
    restored
      .then((refused) => {
        if (refused.length === 0) return;
        // e.g. a NATS cluster that lost a server refuses subscriptions until JetStream recovers:
        // retried on this connection (a new one resubscribes anyway), else this client is deaf
        log.warn(`bus resubscribe failed; retrying: Subscribe error: ${refused.join(', ')} refused`);
        retryResubscribe(conn, refused, 1);
      }, (err: unknown) => {
        // the connection ended meanwhile: the next one restores them
        if (!(err instanceof ConnectionLostError) && !closed) log.warn('bus resubscribe failed', err);
      })
      .finally(() => {
        for (const h of hooks) runHook(h, reconnect);
      });
    waiter?.resolve();
  };
  const retryResubscribe = (conn: number, refused: string[], attempt: number): void => {
    const t = setTimeout(() => {
      if (closed || !client.connected || conn !== connection) return;
      const wanted = new Set(patternsOf());
      const patterns = refused.filter((p) => wanted.has(p));
      if (patterns.length === 0) return;
      subscribeAll(patterns).then(
        (still) => {
          if (still.length === 0) log.info(`bus ${clientId}: resubscribed after ${attempt} retr${attempt === 1 ? 'y' : 'ies'}`);
          else {
            log.debug(`bus ${clientId}: resubscribe retry ${attempt} refused: ${still.join(', ')}`);
            retryResubscribe(conn, still, attempt + 1);
          }
        },
        (err: unknown) => {
          if (err instanceof ConnectionLostError) return;
          log.debug(`bus ${clientId}: resubscribe retry ${attempt} failed: ${err instanceof Error ? err.message : String(err)}`);
          retryResubscribe(conn, patterns, attempt + 1);
        },
      );
    }, Math.min(500 * 2 ** (attempt - 1), 10_000));
    t.unref();
  };
  const onMessage = (topic: string, payload: Buffer): void => {
    for (const s of subs) {
      if (!topicMatches(s.pattern, topic)) continue;
      try {
        const r = s.handler(topic, payload);
        if (r instanceof Promise) r.catch((err: unknown) => log.warn(`bus handler for ${s.pattern} failed`, err));
      } catch (err) {
        log.warn(`bus handler for ${s.pattern} failed`, err);
      }
    }
  };
  const onError = (err: Error & { code?: unknown }): void => {
    log.debug(`bus ${clientId} error: ${err.message}`);
    const code = err.code;
    if ((code === 4 || code === 5) && !closed) {
      try {
        opts.onRefused?.(code);
      } catch (e) {
        log.warn('bus onRefused hook failed', e);
      }
    }
    // a refused CONNACK (bad credentials etc.) ends the first wait; network errors keep retrying until the timeout
    if (waiter !== undefined && typeof code === 'number') waiter.reject(err);
  };

  const client: MqttClient = new MqttClient({
    host: target.host,
    port: target.port,
    tls: target.tls ? (opts.tls ?? {}) : undefined,
    clientId,
    username: opts.username ?? target.username,
    password: opts.password ?? target.password,
    will: willOf(opts.will),
    keepaliveS: opts.keepaliveS ?? 30,
    connectTimeoutMs,
    // a refused CONNACK (credentials dropped, a cluster that restarted) is retried too: the
    // owner may get new credentials meanwhile (onRefused, setCredentials)
    reconnectPeriodMs: opts.reconnectPeriodMs ?? 1000,
    reconnectJitter: opts.reconnectJitter ?? 0.5,
    stream: opts.stream,
    maxPacketSize: opts.maxPacketSize ?? DEFAULT_MAX_PACKET_SIZE,
  }, {
    connect: onConnected,
    close: (wasConnected) => {
      log.debug(`bus ${clientId} offline`);
      if (!wasConnected || closed) return;
      try {
        opts.onDisconnect?.();
      } catch (err) {
        log.warn('bus onDisconnect hook failed', err);
      }
    },
    error: onError,
    message: onMessage,
  });

  if (opts.waitForConnect !== false) {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiter = undefined;
        void client.end(0);
        reject(new Error(`could not connect to MQTT broker ${url} within ${connectTimeoutMs} ms`));
      }, connectTimeoutMs + 50);
      waiter = {
        resolve: () => { waiter = undefined; clearTimeout(timer); resolve(); },
        reject: (err) => { waiter = undefined; clearTimeout(timer); void client.end(0); reject(err); },
      };
    });
  }

  const bus: Bus = {
    get connected() {
      return client.connected;
    },
    clientId,
    publishJson(topic, obj, qos = 1, opts = {}) {
      return bus.publish(topic, JSON.stringify(obj), qos, opts);
    },
    async publish(topic, payload, qos = 1, opts = {}) {
      if (closed) throw new Error('bus is closed');
      await client.publish(topic, typeof payload === 'string' ? Buffer.from(payload) : payload, qos, opts.retain === true);
    },
    async subscribe(pattern, handler) {
      if (!isValidFilter(pattern)) throw new Error(`invalid MQTT topic filter: ${pattern}`);
      const sub: Sub = { pattern, handler };
      const fresh = ![...subs].some((s) => s.pattern === pattern);
      subs.add(sub);
      if (fresh && client.connected) {
        let refused: string[];
        try {
          refused = await subscribeAll([pattern]);
        } catch (err) {
          // the connection ended first: restored on the next connect, like one made offline
          if (err instanceof ConnectionLostError) refused = [];
          else {
            subs.delete(sub);
            throw err;
          }
        }
        if (refused.length > 0) {
          // refused by the broker (ACL): this handler must not see anything
          subs.delete(sub);
          throw new Error(`Subscribe error: ${pattern} refused by the broker`);
        }
      }
      return async () => {
        subs.delete(sub);
        const still = [...subs].some((s) => s.pattern === pattern);
        if (!still && client.connected && !closed) {
          await client.unsubscribe([pattern]).catch((err: unknown) => {
            if (!(err instanceof ConnectionLostError)) throw err;
          });
        }
      };
    },
    onConnect(fn) {
      hooks.add(fn);
      return () => { hooks.delete(fn); };
    },
    setCredentials(username, password, newClientId) {
      client.options.username = username;
      client.options.password = password;
      if (newClientId !== undefined) client.options.clientId = newClientId;
    },
    setWill(will) {
      client.options.will = willOf(will);
    },
    async close() {
      if (closed) return;
      closed = true;
      subs.clear();
      hooks.clear();
      // graceful when connected (unacknowledged publishes get a moment, then DISCONNECT), bounded
      await client.end(1000);
    },
  };
  return bus;
}
