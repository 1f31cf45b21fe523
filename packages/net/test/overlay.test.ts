import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  desiredPeerState, diffPeerState, gatewayOf, gatewayOf6, parseKernelState, serviceTable, tagOf, tunnelDevice, vtepMac,
} from '../src/index.ts';
import type { PeerState } from '../src/index.ts';

const own = { subnet: '10.18.0.0/26', subnet_v6: 'fdff:18::/64', host_ip: '192.0.2.1', host_port: 50103 };
const peerB = { worker_id: 'b', subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64', host_ip: '192.0.2.2', host_port: 50104 };
const peerC = { worker_id: 'c', subnet: '10.18.0.128/26', subnet_v6: null, host_ip: '198.51.100.3', host_port: 50103 };
const self = { worker_id: 'a', subnet: own.subnet, subnet_v6: own.subnet_v6, host_ip: own.host_ip, host_port: own.host_port };

test('names, MAC and gateways derive from the namespace and the subnet', () => {
  assert.equal(tunnelDevice('oak'), 'oakx0');
  assert.equal(serviceTable('oak'), 'oakn');
  assert.equal(tunnelDevice('test-1'), `oakx${tagOf('test-1')}`);
  assert.equal(serviceTable('test-1'), `oakn_${tagOf('test-1')}`);
  assert.ok(tunnelDevice('x'.repeat(63)).length <= 15);
  assert.equal(vtepMac('10.18.0.64/26'), '02:0a:12:00:40:1a');
  assert.equal(vtepMac('10.18.0.0/26'), '02:0a:12:00:00:1a');
  assert.notEqual(vtepMac('10.18.0.0/26'), vtepMac('10.18.0.0/25'));
  for (const bad of ['10.18.0.1/26', 'fdff::/64', 'nonsense', '']) assert.throws(() => vtepMac(bad));
  assert.equal(gatewayOf('10.18.0.64/26'), '10.18.0.65');
  assert.equal(gatewayOf6('fdff:18:0:1::/64'), 'fdff:18:0:1::1');
  assert.throws(() => gatewayOf('10.18.0.1/32'), /no room|host bits/);
  assert.throws(() => gatewayOf6('fdff::1/128'), /no room/);
  assert.throws(() => gatewayOf6('10.0.0.0/8'));
});

test('property: vtepMac is a locally administered unicast MAC, distinct per subnet', () => {
  const seen = new Map<string, string>();
  fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 8, max: 30 }), (ip, prefix) => {
    const net = prefix === 0 ? 0 : (ip & ((0xffffffff << (32 - prefix)) >>> 0)) >>> 0;
    const cidr = `${net >>> 24}.${(net >>> 16) & 255}.${(net >>> 8) & 255}.${net & 255}/${prefix}`;
    const mac = vtepMac(cidr);
    const first = parseInt(mac.slice(0, 2), 16);
    assert.equal(first & 1, 0, 'unicast');
    assert.equal(first & 2, 2, 'locally administered');
    const other = seen.get(mac);
    assert.ok(other === undefined || other === cidr, `${cidr} and ${other} share ${mac}`);
    seen.set(mac, cidr);
  }), { numRuns: 2000 });
});

test('desired state: route, neighbour and fdb per peer, IPv6 when given; ourselves skipped; order-independent', () => {
  const d = desiredPeerState(own, [peerC, self, peerB]);
  assert.deepEqual(d.problems, []);
  assert.deepEqual(d.accepted, ['b', 'c']);
  assert.deepEqual(d.state, {
    routes: [
      { dst: '10.18.0.64/26', via: '10.18.0.65' }, { dst: 'fdff:18:0:1::/64', via: 'fdff:18:0:1::1' },
      { dst: '10.18.0.128/26', via: '10.18.0.129' },
    ],
    neighs: [
      { dst: '10.18.0.65', lladdr: '02:0a:12:00:40:1a' }, { dst: 'fdff:18:0:1::1', lladdr: '02:0a:12:00:40:1a' },
      { dst: '10.18.0.129', lladdr: '02:0a:12:00:80:1a' },
    ],
    fdb: [{ mac: '02:0a:12:00:40:1a', dst: '192.0.2.2', port: 50104 }, { mac: '02:0a:12:00:80:1a', dst: '198.51.100.3', port: 50103 }],
  });
  assert.deepEqual(desiredPeerState(own, [self, peerB, peerC]), d);
});

