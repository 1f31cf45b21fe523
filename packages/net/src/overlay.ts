/**
 * The overlay's kernel datapath between workers (issue 8), pure parts: device and table names,
 * the VTEP MAC of a subnet, and what the kernel must hold for the remote workers (routes,
 * neighbours, VXLAN forwarding entries), as a diff against what it holds now.
 *
 * Per remote peer (worker) with subnet S (gateway G = first host of S, MAC M = vtepMac(S)):
 *   ip route replace S via G dev <tunnel> onlink           (+ S6 via G6 for the IPv6 /64)
 *   ip neigh replace G lladdr M dev <tunnel> nud permanent  (+ G6)
 *   bridge fdb replace M dev <tunnel> dst <host_ip> port <host_port> self permanent
 * so that a packet for S leaves the tunnel device with the inner destination MAC M, which the
 * peer's own tunnel device carries (its MAC is vtepMac of its own subnet), to the peer's
 * NodePublicAddress:NodePublicPort. No learning, no flooding: every worker knows every peer.
 *
 * `diffPeerState` compares the desired state with the one parsed from `ip -j route/neigh` and
 * `bridge -j fdb` and gives the commands for `ip -batch -` and `bridge -batch -`: nothing when the
 * kernel already holds it (applying twice changes nothing), deletions for peers that left.
 */
import { tagOf, DEFAULT_NAMESPACE } from './plan.ts';
import { formatIPv4, formatSubnet, overlaps, parseIPv4, parseSubnet } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';
import { contains6, formatIPv6, formatSubnet6, maskOf6, parseIPv6, parseSubnet6 } from './ipv6.ts';
import type { Subnet6 } from './ipv6.ts';

/** The VXLAN device of a NodeEngine namespace: `oakx0` for `oak`, `oakx<tag>` otherwise (11 characters). */
export function tunnelDevice(namespace: string): string {
  return namespace === DEFAULT_NAMESPACE ? 'oakx0' : `oakx${tagOf(namespace)}`;
}

