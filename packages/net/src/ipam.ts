/**
 * IPAM of the overlay (issue 8, SPEC §8): worker subnets, service IPs and instance addresses,
 * IPv4 and IPv6. Pure: no I/O; the root persists `serialize()` before acting and `Ipam.load`s it
 * back; clusters stay stateless.
 *
 * - Worker subnets: /26 blocks (`workerPrefix`) of `workerPool` (default 10.18.0.0/16, 1024
 *   blocks), one per worker id; allocating twice gives the same block back. Block k of the IPv4
 *   pool comes with /64 number k of `workerPoolV6` (default fdff:18::/48), derived, not stored.
 * - Service and instance addresses from `servicePool` (default 10.30.0.0/16) and `servicePoolV6`
 *   (default fdff::/64, a ULA range): one round-robin service IP (`rr_ip`, `rr_ip_v6`) per job
 *   name, one address of each family per (job name, instance number). The pool's first and last
 *   address (network, broadcast) are never handed out.
 * - Order: always the lowest free address/block (a min-heap of released slots plus a next pointer
 *   over never-used ones), so the result depends only on which addresses are taken, never on the
 *   history: a released address is the next one handed out if it is the lowest free one. Every
 *   call is O(log n) amortised in the number of allocations.
 * - Closest IPs (`closest_ip`, `closest_ip_v6`): one more address of each pool per service, asked
 *   for with `allocateService(job, { closest: true })` (allocated right after the round-robin
 *   ones; a service that has none yet gets them on such a call; `Ipam.load(state, { closest: true })`
 *   gives them to every service of an older state), released with the service.
 * - An explicit `rr_ip` (`rr_ip_v6`) inside the pool is honoured if free and refused with the owner
 *   named if not; outside the pool it is accepted with `outsidePool: true` (Oakestra's example
 *   uses 192.168.178.4) and still checked against other services; inside a worker pool, or an
 *   unspecified, loopback, link-local, multicast or broadcast address, it is refused.
 * - Extra service ranges (`IpamOptions.extraServicePools`, the operator's widened range, issue 12):
 *   IPv4 CIDRs besides the pool in which a requested rr_ip is honoured as it is (`outsidePool:
 *   false`, `inExtraPool: true`); nothing is ever allocated from them on its own. They are a
 *   setting, not state: `serialize()` does not write them, `Ipam.load(state, { extraServicePools })`
 *   takes them again. They may not overlap the worker pool, the service pool or each other.
 */
import { formatIPv4, formatSubnet, parseIPv4, parseSubnet, overlaps, contains } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';
import { contains6, formatIPv6, formatSubnet6, parseIPv6, parseSubnet6 } from './ipv6.ts';
import type { Subnet6 } from './ipv6.ts';

export const DEFAULT_WORKER_POOL = '10.18.0.0/16';
export const DEFAULT_WORKER_PREFIX = 26;
export const DEFAULT_SERVICE_POOL = '10.30.0.0/16';
export const DEFAULT_SERVICE_POOL_V6 = 'fdff::/64';
export const DEFAULT_WORKER_POOL_V6 = 'fdff:18::/48';
/** job names and worker ids: 1..255 printable characters */
export const MAX_KEY_LENGTH = 255;
/** instance numbers: 0..MAX_INSTANCE */
export const MAX_INSTANCE = 1_000_000;

export type IpamErrorCode =
  | 'invalid-pool' | 'invalid-address' | 'invalid-key' | 'exhausted' | 'conflict' | 'unknown-service' | 'invalid-state';

export class IpamError extends Error {
  override readonly name = 'IpamError';
  constructor(readonly code: IpamErrorCode, message: string, readonly owner?: string) {
    super(message);
  }
}

export interface IpamConfig {
  workerPool: string;
  workerPrefix: number;
  servicePool: string;
  servicePoolV6: string;
  workerPoolV6: string;
}

/** Settings of an Ipam that are not part of its state (given again on every load). */
export interface IpamOptions {
  /** IPv4 CIDRs (at most MAX_EXTRA_POOLS) where a requested rr_ip is honoured besides the service pool */
  extraServicePools?: readonly string[];
}

/** the most extra service ranges (the workers' trap takes the pool plus these) */
export const MAX_EXTRA_POOLS = 15;

export interface ServiceAddresses {
  rr_ip: string;
  /** true when the rr_ip lies in one of the extra service ranges (honoured, not outside) */
  inExtraPool?: boolean;
  rr_ip_v6: string;
  /** true when the requested rr_ip / rr_ip_v6 lies outside its pool (a warning, not an error) */
  outsidePool: boolean;
  outsidePoolV6: boolean;
  /** the closest IPs, present once allocated (`allocateService(job, { closest: true })`) */
  closest_ip?: string;
  closest_ip_v6?: string;
}

