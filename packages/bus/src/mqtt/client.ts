/**
 * One MQTT 3.1.1 client connection that redials: TCP or TLS (node:net, node:tls), CONNECT with
 * credentials and a last will, keepalive (PINGREQ when nothing was sent or nothing received for a
 * keepalive period; a connection that then stays silent for another period is dead), a CONNACK timeout, reconnects after a fixed
 * period. QoS 0 and 1 publishes; those made while offline are sent once connected, and QoS 1
 * publishes not yet acknowledged are sent again (DUP) on the next connection, until their PUBACK.
 * Inbound QoS 1 is acknowledged, inbound QoS 2 is received exactly once (PUBREC/PUBREL/PUBCOMP).
 * Subscriptions are the caller's: SUBSCRIBE and UNSUBSCRIBE go out only while connected, and the
 * caller restores them on each connect (clean sessions only).
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { ConnectionOptions } from 'node:tls';
import { CONNACK_REASONS, DEFAULT_MAX_PACKET_SIZE, DISCONNECT, PINGREQ, PacketReader, Type, encodeAck, encodeConnect, encodePublish, encodeSubscribe, encodeUnsubscribe, markDup } from './packet.ts';
import type { InboundPacket, PacketQoS } from './packet.ts';

export interface ClientOptions {
  host: string;
  port: number;
  /** TLS (mqtts://) with these node:tls options; undefined: plain TCP */
  tls?: ConnectionOptions | undefined;
  clientId: string;
  username?: string | undefined;
  password?: string | undefined;
  will?: { topic: string; payload: Buffer; qos: PacketQoS; retain: boolean } | undefined;
  /** seconds; 0 turns keepalive off */
  keepaliveS: number;
  /** from dialling to CONNACK */
  connectTimeoutMs: number;
  /** delay before redialling after a connection ends; 0: never redial */
  reconnectPeriodMs: number;
  /** each outage picks its period within (1 +- jitter) x reconnectPeriodMs; default 0 */
  reconnectJitter?: number | undefined;
  /** a connection of our own (an in-process broker) instead of dialling host:port; called for every (re)connect */
  stream?: (() => Duplex) | undefined;
  /** the largest inbound packet accepted; a larger one closes the connection */
  maxPacketSize?: number;
}

export interface ClientHandlers {
  /** CONNACK accepted; the resent and queued publishes are written already */
  connect(): void;
  /** the connection (or the attempt) ended; `wasConnected` when a CONNACK had accepted it */
  close(wasConnected: boolean): void;
  /** socket errors, refused CONNACKs (`code` = the return code), protocol errors, timeouts */
  error(err: Error & { code?: unknown }): void;
  message(topic: string, payload: Buffer, retain: boolean): void;
}

/** a SUBSCRIBE or UNSUBSCRIBE whose connection ended before its acknowledgement */
export class ConnectionLostError extends Error {
  readonly lost = true;
  constructor() {
    super('MQTT connection lost before the acknowledgement');
    this.name = 'ConnectionLostError';
  }
}

interface Outgoing {
  buf: Buffer;
  /** packet identifier (QoS 1), 0 for QoS 0 */
  id: number;
  sent: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Waiting<T> {
  resolve: (v: T) => void;
  reject: (err: Error) => void;
  count: number;
}

/** the reconnect period of one outage: `baseMs` spread by +-`jitter` (a fraction), `rnd` in [0, 1) */
export function reconnectPeriod(baseMs: number, jitter: number, rnd: number = Math.random()): number {
  const j = Math.min(1, Math.max(0, jitter));
  return Math.max(1, Math.round(baseMs * (1 - j + 2 * j * rnd)));
}

type Conn = Duplex & { setNoDelay?: (on: boolean) => unknown };

export class MqttClient {
  /** read on every (re)connect: change credentials, client id or will for the next one */
  readonly options: ClientOptions;
  #h: ClientHandlers;
  #socket: Conn | undefined;
  /** this outage's reconnect period (picked when a connection that was up ends) */
  #period = 0;
  #reader: PacketReader | undefined;
  #connected = false;
  #ending = false;
  #endPromise: Promise<void> | undefined;
  #connectTimer: NodeJS.Timeout | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #pingTimer: NodeJS.Timeout | undefined;
  #lastSent = 0;
  #lastReceived = 0;
  /** when the outstanding PINGREQ went out, 0 when none is */
  #pingSentAt = 0;
  #nextId = 1;
  #usedIds = new Set<number>();
  /** publishes not written on any connection yet, in order */
  #queue: Outgoing[] = [];
  /** QoS 1 publishes written and not acknowledged, in order */
  #inflight = new Map<number, Outgoing>();
  #subacks = new Map<number, Waiting<number[]>>();
  #unsubacks = new Map<number, Waiting<void>>();
  /** inbound QoS 2 identifiers delivered and awaiting their PUBREL */
  #qos2 = new Set<number>();
  #closeWaiters: (() => void)[] = [];

