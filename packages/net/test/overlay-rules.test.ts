import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { addressV6, allocateAddress, bridgePlan, netnsName, nftRuleset } from '../src/index.ts';
import type { OverlayRules } from '../src/index.ts';

const overlay: OverlayRules = {
  tunnelDevice: 'oakx0',
  workerPool: '10.18.0.0/16',
  workerPool6: 'fdff:18::/48',
  virtualPools: ['10.30.0.0/16'],
  virtualPools6: ['fdff::/64'],
};

test('a plan with an IPv6 /64 and an MTU: gateway ::1, instances share the v4 host index (hex)', () => {
  const p = bridgePlan('h6x', '10.18.0.64/26', { subnetV6: 'fdff:18:0:1::/64', mtu: 1450 });
  assert.equal(p.gateway, '10.18.0.65');
  assert.equal(p.cidr6, 'fdff:18:0:1::/64');
  assert.equal(p.gateway6, 'fdff:18:0:1::1');
  assert.equal(p.mtu, 1450);
  assert.equal(allocateAddress(p, []), '10.18.0.66');
  assert.equal(addressV6(p, '10.18.0.66'), 'fdff:18:0:1::2');
  assert.equal(addressV6(p, '10.18.0.74'), 'fdff:18:0:1::a');
  assert.equal(addressV6(p, '10.18.0.126'), 'fdff:18:0:1::3e');
  assert.equal(netnsName(p, '10.18.0.74'), `oak-${p.tag}-a`);
  assert.throws(() => addressV6(p, '10.18.0.65'), /not an instance address/);
  assert.throws(() => addressV6(p, '10.18.1.2'), /not an instance address/);
  // without options: exactly the old plan
  const old = bridgePlan('h6x', '10.18.0.64/26');
  assert.deepEqual(Object.keys(old).sort(), ['bridge', 'cidr', 'gateway', 'mac', 'namespace', 'subnet', 'table', 'tag']);
  assert.equal(addressV6(old, '10.18.0.66'), undefined);
  assert.deepEqual(bridgePlan('h6x', '10.18.0.64/26', { subnetV6: null }), old);
});

test('hostile IPv6 subnets and MTUs are refused with a reason', () => {
  const b = (o: { subnetV6?: string; mtu?: number }) => () => bridgePlan('h6x', '10.18.0.64/26', o);
  assert.throws(b({ subnetV6: '2001:db8::/64' }), /unique-local/);
  assert.throws(b({ subnetV6: 'fdff:18::/48' }), /between \/64 and \/120/);
  assert.throws(b({ subnetV6: 'fdff:18::/124' }), /between \/64 and \/120/);
  assert.throws(b({ subnetV6: 'fdff:18::1/64' }), /host bits/);
  assert.throws(b({ subnetV6: 'fdff:18::/64"; flush ruleset' }), /not an IPv6 subnet/);
  assert.throws(b({ subnetV6: '10.0.0.0/8' }), /not an IPv6 subnet/);
  assert.throws(() => bridgePlan('h6x', '10.18.0.0/24', { subnetV6: 'fdff::/121' }), /between/);
  assert.throws(() => bridgePlan('h6x', '10.18.0.0/16', { subnetV6: 'fdff::/120' }), /smaller than the IPv4 subnet/);
  assert.throws(b({ mtu: 100 }), /MTU 100/);
  assert.throws(b({ mtu: 1.5e3 + 0.5 }), /MTU/);
  assert.throws(b({ mtu: 70000 }), /MTU/);
  assert.throws(b({ subnetV6: 'fdff:18:0:1::/64', mtu: 1000 }), /IPv6 needs 1280/);
  assert.equal(bridgePlan('h6x', '10.18.0.64/26', { mtu: 1000 }).mtu, 1000);
});

