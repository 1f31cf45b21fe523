import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import fc from 'fast-check';
import * as dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, Packet } from 'dns-packet';
import { execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { freePort, onProcessExit, run, shortId, waitFor } from '@oak/testkit';
import type { OverlayName } from '@oak/net';
import { OverlayResolver, ResolverError, parseUpstream } from '../src/dns.ts';
import type { OverlayLookup, OverlayResolverOptions } from '../src/dns.ts';

// ------------------------------------------------------------------ helpers

interface Logged { level: string; msg: string }

function memLog(): { log: OverlayResolverOptions['log']; lines: Logged[] } {
  const lines: Logged[] = [];
  return { lines, log: { info: (msg) => lines.push({ level: 'info', msg }), warn: (msg) => lines.push({ level: 'warn', msg }), error: (msg) => lines.push({ level: 'error', msg }) } };
}

/** The tables of a small overlay: the web service (2 instances) and a v4-only db service. */
const TABLE: Record<string, { A: string[]; AAAA: string[] }> = {
  'web.test.shop.test.oak': { A: ['10.30.0.2'], AAAA: ['fdff::2'] },
  '0.web.test.shop.test.oak': { A: ['10.30.0.3'], AAAA: ['fdff::3'] },
  '1.web.test.shop.test.oak': { A: ['10.30.0.4'], AAAA: ['fdff::4'] },
  'db.test.shop.test.oak': { A: ['10.30.0.9'], AAAA: [] },
};

interface LookupCall { name: string; type: string; parsed: OverlayName }

function tableLookup(calls: LookupCall[] = []): OverlayLookup {
  return async (name, type, parsed) => {
    calls.push({ name, type, parsed });
    const e = TABLE[name];
    return e ? e[type] : undefined;
  };
}

const resolvers: OverlayResolver[] = [];
const closers: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of closers.splice(0)) await c();
  for (const r of resolvers.splice(0)) await r.close();
});

async function startResolver(over: Partial<OverlayResolverOptions> = {}): Promise<{ r: OverlayResolver; port: number; lines: Logged[]; calls: LookupCall[] }> {
  const { log, lines } = memLog();
  const calls: LookupCall[] = [];
  const r = new OverlayResolver({ lookup: tableLookup(calls), upstreams: [], resolvConf: null, log, ...over });
  resolvers.push(r);
  const { port } = await r.listen({ host: '127.0.0.1', port: 0 });
  return { r, port, lines, calls };
}

let nextId = 1;
function query(name: string, type: string, extra: Partial<Packet> = {}): Packet {
  return { type: 'query', id: nextId++ & 0xffff, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: type as 'A', class: 'IN' }], ...extra };
}

/** One UDP exchange; resolves with the first answer carrying `id` (other datagrams are ignored). */
function udpAsk(port: number, packet: Packet | Buffer, id?: number, timeoutMs = 3000): Promise<{ packet: DecodedPacket; size: number }> {
  const buf = Buffer.isBuffer(packet) ? packet : dnsPacket.encode(packet);
  const want = id ?? (Buffer.isBuffer(packet) ? undefined : packet.id);
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error('no UDP answer'));
    }, timeoutMs);
    s.on('message', (msg) => {
      const p = dnsPacket.decode(msg);
      if (want !== undefined && p.id !== want) return;
      clearTimeout(timer);
      s.close();
      resolve({ packet: p, size: msg.length });
    });
    s.send(buf, port, '127.0.0.1');
  });
}

function frame(b: Buffer): Buffer {
  const l = Buffer.alloc(2);
  l.writeUInt16BE(b.length);
  return Buffer.concat([l, b]);
}

/** Connects and collects framed answers; `closed` resolves when the server closes the connection. */
function tcpClient(port: number): Promise<{ sock: net.Socket; answers: DecodedPacket[]; closed: Promise<void>; next: (n: number) => Promise<DecodedPacket[]> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const answers: DecodedPacket[] = [];
    let buf = Buffer.alloc(0);
    const closed = new Promise<void>((res) => sock.on('close', () => res()));
    sock.on('error', () => {});
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        try {
          answers.push(dnsPacket.decode(buf.subarray(2, 2 + len)));
        } catch {
          answers.push({ id: -1, type: 'response', flags: 0 } as unknown as DecodedPacket); // counted, checked by no test
        }
        buf = buf.subarray(2 + len);
      }
    });
    sock.once('connect', () => resolve({ sock, answers, closed, next: (n) => waitFor(() => answers.length >= n && answers.slice(0, n), { timeoutMs: 3000, message: `${n} TCP answers` }) }));
    sock.once('error', reject);
  });
}

async function tcpAsk(port: number, packet: Packet): Promise<DecodedPacket> {
  const c = await tcpClient(port);
  c.sock.write(frame(dnsPacket.encode(packet)));
  const [a] = await c.next(1);
  c.sock.destroy();
  return a as DecodedPacket;
}

const rcode = (p: DecodedPacket): string => (p as DecodedPacket & { rcode: string }).rcode;
const data = (p: DecodedPacket): unknown[] => (p.answers ?? []).map((a) => (a as { data: unknown }).data);

