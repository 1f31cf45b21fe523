/**
 * The MQTT 3.1.1 packet codec (src/mqtt/packet.ts): encodings byte for byte against the spec's
 * layouts, the remaining-length edges, streaming in any split, and hostile input refused.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  DISCONNECT, MAX_REMAINING_LENGTH, MqttProtocolError, PINGREQ, PacketReader, Type, decodePacket,
  encodeAck, encodeConnect, encodePublish, encodeSubscribe, encodeUnsubscribe, markDup, remainingLengthSize,
} from '../src/mqtt/packet.ts';

const hex = (b: Buffer): string => b.toString('hex');
/** a fixed header + body as a broker would send it */
const frame = (first: number, body: number[] | Buffer): Buffer => {
  const b = Buffer.from(body);
  const len: number[] = [];
  let n = b.length;
  do {
    let x = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) x |= 0x80;
    len.push(x);
  } while (n > 0);
  return Buffer.concat([Buffer.from([first, ...len]), b]);
};
const refuses = (bytes: Buffer | number[], re: RegExp, max?: number): void => {
  assert.throws(() => new PacketReader(max).push(Buffer.from(bytes)), (e: unknown) => e instanceof MqttProtocolError && re.test(e.message));
};

describe('encoding', () => {
  test('CONNECT: protocol name, level 4, flags, keepalive, payload order', () => {
    const b = encodeConnect({ clientId: 'c1', keepaliveS: 30, clean: true });
    assert.equal(hex(b), '100e' + '00044d515454' + '04' + '02' + '001e' + '0002' + Buffer.from('c1').toString('hex'));
    const full = encodeConnect({ clientId: 'w', keepaliveS: 60, clean: true, username: 'u', password: 'p', will: { topic: 'a/b', payload: Buffer.from('x'), qos: 1, retain: true } });
    // flags: user 0x80, password 0x40, will retain 0x20, will QoS 1 0x08, will 0x04, clean 0x02
    assert.equal(full[9], 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02);
    assert.equal(hex(full.subarray(12)), '0001' + '77' + '0003' + Buffer.from('a/b').toString('hex') + '0001' + '78' + '0001' + '75' + '0001' + '70');
    assert.equal(full[1], full.length - 2);
    assert.throws(() => encodeConnect({ clientId: 'c', keepaliveS: 1, clean: true, password: 'p' }), /needs a user name/);
    assert.throws(() => encodeConnect({ clientId: 'c', keepaliveS: 70_000, clean: true }), /keepalive/);
    assert.throws(() => encodeConnect({ clientId: 'c', keepaliveS: 1, clean: true, will: { topic: 'a/#', payload: Buffer.alloc(0), qos: 0, retain: false } }), /will topic/);
  });

  test('PUBLISH at QoS 0 and 1, retain, DUP', () => {
    assert.equal(hex(encodePublish({ topic: 'a/b', payload: Buffer.from('hi'), qos: 0 })), '30' + '07' + '0003' + '612f62' + '6869');
    const q1 = encodePublish({ topic: 't', payload: Buffer.from('x'), qos: 1, retain: true, id: 0x1234 });
    assert.equal(hex(q1), '33' + '06' + '0001' + '74' + '1234' + '78');
    markDup(q1);
    assert.equal(q1[0], 0x3b);
    assert.throws(() => markDup(encodePublish({ topic: 't', payload: Buffer.alloc(0), qos: 0 })), /QoS 1\/2/);
    assert.throws(() => encodePublish({ topic: 't', payload: Buffer.alloc(0), qos: 1 }), /identifier/);
    assert.throws(() => encodePublish({ topic: 'a/+', payload: Buffer.alloc(0), qos: 0 }), /invalid topic/);
    assert.throws(() => encodePublish({ topic: '', payload: Buffer.alloc(0), qos: 0 }), /invalid topic/);
    assert.throws(() => encodePublish({ topic: 'a\u0000', payload: Buffer.alloc(0), qos: 0 }), /U\+0000/);
    assert.throws(() => encodePublish({ topic: 'x'.repeat(65_536), payload: Buffer.alloc(0), qos: 0 }), /65535/);
  });

  test('SUBSCRIBE, UNSUBSCRIBE (flags 0010), acks, PINGREQ, DISCONNECT', () => {
    assert.equal(hex(encodeSubscribe(10, [{ filter: 'a/+', qos: 1 }, { filter: '#', qos: 0 }])), '82' + '0c' + '000a' + '0003612f2b' + '01' + '000123' + '00');
    assert.equal(hex(encodeUnsubscribe(11, ['a/+'])), 'a2' + '07' + '000b' + '0003612f2b');
    assert.equal(hex(encodeAck(Type.PUBACK, 7)), '40020007');
    assert.equal(hex(encodeAck(Type.PUBREC, 7)), '50020007');
    assert.equal(hex(encodeAck(Type.PUBREL, 7)), '62020007');
    assert.equal(hex(encodeAck(Type.PUBCOMP, 65_535)), '7002ffff');
    assert.throws(() => encodeAck(Type.PUBACK, 0), /identifier/);
    assert.throws(() => encodeAck(Type.PUBACK, 65_536), /identifier/);
    assert.equal(hex(PINGREQ), 'c000');
    assert.equal(hex(DISCONNECT), 'e000');
    assert.throws(() => encodeSubscribe(1, []), /at least one/);
  });

  test('remaining length: 1 to 4 bytes at the spec boundaries', () => {
    for (const [n, size] of [[0, 1], [127, 1], [128, 2], [16_383, 2], [16_384, 3], [2_097_151, 3], [2_097_152, 4], [MAX_REMAINING_LENGTH, 4]] as const) {
      assert.equal(remainingLengthSize(n), size, String(n));
    }
    assert.throws(() => remainingLengthSize(MAX_REMAINING_LENGTH + 1), RangeError);
    assert.throws(() => remainingLengthSize(-1), RangeError);
    // the encoded bytes of the boundaries
    const lenBytes = (bodyLen: number): string => hex(encodePublish({ topic: 't', payload: Buffer.alloc(bodyLen - 3), qos: 0 }).subarray(1, 1 + remainingLengthSize(bodyLen)));
    assert.equal(lenBytes(127), '7f');
    assert.equal(lenBytes(128), '8001');
    assert.equal(lenBytes(16_383), 'ff7f');
    assert.equal(lenBytes(16_384), '808001');
    assert.equal(lenBytes(2_097_152), '80808001');
  });
});

