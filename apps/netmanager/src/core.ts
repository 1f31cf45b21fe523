/**
 * The NetManager's brain, without I/O: its worker identity and subnet, the local instances, the
 * service tables of the jobs it is interested in, the overlay peers and the RTTs to them. Every
 * method takes the current time and returns the effects to carry out (MQTT publishes and
 * (un)subscriptions, datapath programming, persistence); netmanager.ts does the I/O in order.
 *
 * Interest: a job's table is wanted while a local instance uses it (its own deploy, a DNS name, or
 * traffic to one of its virtual addresses the datapath saw). It goes (`interest/remove` and an
 * unsubscribe) when no local instance of the job is left and nothing used it for
 * `interestIdleMs`, and at once for every job when the last local instance left the worker.
 *
 * Table queries are deduplicated (one outstanding per job or address) and repeated with the same
 * request id every `queryRetryMs` until answered.
 */
import { OakError, netTopics } from '@oak/contracts';
import type {
  InterestRemove, NetInstanceDeploy, NetInstanceUndeploy, OverlayPeer, RttReport, ServiceDeployed, ServiceTable, ServiceUndeployed,
  SubnetRequest, SubnetResult, TableEntry, TableQueryRequest, TableQueryResult,
} from '@oak/contracts';
import { contains, contains6, formatIPv4, formatIPv6, formatSubnet, parseIPv4, parseIPv6, parseSubnet, parseSubnet6 } from '@oak/net';
import type { DatapathService } from './ports.ts';
import { inZone, parseOverlayName, pickClosest } from '@oak/net';

export type Effect =
  | { type: 'publish'; topic: string; payload: unknown }
  | { type: 'subscribe'; topic: string }
  | { type: 'unsubscribe'; topic: string }
  /** program the datapath with exactly these services */
  | { type: 'services'; services: DatapathService[] }
  /** program the datapath with exactly these remote peers */
  | { type: 'peers'; peers: OverlayPeer[] }
  /** an instance left (here or in a table): drop its conntrack entries, after `services` */
  | { type: 'forget'; nsip: string; nsip_v6: string | null }
  /** the cluster gave (or changed) this worker's subnet: persist it, then answer /register */
  | { type: 'subnet'; subnet: string; subnet_v6: string | null; changed: boolean; service_ranges: string[] }
  | { type: 'subnet-error'; error: string }
  /** local instances or interest changed: persist the snapshot before going on */
  | { type: 'persist' }
  /** a table query ended (table null: no such service, or no answer); DNS waiters read it */
  | { type: 'table'; job_name: string | null; ip: string | null; table: ServiceTable | null };

export interface CoreOptions {
  /** NodePublicAddress / NodePublicPort: this worker's tunnel endpoint */
  hostIp: string;
  hostPort: number;
  /** a table query without answer is sent again after this long (default 2000) */
  queryRetryMs?: number;
  /** attempts of a table query before it is given up (default 5) */
  queryAttempts?: number;
  /** a subnet request without answer is sent again after this long (default 2000) */
  subnetRetryMs?: number;
  /** an unused job's table is dropped after this long (default 10 min) */
  interestIdleMs?: number;
  /** an address no service has is not asked for again within this time (default 2000) */
  missCacheMs?: number;
  /** prefix of request ids (default 'q') */
  requestIdPrefix?: string;
  /** address queries outstanding at most (an instance scanning the pool cannot flood the cluster; default 64) */
  maxAddressQueries?: number;
  /** jobs of interest at most (default 1000) */
  maxInterest?: number;
}

export interface LocalInstance {
  job_name: string;
  instance_number: number;
  nsip: string;
  nsip_v6: string | null;
}

interface Interest {
  lastUsed: number;
  subscribed: boolean;
}

interface Pending {
  request_id: string;
  job_name: string | null;
  ip: string | null;
  sentAt: number;
  attempts: number;
}

export interface CoreSnapshot {
  instances: LocalInstance[];
  interest: string[];
}

