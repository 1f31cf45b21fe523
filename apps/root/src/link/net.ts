/**
 * Pure helpers of the root's overlay messages on the link (issue 8): checking what a cluster
 * reports (an instance's net info, its workers' overlay places) against what the root gave out,
 * a service's table from stored rows, the peer list each cluster gets, and the bounds of a link
 * (request rate, interest set size).
 *
 * Trust: a cluster is authenticated (its join token) but may only speak for its own workers: a
 * worker's subnet belongs to the cluster that asked for it first (overlay.ts records it), net
 * info of an instance must lie in the subnet the root gave its worker, and a worker shows up as a
 * peer only with that subnet.
 */
import type { ClusterResources, InstanceNet, OverlayPeer, ServiceTable, TableEntry } from '@oak/contracts';
import { contains, contains6, parseIPv4, parseIPv6, parseSubnet, parseSubnet6 } from '@oak/net';
import type { InstanceRow, ServiceRow } from '@oak/store';

/** jobs one link may be interested in at once (table_query registers, interest_remove drops) */
export const MAX_INTEREST_PER_LINK = 4096;
/** subnet_request + table_query per link: sustained per second, and the burst */
export const LINK_NET_RATE = 200;
export const LINK_NET_BURST = 400;
/** table_update pushes are coalesced over this window */
export const TABLE_UPDATE_COALESCE_MS = 25;

const isIp = (s: unknown): boolean => typeof s === 'string' && s.length <= 64 && (parseIPv4(s) !== undefined || parseIPv6(s) !== undefined);

function subnet4(text: string): ReturnType<typeof parseSubnet> | undefined {
  try {
    return parseSubnet(text);
  } catch {
    return undefined;
  }
}
function subnet6(text: string): ReturnType<typeof parseSubnet6> | undefined {
  try {
    return parseSubnet6(text);
  } catch {
    return undefined;
  }
}

/**
 * Why this net info is refused, or undefined when it holds: addresses well formed, nsip inside
 * subnet (and nsip_v6 inside subnet_v6), and the subnets those the root gave the worker.
 */
export function netProblem(net: InstanceNet, given: { subnet: string; subnet_v6: string | null } | undefined): string | undefined {
  const s4 = subnet4(net.subnet);
  if (!s4) return `subnet ${JSON.stringify(net.subnet.slice(0, 64))} is not an IPv4 CIDR`;
  const ip4 = parseIPv4(net.nsip);
  if (ip4 === undefined) return `nsip ${JSON.stringify(net.nsip.slice(0, 64))} is not an IPv4 address`;
  if (!contains(s4, ip4)) return `nsip ${net.nsip} is outside subnet ${net.subnet}`;
  if (!isIp(net.host_ip)) return `host_ip ${JSON.stringify(net.host_ip.slice(0, 64))} is not an address`;
  if (net.subnet_v6 !== undefined && net.subnet_v6 !== null) {
    const s6 = subnet6(net.subnet_v6);
    if (!s6) return `subnet_v6 ${JSON.stringify(net.subnet_v6.slice(0, 64))} is not an IPv6 CIDR`;
    if (net.nsip_v6 !== undefined && net.nsip_v6 !== null) {
      const ip6 = parseIPv6(net.nsip_v6);
      if (ip6 === undefined || !contains6(s6, ip6)) return `nsip_v6 ${JSON.stringify(net.nsip_v6.slice(0, 64))} is not an address of subnet_v6 ${net.subnet_v6}`;
    }
  } else if (net.nsip_v6 !== undefined && net.nsip_v6 !== null) {
    return 'nsip_v6 without subnet_v6';
  }
  if (!given) return 'the worker has no overlay subnet from the root';
  if (subnet4(given.subnet)?.network !== s4.network || s4.prefix !== subnet4(given.subnet)?.prefix) return `subnet ${net.subnet} is not the worker's (${given.subnet})`;
  if (net.subnet_v6 !== undefined && net.subnet_v6 !== null && (given.subnet_v6 === null || subnet6(given.subnet_v6)?.network !== subnet6(net.subnet_v6)?.network)) {
    return `subnet_v6 ${net.subnet_v6} is not the worker's (${given.subnet_v6 ?? 'none'})`;
  }
  return undefined;
}

/** the table entry of one stored instance, or undefined when it is not reachable (not RUNNING, its probe not healthy, no net info) */
export function tableEntryOf(row: InstanceRow): TableEntry | undefined {
  if (row.status !== 'RUNNING' || (row.health !== null && row.health !== 'healthy') || row.net === null || row.worker_id === null || row.worker_id === '') return undefined;
  const e: TableEntry = {
    instance_number: row.instance_number,
    instance_ip: row.instance_ip,
    instance_ip_v6: row.instance_ip_v6,
    nsip: row.net.nsip,
    nsip_v6: row.net.nsip_v6 ?? null,
    worker_id: row.worker_id,
    cluster_id: row.cluster_id,
    host_ip: row.net.host_ip,
    host_port: row.net.host_port,
    subnet: row.net.subnet,
    subnet_v6: row.net.subnet_v6 ?? null,
  };
  return e;
}

/** a service's table across all clusters (rows: its instances; `skip`: rows known to be going) */
export function tableOf(job: string, s: ServiceRow | undefined, rows: readonly InstanceRow[], skip: (r: InstanceRow) => boolean = () => false): ServiceTable {
  if (!s) return { job_name: job, service_ip: null, service_ip_v6: null, closest_ip: null, closest_ip_v6: null, instances: [] };
  const instances: TableEntry[] = [];
  for (const r of rows) {
    if (skip(r)) continue;
    const e = tableEntryOf(r);
    if (e) instances.push(e);
  }
  instances.sort((a, b) => a.instance_number - b.instance_number);
  return { job_name: s.job_name, service_ip: s.service_ip, service_ip_v6: s.service_ip_v6, closest_ip: s.closest_ip, closest_ip_v6: s.closest_ip_v6, instances };
}

/**
 * The overlay peers a cluster reports in its aggregate that the root vouches for: a worker the
 * cluster owns (asked its subnet) with the subnet the root gave it and a well-formed endpoint.
 */
export function peersOf(
  clusterId: string,
  resources: ClusterResources | null,
  given: (worker: string) => { subnet: string; subnet_v6: string | null; owner: string | undefined } | undefined,
): OverlayPeer[] {
  const out: OverlayPeer[] = [];
  for (const w of resources?.worker_summary ?? []) {
    const n = w.net;
    if (!n || n.subnet === null || n.host_ip === undefined || n.host_ip === null || n.host_port === undefined || n.host_port === null) continue;
    const g = given(w.id);
    if (!g || g.owner !== clusterId || g.subnet !== n.subnet || !isIp(n.host_ip)) continue;
    out.push({ worker_id: w.id, cluster_id: clusterId, subnet: g.subnet, subnet_v6: g.subnet_v6, host_ip: n.host_ip, host_port: n.host_port });
  }
  return out.sort((a, b) => (a.worker_id < b.worker_id ? -1 : a.worker_id > b.worker_id ? 1 : 0));
}

/** A token bucket: `rate` per second, up to `burst` at once. */
export class TokenBucket {
  #tokens: number;
  #at: number;
  constructor(
    readonly rate: number,
    readonly burst: number,
    now = Date.now(),
  ) {
    this.#tokens = burst;
    this.#at = now;
  }
  take(now = Date.now()): boolean {
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.rate);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
