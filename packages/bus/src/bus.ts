/**
 * A small MQTT 3.1.1 client over mqtt.js: JSON publishing, wildcard subscriptions dispatched to
 * handlers, automatic reconnect with resubscription, and a hook that runs on every (re)connect.
 * Handler errors are logged and never break the client.
 */
import mqtt, { MqttClient } from 'mqtt';
import type { IClientOptions } from 'mqtt';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { silentLogger } from './log.ts';
import type { Logger } from './log.ts';
import { isValidFilter, topicMatches } from './topic.ts';

export type QoS = 0 | 1 | 2;
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
  log?: Logger;
}

export interface PublishOptions {
  /** the broker keeps the message for later subscribers (an empty payload clears it) */
  retain?: boolean;
}

export interface Bus {
  readonly connected: boolean;
  readonly clientId: string;
  publishJson(topic: string, obj: unknown, qos?: QoS, opts?: PublishOptions): Promise<void>;
  publish(topic: string, payload: string | Buffer, qos?: QoS, opts?: PublishOptions): Promise<void>;
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

/** the reconnect period of one outage: `baseMs` spread by +-`jitter` (a fraction), `rnd` in [0, 1) */
export function reconnectPeriod(baseMs: number, jitter: number, rnd: number = Math.random()): number {
  const j = Math.min(1, Math.max(0, jitter));
  return Math.max(1, Math.round(baseMs * (1 - j + 2 * j * rnd)));
}

interface Sub {
  pattern: string;
  handler: MessageHandler;
}

export async function connectBus(url: string, opts: BusOptions = {}): Promise<Bus> {
  const log = opts.log ?? silentLogger;
  const clientId = opts.clientId ?? `oak-${Math.random().toString(16).slice(2, 10)}`;
  const basePeriod = opts.reconnectPeriodMs ?? 1000;
  const jitter = opts.reconnectJitter ?? 0.5;
  const mqttOpts: IClientOptions = {
    protocolVersion: 4,
    clientId,
    clean: true,
    reconnectPeriod: basePeriod,
    connectTimeout: opts.connectTimeoutMs ?? 5000,
    keepalive: opts.keepaliveS ?? 30,
    resubscribe: false,
    // a refused CONNACK (credentials dropped, a cluster that restarted) is retried too: the
    // owner may get new credentials meanwhile (onRefused, setCredentials)
    reconnectOnConnackError: true,
  };
  if (opts.username !== undefined) mqttOpts.username = opts.username;
  if (opts.password !== undefined) mqttOpts.password = opts.password;
  if (opts.tls) Object.assign(mqttOpts, opts.tls);
  if (opts.will) {
    mqttOpts.will = { topic: opts.will.topic, payload: Buffer.from(opts.will.payload), qos: opts.will.qos ?? 1, retain: opts.will.retain ?? false };
  }
  const streamBuilder = opts.stream;
  const client: MqttClient = streamBuilder !== undefined ? new MqttClient(() => streamBuilder(), mqttOpts) : mqtt.connect(url, mqttOpts);
  const subs = new Set<Sub>();
  const hooks = new Set<(reconnect: boolean) => void | Promise<void>>();
  if (opts.onConnect) hooks.add(opts.onConnect);
  let connectedOnce = false;
  let closed = false;

  const runHook = (fn: (reconnect: boolean) => void | Promise<void>, reconnect: boolean): void => {
    try {
      const r = fn(reconnect);
      if (r instanceof Promise) r.catch((err: unknown) => log.warn('bus onConnect hook failed', err));
    } catch (err) {
      log.warn('bus onConnect hook failed', err);
    }
  };

  // small control messages must not wait for Nagle + delayed ACK (about 40 ms per hop on loopback)
  client.on('connect', () => {
    const stream = (client as unknown as { stream?: { setNoDelay?: (on: boolean) => void } }).stream;
    stream?.setNoDelay?.(true);
  });
  /** counts connections, so that a resubscribe retry for an older one stops */
  let connection = 0;
  client.on('connect', () => {
    connection++;
    const reconnect = connectedOnce;
    connectedOnce = true;
    log.debug(`bus ${clientId} connected to ${url}${reconnect ? ' (reconnect)' : ''}`);
    const patterns = [...new Set([...subs].map((s) => s.pattern))];
    const restored = patterns.length > 0 ? client.subscribeAsync(patterns, { qos: 1 }) : Promise.resolve([]);
    restored
      .catch((err: unknown) => {
        // e.g. a NATS cluster that lost a server refuses subscriptions until JetStream recovers:
        // retried on this connection (a new one resubscribes anyway), else this client is deaf
        log.warn('bus resubscribe failed; retrying', err);
        retryResubscribe(connection, 1);
      })
      .finally(() => {
        for (const h of hooks) runHook(h, reconnect);
      });
  });
  const retryResubscribe = (conn: number, attempt: number): void => {
    const t = setTimeout(() => {
      if (closed || !client.connected || conn !== connection) return;
      const patterns = [...new Set([...subs].map((s) => s.pattern))];
      if (patterns.length === 0) return;
      client.subscribeAsync(patterns, { qos: 1 }).then(
        () => log.info(`bus ${clientId}: resubscribed after ${attempt} retr${attempt === 1 ? 'y' : 'ies'}`),
        (err: unknown) => {
          log.debug(`bus ${clientId}: resubscribe retry ${attempt} failed: ${err instanceof Error ? err.message : String(err)}`);
          retryResubscribe(conn, attempt + 1);
        },
      );
    }, Math.min(500 * 2 ** (attempt - 1), 10_000));
    t.unref();
  };
  client.on('error', (err) => {
    log.debug(`bus ${clientId} error: ${err.message}`);
    const code = (err as { code?: unknown }).code;
    if ((code === 4 || code === 5) && !closed) {
      try {
        opts.onRefused?.(code);
      } catch (e) {
        log.warn('bus onRefused hook failed', e);
      }
    }
  });
  // mqtt.js emits offline once per outage, right before it arms its reconnect timer with
  // options.reconnectPeriod: a period of this outage's own, so that clients that went offline
  // together retry apart (mqtt.js has no jitter of its own)
  client.on('offline', () => {
    if (basePeriod > 0) client.options.reconnectPeriod = reconnectPeriod(basePeriod, jitter);
    log.debug(`bus ${clientId} offline`);
  });
  client.on('message', (topic, payload) => {
    for (const s of subs) {
      if (!topicMatches(s.pattern, topic)) continue;
      try {
        const r = s.handler(topic, payload);
        if (r instanceof Promise) r.catch((err: unknown) => log.warn(`bus handler for ${s.pattern} failed`, err));
      } catch (err) {
        log.warn(`bus handler for ${s.pattern} failed`, err);
      }
    }
  });

  if (opts.waitForConnect !== false) {
    await new Promise<void>((resolve, reject) => {
      const onConnect = (): void => { cleanup(); resolve(); };
      const onError = (err: Error): void => {
        // refused (bad credentials etc.) is final; network errors keep retrying until the timeout
        if ((err as { code?: unknown }).code !== undefined && typeof (err as { code?: unknown }).code === 'number') {
          cleanup();
          client.end(true);
          reject(err);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        client.end(true);
        reject(new Error(`could not connect to MQTT broker ${url} within ${mqttOpts.connectTimeout} ms`));
      }, (mqttOpts.connectTimeout ?? 5000) + 50);
      const cleanup = (): void => {
        clearTimeout(timer);
        client.off('connect', onConnect);
        client.off('error', onError);
      };
      client.on('connect', onConnect);
      client.on('error', onError);
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
      await client.publishAsync(topic, payload, { qos, ...(opts.retain === true ? { retain: true } : {}) });
    },
    async subscribe(pattern, handler) {
      if (!isValidFilter(pattern)) throw new Error(`invalid MQTT topic filter: ${pattern}`);
      const sub: Sub = { pattern, handler };
      const fresh = ![...subs].some((s) => s.pattern === pattern);
      subs.add(sub);
      if (fresh && client.connected) {
        try {
          await client.subscribeAsync(pattern, { qos: 1 });
        } catch (err) {
          // refused by the broker (ACL): this handler must not see anything
          subs.delete(sub);
          throw err;
        }
      }
      return async () => {
        subs.delete(sub);
        const still = [...subs].some((s) => s.pattern === pattern);
        if (!still && client.connected && !closed) await client.unsubscribeAsync(pattern);
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
      if (will === undefined) delete client.options.will;
      else client.options.will = { topic: will.topic, payload: Buffer.from(will.payload), qos: will.qos ?? 1, retain: will.retain ?? false };
    },
    async close() {
      if (closed) return;
      closed = true;
      subs.clear();
      hooks.clear();
      // mqtt.js may never call back for a client that is between reconnects: never wait long
      const bounded = async (p: Promise<void>, ms: number): Promise<void> => {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([p.catch(() => undefined), new Promise<void>((r) => { timer = setTimeout(r, ms); })]);
        clearTimeout(timer);
      };
      if (!client.connected) {
        await bounded(client.endAsync(true), 1000);
        return;
      }
      // graceful when the broker answers, forced after a short wait
      await bounded(client.endAsync(false), 1000);
      if (!client.disconnected) await bounded(client.endAsync(true), 1000);
    },
  };
  return bus;
}