/** A fake upstream on 127.0.0.1 (UDP and TCP, one port): answers `example.com` A with 192.0.2.1, `big.example.com` TXT with ~1 KB, NXDOMAIN else. */
async function fakeUpstream(opts: { silent?: boolean; servfail?: boolean } = {}): Promise<{ port: number; seen: DecodedPacket[] }> {
  const seen: DecodedPacket[] = [];
  const answerFor = (msg: Buffer): Buffer => {
    try {
      return answerOrThrow(msg);
    } catch {
      return Buffer.from(msg.subarray(0, 2)); // the fuzz test sends names dns-packet cannot write back: a junk answer
    }
  };
  const answerOrThrow = (msg: Buffer): Buffer => {
    const q = dnsPacket.decode(msg);
    seen.push(q);
    const question = q.questions?.[0];
    const answers: Answer[] = [];
    let flags = dnsPacket.RECURSION_AVAILABLE | (q.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
    if (opts.servfail) flags |= 2;
    else if (question?.name === 'example.com' && question.type === 'A') answers.push({ name: 'example.com', type: 'A', ttl: 60, data: '192.0.2.1' });
    else if (question?.name === 'big.example.com') answers.push({ name: 'big.example.com', type: 'TXT', ttl: 60, data: Array.from({ length: 8 }, () => 'x'.repeat(200)) });
    else flags |= 3;
    return dnsPacket.encode({ type: 'response', id: q.id, flags, questions: q.questions, answers });
  };
  // UDP and TCP on one ephemeral port: another process may hold the TCP one, then try another
  for (let attempt = 0; ; attempt++) {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((res) => udp.bind(0, '127.0.0.1', () => res()));
    const port = udp.address().port;
    udp.on('message', (msg, rinfo) => {
      if (opts.silent) return;
      udp.send(answerFor(msg), rinfo.port, rinfo.address);
    });
    const tcp = net.createServer((s) => {
      let buf = Buffer.alloc(0);
      s.on('error', () => {});
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0) && !opts.silent) s.write(frame(answerFor(buf.subarray(2, 2 + buf.readUInt16BE(0)))));
      });
    });
    const listening = await new Promise<boolean>((res) => {
      tcp.once('error', () => res(false));
      tcp.listen(port, '127.0.0.1', () => res(true));
    });
    if (!listening) {
      udp.close();
      if (attempt < 8) continue;
      throw new Error('no port free for UDP and TCP both');
    }
    closers.push(() => new Promise<void>((res) => udp.close(() => tcp.close(() => res()))));
    return { port, seen };
  }
}

// ------------------------------------------------------------------ overlay names

test('A and AAAA for a service name and an instance name: authoritative, TTL 5, the client id', async () => {
  const { port, calls } = await startResolver();
  const q = query('web.test.shop.test.oak', 'A');
  const { packet: a } = await udpAsk(port, q);
  assert.equal(a.id, q.id);
  assert.equal(a.type, 'response');
  assert.equal(rcode(a), 'NOERROR');
  assert.equal(a.flag_aa, true);
  assert.equal(a.flag_rd, true);
  assert.equal(a.flag_ra, true);
  assert.deepEqual(data(a), ['10.30.0.2']);
  assert.equal((a.answers?.[0] as { ttl: number }).ttl, 5);
  assert.deepEqual(a.questions, q.questions);
  assert.deepEqual(data((await udpAsk(port, query('web.test.shop.test.oak', 'AAAA'))).packet), ['fdff::2']);
  assert.deepEqual(data((await udpAsk(port, query('1.web.test.shop.test.oak', 'A'))).packet), ['10.30.0.4']);
  assert.deepEqual(data((await udpAsk(port, query('0.web.test.shop.test.oak.', 'AAAA'))).packet), ['fdff::3']);
  // the lookup gets the parsed name
  const inst = calls.find((c) => c.name === '1.web.test.shop.test.oak');
  assert.deepEqual(inst?.parsed, { job_name: 'shop.test.web.test', instance_number: 1, service: { app: 'shop', appns: 'test', svc: 'web', svcns: 'test' } });
  // ANY gets both families
  assert.deepEqual(data((await udpAsk(port, query('web.test.shop.test.oak', 'ANY'))).packet).sort(), ['10.30.0.2', 'fdff::2']);
});

test('NXDOMAIN, NODATA, other types, the apex, junk names without a lookup', async () => {
  const { port, calls } = await startResolver();
  const nx = (await udpAsk(port, query('nope.test.shop.test.oak', 'A'))).packet;
  assert.equal(rcode(nx), 'NXDOMAIN');
  assert.equal(nx.flag_aa, true);
  assert.equal(nx.authorities?.[0]?.type, 'SOA', 'negative answers carry the SOA');
  assert.equal(rcode((await udpAsk(port, query('7.web.test.shop.test.oak', 'AAAA'))).packet), 'NXDOMAIN');
  // exists without an IPv6 address: NODATA, not NXDOMAIN (musl asks A and AAAA together)
  const nodata = (await udpAsk(port, query('db.test.shop.test.oak', 'AAAA'))).packet;
  assert.equal(rcode(nodata), 'NOERROR');
  assert.equal(nodata.answers?.length, 0);
  assert.equal(nodata.authorities?.[0]?.type, 'SOA');
  // another type of an existing name: NODATA; of a missing one: NXDOMAIN
  const mx = (await udpAsk(port, query('web.test.shop.test.oak', 'MX'))).packet;
  assert.equal(rcode(mx), 'NOERROR');
  assert.equal(mx.answers?.length, 0);
  assert.equal(rcode((await udpAsk(port, query('nope.test.shop.test.oak', 'TXT'))).packet), 'NXDOMAIN');
  // the apex
  const soa = (await udpAsk(port, query('oak', 'SOA'))).packet;
  assert.equal(rcode(soa), 'NOERROR');
  assert.equal(soa.answers?.[0]?.type, 'SOA');
  // junk inside the zone: NXDOMAIN and no lookup (no table query for garbage)
  const before = calls.length;
  for (const junk of ['foo.oak', 'a.b.c.oak', 'x.web.test.shop.test.oak', '01.web.test.shop.test.oak', 'we_b.test.shop.test.oak', '2000000.web.test.shop.test.oak']) {
    assert.equal(rcode((await udpAsk(port, query(junk, 'A'))).packet), 'NXDOMAIN', junk);
  }
  assert.equal(calls.length, before);
  // a class other than IN
  assert.equal(rcode((await udpAsk(port, { ...query('web.test.shop.test.oak', 'A'), questions: [{ name: 'web.test.shop.test.oak', type: 'A', class: 'CH' }] })).packet), 'REFUSED');
});

