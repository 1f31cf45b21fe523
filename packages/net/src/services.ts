/**
 * The NetManager's nftables rule set (issue 8): service, closest and instance IPs translated in
 * the kernel to the namespace address (`nsip`) of an instance. Pure: desired services in, the
 * text for `nft -f -` out, replacing the whole table atomically (flows keep their NAT bindings in
 * conntrack, so a replace never breaks an established connection).
 *
 * Table `inet <table>` (serviceTable(namespace)):
 *   - chain `services` (jumped to from nat prerouting for traffic from the bridge, and from nat
 *     output): a service IP is looked up in the verdict map `rr4` / `rr6`, which jumps to the
 *     service's chain `rr4_<i>`: `dnat ip to numgen inc mod N map { 0 : nsip0, ... }` over the
 *     healthy instances (none: no entry); closest and instance IPs through the maps
 *     `single4` / `single6` (one target each). One lookup per new connection, however many services.
 *   - postrouting: hairpin masquerade (ct status dnat, source and destination in the local subnet,
 *     leaving through the bridge), so a reply from a local instance returns through the gateway.
 *   - chain `trap` (filter prerouting, priority 0, after the DNAT): traffic from the bridge to a
 *     still-untranslated virtual address (virtual pools, default 10.30.0.0/16 and fdff::/64) is
 *     traced (`meta nftrace set 1`, at most 20 packets a second) and dropped. The NetManager reads
 *     `nft monitor trace` (`trapAddress`) to learn the address, asks the cluster, programs it; the
 *     client's retransmission then gets through.
 */
import { contains, formatIPv4, formatSubnet, parseIPv4, parseSubnet } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';
import { contains6, formatIPv6, formatSubnet6, parseIPv6, parseSubnet6 } from './ipv6.ts';
import type { Subnet6 } from './ipv6.ts';
import { DEFAULT_SERVICE_POOL, DEFAULT_SERVICE_POOL_V6 } from './ipam.ts';

/** the comment on the trap rule, recognisable in `nft monitor trace` */
export const TRAP_COMMENT = 'oak-unknown-virtual';
/** the most round-robin targets of one service address */
export const MAX_BACKENDS = 4096;
export const MAX_SERVICES = 10_000;

export interface ServiceInstance {
  instance_number: number;
  instance_ip?: string | null;
  instance_ip_v6?: string | null;
  nsip: string;
  nsip_v6?: string | null;
}

/** One service as the datapath should translate it (a ServiceTable plus the closest choice). */
export interface DesiredService {
  job_name: string;
  service_ip?: string | null;
  service_ip_v6?: string | null;
  closest_ip?: string | null;
  closest_ip_v6?: string | null;
  /** the instance closest_ip(_v6) goes to (see pickClosest); null/absent: no closest rule */
  closest?: { nsip: string; nsip_v6?: string | null } | null;
  /** healthy instances: round-robin targets and instance IPs */
  instances: readonly ServiceInstance[];
}

export interface ServiceRuleOptions {
  /** nftables table (family inet), e.g. serviceTable(namespace) */
  table: string;
  /** the instances' bridge */
  bridge: string;
  /** this worker's subnet and IPv6 subnet (hairpin masquerade) */
  subnet: string;
  subnet_v6?: string | null;
  /** still-untranslated destinations in these ranges are trapped; default 10.30.0.0/16 and fdff::/64 */
  virtualPools?: { v4: string; v6: string };
  /** the operator's extra IPv4 service ranges (root --extra-service-ranges), trapped too; at most 15 */
  extraVirtual4?: readonly string[];
}

export interface ServiceRules {
  /** text for `nft -f -` */
  text: string;
  /** services (job names) with at least one rule */
  programmed: string[];
  /** readable reasons for everything refused (a refused service gets no rule at all) */
  problems: string[];
}