describe('decoding', () => {
  test('every packet a broker sends', () => {
    assert.deepEqual(decodePacket(frame(0x20, [1, 0])), { type: Type.CONNACK, sessionPresent: true, returnCode: 0 });
    assert.deepEqual(decodePacket(frame(0x20, [0, 5])), { type: Type.CONNACK, sessionPresent: false, returnCode: 5 });
    assert.deepEqual(decodePacket(frame(0x40, [0, 9])), { type: Type.PUBACK, id: 9 });
    assert.deepEqual(decodePacket(frame(0x62, [1, 0])), { type: Type.PUBREL, id: 256 });
    assert.deepEqual(decodePacket(frame(0xb0, [0, 3])), { type: Type.UNSUBACK, id: 3 });
    assert.deepEqual(decodePacket(frame(0x90, [0, 4, 1, 0x80, 0])), { type: Type.SUBACK, id: 4, granted: [1, 0x80, 0] });
    assert.deepEqual(decodePacket(frame(0xd0, [])), { type: Type.PINGRESP });
    const p = decodePacket(frame(0x3d, [0, 3, 0x61, 0x2f, 0x62, 0, 7, 0x68, 0x69]));
    assert.deepEqual(p, { type: Type.PUBLISH, topic: 'a/b', payload: Buffer.from('hi'), qos: 2, retain: true, dup: true, id: 7 });
    const empty = decodePacket(frame(0x30, [0, 1, 0x74]));
    assert.deepEqual(empty, { type: Type.PUBLISH, topic: 't', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false, id: 0 });
    // UTF-8 beyond ASCII
    const topic = 'nodes/ü/€';
    const tb = Buffer.from(topic);
    assert.equal((decodePacket(frame(0x30, Buffer.concat([Buffer.from([0, tb.length]), tb]))) as { topic: string }).topic, topic);
  });

  test('a stream split at every byte gives the same packets; several packets in one chunk', () => {
    const big = Buffer.alloc(20_000, 7);
    const stream = Buffer.concat([
      frame(0x20, [0, 0]),
      frame(0x32, Buffer.concat([Buffer.from([0, 1, 0x74, 0, 1]), big])),
      frame(0xd0, []),
      frame(0x90, [0, 2, 1]),
    ]);
    const whole = new PacketReader().push(stream);
    assert.equal(whole.length, 4);
    for (const step of [1, 2, 3, 5, 127, 128, 4096]) {
      const r = new PacketReader();
      const got = [];
      for (let i = 0; i < stream.length; i += step) got.push(...r.push(stream.subarray(i, i + step)));
      assert.deepEqual(got, whole, `chunks of ${step}`);
      assert.equal(r.buffered, 0);
    }
  });

  test('the payload is a copy: it does not pin the socket chunk', () => {
    const chunk = Buffer.concat([frame(0x30, [0, 1, 0x74, 1, 2, 3]), Buffer.alloc(60_000)]);
    const [p] = new PacketReader().push(chunk.subarray(0, 8));
    assert.ok(p !== undefined && p.type === Type.PUBLISH);
    assert.notEqual(p.payload.buffer, chunk.buffer);
  });

  test('property: any sequence of valid packets round-trips in any split', () => {
    const pub = fc.record({ topic: fc.stringMatching(/^[a-z0-9/]{1,30}$/), payload: fc.uint8Array({ maxLength: 300 }), qos: fc.constantFrom(0, 1, 2), id: fc.integer({ min: 1, max: 65_535 }), retain: fc.boolean() });
    fc.assert(fc.property(fc.array(pub, { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 64 }), (pubs, step) => {
      const bytes = Buffer.concat(pubs.map((p) => {
        const t = Buffer.from(p.topic);
        const id = p.qos > 0 ? [p.id >> 8, p.id & 0xff] : [];
        return frame(0x30 | (p.qos << 1) | (p.retain ? 1 : 0), Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, Buffer.from(id), Buffer.from(p.payload)]));
      }));
      const r = new PacketReader();
      const got = [];
      for (let i = 0; i < bytes.length; i += step) got.push(...r.push(bytes.subarray(i, i + step)));
      assert.deepEqual(got.map((g) => g.type === Type.PUBLISH ? [g.topic, [...g.payload], g.qos, g.qos > 0 ? g.id : 0, g.retain] : null),
        pubs.map((p) => [p.topic, [...p.payload], p.qos, p.qos > 0 ? p.id : 0, p.retain]));
    }));
  });
});