export interface ServiceRequest {
  rr_ip?: string;
  rr_ip_v6?: string;
  /** also allocate the service's closest IPs (when it has none yet) */
  closest?: boolean;
}

export interface InstanceAddresses {
  ip: string;
  ip_v6: string;
}

export interface IpamState {
  version: 1;
  config: IpamConfig;
  workers: { worker: string; subnet: string }[];
  /** closest_ip / closest_ip_v6 are absent in states written before they existed */
  services: { job: string; rr_ip: string; rr_ip_v6: string; closest_ip?: string; closest_ip_v6?: string }[];
  instances: { job: string; instance: number; ip: string; ip_v6: string }[];
}

/** Binary min-heap of bigints. */
class MinHeap {
  private readonly a: bigint[] = [];
  get size(): number { return this.a.length; }
  push(v: bigint): void {
    const a = this.a;
    let i = a.length;
    a.push(v);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((a[p] as bigint) <= v) break;
      a[i] = a[p] as bigint;
      i = p;
    }
    a[i] = v;
  }
  pop(): bigint | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= a.length) break;
      const r = l + 1;
      const c = r < a.length && (a[r] as bigint) < (a[l] as bigint) ? r : l;
      if ((a[c] as bigint) >= last) break;
      a[i] = a[c] as bigint;
      i = c;
    }
    a[i] = last;
    return top;
  }
}

/**
 * Slots first..last; `allocate` gives the lowest free one. Invariant: every free slot below
 * `next` is in the heap (the heap may also hold stale, taken slots, dropped when popped).
 */
class Slots {
  /**
   * Slot -> owner; a released slot stays as an `undefined` tombstone (deleting and re-adding a key
   * lengthens V8's hash chains until the next rehash, which made reuse superlinear) until the
   * tombstones outnumber the live entries, then the map is rebuilt: amortised O(1).
   */
  private owners = new Map<bigint, string | undefined>();
  private live = 0;
  private tombs = 0;
  private readonly heap = new MinHeap();
  private next: bigint;
  constructor(readonly first: bigint, readonly last: bigint) { this.next = first; }
  get used(): number { return this.live; }
  owner(s: bigint): string | undefined { return this.owners.get(s); }
  inRange(s: bigint): boolean { return s >= this.first && s <= this.last; }
  /** claims a free slot (the caller checked `owner(s) === undefined`) */
  take(s: bigint, owner: string): void {
    if (this.owners.has(s)) this.tombs--;
    this.owners.set(s, owner);
    this.live++;
  }
  allocate(owner: string): bigint | undefined {
    while (this.heap.size > 0) {
      const s = this.heap.pop() as bigint;
      if (this.owners.get(s) === undefined) { this.take(s, owner); return s; }
    }
    while (this.next <= this.last && this.owners.get(this.next) !== undefined) this.next++;
    if (this.next > this.last) return undefined;
    const s = this.next++;
    this.take(s, owner);
    return s;
  }
  release(s: bigint): void {
    if (this.owners.get(s) === undefined) return;
    this.owners.set(s, undefined);
    this.live--;
    this.tombs++;
    if (s < this.next) this.heap.push(s);
    if (this.tombs > this.live + 1024) {
      const kept = new Map<bigint, string | undefined>();
      for (const [k, v] of this.owners) if (v !== undefined) kept.set(k, v);
      this.owners = kept;
      this.tombs = 0;
    }
  }
}

function poolError(what: string, text: unknown, why: string): IpamError {
  return new IpamError('invalid-pool', `${what} ${JSON.stringify(String(text).slice(0, 64))}: ${why}`);
}

function v4Pool(what: string, text: unknown, min: number, max: number): Subnet {
  if (typeof text !== 'string' || text.length > 64) throw poolError(what, text, 'not an IPv4 CIDR such as 10.30.0.0/16');
  let s: Subnet;
  try { s = parseSubnet(text); } catch (e) { throw poolError(what, text, (e as Error).message); }
  if (s.prefix < min || s.prefix > max) throw poolError(what, text, `the prefix must be /${min}../${max}`);
  return s;
}

function checkKey(what: string, key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH || /[\u0000-\u001f\u007f]/.test(key)) {
    throw new IpamError('invalid-key', `${what} must be 1..${MAX_KEY_LENGTH} printable characters`);
  }
  return key;
}

function checkInstance(n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_INSTANCE) {
    throw new IpamError('invalid-key', `instance number must be an integer 0..${MAX_INSTANCE}`);
  }
  return n;
}

