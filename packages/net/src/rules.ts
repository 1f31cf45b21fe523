/**
 * The nftables rule set of a worker's instance bridge, as text for `nft -f -`, from the desired
 * state (plan + port mappings). Pure. The text replaces the whole table atomically (one
 * transaction: create, delete, create again), so applying it twice changes nothing and a
 * mapping removed from the state is gone after the next apply.
 *
 * What it does (family ip, table from the plan):
 *   - input: from the bridge, only replies to connections the node opened are accepted; every new
 *     connection from an instance to any address of the node (the bridge gateway, the host's
 *     addresses, 127.0.0.1 via route_localnet) is rejected, so no workload reaches the broker,
 *     registration, link, API or anything else listening on the node. `allowInput` opens single
 *     ports for what the overlay will need later (e.g. the NetManager's DNS on the gateway).
 *   - forward: into the bridge only replies, DNATed port mappings, and bridge-to-bridge traffic;
 *     nobody outside reaches an instance on a port that is not mapped.
 *   - prerouting + output (nat): each `host:container/proto` mapping as DNAT of the host port on
 *     every local address to the instance's own address and container port only.
 *   - postrouting (nat): outbound masquerade of the instances' subnet, and masquerade of loopback
 *     sources going into the bridge (so `curl localhost:<host port>` reaches a mapped instance).
 *   - a table of family ip6 with the same name drops all IPv6 from and to the bridge (instances
 *     are IPv4 only; without it a link-local IPv6 address would reach services on `::`).
 *
 * The overlay (issue 8, `overlay` option, only with it):
 *   - forward: from the tunnel device (the NetManager's VXLAN) into the bridge, new connections
 *     are accepted for sources in the worker pool (other workers' instances);
 *   - postrouting: no masquerade towards the worker pool and the virtual (service/instance IP)
 *     pools: overlay traffic keeps the instance's own source address;
 *   - input: from the bridge to the gateway's DNS port (default 53, udp and tcp), the worker's
 *     resolver; every other new connection to the node is still refused.
 * With an IPv6 subnet in the plan the ip6 table applies the same policy to IPv6 (replies, DNS on
 * gateway6, neighbour discovery, the tunnel from workerPool6, outbound masquerade except towards
 * the overlay's v6 pools) instead of dropping all IPv6. Without `overlay` and without IPv6 the
 * text is exactly what it was before.
 */
import type { BridgePlan } from './plan.ts';
import { inPlan } from './plan.ts';
import { formatSubnet, parseSubnet } from './ipv4.ts';
import { formatSubnet6, parseSubnet6 } from './ipv6.ts';

export interface OverlayRules {
  /** the NetManager's VXLAN device */
  tunnelDevice: string;
  /** every worker's subnet (10.18.0.0/16) */
  workerPool: string;
  workerPool6?: string | undefined;
  /** service and instance IP pools (10.30.0.0/16) */
  virtualPools: readonly string[];
  virtualPools6?: readonly string[] | undefined;
  /** the resolver's port on the gateway (default 53) */
  dnsPort?: number | undefined;
}

export type Protocol = 'tcp' | 'udp';

export interface PortRule {
  /** the instance the mapping belongs to (comment in the rule set) */
  instance: string;
  ip: string;
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
}

export interface RuleState {
  plan: BridgePlan;
  mappings: readonly PortRule[];
  /** ports of the node instances may open (none by default; for the overlay later) */
  allowInput?: readonly { protocol: Protocol; port: number }[];
  /** the overlay's additions (see the header) */
  overlay?: OverlayRules | undefined;
}

interface CheckedOverlay {
  tunnel: string;
  pool: string;
  pool6: string | undefined;
  virtual: string[];
  virtual6: string[];
  dns: number;
}

/** Checks the overlay option (names and CIDRs end up in nft text): a readable Error when bad. */
function checkOverlay(o: OverlayRules): CheckedOverlay {
  if (typeof o.tunnelDevice !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/.test(o.tunnelDevice)) throw new Error(`bad tunnel device name ${JSON.stringify(o.tunnelDevice)}`);
  const v4 = (c: string): string => formatSubnet(parseSubnet(c));
  const v6 = (c: string): string => formatSubnet6(parseSubnet6(c));
  if (!Array.isArray(o.virtualPools) || o.virtualPools.length > 16) throw new Error('virtualPools: give at most 16 IPv4 subnets');
  const v6list = o.virtualPools6 ?? [];
  if (!Array.isArray(v6list) || v6list.length > 16) throw new Error('virtualPools6: give at most 16 IPv6 subnets');
  const dns = o.dnsPort ?? 53;
  if (!validPort(dns)) throw new Error(`DNS port ${String(dns)} is out of range 1..65535`);
  return {
    tunnel: o.tunnelDevice,
    pool: v4(o.workerPool),
    pool6: o.workerPool6 === undefined ? undefined : v6(o.workerPool6),
    virtual: o.virtualPools.map(v4),
    virtual6: v6list.map(v6),
    dns,
  };
}

function validPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** Two mappings on the same host port and protocol, or a bad one: the reason; undefined when fine. */
export function mappingProblem(mappings: readonly PortRule[], plan: BridgePlan): string | undefined {
  const seen = new Map<string, string>();
  for (const m of mappings) {
    if (!validPort(m.hostPort) || !validPort(m.containerPort)) return `${m.instance}: port ${m.hostPort}:${m.containerPort} is out of range 1..65535`;
    if (m.protocol !== 'tcp' && m.protocol !== 'udp') return `${m.instance}: protocol ${String(m.protocol)} is neither tcp nor udp`;
    if (!inPlan(plan, m.ip)) return `${m.instance}: ${m.ip} is not an instance address of ${plan.cidr}`;
    const key = `${m.hostPort}/${m.protocol}`;
    const other = seen.get(key);
    if (other !== undefined && other !== m.instance) return `host port ${key} is already mapped to ${other}`;
    if (other === m.instance) return `${m.instance} maps host port ${key} twice`;
    seen.set(key, m.instance);
  }
  return undefined;
}

const q = (s: string): string => JSON.stringify(s);

/** The rule set as text for `nft -f -`; throws when the mappings conflict (see mappingProblem). */
export function nftRuleset(state: RuleState): string {
  const { plan } = state;
  const problem = mappingProblem(state.mappings, plan);
  if (problem !== undefined) throw new Error(problem);
  if (!/^[A-Za-z][A-Za-z0-9_]{0,30}$/.test(plan.table)) throw new Error(`bad table name ${plan.table}`);
  if (!/^[A-Za-z0-9]{1,15}$/.test(plan.bridge)) throw new Error(`bad bridge name ${plan.bridge}`);
  const br = q(plan.bridge);
  const sorted = [...state.mappings].sort((a, b) => a.protocol.localeCompare(b.protocol) || a.hostPort - b.hostPort);
  const dnat = sorted.map(
    (m) => `    fib daddr type local ${m.protocol} dport ${m.hostPort} dnat to ${m.ip}:${m.containerPort} comment ${q(m.instance.slice(0, 100))}`,
  );
  const allow = (state.allowInput ?? []).filter((a) => validPort(a.port)).map((a) => `    iifname ${br} ${a.protocol === 'udp' ? 'udp' : 'tcp'} dport ${a.port} accept`);
  const ov = state.overlay === undefined ? undefined : checkOverlay(state.overlay);
  if (ov === undefined && plan.cidr6 === undefined) return legacyRuleset(plan, br, dnat, allow);
  const tun = ov === undefined ? undefined : q(ov.tunnel);
  const dnsIn = (family: 'ip' | 'ip6', gw: string): string[] =>
    ov === undefined ? [] : [`    iifname ${br} ${family} daddr ${gw} udp dport ${ov.dns} accept`, `    iifname ${br} ${family} daddr ${gw} tcp dport ${ov.dns} accept`];
  const noNat = (family: 'ip' | 'ip6', list: string[]): string => (list.length === 0 ? '' : ` ${family} daddr != { ${list.join(', ')} }`);
  const lines = [
    `table ip ${plan.table}`,
    `delete table ip ${plan.table}`,
    `table ip ${plan.table} {`,
    '  chain input {',
    '    type filter hook input priority -1; policy accept;',
    `    iifname ${br} ct state established,related accept`,
    ...dnsIn('ip', plan.gateway),
    ...allow,
    `    iifname ${br} meta l4proto tcp counter reject with tcp reset`,
    `    iifname ${br} counter reject with icmp type admin-prohibited`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority -1; policy accept;',
    `    oifname ${br} ct state established,related accept`,
    `    oifname ${br} ct status dnat accept`,
    `    oifname ${br} iifname ${br} accept`,
    ...(ov !== undefined ? [`    oifname ${br} iifname ${tun as string} ip saddr ${ov.pool} accept`] : []),
    `    oifname ${br} counter drop`,
    `    iifname ${br} ip saddr != ${plan.cidr} counter drop`,
    '  }',
    '  chain prerouting {',
    '    type nat hook prerouting priority -100; policy accept;',
    ...dnat,
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    ...dnat,
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority 100; policy accept;',
    `    ip saddr ${plan.cidr}${ov === undefined ? '' : noNat('ip', [ov.pool, ...ov.virtual])} oifname != ${br} masquerade`,
    `    oifname ${br} ip saddr 127.0.0.0/8 masquerade`,
    '  }',
    '}',
    `table ip6 ${plan.table}`,
    `delete table ip6 ${plan.table}`,
  ];
  if (plan.cidr6 === undefined || plan.gateway6 === undefined) {
    lines.push(...ip6DropAll(plan, br));
  } else {
    const pools6 = ov === undefined ? [] : [...(ov.pool6 !== undefined ? [ov.pool6] : []), ...ov.virtual6];
    lines.push(
      `table ip6 ${plan.table} {`,
      '  chain input {',
      '    type filter hook input priority -1; policy accept;',
      `    iifname ${br} ct state established,related accept`,
      `    iifname ${br} icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept`,
      ...dnsIn('ip6', plan.gateway6),
      ...allow,
      `    iifname ${br} meta l4proto tcp counter reject with tcp reset`,
      `    iifname ${br} counter reject with icmpv6 type admin-prohibited`,
      '  }',
      '  chain forward {',
      '    type filter hook forward priority -1; policy accept;',
      `    oifname ${br} ct state established,related accept`,
      `    oifname ${br} ct status dnat accept`,
      `    oifname ${br} iifname ${br} accept`,
      ...(ov !== undefined && ov.pool6 !== undefined ? [`    oifname ${br} iifname ${tun as string} ip6 saddr ${ov.pool6} accept`] : []),
      `    oifname ${br} counter drop`,
      `    iifname ${br} ip6 saddr != ${plan.cidr6} counter drop`,
      '  }',
      '  chain postrouting {',
      '    type nat hook postrouting priority 100; policy accept;',
      `    ip6 saddr ${plan.cidr6}${noNat('ip6', pools6)} oifname != ${br} masquerade`,
      '  }',
      '}',
      '',
    );
  }
  return lines.join('\n');
}