const q = (s: string): string => JSON.stringify(s);
const show = (v: unknown): string => JSON.stringify(typeof v === 'string' ? v.slice(0, 64) : v ?? null)?.slice(0, 80) ?? 'undefined';
/** a comment nft accepts: printable ASCII without quotes or backslashes, at most 120 characters */
const commentOf = (s: string): string => q(s.replace(/[^\x20-\x7e]|["\\]/g, '_').slice(0, 120));

function v4(text: unknown): number | undefined {
  return typeof text === 'string' && text.length <= 15 ? parseIPv4(text) : undefined;
}
function v6(text: unknown): bigint | undefined {
  return typeof text === 'string' && text.length <= 39 ? parseIPv6(text.toLowerCase()) : undefined;
}

function unusable4(n: number): boolean {
  const a = n >>> 24;
  return a === 0 || a === 127 || a >= 224;
}
function unusable6(n: bigint): boolean {
  return n <= 1n || n >> 120n === 0xffn || n >> 118n === 0x3fan;
}

interface Checked {
  job: string;
  rr4?: { vip: string; targets: string[] };
  rr6?: { vip: string; targets: string[] };
  singles4: [string, string][];
  singles6: [string, string][];
}

/** Validates options; throws a readable Error (a programming error of the caller). */
function checkOptions(o: ServiceRuleOptions): { subnet: Subnet; subnet6?: Subnet6; pool4: Subnet[]; pool6: Subnet6 } {
  if (typeof o.table !== 'string' || !/^[A-Za-z][A-Za-z0-9_]{0,30}$/.test(o.table)) throw new Error(`bad table name ${show(o.table)}`);
  if (typeof o.bridge !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(o.bridge)) throw new Error(`bad bridge name ${show(o.bridge)}`);
  const subnet = parseSubnet(o.subnet);
  const subnet6 = o.subnet_v6 ? parseSubnet6(o.subnet_v6.toLowerCase()) : undefined;
  const extra = o.extraVirtual4 ?? [];
  if (!Array.isArray(extra) || extra.length > 15) throw new Error('extraVirtual4: give at most 15 IPv4 subnets');
  const pool4 = [parseSubnet(o.virtualPools?.v4 ?? DEFAULT_SERVICE_POOL), ...extra.map((c: string) => parseSubnet(c))];
  const pool6 = parseSubnet6(o.virtualPools?.v6 ?? DEFAULT_SERVICE_POOL_V6);
  return { subnet, subnet6, pool4, pool6 };
}

/**
 * The rule set for `desired`. Each service is checked: job name 1..255 printable characters;
 * virtual addresses in their family (service_ip/closest_ip/instance_ip IPv4, the `_v6` ones
 * IPv6), usable (not unspecified, loopback, multicast, link-local) and outside the local subnet;
 * no address claimed twice (by this service or an earlier one, in job-name order: the later one
 * is refused with the owner named); targets (nsip / nsip_v6) in their family. A bad target only
 * drops that instance; a bad or taken virtual address refuses the whole service.
 */
export function serviceRuleset(desired: readonly DesiredService[], options: ServiceRuleOptions): ServiceRules {
  const { subnet, subnet6, pool4, pool6 } = checkOptions(options);
  const problems: string[] = [];
  const owners = new Map<string, string>();
  const checked: Checked[] = [];
  const list = Array.isArray(desired) ? [...desired] : [];
  if (!Array.isArray(desired)) problems.push('services is not a list');
  if (list.length > MAX_SERVICES) { problems.push(`${list.length} services: only the first ${MAX_SERVICES} (by job name) are programmed`); }
  list.sort((a, b) => {
    const ka = typeof a?.job_name === 'string' ? a.job_name : '';
    const kb = typeof b?.job_name === 'string' ? b.job_name : '';
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  const seenJobs = new Set<string>();
  for (const svc of list.slice(0, MAX_SERVICES)) {
    if (typeof svc !== 'object' || svc === null) { problems.push('a service entry is not an object'); continue; }
    const job = svc.job_name;
    if (typeof job !== 'string' || job.length === 0 || job.length > 255 || /[\u0000-\u001f\u007f]/.test(job)) {
      problems.push(`job name ${show(job)} is not 1..255 printable characters`);
      continue;
    }
    const who = `service ${job.slice(0, 100)}`;
    if (seenJobs.has(job)) { problems.push(`${who}: listed twice, the first entry is used`); continue; }
    seenJobs.add(job);
    const mine = new Map<string, string>();
    const refuse: string[] = [];
    const claim = (field: string, text: unknown, family: 4 | 6): string | undefined => {
      if (text === undefined || text === null) return undefined;
      let ip: string | undefined;
      if (family === 4) {
        const n = v4(text);
        if (n === undefined) { refuse.push(`${field} ${show(text)} is not an IPv4 address`); return undefined; }
        if (unusable4(n) || (n >>> 16) === 0xa9fe) { refuse.push(`${field} ${formatIPv4(n)} cannot be a virtual address`); return undefined; }
        if (contains(subnet, n)) { refuse.push(`${field} ${formatIPv4(n)} lies in this worker's subnet ${formatSubnet(subnet)}`); return undefined; }
        ip = formatIPv4(n);
      } else {
        const n = v6(text);
        if (n === undefined) { refuse.push(`${field} ${show(text)} is not an IPv6 address`); return undefined; }
        if (unusable6(n)) { refuse.push(`${field} ${formatIPv6(n)} cannot be a virtual address`); return undefined; }
        if (subnet6 && contains6(subnet6, n)) { refuse.push(`${field} ${formatIPv6(n)} lies in this worker's subnet ${formatSubnet6(subnet6)}`); return undefined; }
        ip = formatIPv6(n);
      }
      const other = owners.get(ip) ?? mine.get(ip);
      if (other !== undefined) { refuse.push(`${field} ${ip} is already taken by ${other}`); return undefined; }
      mine.set(ip, field === 'service_ip' || field === 'service_ip_v6' ? who : `${field} of ${who}`);
      return ip;
    };
    const target4 = (text: unknown): string | undefined => {
      const n = v4(text);
      return n === undefined || unusable4(n) ? undefined : formatIPv4(n);
    };
    const target6 = (text: unknown): string | undefined => {
      const n = v6(text);
      return n === undefined || unusable6(n) ? undefined : formatIPv6(n);
    };
    const rrIp = claim('service_ip', svc.service_ip, 4);
    const rrIp6 = claim('service_ip_v6', svc.service_ip_v6, 6);
    const cIp = claim('closest_ip', svc.closest_ip, 4);
    const cIp6 = claim('closest_ip_v6', svc.closest_ip_v6, 6);
    const entry: Checked = { job, singles4: [], singles6: [] };
    const targets4: string[] = [];
    const targets6: string[] = [];
    const instances = Array.isArray(svc.instances) ? [...svc.instances] : [];
    if (!Array.isArray(svc.instances)) refuse.push('instances is not a list');
    if (instances.length > MAX_BACKENDS) refuse.push(`${instances.length} instances: more than ${MAX_BACKENDS}`);
    instances.sort((a, b) => (a?.instance_number ?? 0) - (b?.instance_number ?? 0));
    const numbers = new Set<number>();
    for (const inst of instances.slice(0, MAX_BACKENDS)) {
      if (typeof inst !== 'object' || inst === null) { problems.push(`${who}: an instance entry is not an object`); continue; }
      const n = inst.instance_number;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 1_000_000) { problems.push(`${who}: instance number ${show(n)} is not an integer 0..1000000`); continue; }
      if (numbers.has(n)) { problems.push(`${who}: instance ${n} listed twice, the first entry is used`); continue; }
      const t4 = target4(inst.nsip);
      if (t4 === undefined) { problems.push(`${who}: instance ${n}: nsip ${show(inst.nsip)} is not a usable IPv4 address; skipped`); continue; }
      const t6 = inst.nsip_v6 === undefined || inst.nsip_v6 === null ? undefined : target6(inst.nsip_v6);
      if (inst.nsip_v6 != null && t6 === undefined) problems.push(`${who}: instance ${n}: nsip_v6 ${show(inst.nsip_v6)} is not a usable IPv6 address; IPv6 skipped`);
      numbers.add(n);
      targets4.push(t4);
      if (t6) targets6.push(t6);
      const i4 = claim(`instance_ip of instance ${n}`, inst.instance_ip, 4);
      if (i4) entry.singles4.push([i4, t4]);
      const i6 = claim(`instance_ip_v6 of instance ${n}`, inst.instance_ip_v6, 6);
      if (i6 && t6) entry.singles6.push([i6, t6]);
    }
    if (svc.closest != null) {
      const c4 = target4(svc.closest.nsip);
      const c6 = svc.closest.nsip_v6 == null ? undefined : target6(svc.closest.nsip_v6);
      if (c4 === undefined) problems.push(`${who}: closest nsip ${show(svc.closest.nsip)} is not a usable IPv4 address; no closest rule`);
      if (cIp && c4) entry.singles4.push([cIp, c4]);
      if (cIp6 && c6) entry.singles6.push([cIp6, c6]);
    }
    if (refuse.length > 0) { problems.push(`${who} refused: ${refuse.join('; ')}`); continue; }
    for (const [ip, owner] of mine) owners.set(ip, owner);
    if (rrIp && targets4.length > 0) entry.rr4 = { vip: rrIp, targets: targets4 };
    if (rrIp6 && targets6.length > 0) entry.rr6 = { vip: rrIp6, targets: targets6 };
    checked.push(entry);
  }
  const text = render(checked, options.table, options.bridge, subnet, subnet6, pool4, pool6);
  const programmed = checked.filter((c) => c.rr4 || c.rr6 || c.singles4.length > 0 || c.singles6.length > 0).map((c) => c.job);
  return { text, programmed, problems };
}

const numgenMap = (targets: string[]): string => `numgen inc mod ${targets.length} map { ${targets.map((t, i) => `${i} : ${t}`).join(', ')} }`;

function render(services: Checked[], table: string, bridge: string, subnet: Subnet, subnet6: Subnet6 | undefined, pool4: Subnet[], pool6: Subnet6): string {
  const br = q(bridge);
  // one chain per round-robin address, reached through a verdict map (one lookup, however many services)
  const chains: string[] = [];
  const v4map: string[] = [];
  const v6map: string[] = [];
  const s4: string[] = [];
  const s6: string[] = [];
  services.forEach((s, i) => {
    if (s.rr4) {
      chains.push(`  chain rr4_${i} {`, `    dnat ip to ${numgenMap(s.rr4.targets)} comment ${commentOf(s.job)}`, '  }');
      v4map.push(`${s.rr4.vip} : jump rr4_${i}`);
    }
    if (s.rr6) {
      chains.push(`  chain rr6_${i} {`, `    dnat ip6 to ${numgenMap(s.rr6.targets)} comment ${commentOf(s.job)}`, '  }');
      v6map.push(`${s.rr6.vip} : jump rr6_${i}`);
    }
    for (const [vip, t] of s.singles4) s4.push(`${vip} : ${t}`);
    for (const [vip, t] of s.singles6) s6.push(`${vip} : ${t}`);
  });
  // sorted by address, so the text depends only on the content
  const by4 = (a: string, b: string): number => (parseIPv4(a.split(' ')[0] as string) as number) - (parseIPv4(b.split(' ')[0] as string) as number);
  const by6 = (a: string, b: string): number => {
    const x = parseIPv6(a.split(' ')[0] as string) as bigint;
    const y = parseIPv6(b.split(' ')[0] as string) as bigint;
    return x < y ? -1 : x > y ? 1 : 0;
  };
  s4.sort(by4);
  v4map.sort(by4);
  s6.sort(by6);
  v6map.sort(by6);
  const elements = (l: string[]): string[] => (l.length > 0 ? [`    elements = { ${l.join(', ')} }`] : []);
  const local4 = formatSubnet(subnet);
  // one range: as before; several (extra service ranges): an anonymous set
  const trap4 = pool4.length === 1 ? formatSubnet(pool4[0] as Subnet) : `{ ${pool4.map(formatSubnet).join(', ')} }`;
  const lines = [
    `table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    ...chains,
    '  map rr4 {',
    '    type ipv4_addr : verdict',
    ...elements(v4map),
    '  }',
    '  map rr6 {',
    '    type ipv6_addr : verdict',
    ...elements(v6map),
    '  }',
    '  map single4 {',
    '    type ipv4_addr : ipv4_addr',
    ...elements(s4),
    '  }',
    '  map single6 {',
    '    type ipv6_addr : ipv6_addr',
    ...elements(s6),
    '  }',
    '  chain services {',
    '    ip daddr vmap @rr4',
    '    ip6 daddr vmap @rr6',
    '    dnat ip to ip daddr map @single4',
    '    dnat ip6 to ip6 daddr map @single6',
    '  }',
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    `    iifname ${br} jump services`,
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    '    jump services',
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    oifname ${br} ct status dnat ip saddr ${local4} ip daddr ${local4} masquerade`,
    ...(subnet6 ? [`    oifname ${br} ct status dnat ip6 saddr ${formatSubnet6(subnet6)} ip6 daddr ${formatSubnet6(subnet6)} masquerade`] : []),
    '  }',
    '  chain trap {',
    '    type filter hook prerouting priority 0; policy accept;',
    `    iifname ${br} ip daddr ${trap4} limit rate 20/second meta nftrace set 1`,
    `    iifname ${br} ip6 daddr ${formatSubnet6(pool6)} limit rate 20/second meta nftrace set 1`,
    `    iifname ${br} ip daddr ${trap4} counter drop comment ${q(TRAP_COMMENT)}`,
    `    iifname ${br} ip6 daddr ${formatSubnet6(pool6)} counter drop comment ${q(TRAP_COMMENT)}`,
    '  }',
    '}',
    '',
  ];
  return lines.join('\n');
}

/** Text for `nft -f -` that removes the table (nothing happens when it does not exist). */
export function serviceTableDelete(table: string): string {
  if (!/^[A-Za-z][A-Za-z0-9_]{0,30}$/.test(table)) throw new Error(`bad table name ${show(table)}`);
  return `table inet ${table}\ndelete table inet ${table}\n`;
}

/**
 * One line of `nft monitor trace`: when it is the packet line of a trace in our table's `trap`
 * chain (only the trap rule turns tracing on), the packet's destination address, else undefined.
 * Example: `trace id 9c1e inet oakn trap packet: iif "oak0" ... ip saddr 10.18.0.2 ip daddr
 * 10.30.0.9 ...`. The rule line (`... trap rule ... comment "oak-unknown-virtual" (verdict drop)`)
 * carries no addresses, so the packet line is the one that counts.
 */
export function trapAddress(line: string, table: string): string | undefined {
  if (typeof line !== 'string' || line.length > 4096) return undefined;
  const m = /^trace id [0-9a-f]+ inet (\S+) (\S+) packet: (.*)$/.exec(line.trim());
  if (!m || m[1] !== table || m[2] !== 'trap') return undefined;
  const rest = m[3] as string;
  const d4 = / ip daddr (\d{1,3}(?:\.\d{1,3}){3})(?: |$)/.exec(` ${rest}`);
  if (d4) {
    const n = parseIPv4(d4[1] as string);
    return n === undefined ? undefined : formatIPv4(n);
  }
  const d6 = / ip6 daddr ([0-9a-fA-F:]{2,39})(?: |$)/.exec(` ${rest}`);
  if (d6) {
    const n = parseIPv6((d6[1] as string).toLowerCase());
    return n === undefined ? undefined : formatIPv6(n);
  }
  return undefined;
}
