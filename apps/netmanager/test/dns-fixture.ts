/**
 * Runs an OverlayResolver on 127.0.0.1:53 (and [::1]:53) plus a fake upstream on 127.0.0.2:53
 * (named by the resolv.conf given as argv[2], the resolver's upstreams left empty),
 * for the real-client test in dns.test.ts. Only ever started inside a private network namespace
 * (never port 53 of the host). Prints `ready` when both listen; stops when stdin closes.
 */
import dgram from 'node:dgram';
import * as dnsPacket from 'dns-packet';
import { OverlayResolver } from '../src/dns.ts';

const TABLE: Record<string, { A: string[]; AAAA: string[] }> = {
  'web.test.shop.test.oak': { A: ['10.30.0.2'], AAAA: ['fdff::2'] },
  '1.web.test.shop.test.oak': { A: ['10.30.0.4'], AAAA: ['fdff::4'] },
  'db.test.shop.test.oak': { A: ['10.30.0.9'], AAAA: [] },
};

const upstream = dgram.createSocket('udp4');
upstream.on('message', (msg, rinfo) => {
  const q = dnsPacket.decode(msg);
  const question = q.questions?.[0];
  const known = question?.name.toLowerCase() === 'example.com';
  const answers = known && question?.type === 'A' ? [{ name: question.name, type: 'A' as const, ttl: 60, data: '192.0.2.1' }] : [];
  upstream.send(dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE | (known ? 0 : 3), questions: q.questions, answers }), rinfo.port, rinfo.address);
});
await new Promise<void>((res) => upstream.bind(53, '127.0.0.2', () => res()));

const log = { info: (m: string) => console.error(m), warn: (m: string) => console.error(m), error: (m: string) => console.error(m) };
const r = new OverlayResolver({ lookup: async (name, type) => TABLE[name]?.[type], upstreams: [], resolvConf: process.argv[2] ?? null, log });
await r.listen({ host: '127.0.0.1', port: 53 });
await r.listen({ host: '::1', port: 53 }).catch((e: Error) => console.error(`no IPv6 loopback: ${e.message}`));
console.log('ready');

process.stdin.resume();
process.stdin.on('end', () => {
  void r.close().then(() => upstream.close(() => process.exit(0)));
});
