/**
 * MQTT 3.1.1 packets (OASIS standard, 2014) as a client sees them: the encoders of what a client
 * sends, and a streaming decoder of what a broker sends. Pure: no I/O, no timers.
 *
 * The decoder is the NodeEngine's first contact with bytes from the network: it refuses anything
 * malformed (reserved flags, lengths that do not add up, invalid UTF-8, packets a broker never
 * sends) and any packet larger than its limit as soon as the fixed header says so, before
 * buffering its body.
 */

export const PROTOCOL_LEVEL = 4;
/** the largest remaining length a 4-byte variable length integer encodes (§2.2.3) */
export const MAX_REMAINING_LENGTH = 268_435_455;
/** default limit of one inbound packet (fixed header included) */
export const DEFAULT_MAX_PACKET_SIZE = 16 * 1024 * 1024;

export const Type = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBSCRIBE: 8,
  SUBACK: 9,
  UNSUBSCRIBE: 10,
  UNSUBACK: 11,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
} as const;
type T = typeof Type;
export type AckType = T['PUBACK'] | T['PUBREC'] | T['PUBREL'] | T['PUBCOMP'];

export type PacketQoS = 0 | 1 | 2;

/** CONNACK return codes (§3.2.2.3) */
export const CONNACK_REASONS: Record<number, string> = {
  1: 'Unacceptable protocol version',
  2: 'Identifier rejected',
  3: 'Server unavailable',
  4: 'Bad username or password',
  5: 'Not authorized',
};

/** what a broker sends a client */
export type InboundPacket =
  | { type: T['CONNACK']; sessionPresent: boolean; returnCode: number }
  | { type: T['PUBLISH']; topic: string; payload: Buffer; qos: PacketQoS; retain: boolean; dup: boolean; id: number }
  | { type: AckType | T['UNSUBACK']; id: number }
  | { type: T['SUBACK']; id: number; granted: number[] }
  | { type: T['PINGRESP'] };

export class MqttProtocolError extends Error {
  constructor(message: string) {
    super(`MQTT protocol error: ${message}`);
    this.name = 'MqttProtocolError';
  }
}

// ------------------------------------------------------------------ encoding

/** bytes of the variable length integer for `n` (§2.2.3) */
export function remainingLengthSize(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > MAX_REMAINING_LENGTH) throw new RangeError(`remaining length ${n} out of range`);
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

function writeRemainingLength(buf: Buffer, at: number, n: number): number {
  let x = n;
  do {
    let byte = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) byte |= 0x80;
    buf[at++] = byte;
  } while (x > 0);
  return at;
}

/** a packet of `type` with fixed-header flags and a body of `body` bytes, written by `fill` at the offset it gets */
function packet(first: number, body: number, fill: (buf: Buffer, at: number) => number): Buffer {
  const buf = Buffer.allocUnsafe(1 + remainingLengthSize(body) + body);
  buf[0] = first;
  const start = writeRemainingLength(buf, 1, body);
  const end = fill(buf, start);
  if (end !== buf.length) throw new Error(`internal: packet ${first >> 4} filled ${end} of ${buf.length} bytes`);
  return buf;
}

function utf8(s: string, what: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length > 65_535) throw new RangeError(`${what} is longer than 65535 bytes`);
  if (s.includes('\u0000')) throw new RangeError(`${what} holds U+0000`);
  return b;
}

function writeField(buf: Buffer, at: number, b: Buffer): number {
  buf.writeUInt16BE(b.length, at);
  b.copy(buf, at + 2);
  return at + 2 + b.length;
}

function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 1 || id > 65_535) throw new RangeError(`packet identifier ${id} out of range`);
}

function checkQos(q: number): void {
  if (q !== 0 && q !== 1 && q !== 2) throw new RangeError(`QoS ${q} is not 0, 1 or 2`);
}

export interface ConnectFields {
  clientId: string;
  keepaliveS: number;
  clean: boolean;
  username?: string | undefined;
  password?: string | Buffer | undefined;
  will?: { topic: string; payload: Buffer; qos: PacketQoS; retain: boolean } | undefined;
}