/** addresses no service may use: unspecified, loopback, link-local, multicast, broadcast */
function unusableV4(ip: number): boolean {
  const a = ip >>> 24;
  return a === 0 || a === 127 || a >= 224 || (ip >>> 16) === 0xa9fe;
}
function unusableV6(ip: bigint): boolean {
  return ip <= 1n || (ip >> 120n) === 0xffn || (ip >> 118n) === 0x3fan;
}

const instanceOwner = (job: string, n: number): string => `instance ${n} of ${job}`;
const serviceOwner = (job: string): string => `service ${job}`;
const closestOwner = (job: string): string => `closest IP of service ${job}`;

export class Ipam {
  readonly config: Readonly<IpamConfig>;
  private readonly workerPool: Subnet;
  private readonly pool4: Subnet;
  private readonly pool6: Subnet6;
  private readonly workerPool6: Subnet6;
  private readonly blocks: Slots;
  private readonly slots4: Slots;
  private readonly slots6: Slots;
  private readonly workers = new Map<string, bigint>();
  private readonly services = new Map<string, { v4: bigint; v6: bigint; out4: boolean; out6: boolean; c4?: bigint; c6?: bigint }>();
  private readonly instances = new Map<string, Map<number, { v4: bigint; v6: bigint }>>();
  /** rr_ips outside the pools, by `4:` / `6:` + address number */
  private readonly outside = new Map<string, string>();
  private readonly extra4: Subnet[] = [];
  /** the extra service ranges, normalised (IpamOptions) */
  readonly extraServicePools: readonly string[];

  constructor(config: Partial<IpamConfig> = {}, options: IpamOptions = {}) {
    const c: IpamConfig = {
      workerPool: config.workerPool ?? DEFAULT_WORKER_POOL,
      workerPrefix: config.workerPrefix ?? DEFAULT_WORKER_PREFIX,
      servicePool: config.servicePool ?? DEFAULT_SERVICE_POOL,
      servicePoolV6: config.servicePoolV6 ?? DEFAULT_SERVICE_POOL_V6,
      workerPoolV6: config.workerPoolV6 ?? DEFAULT_WORKER_POOL_V6,
    };
    if (typeof c.workerPrefix !== 'number' || !Number.isInteger(c.workerPrefix) || c.workerPrefix < 16 || c.workerPrefix > 30) {
      throw new IpamError('invalid-pool', 'workerPrefix must be an integer 16..30');
    }
    this.workerPool = v4Pool('worker pool', c.workerPool, 8, c.workerPrefix);
    this.pool4 = v4Pool('service pool', c.servicePool, 8, 30);
    if (overlaps(this.workerPool, this.pool4)) {
      throw poolError('service pool', c.servicePool, `overlaps the worker pool ${formatSubnet(this.workerPool)}`);
    }
    if (typeof c.servicePoolV6 !== 'string' || c.servicePoolV6.length > 64) throw poolError('IPv6 service pool', c.servicePoolV6, 'not an IPv6 CIDR');
    try { this.pool6 = parseSubnet6(c.servicePoolV6); } catch (e) { throw poolError('IPv6 service pool', c.servicePoolV6, (e as Error).message); }
    if (this.pool6.prefix < 16 || this.pool6.prefix > 126) throw poolError('IPv6 service pool', c.servicePoolV6, 'the prefix must be /16../126');
    if (typeof c.workerPoolV6 !== 'string' || c.workerPoolV6.length > 64) throw poolError('IPv6 worker pool', c.workerPoolV6, 'not an IPv6 CIDR');
    try { this.workerPool6 = parseSubnet6(c.workerPoolV6); } catch (e) { throw poolError('IPv6 worker pool', c.workerPoolV6, (e as Error).message); }
    const blockBits = c.workerPrefix - this.workerPool.prefix;
    if (this.workerPool6.prefix < 16 || this.workerPool6.prefix > 64 - blockBits) {
      throw poolError('IPv6 worker pool', c.workerPoolV6, `the prefix must be /16../${64 - blockBits} to hold a /64 per IPv4 worker subnet`);
    }
    if (contains6(this.workerPool6, this.pool6.network) || contains6(this.pool6, this.workerPool6.network)) {
      throw poolError('IPv6 worker pool', c.workerPoolV6, `overlaps the IPv6 service pool ${formatSubnet6(this.pool6)}`);
    }
    this.config = Object.freeze({
      ...c, workerPool: formatSubnet(this.workerPool), servicePool: formatSubnet(this.pool4), servicePoolV6: formatSubnet6(this.pool6),
      workerPoolV6: formatSubnet6(this.workerPool6),
    });
    this.blocks = new Slots(0n, (1n << BigInt(c.workerPrefix - this.workerPool.prefix)) - 1n);
    this.slots4 = new Slots(1n, (1n << BigInt(32 - this.pool4.prefix)) - 2n);
    this.slots6 = new Slots(1n, (1n << BigInt(128 - this.pool6.prefix)) - 2n);
    const extra = options.extraServicePools ?? [];
    if (!Array.isArray(extra) || extra.length > MAX_EXTRA_POOLS) throw new IpamError('invalid-pool', `extra service ranges: give at most ${MAX_EXTRA_POOLS} IPv4 CIDRs`);
    for (const text of extra) {
      const e = v4Pool('extra service range', text, 8, 30);
      if (unusableV4(e.network) || unusableV4(e.network + 2 ** (32 - e.prefix) - 1)) throw poolError('extra service range', text, 'lies in an unusable range (0/8, 127/8, 169.254/16, multicast or above)');
      for (const [what, other] of [['the worker pool', this.workerPool], ['the service pool', this.pool4], ...this.extra4.map((x) => ['another extra range', x] as const)] as const) {
        if (overlaps(e, other)) throw poolError('extra service range', text, `overlaps ${what} ${formatSubnet(other)}`);
      }
      this.extra4.push(e);
    }
    this.extraServicePools = Object.freeze(this.extra4.map(formatSubnet));
  }

