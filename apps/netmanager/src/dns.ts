/**
 * The worker's resolver for its instances (issue 8, SPEC §8): answers the overlay's names
 * (`<svc>.<svcns>.<app>.<appns>.oak`, `<n>.<svc>.<svcns>.<app>.<appns>.oak`, see
 * packages/net/src/names.ts) from the NetManager's tables and forwards every other name to the
 * worker's upstream resolvers. It listens on the bridge gateway (v4 and v6), port 53, UDP and TCP.
 *
 * Packets are parsed and built with `dns-packet` only; forwarded queries and answers travel as
 * the bytes the client and the upstream sent (the client's id kept), after both were checked.
 *
 * The lookup contract (`OverlayLookup`), called only for names inside the zone that parse as
 * overlay names, with the name in lower case and without trailing dot:
 *   - resolves `string[]`: the name exists; these are its addresses of the asked family
 *     (A: IPv4, AAAA: IPv6). `[]` means "exists, but no address of this family": the answer is
 *     NOERROR without records (NODATA), which stub resolvers (musl asks A and AAAA together)
 *     need to keep the other family's answer. Invalid addresses are dropped (logged).
 *   - resolves `undefined` (or `null`): no such name: NXDOMAIN.
 *   - rejects, or takes longer than `lookupTimeoutMs`: SERVFAIL (logged, rate limited).
 * Names in the zone that are not overlay names are NXDOMAIN without a lookup (so junk names never
 * cause table queries); the zone's apex answers its SOA. Other record types of an existing name
 * are NODATA (existence is asked as `A`), ANY gets the A and AAAA records (RFC 8482 style).
 *
 * Limits (every one of them an option): a token bucket per source address (UDP over it is
 * dropped, TCP gets REFUSED); at most `maxPending` lookups + forwards in flight, a quarter of them
 * from one source (beyond: SERVFAIL); at most `maxTcpConnections` TCP connections, a quarter of them
 * from one source (beyond: closed at once), so that one noisy instance cannot starve the others; each closed after
 * `tcpIdleMs` without a query, on a malformed message or a length below a DNS header, and with at
 * most 16 queries in flight (reading pauses). UDP queries are at most 4096 bytes; malformed ones,
 * responses and port-0 sources are ignored. No amplification: a UDP answer is at most the
 * client's size (512, or its EDNS size up to 1232) and at most max(512, 10 x the query's size);
 * a bigger one is sent truncated (TC, no records), and the client retries over TCP.
 *
 * Use (the NetManager):
 *   const r = new OverlayResolver({ lookup, log, upstreams: readUpstreams(resolvConfText, { exclude: [gw, gw6] }) });
 *   await r.listen({ host: gw, port: 53 });   // retry on EADDRNOTAVAIL until the bridge has gw
 *   await r.listen({ host: gw6, port: 53 });  // likewise (an IPv6 address is unusable until DAD ends)
 *   ...; await r.close();
 */
import dgram from 'node:dgram';
import { open } from 'node:fs/promises';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, OptAnswer, Packet, Question } from 'dns-packet';
import { formatIPv4, formatIPv6, inZone, parseIPv4, parseIPv6, parseOverlayName, readUpstreams, OVERLAY_ZONE } from '@oak/net';
import type { OverlayName } from '@oak/net';

export type OverlayLookup = (name: string, type: 'A' | 'AAAA', parsed: OverlayName) => Promise<string[] | undefined | null>;