test('names are case-insensitive: the question comes back as asked, the lookup sees lower case', async () => {
  const { port, calls } = await startResolver();
  const q = query('WeB.TeSt.Shop.TEST.OAK', 'A');
  const { packet } = await udpAsk(port, q);
  assert.deepEqual(data(packet), ['10.30.0.2']);
  assert.equal(packet.questions?.[0]?.name, 'WeB.TeSt.Shop.TEST.OAK');
  assert.equal(packet.answers?.[0]?.name, 'WeB.TeSt.Shop.TEST.OAK');
  assert.equal(calls.at(-1)?.name, 'web.test.shop.test.oak');
  assert.deepEqual(data((await udpAsk(port, query('1.WEB.test.shop.test.Oak.', 'AAAA'))).packet), ['fdff::4']);
});

test('TCP: a query, two pipelined queries on one connection, and an answer too big for UDP', async () => {
  const many = Array.from({ length: 32 }, (_, i) => `fdff::${(i + 16).toString(16)}`);
  const { port } = await startResolver({ lookup: async (name, type) => (name === 'big.test.shop.test.oak' ? (type === 'AAAA' ? many : []) : TABLE[name]?.[type]) });
  const a = await tcpAsk(port, query('big.test.shop.test.oak', 'AAAA'));
  assert.equal(a.answers?.length, 32, 'TCP carries the whole answer');
  const c = await tcpClient(port);
  const q1 = query('web.test.shop.test.oak', 'A');
  const q2 = query('1.web.test.shop.test.oak', 'AAAA');
  c.sock.write(Buffer.concat([frame(dnsPacket.encode(q1)), frame(dnsPacket.encode(q2))]));
  const got = await c.next(2);
  assert.deepEqual(new Set(got.map((p) => `${p.id}:${String(data(p)[0])}`)), new Set([`${q1.id}:10.30.0.2`, `${q2.id}:fdff::4`]));
  c.sock.destroy();
  // over UDP the same answer (32 x 28 bytes) is truncated: TC, no records, within 512 bytes
  const u = await udpAsk(port, query('big.test.shop.test.oak', 'AAAA'));
  assert.equal(u.packet.flag_tc, true);
  assert.equal(u.packet.answers?.length, 0);
  assert.ok(u.size <= 512);
  // with EDNS (1232) it fits... but not beyond 10x the query (amplification cap): still TC
  const e = await udpAsk(port, query('big.test.shop.test.oak', 'AAAA', { additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 4096, flags: 0, options: [] } as unknown as Answer] }));
  assert.ok(e.size <= 512, `${e.size} bytes for a query of about 50`);
  assert.equal(e.packet.flag_tc, true);
  assert.equal(e.packet.additionals?.[0]?.type, 'OPT', 'an EDNS query gets an OPT back');
});

test('EDNS: the OPT record comes back with 1232; an unknown EDNS version is BADVERS; two OPTs are FORMERR', async () => {
  const { port } = await startResolver();
  const opt = (v: number) => ({ name: '.', type: 'OPT', udpPayloadSize: 4096, ednsVersion: v, flags: 0, options: [] }) as unknown as Answer;
  const a = (await udpAsk(port, query('web.test.shop.test.oak', 'A', { additionals: [opt(0)] }))).packet;
  assert.deepEqual(data(a), ['10.30.0.2']);
  assert.equal((a.additionals?.[0] as { udpPayloadSize: number }).udpPayloadSize, 1232);
  const bad = (await udpAsk(port, query('web.test.shop.test.oak', 'A', { additionals: [opt(1)] }))).packet;
  assert.equal((bad.additionals?.[0] as { extendedRcode: number }).extendedRcode, 1, 'BADVERS (16) is extended rcode 1');
  assert.equal(bad.answers?.length, 0);
  assert.equal(rcode((await udpAsk(port, query('web.test.shop.test.oak', 'A', { additionals: [opt(0), opt(0)] }))).packet), 'FORMERR');
  // not a QUERY opcode: NOTIMP
  assert.equal(rcode((await udpAsk(port, query('web.test.shop.test.oak', 'A', { flags: 2 << 11 }))).packet), 'NOTIMP');
  // no question: FORMERR
  assert.equal(rcode((await udpAsk(port, { type: 'query', id: 4242, questions: [] })).packet), 'FORMERR');
});

// ------------------------------------------------------------------ forwarding

test('names outside the zone go to the upstream (UDP and TCP), the answer keeps the client id', async () => {
  const up = await fakeUpstream();
  const { port } = await startResolver({ upstreams: [`127.0.0.1:${up.port}`] });
  const q = query('example.com', 'A');
  const { packet } = await udpAsk(port, q);
  assert.equal(packet.id, q.id);
  assert.deepEqual(data(packet), ['192.0.2.1']);
  assert.equal(packet.flag_aa, false);
  assert.equal(up.seen.at(-1)?.questions?.[0]?.name, 'example.com');
  assert.equal(rcode((await udpAsk(port, query('missing.example.com', 'A'))).packet), 'NXDOMAIN');
  const n = up.seen.length;
  const t = await tcpAsk(port, query('example.com', 'A'));
  assert.deepEqual(data(t), ['192.0.2.1']);
  assert.equal(up.seen.length, n + 1);
  // a big upstream answer over UDP is sent truncated (then the client asks over TCP, and gets it whole)
  const big = await udpAsk(port, query('big.example.com', 'TXT'));
  assert.equal(big.packet.flag_tc, true);
  assert.ok(big.size <= 512);
  assert.equal((await tcpAsk(port, query('big.example.com', 'TXT'))).answers?.length, 1);
});

