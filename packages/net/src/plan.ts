/**
 * The address plan of a worker's instance bridge: its name, its subnet, the gateway, and the
 * names and addresses of each instance's network namespace and veth. Pure.
 *
 * Every name is derived from the NodeEngine `--namespace`, so several NodeEngines on one kernel
 * (tests, e2e, a 1-DOC next to a worker) never collide: bridge `oak0` and nftables table `oak`
 * for the default namespace `oak`, `oakb<tag>` / `oak_<tag>` for another one, where `<tag>` is 6
 * hex digits of SHA-256(namespace).
 *
 * Addresses: the default subnet of namespace `oak` is 172.30.0.0/24; another namespace gets
 * 172.30.<1..254>.0/24 from its tag. 172.30.0.0/16 collides neither with the overlay plan
 * (10.18.0.0/16 instance addresses, 10.30.0.0/16 service IPs) nor with Docker's 172.17.0.0/16.
 * The NetManager will later give each worker 10.18.<x>.0/26 of the overlay: a plan built from any
 * /16../29 subnet works the same way (`--bridge-subnet 10.18.4.0/26`), the gateway is the first
 * host and instances take the next free ones.
 *
 * IPv6 and MTU (the overlay, issue 8): `bridgePlan(ns, subnet, { subnetV6, mtu })` adds a /64
 * (or longer, up to /120) unique-local subnet (fc00::/7): the gateway is `<prefix>::1` and an
 * instance's IPv6 address has the same host index as its IPv4 one, added to the prefix, so it
 * reads in hex: 10.18.0.66 (index 2 of 10.18.0.64/26) -> fdff:18:0:1::2, index 10 -> `...::a`
 * (`addressV6`). The MTU goes on both ends of every veth (the overlay's is the uplink's minus
 * the VXLAN header). Without these options the plan is what it always was (IPv4 only).
 */
import { createHash } from 'node:crypto';
import { contains, formatIPv4, formatSubnet, isPrivate, parseIPv4, parseSubnet, size } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';
import { contains6, formatIPv6, formatSubnet6, parseSubnet6 } from './ipv6.ts';
import type { Subnet6 } from './ipv6.ts';

export const DEFAULT_NAMESPACE = 'oak';
export const INSTANCE_POOL = '172.30.0.0/16';
/** the overlay's own ranges (SPEC §6): instance addresses and service IPs */
export const OVERLAY_RANGES = ['10.18.0.0/16', '10.30.0.0/16'] as const;

export interface BridgePlan {
  namespace: string;
  /** 6 hex digits of SHA-256(namespace) */
  tag: string;
  /** Linux bridge device (at most 15 characters) */
  bridge: string;
  /**
   * the bridge's MAC, fixed (locally administered, from the namespace): a bridge without one
   * takes the lowest MAC of its ports and changes it as instances come and go, and the instances
   * then send to the old gateway MAC until their neighbour entry goes stale (tens of seconds)
   */
  mac: string;
  /** nftables table (family ip) */
  table: string;
  subnet: Subnet;
  /** e.g. `172.30.0.0/24` */
  cidr: string;
  /** the bridge's own address, the instances' default route */
  gateway: string;
  /** IPv6 (only when a v6 subnet was given): unique-local subnet, e.g. `fdff:18:0:1::/64` */
  subnet6?: Subnet6;
  cidr6?: string;
  /** `<prefix>::1` */
  gateway6?: string;
  /** MTU of the instances' veths (only when given) */
  mtu?: number;
}

export interface PlanOptions {
  /** IPv6 subnet of the bridge (/64../120, inside fc00::/7) */
  subnetV6?: string | null | undefined;
  /** MTU of the instance veths (576..65535; 1280.. with IPv6) */
  mtu?: number | undefined;
}

const ULA = parseSubnet6('fc00::/7');

export function tagOf(namespace: string): string {
  return createHash('sha256').update(namespace).digest('hex').slice(0, 6);
}

export function defaultSubnet(namespace: string): string {
  if (namespace === DEFAULT_NAMESPACE) return '172.30.0.0/24';
  const n = (parseInt(tagOf(namespace), 16) % 254) + 1;
  return `172.30.${n}.0/24`;
}