export interface ResolverLog {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export interface OverlayResolverOptions {
  /** see the header for the contract */
  lookup: OverlayLookup;
  /**
   * `ip`, `ip:port` or `[ipv6]:port` (port 53 when absent), tried in order. Empty (or absent):
   * the nameservers of `resolvConf`, read again when older than 5 s.
   */
  upstreams?: string[];
  /** the file whose nameservers are the upstreams when `upstreams` is empty; default /etc/resolv.conf; null: none */
  resolvConf?: string | null;
  log: ResolverLog;
  /** default 'oak' */
  zone?: string;
  /** TTL of the answers and of negative answers (SOA minimum), seconds; default 5 */
  ttl?: number;
  /** how long one upstream may take before the next is tried, ms; default 1500 */
  upstreamTimeoutMs?: number;
  /** how long `lookup` may take, ms; default 3000 */
  lookupTimeoutMs?: number;
  /** default 64 */
  maxTcpConnections?: number;
  /** lookups + forwards in flight; default 256 */
  maxPending?: number;
  /** lookups + forwards in flight from one source address; default maxPending / 4 */
  maxPendingPerSource?: number;
  /** TCP connections from one source address; default maxTcpConnections / 4 */
  maxTcpPerSource?: number;
  /** default 10000 */
  tcpIdleMs?: number;
  /** queries per second and burst per source address; default 200 and 400 */
  rateLimit?: { perSecond: number; burst: number };
}

export interface ResolverStats {
  queries: number;
  local: number;
  forwarded: number;
  nxdomain: number;
  servfail: number;
  malformed: number;
  rateLimited: number;
  overloaded: number;
  truncated: number;
  tcpRefused: number;
  lookupErrors: number;
  /** TCP connections open now */
  tcpOpen: number;
}

export type ResolverErrorCode = 'invalid-upstream' | 'invalid-address' | 'invalid-option' | 'closed';

export class ResolverError extends Error {
  constructor(readonly code: ResolverErrorCode, message: string, readonly hint: string) {
    super(message);
    this.name = 'ResolverError';
  }
}

interface Upstream {
  host: string;
  port: number;
  family: 4 | 6;
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
/** the opcode bits of the header's flags (dns-packet keeps them in `flags`) */
const OPCODE_MASK = 0x7800;
const RCODE_MASK = 0x000f;
const MAX_UDP_QUERY = 4096;
const EDNS_SIZE = 1232;
const AMPLIFICATION = 10;
const MAX_ANSWERS = 32;
const TCP_PIPELINE = 16;
const TCP_MAX_WRITE_BUFFER = 256 * 1024;
const RATE_BUCKETS = 4096;
const LOG_EVERY_MS = 10_000;
const HEADER = 12;
const RESOLV_CONF_TTL_MS = 5000;

function canonical(ip: string): string | undefined {
  const v4 = parseIPv4(ip);
  if (v4 !== undefined) return formatIPv4(v4);
  const v6 = parseIPv6(ip);
  return v6 === undefined ? undefined : formatIPv6(v6);
}

/** `ip`, `ip:port` or `[ipv6]:port`. */
export function parseUpstream(text: string): Upstream {
  const bad = (): never => {
    throw new ResolverError('invalid-upstream', `not an upstream resolver: ${JSON.stringify(String(text).slice(0, 80))}`,
      'use an IPv4 or IPv6 address, optionally with a port: 10.0.0.1, 10.0.0.1:53, ::1, [::1]:5353');
  };
  if (typeof text !== 'string' || text.length > 64) return bad();
  let host = text;
  let port = 53;
  const bracket = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text);
  const v4port = /^([0-9.]+):(\d{1,5})$/.exec(text);
  if (bracket) {
    host = bracket[1] as string;
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if (v4port) {
    host = v4port[1] as string;
    port = Number(v4port[2]);
  }
  const c = canonical(host);
  if (c === undefined || port < 1 || port > 65535 || (bracket && parseIPv4(host) !== undefined)) return bad();
  return { host: c, port, family: parseIPv4(c) !== undefined ? 4 : 6 };
}

function positive(name: string, v: number | undefined, dflt: number, max: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > max) {
    throw new ResolverError('invalid-option', `${name} must be a number in (0, ${max}], got ${String(v)}`, `leave ${name} out for its default (${dflt})`);
  }
  return v;
}

/** A name that dns-packet can write back as it was read (printable ASCII labels of 1..63 bytes). */
function echoable(name: string): boolean {
  if (name === '.') return true;
  if (name.length > 253) return false;
  return name.split('.').every((l) => l.length >= 1 && l.length <= 63 && /^[\x21-\x7e]+$/.test(l));
}

function sameQuestion(a: Question, b: Question): boolean {
  return a.name.toLowerCase() === b.name.toLowerCase() && a.type === b.type && (a.class ?? 'IN') === (b.class ?? 'IN');
}

interface Query {
  raw: Buffer;
  packet: DecodedPacket;
  question: Question | undefined;
  /** the client's OPT record, if any */
  opt: OptAnswer | undefined;
}

interface Bucket {
  tokens: number;
  at: number;
}

interface Bound {
  udp: dgram.Socket;
  tcp: net.Server;
  /** `host:port` we listen on: never an upstream (no forwarding loop) */
  self: string;
}

export class OverlayResolver {
  private readonly lookup: OverlayLookup;
  private readonly upstreams: Upstream[];
  private readonly resolvConf: string | null;
  private fileUpstreams: { at: number; list: Promise<Upstream[]> } | undefined;
  private readonly log: ResolverLog;
  private readonly zone: string;
  private readonly ttl: number;
  private readonly upstreamTimeoutMs: number;
  private readonly lookupTimeoutMs: number;
  private readonly maxTcp: number;
  private readonly maxPending: number;
  private readonly maxPendingPerSource: number;
  private readonly maxTcpPerSource: number;
  private readonly pendingBySource = new Map<string, number>();
  private readonly tcpBySource = new Map<string, number>();
  private readonly tcpIdleMs: number;
  private readonly rate: { perSecond: number; burst: number };
  private readonly bound: Bound[] = [];
  private readonly tcpConns = new Set<net.Socket>();
  private readonly exchanges = new Set<() => void>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly lastLog = new Map<string, { at: number; suppressed: number }>();
  private pending = 0;
  private closed = false;
  private readonly counters: Omit<ResolverStats, 'tcpOpen'> = {
    queries: 0, local: 0, forwarded: 0, nxdomain: 0, servfail: 0, malformed: 0, rateLimited: 0, overloaded: 0, truncated: 0, tcpRefused: 0, lookupErrors: 0,
  };