  /** true when `ip` (IPv4 text) lies in the service pool or an extra service range: a request for it is honoured */
  inServiceRanges(ip: string): boolean {
    const n = typeof ip === 'string' && ip.length <= 15 ? parseIPv4(ip) : undefined;
    return n !== undefined && (contains(this.pool4, n) || this.extra4.some((e) => contains(e, n)));
  }

  // ---- workers ----

  private blockCidr(b: bigint): string {
    return formatSubnet({ network: this.workerPool.network + Number(b) * 2 ** (32 - this.config.workerPrefix), prefix: this.config.workerPrefix });
  }

  /** the worker's subnet, allocating the lowest free block the first time */
  allocateWorker(worker: string): string {
    checkKey('worker id', worker);
    const had = this.workers.get(worker);
    if (had !== undefined) return this.blockCidr(had);
    const b = this.blocks.allocate(`worker ${worker}`);
    if (b === undefined) {
      throw new IpamError('exhausted', `worker pool ${this.config.workerPool} is exhausted: all ${this.blocks.used} /${this.config.workerPrefix} subnets are in use`);
    }
    this.workers.set(worker, b);
    return this.blockCidr(b);
  }

  workerSubnet(worker: string): string | undefined {
    const b = this.workers.get(worker);
    return b === undefined ? undefined : this.blockCidr(b);
  }

  /** the worker's IPv6 /64 (the one matching its IPv4 block), if it has a subnet */
  workerSubnetV6(worker: string): string | undefined {
    const b = this.workers.get(worker);
    return b === undefined ? undefined : formatSubnet6({ network: this.workerPool6.network + (b << 64n), prefix: 64 });
  }

  /** true when the worker had a subnet */
  releaseWorker(worker: string): boolean {
    const b = this.workers.get(worker);
    if (b === undefined) return false;
    this.workers.delete(worker);
    this.blocks.release(b);
    return true;
  }

  private claimWorker(worker: string, subnet: unknown): void {
    checkKey('worker id', worker);
    if (this.workers.has(worker)) throw new IpamError('conflict', `worker ${worker} is listed twice`);
    let s: Subnet;
    try { s = parseSubnet(String(subnet).slice(0, 64)); } catch { throw new IpamError('invalid-address', `worker ${worker}: bad subnet`); }
    if (s.prefix !== this.config.workerPrefix || !contains(this.workerPool, s.network)) {
      throw new IpamError('invalid-address', `worker ${worker}: ${formatSubnet(s)} is not a /${this.config.workerPrefix} of ${this.config.workerPool}`);
    }
    const b = BigInt((s.network - this.workerPool.network) / 2 ** (32 - s.prefix));
    const owner = this.blocks.owner(b);
    if (owner !== undefined) throw new IpamError('conflict', `${formatSubnet(s)} is taken by ${owner}`, owner);
    this.blocks.take(b, `worker ${worker}`);
    this.workers.set(worker, b);
  }

  // ---- services and instances ----

  private v4(slot: bigint, out: boolean): string { return formatIPv4(out ? Number(slot) : this.pool4.network + Number(slot)); }
  private v6(slot: bigint, out: boolean): string { return formatIPv6(out ? slot : this.pool6.network + slot); }