test('a silent upstream: SERVFAIL after the timeout; the next upstream is tried; SERVFAIL upstream falls back', async () => {
  const silent = await fakeUpstream({ silent: true });
  const good = await fakeUpstream();
  const failing = await fakeUpstream({ servfail: true });
  const { port: p1, lines } = await startResolver({ upstreams: [`127.0.0.1:${silent.port}`], upstreamTimeoutMs: 200 });
  const t0 = Date.now();
  assert.equal(rcode((await udpAsk(p1, query('example.com', 'A'))).packet), 'SERVFAIL');
  assert.ok(Date.now() - t0 >= 190);
  assert.ok(lines.some((l) => l.level === 'warn' && /no upstream answered/.test(l.msg)));
  assert.equal(rcode(await tcpAsk(p1, query('example.com', 'A'))), 'SERVFAIL');
  const { port: p2 } = await startResolver({ upstreams: [`127.0.0.1:${silent.port}`, `127.0.0.1:${failing.port}`, `127.0.0.1:${good.port}`], upstreamTimeoutMs: 200 });
  assert.deepEqual(data((await udpAsk(p2, query('example.com', 'A'))).packet), ['192.0.2.1']);
  assert.equal(failing.seen.length, 1);
  const { port: p3 } = await startResolver({ upstreams: [`127.0.0.1:${failing.port}`] });
  assert.equal(rcode((await udpAsk(p3, query('example.com', 'A'))).packet), 'SERVFAIL', 'the upstream SERVFAIL is relayed when none does better');
  const { port: p4 } = await startResolver({ upstreams: [], resolvConf: null });
  assert.equal(rcode((await udpAsk(p4, query('example.com', 'A'))).packet), 'SERVFAIL', 'no upstream at all');
  // no upstreams given and a resolv.conf that cannot be read: SERVFAIL, and a warning
  const { port: p5, lines: l5 } = await startResolver({ upstreams: [], resolvConf: '/nonexistent/h3-resolv.conf' });
  assert.equal(rcode((await udpAsk(p5, query('example.com', 'A'))).packet), 'SERVFAIL');
  assert.ok(l5.some((l) => /cannot read \/nonexistent\/h3-resolv.conf/.test(l.msg)));
});

test('a spoofed answer (wrong id or question) from the upstream port is ignored', async () => {
  const udp = dgram.createSocket('udp4');
  await new Promise<void>((res) => udp.bind(0, '127.0.0.1', () => res()));
  closers.push(() => new Promise<void>((res) => udp.close(() => res())));
  udp.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg);
    const wrongId = dnsPacket.encode({ type: 'response', id: ((q.id ?? 0) + 1) & 0xffff, questions: q.questions, answers: [{ name: 'example.com', type: 'A', data: '6.6.6.6' }] });
    const wrongQ = dnsPacket.encode({ type: 'response', id: q.id, questions: [{ name: 'evil.com', type: 'A' }], answers: [{ name: 'evil.com', type: 'A', data: '6.6.6.6' }] });
    const right = dnsPacket.encode({ type: 'response', id: q.id, questions: q.questions, answers: [{ name: 'example.com', type: 'A', data: '192.0.2.7' }] });
    for (const b of [Buffer.from('junk'), wrongId, wrongQ, right]) udp.send(b, rinfo.port, rinfo.address);
  });
  const { port } = await startResolver({ upstreams: [`127.0.0.1:${udp.address().port}`] });
  assert.deepEqual(data((await udpAsk(port, query('example.com', 'A'))).packet), ['192.0.2.7']);
});

test('the resolver never forwards to itself (a resolv.conf naming the resolver)', async () => {
  let r: OverlayResolver | undefined;
  let port = 0;
  for (let attempt = 0; !r; attempt++) {
    // a port free for TCP a moment ago; another test process may take it (UDP or TCP): try again
    port = await freePort();
    const c = new OverlayResolver({ lookup: tableLookup(), upstreams: [`127.0.0.1:${port}`], log: memLog().log });
    resolvers.push(c);
    try {
      await c.listen({ host: '127.0.0.1', port });
      r = c;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 8) throw err;
    }
  }
  assert.equal(rcode((await udpAsk(port, query('example.com', 'A'))).packet), 'SERVFAIL');
  assert.equal(r.stats().queries, 1, 'no loop');
});

test('TCP: a client that half-closes after its query still gets the answer', async () => {
  const { port } = await startResolver();
  const c = await tcpClient(port);
  c.sock.end(frame(dnsPacket.encode(query('web.test.shop.test.oak', 'A'))));
  const [a] = await c.next(1);
  assert.deepEqual(data(a as DecodedPacket), ['10.30.0.2']);
  await c.closed;
});

// ------------------------------------------------------------------ hostile input