  constructor(opts: OverlayResolverOptions) {
    if (typeof opts.lookup !== 'function') throw new ResolverError('invalid-option', 'lookup must be a function', 'pass the NetManager table lookup');
    this.lookup = opts.lookup;
    const ups = opts.upstreams ?? [];
    if (!Array.isArray(ups) || ups.length > 16) {
      throw new ResolverError('invalid-upstream', 'upstreams must be a list of at most 16 addresses', 'use readUpstreams(resolv.conf text), or leave it empty for /etc/resolv.conf');
    }
    this.upstreams = ups.map(parseUpstream);
    this.resolvConf = opts.resolvConf === undefined ? '/etc/resolv.conf' : opts.resolvConf;
    this.log = opts.log;
    this.zone = (opts.zone ?? OVERLAY_ZONE).toLowerCase().replace(/\.$/, '');
    if (parseOverlayName(`a.b.c.d.${this.zone}`, this.zone) === undefined) {
      throw new ResolverError('invalid-option', `zone ${JSON.stringify(opts.zone)} is not a DNS name`, "leave zone out for 'oak'");
    }
    this.ttl = Math.round(positive('ttl', opts.ttl, 5, 86400));
    this.upstreamTimeoutMs = positive('upstreamTimeoutMs', opts.upstreamTimeoutMs, 1500, 60_000);
    this.lookupTimeoutMs = positive('lookupTimeoutMs', opts.lookupTimeoutMs, 3000, 60_000);
    this.maxTcp = Math.floor(positive('maxTcpConnections', opts.maxTcpConnections, 64, 100_000));
    this.maxPending = Math.floor(positive('maxPending', opts.maxPending, 256, 100_000));
    this.maxPendingPerSource = Math.floor(positive('maxPendingPerSource', opts.maxPendingPerSource, Math.max(1, Math.floor(this.maxPending / 4)), 100_000));
    this.maxTcpPerSource = Math.floor(positive('maxTcpPerSource', opts.maxTcpPerSource, Math.max(1, Math.floor(this.maxTcp / 4)), 100_000));
    this.tcpIdleMs = positive('tcpIdleMs', opts.tcpIdleMs, 10_000, 3_600_000);
    this.rate = {
      perSecond: positive('rateLimit.perSecond', opts.rateLimit?.perSecond, 200, 1e6),
      burst: positive('rateLimit.burst', opts.rateLimit?.burst, 400, 1e6),
    };
  }

  /** Counters since the start (a copy). */
  stats(): ResolverStats {
    return { ...this.counters, tcpOpen: this.tcpConns.size };
  }