/** The NetManager's nftables table (family inet): `oakn` for `oak`, `oakn_<tag>` otherwise. */
export function serviceTable(namespace: string): string {
  return namespace === DEFAULT_NAMESPACE ? 'oakn' : `oakn_${tagOf(namespace)}`;
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

/**
 * The tunnel MAC of a worker subnet: `02:` (locally administered, unicast) then the four bytes
 * of the network address and the prefix length, e.g. 10.18.0.64/26 -> 02:0a:12:00:40:1a.
 * Different subnets give different MACs. Throws for anything but an IPv4 CIDR.
 */
export function vtepMac(subnetCidr: string): string {
  const s = parseSubnet(subnetCidr);
  const n = s.network;
  return ['02', hex2(n >>> 24), hex2((n >>> 16) & 255), hex2((n >>> 8) & 255), hex2(n & 255), hex2(s.prefix)].join(':');
}

/** The first host of an IPv4 subnet (the bridge gateway), e.g. 10.18.0.64/26 -> 10.18.0.65. */
export function gatewayOf(subnet: string): string {
  const s = parseSubnet(subnet);
  if (s.prefix > 30) throw new Error(`${subnet} has no room for a gateway`);
  return formatIPv4(s.network + 1);
}

/** The first host of an IPv6 subnet, e.g. fdff:18:0:1::/64 -> fdff:18:0:1::1. */
export function gatewayOf6(subnet6: string): string {
  const s = parseSubnet6(subnet6);
  if (s.prefix > 126) throw new Error(`${subnet6} has no room for a gateway`);
  return formatIPv6(s.network + 1n);
}

export interface RouteEntry { dst: string; via: string }
export interface NeighEntry { dst: string; lladdr: string }
export interface FdbEntry { mac: string; dst: string; port: number }

/** What the tunnel device holds (or should hold) for the peers; addresses in canonical form. */
export interface PeerState {
  routes: RouteEntry[];
  neighs: NeighEntry[];
  fdb: FdbEntry[];
}

export interface OwnOverlay {
  subnet: string;
  subnet_v6?: string | null;
  /** this worker's own tunnel endpoint: a peer entry with it and our subnet is ourselves */
  host_ip?: string;
  host_port?: number;
}

export interface DesiredPeers {
  state: PeerState;
  /** worker ids whose entries are in `state` */
  accepted: string[];
  /** one readable reason per refused peer (the peer is skipped, the others go on) */
  problems: string[];
}

const MAX_PEERS = 100_000;

/** canonical form of an IPv4 or IPv6 address, or undefined */
export function canonicalIp(text: unknown): { ip: string; family: 4 | 6 } | undefined {
  if (typeof text !== 'string' || text.length > 45) return undefined;
  const v4 = parseIPv4(text);
  if (v4 !== undefined) return { ip: formatIPv4(v4), family: 4 };
  const v6 = parseIPv6(text.toLowerCase());
  if (v6 !== undefined) return { ip: formatIPv6(v6), family: 6 };
  return undefined;
}

/** a tunnel endpoint must be a unicast address that is neither unspecified nor multicast */
function endpointProblem(ip: { ip: string; family: 4 | 6 }): string | undefined {
  if (ip.family === 4) {
    const n = parseIPv4(ip.ip) as number;
    if (n === 0 || n >>> 28 === 14 || n === 0xffffffff) return `${ip.ip} is not a unicast address`;
    return undefined;
  }
  const n = parseIPv6(ip.ip) as bigint;
  if (n === 0n || n >> 120n === 0xffn) return `${ip.ip} is not a unicast address`;
  return undefined;
}

const show = (v: unknown): string => JSON.stringify(typeof v === 'string' ? v.slice(0, 64) : v ?? null)?.slice(0, 80) ?? 'undefined';

function v6Overlaps(a: Subnet6, b: Subnet6): boolean {
  const p = Math.min(a.prefix, b.prefix);
  const m = maskOf6(p);
  return (a.network & m) === (b.network & m);
}

/**
 * The kernel state for `peers` (e.g. the `net/peers` list, which includes this worker: that
 * entry is recognised by our own subnet and skipped). Every peer is checked: subnet an IPv4 /16../30
 * not overlapping ours nor an earlier peer's, subnet_v6 (optional) an IPv6 /48../126 likewise,
 * host_ip a unicast IPv4/IPv6 address of the same family as our own endpoint (when given),
 * host_port 1..65535; a bad one is skipped with its reason.
 * Peers are taken in worker-id order, so the result does not depend on the list's order.
 */
export function desiredPeerState(own: OwnOverlay, peers: readonly unknown[]): DesiredPeers {
  const ownSubnet = parseSubnet(own.subnet);
  const ownV6 = own.subnet_v6 ? parseSubnet6(own.subnet_v6) : undefined;
  const problems: string[] = [];
  const accepted: string[] = [];
  const state: PeerState = { routes: [], neighs: [], fdb: [] };
  if (!Array.isArray(peers)) return { state, accepted, problems: ['peers is not a list'] };
  if (peers.length > MAX_PEERS) return { state, accepted, problems: [`${peers.length} peers: more than ${MAX_PEERS}`] };
  const list = peers
    .map((p, i) => ({ p: p as Record<string, unknown>, i }))
    .sort((a, b) => {
      const ka = typeof a.p?.worker_id === 'string' ? a.p.worker_id : '';
      const kb = typeof b.p?.worker_id === 'string' ? b.p.worker_id : '';
      return ka < kb ? -1 : ka > kb ? 1 : a.i - b.i;
    });
  const taken: { s: Subnet; who: string }[] = [{ s: ownSubnet, who: 'this worker' }];
  const taken6: { s: Subnet6; who: string }[] = ownV6 ? [{ s: ownV6, who: 'this worker' }] : [];
  const seen = new Set<string>();
  for (const { p, i } of list) {
    if (typeof p !== 'object' || p === null || Array.isArray(p)) { problems.push(`peer #${i}: not an object`); continue; }
    const id = p.worker_id;
    if (typeof id !== 'string' || id.length === 0 || id.length > 200 || /[\u0000-\u001f\u007f]/.test(id)) {
      problems.push(`peer #${i}: worker_id ${show(id)} is not 1..200 printable characters`);
      continue;
    }
    const who = `peer ${id.slice(0, 64)}`;
    if (seen.has(id)) { problems.push(`${who}: listed twice, the first entry is used`); continue; }
    let subnet: Subnet;
    try {
      if (typeof p.subnet !== 'string' || p.subnet.length > 18) throw new Error('not an IPv4 CIDR');
      subnet = parseSubnet(p.subnet);
    } catch { problems.push(`${who}: subnet ${show(p.subnet)} is not an IPv4 CIDR such as 10.18.0.64/26`); continue; }
    if (subnet.prefix < 16 || subnet.prefix > 30) { problems.push(`${who}: subnet ${formatSubnet(subnet)} must be a /16../30`); continue; }
    const host = canonicalIp(p.host_ip);
    const hostPort = p.host_port;
    const portOk = typeof hostPort === 'number' && Number.isInteger(hostPort) && hostPort >= 1 && hostPort <= 65535;
    if (subnet.network === ownSubnet.network && subnet.prefix === ownSubnet.prefix
      && (own.host_ip === undefined || (host !== undefined && host.ip === canonicalIp(own.host_ip)?.ip && (own.host_port === undefined || hostPort === own.host_port)))) {
      seen.add(id);
      continue; // ourselves
    }
    if (!host) { problems.push(`${who}: host_ip ${show(p.host_ip)} is not an IP address`); continue; }
    const hostBad = endpointProblem(host);
    if (hostBad) { problems.push(`${who}: host_ip ${hostBad}`); continue; }
    const ownFamily = own.host_ip === undefined ? undefined : canonicalIp(own.host_ip)?.family;
    if (ownFamily !== undefined && ownFamily !== host.family) {
      problems.push(`${who}: host_ip ${host.ip} is IPv${host.family} but this worker's tunnel endpoint is IPv${ownFamily} (one VXLAN device speaks one family)`);
      continue;
    }
    if (!portOk) { problems.push(`${who}: host_port ${show(hostPort)} is not a port 1..65535`); continue; }
    const clash = taken.find((t) => overlaps(t.s, subnet));
    if (clash) { problems.push(`${who}: subnet ${formatSubnet(subnet)} overlaps ${formatSubnet(clash.s)} of ${clash.who}`); continue; }
    let v6: Subnet6 | undefined;
    if (p.subnet_v6 !== undefined && p.subnet_v6 !== null) {
      try {
        if (typeof p.subnet_v6 !== 'string' || p.subnet_v6.length > 43) throw new Error('bad');
        v6 = parseSubnet6(p.subnet_v6.toLowerCase());
      } catch { problems.push(`${who}: subnet_v6 ${show(p.subnet_v6)} is not an IPv6 CIDR such as fdff:18:0:1::/64`); continue; }
      if (v6.prefix < 48 || v6.prefix > 126) { problems.push(`${who}: subnet_v6 ${formatSubnet6(v6)} must be a /48../126`); continue; }
      const v6s = v6;
      const clash6 = taken6.find((t) => v6Overlaps(t.s, v6s));
      if (clash6) { problems.push(`${who}: subnet_v6 ${formatSubnet6(v6)} overlaps ${formatSubnet6(clash6.s)} of ${clash6.who}`); continue; }
      if (contains6(v6, 0n) || v6.network >> 120n === 0xffn || v6.network >> 118n === 0x3fan) {
        problems.push(`${who}: subnet_v6 ${formatSubnet6(v6)} is not a unicast range`);
        continue;
      }
    }
    seen.add(id);
    taken.push({ s: subnet, who });
    if (v6) taken6.push({ s: v6, who });
    const cidr = formatSubnet(subnet);
    const gw = formatIPv4(subnet.network + 1);
    const mac = vtepMac(cidr);
    state.routes.push({ dst: cidr, via: gw });
    state.neighs.push({ dst: gw, lladdr: mac });
    state.fdb.push({ mac, dst: host.ip, port: hostPort as number });
    if (v6) {
      const gw6 = formatIPv6(v6.network + 1n);
      state.routes.push({ dst: formatSubnet6(v6), via: gw6 });
      state.neighs.push({ dst: gw6, lladdr: mac });
    }
    accepted.push(id);
  }
  return { state, accepted, problems };
}

function jsonList(text: string | undefined): Record<string, unknown>[] {
  if (text === undefined || text.trim() === '') return [];
  let v: unknown;
  try { v = JSON.parse(text); } catch { throw new Error('kernel state is not JSON (ip -j / bridge -j output expected)'); }
  if (!Array.isArray(v)) throw new Error('kernel state is not a JSON list');
  return v.filter((x): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x));
}