test('garbage and truncated UDP packets are ignored; the resolver keeps answering', async () => {
  const { r, port } = await startResolver();
  const good = dnsPacket.encode(query('web.test.shop.test.oak', 'A'));
  const s = dgram.createSocket('udp4');
  const hostile = [
    Buffer.alloc(0), Buffer.from([1]), Buffer.alloc(11), good.subarray(0, 12 + 5), good.subarray(0, good.length - 1),
    Buffer.alloc(5000, 0x41), Buffer.from('GET / HTTP/1.1\r\n\r\n'),
    // a response, not a query (reflection loops)
    dnsPacket.encode({ type: 'response', id: 9, questions: [{ name: 'web.test.shop.test.oak', type: 'A' }] }),
    // a compression pointer loop in the name
    Buffer.concat([Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([0xc0, 12, 0, 1, 0, 1])]),
    // qdcount 65535 with one question
    Buffer.concat([Buffer.from([0, 2, 1, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0]), good.subarray(12)]),
  ];
  for (let i = 0; i < 300; i++) hostile.push(Buffer.from(Array.from({ length: 1 + (i * 7919) % 600 }, (_, j) => (i * 31 + j * 17) & 0xff)));
  await Promise.all(hostile.map((h) => new Promise<void>((res) => s.send(h, port, '127.0.0.1', () => res()))));
  await waitFor(() => r.stats().queries + r.stats().malformed >= hostile.length - 2, { message: 'the hostile packets arrived' });
  s.close();
  // a name whose labels are not ASCII: NXDOMAIN in the zone, without echoing what cannot be written back
  const weird = Buffer.from(dnsPacket.encode(query('abc.web.test.shop.test.oak', 'A')));
  weird[13] = 0xff;
  const w = await udpAsk(port, weird, dnsPacket.decode(weird).id);
  assert.equal(rcode(w.packet), 'NXDOMAIN');
  assert.equal(w.packet.questions?.length, 0);
  const { packet } = await udpAsk(port, dnsPacket.decode(good) as Packet);
  assert.deepEqual(data(packet), ['10.30.0.2']);
  assert.ok(r.stats().malformed >= 8, JSON.stringify(r.stats()));
});

test('fuzz: mutated queries over UDP and TCP never crash the resolver nor make it answer big', async () => {
  const up = await fakeUpstream();
  const { r, port, lines } = await startResolver({ upstreams: [`127.0.0.1:${up.port}`], rateLimit: { perSecond: 1e6, burst: 1e6 }, upstreamTimeoutMs: 300 });
  const seeds = [
    query('web.test.shop.test.oak', 'A'), query('1.web.test.shop.test.oak', 'AAAA'), query('example.com', 'A'), query('oak', 'SOA'),
    query('web.test.shop.test.oak', 'A', { additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 4096, flags: 0, options: [] } as unknown as Answer] }),
  ].map((p) => dnsPacket.encode(p));
  const mutation = fc.record({
    seed: fc.integer({ min: 0, max: seeds.length - 1 }),
    flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
    cut: fc.option(fc.nat(), { nil: undefined }),
    tail: fc.uint8Array({ maxLength: 40 }),
  }).map(({ seed, flips, cut, tail }) => {
    const b = Buffer.from(seeds[seed] as Buffer);
    for (const [at, v] of flips) b[at % b.length] = v;
    const cutB = cut === undefined ? b : b.subarray(0, cut % (b.length + 1));
    return Buffer.concat([cutB, Buffer.from(tail)]);
  });
  const samples = fc.sample(mutation, { numRuns: 1500, seed: Number(process.env.OAK_FUZZ_SEED ?? 20261201) });
  const s = dgram.createSocket('udp4');
  let biggest = 0;
  s.on('message', (m) => {
    biggest = Math.max(biggest, m.length);
  });
  await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
  for (let i = 0; i < samples.length; i += 100) {
    const batch = samples.slice(i, i + 100);
    await Promise.all(batch.map((b) => new Promise<void>((res) => s.send(b, port, '127.0.0.1', () => res()))));
    await waitFor(() => r.stats().queries + r.stats().malformed >= i + 50, { message: `fuzz batch ${i} seen` });
  }
  // the same over TCP, one connection per 50 (a malformed one closes its connection)
  for (let i = 0; i < 300; i += 50) {
    const c = await tcpClient(port);
    c.sock.write(Buffer.concat(samples.slice(i, i + 50).filter((b) => b.length >= 1).map(frame)));
    c.sock.end();
    await c.closed;
  }
  s.close();
  assert.ok(biggest <= 512, `UDP answers stay within 512 bytes (biggest ${biggest})`);
  assert.deepEqual(data((await udpAsk(port, query('web.test.shop.test.oak', 'A'))).packet), ['10.30.0.2']);
  assert.deepEqual(data(await tcpAsk(port, query('example.com', 'A'))), ['192.0.2.1']);
  assert.equal(lines.filter((l) => /internal error/.test(l.msg)).length, 0, JSON.stringify(lines.slice(0, 5)));
  assert.ok(r.stats().queries > 500 && r.stats().local > 20 && r.stats().forwarded > 5, JSON.stringify(r.stats()));
});

test('TCP hostile input: a huge length prefix (idle close), a length below a header, garbage, a client that never reads', async () => {
  const { r, port } = await startResolver({ tcpIdleMs: 300 });
  // 0xffff announced, 10 bytes sent: the connection waits, then closes when idle
  const a = await tcpClient(port);
  a.sock.write(Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.alloc(10)]));
  const t0 = Date.now();
  await a.closed;
  assert.ok(Date.now() - t0 >= 250);
  // a length below a DNS header: closed at once
  const b = await tcpClient(port);
  b.sock.write(Buffer.from([0, 3, 1, 2, 3]));
  await b.closed;
  // 64 KiB of garbage in a valid frame: closed
  const c = await tcpClient(port);
  c.sock.write(Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.alloc(0xffff, 0x41)]));
  await c.closed;
  // an idle connection without a byte: closed too
  const d = await tcpClient(port);
  await d.closed;
  // the server still answers
  assert.deepEqual(data(await tcpAsk(port, query('web.test.shop.test.oak', 'A'))), ['10.30.0.2']);
  // a client that sends many queries and never reads: the server stops reading / closes, no crash
  const e = await tcpClient(port);
  e.sock.pause();
  const q = frame(dnsPacket.encode(query('web.test.shop.test.oak', 'A')));
  const burst = Buffer.concat(Array.from({ length: 2000 }, () => q));
  e.sock.write(burst);
  await waitFor(() => r.stats().tcpOpen === 0, { message: 'the server closed the connection' });
  e.sock.destroy();
  assert.deepEqual(data(await tcpAsk(port, query('1.web.test.shop.test.oak', 'A'))), ['10.30.0.4']);
  assert.ok(r.stats().malformed >= 2);
});

