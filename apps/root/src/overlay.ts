/**
 * The root's side of the overlay address plan (issue 8): one `Ipam` (@oak/net) whose state lives
 * in the store's IPAM row, changed only through `store.updateIpam` (the row locked, the latest
 * state loaded, the change applied, the result written back in the same transaction together
 * with the service/instance address columns it concerns). Several roots on one PostgreSQL thus
 * apply their changes one after the other and never hand out an address twice; a read-only copy
 * is cached per stored version.
 *
 * The stored JSON is `{ version: 1, ipam: IpamState, owners: { <worker id>: <cluster id> } }`:
 * `owners` records which cluster asked for a worker's subnet first, so that another cluster
 * asking for the same worker id is refused.
 *
 * closest_ip: @oak/net's closest IPs of the service (`allocateService(job, { closest: true })`),
 * allocated and released with it.
 *
 * Addresses are given: service IPs on service create/update (a taken `rr_ip` is
 * OAK_ADDRESS_CONFLICT naming the owner, checked before anything is written), instance IPs on
 * instance create and again (idempotently) before each deploy (so services and instances of a
 * data dir from before the overlay get theirs lazily), released on undeploy / delete.
 */
import { OakError } from '@oak/contracts';
import type { InstanceAddresses, Microservice } from '@oak/contracts';
import { DEFAULT_SERVICE_POOL, DEFAULT_SERVICE_POOL_V6, Ipam, IpamError, contains, contains6, parseIPv4, parseIPv6, parseSubnet, parseSubnet6 } from '@oak/net';
import type { IpamState, ServiceAddresses } from '@oak/net';
import type { InstanceRow, IpamRecord, ServiceAddressesRow, ServiceRow, Store } from '@oak/store';

interface StoredOverlay {
  version: 1;
  ipam: IpamState;
  owners: Record<string, string>;
}

interface Loaded {
  ipam: Ipam;
  owners: Map<string, string>;
}

export interface AddressRequest {
  rr_ip?: string;
  rr_ip_v6?: string;
}

export interface WorkerSubnets {
  subnet: string;
  subnet_v6: string | null;
}

// ------------------------------------------------------------------ closest IP

function closestOf(ipam: Ipam, job: string): { ip: string | null; ip_v6: string | null } {
  const own = ipam.serviceAddresses(job);
  return { ip: own?.closest_ip ?? null, ip_v6: own?.closest_ip_v6 ?? null };
}

/** the service (which has its round-robin addresses) gets its closest IPs */
function allocateClosest(ipam: Ipam, job: string): void {
  if (closestOf(ipam, job).ip === null) ipam.allocateService(job, { closest: true });
}

/** the job name of an IPAM owner string (`service <job>`, `closest IP of service <job>`, `instance <n> of <job>`) */
export function jobOfOwner(owner: string | undefined): string | undefined {
  if (owner === undefined) return undefined;
  const m = /^instance \d+ of (.+)$/s.exec(owner) ?? /^closest IP of service (.+)$/s.exec(owner) ?? /^service (.+)$/s.exec(owner);
  return m?.[1];
}

// ------------------------------------------------------------------ errors

/** An IpamError as the API's error: conflicts name the owner; `path` is the SLA field. */
export function addressError(err: unknown, path = 'addresses.rr_ip'): unknown {
  if (!(err instanceof IpamError)) return err;
  const p = /rr_ip_v6/.test(err.message) ? path.replace(/rr_ip$/, 'rr_ip_v6') : path;
  switch (err.code) {
    case 'conflict':
      return new OakError('OAK_ADDRESS_CONFLICT', err.message, {
        path: p,
        hint: err.owner !== undefined ? `${err.owner} holds it; choose another address or leave ${p.split('.').pop() ?? 'rr_ip'} out to get a free one` : 'choose another address',
      });
    case 'invalid-address':
    case 'invalid-key':
      return new OakError('OAK_INVALID_SLA', err.message, { path: p, hint: 'a free address of 10.30.0.0/16 (IPv6 fdff::/64), e.g. "10.30.55.55", or leave it out' });
    case 'exhausted':
      return new OakError('OAK_UNAVAILABLE', err.message, { hint: 'undeploy services or instances that are no longer needed' });
    default:
      return new OakError('OAK_INTERNAL', `overlay addresses: ${err.message}`);
  }
}

const SERVICE_POOL = parseSubnet(DEFAULT_SERVICE_POOL);
const SERVICE_POOL_V6 = parseSubnet6(DEFAULT_SERVICE_POOL_V6);