  private addresses(job: string): ServiceAddresses | undefined {
    const s = this.services.get(job);
    if (!s) return undefined;
    const extra = s.out4 && this.extra4.some((e) => contains(e, Number(s.v4)));
    const a: ServiceAddresses = { rr_ip: this.v4(s.v4, s.out4), rr_ip_v6: this.v6(s.v6, s.out6), outsidePool: s.out4 && !extra, outsidePoolV6: s.out6 };
    if (extra) a.inExtraPool = true;
    if (s.c4 !== undefined && s.c6 !== undefined) {
      a.closest_ip = this.v4(s.c4, false);
      a.closest_ip_v6 = this.v6(s.c6, false);
    }
    return a;
  }

  serviceAddresses(job: string): ServiceAddresses | undefined { return this.addresses(job); }

  /**
   * Where a requested address goes: a slot of the pool, or (outside) the address itself.
   * Throws `conflict` with the owner named when it is taken.
   */
  private resolve4(text: unknown): { slot: bigint; out: boolean } {
    const ip = typeof text === 'string' && text.length <= 15 ? parseIPv4(text) : undefined;
    if (ip === undefined) throw new IpamError('invalid-address', `rr_ip ${JSON.stringify(String(text).slice(0, 64))} is not an IPv4 address`);
    if (unusableV4(ip)) throw new IpamError('invalid-address', `rr_ip ${formatIPv4(ip)} cannot be a service address`);
    if (contains(this.workerPool, ip)) throw new IpamError('invalid-address', `rr_ip ${formatIPv4(ip)} lies in the worker pool ${this.config.workerPool}`);
    if (contains(this.pool4, ip)) {
      const slot = BigInt(ip - this.pool4.network);
      if (!this.slots4.inRange(slot)) throw new IpamError('invalid-address', `rr_ip ${formatIPv4(ip)} is the network or broadcast address of ${this.config.servicePool}`);
      const owner = this.slots4.owner(slot);
      if (owner !== undefined) throw new IpamError('conflict', `rr_ip ${formatIPv4(ip)} is taken by ${owner}`, owner);
      return { slot, out: false };
    }
    const inExtra = this.extra4.find((e) => contains(e, ip));
    if (inExtra !== undefined && (ip === inExtra.network || ip === inExtra.network + 2 ** (32 - inExtra.prefix) - 1)) {
      throw new IpamError('invalid-address', `rr_ip ${formatIPv4(ip)} is the network or broadcast address of the extra service range ${formatSubnet(inExtra)}`);
    }
    const owner = this.outside.get(`4:${ip}`);
    if (owner !== undefined) throw new IpamError('conflict', `rr_ip ${formatIPv4(ip)} is taken by ${owner}`, owner);
    return { slot: BigInt(ip), out: true };
  }

  private resolve6(text: unknown): { slot: bigint; out: boolean } {
    const ip = typeof text === 'string' ? parseIPv6(text) : undefined;
    if (ip === undefined) throw new IpamError('invalid-address', `rr_ip_v6 ${JSON.stringify(String(text).slice(0, 64))} is not an IPv6 address`);
    if (unusableV6(ip)) throw new IpamError('invalid-address', `rr_ip_v6 ${formatIPv6(ip)} cannot be a service address`);
    if (contains6(this.workerPool6, ip)) throw new IpamError('invalid-address', `rr_ip_v6 ${formatIPv6(ip)} lies in the worker pool ${this.config.workerPoolV6}`);
    if (contains6(this.pool6, ip)) {
      const slot = ip - this.pool6.network;
      if (!this.slots6.inRange(slot)) throw new IpamError('invalid-address', `rr_ip_v6 ${formatIPv6(ip)} is the first or last address of ${this.config.servicePoolV6}`);
      const owner = this.slots6.owner(slot);
      if (owner !== undefined) throw new IpamError('conflict', `rr_ip_v6 ${formatIPv6(ip)} is taken by ${owner}`, owner);
      return { slot, out: false };
    }
    const owner = this.outside.get(`6:${ip}`);
    if (owner !== undefined) throw new IpamError('conflict', `rr_ip_v6 ${formatIPv6(ip)} is taken by ${owner}`, owner);
    return { slot: ip, out: true };
  }

  private exhausted(family: 4 | 6): IpamError {
    return new IpamError('exhausted', `service pool ${family === 4 ? this.config.servicePool : this.config.servicePoolV6} is exhausted`);
  }