test('too many TCP connections: beyond the limit a new one is closed at once; a slot frees on close', async () => {
  const { r, port } = await startResolver({ maxTcpConnections: 3, maxTcpPerSource: 3 });
  const open = await Promise.all([tcpClient(port), tcpClient(port), tcpClient(port)]);
  await waitFor(() => true);
  const extra = await tcpClient(port);
  await extra.closed;
  assert.ok(r.stats().tcpRefused >= 1);
  open[0]?.sock.destroy();
  await open[0]?.closed;
  await waitFor(async () => {
    try {
      return (await tcpAsk(port, query('web.test.shop.test.oak', 'A'))).answers?.length === 1;
    } catch {
      return false;
    }
  }, { message: 'a TCP answer once a slot is free' });
  for (const o of open) o.sock.destroy();
});

test('one source cannot take every TCP connection nor every slot in flight', async () => {
  const { r, port } = await startResolver({ maxTcpConnections: 8, maxTcpPerSource: 2 });
  const mine = await Promise.all([tcpClient(port), tcpClient(port)]);
  const third = await tcpClient(port);
  await third.closed;
  assert.equal(r.stats().tcpRefused, 1);
  // another source (127.0.0.2) still gets a connection and an answer
  const other = await new Promise<net.Socket>((res, rej) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }, () => res(s));
    s.once('error', rej);
  });
  const got = new Promise<DecodedPacket>((res) => other.once('data', (d: Buffer) => res(dnsPacket.decode(d.subarray(2)))));
  other.write(frame(dnsPacket.encode(query('web.test.shop.test.oak', 'A'))));
  assert.deepEqual(data(await got), ['10.30.0.2']);
  other.destroy();
  for (const m of mine) m.sock.destroy();

  let release: () => void = () => {};
  const gate = new Promise<void>((res) => { release = res; });
  const { r: r2, port: p2 } = await startResolver({
    maxPending: 8,
    maxPendingPerSource: 2,
    lookup: async (name, type) => {
      if (name.startsWith('slow.')) await gate;
      return TABLE[name]?.[type] ?? ['10.30.0.8'];
    },
  });
  const slow = [udpAsk(p2, query('slow.test.shop.test.oak', 'A')), udpAsk(p2, query('slow.test.shop.test.oak', 'A'))];
  await waitFor(() => r2.stats().local >= 2);
  assert.equal(rcode((await udpAsk(p2, query('web.test.shop.test.oak', 'A'))).packet), 'SERVFAIL', 'this source is at its limit');
  const s2 = dgram.createSocket('udp4');
  await new Promise<void>((res) => s2.bind(0, '127.0.0.2', () => res()));
  const fromOther = await new Promise<DecodedPacket>((res) => {
    s2.on('message', (m) => res(dnsPacket.decode(m)));
    s2.send(dnsPacket.encode(query('web.test.shop.test.oak', 'A')), p2, '127.0.0.1');
  });
  s2.close();
  assert.deepEqual(data(fromOther), ['10.30.0.2'], 'another source is answered meanwhile');
  release();
  await Promise.all(slow);
  assert.deepEqual(data((await udpAsk(p2, query('web.test.shop.test.oak', 'A'))).packet), ['10.30.0.2'], 'and this one again once its queries finished');
});

test('a flood from one source: the rate limit drops the excess, others and later queries are answered', async () => {
  const { r, port, lines } = await startResolver({ rateLimit: { perSecond: 50, burst: 20 } });
  const s = dgram.createSocket('udp4');
  let answered = 0;
  s.on('message', () => answered++);
  await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
  const q = dnsPacket.encode(query('web.test.shop.test.oak', 'A'));
  const seen = (): number => r.stats().queries + r.stats().rateLimited;
  const t0 = Date.now();
  for (let round = 0; round < 10; round++) {
    // rounds of 100, so that the socket buffers (not the resolver) do not drop most of them
    const before = seen();
    await Promise.all(Array.from({ length: 100 }, () => new Promise<void>((res) => s.send(q, port, '127.0.0.1', () => res()))));
    await waitFor(() => seen() >= before + 50, { message: `flood round ${round} seen` });
  }
  await waitFor(() => answered >= 20, { message: 'the burst answered' });
  // another source (127.0.0.2, loopback) is answered while 127.0.0.1 is limited
  const other = dgram.createSocket('udp4');
  await new Promise<void>((res) => other.bind(0, '127.0.0.2', () => res()));
  const oq = query('web.test.shop.test.oak', 'A');
  const otherAnswer = await new Promise<DecodedPacket>((res) => {
    other.on('message', (m) => res(dnsPacket.decode(m)));
    other.send(dnsPacket.encode(oq), port, '127.0.0.1');
  });
  other.close();
  assert.deepEqual(data(otherAnswer), ['10.30.0.2']);
  assert.ok(r.stats().rateLimited >= 400, JSON.stringify(r.stats()));
  // at most the burst plus what the bucket refilled meanwhile (50/s)
  assert.ok(answered <= 20 + Math.ceil((50 * (Date.now() - t0)) / 1000) + 5, `answered ${answered} in ${Date.now() - t0} ms`);
  assert.ok(lines.some((l) => /rate limit/.test(l.msg)));
  assert.equal(lines.filter((l) => /rate limit/.test(l.msg)).length, 1, 'the rate-limit warning itself is rate limited');
  s.close();
  // the bucket refills: the same source is answered again
  await waitFor(async () => {
    try {
      return (await udpAsk(port, query('web.test.shop.test.oak', 'A'), undefined, 500)).packet.answers?.length === 1;
    } catch {
      return false;
    }
  }, { message: 'answered again after the flood' });
  // TCP from a limited source gets REFUSED rather than silence
  const { port: p2 } = await startResolver({ rateLimit: { perSecond: 0.001, burst: 1 } });
  const c = await tcpClient(p2);
  c.sock.write(Buffer.concat([frame(dnsPacket.encode(query('web.test.shop.test.oak', 'A'))), frame(dnsPacket.encode(query('web.test.shop.test.oak', 'A')))]));
  const got = await c.next(2);
  assert.deepEqual(got.map(rcode).sort(), ['NOERROR', 'REFUSED']);
  c.sock.destroy();
});