/** a job name usable as one level of an MQTT topic */
export function isTopicSafeJob(job: string): boolean {
  return /^[^/+#\s\u0000$]{1,255}$/.test(job);
}

/** first host of a subnet (the bridge gateway): 10.18.0.64/26 -> 10.18.0.65, fdff:18:0:1::/64 -> fdff:18:0:1::1 */
export function gatewayOf(subnet: string): string {
  return formatIPv4(parseSubnet(subnet).network + 1);
}

export function gatewayOf6(subnet6: string): string {
  return formatIPv6(parseSubnet6(subnet6).network + 1n);
}

const key = (job: string, n: number): string => `${job}\u0000${n}`;

export class NetCore {
  readonly opts: Required<CoreOptions>;
  workerId: string | null = null;
  subnet: string | null = null;
  subnet_v6: string | null = null;
  readonly local = new Map<string, LocalInstance>();
  readonly tables = new Map<string, ServiceTable>();
  /** virtual address -> job (service, closest and instance IPs of the tables held) */
  readonly ipIndex = new Map<string, string>();
  readonly interest = new Map<string, Interest>();
  readonly pending = new Map<string, Pending>();
  readonly byRequest = new Map<string, string>();
  readonly misses = new Map<string, number>();
  peers: OverlayPeer[] = [];
  readonly rtt = new Map<string, number | null>();
  private lastServices = '';
  private lastPeers = '';
  private subnetAskedAt: number | null = null;
  private counter = 0;
  private readonly instanceId: string;

  constructor(opts: CoreOptions) {
    this.opts = {
      queryRetryMs: 2000, queryAttempts: 5, subnetRetryMs: 2000, interestIdleMs: 600_000, missCacheMs: 2000, requestIdPrefix: 'q',
      maxAddressQueries: 64, maxInterest: 1000,
      ...opts,
    };
    this.instanceId = this.opts.requestIdPrefix;
  }

  // ------------------------------------------------------------------ identity

  /**
   * The NodeEngine registered (or the persisted registration was read) as `workerId`. A different
   * id than before starts from scratch: instances of another identity are not ours any more.
   */
  attach(workerId: string, subnet?: { subnet: string; subnet_v6: string | null }): Effect[] {
    const fx: Effect[] = [];
    if (this.workerId !== null && this.workerId !== workerId) {
      fx.push(...this.dropAllInterest());
      for (const l of this.local.values()) fx.push({ type: 'forget', nsip: l.nsip, nsip_v6: l.nsip_v6 });
      this.local.clear();
      this.subnet = null;
      this.subnet_v6 = null;
      this.peers = [];
      this.rtt.clear();
      fx.push({ type: 'persist' });
    }
    this.workerId = workerId;
    if (subnet !== undefined && this.subnet === null) {
      this.subnet = subnet.subnet;
      this.subnet_v6 = subnet.subnet_v6;
    }
    return fx;
  }

  get registered(): boolean {
    return this.workerId !== null && this.subnet !== null;
  }

  /** the MQTT connection is (re)established: ask for the subnet, announce instances, re-query tables */
  connected(now: number): Effect[] {
    const id = this.workerId;
    if (id === null) return [];
    const fx: Effect[] = [this.subnetRequest(now)];
    if (this.subnet !== null) for (const l of this.local.values()) fx.push(this.deployedMessage(l));
    // the cluster keeps no state: ask again for every table (it registers the interest again)
    for (const p of this.pending.values()) this.byRequest.delete(p.request_id);
    this.pending.clear();
    for (const [job, i] of this.interest) {
      if (!i.subscribed) {
        i.subscribed = true;
        fx.push({ type: 'subscribe', topic: netTopics.jobUpdates(job) });
      }
      fx.push(...this.sendQuery({ job_name: job, ip: null }, now));
    }
    return fx;
  }

  private subnetRequest(now: number): Effect {
    this.subnetAskedAt = now;
    const msg: SubnetRequest = { method: 'get', host_ip: this.opts.hostIp, host_port: this.opts.hostPort };
    return { type: 'publish', topic: netTopics.subnet(this.workerId as string), payload: msg };
  }

  /** nodes/<id>/net/subnet/result */
  subnetResult(msg: SubnetResult, _now: number): Effect[] {
    if (this.workerId === null) return [];
    this.subnetAskedAt = null;
    if (msg.subnet === undefined) return [{ type: 'subnet-error', error: msg.error ?? 'the cluster gave no subnet' }];
    try {
      parseSubnet(msg.subnet);
      if (msg.subnet_v6 !== undefined && msg.subnet_v6 !== null) parseSubnet6(msg.subnet_v6);
    } catch (err) {
      return [{ type: 'subnet-error', error: `the cluster gave an unusable subnet: ${err instanceof Error ? err.message : String(err)}` }];
    }
    const v6 = msg.subnet_v6 ?? null;
    const first = this.subnet === null;
    const changed = !first && (this.subnet !== msg.subnet || this.subnet_v6 !== v6);
    this.subnet = msg.subnet;
    this.subnet_v6 = v6;
    const ranges: string[] = [];
    for (const r of msg.service_ranges ?? []) {
      try { ranges.push(formatSubnet(parseSubnet(r))); } catch { /* not an IPv4 subnet: left out (the cluster checked them) */ }
    }
    const fx: Effect[] = [{ type: 'subnet', subnet: msg.subnet, subnet_v6: v6, changed, service_ranges: ranges }];
    if (first) for (const l of this.local.values()) fx.push(this.deployedMessage(l));
    return fx;
  }

  // ------------------------------------------------------------------ local instances

  private deployedMessage(l: LocalInstance): Effect {
    const msg: ServiceDeployed = {
      job_name: l.job_name, instance_number: l.instance_number, nsip: l.nsip, nsip_v6: l.nsip_v6,
      host_ip: this.opts.hostIp, host_port: this.opts.hostPort, subnet: this.subnet as string, subnet_v6: this.subnet_v6,
    };
    return { type: 'publish', topic: netTopics.serviceDeployed(this.workerId as string), payload: msg };
  }

  /** POST /instance/deploy: checks the addresses against the subnet; throws OakError */
  deploy(d: NetInstanceDeploy, now: number): Effect[] {
    if (this.workerId === null || this.subnet === null) {
      throw new OakError('OAK_CONFLICT', 'the NetManager is not registered yet', { hint: 'POST /register first (the NodeEngine does it at its start)' });
    }
    if (!isTopicSafeJob(d.job_name)) throw new OakError('OAK_BAD_REQUEST', `job name ${JSON.stringify(d.job_name)} cannot be used in a topic`, { path: 'job_name', hint: 'no /, +, #, $ or spaces' });
    const ip = parseIPv4(d.nsip);
    if (ip === undefined || !contains(parseSubnet(this.subnet), ip) || d.nsip === gatewayOf(this.subnet)) {
      throw new OakError('OAK_BAD_REQUEST', `nsip ${d.nsip} is not a host address of this worker's subnet ${this.subnet}`, { path: 'nsip', hint: 'give the instance namespace\'s address on the bridge' });
    }
    const v6 = d.nsip_v6 ?? null;
    if (v6 !== null) {
      const n6 = parseIPv6(v6);
      if (this.subnet_v6 === null || n6 === undefined || !contains6(parseSubnet6(this.subnet_v6), n6)) {
        throw new OakError('OAK_BAD_REQUEST', `nsip_v6 ${v6} is not inside this worker's subnet ${this.subnet_v6 ?? '(none)'}`, { path: 'nsip_v6' });
      }
    }
    const fx: Effect[] = [];
    const k = key(d.job_name, d.instance_number);
    const before = this.local.get(k);
    for (const other of this.local.values()) {
      if (other !== before && (other.nsip === d.nsip || (v6 !== null && other.nsip_v6 === v6))) {
        throw new OakError('OAK_CONFLICT', `address ${d.nsip} is already used by instance ${other.instance_number} of ${other.job_name}`, { path: 'nsip', hint: 'undeploy that instance first' });
      }
    }
    // the NodeEngine replays its notices after every registration: the same instance again only keeps the interest
    if (before !== undefined && before.nsip === d.nsip && before.nsip_v6 === v6) return this.use(d.job_name, now);
    if (before !== undefined) fx.push({ type: 'forget', nsip: before.nsip, nsip_v6: before.nsip_v6 });
    const l: LocalInstance = { job_name: d.job_name, instance_number: d.instance_number, nsip: d.nsip, nsip_v6: v6 };
    this.local.set(k, l);
    fx.unshift({ type: 'persist' });
    fx.push(this.deployedMessage(l));
    // its own service: instances talk to their siblings and the tables carry the local ones
    fx.push(...this.use(d.job_name, now));
    return fx;
  }

  /** POST /instance/undeploy (unknown instances too) */
  undeploy(u: NetInstanceUndeploy, now: number): Effect[] {
    const k = key(u.job_name, u.instance_number);
    const l = this.local.get(k);
    if (l === undefined || this.workerId === null) return [];
    this.local.delete(k);
    const fx: Effect[] = [{ type: 'persist' }];
    const msg: ServiceUndeployed = { job_name: u.job_name, instance_number: u.instance_number };
    fx.push({ type: 'publish', topic: netTopics.serviceUndeployed(this.workerId), payload: msg });
    // out of the local copy at once; the cluster's update follows
    const t = this.tables.get(u.job_name);
    if (t !== undefined) {
      const instances = t.instances.filter((e) => !(e.worker_id === this.workerId && e.instance_number === u.instance_number));
      if (instances.length !== t.instances.length) this.tables.set(u.job_name, { ...t, instances });
    }
    const i = this.interest.get(u.job_name);
    if (i !== undefined) i.lastUsed = Math.max(i.lastUsed, now);
    if (this.local.size === 0) fx.push(...this.dropAllInterest());
    fx.push(...this.servicesEffect());
    fx.push({ type: 'forget', nsip: l.nsip, nsip_v6: l.nsip_v6 });
    return fx;
  }

  // ------------------------------------------------------------------ interest and tables

  /** a local instance uses `job` (DNS, deploy): keep its table, query it when missing */
  use(job: string, now: number): Effect[] {
    if (this.workerId === null || !isTopicSafeJob(job)) return [];
    const fx: Effect[] = [];
    let i = this.interest.get(job);
    if (i === undefined) {
      if (this.interest.size >= this.opts.maxInterest) return [];
      i = { lastUsed: now, subscribed: false };
      this.interest.set(job, i);
      fx.push({ type: 'persist' });
    }
    i.lastUsed = Math.max(i.lastUsed, now);
    if (!i.subscribed) {
      // subscribe before asking, so that no update between answer and subscription is missed
      i.subscribed = true;
      fx.push({ type: 'subscribe', topic: netTopics.jobUpdates(job) });
    }
    if (!this.tables.has(job)) fx.push(...this.sendQuery({ job_name: job, ip: null }, now));
    return fx;
  }

  /** the datapath saw traffic to a virtual address it cannot translate */
  unknownAddress(ip: string, now: number): Effect[] {
    if (this.workerId === null) return [];
    const job = this.ipIndex.get(ip);
    if (job !== undefined) return this.use(job, now);
    const missUntil = this.misses.get(ip);
    if (missUntil !== undefined && missUntil > now) return [];
    if (this.pending.has(`ip:${ip}`)) return [];
    let byAddress = 0;
    for (const p of this.pending.values()) if (p.ip !== null) byAddress++;
    if (byAddress >= this.opts.maxAddressQueries) return [];
    return this.sendQuery({ job_name: null, ip }, now);
  }

  private sendQuery(q: { job_name: string | null; ip: string | null }, now: number): Effect[] {
    const k = q.job_name !== null ? `job:${q.job_name}` : `ip:${q.ip ?? ''}`;
    if (this.pending.has(k)) return [];
    const request_id = `${this.instanceId}-${(++this.counter).toString(36)}`;
    const p: Pending = { request_id, job_name: q.job_name, ip: q.ip, sentAt: now, attempts: 1 };
    this.pending.set(k, p);
    this.byRequest.set(request_id, k);
    return [this.queryMessage(p)];
  }

  private queryMessage(p: Pending): Effect {
    const msg: TableQueryRequest = { request_id: p.request_id, ...(p.job_name !== null ? { job_name: p.job_name } : {}), ...(p.ip !== null ? { ip: p.ip } : {}) };
    return { type: 'publish', topic: netTopics.tableQueryRequest(this.workerId as string), payload: msg };
  }

  /** nodes/<id>/net/tablequery/result */
  tableResult(msg: TableQueryResult, now: number): Effect[] {
    const k = this.byRequest.get(msg.request_id);
    const p = k === undefined ? undefined : this.pending.get(k);
    if (p === undefined || k === undefined) {
      // a late answer to a query given up, or a stranger's: only a table we want is taken
      if (msg.table !== undefined && this.interest.get(msg.table.job_name)?.subscribed === true) return this.applyTable(msg.table);
      return [];
    }
    this.pending.delete(k);
    this.byRequest.delete(msg.request_id);
    if (msg.table === undefined || (p.job_name !== null && msg.table.job_name !== p.job_name)) {
      if (p.ip !== null) this.misses.set(p.ip, now + this.opts.missCacheMs);
      const fx: Effect[] = [];
      // no such service: nothing to keep a subscription for (unless an instance of it is here)
      const job = p.job_name;
      if (job !== null) this.misses.set(`job:${job}`, now + this.opts.missCacheMs);
      if (job !== null && !this.tables.has(job) && ![...this.local.values()].some((l) => l.job_name === job)) fx.push(...this.dropInterest(job));
      fx.push({ type: 'table', job_name: p.job_name, ip: p.ip, table: null });
      return fx;
    }
    const job = msg.table.job_name;
    if (!isTopicSafeJob(job)) return [{ type: 'table', job_name: p.job_name, ip: p.ip, table: null }];
    const applied = this.applyTable(msg.table);
    // the table is in: use() subscribes (when an address query found it) and asks nothing more
    return [...this.use(job, now), ...applied, { type: 'table', job_name: p.job_name ?? job, ip: p.ip, table: msg.table }];
  }

  /** jobs/<job>/updates_available: the job's full table */
  update(topicJob: string, table: ServiceTable, _now: number): Effect[] {
    if (table.job_name !== topicJob) return [];
    if (this.interest.get(topicJob)?.subscribed !== true) return [];
    return this.applyTable(table);
  }

  private applyTable(table: ServiceTable): Effect[] {
    const job = table.job_name;
    const old = this.tables.get(job);
    this.tables.set(job, table);
    this.reindex();
    const fx = this.servicesEffect();
    if (old !== undefined) {
      const still = new Set(table.instances.map((e) => e.nsip));
      for (const e of old.instances) if (!still.has(e.nsip)) fx.push({ type: 'forget', nsip: e.nsip, nsip_v6: e.nsip_v6 ?? null });
    }
    return fx;
  }

  private reindex(): void {
    this.ipIndex.clear();
    for (const t of this.tables.values()) {
      for (const a of [t.service_ip, t.service_ip_v6, t.closest_ip, t.closest_ip_v6]) if (a !== undefined && a !== null) this.ipIndex.set(a, t.job_name);
      for (const e of t.instances) for (const a of [e.instance_ip, e.instance_ip_v6]) if (a !== undefined && a !== null) this.ipIndex.set(a, t.job_name);
    }
  }

  private dropInterest(job: string): Effect[] {
    const i = this.interest.get(job);
    if (i === undefined || this.workerId === null) return [];
    this.interest.delete(job);
    const fx: Effect[] = [];
    const p = this.pending.get(`job:${job}`);
    if (p !== undefined) {
      this.pending.delete(`job:${job}`);
      this.byRequest.delete(p.request_id);
    }
    if (i.subscribed) fx.push({ type: 'unsubscribe', topic: netTopics.jobUpdates(job) });
    const msg: InterestRemove = { job_name: job };
    fx.push({ type: 'publish', topic: netTopics.interestRemove(this.workerId), payload: msg });
    const t = this.tables.get(job);
    this.tables.delete(job);
    this.reindex();
    if (t !== undefined) {
      // remote instances of a table nobody here uses any more: their flows go too
      for (const e of t.instances) if (e.worker_id !== this.workerId) fx.push({ type: 'forget', nsip: e.nsip, nsip_v6: e.nsip_v6 ?? null });
    }
    fx.push({ type: 'persist' });
    return fx;
  }

  private dropAllInterest(): Effect[] {
    const fx: Effect[] = [];
    for (const job of [...this.interest.keys()]) fx.push(...this.dropInterest(job));
    const forgets = fx.filter((e) => e.type === 'forget');
    return [...fx.filter((e) => e.type !== 'forget'), ...this.servicesEffect(), ...forgets];
  }

  // ------------------------------------------------------------------ peers and RTT

  /** net/peers */
  setPeers(peers: OverlayPeer[], _now: number): Effect[] {
    const remote = peers.filter((p) => p.worker_id !== this.workerId).sort((a, b) => (a.worker_id < b.worker_id ? -1 : a.worker_id > b.worker_id ? 1 : 0));
    this.peers = remote;
    const known = new Set(remote.map((p) => p.worker_id));
    for (const w of [...this.rtt.keys()]) if (!known.has(w)) this.rtt.delete(w);
    const fx: Effect[] = [];
    const text = JSON.stringify(remote);
    if (text !== this.lastPeers) {
      this.lastPeers = text;
      fx.push({ type: 'peers', peers: remote });
    }
    fx.push(...this.servicesEffect());
    return fx;
  }

  /** the prober's latest results: report them, and move closest IPs when the order changed */
  rttResults(results: Map<string, number | null>, _now: number): Effect[] {
    if (this.workerId === null) return [];
    for (const [w, r] of results) if (this.peers.some((p) => p.worker_id === w)) this.rtt.set(w, r);
    const report: RttReport = { peers: [...this.rtt].map(([worker_id, rtt_ms]) => ({ worker_id, rtt_ms: rtt_ms === null ? null : Math.round(rtt_ms * 1000) / 1000 })) };
    return [{ type: 'publish', topic: netTopics.rtt(this.workerId), payload: report }, ...this.servicesEffect()];
  }

  // ------------------------------------------------------------------ time

  tick(now: number): Effect[] {
    if (this.workerId === null) return [];
    const fx: Effect[] = [];
    if (this.subnet === null && this.subnetAskedAt !== null && now - this.subnetAskedAt >= this.opts.subnetRetryMs) fx.push(this.subnetRequest(now));
    for (const [k, p] of [...this.pending]) {
      if (now - p.sentAt < this.opts.queryRetryMs) continue;
      if (p.attempts >= this.opts.queryAttempts) {
        this.pending.delete(k);
        this.byRequest.delete(p.request_id);
        if (p.ip !== null) this.misses.set(p.ip, now + this.opts.missCacheMs);
        fx.push({ type: 'table', job_name: p.job_name, ip: p.ip, table: null });
        continue;
      }
      p.attempts++;
      p.sentAt = now;
      fx.push(this.queryMessage(p));
    }
    for (const [ip, until] of [...this.misses]) if (until <= now) this.misses.delete(ip);
    const pinned = new Set([...this.local.values()].map((l) => l.job_name));
    const idle = [...this.interest].filter(([job, i]) => !pinned.has(job) && now - i.lastUsed >= this.opts.interestIdleMs).map(([job]) => job);
    if (idle.length > 0) {
      const dropped: Effect[] = [];
      for (const job of idle) dropped.push(...this.dropInterest(job));
      fx.push(...dropped.filter((e) => e.type !== 'forget'), ...this.servicesEffect(), ...dropped.filter((e) => e.type === 'forget'));
    }
    return fx;
  }

  // ------------------------------------------------------------------ datapath view

  /** what the datapath should hold now (tables of the jobs of interest, closest chosen) */
  services(): DatapathService[] {
    const self = this.workerId ?? '';
    return [...this.tables.values()]
      .sort((a, b) => (a.job_name < b.job_name ? -1 : a.job_name > b.job_name ? 1 : 0))
      .map((t) => {
        const closest = pickClosest(t.instances, self, this.rtt);
        return {
          job_name: t.job_name,
          service_ip: t.service_ip,
          service_ip_v6: t.service_ip_v6 ?? null,
          closest_ip: t.closest_ip ?? null,
          closest_ip_v6: t.closest_ip_v6 ?? null,
          closest: closest === undefined ? null : { nsip: closest.nsip, nsip_v6: closest.nsip_v6 ?? null },
          instances: [...t.instances]
            .sort((a, b) => a.instance_number - b.instance_number)
            .map((e: TableEntry) => ({ instance_number: e.instance_number, instance_ip: e.instance_ip, instance_ip_v6: e.instance_ip_v6 ?? null, nsip: e.nsip, nsip_v6: e.nsip_v6 ?? null })),
        };
      });
  }

  /** a `services` effect when the datapath's view changed since the last one */
  private servicesEffect(): Effect[] {
    const services = this.services();
    const text = JSON.stringify(services);
    if (text === this.lastServices) return [];
    this.lastServices = text;
    return [{ type: 'services', services }];
  }

  /** the datapath was (re)created: the next services effect is sent whatever it holds */
  resetDatapathView(): Effect[] {
    this.lastServices = '';
    this.lastPeers = '';
    return [{ type: 'peers', peers: this.peers }, ...this.servicesEffect()];
  }

  // ------------------------------------------------------------------ DNS

  /**
   * An overlay name: `<svc>.<svcns>.<app>.<appns>.oak` (service IP) or `<n>.<svc>...oak` (instance
   * n's IP). `forward`: not ours; `answer`: the addresses (null: no such name, []: no address of
   * this family); `wait`: the table
   * is being asked for (carry out `effects`, then ask again once a `table` effect came).
   */
  lookup(name: string, type: 'A' | 'AAAA', now: number):
    | { kind: 'forward' }
    | { kind: 'answer'; addresses: string[] | null }
    | { kind: 'wait'; job_name: string; effects: Effect[] } {
    if (!inZone(name)) return { kind: 'forward' };
    const parsed = parseOverlayName(name);
    if (parsed === undefined) return { kind: 'answer', addresses: null };
    const t = this.tables.get(parsed.job_name);
    const miss = this.misses.get(`job:${parsed.job_name}`);
    if (t === undefined && miss !== undefined && miss > now) return { kind: 'answer', addresses: null };
    const fx = this.use(parsed.job_name, now);
    if (t === undefined) {
      if (this.workerId === null || !this.pending.has(`job:${parsed.job_name}`)) return { kind: 'answer', addresses: null };
      return { kind: 'wait', job_name: parsed.job_name, effects: fx };
    }
    const pick = (v4: string | null | undefined, v6: string | null | undefined): string[] => {
      const a = type === 'A' ? v4 : v6;
      return a === undefined || a === null ? [] : [a];
    };
    if (parsed.instance_number === undefined) return { kind: 'answer', addresses: pick(t.service_ip, t.service_ip_v6) };
    const e = t.instances.find((x) => x.instance_number === parsed.instance_number);
    return { kind: 'answer', addresses: e === undefined ? null : pick(e.instance_ip, e.instance_ip_v6) };
  }

  /** what to persist besides the registration */
  snapshot(): CoreSnapshot {
    return { instances: [...this.local.values()].map((l) => ({ ...l })), interest: [...this.interest.keys()] };
  }

  /** a persisted snapshot back (after a restart): tables are asked for again on connect */
  restore(s: CoreSnapshot, now: number): void {
    for (const l of s.instances) this.local.set(key(l.job_name, l.instance_number), { ...l });
    for (const job of s.interest) if (isTopicSafeJob(job)) this.interest.set(job, { lastUsed: now, subscribed: false });
  }

  status(): Record<string, unknown> {
    return {
      worker_id: this.workerId,
      subnet: this.subnet,
      subnet_v6: this.subnet_v6,
      gateway: this.subnet === null ? null : gatewayOf(this.subnet),
      gateway_v6: this.subnet_v6 === null ? null : gatewayOf6(this.subnet_v6),
      instances: [...this.local.values()],
      peers: this.peers.length,
      interest: [...this.interest.keys()].sort(),
      pending_queries: this.pending.size,
      tables: this.services(),
      rtt: [...this.rtt].map(([worker_id, rtt_ms]) => ({ worker_id, rtt_ms })),
    };
  }
}