function ip6DropAll(plan: BridgePlan, br: string): string[] {
  return [
    `table ip6 ${plan.table} {`,
    '  chain input {',
    '    type filter hook input priority -1; policy accept;',
    `    iifname ${br} counter drop`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority -1; policy accept;',
    `    iifname ${br} counter drop`,
    `    oifname ${br} counter drop`,
    '  }',
    '}',
    '',
  ];
}

/** the rule set before the overlay (kept byte for byte) */
function legacyRuleset(plan: BridgePlan, br: string, dnat: string[], allow: string[]): string {
  const lines = [
    `table ip ${plan.table}`,
    `delete table ip ${plan.table}`,
    `table ip ${plan.table} {`,
    '  chain input {',
    '    type filter hook input priority -1; policy accept;',
    `    iifname ${br} ct state established,related accept`,
    ...allow,
    `    iifname ${br} meta l4proto tcp counter reject with tcp reset`,
    `    iifname ${br} counter reject with icmp type admin-prohibited`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority -1; policy accept;',
    `    oifname ${br} ct state established,related accept`,
    `    oifname ${br} ct status dnat accept`,
    `    oifname ${br} iifname ${br} accept`,
    `    oifname ${br} counter drop`,
    `    iifname ${br} ip saddr != ${plan.cidr} counter drop`,
    '  }',
    '  chain prerouting {',
    '    type nat hook prerouting priority -100; policy accept;',
    ...dnat,
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    ...dnat,
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority 100; policy accept;',
    `    ip saddr ${plan.cidr} oifname != ${br} masquerade`,
    `    oifname ${br} ip saddr 127.0.0.0/8 masquerade`,
    '  }',
    '}',
    `table ip6 ${plan.table}`,
    `delete table ip6 ${plan.table}`,
    `table ip6 ${plan.table} {`,
    '  chain input {',
    '    type filter hook input priority -1; policy accept;',
    `    iifname ${br} counter drop`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority -1; policy accept;',
    `    iifname ${br} counter drop`,
    `    oifname ${br} counter drop`,
    '  }',
    '}',
    '',
  ];
  return lines.join('\n');
}

/** Text for `nft -f -` that removes the table (nothing when it does not exist). */
export function nftDeleteTable(plan: BridgePlan): string {
  return `table ip ${plan.table}\ndelete table ip ${plan.table}\ntable ip6 ${plan.table}\ndelete table ip6 ${plan.table}\n`;
}