/**
 * True when a requested rr_ip / rr_ip_v6 lies outside the service range and outside the
 * operator's extra service ranges (`extra`, IPv4 CIDRs of --extra-service-ranges). Such a
 * request is dropped (the service gets a free address of the range; the validator warns, naming
 * the range): the workers' datapaths intercept only those ranges, so an address outside them
 * would be held by the service and reach nothing. Oakestra's own valid example asks for
 * 192.168.178.4, which an operator can honour with --extra-service-ranges 192.168.178.0/24.
 */
export function outsideServiceRange(ip: string, family: 4 | 6, extra: readonly string[] = []): boolean {
  if (family === 4) {
    const n = ip.length <= 15 ? parseIPv4(ip) : undefined;
    return n !== undefined && !contains(SERVICE_POOL, n) && !extra.some((c) => contains(parseSubnet(c), n));
  }
  const n = ip.length <= 64 ? parseIPv6(ip) : undefined;
  return n !== undefined && !contains6(SERVICE_POOL_V6, n);
}

/** the SLA's requested addresses as written (the fields that are strings, wherever they lie) */
export function askedAddresses(sla: Pick<Microservice, 'addresses'>): AddressRequest {
  const a = sla.addresses;
  const r: AddressRequest = {};
  if (typeof a?.rr_ip === 'string') r.rr_ip = a.rr_ip;
  if (typeof a?.rr_ip_v6 === 'string') r.rr_ip_v6 = a.rr_ip_v6;
  return r;
}

/** the SLA's address request (only the fields that are strings, inside the service range or an extra one) */
export function requestOf(sla: Pick<Microservice, 'addresses'>, extra: readonly string[] = []): AddressRequest {
  const a = askedAddresses(sla);
  const r: AddressRequest = {};
  if (a.rr_ip !== undefined && !outsideServiceRange(a.rr_ip, 4, extra)) r.rr_ip = a.rr_ip;
  if (a.rr_ip_v6 !== undefined && !outsideServiceRange(a.rr_ip_v6, 6)) r.rr_ip_v6 = a.rr_ip_v6;
  return r;
}

/**
 * Checks the operator's extra service ranges (--extra-service-ranges): normalised CIDRs, or a
 * readable Error (bad CIDR, overlap with the worker or service pool or each other, too many).
 */