describe('hostile and malformed input', () => {
  test('a packet over the limit is refused from its fixed header alone, before its body', () => {
    const r = new PacketReader(1024);
    // claims 2000 bytes; only the header arrives
    assert.throws(() => r.push(Buffer.from([0x30, 0xd0, 0x0f])), /larger than the limit of 1024/);
    // the default limit is 16 MiB: the largest remaining length (256 MiB) is refused at once
    refuses([0x30, 0xff, 0xff, 0xff, 0x7f], /larger than the limit of 16777216/);
    // exactly at the limit is fine
    const atLimit = frame(0x30, Buffer.concat([Buffer.from([0, 1, 0x74]), Buffer.alloc(1024 - 3 - 3)]));
    assert.equal(atLimit.length, 1024);
    assert.equal(new PacketReader(1024).push(atLimit).length, 1);
    refuses(frame(0x30, Buffer.concat([Buffer.from([0, 1, 0x74]), Buffer.alloc(1024 - 3 - 2)])), /larger than the limit/, 1024);
  });

  test('a remaining length of five bytes', () => {
    refuses([0x30, 0x80, 0x80, 0x80, 0x80, 0x01], /longer than 4 bytes/);
    assert.throws(() => decodePacket(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01])), /longer than 4 bytes/);
  });

  test('packet types a broker never sends, reserved flags, QoS 3', () => {
    for (const first of [0x00, 0x10, 0x82, 0xa2, 0xc0, 0xe0, 0xf0]) refuses([first, 0], /not sent by a broker/);
    for (const first of [0x21, 0x41, 0x60, 0x63, 0x91, 0xb8, 0xd1]) refuses([first, 2, 0, 1], /reserved flags|PUBREL with flags/);
    refuses(frame(0x36, [0, 1, 0x74, 0, 1]), /QoS 3/);
    refuses(frame(0x38, [0, 1, 0x74]), /QoS 0 with DUP/);
  });

  test('lengths that do not add up', () => {
    refuses(frame(0x20, [0]), /CONNACK of 1 bytes/);
    refuses(frame(0x20, [0, 0, 0]), /CONNACK of 3 bytes/);
    refuses(frame(0x40, [0, 1, 2]), /of 3 bytes/);
    refuses(frame(0x40, [0]), /of 1 bytes/);
    refuses(frame(0x90, [0, 1]), /SUBACK of 2 bytes/);
    refuses(frame(0xd0, [0]), /PINGRESP of 1 bytes/);
    refuses(frame(0x30, [0]), /without a topic/);
    refuses(frame(0x30, [0, 9, 0x61]), /topic longer than the packet/);
    refuses(frame(0x32, [0, 1, 0x61, 0]), /topic longer than the packet/);
    assert.throws(() => decodePacket(Buffer.from([0x40, 2, 0])), /does not match/);
    assert.throws(() => decodePacket(Buffer.from([0x40, 2, 0, 1, 9])), /does not match/);
  });

  test('bad values: identifier 0, unknown return codes, bad topics', () => {
    refuses(frame(0x40, [0, 0]), /identifier 0/);
    refuses(frame(0x32, [0, 1, 0x74, 0, 0]), /identifier 0/);
    refuses(frame(0x20, [0, 6]), /return code 6/);
    refuses(frame(0x20, [2, 0]), /reserved acknowledge flags/);
    refuses(frame(0x20, [1, 5]), /session present/);
    refuses(frame(0x90, [0, 1, 3]), /SUBACK return code 3/);
    refuses(frame(0x30, [0, 0]), /empty topic/);
    refuses(frame(0x30, [0, 2, 0xc3, 0x28]), /not valid UTF-8/);
    refuses(frame(0x30, [0, 3, 0x61, 0x00, 0x62]), /U\+0000 or a wildcard/);
    refuses(frame(0x30, [0, 3, 0x61, 0x2f, 0x23]), /wildcard/);
    refuses(frame(0x30, [0, 1, 0x2b]), /wildcard/);
  });

  test('property: random bytes never crash the reader other than with a protocol error, nor make it buffer past its limit', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), (chunks) => {
      const r = new PacketReader(256);
      try {
        for (const c of chunks) {
          r.push(Buffer.from(c));
          assert.ok(r.buffered <= 256 + 200, `buffered ${r.buffered}`);
        }
      } catch (e) {
        assert.ok(e instanceof MqttProtocolError, String(e));
      }
    }), { numRuns: 2000 });
  });
});
