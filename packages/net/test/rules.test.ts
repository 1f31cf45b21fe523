import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { bridgePlan, mappingProblem, nftDeleteTable, nftRuleset } from '../src/index.ts';
import type { PortRule } from '../src/index.ts';

const plan = bridgePlan('oak');

test('the rule set rejects new connections from the bridge to the node and masquerades outbound', () => {
  const text = nftRuleset({ plan, mappings: [] });
  assert.match(text, /^table ip oak\ndelete table ip oak\ntable ip oak \{/);
  assert.match(text, /chain input \{\n {4}type filter hook input priority -1; policy accept;\n {4}iifname "oak0" ct state established,related accept\n {4}iifname "oak0" meta l4proto tcp counter reject with tcp reset\n {4}iifname "oak0" counter reject/);
  assert.match(text, /ip saddr 172\.30\.0\.0\/24 oifname != "oak0" masquerade/);
  assert.match(text, /oifname "oak0" ip saddr 127\.0\.0\.0\/8 masquerade/);
  assert.match(text, /oifname "oak0" counter drop/);
  assert.doesNotMatch(text, /dnat to/);
  // no IPv6 from or to the bridge
  assert.match(text, /table ip6 oak \{\n {2}chain input \{\n {4}type filter hook input priority -1; policy accept;\n {4}iifname "oak0" counter drop/);
});

test('port mappings become DNAT to the instance address only, in prerouting and output', () => {
  const mappings: PortRule[] = [
    { instance: 'web.instance.0', ip: '172.30.0.2', hostPort: 8080, containerPort: 80, protocol: 'tcp' },
    { instance: 'dns.instance.0', ip: '172.30.0.3', hostPort: 5353, containerPort: 53, protocol: 'udp' },
  ];
  const text = nftRuleset({ plan, mappings });
  const tcp = 'fib daddr type local tcp dport 8080 dnat to 172.30.0.2:80 comment "web.instance.0"';
  const udp = 'fib daddr type local udp dport 5353 dnat to 172.30.0.3:53 comment "dns.instance.0"';
  assert.equal(text.split(tcp).length - 1, 2);
  assert.equal(text.split(udp).length - 1, 2);
  assert.equal(nftRuleset({ plan, mappings: [...mappings].reverse() }), text, 'order-independent');
});

test('conflicting or hostile mappings are refused before any text is produced', () => {
  const m = (o: Partial<PortRule>): PortRule => ({ instance: 'a', ip: '172.30.0.2', hostPort: 80, containerPort: 80, protocol: 'tcp', ...o });
  assert.match(mappingProblem([m({}), m({ instance: 'b', ip: '172.30.0.3' })], plan) ?? '', /already mapped to a/);
  assert.equal(mappingProblem([m({}), m({ protocol: 'udp' })], plan), undefined);
  assert.match(mappingProblem([m({ hostPort: 0 })], plan) ?? '', /out of range/);
  assert.match(mappingProblem([m({ containerPort: 70000 })], plan) ?? '', /out of range/);
  assert.match(mappingProblem([m({ ip: '127.0.0.1' })], plan) ?? '', /not an instance address/);
  assert.match(mappingProblem([m({ ip: '172.30.0.1' })], plan) ?? '', /not an instance address/, 'the gateway is the node');
  assert.match(mappingProblem([m({ protocol: 'icmp' as 'tcp' })], plan) ?? '', /neither tcp nor udp/);
  assert.throws(() => nftRuleset({ plan, mappings: [m({}), m({ instance: 'b', ip: '172.30.0.3' })] }), /already mapped/);
  // a hostile instance name cannot break out of the comment string
  const text = nftRuleset({ plan, mappings: [m({ instance: 'x"; flush ruleset; "' })] });
  assert.match(text, /comment "x\\"; flush ruleset; \\""/);
});

test('allowInput opens single ports for the overlay; the table is removed by nftDeleteTable', () => {
  const text = nftRuleset({ plan, mappings: [], allowInput: [{ protocol: 'udp', port: 53 }, { protocol: 'tcp', port: 0 }] });
  assert.match(text, /iifname "oak0" udp dport 53 accept\n/);
  assert.doesNotMatch(text, /dport 0/);
  assert.equal(nftDeleteTable(plan), 'table ip oak\ndelete table ip oak\ntable ip6 oak\ndelete table ip6 oak\n');
});

test('the kernel accepts the generated rule set (nft --check, nothing applied)', (t) => {
  const probe = spawnSync('nft', ['--version']);
  if (probe.error !== undefined || process.getuid?.() !== 0) {
    t.skip('needs root and nft');
    return;
  }
  const text = nftRuleset({
    plan: bridgePlan('e2e-check'),
    mappings: [{ instance: 'web.instance.0', ip: '172.30.' + bridgePlan('e2e-check').cidr.split('.')[2] + '.2', hostPort: 18080, containerPort: 80, protocol: 'tcp' }],
    allowInput: [{ protocol: 'udp', port: 53 }],
  });
  const r = spawnSync('nft', ['-c', '-f', '-'], { input: text, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});