test('a lookup that throws, hangs or returns junk: SERVFAIL (logged), invalid addresses dropped', async () => {
  const { port, lines } = await startResolver({
    lookupTimeoutMs: 200,
    lookup: async (name, type) => {
      if (name.startsWith('boom.')) throw new Error('table exploded');
      if (name.startsWith('hang.')) return new Promise<never>(() => {});
      if (name.startsWith('junk.')) return 'nope' as unknown as string[];
      if (name.startsWith('mixed.')) return type === 'A' ? ['10.30.0.5', 'not an ip', '10.30.0.5', 'fdff::1', '010.1.1.1'] : ['10.1.1.1', 'FDFF::0:7'];
      return TABLE[name]?.[type];
    },
  });
  assert.equal(rcode((await udpAsk(port, query('boom.test.shop.test.oak', 'A'))).packet), 'SERVFAIL');
  assert.ok(lines.some((l) => l.level === 'error' && /boom\.test\.shop\.test\.oak.*table exploded/.test(l.msg)), JSON.stringify(lines));
  assert.equal(rcode((await udpAsk(port, query('hang.test.shop.test.oak', 'AAAA'))).packet), 'SERVFAIL');
  assert.equal(rcode((await udpAsk(port, query('junk.test.shop.test.oak', 'A'))).packet), 'SERVFAIL');
  assert.deepEqual(data((await udpAsk(port, query('mixed.test.shop.test.oak', 'A'))).packet), ['10.30.0.5']);
  assert.deepEqual(data((await udpAsk(port, query('mixed.test.shop.test.oak', 'AAAA'))).packet), ['fdff::7']);
  assert.deepEqual(data((await udpAsk(port, query('web.test.shop.test.oak', 'A'))).packet), ['10.30.0.2']);
});

test('too many queries in flight: SERVFAIL beyond maxPending, answered again once they finish', async () => {
  let release: () => void = () => {};
  const gate = new Promise<void>((res) => { release = res; });
  const { r, port } = await startResolver({
    maxPending: 2,
    maxPendingPerSource: 2,
    lookup: async (name, type) => {
      if (name.startsWith('slow.')) await gate;
      return TABLE[name]?.[type] ?? ['10.30.0.8'];
    },
  });
  const slow = [udpAsk(port, query('slow.test.shop.test.oak', 'A')), udpAsk(port, query('slow.test.shop.test.oak', 'A'))];
  await waitFor(() => r.stats().local >= 2);
  assert.equal(rcode((await udpAsk(port, query('web.test.shop.test.oak', 'A'))).packet), 'SERVFAIL');
  assert.ok(r.stats().overloaded >= 1);
  release();
  for (const s of await Promise.all(slow)) assert.deepEqual(data(s.packet), ['10.30.0.8']);
  assert.deepEqual(data((await udpAsk(port, query('web.test.shop.test.oak', 'A'))).packet), ['10.30.0.2']);
});

// ------------------------------------------------------------------ listen, options