export function encodeConnect(c: ConnectFields): Buffer {
  if (!Number.isInteger(c.keepaliveS) || c.keepaliveS < 0 || c.keepaliveS > 65_535) throw new RangeError(`keepalive ${c.keepaliveS} out of range`);
  const id = utf8(c.clientId, 'client id');
  const user = c.username !== undefined ? utf8(c.username, 'user name') : undefined;
  const pass = c.password === undefined ? undefined : typeof c.password === 'string' ? Buffer.from(c.password, 'utf8') : c.password;
  if (pass !== undefined && pass.length > 65_535) throw new RangeError('password is longer than 65535 bytes');
  // a password without a user name is not allowed in 3.1.1 (§3.1.2.9)
  if (pass !== undefined && user === undefined) throw new RangeError('a password needs a user name');
  let willTopic: Buffer | undefined;
  if (c.will) {
    checkQos(c.will.qos);
    willTopic = utf8(c.will.topic, 'will topic');
    if (willTopic.length === 0 || /[+#]/.test(c.will.topic)) throw new RangeError(`invalid will topic ${JSON.stringify(c.will.topic)}`);
    if (c.will.payload.length > 65_535) throw new RangeError('will payload is longer than 65535 bytes');
  }
  let flags = c.clean ? 0x02 : 0;
  if (c.will) flags |= 0x04 | (c.will.qos << 3) | (c.will.retain ? 0x20 : 0);
  if (pass !== undefined) flags |= 0x40;
  if (user !== undefined) flags |= 0x80;
  const body = 10 + 2 + id.length + (willTopic && c.will ? 4 + willTopic.length + c.will.payload.length : 0) + (user ? 2 + user.length : 0) + (pass ? 2 + pass.length : 0);
  return packet(Type.CONNECT << 4, body, (buf, at) => {
    at = writeField(buf, at, Buffer.from('MQTT'));
    buf[at++] = PROTOCOL_LEVEL;
    buf[at++] = flags;
    buf.writeUInt16BE(c.keepaliveS, at);
    at += 2;
    at = writeField(buf, at, id);
    if (willTopic && c.will) {
      at = writeField(buf, at, willTopic);
      at = writeField(buf, at, c.will.payload);
    }
    if (user) at = writeField(buf, at, user);
    if (pass) at = writeField(buf, at, pass);
    return at;
  });
}

export interface PublishFields {
  topic: string;
  payload: Buffer;
  qos: PacketQoS;
  retain?: boolean;
  dup?: boolean;
  /** required for QoS 1 and 2 */
  id?: number;
}

export function encodePublish(p: PublishFields): Buffer {
  checkQos(p.qos);
  const topic = utf8(p.topic, 'topic');
  if (topic.length === 0 || /[+#]/.test(p.topic)) throw new RangeError(`invalid topic name ${JSON.stringify(p.topic)}`);
  if (p.qos > 0) checkId(p.id ?? 0);
  if (p.qos === 0 && p.dup === true) throw new RangeError('DUP is for QoS 1 and 2 only');
  const body = 2 + topic.length + (p.qos > 0 ? 2 : 0) + p.payload.length;
  const first = (Type.PUBLISH << 4) | (p.dup === true ? 0x08 : 0) | (p.qos << 1) | (p.retain === true ? 0x01 : 0);
  return packet(first, body, (buf, at) => {
    at = writeField(buf, at, topic);
    if (p.qos > 0) {
      buf.writeUInt16BE(p.id ?? 0, at);
      at += 2;
    }
    p.payload.copy(buf, at);
    return at + p.payload.length;
  });
}

/** sets the DUP flag of an encoded PUBLISH (a resend) */
export function markDup(publish: Buffer): void {
  if (((publish[0] ?? 0) >> 4) !== Type.PUBLISH || ((publish[0] ?? 0) & 0x06) === 0) throw new RangeError('not a QoS 1/2 PUBLISH');
  publish[0] = (publish[0] ?? 0) | 0x08;
}

/** PUBACK, PUBREC, PUBREL (flags 0010) and PUBCOMP */
export function encodeAck(type: AckType, id: number): Buffer {
  checkId(id);
  const buf = Buffer.allocUnsafe(4);
  buf[0] = (type << 4) | (type === Type.PUBREL ? 0x02 : 0);
  buf[1] = 2;
  buf.writeUInt16BE(id, 2);
  return buf;
}

export function encodeSubscribe(id: number, subs: { filter: string; qos: PacketQoS }[]): Buffer {
  checkId(id);
  if (subs.length === 0) throw new RangeError('SUBSCRIBE needs at least one filter');
  const filters = subs.map((s) => {
    checkQos(s.qos);
    const b = utf8(s.filter, 'topic filter');
    if (b.length === 0) throw new RangeError('empty topic filter');
    return b;
  });
  const body = 2 + filters.reduce((n, f) => n + 3 + f.length, 0);
  return packet((Type.SUBSCRIBE << 4) | 0x02, body, (buf, at) => {
    buf.writeUInt16BE(id, at);
    at += 2;
    filters.forEach((f, i) => {
      at = writeField(buf, at, f);
      buf[at++] = subs[i]?.qos ?? 0;
    });
    return at;
  });
}

export function encodeUnsubscribe(id: number, filters: string[]): Buffer {
  checkId(id);
  if (filters.length === 0) throw new RangeError('UNSUBSCRIBE needs at least one filter');
  const bs = filters.map((f) => utf8(f, 'topic filter'));
  const body = 2 + bs.reduce((n, f) => n + 2 + f.length, 0);
  return packet((Type.UNSUBSCRIBE << 4) | 0x02, body, (buf, at) => {
    buf.writeUInt16BE(id, at);
    at += 2;
    for (const f of bs) at = writeField(buf, at, f);
    return at;
  });
}

export const PINGREQ: Readonly<Buffer> = Buffer.from([Type.PINGREQ << 4, 0]);
export const DISCONNECT: Readonly<Buffer> = Buffer.from([Type.DISCONNECT << 4, 0]);

// ------------------------------------------------------------------ decoding

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads packets from a byte stream: push() each chunk as it arrives, get the complete packets.
 * It throws MqttProtocolError on malformed input; the connection must then be closed (the
 * reader's state is undefined after an error).
 */
export class PacketReader {
  readonly maxPacketSize: number;
  #chunks: Buffer[] = [];
  #have = 0;
  /** size of the packet being collected (fixed header included), 0 while its header is incomplete */
  #need = 0;

  constructor(maxPacketSize = DEFAULT_MAX_PACKET_SIZE) {
    if (!Number.isInteger(maxPacketSize) || maxPacketSize < 2) throw new RangeError(`maxPacketSize ${maxPacketSize} out of range`);
    this.maxPacketSize = maxPacketSize;
  }

  /** bytes received but not yet part of a returned packet */
  get buffered(): number {
    return this.#have;
  }

  push(chunk: Buffer): InboundPacket[] {
    const out: InboundPacket[] = [];
    if (chunk.length === 0) return out;
    this.#chunks.push(chunk);
    this.#have += chunk.length;
    for (;;) {
      if (this.#need === 0) {
        const size = this.#header();
        if (size === undefined) break;
        this.#need = size;
      }
      if (this.#have < this.#need) break;
      const buf = this.#take(this.#need);
      this.#need = 0;
      out.push(decodePacket(buf));
    }
    return out;
  }

  #byte(i: number): number | undefined {
    for (const c of this.#chunks) {
      if (i < c.length) return c[i];
      i -= c.length;
    }
    return undefined;
  }

  /** the full size of the next packet, undefined while its fixed header is incomplete */
  #header(): number | undefined {
    const first = this.#byte(0);
    if (first === undefined) return undefined;
    checkFirstByte(first);
    let n = 0;
    let mul = 1;
    for (let i = 1; i <= 4; i++) {
      const b = this.#byte(i);
      if (b === undefined) return undefined;
      n += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) {
        const size = 1 + i + n;
        if (size > this.maxPacketSize) throw new MqttProtocolError(`packet of ${size} bytes is larger than the limit of ${this.maxPacketSize}`);
        return size;
      }
      mul *= 128;
    }
    throw new MqttProtocolError('remaining length longer than 4 bytes');
  }

  #take(n: number): Buffer {
    const first = this.#chunks[0];
    let out: Buffer;
    if (first !== undefined && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.#chunks[0];
        if (c === undefined) throw new Error('internal: not enough bytes');
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.#chunks.shift();
        else this.#chunks[0] = c.subarray(k);
      }
    }
    this.#have -= n;
    return out;
  }
}

/** the packet types a broker sends, with their fixed flags; PUBLISH's are checked in decodePublish */
function checkFirstByte(first: number): void {
  const type = first >> 4;
  const flags = first & 0x0f;
  switch (type) {
    case Type.PUBLISH:
      if ((flags & 0x06) === 0x06) throw new MqttProtocolError('PUBLISH with QoS 3');
      return;
    case Type.PUBREL:
      if (flags !== 0x02) throw new MqttProtocolError('PUBREL with flags other than 0010');
      return;
    case Type.CONNACK:
    case Type.PUBACK:
    case Type.PUBREC:
    case Type.PUBCOMP:
    case Type.SUBACK:
    case Type.UNSUBACK:
    case Type.PINGRESP:
      if (flags !== 0) throw new MqttProtocolError(`packet type ${type} with reserved flags ${flags}`);
      return;
    default:
      throw new MqttProtocolError(`packet type ${type} is not sent by a broker`);
  }
}

/** one whole packet (fixed header included) */
export function decodePacket(buf: Buffer): InboundPacket {
  const first = buf[0];
  if (first === undefined) throw new MqttProtocolError('empty packet');
  checkFirstByte(first);
  let at = 1;
  let n = 0;
  let mul = 1;
  for (;;) {
    const b = buf[at++];
    if (b === undefined) throw new MqttProtocolError('truncated fixed header');
    n += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) break;
    if (at > 4) throw new MqttProtocolError('remaining length longer than 4 bytes');
    mul *= 128;
  }
  if (at + n !== buf.length) throw new MqttProtocolError(`remaining length ${n} does not match the ${buf.length - at} bytes given`);
  const body = buf.subarray(at);
  const type = first >> 4;
  switch (type) {
    case Type.CONNACK: {
      if (body.length !== 2) throw new MqttProtocolError(`CONNACK of ${body.length} bytes`);
      const ack = body[0] ?? 0;
      const rc = body[1] ?? 0;
      if ((ack & 0xfe) !== 0) throw new MqttProtocolError('CONNACK with reserved acknowledge flags');
      if (rc > 5) throw new MqttProtocolError(`CONNACK return code ${rc}`);
      if (rc !== 0 && (ack & 1) === 1) throw new MqttProtocolError('CONNACK refusal with session present');
      return { type: Type.CONNACK, sessionPresent: (ack & 1) === 1, returnCode: rc };
    }
    case Type.PUBLISH:
      return decodePublish(first, body);
    case Type.PUBACK:
    case Type.PUBREC:
    case Type.PUBREL:
    case Type.PUBCOMP:
    case Type.UNSUBACK:
      if (body.length !== 2) throw new MqttProtocolError(`packet type ${type} of ${body.length} bytes`);
      return { type: type as AckType | T['UNSUBACK'], id: readId(body, 0) };
    case Type.SUBACK: {
      if (body.length < 3) throw new MqttProtocolError(`SUBACK of ${body.length} bytes`);
      const granted: number[] = [];
      for (let i = 2; i < body.length; i++) {
        const g = body[i] ?? 0;
        if (g !== 0 && g !== 1 && g !== 2 && g !== 0x80) throw new MqttProtocolError(`SUBACK return code ${g}`);
        granted.push(g);
      }
      return { type: Type.SUBACK, id: readId(body, 0), granted };
    }
    case Type.PINGRESP:
      if (body.length !== 0) throw new MqttProtocolError(`PINGRESP of ${body.length} bytes`);
      return { type: Type.PINGRESP };
    default:
      throw new MqttProtocolError(`packet type ${type} is not sent by a broker`);
  }
}