  constructor(options: ClientOptions, handlers: ClientHandlers) {
    this.options = options;
    this.#h = handlers;
    this.#dial();
  }

  get connected(): boolean {
    return this.#connected;
  }

  publish(topic: string, payload: Buffer, qos: 0 | 1, retain: boolean): Promise<void> {
    if (this.#ending) return Promise.reject(new Error('MQTT client is closed'));
    if (qos !== 0 && qos !== 1) return Promise.reject(new RangeError(`publishing at QoS ${String(qos)} is not supported (0 or 1)`));
    return new Promise<void>((resolve, reject) => {
      const id = qos === 1 ? this.#allocId() : 0;
      let buf: Buffer;
      try {
        buf = encodePublish({ topic, payload, qos, retain, ...(qos === 1 ? { id } : {}) });
      } catch (err) {
        if (id !== 0) this.#usedIds.delete(id);
        throw err;
      }
      const o: Outgoing = { buf, id, sent: false, resolve, reject };
      if (!this.#connected) {
        this.#queue.push(o);
        return;
      }
      this.#send(o);
    });
  }

  /** resolves with the granted codes (0x80: refused); rejects with ConnectionLostError when the connection ends first */
  subscribe(filters: string[], qos: PacketQoS): Promise<number[]> {
    if (!this.#connected) return Promise.reject(new ConnectionLostError());
    return new Promise<number[]>((resolve, reject) => {
      const id = this.#allocId();
      let buf: Buffer;
      try {
        buf = encodeSubscribe(id, filters.map((filter) => ({ filter, qos })));
      } catch (err) {
        this.#usedIds.delete(id);
        throw err;
      }
      this.#subacks.set(id, { resolve, reject, count: filters.length });
      this.#write(buf);
    });
  }

  unsubscribe(filters: string[]): Promise<void> {
    if (!this.#connected) return Promise.reject(new ConnectionLostError());
    return new Promise<void>((resolve, reject) => {
      const id = this.#allocId();
      let buf: Buffer;
      try {
        buf = encodeUnsubscribe(id, filters);
      } catch (err) {
        this.#usedIds.delete(id);
        throw err;
      }
      this.#unsubacks.set(id, { resolve, reject, count: filters.length });
      this.#write(buf);
    });
  }

  /**
   * Ends for good: when connected, waits up to `graceMs` for unacknowledged publishes, sends
   * DISCONNECT (the broker drops the will) and closes; a socket that does not close within
   * `graceMs` more is destroyed. Whatever is still pending is rejected. Never hangs.
   */
  end(graceMs = 1000): Promise<void> {
    if (this.#endPromise) return this.#endPromise;
    this.#ending = true;
    clearTimeout(this.#reconnectTimer);
    this.#endPromise = (async () => {
      const sock = this.#socket;
      if (sock !== undefined && this.#connected) {
        if (this.#inflight.size > 0) await this.#bounded((done) => { this.#drainWaiter = done; }, graceMs);
        this.#drainWaiter = undefined;
      }
      if (this.#socket !== undefined) {
        const s = this.#socket;
        const closed = this.#bounded((done) => { this.#closeWaiters.push(done); }, graceMs);
        if (this.#connected) {
          s.end(DISCONNECT);
        } else {
          s.destroy();
        }
        await closed;
        if (this.#socket === s) s.destroy();
      }
      this.#failAll(new Error('MQTT client is closed'));
    })();
    return this.#endPromise;
  }

  #drainWaiter: (() => void) | undefined;

  #bounded(arm: (done: () => void) => void, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      arm(() => { clearTimeout(t); resolve(); });
    });
  }

  #failAll(err: Error): void {
    for (const o of this.#queue) o.reject(err);
    for (const o of this.#inflight.values()) o.reject(err);
    for (const w of this.#subacks.values()) w.reject(err);
    for (const w of this.#unsubacks.values()) w.reject(err);
    this.#queue = [];
    this.#inflight.clear();
    this.#subacks.clear();
    this.#unsubacks.clear();
    this.#usedIds.clear();
  }

  #allocId(): number {
    if (this.#usedIds.size >= 65_535) throw new Error('all 65535 MQTT packet identifiers are in use');
    let id = this.#nextId;
    while (this.#usedIds.has(id)) id = id === 65_535 ? 1 : id + 1;
    this.#nextId = id === 65_535 ? 1 : id + 1;
    this.#usedIds.add(id);
    return id;
  }

  #write(buf: Buffer): void {
    this.#socket?.write(buf);
    this.#lastSent = Date.now();
  }

  #send(o: Outgoing): void {
    if (o.sent) markDup(o.buf);
    o.sent = true;
    if (o.id !== 0) this.#inflight.set(o.id, o);
    this.#write(o.buf);
    if (o.id === 0) o.resolve();
  }

  #dial(): void {
    if (this.#ending) return;
    const o = this.options;
    let sock: Conn;
    if (o.stream !== undefined) {
      sock = o.stream();
    } else if (o.tls !== undefined) {
      const servername = o.tls.servername ?? (net.isIP(o.host) === 0 ? o.host : undefined);
      sock = tls.connect({ ...o.tls, host: o.host, port: o.port, ...(servername !== undefined ? { servername } : {}) });
    } else {
      sock = net.connect({ host: o.host, port: o.port });
    }
    // small control messages must not wait for Nagle + delayed ACK (about 40 ms per hop on loopback)
    sock.setNoDelay?.(true);
    this.#socket = sock;
    this.#reader = new PacketReader(o.maxPacketSize ?? DEFAULT_MAX_PACKET_SIZE);
    this.#connectTimer = setTimeout(() => {
      if (this.#socket !== sock) return;
      this.#h.error(new Error(`no CONNACK within ${o.connectTimeoutMs} ms`));
      sock.destroy();
    }, o.connectTimeoutMs);
    const hello = (): void => {
      if (this.#socket !== sock) return;
      const will = o.will;
      try {
        this.#write(encodeConnect({ clientId: o.clientId, keepaliveS: o.keepaliveS, clean: true, username: o.username, password: o.password, will }));
      } catch (err) {
        this.#h.error(err as Error);
        sock.destroy();
      }
    };
    // a stream of our own is open already
    if (o.stream !== undefined) queueMicrotask(hello);
    else sock.once(o.tls !== undefined ? 'secureConnect' : 'connect', hello);
    sock.on('data', (d: Buffer) => this.#onData(sock, d));
    sock.on('error', (err) => {
      if (this.#socket === sock) this.#h.error(err);
    });
    sock.on('close', () => this.#onClose(sock));
  }

  #onData(sock: Conn, d: Buffer): void {
    if (this.#socket !== sock || this.#reader === undefined) return;
    this.#lastReceived = Date.now();
    let packets: InboundPacket[];
    try {
      packets = this.#reader.push(d);
    } catch (err) {
      this.#h.error(err as Error);
      sock.destroy();
      return;
    }
    for (const p of packets) {
      if (this.#socket !== sock) return;
      try {
        this.#onPacket(sock, p);
      } catch (err) {
        this.#h.error(err as Error);
        sock.destroy();
        return;
      }
    }
  }

  #onPacket(sock: Conn, p: InboundPacket): void {
    // any packet proves the broker alive
    this.#pingSentAt = 0;
    if (!this.#connected && p.type !== Type.CONNACK) throw new Error(`MQTT protocol error: packet type ${p.type} before CONNACK`);
    switch (p.type) {
      case Type.CONNACK: {
        if (this.#connected) throw new Error('MQTT protocol error: a second CONNACK');
        clearTimeout(this.#connectTimer);
        if (p.returnCode !== 0) {
          const err = Object.assign(new Error(`Connection refused: ${CONNACK_REASONS[p.returnCode] ?? String(p.returnCode)}`), { code: p.returnCode });
          this.#h.error(err);
          sock.destroy();
          return;
        }
        this.#connected = true;
        this.#armPing(this.options.keepaliveS * 1000);
        // unacknowledged first (DUP), then what was queued while offline: the order they were made in
        const again = [...this.#inflight.values()];
        this.#inflight.clear();
        for (const o of again) this.#send(o);
        const queued = this.#queue;
        this.#queue = [];
        for (const o of queued) this.#send(o);
        this.#h.connect();
        return;
      }
      case Type.PUBLISH:
        if (p.qos === 0) {
          this.#h.message(p.topic, p.payload, p.retain);
        } else if (p.qos === 1) {
          this.#write(encodeAck(Type.PUBACK, p.id));
          this.#h.message(p.topic, p.payload, p.retain);
        } else {
          // exactly once: delivered on the first PUBLISH of this id, until its PUBREL
          const fresh = !this.#qos2.has(p.id);
          this.#qos2.add(p.id);
          this.#write(encodeAck(Type.PUBREC, p.id));
          if (fresh) this.#h.message(p.topic, p.payload, p.retain);
        }
        return;
      case Type.PUBREL:
        this.#qos2.delete(p.id);
        this.#write(encodeAck(Type.PUBCOMP, p.id));
        return;
      case Type.PUBACK: {
        const o = this.#inflight.get(p.id);
        if (o === undefined) return; // a late duplicate
        this.#inflight.delete(p.id);
        this.#usedIds.delete(p.id);
        o.resolve();
        if (this.#inflight.size === 0) this.#drainWaiter?.();
        return;
      }
      case Type.PUBREC:
      case Type.PUBCOMP:
        // we never publish at QoS 2
        throw new Error(`MQTT protocol error: packet type ${p.type} for a QoS 2 publish never made`);
      case Type.SUBACK: {
        const w = this.#subacks.get(p.id);
        if (w === undefined) return;
        if (p.granted.length !== w.count) throw new Error(`MQTT protocol error: SUBACK with ${p.granted.length} codes for ${w.count} filters`);
        this.#subacks.delete(p.id);
        this.#usedIds.delete(p.id);
        w.resolve(p.granted);
        return;
      }
      case Type.UNSUBACK: {
        const w = this.#unsubacks.get(p.id);
        if (w === undefined) return;
        this.#unsubacks.delete(p.id);
        this.#usedIds.delete(p.id);
        w.resolve();
        return;
      }
      case Type.PINGRESP:
        return;
    }
  }

  #armPing(ms: number): void {
    clearTimeout(this.#pingTimer);
    if (this.options.keepaliveS <= 0) return;
    this.#pingTimer = setTimeout(() => this.#pingTick(), Math.max(ms, 10));
    this.#pingTimer.unref();
  }

  #pingTick(): void {
    const sock = this.#socket;
    if (!this.#connected || sock === undefined) return;
    const k = this.options.keepaliveS * 1000;
    const now = Date.now();
    if (this.#pingSentAt !== 0) {
      if (now - this.#pingSentAt >= k) {
        this.#h.error(new Error(`keepalive timeout: no PINGRESP within ${k} ms`));
        sock.destroy();
        return;
      }
      this.#armPing(this.#pingSentAt + k - now);
      return;
    }
    // due when nothing was sent for a keepalive period (the broker expects a packet), or nothing
    // received (a broker gone silently while we keep publishing: its PUBACKs stop)
    const quiet = now - Math.min(this.#lastSent, this.#lastReceived);
    if (quiet >= k) {
      this.#write(PINGREQ);
      this.#pingSentAt = now;
      this.#armPing(k);
    } else {
      this.#armPing(k - quiet);
    }
  }

  #onClose(sock: Conn): void {
    if (this.#socket !== sock) return;
    const wasConnected = this.#connected;
    this.#socket = undefined;
    this.#reader = undefined;
    this.#connected = false;
    this.#pingSentAt = 0;
    this.#qos2.clear();
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#pingTimer);
    const lost = new ConnectionLostError();
    for (const [id, w] of this.#subacks) { this.#usedIds.delete(id); w.reject(lost); }
    for (const [id, w] of this.#unsubacks) { this.#usedIds.delete(id); w.reject(lost); }
    this.#subacks.clear();
    this.#unsubacks.clear();
    for (const w of this.#closeWaiters.splice(0)) w();
    this.#drainWaiter?.();
    this.#h.close(wasConnected);
    if (!this.#ending && this.options.reconnectPeriodMs > 0) {
      if (wasConnected || this.#period === 0) this.#period = reconnectPeriod(this.options.reconnectPeriodMs, this.options.reconnectJitter ?? 0);
      this.#reconnectTimer = setTimeout(() => {
        this.#reconnectTimer = undefined;
        this.#dial();
      }, this.#period);
    }
  }
}