  /**
   * The service's round-robin addresses (key: job name), and with `closest: true` its closest
   * IPs too (given now to a service that has none yet). Idempotent: a service that has them
   * gets them back; asking it for a different rr_ip / rr_ip_v6 than it holds is a `conflict`.
   * Nothing changes when it throws.
   */
  allocateService(job: string, request: ServiceRequest = {}): ServiceAddresses {
    checkKey('job name', job);
    const had = this.addresses(job);
    if (had) {
      this.checkSameRequest(job, had, request);
      if (request.closest === true) this.allocateClosest(job);
      return this.addresses(job) as ServiceAddresses;
    }
    const created = this.allocateRoundRobin(job, request);
    if (request.closest === true) {
      try { this.allocateClosest(job); } catch (e) { this.releaseService(job); throw e; }
      return this.addresses(job) as ServiceAddresses;
    }
    return created;
  }

  /** the service's closest IPs, allocated the first time (the service must exist) */
  private allocateClosest(job: string): void {
    const s = this.services.get(job);
    if (!s || (s.c4 !== undefined && s.c6 !== undefined)) return;
    const owner = closestOwner(job);
    const c4 = this.slots4.allocate(owner);
    if (c4 === undefined) throw this.exhausted(4);
    const c6 = this.slots6.allocate(owner);
    if (c6 === undefined) { this.slots4.release(c4); throw this.exhausted(6); }
    s.c4 = c4;
    s.c6 = c6;
  }

  private checkSameRequest(job: string, had: ServiceAddresses, request: ServiceRequest): void {
    for (const [k, want, got] of [['rr_ip', request.rr_ip, had.rr_ip], ['rr_ip_v6', request.rr_ip_v6, had.rr_ip_v6]] as const) {
      if (want === undefined) continue;
      const asked = typeof want !== 'string' ? undefined : k === 'rr_ip' ? (want.length <= 15 ? parseIPv4(want) : undefined) : parseIPv6(want);
      if (asked === undefined) throw new IpamError('invalid-address', `${k} ${JSON.stringify(String(want).slice(0, 64))} is not an address`);
      const same = k === 'rr_ip' ? asked === parseIPv4(got) : asked === parseIPv6(got);
      if (!same) throw new IpamError('conflict', `${serviceOwner(job)} already has ${k} ${got}`, serviceOwner(job));
    }
  }

  private allocateRoundRobin(job: string, request: ServiceRequest): ServiceAddresses {
    const owner = serviceOwner(job);
    const r4 = request.rr_ip === undefined ? undefined : this.resolve4(request.rr_ip);
    const r6 = request.rr_ip_v6 === undefined ? undefined : this.resolve6(request.rr_ip_v6);
    let v4: bigint;
    if (r4) {
      v4 = r4.slot;
      if (r4.out) this.outside.set(`4:${v4}`, owner); else this.slots4.take(v4, owner);
    } else {
      const s = this.slots4.allocate(owner);
      if (s === undefined) throw this.exhausted(4);
      v4 = s;
    }
    let v6: bigint;
    if (r6) {
      v6 = r6.slot;
      if (r6.out) this.outside.set(`6:${v6}`, owner); else this.slots6.take(v6, owner);
    } else {
      const s = this.slots6.allocate(owner);
      if (s === undefined) {
        if (r4?.out) this.outside.delete(`4:${v4}`); else this.slots4.release(v4);
        throw this.exhausted(6);
      }
      v6 = s;
    }
    this.services.set(job, { v4, v6, out4: r4?.out ?? false, out6: r6?.out ?? false });
    return this.addresses(job) as ServiceAddresses;
  }

  /** releases the service's addresses and those of all its instances; false when it had none */
  releaseService(job: string): boolean {
    const s = this.services.get(job);
    if (!s) return false;
    for (const n of [...(this.instances.get(job)?.keys() ?? [])]) this.releaseInstance(job, n);
    this.instances.delete(job);
    if (s.out4) this.outside.delete(`4:${s.v4}`); else this.slots4.release(s.v4);
    if (s.out6) this.outside.delete(`6:${s.v6}`); else this.slots6.release(s.v6);
    if (s.c4 !== undefined) this.slots4.release(s.c4);
    if (s.c6 !== undefined) this.slots6.release(s.c6);
    this.services.delete(job);
    return true;
  }

  /** the instance's addresses (lowest free of each pool); idempotent; the service must exist */
  allocateInstance(job: string, instance: number): InstanceAddresses {
    checkKey('job name', job);
    checkInstance(instance);
    if (!this.services.has(job)) throw new IpamError('unknown-service', `service ${job} has no addresses yet`);
    let m = this.instances.get(job);
    const had = m?.get(instance);
    if (had) return { ip: this.v4(had.v4, false), ip_v6: this.v6(had.v6, false) };
    const owner = instanceOwner(job, instance);
    const v4 = this.slots4.allocate(owner);
    if (v4 === undefined) throw this.exhausted(4);
    const v6 = this.slots6.allocate(owner);
    if (v6 === undefined) { this.slots4.release(v4); throw this.exhausted(6); }
    if (!m) { m = new Map(); this.instances.set(job, m); }
    m.set(instance, { v4, v6 });
    return { ip: this.v4(v4, false), ip_v6: this.v6(v6, false) };
  }