export function checkExtraServiceRanges(ranges: readonly string[]): string[] {
  try {
    return [...new Ipam({}, { extraServicePools: ranges }).extraServicePools];
  } catch (e) {
    throw new Error(`extra service ranges: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** what the assignment's `overlay` carries for one instance */
export function overlayOf(s: ServiceAddressesRow, row: Pick<InstanceRow, 'instance_ip' | 'instance_ip_v6'>): InstanceAddresses {
  return {
    service_ip: s.service_ip,
    service_ip_v6: s.service_ip_v6,
    closest_ip: s.closest_ip,
    closest_ip_v6: s.closest_ip_v6,
    instance_ip: row.instance_ip,
    instance_ip_v6: row.instance_ip_v6,
  };
}

function columnsOf(ipam: Ipam, job: string): ServiceAddressesRow {
  const a: ServiceAddresses | undefined = ipam.serviceAddresses(job);
  const c = closestOf(ipam, job);
  return { service_ip: a?.rr_ip ?? null, service_ip_v6: a?.rr_ip_v6 ?? null, closest_ip: c.ip, closest_ip_v6: c.ip_v6 };
}

const sameAddress = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

// ------------------------------------------------------------------ the overlay

export class RootOverlay {
  readonly store: Store;
  #cache: { version: number; loaded: Loaded } | undefined;

  /** the operator's extra IPv4 service ranges (--extra-service-ranges), normalised; a setting, not stored */
  readonly extraServiceRanges: readonly string[];

  constructor(store: Store, extraServiceRanges: readonly string[] = []) {
    this.store = store;
    this.extraServiceRanges = Object.freeze(checkExtraServiceRanges(extraServiceRanges));
  }

  /** true when a requested IPv4 rr_ip is given as asked here (inside 10.30.0.0/16 or an extra range) */
  honours(ip: string): boolean {
    return parseIPv4(ip.slice(0, 15)) !== undefined && !outsideServiceRange(ip, 4, this.extraServiceRanges);
  }

  /** the SLA's address request under this root's ranges */
  requestOf(sla: Pick<Microservice, 'addresses'>): AddressRequest {
    return requestOf(sla, this.extraServiceRanges);
  }

  #options(): { extraServicePools: readonly string[] } {
    return { extraServicePools: this.extraServiceRanges };
  }

  #load(rec: IpamRecord): Loaded {
    if (rec.state === null || rec.state === undefined) return { ipam: new Ipam({}, this.#options()), owners: new Map() };
    const s = rec.state as Partial<StoredOverlay>;
    if (typeof s !== 'object' || s.version !== 1) throw new OakError('OAK_INTERNAL', 'the stored IPAM state has an unknown shape');
    const owners = new Map<string, string>();
    for (const [w, c] of Object.entries(s.owners ?? {})) if (typeof c === 'string') owners.set(w, c);
    return { ipam: Ipam.load(s.ipam, this.#options()), owners };
  }

  #stored(l: Loaded): StoredOverlay {
    return { version: 1, ipam: l.ipam.serialize(), owners: Object.fromEntries([...l.owners].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) };
  }

  /** the latest state, read-only (cached per stored version) */
  async view(): Promise<Loaded> {
    const rec = await this.store.getIpam();
    if (this.#cache?.version === rec.version) return this.#cache.loaded;
    const loaded = this.#load(rec);
    this.#cache = { version: rec.version, loaded };
    return loaded;
  }

  /**
   * One change: the latest state under the row lock, `fn` applied to a fresh copy, written back
   * when `fn` says it changed, with the address columns it returns. IpamErrors pass through.
   */
  async #change<T>(
    fn: (l: Loaded) => { result: T; changed: boolean; services?: ({ id: string } & ServiceAddressesRow)[]; instances?: { service_id: string; instance_number: number; instance_ip: string | null; instance_ip_v6: string | null }[] },
  ): Promise<T> {
    let after: { version: number; loaded: Loaded } | undefined;
    const result = await this.store.updateIpam((rec) => {
      const l = this.#load(rec);
      const r = fn(l);
      if (!r.changed) return { result: r.result, ...(r.services || r.instances ? { state: this.#stored(l) } : {}), ...(r.services ? { services: r.services } : {}), ...(r.instances ? { instances: r.instances } : {}) };
      after = { version: rec.version + 1, loaded: l };
      return { result: r.result, state: this.#stored(l), ...(r.services ? { services: r.services } : {}), ...(r.instances ? { instances: r.instances } : {}) };
    });
    if (after) this.#cache = after;
    return result;
  }

  /** Throws (OAK_ADDRESS_CONFLICT, OAK_INVALID_SLA) if these services could not get their requested addresses; changes nothing. */
  async check(services: { job: string; request: AddressRequest; current?: string }[]): Promise<void> {
    const l = await this.view();
    const probe = Ipam.load(l.ipam.serialize(), this.#options());
    for (const [i, raw] of services.entries()) {
      // the request as asked (ops.addressRequest); an address outside this root's ranges is dropped here
      const s = { ...raw, request: this.requestOf({ addresses: raw.request }) };
      try {
        const prev = s.current ?? s.job;
        if (this.#needsReaddress(probe, prev, s.request) || prev !== s.job) {
          this.#checkReaddress(probe, prev, s.request);
          continue;
        }
        probe.allocateService(s.job, s.request);
        allocateClosest(probe, s.job);
      } catch (err) {
        throw addressError(err, services.length > 1 ? `microservices[${i}].addresses.rr_ip` : 'addresses.rr_ip');
      }
    }
  }

  #needsReaddress(ipam: Ipam, job: string, req: AddressRequest): boolean {
    const held = ipam.serviceAddresses(job);
    if (!held) return false;
    return (req.rr_ip !== undefined && !sameAddress(req.rr_ip, held.rr_ip)) || (req.rr_ip_v6 !== undefined && !sameAddress(req.rr_ip_v6, held.rr_ip_v6));
  }

  /** a held service asks for other addresses: they must be free (or its own) */
  #checkReaddress(ipam: Ipam, job: string, req: AddressRequest): void {
    for (const [k, want] of [['rr_ip', req.rr_ip], ['rr_ip_v6', req.rr_ip_v6]] as const) {
      if (want === undefined) continue;
      const owner = ipam.ownerOf(want);
      if (owner !== undefined && owner !== `service ${job}`) throw new IpamError('conflict', `${k} ${want} is taken by ${owner}`, owner);
    }
  }

  /**
   * Moves a service's round-robin addresses (a changed rr_ip, or a new job name on rename): the
   * state is rewritten with the new entry and loaded again, which checks it; instance addresses stay.
   */
  #readdress(l: Loaded, from: string, to: string, req: AddressRequest): Loaded {
    this.#checkReaddress(l.ipam, from, req);
    const state = l.ipam.serialize();
    const entry = state.services.find((e) => e.job === from);
    if (entry) {
      entry.job = to;
      if (req.rr_ip !== undefined) entry.rr_ip = req.rr_ip;
      if (req.rr_ip_v6 !== undefined) entry.rr_ip_v6 = req.rr_ip_v6;
      for (const e of state.instances) if (e.job === from) e.job = to;
    }
    try {
      return { ipam: Ipam.load(state, this.#options()), owners: l.owners };
    } catch (err) {
      const why = err instanceof Error ? err.message.replace(/^IPAM state refused: /, '') : String(err);
      throw new IpamError('invalid-address', `the requested addresses cannot be used: ${why}`);
    }
  }

  /**
   * The service's addresses (allocated the first time, moved when the SLA asks for others or the
   * job name changed from `previousJob`), written to its row; answers the columns.
   */
  async assignService(s: ServiceRow, previousJob?: string): Promise<ServiceAddressesRow> {
    const req = this.requestOf(s.sla);
    try {
      return await this.#change((l) => {
        let cur = l;
        const from = previousJob ?? s.job_name;
        let changed = false;
        if (cur.ipam.serviceAddresses(from) && (from !== s.job_name || this.#needsReaddress(cur.ipam, from, req))) {
          cur = this.#readdress(cur, from, s.job_name, req);
          l.ipam = cur.ipam;
          changed = true;
        } else if (!cur.ipam.serviceAddresses(s.job_name)) {
          cur.ipam.allocateService(s.job_name, req);
          changed = true;
        }
        if (closestOf(cur.ipam, s.job_name).ip === null) {
          allocateClosest(cur.ipam, s.job_name);
          changed = closestOf(cur.ipam, s.job_name).ip !== null || changed;
        }
        const cols = columnsOf(cur.ipam, s.job_name);
        const same = cols.service_ip === s.service_ip && cols.service_ip_v6 === s.service_ip_v6 && cols.closest_ip === s.closest_ip && cols.closest_ip_v6 === s.closest_ip_v6;
        return { result: cols, changed, ...(same && !changed ? {} : { services: [{ id: s.id, ...cols }] }) };
      });
    } catch (err) {
      throw addressError(err);
    }
  }

  /**
   * The instances' addresses (and the service's, when it has none yet: data from before the
   * overlay), allocated where missing and written to their rows; answers the rows with them.
   */
  async assignInstances(s: ServiceRow, rows: InstanceRow[]): Promise<{ service: ServiceRow; rows: InstanceRow[] }> {
    if (rows.length === 0 && s.service_ip !== null) return { service: s, rows };
    const req = this.requestOf(s.sla);
    try {
      return await this.#change((l) => {
        let changed = false;
        if (!l.ipam.serviceAddresses(s.job_name)) {
          try {
            l.ipam.allocateService(s.job_name, req);
          } catch (err) {
            // an old service whose rr_ip is taken by now still gets addresses (a free one)
            if (!(err instanceof IpamError) || (err.code !== 'conflict' && err.code !== 'invalid-address')) throw err;
            l.ipam.allocateService(s.job_name);
          }
          changed = true;
        }
        if (closestOf(l.ipam, s.job_name).ip === null) {
          allocateClosest(l.ipam, s.job_name);
          changed = closestOf(l.ipam, s.job_name).ip !== null || changed;
        }
        const cols = columnsOf(l.ipam, s.job_name);
        const out: InstanceRow[] = [];
        const writes: { service_id: string; instance_number: number; instance_ip: string | null; instance_ip_v6: string | null }[] = [];
        for (const r of rows) {
          const had = l.ipam.instanceAddresses(s.job_name, r.instance_number);
          const a = had ?? l.ipam.allocateInstance(s.job_name, r.instance_number);
          if (!had) changed = true;
          if (r.instance_ip !== a.ip || r.instance_ip_v6 !== a.ip_v6) writes.push({ service_id: s.id, instance_number: r.instance_number, instance_ip: a.ip, instance_ip_v6: a.ip_v6 });
          out.push({ ...r, instance_ip: a.ip, instance_ip_v6: a.ip_v6 });
        }
        const serviceSame = cols.service_ip === s.service_ip && cols.service_ip_v6 === s.service_ip_v6 && cols.closest_ip === s.closest_ip && cols.closest_ip_v6 === s.closest_ip_v6;
        return {
          result: { service: { ...s, ...cols }, rows: out },
          changed,
          ...(serviceSame ? {} : { services: [{ id: s.id, ...cols }] }),
          ...(writes.length > 0 ? { instances: writes } : {}),
        };
      });
    } catch (err) {
      throw addressError(err);
    }
  }

  /** the instances are gone (undeployed): their addresses are free again */
  async releaseInstances(job: string, numbers: number[]): Promise<void> {
    if (numbers.length === 0) return;
    await this.#change((l) => {
      let changed = false;
      for (const n of numbers) changed = l.ipam.releaseInstance(job, n) || changed;
      return { result: undefined, changed };
    });
  }

  /** the service is gone: its addresses and all its instances' are free again */
  async releaseService(job: string): Promise<void> {
    await this.#change((l) => {
      const had = l.ipam.releaseService(job);
      return { result: undefined, changed: had };
    });
  }

  /**
   * The worker's subnets for the cluster asking (the same again every time). A worker id first
   * asked for by another cluster is refused (OAK_FORBIDDEN); a full pool is OAK_UNAVAILABLE.
   */
  async allocateWorker(clusterId: string, worker: string): Promise<WorkerSubnets> {
    try {
      return await this.#change((l) => {
        const owner = l.owners.get(worker);
        if (owner !== undefined && owner !== clusterId) {
          throw new OakError('OAK_FORBIDDEN', `worker ${worker} belongs to another cluster`, { hint: 'worker ids are unique across clusters; remove it from its cluster first (oak node rm)' });
        }
        const had = l.ipam.workerSubnet(worker) !== undefined;
        const subnet = l.ipam.allocateWorker(worker);
        const changed = !had || owner === undefined;
        l.owners.set(worker, clusterId);
        return { result: { subnet, subnet_v6: l.ipam.workerSubnetV6(worker) ?? null }, changed };
      });
    } catch (err) {
      if (err instanceof IpamError) {
        if (err.code === 'exhausted') throw new OakError('OAK_UNAVAILABLE', err.message, { hint: 'remove workers that are gone (oak node rm)' });
        throw new OakError('OAK_BAD_REQUEST', err.message);
      }
      throw err;
    }
  }

  /** the worker was removed from `clusterId`: its subnet is free again (false: it had none there) */
  async releaseWorker(clusterId: string, worker: string): Promise<boolean> {
    return this.#change((l) => {
      const owner = l.owners.get(worker);
      if (owner !== undefined && owner !== clusterId) return { result: false, changed: false };
      l.owners.delete(worker);
      const had = l.ipam.releaseWorker(worker);
      return { result: had, changed: had || owner !== undefined };
    });
  }

  /** which job a virtual address (service, closest or instance IP, v4 or v6) belongs to */
  async jobOfAddress(ip: string): Promise<string | undefined> {
    return jobOfOwner((await this.view()).ipam.ownerOf(ip));
  }

  /** the subnets of a worker and the cluster that owns it, if it has some */
  async workerInfo(worker: string): Promise<(WorkerSubnets & { owner: string | undefined }) | undefined> {
    const l = await this.view();
    const subnet = l.ipam.workerSubnet(worker);
    return subnet === undefined ? undefined : { subnet, subnet_v6: l.ipam.workerSubnetV6(worker) ?? null, owner: l.owners.get(worker) };
  }

  /** the subnets of a worker, if it has some */
  async workerSubnets(worker: string): Promise<WorkerSubnets | undefined> {
    const l = await this.view();
    const subnet = l.ipam.workerSubnet(worker);
    return subnet === undefined ? undefined : { subnet, subnet_v6: l.ipam.workerSubnetV6(worker) ?? null };
  }

  async stats(): Promise<ReturnType<Ipam['stats']>> {
    return (await this.view()).ipam.stats();
  }
}

const overlays = new WeakMap<Store, RootOverlay>();

/**
 * The one RootOverlay of a store (the API and the link control plane share it). The root's
 * start gives the extra service ranges once (`extraServiceRanges`); later calls without them get
 * the same overlay.
 */
export function overlayFor(store: Store, extraServiceRanges?: readonly string[]): RootOverlay {
  let o = overlays.get(store);
  if (!o || (extraServiceRanges !== undefined && o.extraServiceRanges.join(',') !== checkExtraServiceRanges(extraServiceRanges).join(','))) {
    overlays.set(store, (o = new RootOverlay(store, extraServiceRanges)));
  }
  return o;
}