/** The plan of one NodeEngine; throws a readable Error for an unusable subnet. */
/** `02:xx:xx:xx:xx:xx` from SHA-256 of the namespace: unicast, locally administered, the same on every start */
export function bridgeMac(namespace: string): string {
  const h = createHash('sha256').update(`oak-bridge:${namespace}`).digest();
  return ['02', ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export function bridgePlan(namespace: string, subnetText?: string, opts: PlanOptions = {}): BridgePlan {
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/.test(namespace)) throw new Error(`namespace ${JSON.stringify(namespace)}: use letters, digits, - and _`);
  const cidr = subnetText ?? defaultSubnet(namespace);
  const subnet = parseSubnet(cidr);
  if (subnet.prefix < 16 || subnet.prefix > 29) throw new Error(`bridge subnet ${cidr}: give a prefix between /16 and /29`);
  if (!isPrivate(subnet)) throw new Error(`bridge subnet ${cidr} is not a private (RFC 1918) range`);
  const tag = tagOf(namespace);
  const def = namespace === DEFAULT_NAMESPACE;
  const plan: BridgePlan = {
    namespace,
    tag,
    bridge: def ? 'oak0' : `oakb${tag}`,
    mac: bridgeMac(namespace),
    table: def ? 'oak' : `oak_${tag}`,
    subnet,
    cidr: formatSubnet(subnet),
    gateway: formatIPv4(subnet.network + 1),
  };
  if (opts.subnetV6 !== undefined && opts.subnetV6 !== null) {
    const text = opts.subnetV6;
    const s6 = parseSubnet6(text);
    if (s6.prefix < 64 || s6.prefix > 120) throw new Error(`bridge IPv6 subnet ${text}: give a prefix between /64 and /120`);
    if (!contains6(ULA, s6.network)) throw new Error(`bridge IPv6 subnet ${text} is not a unique-local (fc00::/7) range`);
    if (128 - s6.prefix < 32 - subnet.prefix) throw new Error(`bridge IPv6 subnet ${text} is smaller than the IPv4 subnet ${plan.cidr}`);
    plan.subnet6 = s6;
    plan.cidr6 = formatSubnet6(s6);
    plan.gateway6 = formatIPv6(s6.network + 1n);
  }
  if (opts.mtu !== undefined) {
    const min = plan.subnet6 !== undefined ? 1280 : 576;
    if (!Number.isInteger(opts.mtu) || opts.mtu < min || opts.mtu > 65535) throw new Error(`MTU ${String(opts.mtu)}: give a whole number between ${min} and 65535${min === 1280 ? ' (IPv6 needs 1280)' : ''}`);
    plan.mtu = opts.mtu;
  }
  return plan;
}

/** The instance's IPv6 address (same host index as its IPv4 one), undefined when the plan has no IPv6. */
export function addressV6(plan: BridgePlan, ip: string): string | undefined {
  if (plan.subnet6 === undefined) return undefined;
  return formatIPv6(plan.subnet6.network + BigInt(hostIndex(plan, ip)));
}

/** number of instance addresses (all hosts but the gateway) */
export function capacity(plan: BridgePlan): number {
  return size(plan.subnet) - 3;
}

/** The lowest free instance address of the plan, or undefined when the subnet is full. */
export function allocateAddress(plan: BridgePlan, used: Iterable<string>): string | undefined {
  const taken = new Set<number>();
  for (const u of used) {
    const n = parseIPv4(u);
    if (n !== undefined) taken.add(n);
  }
  const first = plan.subnet.network + 2;
  const last = plan.subnet.network + size(plan.subnet) - 2;
  for (let ip = first; ip <= last; ip++) if (!taken.has(ip)) return formatIPv4(ip);
  return undefined;
}

export function inPlan(plan: BridgePlan, ip: string): boolean {
  const n = parseIPv4(ip);
  return n !== undefined && contains(plan.subnet, n) && n > plan.subnet.network + 1 && n < plan.subnet.network + size(plan.subnet) - 1;
}

/** host index of an address in the plan (2 for the first instance) */
function hostIndex(plan: BridgePlan, ip: string): number {
  const n = parseIPv4(ip);
  if (n === undefined || !inPlan(plan, ip)) throw new Error(`${ip} is not an instance address of ${plan.cidr}`);
  return n - plan.subnet.network;
}

/** Name of the network namespace (`/run/netns/<name>`) that holds the instance address `ip`. */
export function netnsName(plan: BridgePlan, ip: string): string {
  return `oak-${plan.tag}-${hostIndex(plan, ip).toString(16)}`;
}

/** Host side of the instance's veth (at most 15 characters); the other side is `eth0` inside. */
export function vethName(plan: BridgePlan, ip: string): string {
  return `oakv${plan.tag}${hostIndex(plan, ip).toString(16)}`;
}

/** Does a namespace name belong to this plan? (stale namespaces of a crash are found this way) */
export function isPlanNetns(plan: BridgePlan, name: string): boolean {
  return name.startsWith(`oak-${plan.tag}-`) && /^[0-9a-f]{1,5}$/.test(name.slice(`oak-${plan.tag}-`.length));
}

/** The address a namespace name stands for (inverse of netnsName), if it is one of this plan. */
export function addressOfNetns(plan: BridgePlan, name: string): string | undefined {
  if (!isPlanNetns(plan, name)) return undefined;
  const idx = parseInt(name.slice(`oak-${plan.tag}-`.length), 16);
  const ip = formatIPv4(plan.subnet.network + idx);
  return inPlan(plan, ip) ? ip : undefined;
}