test('without overlay and IPv6 the rule set is byte-identical to the old one (all IPv6 dropped)', () => {
  const p = bridgePlan('h6x', '10.18.0.64/26');
  const text = nftRuleset({ plan: p, mappings: [] });
  assert.doesNotMatch(text, /10\.18\.0\.0\/16|dport 53|icmpv6/);
  assert.match(text, /table ip6 oak_[0-9a-f]{6} \{\n {2}chain input \{\n {4}type filter hook input priority -1; policy accept;\n {4}iifname "oakb[0-9a-f]{6}" counter drop/);
  // an MTU alone changes no rule
  assert.equal(nftRuleset({ plan: bridgePlan('h6x', '10.18.0.64/26', { mtu: 1450 }), mappings: [] }), text);
});

test('the overlay option: tunnel forward from the worker pool, no NAT towards the pools, DNS on the gateway', () => {
  const p = bridgePlan('h6x', '10.18.0.64/26', { subnetV6: 'fdff:18:0:1::/64', mtu: 1450 });
  const br = `"${p.bridge}"`;
  const text = nftRuleset({ plan: p, mappings: [], overlay });
  const [v4, v6] = text.split(`table ip6 ${p.table} {`) as [string, string];
  assert.ok(v4.includes(`    oifname ${br} iifname "oakx0" ip saddr 10.18.0.0/16 accept\n    oifname ${br} counter drop`));
  assert.ok(v4.includes(`    ip saddr 10.18.0.64/26 ip daddr != { 10.18.0.0/16, 10.30.0.0/16 } oifname != ${br} masquerade`));
  assert.ok(v4.includes(`    iifname ${br} ip daddr 10.18.0.65 udp dport 53 accept\n    iifname ${br} ip daddr 10.18.0.65 tcp dport 53 accept\n    iifname ${br} meta l4proto tcp counter reject`));
  // IPv6: the same policy instead of dropping everything
  assert.ok(v6.includes(`    iifname ${br} ct state established,related accept`));
  assert.ok(v6.includes(`    iifname ${br} ip6 daddr fdff:18:0:1::1 udp dport 53 accept`));
  assert.ok(v6.includes(`nd-neighbor-solicit`));
  assert.ok(v6.includes(`    iifname ${br} counter reject with icmpv6 type admin-prohibited`));
  assert.ok(v6.includes(`    oifname ${br} iifname "oakx0" ip6 saddr fdff:18::/48 accept`));
  assert.ok(v6.includes(`    iifname ${br} ip6 saddr != fdff:18:0:1::/64 counter drop`));
  assert.ok(v6.includes(`    ip6 saddr fdff:18:0:1::/64 ip6 daddr != { fdff:18::/48, fdff::/64 } oifname != ${br} masquerade`));
  assert.doesNotMatch(v6, new RegExp(`iifname ${br} counter drop`));
  // a custom DNS port; v4 only with overlay
  const v4only = nftRuleset({ plan: bridgePlan('h6x', '10.18.0.64/26'), mappings: [], overlay: { ...overlay, dnsPort: 5353 } });
  assert.match(v4only, /ip daddr 10\.18\.0\.65 udp dport 5353 accept/);
  assert.match(v4only, /table ip6 oak_[0-9a-f]{6} \{\n {2}chain input \{\n {4}type filter hook input priority -1; policy accept;\n {4}iifname "oakb[0-9a-f]{6}" counter drop/);
  // IPv6 without overlay: v6 policy, DNS not opened
  const v6only = nftRuleset({ plan: p, mappings: [] });
  assert.doesNotMatch(v6only, /dport 53|oakx0/);
  assert.match(v6only, /ip6 saddr fdff:18:0:1::\/64 oifname != "oakb[0-9a-f]{6}" masquerade/);
});

test('hostile overlay options are refused before any text is produced', () => {
  const p = bridgePlan('h6x', '10.18.0.64/26', { subnetV6: 'fdff:18:0:1::/64' });
  const r = (o: Partial<OverlayRules>) => () => nftRuleset({ plan: p, mappings: [], overlay: { ...overlay, ...o } });
  assert.throws(r({ tunnelDevice: 'oakx0"; flush ruleset; "' }), /bad tunnel device/);
  assert.throws(r({ tunnelDevice: 'a'.repeat(16) }), /bad tunnel device/);
  assert.throws(r({ tunnelDevice: '' }), /bad tunnel device/);
  assert.throws(r({ workerPool: '10.18.0.0/16 } accept; {' }), /not an IPv4 subnet/);
  assert.throws(r({ workerPool: '10.18.0.1/16' }), /host bits/);
  assert.throws(r({ workerPool6: 'fdff:18::/48; flush' }), /not an IPv6 subnet/);
  assert.throws(r({ virtualPools: ['10.30.0.0/16', 'nope'] }), /not an IPv4 subnet/);
  assert.throws(r({ virtualPools: new Array<string>(17).fill('10.30.0.0/16') }), /at most 16/);
  assert.throws(r({ virtualPools6: ['fdff::/64', '::1'] }), /not an IPv6 subnet/);
  assert.throws(r({ dnsPort: 0 }), /DNS port 0/);
  assert.throws(r({ dnsPort: 65536 }), /DNS port/);
});

test('the kernel accepts the overlay rule sets (nft --check, nothing applied)', (t) => {
  const probe = spawnSync('nft', ['--version']);
  if (probe.error !== undefined || process.getuid?.() !== 0) {
    t.skip('needs root and nft');
    return;
  }
  const p = bridgePlan('h6x-check', '10.18.0.64/26', { subnetV6: 'fdff:18:0:1::/64', mtu: 1450 });
  for (const o of [overlay, undefined, { ...overlay, workerPool6: undefined, virtualPools6: undefined }]) {
    const text = nftRuleset({ plan: p, mappings: [{ instance: 'web.instance.0', ip: '10.18.0.66', hostPort: 18080, containerPort: 80, protocol: 'tcp' }], overlay: o });
    const r = spawnSync('nft', ['-c', '-f', '-'], { input: text, encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stderr}\n${text}`);
  }
});