  instanceAddresses(job: string, instance: number): InstanceAddresses | undefined {
    const a = this.instances.get(job)?.get(instance);
    return a && { ip: this.v4(a.v4, false), ip_v6: this.v6(a.v6, false) };
  }

  releaseInstance(job: string, instance: number): boolean {
    const m = this.instances.get(job);
    const a = m?.get(instance);
    if (!m || !a) return false;
    m.delete(instance);
    if (m.size === 0) this.instances.delete(job);
    this.slots4.release(a.v4);
    this.slots6.release(a.v6);
    return true;
  }

  /** who holds an address (either family), or undefined */
  ownerOf(address: string): string | undefined {
    const ip4 = address.length <= 15 ? parseIPv4(address) : undefined;
    if (ip4 !== undefined) {
      if (contains(this.pool4, ip4)) return this.slots4.owner(BigInt(ip4 - this.pool4.network));
      if (contains(this.workerPool, ip4)) {
        return this.blocks.owner(BigInt(Math.floor((ip4 - this.workerPool.network) / 2 ** (32 - this.config.workerPrefix))));
      }
      return this.outside.get(`4:${ip4}`);
    }
    const ip6 = parseIPv6(address);
    if (ip6 === undefined) return undefined;
    if (contains6(this.workerPool6, ip6)) return this.blocks.owner((ip6 - this.workerPool6.network) >> 64n);
    return contains6(this.pool6, ip6) ? this.slots6.owner(ip6 - this.pool6.network) : this.outside.get(`6:${ip6}`);
  }

  // ---- state ----

  /** a plain JSON-serialisable copy, sorted so equal states serialise equally */
  serialize(): IpamState {
    const workers = [...this.workers.keys()].sort().map((worker) => ({ worker, subnet: this.workerSubnet(worker) as string }));
    const services = [...this.services.keys()].sort().map((job) => {
      const a = this.addresses(job) as ServiceAddresses;
      return a.closest_ip === undefined
        ? { job, rr_ip: a.rr_ip, rr_ip_v6: a.rr_ip_v6 }
        : { job, rr_ip: a.rr_ip, rr_ip_v6: a.rr_ip_v6, closest_ip: a.closest_ip, closest_ip_v6: a.closest_ip_v6 as string };
    });
    const instances: IpamState['instances'] = [];
    for (const job of [...this.instances.keys()].sort()) {
      for (const n of [...(this.instances.get(job) as Map<number, unknown>).keys()].sort((a, b) => a - b)) {
        const a = this.instanceAddresses(job, n) as InstanceAddresses;
        instances.push({ job, instance: n, ip: a.ip, ip_v6: a.ip_v6 });
      }
    }
    return { version: 1, config: { ...this.config }, workers, services, instances };
  }

  /** rebuilds an Ipam from `serialize()`'s output; anything malformed or contradictory is an `invalid-state` IpamError */
  static load(state: unknown, options: { closest?: boolean } & IpamOptions = {}): Ipam {
    try {
      const ipam = Ipam.loadUnchecked(state, options.extraServicePools === undefined ? {} : { extraServicePools: options.extraServicePools });
      if (options.closest === true) {
        // a full pool leaves the rest without closest IPs rather than refusing the whole state
        for (const job of [...ipam.services.keys()].sort()) {
          try { ipam.allocateClosest(job); } catch (e) { if (!(e instanceof IpamError && e.code === 'exhausted')) throw e; }
        }
      }
      return ipam;
    } catch (e) {
      if (e instanceof IpamError && e.code === 'invalid-state') throw e;
      const why = e instanceof Error ? e.message : String(e);
      throw new IpamError('invalid-state', `IPAM state refused: ${why.slice(0, 300)}`);
    }
  }