  /**
   * Listens on UDP and TCP on `host`:`port` (port 0: an ephemeral port, the same for both).
   * May be called once per address (the gateway's v4 and v6). A bind error is thrown as Node's
   * own error (`code` EADDRNOTAVAIL while the address is not on the bridge yet, EADDRINUSE, ...),
   * so that the caller can retry.
   */
  async listen(addr: { host: string; port: number }): Promise<{ port: number }> {
    if (this.closed) throw new ResolverError('closed', 'the resolver is closed', 'create a new OverlayResolver');
    const family = net.isIP(addr.host);
    if (family === 0) throw new ResolverError('invalid-address', `not an IP address: ${JSON.stringify(String(addr.host).slice(0, 80))}`, 'listen on the bridge gateway address');
    if (!Number.isInteger(addr.port) || addr.port < 0 || addr.port > 65535) {
      throw new ResolverError('invalid-address', `not a port: ${String(addr.port)}`, 'use 53, or 0 for an ephemeral port in tests');
    }
    const attempts = addr.port === 0 ? 8 : 1;
    for (let i = 0; ; i++) {
      const udp = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ address: addr.host, port: addr.port, exclusive: true }, () => {
          udp.off('error', reject);
          resolve();
        });
      });
      const port = udp.address().port;
      const tcp = net.createServer({ allowHalfOpen: true }, (sock) => this.onTcp(sock));
      try {
        await new Promise<void>((resolve, reject) => {
          tcp.once('error', reject);
          tcp.listen({ host: addr.host, port, exclusive: true }, () => {
            tcp.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        udp.close();
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && i + 1 < attempts) continue;
        throw err;
      }
      udp.on('error', (err) => this.note('udp-error', 'warn', `dns: UDP socket error on ${addr.host}:${port}: ${err.message}`));
      tcp.on('error', (err) => this.note('tcp-error', 'warn', `dns: TCP server error on ${addr.host}:${port}: ${err.message}`));
      udp.on('message', (msg, rinfo) => this.onUdp(udp, msg, rinfo));
      this.bound.push({ udp, tcp, self: `${canonical(addr.host) ?? addr.host}:${port}` });
      if (this.closed) {
        await this.close();
        throw new ResolverError('closed', 'the resolver was closed while listening', 'create a new OverlayResolver');
      }
      const ups = this.upstreams.length > 0 ? this.upstreams.map((u) => `${u.host}:${u.port}`).join(', ') : this.resolvConf === null ? 'none' : `those of ${this.resolvConf}`;
      this.log.info(`dns: resolver on ${family === 6 ? `[${addr.host}]` : addr.host}:${port} (udp+tcp), zone ${this.zone}, upstreams ${ups}`);
      return { port };
    }
  }

  /** Stops listening, closes every connection and abandons the queries in flight. */
  async close(): Promise<void> {
    this.closed = true;
    for (const abort of [...this.exchanges]) abort();
    for (const s of this.tcpConns) s.destroy();
    const bound = this.bound.splice(0);
    await Promise.all(bound.map(({ udp, tcp }) => Promise.all([
      new Promise<void>((resolve) => {
        try {
          udp.close(() => resolve());
        } catch {
          resolve();
        }
      }),
      new Promise<void>((resolve) => tcp.close(() => resolve())),
    ])));
  }

  // ---------------------------------------------------------------- transports

  private onUdp(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed || rinfo.port === 0) return;
    if (msg.length < HEADER || msg.length > MAX_UDP_QUERY) {
      this.counters.malformed++;
      return;
    }
    if (!this.allow(rinfo.address)) {
      this.counters.rateLimited++;
      this.note('rate', 'warn', `dns: rate limit: dropping UDP queries from ${rinfo.address}`);
      return;
    }
    const query = this.parse(msg);
    if (!query) return;
    this.handle(query, 'udp', rinfo.address).then((res) => {
      if (!res || this.closed) return;
      const out = this.fitUdp(query, res);
      if (out) sock.send(out, rinfo.port, rinfo.address, () => {});
    }, (err: unknown) => this.note('internal', 'error', `dns: internal error: ${(err as Error).message}`));
  }

  private onTcp(sock: net.Socket): void {
    const source = sock.remoteAddress ?? '?';
    const fromSource = this.tcpBySource.get(source) ?? 0;
    if (this.closed || this.tcpConns.size >= this.maxTcp || fromSource >= this.maxTcpPerSource) {
      this.counters.tcpRefused++;
      this.note('tcp-full', 'warn', `dns: TCP connections at their limit (${this.tcpConns.size}/${this.maxTcp}, ${fromSource}/${this.maxTcpPerSource} from ${source}), closing a new one`);
      sock.destroy();
      return;
    }
    this.tcpConns.add(sock);
    this.tcpBySource.set(source, fromSource + 1);
    let buf: Buffer = Buffer.alloc(0);
    let inFlight = 0;
    sock.setTimeout(this.tcpIdleMs, () => sock.destroy());
    sock.on('error', () => {});
    sock.on('close', () => {
      if (!this.tcpConns.delete(sock)) return;
      const n = (this.tcpBySource.get(source) ?? 1) - 1;
      if (n <= 0) this.tcpBySource.delete(source);
      else this.tcpBySource.set(source, n);
    });
    // the client may half-close after its last query (allowHalfOpen): answer, then end
    let ended = false;
    const finishIfDone = (): void => {
      if (ended && inFlight === 0 && !sock.destroyed) sock.end();
    };
    sock.on('end', () => {
      ended = true;
      finishIfDone();
    });
    const drain = (): void => {
      while (!sock.destroyed && inFlight < TCP_PIPELINE && buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len < HEADER) {
          this.counters.malformed++;
          sock.destroy();
          return;
        }
        if (buf.length < 2 + len) break;
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        const query = this.parse(msg);
        if (!query) {
          sock.destroy();
          return;
        }
        inFlight++;
        const limited = !this.allow(source);
        if (limited) {
          this.counters.rateLimited++;
          this.note('rate', 'warn', `dns: rate limit: refusing TCP queries from ${source}`);
        }
        const answer = limited ? Promise.resolve(this.reply(query, RCODE.REFUSED, [], [], false)) : this.handle(query, 'tcp', source);
        answer.then((res) => {
          inFlight--;
          if (res && !sock.destroyed) {
            const len2 = Buffer.alloc(2);
            len2.writeUInt16BE(res.length);
            sock.write(Buffer.concat([len2, res]));
            if (sock.writableLength > TCP_MAX_WRITE_BUFFER) sock.destroy(); // a client that does not read
          }
          if (sock.isPaused()) sock.resume();
          drain();
        }, (err: unknown) => {
          inFlight--;
          this.note('internal', 'error', `dns: internal error: ${(err as Error).message}`);
          sock.destroy();
        });
      }
      if (inFlight >= TCP_PIPELINE) sock.pause();
      finishIfDone();
    };
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length > 2 * (2 + 65535)) {
        sock.destroy();
        return;
      }
      drain();
    });
  }

  // ---------------------------------------------------------------- queries

  /** Decodes a query; undefined (and counted) for anything that is not one. */
  private parse(raw: Buffer): Query | undefined {
    this.counters.queries++;
    let packet: DecodedPacket;
    try {
      packet = dnsPacket.decode(raw);
    } catch {
      this.counters.malformed++;
      return undefined;
    }
    if (packet.type !== 'query' || !Array.isArray(packet.questions)) {
      this.counters.malformed++;
      return undefined;
    }
    const opts = (packet.additionals ?? []).filter((a) => a.type === 'OPT') as OptAnswer[];
    const question = packet.questions.length === 1 ? packet.questions[0] : undefined;
    return { raw, packet, question, opt: opts.length === 1 ? opts[0] : undefined };
  }

  private async handle(q: Query, transport: 'udp' | 'tcp', source: string): Promise<Buffer | undefined> {
    const p = q.packet;
    if ((p.flags ?? 0) & OPCODE_MASK) return this.reply(q, RCODE.NOTIMP, [], [], false);
    const optCount = (p.additionals ?? []).filter((a) => a.type === 'OPT').length;
    if (!q.question || optCount > 1) return this.reply(q, RCODE.FORMERR, [], [], false);
    if (q.opt && q.opt.ednsVersion !== 0) return this.reply(q, RCODE.NOERROR, [], [], false, 1); // BADVERS
    if (inZone(q.question.name, this.zone)) {
      this.counters.local++;
      return this.local(q, q.question, source);
    }
    if (!this.acquire(source, 1)) return this.overloaded(q, source);
    this.counters.forwarded++;
    try {
      const res = await this.forward(q, transport);
      if (res) return res;
      this.counters.servfail++;
      this.note('upstream', 'warn', `dns: no upstream answered ${q.question.type} ${q.question.name}`);
      return this.reply(q, RCODE.SERVFAIL, [], [], false);
    } finally {
      this.release(source, 1);
    }
  }

  /** Takes `n` of the in-flight slots, globally and for the source; false when either is full. */
  private acquire(source: string, n: number): boolean {
    const mine = this.pendingBySource.get(source) ?? 0;
    if (this.pending + n > this.maxPending || mine + n > this.maxPendingPerSource) return false;
    this.pending += n;
    this.pendingBySource.set(source, mine + n);
    return true;
  }

  private release(source: string, n: number): void {
    this.pending -= n;
    const left = (this.pendingBySource.get(source) ?? n) - n;
    if (left <= 0) this.pendingBySource.delete(source);
    else this.pendingBySource.set(source, left);
  }

  private overloaded(q: Query, source: string): Buffer | undefined {
    this.counters.overloaded++;
    this.counters.servfail++;
    this.note('overload', 'warn', `dns: queries in flight at their limit (${this.pending}/${this.maxPending}, ${this.pendingBySource.get(source) ?? 0}/${this.maxPendingPerSource} from ${source}), answering SERVFAIL`);
    return this.reply(q, RCODE.SERVFAIL, [], [], false);
  }

  private soa(): Answer {
    return {
      name: this.zone, type: 'SOA', class: 'IN', ttl: this.ttl,
      data: { mname: `ns.${this.zone}`, rname: `hostmaster.${this.zone}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: this.ttl },
    };
  }

  private async local(q: Query, question: Question, source: string): Promise<Buffer | undefined> {
    if ((question.class ?? 'IN') !== 'IN' && question.class !== 'ANY') return this.reply(q, RCODE.REFUSED, [], [], true);
    const name = question.name.toLowerCase().replace(/\.$/, '');
    const qtype = question.type as string; // dns-packet also decodes 'ANY' (255), which its types leave out
    if (name === this.zone) {
      const soa = this.soa();
      return qtype === 'SOA' || qtype === 'ANY' ? this.reply(q, RCODE.NOERROR, [soa], [], true) : this.reply(q, RCODE.NOERROR, [], [soa], true);
    }
    const parsed = parseOverlayName(name, this.zone);
    if (!parsed) {
      this.counters.nxdomain++;
      return this.reply(q, RCODE.NXDOMAIN, [], [this.soa()], true);
    }
    const types: ('A' | 'AAAA')[] = qtype === 'A' || qtype === 'AAAA' ? [qtype] : qtype === 'ANY' ? ['A', 'AAAA'] : ['A'];
    if (!this.acquire(source, types.length)) return this.overloaded(q, source);
    let results: (string[] | undefined)[];
    try {
      results = await Promise.all(types.map((t) => this.lookupOne(name, t, parsed)));
    } catch (err) {
      this.counters.lookupErrors++;
      this.counters.servfail++;
      this.note('lookup', 'error', `dns: lookup of ${name} failed: ${(err as Error).message}`);
      return this.reply(q, RCODE.SERVFAIL, [], [], true);
    } finally {
      this.release(source, types.length);
    }
    if (results.every((r) => r === undefined)) {
      this.counters.nxdomain++;
      return this.reply(q, RCODE.NXDOMAIN, [], [this.soa()], true);
    }
    const answers: Answer[] = [];
    if (qtype === 'A' || qtype === 'AAAA' || qtype === 'ANY') {
      types.forEach((t, i) => {
        for (const ip of results[i] ?? []) answers.push({ name: question.name, type: t, class: 'IN', ttl: this.ttl, data: ip });
      });
    }
    return this.reply(q, RCODE.NOERROR, answers, answers.length === 0 ? [this.soa()] : [], true);
  }

  /** One lookup, checked: the valid, distinct addresses of the family (at most 32), or undefined. */
  private async lookupOne(name: string, type: 'A' | 'AAAA', parsed: OverlayName): Promise<string[] | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.lookupTimeoutMs} ms`)), this.lookupTimeoutMs);
      timer.unref(); // a lookup left hanging by close() does not hold the process
    });
    try {
      const r = await Promise.race([Promise.resolve().then(() => this.lookup(name, type, parsed)), timeout]);
      if (r === undefined || r === null) return undefined;
      if (!Array.isArray(r)) throw new Error(`lookup gave ${typeof r}, not a list of addresses`);
      const out = new Set<string>();
      for (const ip of r) {
        const c = typeof ip === 'string' ? (type === 'A' ? (parseIPv4(ip) !== undefined ? formatIPv4(parseIPv4(ip) as number) : undefined)
          : (parseIPv6(ip) !== undefined ? formatIPv6(parseIPv6(ip) as bigint) : undefined)) : undefined;
        if (c === undefined) {
          this.note('lookup-bad', 'warn', `dns: lookup of ${name} ${type} gave an invalid address ${JSON.stringify(String(ip).slice(0, 60))}, skipped`);
          continue;
        }
        out.add(c);
        if (out.size >= MAX_ANSWERS) break;
      }
      return [...out];
    } finally {
      clearTimeout(timer);
    }
  }

  /** Builds an answer to `q` (its id, question, RD; RA set; AA when authoritative; EDNS when asked). */
  private reply(q: Query, rcode: number, answers: Answer[], authorities: Answer[], aa: boolean, extendedRcode = 0, tc = false): Buffer | undefined {
    const p = q.packet;
    const flags = ((p.flags ?? 0) & (OPCODE_MASK | dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED))
      | dnsPacket.RECURSION_AVAILABLE | (aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0) | (tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | (rcode & RCODE_MASK);
    const questions = q.question && echoable(q.question.name) && p.questions?.length === 1 ? [q.question] : [];
    const out: Packet = { id: p.id ?? 0, type: 'response', flags, questions, answers, authorities, additionals: [] };
    if (q.opt) out.additionals = [{ name: '.', type: 'OPT', udpPayloadSize: EDNS_SIZE, extendedRcode, ednsVersion: 0, flags: 0, flag_do: false, options: [] }];
    try {
      return dnsPacket.encode(out);
    } catch (err) {
      this.note('encode', 'error', `dns: cannot encode an answer: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** The largest UDP answer for this query: the client's size, capped against amplification. */
  private udpLimit(q: Query): number {
    const size = q.opt ? Math.min(Math.max(q.opt.udpPayloadSize ?? 512, 512), EDNS_SIZE) : 512;
    return Math.min(size, Math.max(512, AMPLIFICATION * q.raw.length));
  }

  /** The answer as it may go back over UDP: truncated (TC, no records) when too big. */
  private fitUdp(q: Query, res: Buffer): Buffer | undefined {
    if (res.length <= this.udpLimit(q)) return res;
    this.counters.truncated++;
    let rflags = dnsPacket.RECURSION_AVAILABLE;
    let aa = false;
    try {
      const r = dnsPacket.decode(res);
      rflags = r.flags ?? rflags;
      aa = r.flag_aa;
    } catch {
      // our own answers and checked upstream answers decode; keep the defaults otherwise
    }
    const out = this.reply(q, rflags & RCODE_MASK, [], [], aa, 0, true);
    return out && out.length <= this.udpLimit(q) ? out : undefined;
  }

  // ---------------------------------------------------------------- forwarding

  private async forward(q: Query, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    let fallback: Buffer | undefined;
    for (const up of await this.currentUpstreams()) {
      if (this.closed) return undefined;
      if (this.bound.some((b) => b.self === `${up.host}:${up.port}`)) continue; // ourselves: a loop
      const res = transport === 'udp' ? await this.exchangeUdp(up, q) : await this.exchangeTcp(up, q);
      if (!res) continue;
      const rcode = (res.packet.flags ?? 0) & RCODE_MASK;
      if (rcode === RCODE.SERVFAIL || rcode === RCODE.REFUSED) {
        fallback ??= res.raw; // try the next one, keep this answer in case none does better
        continue;
      }
      return res.raw;
    }
    return fallback;
  }

  /** The configured upstreams, or those of the resolv.conf (cached for 5 s, its first 64 KiB). */
  private currentUpstreams(): Promise<Upstream[]> {
    if (this.upstreams.length > 0 || this.resolvConf === null) return Promise.resolve(this.upstreams);
    const now = Date.now();
    if (this.fileUpstreams && now - this.fileUpstreams.at < RESOLV_CONF_TTL_MS) return this.fileUpstreams.list;
    const path = this.resolvConf;
    const list = (async (): Promise<Upstream[]> => {
      let text = '';
      try {
        const fh = await open(path, 'r');
        try {
          const buf = Buffer.alloc(65536);
          const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
          text = buf.subarray(0, bytesRead).toString('utf8');
        } finally {
          await fh.close();
        }
      } catch (err) {
        this.note('resolv-conf', 'warn', `dns: cannot read ${path}: ${(err as Error).message}; no upstream for names outside .${this.zone}`);
      }
      const found = readUpstreams(text).map(parseUpstream);
      if (found.length === 0 && text !== '') this.note('resolv-conf', 'warn', `dns: no usable nameserver in ${path}`);
      return found;
    })();
    this.fileUpstreams = { at: now, list };
    return list;
  }

  /** Whether `raw` is the upstream's answer to `q`; its decoded form if so. */
  private check(raw: Buffer, q: Query): { raw: Buffer; packet: DecodedPacket } | undefined {
    let packet: DecodedPacket;
    try {
      packet = dnsPacket.decode(raw);
    } catch {
      return undefined;
    }
    if (packet.type !== 'response' || packet.id !== q.packet.id) return undefined;
    const qs = packet.questions ?? [];
    if (qs.length === 0) return ((packet.flags ?? 0) & RCODE_MASK) !== RCODE.NOERROR ? { raw, packet } : undefined;
    if (qs.length !== 1 || !q.question || !sameQuestion(qs[0] as Question, q.question)) return undefined;
    return { raw, packet };
  }

  private exchangeUdp(up: Upstream, q: Query): Promise<{ raw: Buffer; packet: DecodedPacket } | undefined> {
    return new Promise((resolve) => {
      const sock = dgram.createSocket(up.family === 6 ? 'udp6' : 'udp4');
      let done = false;
      const finish = (v: { raw: Buffer; packet: DecodedPacket } | undefined): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.exchanges.delete(abort);
        try {
          sock.close();
        } catch {
          // already closed
        }
        resolve(v);
      };
      const abort = (): void => finish(undefined);
      const timer = setTimeout(abort, this.upstreamTimeoutMs);
      this.exchanges.add(abort);
      sock.on('error', abort);
      sock.on('message', (msg, rinfo) => {
        if (canonical(rinfo.address) !== up.host || rinfo.port !== up.port) return; // not from the upstream: ignore
        const ok = this.check(msg, q);
        if (ok) finish(ok);
      });
      sock.send(q.raw, up.port, up.host, (err) => {
        if (err) abort();
      });
    });
  }

  private exchangeTcp(up: Upstream, q: Query): Promise<{ raw: Buffer; packet: DecodedPacket } | undefined> {
    return new Promise((resolve) => {
      const sock = net.connect({ host: up.host, port: up.port });
      let done = false;
      let buf = Buffer.alloc(0);
      const finish = (v: { raw: Buffer; packet: DecodedPacket } | undefined): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.exchanges.delete(abort);
        sock.destroy();
        resolve(v);
      };
      const abort = (): void => finish(undefined);
      const timer = setTimeout(abort, this.upstreamTimeoutMs);
      this.exchanges.add(abort);
      sock.on('error', abort);
      sock.on('close', abort);
      sock.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(q.raw.length);
        sock.write(Buffer.concat([len, q.raw]));
      });
      sock.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length < 2) return;
        const len = buf.readUInt16BE(0);
        if (len < HEADER) return abort();
        if (buf.length < 2 + len) return;
        finish(this.check(Buffer.from(buf.subarray(2, 2 + len)), q));
      });
    });
  }

  // ---------------------------------------------------------------- limits

  /** The source's token bucket: false when it is empty. */
  private allow(source: string): boolean {
    const now = Date.now();
    let b = this.buckets.get(source);
    if (!b) {
      if (this.buckets.size >= RATE_BUCKETS) {
        const oldest = this.buckets.keys().next().value;
        if (oldest !== undefined) this.buckets.delete(oldest);
      }
      b = { tokens: this.rate.burst, at: now };
      this.buckets.set(source, b);
    } else {
      b.tokens = Math.min(this.rate.burst, b.tokens + ((now - b.at) / 1000) * this.rate.perSecond);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Logs at most once per 10 s per kind, counting what it left out. */
  private note(kind: string, level: 'info' | 'warn' | 'error', msg: string): void {
    const now = Date.now();
    const last = this.lastLog.get(kind);
    if (last && now - last.at < LOG_EVERY_MS) {
      last.suppressed++;
      return;
    }
    const more = last && last.suppressed > 0 ? ` (${last.suppressed} similar messages left out)` : '';
    this.lastLog.set(kind, { at: now, suppressed: 0 });
    this.log[level](msg + more);
  }
}