test('hostile peers are refused with a reason, the others go on', () => {
  const bad: unknown[] = [
    null, 42, [], {},
    { ...peerB, worker_id: '' }, { ...peerB, worker_id: 'x\n' }, { ...peerB, worker_id: 'x'.repeat(201) },
    { ...peerB, worker_id: 'o1', subnet: '10.18.0.0/25' },
    { ...peerB, worker_id: 'o2', subnet: '10.18.0.0/26', host_ip: '192.0.2.99' },
    { ...peerB, worker_id: 'o3', subnet: '10.18.0.32/27' },
    { ...peerB, worker_id: 'o4', subnet_v6: 'fdff:18::/48', subnet: '10.18.1.0/26' },
    { ...peerB, worker_id: 's1', subnet: '10.18.1.1/26' }, { ...peerB, worker_id: 's2', subnet: 'nonsense' },
    { ...peerB, worker_id: 's3', subnet: '10.0.0.0/8' }, { ...peerB, worker_id: 's4', subnet: 5 },
    { ...peerB, worker_id: 's5', subnet: 'x'.repeat(1 << 20) },
    { ...peerB, worker_id: 'h1', subnet: '10.18.2.0/26', host_ip: 'not-an-ip' },
    { ...peerB, worker_id: 'h2', subnet: '10.18.2.0/26', host_ip: '0.0.0.0' },
    { ...peerB, worker_id: 'h3', subnet: '10.18.2.0/26', host_ip: '224.0.0.1' },
    { ...peerB, worker_id: 'h4', subnet: '10.18.2.0/26', host_ip: 'ff02::1' },
    { ...peerB, worker_id: 'h5', subnet: '10.18.2.0/26', host_ip: '1.2.3.4; reboot' },
    { ...peerB, worker_id: 'h6', subnet: '10.18.2.0/26', host_ip: 7 },
    { ...peerB, worker_id: 'h7', subnet: '10.18.2.0/26', host_ip: '2001:db8::7' },
    { ...peerB, worker_id: 'p1', subnet: '10.18.2.0/26', host_port: 0 },
    { ...peerB, worker_id: 'p2', subnet: '10.18.2.0/26', host_port: 65536 },
    { ...peerB, worker_id: 'p3', subnet: '10.18.2.0/26', host_port: '50103' },
    { ...peerB, worker_id: 'p4', subnet: '10.18.2.0/26', host_port: 1.5 },
    { ...peerB, worker_id: 'v1', subnet: '10.18.2.0/26', subnet_v6: 'fdff:18:0:1::1/64' },
    { ...peerB, worker_id: 'v2', subnet: '10.18.2.0/26', subnet_v6: '10.18.0.0/26' },
    { ...peerB, worker_id: 'v3', subnet: '10.18.2.0/26', subnet_v6: 'fdff:18:0:1::/32' },
    { ...peerB, worker_id: 'v4', subnet: '10.18.2.0/26', subnet_v6: 'ff00::/64' },
    { ...peerB, worker_id: 'v5', subnet: '10.18.2.0/26', subnet_v6: 'fdff:18:0:1::/64' },
  ];
  const d = desiredPeerState(own, [peerB, ...bad]);
  assert.deepEqual(d.accepted, ['b']);
  assert.equal(d.problems.length, bad.length, d.problems.join('\n'));
  assert.ok(d.problems.every((p) => p.length < 400), 'reasons are short');
  assert.ok(d.problems.some((p) => /o1: subnet 10\.18\.0\.0\/25 overlaps 10\.18\.0\.0\/26 of this worker/.test(p)), d.problems.join('\n'));
  assert.ok(d.problems.some((p) => /h1: host_ip "not-an-ip" is not an IP address/.test(p)));
  assert.ok(d.problems.some((p) => /h7: host_ip 2001:db8::7 is IPv6 but this worker's tunnel endpoint is IPv4/.test(p)));
  const v6own = desiredPeerState({ ...own, host_ip: '2001:db8::1' }, [{ ...peerB, host_ip: '2001:DB8:0::2' }]);
  assert.deepEqual(v6own.state.fdb, [{ mac: '02:0a:12:00:40:1a', dst: '2001:db8::2', port: 50104 }], 'an IPv6 underlay works the same');
  assert.ok(d.problems.some((p) => /v5: subnet_v6 fdff:18:0:1::\/64 overlaps .* of peer b/.test(p)));
  assert.ok(d.problems.some((p) => /o2: subnet 10\.18\.0\.0\/26 overlaps/.test(p)), 'another endpoint claiming our subnet is refused');
  // a second peer on the same subnet: the first in worker-id order wins
  const two = desiredPeerState(own, [{ ...peerB, worker_id: 'z' }, peerB]);
  assert.deepEqual(two.accepted, ['b']);
  assert.match(two.problems[0] ?? '', /peer z: subnet 10\.18\.0\.64\/26 overlaps 10\.18\.0\.64\/26 of peer b/);
  assert.deepEqual(desiredPeerState(own, [peerB, peerB]).problems, ['peer b: listed twice, the first entry is used']);
  assert.deepEqual(desiredPeerState(own, 'x' as unknown as unknown[]).problems, ['peers is not a list']);
  assert.throws(() => desiredPeerState({ subnet: 'bad' }, []));
});

const IP_ROUTE4 = '[{"dst":"10.18.0.64/26","gateway":"10.18.0.65","flags":["onlink"]},{"dst":"10.18.9.0/26","gateway":"10.18.9.1","flags":["onlink"]}]';
const IP_ROUTE6 = '[{"dst":"fdff:18:0:1::/64","gateway":"fdff:18:0:1::1","metric":1024,"flags":["onlink"],"pref":"medium"},{"dst":"fe80::/64","protocol":"kernel","metric":256,"flags":[],"pref":"medium"}]';
const IP_NEIGH = '[{"dst":"10.18.0.65","lladdr":"02:0A:12:00:40:1A","state":["PERMANENT"]},{"dst":"fdff:18:0:1::1","lladdr":"02:0a:12:00:40:1a","state":["PERMANENT"]},{"dst":"10.18.9.1","lladdr":"02:0a:12:09:00:1a","state":["STALE"]}]';
const FDB = '[{"mac":"02:0a:12:00:40:1a","dst":"192.0.2.2","port":50104,"flags":["self"],"state":"permanent"},{"mac":"02:0a:12:09:00:1a","dst":"192.0.2.9","flags":["self"],"state":"permanent"}]';

test('kernel state parsing: ip -j / bridge -j output, kernel routes and non-permanent neighbours left out', () => {
  const k = parseKernelState({ routes: [IP_ROUTE4, IP_ROUTE6], neighs: [IP_NEIGH], fdb: FDB }, 50103);
  assert.deepEqual(k.routes, [
    { dst: '10.18.0.64/26', via: '10.18.0.65' }, { dst: '10.18.9.0/26', via: '10.18.9.1' }, { dst: 'fdff:18:0:1::/64', via: 'fdff:18:0:1::1' },
  ]);
  assert.deepEqual(k.neighs, [
    { dst: '10.18.0.65', lladdr: '02:0a:12:00:40:1a' }, { dst: 'fdff:18:0:1::1', lladdr: '02:0a:12:00:40:1a' }, { dst: '10.18.9.1', lladdr: '' },
  ]);
  assert.deepEqual(k.fdb, [{ mac: '02:0a:12:00:40:1a', dst: '192.0.2.2', port: 50104 }, { mac: '02:0a:12:09:00:1a', dst: '192.0.2.9', port: 50103 }]);
  assert.deepEqual(parseKernelState({ routes: ['', '[]'], neighs: [''], fdb: '' }, 1), { routes: [], neighs: [], fdb: [] });
  assert.throws(() => parseKernelState({ routes: ['not json'] }, 1), /not JSON/);
  assert.throws(() => parseKernelState({ fdb: '{"a":1}' }, 1), /not a JSON list/);
  const junk = parseKernelState({ routes: ['[1,null,{"dst":"x","gateway":"y"},{"dst":"10.0.0.0/99","gateway":"10.0.0.1"}]'], neighs: ['[{"dst":5}]'], fdb: '[{"mac":"zz"}]' }, 1);
  assert.deepEqual(junk, { routes: [], neighs: [], fdb: [] });
});

test('diff: only what differs; removed peers deleted; applying the result gives an empty diff', () => {
  const want = desiredPeerState(own, [self, peerB, peerC]).state;
  const current = parseKernelState({ routes: [IP_ROUTE4, IP_ROUTE6], neighs: [IP_NEIGH], fdb: FDB }, 50103);
  const cmds = diffPeerState(current, want, 'oakx0');
  assert.deepEqual(cmds.ip, [
    'route del 10.18.9.0/26 dev oakx0',
    'neigh del 10.18.9.1 dev oakx0',
    'neigh replace 10.18.0.129 lladdr 02:0a:12:00:80:1a dev oakx0 nud permanent',
    'route replace 10.18.0.128/26 via 10.18.0.129 dev oakx0 onlink',
  ]);
  assert.deepEqual(cmds.bridge, [
    'fdb del 02:0a:12:09:00:1a dev oakx0',
    'fdb replace 02:0a:12:00:80:1a dev oakx0 dst 198.51.100.3 port 50103 self permanent',
  ]);
  assert.deepEqual(diffPeerState(want, want, 'oakx0'), { ip: [], bridge: [] });
  const moved: PeerState = { ...want, fdb: want.fdb.map((f) => (f.mac === '02:0a:12:00:40:1a' ? { ...f, dst: '192.0.2.77' } : f)) };
  assert.deepEqual(diffPeerState(moved, want, 'oakx0').bridge, ['fdb replace 02:0a:12:00:40:1a dev oakx0 dst 192.0.2.2 port 50104 self permanent']);
  const doubled: PeerState = { ...want, fdb: [...want.fdb, { mac: '02:0a:12:00:40:1a', dst: '192.0.2.78', port: 50104 }] };
  assert.deepEqual(diffPeerState(doubled, want, 'oakx0').bridge, [
    'fdb del 02:0a:12:00:40:1a dev oakx0', 'fdb replace 02:0a:12:00:40:1a dev oakx0 dst 192.0.2.2 port 50104 self permanent',
  ]);
  const all = diffPeerState(want, { routes: [], neighs: [], fdb: [] }, 'oakx0');
  assert.equal(all.ip.length, 6);
  assert.ok(all.ip.every((l) => / del /.test(` ${l}`)));
  for (const bad of ['', 'a b', 'x'.repeat(16), 'oak;x']) assert.throws(() => diffPeerState(want, want, bad), /bad device/);
});

test('property: diff(current, desired) applied to current yields desired (as sets)', () => {
  const subnets = ['10.18.0.64/26', '10.18.0.128/26', '10.18.0.192/26', '10.18.1.0/26', '10.18.1.64/26'];
  const peerArb = fc.record({ s: fc.nat(subnets.length - 1), h: fc.integer({ min: 2, max: 9 }), p: fc.integer({ min: 1, max: 3 }) });
  fc.assert(fc.property(fc.array(peerArb, { maxLength: 6 }), fc.array(peerArb, { maxLength: 6 }), (a, b) => {
    const mk = (l: typeof a) => l.map((x, i) => ({ worker_id: `w${i}`, subnet: subnets[x.s] as string, host_ip: `192.0.2.${x.h}`, host_port: x.p }));
    const cur = desiredPeerState(own, mk(a)).state;
    const want = desiredPeerState(own, mk(b)).state;
    const cmds = diffPeerState(cur, want, 'oakx0');
    const routes = new Map(cur.routes.map((r) => [r.dst, r.via]));
    for (const l of cmds.ip) {
      const w = l.split(' ');
      if (w[0] === 'route' && w[1] === 'del') routes.delete(w[2] as string);
      if (w[0] === 'route' && w[1] === 'replace') routes.set(w[2] as string, w[4] as string);
    }
    assert.deepEqual([...routes].sort(), want.routes.map((r) => [r.dst, r.via]).sort());
    const fdb = new Map(cur.fdb.map((f) => [f.mac, `${f.dst}:${f.port}`]));
    for (const l of cmds.bridge) {
      const w = l.split(' ');
      if (w[1] === 'del') fdb.delete(w[2] as string);
      if (w[1] === 'replace') fdb.set(w[2] as string, `${w[6]}:${w[8]}`);
    }
    assert.deepEqual([...fdb].sort(), want.fdb.map((f) => [f.mac, `${f.dst}:${f.port}`]).sort());
  }), { numRuns: 300 });
});