  private static loadUnchecked(state: unknown, options: IpamOptions): Ipam {
    const obj = (v: unknown, what: string): Record<string, unknown> => {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what} is not an object`);
      return v as Record<string, unknown>;
    };
    const list = (v: unknown, what: string): unknown[] => {
      if (!Array.isArray(v)) throw new Error(`${what} is not a list`);
      return v;
    };
    const s = obj(state, 'state');
    if (s.version !== 1) throw new Error('unknown version');
    const c = obj(s.config, 'config');
    for (const k of ['workerPool', 'servicePool', 'servicePoolV6', 'workerPoolV6'] as const) if (typeof c[k] !== 'string') throw new Error(`config.${k} is missing`);
    if (typeof c.workerPrefix !== 'number') throw new Error('config.workerPrefix is missing');
    const ipam = new Ipam({
      workerPool: c.workerPool as string, workerPrefix: c.workerPrefix as number,
      servicePool: c.servicePool as string, servicePoolV6: c.servicePoolV6 as string, workerPoolV6: c.workerPoolV6 as string,
    }, options);
    for (const w of list(s.workers, 'workers')) {
      const o = obj(w, 'worker entry');
      ipam.claimWorker(o.worker as string, o.subnet);
    }
    for (const e of list(s.services, 'services')) {
      const o = obj(e, 'service entry');
      const job = checkKey('job name', o.job);
      if (ipam.services.has(job)) throw new Error(`service ${job} is listed twice`);
      ipam.allocateService(job, { rr_ip: o.rr_ip as string, rr_ip_v6: o.rr_ip_v6 as string });
    }
    // closest IPs after every round-robin address is claimed (a closest IP may be lower than a later service's rr_ip)
    for (const e of list(s.services, 'services')) {
      const o = e as Record<string, unknown>;
      if (o.closest_ip === undefined && o.closest_ip_v6 === undefined) continue;
      const job = o.job as string;
      const ip4 = typeof o.closest_ip === 'string' && o.closest_ip.length <= 15 ? parseIPv4(o.closest_ip) : undefined;
      const ip6 = typeof o.closest_ip_v6 === 'string' ? parseIPv6(o.closest_ip_v6) : undefined;
      if (ip4 === undefined || ip6 === undefined || !contains(ipam.pool4, ip4) || !contains6(ipam.pool6, ip6)) {
        throw new Error(`service ${job}: closest addresses missing or outside the pools`);
      }
      const c4 = BigInt(ip4 - ipam.pool4.network);
      const c6 = ip6 - ipam.pool6.network;
      if (!ipam.slots4.inRange(c4) || !ipam.slots6.inRange(c6)) throw new Error(`service ${job}: closest IP is a network or broadcast address`);
      const taken = ipam.slots4.owner(c4) ?? ipam.slots6.owner(c6);
      if (taken !== undefined) throw new Error(`service ${job}: closest address taken by ${taken}`);
      const owner = closestOwner(job);
      ipam.slots4.take(c4, owner);
      ipam.slots6.take(c6, owner);
      const svc = ipam.services.get(job) as { c4?: bigint; c6?: bigint };
      svc.c4 = c4;
      svc.c6 = c6;
    }
    for (const e of list(s.instances, 'instances')) {
      const o = obj(e, 'instance entry');
      const job = checkKey('job name', o.job);
      const n = checkInstance(o.instance);
      if (!ipam.services.has(job)) throw new Error(`instance ${n} of ${job} has no service`);
      if (ipam.instances.get(job)?.has(n)) throw new Error(`instance ${n} of ${job} is listed twice`);
      const ip4 = typeof o.ip === 'string' && o.ip.length <= 15 ? parseIPv4(o.ip) : undefined;
      const ip6 = typeof o.ip_v6 === 'string' ? parseIPv6(o.ip_v6) : undefined;
      if (ip4 === undefined || ip6 === undefined || !contains(ipam.pool4, ip4) || !contains6(ipam.pool6, ip6)) {
        throw new Error(`instance ${n} of ${job}: addresses outside the pools`);
      }
      const v4 = BigInt(ip4 - ipam.pool4.network);
      const v6 = ip6 - ipam.pool6.network;
      if (!ipam.slots4.inRange(v4) || !ipam.slots6.inRange(v6)) throw new Error(`instance ${n} of ${job}: network or broadcast address`);
      const taken = ipam.slots4.owner(v4) ?? ipam.slots6.owner(v6);
      if (taken !== undefined) throw new Error(`instance ${n} of ${job}: address taken by ${taken}`);
      const owner = instanceOwner(job, n);
      ipam.slots4.take(v4, owner);
      ipam.slots6.take(v6, owner);
      let m = ipam.instances.get(job);
      if (!m) { m = new Map(); ipam.instances.set(job, m); }
      m.set(n, { v4, v6 });
    }
    return ipam;
  }

  /** counts, for the API and tests */
  stats(): { workers: number; services: number; instances: number; used4: number; used6: number } {
    let instances = 0;
    for (const m of this.instances.values()) instances += m.size;
    return { workers: this.workers.size, services: this.services.size, instances, used4: this.slots4.used, used6: this.slots6.used };
  }
}

