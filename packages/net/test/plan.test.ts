import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  OVERLAY_RANGES, addressOfNetns, allocateAddress, bridgeMac, bridgePlan, capacity, defaultSubnet, formatIPv4, inPlan, isPlanNetns, netnsName,
  overlaps, parseIPv4, parseSubnet, vethName,
} from '../src/index.ts';

test('IPv4 parsing refuses malformed addresses and subnets with host bits', () => {
  assert.equal(parseIPv4('172.30.0.1'), (172 << 24 >>> 0) + (30 << 16) + 1);
  for (const bad of ['1.2.3', '256.1.1.1', '01.2.3.4', '1.2.3.4.5', '', 'a.b.c.d', '1.2.3.-1']) assert.equal(parseIPv4(bad), undefined, bad);
  assert.equal(formatIPv4(parseIPv4('10.18.4.63') as number), '10.18.4.63');
  assert.throws(() => parseSubnet('172.30.0.1/24'), /host bits/);
  assert.throws(() => parseSubnet('172.30.0.0/33'), /not an IPv4 subnet/);
  assert.throws(() => parseSubnet('nonsense'), /not an IPv4 subnet/);
});

test('the default plan: oak0, table oak, 172.30.0.0/24, gateway .1; not in the overlay ranges', () => {
  const p = bridgePlan('oak');
  assert.equal(p.bridge, 'oak0');
  assert.equal(p.table, 'oak');
  assert.equal(p.cidr, '172.30.0.0/24');
  assert.equal(p.gateway, '172.30.0.1');
  assert.equal(capacity(p), 253);
  for (const r of OVERLAY_RANGES) assert.equal(overlaps(p.subnet, parseSubnet(r)), false, r);
});

test('other namespaces get their own bridge, table and /24, all names within kernel limits', () => {
  const seen = new Set<string>();
  for (const ns of ['oak', 'e2e-w1', 'e2e-w2', 'test_abc', 'a', 'x'.repeat(63)]) {
    const p = bridgePlan(ns);
    assert.ok(p.bridge.length <= 15, p.bridge);
    assert.ok(!seen.has(p.bridge) && !seen.has(p.table));
    seen.add(p.bridge);
    seen.add(p.table);
    assert.match(p.cidr, /^172\.30\.\d+\.0\/24$/);
    for (const r of OVERLAY_RANGES) assert.equal(overlaps(p.subnet, parseSubnet(r)), false);
    assert.equal(defaultSubnet(ns), p.cidr);
  }
  assert.notEqual(bridgePlan('e2e-w1').cidr, bridgePlan('oak').cidr);
});

test('a plan from the overlay (the NetManager later): 10.18.4.0/26', () => {
  const p = bridgePlan('w1', '10.18.4.0/26');
  assert.equal(p.gateway, '10.18.4.1');
  assert.equal(capacity(p), 61);
  const used: string[] = [];
  for (let i = 0; i < 61; i++) {
    const ip = allocateAddress(p, used);
    assert.ok(ip !== undefined && inPlan(p, ip));
    used.push(ip);
  }
  assert.equal(used[0], '10.18.4.2');
  assert.equal(used[60], '10.18.4.62');
  assert.equal(allocateAddress(p, used), undefined, 'full: no broadcast, no gateway');
});

test('bad subnets are refused with the reason', () => {
  assert.throws(() => bridgePlan('oak', '8.8.8.0/24'), /not a private/);
  assert.throws(() => bridgePlan('oak', '10.0.0.0/8'), /between \/16 and \/29/);
  assert.throws(() => bridgePlan('oak', '10.0.0.0/30'), /between \/16 and \/29/);
  assert.throws(() => bridgePlan('bad name!'), /namespace/);
});

test('allocation takes the lowest free address and reuses freed ones', () => {
  const p = bridgePlan('oak');
  assert.equal(allocateAddress(p, []), '172.30.0.2');
  assert.equal(allocateAddress(p, ['172.30.0.2', '172.30.0.4']), '172.30.0.3');
  assert.equal(allocateAddress(p, ['172.30.0.2', 'garbage', '172.30.0.3']), '172.30.0.4');
  assert.equal(inPlan(p, '172.30.0.1'), false, 'gateway');
  assert.equal(inPlan(p, '172.30.0.255'), false, 'broadcast');
  assert.equal(inPlan(p, '172.30.1.2'), false);
});

test('namespace and veth names map back to the address; foreign names are not ours', () => {
  const p = bridgePlan('e2e-w1', '172.30.0.0/16');
  const ip = '172.30.255.254';
  const ns = netnsName(p, ip);
  assert.ok(isPlanNetns(p, ns));
  assert.equal(addressOfNetns(p, ns), ip);
  assert.ok(vethName(p, ip).length <= 15);
  assert.equal(isPlanNetns(p, 'oak-other-2'), false);
  assert.equal(isPlanNetns(bridgePlan('oak'), ns), false);
  assert.throws(() => netnsName(p, '10.0.0.2'), /not an instance address/);
});

test('the bridge MAC is fixed per namespace: unicast, locally administered, the same for any subnet', () => {
  const a = bridgePlan('oak');
  assert.match(a.mac, /^02(:[0-9a-f]{2}){5}$/);
  assert.equal(bridgePlan('oak', '10.18.0.64/26').mac, a.mac, 'a subnet given by the NetManager keeps the MAC');
  assert.equal(bridgeMac('oak'), a.mac);
  assert.notEqual(bridgePlan('e2e-w1').mac, bridgePlan('e2e-w2').mac);
});
