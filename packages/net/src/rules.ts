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
 */
import type { BridgePlan } from './plan.ts';
import { inPlan } from './plan.ts';

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