test('listen: the same ephemeral port for UDP and TCP, bind errors keep their code, close frees the port', async () => {
  const { r, port } = await startResolver();
  assert.deepEqual(data((await udpAsk(port, query('web.test.shop.test.oak', 'A'))).packet), ['10.30.0.2']);
  assert.deepEqual(data(await tcpAsk(port, query('web.test.shop.test.oak', 'A'))), ['10.30.0.2']);
  const other = new OverlayResolver({ lookup: tableLookup(), upstreams: [], log: memLog().log });
  resolvers.push(other);
  await assert.rejects(other.listen({ host: '127.0.0.1', port }), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE');
  // an address that is not on this machine (yet): EADDRNOTAVAIL, so the NetManager retries later
  await assert.rejects(other.listen({ host: '192.0.2.53', port: 0 }), (e: NodeJS.ErrnoException) => e.code === 'EADDRNOTAVAIL');
  await assert.rejects(other.listen({ host: 'localhost', port: 0 }), (e: unknown) => e instanceof ResolverError && e.code === 'invalid-address');
  await assert.rejects(other.listen({ host: '127.0.0.1', port: 70000 }), (e: unknown) => e instanceof ResolverError && e.code === 'invalid-address');
  // IPv6 loopback too, when the machine has it
  const v6 = await other.listen({ host: '::1', port: 0 }).catch((e: NodeJS.ErrnoException) => e);
  if (!(v6 instanceof Error)) {
    const s = dgram.createSocket('udp6');
    const answer = await new Promise<DecodedPacket>((res) => {
      s.on('message', (m) => res(dnsPacket.decode(m)));
      s.send(dnsPacket.encode(query('web.test.shop.test.oak', 'AAAA')), v6.port, '::1');
    });
    s.close();
    assert.deepEqual(data(answer), ['fdff::2']);
  } else {
    assert.equal((v6 as NodeJS.ErrnoException).code, 'EADDRNOTAVAIL');
  }
  await r.close();
  const again = new OverlayResolver({ lookup: tableLookup(), upstreams: [], log: memLog().log });
  resolvers.push(again);
  assert.deepEqual(await again.listen({ host: '127.0.0.1', port }), { port }, 'the port is free again after close');
  await assert.rejects(r.listen({ host: '127.0.0.1', port: 0 }), (e: unknown) => e instanceof ResolverError && e.code === 'closed');
});

test('options and upstreams are checked', () => {
  assert.deepEqual(parseUpstream('10.0.0.1'), { host: '10.0.0.1', port: 53, family: 4 });
  assert.deepEqual(parseUpstream('10.0.0.1:5353'), { host: '10.0.0.1', port: 5353, family: 4 });
  assert.deepEqual(parseUpstream('2001:DB8::1'), { host: '2001:db8::1', port: 53, family: 6 });
  assert.deepEqual(parseUpstream('[::1]:5353'), { host: '::1', port: 5353, family: 6 });
  for (const bad of ['', 'example.com', '10.0.0.1:0', '10.0.0.1:70000', '[10.0.0.1]:53', '::1:53:x', '1.2.3', 'x'.repeat(1000), '[::1]x']) {
    assert.throws(() => parseUpstream(bad), (e: unknown) => e instanceof ResolverError && e.code === 'invalid-upstream', bad);
  }
  const base = { lookup: tableLookup(), upstreams: [], log: memLog().log };
  assert.throws(() => new OverlayResolver({ ...base, upstreams: ['nope'] }), (e: unknown) => e instanceof ResolverError && e.code === 'invalid-upstream');
  assert.throws(() => new OverlayResolver({ ...base, ttl: -1 }), (e: unknown) => e instanceof ResolverError && e.code === 'invalid-option');
  assert.throws(() => new OverlayResolver({ ...base, zone: 'bad zone' }), (e: unknown) => e instanceof ResolverError && e.code === 'invalid-option');
  assert.throws(() => new OverlayResolver({ ...base, maxPending: Number.NaN }), (e: unknown) => e instanceof ResolverError && e.code === 'invalid-option');
});

// ------------------------------------------------------------------ real clients

test('real clients in a private network namespace: busybox nslookup and glibc getaddrinfo (getent)', async () => {
  const ns = `h3-dns-${shortId()}`;
  const etc = `/etc/netns/${ns}`;
  const cleanup = async (): Promise<void> => {
    await run('ip', ['netns', 'del', ns], { check: false });
    await rm(etc, { recursive: true, force: true });
  };
  const off = onProcessExit(() => {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 10_000 });
    } catch {
      // already gone
    }
    rmSync(etc, { recursive: true, force: true });
  });
  closers.push(async () => {
    await cleanup();
    off();
  });
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  // `ip netns exec` puts this file over /etc/resolv.conf inside the namespace
  await mkdir(etc, { recursive: true });
  await writeFile(`${etc}/resolv.conf`, 'nameserver 127.0.0.1\noptions timeout:2 attempts:1\n');
  const fixture = fileURLToPath(new URL('./dns-fixture.ts', import.meta.url));
  // the resolver's upstream comes from a resolv.conf (upstreams left empty), as in the NetManager
  await writeFile(`${etc}/upstream.conf`, '# the fake upstream\nnameserver 127.0.0.2\n');
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', fixture, `${etc}/upstream.conf`], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
  closers.unshift(() => new Promise<void>((res) => {
    if (child.exitCode !== null) return res();
    child.once('exit', () => res());
    child.stdin.end();
    setTimeout(() => child.kill('SIGKILL'), 3000).unref();
  }));
  await waitFor(() => out.includes('ready') || child.exitCode !== null, { timeoutMs: 20_000, message: 'the resolver in the namespace' });
  assert.ok(out.includes('ready'), err);
  const inNs = (cmd: string, ...args: string[]) => run('ip', ['netns', 'exec', ns, cmd, ...args], { check: false, timeoutMs: 15_000 });

  const svc = await inNs('busybox', 'nslookup', 'web.test.shop.test.oak', '127.0.0.1');
  assert.match(svc.stdout, /10\.30\.0\.2/, svc.stdout + svc.stderr);
  assert.match(svc.stdout, /fdff::2/, svc.stdout + svc.stderr);
  const nx = await inNs('busybox', 'nslookup', 'nope.test.shop.test.oak', '127.0.0.1');
  assert.match(nx.stdout + nx.stderr, /NXDOMAIN/);
  const fwd = await inNs('busybox', 'nslookup', 'example.com', '127.0.0.1');
  assert.match(fwd.stdout, /192\.0\.2\.1/, fwd.stdout + fwd.stderr);

  // glibc's stub resolver (A and AAAA in parallel), through /etc/resolv.conf of the namespace
  const both = await inNs('getent', 'ahosts', '1.WEB.Test.shop.test.oak');
  assert.equal(both.code, 0, both.stderr);
  assert.match(both.stdout, /10\.30\.0\.4/);
  assert.match(both.stdout, /fdff::4/);
  const v4only = await inNs('getent', 'ahosts', 'db.test.shop.test.oak');
  assert.equal(v4only.code, 0, 'NODATA for AAAA keeps the A answer');
  assert.match(v4only.stdout, /10\.30\.0\.9/);
  // (ahosts, not ahostsv4: with only a loopback, AI_ADDRCONFIG would leave IPv4 out)
  assert.equal((await inNs('getent', 'ahosts', 'example.com')).stdout.split(/\s+/)[0], '192.0.2.1');
  assert.equal((await inNs('getent', 'ahosts', 'nope.test.shop.test.oak')).code, 2, 'getent: not found');
});