function readId(body: Buffer, at: number): number {
  const id = body.readUInt16BE(at);
  if (id === 0) throw new MqttProtocolError('packet identifier 0');
  return id;
}

function decodePublish(first: number, body: Buffer): InboundPacket {
  const qos = ((first >> 1) & 0x03) as PacketQoS;
  const dup = (first & 0x08) !== 0;
  if (qos === 0 && dup) throw new MqttProtocolError('PUBLISH QoS 0 with DUP');
  if (body.length < 2) throw new MqttProtocolError('PUBLISH without a topic');
  const tlen = body.readUInt16BE(0);
  const idLen = qos > 0 ? 2 : 0;
  if (2 + tlen + idLen > body.length) throw new MqttProtocolError('PUBLISH topic longer than the packet');
  if (tlen === 0) throw new MqttProtocolError('PUBLISH with an empty topic');
  let topic: string;
  try {
    topic = strictUtf8.decode(body.subarray(2, 2 + tlen));
  } catch {
    throw new MqttProtocolError('PUBLISH topic is not valid UTF-8');
  }
  if (/[\u0000+#]/.test(topic)) throw new MqttProtocolError(`PUBLISH topic ${JSON.stringify(topic)} holds U+0000 or a wildcard`);
  const id = qos > 0 ? readId(body, 2 + tlen) : 0;
  // a copy: the payload outlives the chunk it came in (handlers keep it), and must not pin it
  const payload = Buffer.from(body.subarray(2 + tlen + idLen));
  return { type: Type.PUBLISH, topic, payload, qos, retain: (first & 0x01) !== 0, dup, id };
}
