import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { serviceRuleset, serviceTableDelete, trapAddress, TRAP_COMMENT } from '../src/index.ts';
import type { DesiredService } from '../src/index.ts';

const opts = { table: 'oakn', bridge: 'oak0', subnet: '10.18.0.0/26', subnet_v6: 'fdff:18::/64' };
const svc = (over: Partial<DesiredService> = {}): DesiredService => ({
  job_name: 'app.ns.svc.ns',
  service_ip: '10.30.0.10', service_ip_v6: 'fdff::10', closest_ip: '10.30.0.11', closest_ip_v6: 'fdff::11',
  closest: { nsip: '10.18.0.3', nsip_v6: 'fdff:18::3' },
  instances: [
    { instance_number: 1, nsip: '10.18.0.67', nsip_v6: 'fdff:18:0:1::3', instance_ip: '10.30.0.21', instance_ip_v6: 'fdff::21' },
    { instance_number: 0, nsip: '10.18.0.3', nsip_v6: 'fdff:18::3', instance_ip: '10.30.0.20', instance_ip_v6: 'fdff::20' },
  ],
  ...over,
});

test('rule set: atomic replace, round robin by instance number, closest and instance maps, hooks, hairpin, trap', () => {
  const r = serviceRuleset([svc()], opts);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.programmed, ['app.ns.svc.ns']);
  const t = r.text;
  assert.ok(t.startsWith('table inet oakn\ndelete table inet oakn\ntable inet oakn {\n'));
  assert.match(t, /chain rr4_0 \{\n {4}dnat ip to numgen inc mod 2 map \{ 0 : 10\.18\.0\.3, 1 : 10\.18\.0\.67 \} comment "app\.ns\.svc\.ns"/);
  assert.match(t, /chain rr6_0 \{\n {4}dnat ip6 to numgen inc mod 2 map \{ 0 : fdff:18::3, 1 : fdff:18:0:1::3 \}/);
  assert.match(t, /type ipv4_addr : verdict\n {4}elements = \{ 10\.30\.0\.10 : jump rr4_0 \}/);
  assert.match(t, /type ipv6_addr : verdict\n {4}elements = \{ fdff::10 : jump rr6_0 \}/);
  assert.match(t, /chain services \{\n {4}ip daddr vmap @rr4\n {4}ip6 daddr vmap @rr6\n/);
  assert.match(t, /elements = \{ 10\.30\.0\.11 : 10\.18\.0\.3, 10\.30\.0\.20 : 10\.18\.0\.3, 10\.30\.0\.21 : 10\.18\.0\.67 \}/);
  assert.match(t, /elements = \{ fdff::11 : fdff:18::3, fdff::20 : fdff:18::3, fdff::21 : fdff:18:0:1::3 \}/);
  assert.match(t, /type nat hook prerouting priority dstnat; policy accept;\n {4}iifname "oak0" jump services/);
  assert.match(t, /type nat hook output priority -100; policy accept;\n {4}jump services/);
  assert.match(t, /oifname "oak0" ct status dnat ip saddr 10\.18\.0\.0\/26 ip daddr 10\.18\.0\.0\/26 masquerade/);
  assert.match(t, /oifname "oak0" ct status dnat ip6 saddr fdff:18::\/64 ip6 daddr fdff:18::\/64 masquerade/);
  assert.match(t, /type filter hook prerouting priority 0; policy accept;/);
  assert.match(t, /iifname "oak0" ip daddr 10\.30\.0\.0\/16 limit rate 20\/second meta nftrace set 1/);
  assert.match(t, new RegExp(`iifname "oak0" ip6 daddr fdff::/64 counter drop comment "${TRAP_COMMENT}"`));
  assert.equal(serviceRuleset([svc()], opts).text, t, 'deterministic');
  assert.equal(serviceRuleset([svc({ instances: [...svc().instances].reverse() })], opts).text, t, 'independent of the order');
  const pools = serviceRuleset([], { ...opts, subnet_v6: null, virtualPools: { v4: '10.40.0.0/16', v6: 'fd00:40::/64' } }).text;
  assert.match(pools, /ip daddr 10\.40\.0\.0\/16 limit/);
  assert.match(pools, /ip6 daddr fd00:40::\/64 counter drop/);
  assert.doesNotMatch(pools, /ip6 saddr/);
  assert.equal(serviceTableDelete('oakn_abc123'), 'table inet oakn_abc123\ndelete table inet oakn_abc123\n');
  assert.throws(() => serviceTableDelete('x; flush ruleset'), /bad table/);
});

test('no healthy instance: no round-robin rule (the trap catches it); no closest target: no closest entry', () => {
  const r = serviceRuleset([svc({ instances: [], closest: null })], opts);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.programmed, []);
  assert.doesNotMatch(r.text, /numgen|elements/);
  const v4only = serviceRuleset([svc({ instances: [{ instance_number: 0, nsip: '10.18.0.3' }], closest: { nsip: '10.18.0.3' } })], opts);
  assert.match(v4only.text, /dnat ip to numgen inc mod 1 map \{ 0 : 10\.18\.0\.3 \}/);
  assert.doesNotMatch(v4only.text, /fdff::10|rr6_/);
});

test('a second service on the same address is refused naming the owner; bad addresses refuse the service', () => {
  const other = svc({ job_name: 'b.other', service_ip: '10.30.0.10', service_ip_v6: 'fdff::99', closest_ip: null, closest_ip_v6: null, instances: [] });
  const r = serviceRuleset([other, svc()], opts);
  assert.deepEqual(r.programmed, ['app.ns.svc.ns']);
  assert.equal(r.problems.length, 1);
  assert.match(r.problems[0] as string, /service b\.other refused: service_ip 10\.30\.0\.10 is already taken by service app\.ns\.svc\.ns/);
  const instClash = svc({ job_name: 'c', service_ip: '10.30.0.50', service_ip_v6: null, closest_ip: null, closest_ip_v6: null, closest: null, instances: [{ instance_number: 0, nsip: '10.18.0.9', instance_ip: '10.30.0.21' }] });
  assert.match(serviceRuleset([svc(), instClash], opts).problems.join('\n'), /instance_ip of instance 0 10\.30\.0\.21 is already taken by instance_ip of instance 1 of service app\.ns\.svc\.ns/);
  const cases: [Partial<DesiredService>, RegExp][] = [
    [{ service_ip: 'fdff::1' }, /service_ip "fdff::1" is not an IPv4 address/],
    [{ service_ip_v6: '10.30.0.1' }, /service_ip_v6 "10\.30\.0\.1" is not an IPv6 address/],
    [{ service_ip: '10.18.0.5' }, /lies in this worker's subnet/],
    [{ service_ip_v6: 'fdff:18::5' }, /lies in this worker's subnet/],
    [{ service_ip: '127.0.0.1' }, /cannot be a virtual address/],
    [{ service_ip: '224.1.1.1' }, /cannot be a virtual address/],
    [{ service_ip: '0.0.0.0' }, /cannot be a virtual address/],
    [{ service_ip_v6: 'ff02::1' }, /cannot be a virtual address/],
    [{ service_ip_v6: 'fe80::1' }, /cannot be a virtual address/],
    [{ service_ip: '10.30.0.10; flush ruleset' }, /not an IPv4 address/],
    [{ service_ip: 'x'.repeat(1 << 20) }, /not an IPv4 address/],
    [{ closest_ip: '10.30.0.10' }, /closest_ip 10\.30\.0\.10 is already taken by service app/],
    [{ instances: 'many' as unknown as [] }, /instances is not a list/],
    [{ instances: Array.from({ length: 5000 }, (_, i) => ({ instance_number: i, nsip: '10.18.0.3' })) }, /more than 4096/],
  ];
  for (const [over, why] of cases) {
    const res = serviceRuleset([svc(over)], opts);
    assert.deepEqual(res.programmed, [], JSON.stringify(over).slice(0, 80));
    assert.match(res.problems.join('\n'), why, JSON.stringify(over).slice(0, 80));
    assert.doesNotMatch(res.text, /flush ruleset|numgen/);
  }
  for (const job of ['', 'a\nb', 'x'.repeat(256), 5 as unknown as string]) {
    assert.match(serviceRuleset([svc({ job_name: job })], opts).problems.join(''), /job name .* is not 1\.\.255 printable characters/);
  }
  assert.match(serviceRuleset([svc(), svc()], opts).problems.join(''), /listed twice/);
  assert.match(serviceRuleset('x' as unknown as DesiredService[], opts).problems.join(''), /not a list/);
});

test('bad targets drop only that instance; comments cannot break out', () => {
  const r = serviceRuleset([svc({
    job_name: 'a"b\\c\n',
    instances: [
      { instance_number: 0, nsip: '10.18.0.3', nsip_v6: 'nonsense' },
      { instance_number: 1, nsip: 'fdff:18::4' },
      { instance_number: 2, nsip: '10.18.0.5 } ; flush ruleset' },
      { instance_number: 3, nsip: '10.18.0.6' },
      { instance_number: 3, nsip: '10.18.0.7' },
      { instance_number: -1, nsip: '10.18.0.8' },
      null as never,
    ],
  })], opts);
  assert.match(r.problems.join('\n'), /job name/, 'a control character in the job name refuses it');
  const ok = serviceRuleset([svc({
    job_name: 'a"b\\c',
    instances: [
      { instance_number: 0, nsip: '10.18.0.3', nsip_v6: 'nonsense' },
      { instance_number: 1, nsip: 'fdff:18::4' },
      { instance_number: 2, nsip: '10.18.0.5 } ; flush ruleset' },
      { instance_number: 3, nsip: '10.18.0.6' },
      { instance_number: 3, nsip: '10.18.0.7' },
      { instance_number: -1, nsip: '10.18.0.8' },
      null as never,
    ],
  })], opts);
  assert.deepEqual(ok.programmed, ['a"b\\c']);
  assert.match(ok.text, /dnat ip to numgen inc mod 2 map \{ 0 : 10\.18\.0\.3, 1 : 10\.18\.0\.6 \} comment "a_b_c"/);
  assert.doesNotMatch(ok.text, /flush|10\.18\.0\.7|10\.18\.0\.8/);
  assert.equal(ok.problems.length, 6, ok.problems.join('\n'));
  assert.throws(() => serviceRuleset([], { ...opts, table: 'a b' }), /bad table/);
  assert.throws(() => serviceRuleset([], { ...opts, bridge: 'oak0"; drop' }), /bad bridge/);
  assert.throws(() => serviceRuleset([], { ...opts, subnet: 'nonsense' }));
});

test('property: arbitrary input never throws and never puts an unchecked string in the rule set', () => {
  const text = fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('10.30.0.1', 'fdff::1', '10.18.0.3', '1.2.3.4', '"', '}'));
  const inst = fc.record({ instance_number: fc.oneof(fc.integer(), fc.double()), nsip: text, nsip_v6: fc.option(text), instance_ip: fc.option(text) });
  const s = fc.record({ job_name: fc.string({ maxLength: 20 }), service_ip: fc.option(text), service_ip_v6: fc.option(text), closest_ip: fc.option(text), instances: fc.array(inst, { maxLength: 4 }) });
  fc.assert(fc.property(fc.array(s, { maxLength: 5 }), (list) => {
    const r = serviceRuleset(list as DesiredService[], opts);
    for (const line of r.text.split('\n')) {
      const noComment = line.replace(/ comment "[^"\\]*"$/, '');
      assert.doesNotMatch(noComment, /[^A-Za-z0-9 _.:/,{};@"=-]/, line);
    }
  }), { numRuns: 500 });
});

test('trapAddress: the destination of a trapped packet in our table, nothing else', () => {
  const v4 = 'trace id bb7024ed inet oakn trap packet: iif "oak0" ether saddr ea:1a:5b:4d:9d:31 ether daddr 9a:02:ad:e6:53:a5 ip saddr 10.18.0.2 ip daddr 10.30.0.99 ip dscp cs0 ip ecn not-ect ip ttl 64 ip protocol tcp ';
  const v6 = 'trace id 9a5b8237 inet oakn trap packet: iif "oak0" ether saddr ea:1a:5b:4d:9d:31 ip6 saddr fdff:18::2 ip6 daddr FDFF:0::99 ip6 dscp cs0 ip6 nexthdr tcp';
  assert.equal(trapAddress(v4, 'oakn'), '10.30.0.99');
  assert.equal(trapAddress(v6, 'oakn'), 'fdff::99');
  assert.equal(trapAddress(v4, 'oakn_abc123'), undefined, 'another table');
  assert.equal(trapAddress(v4.replace(' trap ', ' prerouting '), 'oakn'), undefined, 'another chain');
  assert.equal(trapAddress('trace id bb7024ed inet oakn trap rule iifname "oak0" ip daddr 10.30.0.0/16 counter drop comment "oak-unknown-virtual" (verdict drop)', 'oakn'), undefined);
  for (const bad of ['', 'garbage', 'trace id zz inet oakn trap packet: ip daddr 10.30.0.1', v4.replace('10.30.0.99', '10.30.0.999'), `${v4}${'x'.repeat(5000)}`, 5 as unknown as string]) {
    assert.equal(trapAddress(bad, 'oakn'), undefined, String(bad).slice(0, 40));
  }
});

test('extra service ranges (root --extra-service-ranges): trapped with 10.30.0.0/16, a service IP inside one is translated; bad ones throw', () => {
  const opts = { table: 'oakn', bridge: 'oak0', subnet: '10.18.0.0/26', extraVirtual4: ['192.168.178.0/24'] };
  const r = serviceRuleset([{ job_name: 'a.ns.web.ns', service_ip: '192.168.178.4', instances: [{ instance_number: 0, nsip: '10.18.0.70' }] }], opts);
  assert.deepEqual(r.problems, []);
  assert.ok(r.text.includes('ip daddr { 10.30.0.0/16, 192.168.178.0/24 } limit rate 20/second meta nftrace set 1'), r.text);
  assert.ok(r.text.includes(`ip daddr { 10.30.0.0/16, 192.168.178.0/24 } counter drop comment "${TRAP_COMMENT}"`), r.text);
  assert.ok(r.text.includes('192.168.178.4 : jump rr4_0'), r.text);
  // without extra ranges the text is what it always was
  const plain = serviceRuleset([], { table: 'oakn', bridge: 'oak0', subnet: '10.18.0.0/26' });
  assert.ok(plain.text.includes('ip daddr 10.30.0.0/16 counter drop'), plain.text);
  assert.throws(() => serviceRuleset([], { ...opts, extraVirtual4: ['192.168.178.4; drop'] }));
  assert.throws(() => serviceRuleset([], { ...opts, extraVirtual4: Array.from({ length: 16 }, (_, i) => `172.16.${i}.0/24`) }), /at most 15/);
});
