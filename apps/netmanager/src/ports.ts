/**
 * What the NetManager needs from its kernel parts, as interfaces: the datapath (datapath.ts: VXLAN,
 * routes, nftables DNAT, conntrack) and the resolver (dns.ts). The shell gets factories for both,
 * so tests run the control plane against fakes and the real classes drop in unchanged.
 */
import type { OverlayPeer } from '@oak/contracts';
import type { Logger } from '@oak/bus';
import type { DatapathOptions } from './datapath.ts';

/** One instance of a service as the datapath translates to it. */
export interface DatapathInstance {
  instance_number: number;
  instance_ip: string | null;
  instance_ip_v6: string | null;
  nsip: string;
  nsip_v6: string | null;
}

/** One service the datapath programs (DNAT of its service, closest and instance IPs). */
export interface DatapathService {
  job_name: string;
  service_ip: string | null;
  service_ip_v6: string | null;
  closest_ip: string | null;
  closest_ip_v6: string | null;
  /** the instance `closest_ip` goes to (null: none reachable) */
  closest?: { nsip: string; nsip_v6: string | null } | null;
  instances: DatapathInstance[];
}

/** the real Datapath's options (a type-only import: nothing of the kernel part loads) */
export type { DatapathOptions } from './datapath.ts';

/** H1's Datapath (apps/netmanager/src/datapath.ts) satisfies this. */
export interface DatapathPort {
  /** builds or adopts (after a restart) the tunnel device, routes and the nftables table */
  init(): unknown;
  /** may resolve `{ problems: string[] }` (peers refused, logged) */
  setPeers(peers: OverlayPeer[]): unknown;
  /** may resolve `{ problems: string[] }` (services refused, logged) */
  setServices(services: DatapathService[]): unknown;
  /** the root's extra IPv4 service ranges (trapped like 10.30.0.0/16); re-applies the rules when they changed */
  setServiceRanges?(ranges: readonly string[]): unknown;
  /** an instance left: its conntrack entries go */
  forgetInstance(nsip: string, nsip_v6?: string | null): unknown;
  /** traffic from the bridge to a virtual address that has no translation yet */
  watchUnknown(cb: (ip: string) => void): unknown;
  readonly mtu: number;
  readonly tunnelDevice: string;
  /** stops watching; the kernel state stays (flows keep running) */
  close(): unknown;
  /** removes everything the datapath made */
  clean(): unknown;
}

export type DatapathFactory = (opts: DatapathOptions) => DatapathPort;

/**
 * Called for overlay names only (the resolver forwards everything outside `.oak` itself):
 * `string[]` the addresses of the family asked (`[]`: the name exists without one, NODATA),
 * undefined: no such name (NXDOMAIN).
 */
export type ResolverLookup = (name: string, type: 'A' | 'AAAA') => Promise<string[] | undefined>;

export interface ResolverOptions {
  lookup: ResolverLookup;
  upstreams: string[];
  log: Logger;
}

/** H3's OverlayResolver (apps/netmanager/src/dns.ts) satisfies this. */
export interface ResolverPort {
  /** throws (EADDRNOTAVAIL) while the address is not on the bridge yet: the caller retries */
  listen(opts: { host: string; port: number }): Promise<unknown>;
  close(): unknown;
}

export type ResolverFactory = (opts: ResolverOptions) => ResolverPort;