function canonicalCidr(text: unknown): string | undefined {
  if (typeof text !== 'string' || text.length > 50) return undefined;
  const [addr, prefix] = text.includes('/') ? text.split('/', 2) as [string, string] : [text, undefined];
  const ip = canonicalIp(addr);
  if (!ip) return undefined;
  const p = prefix === undefined ? (ip.family === 4 ? 32 : 128) : Number(prefix);
  if (!Number.isInteger(p) || p < 0 || p > (ip.family === 4 ? 32 : 128)) return undefined;
  return `${ip.ip}/${p}`;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/**
 * The peer state the kernel holds on the tunnel device, from the JSON of
 * `ip -j route show dev D`, `ip -j -6 route show dev D`, `ip -j neigh show dev D`,
 * `ip -j -6 neigh show dev D` and `bridge -j fdb show dev D`. Kernel routes (link-local,
 * no gateway) are left out; `devicePort` is the device's dstport (the fdb omits a port equal
 * to it). Throws when a text is not a JSON list.
 */
export function parseKernelState(texts: { routes?: string[]; neighs?: string[]; fdb?: string }, devicePort: number): PeerState {
  const state: PeerState = { routes: [], neighs: [], fdb: [] };
  for (const t of texts.routes ?? []) {
    for (const r of jsonList(t)) {
      if (r.protocol === 'kernel' || typeof r.gateway !== 'string') continue;
      if (r.table !== undefined && r.table !== 'main') continue;
      const dst = r.dst === 'default' ? (canonicalIp(r.gateway)?.family === 6 ? '::/0' : '0.0.0.0/0') : canonicalCidr(r.dst);
      const via = canonicalIp(r.gateway);
      if (dst && via) state.routes.push({ dst, via: via.ip });
    }
  }
  for (const t of texts.neighs ?? []) {
    for (const n of jsonList(t)) {
      const dst = canonicalIp(n.dst);
      const ll = typeof n.lladdr === 'string' ? n.lladdr.toLowerCase() : '';
      // only a permanent entry counts as ours; anything else is replaced (or deleted)
      const permanent = Array.isArray(n.state) && n.state.includes('PERMANENT');
      if (dst) state.neighs.push({ dst: dst.ip, lladdr: permanent && MAC.test(ll) ? ll : '' });
    }
  }
  for (const f of jsonList(texts.fdb)) {
    const mac = typeof f.mac === 'string' ? f.mac.toLowerCase() : '';
    if (!MAC.test(mac)) continue;
    const dst = canonicalIp(f.dst);
    const port = typeof f.port === 'number' ? f.port : devicePort;
    state.fdb.push({ mac, dst: dst?.ip ?? '', port });
  }
  return state;
}

/** `10.18.0.64/26` stays, a host route `10.18.0.64/32` prints without the prefix in ip's output */
function routeKey(dst: string): string {
  return canonicalCidr(dst) ?? dst;
}

export interface PeerCommands {
  /** lines for `ip -batch -` (routes and neighbours) */
  ip: string[];
  /** lines for `bridge -batch -` (VXLAN forwarding entries) */
  bridge: string[];
}

const DEV = /^[A-Za-z0-9_.-]{1,15}$/;

/**
 * Commands that turn `current` into `desired` on `device`: replace what is missing or different,
 * delete what is not desired (routes before neighbours before fdb entries are dropped, new fdb
 * entries before routes are added). Empty when nothing differs.
 */
export function diffPeerState(current: PeerState, desired: PeerState, device: string): PeerCommands {
  if (!DEV.test(device)) throw new Error(`bad device name ${show(device)}`);
  const ip: string[] = [];
  const bridge: string[] = [];
  const curRoutes = new Map(current.routes.map((r) => [routeKey(r.dst), r.via]));
  const wantRoutes = new Map(desired.routes.map((r) => [routeKey(r.dst), r.via]));
  const curNeigh = new Map(current.neighs.map((n) => [n.dst, n.lladdr]));
  const wantNeigh = new Map(desired.neighs.map((n) => [n.dst, n.lladdr]));
  const curFdb = new Map<string, FdbEntry[]>();
  for (const f of current.fdb) curFdb.set(f.mac, [...(curFdb.get(f.mac) ?? []), f]);
  const wantFdb = new Map(desired.fdb.map((f) => [f.mac, f]));

  for (const [dst] of curRoutes) if (!wantRoutes.has(dst)) ip.push(`route del ${dst} dev ${device}`);
  for (const [dst] of curNeigh) if (!wantNeigh.has(dst)) ip.push(`neigh del ${dst} dev ${device}`);
  for (const [mac] of curFdb) if (!wantFdb.has(mac)) bridge.push(`fdb del ${mac} dev ${device}`);

  for (const [mac, f] of wantFdb) {
    const cur = curFdb.get(mac);
    const same = cur !== undefined && cur.length === 1 && cur[0]?.dst === f.dst && cur[0]?.port === f.port;
    if (same) continue;
    // several remotes for one MAC (an `append` from elsewhere): start again with exactly one
    if (cur !== undefined && cur.length > 1) bridge.push(`fdb del ${mac} dev ${device}`);
    bridge.push(`fdb replace ${mac} dev ${device} dst ${f.dst} port ${f.port} self permanent`);
  }
  for (const [dst, ll] of wantNeigh) {
    if (curNeigh.get(dst) === ll) continue;
    ip.push(`neigh replace ${dst} lladdr ${ll} dev ${device} nud permanent`);
  }
  for (const [dst, via] of wantRoutes) {
    if (curRoutes.get(dst) === via) continue;
    ip.push(`route replace ${dst} via ${via} dev ${device} onlink`);
  }
  return { ip, bridge };
}
