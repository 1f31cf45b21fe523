/**
 * The cluster's side of the overlay network (issue 8), without I/O: the workers' subnets (given by
 * the root), where each instance's network namespace is (from its worker's NetManager, checked),
 * the service tables workers asked about (local instances merged with the root's view of the
 * other clusters), the overlay peers, and the RTTs workers measured. Like ClusterCore, every method
 * takes the current time and returns effects (MQTT publishes, link messages to the root, log
 * lines); the shell in cluster.ts carries them out.
 *
 * Stateless like the rest of the cluster: after a restart it asks the root again for every
 * worker's subnet (subnet_request is idempotent at the root) and for every table a worker wants.
 *
 * What it trusts: the root (its subnets, tables and peers are taken as they come, shapes checked
 * by the link); the desired set and the instances' statuses (ClusterCore, through NetView). What
 * it does not trust: workers. A worker may only describe instances assigned to it, inside the
 * subnet the root gave it, and its queries, interests and messages are bounded and rate limited.
 */
import { isIP } from 'node:net';
import { ACTIVE_STATES, instanceName, netTopics } from '@oak/contracts';
import type {
  ClusterToRoot, HealthState, InstanceAddresses, InstanceNet, InstanceState, OverlayPeer, PeerRtt, RootToCluster, RttReport, ServiceDeployed,
  ServiceTable, ServiceUndeployed, SubnetRequest, SubnetResult, TableEntry, TableQueryRequest, TableQueryResult, WorkerNet,
} from '@oak/contracts';
import { contains, contains6, formatSubnet, formatSubnet6, parseIPv4, parseIPv6, parseSubnet, parseSubnet6 } from '@oak/net';

/** the largest NetManager message read (subnet, table query, deployed, undeployed, interest removal) */
export const NET_MESSAGE_MAX_BYTES = 64 * 1024;
/** the largest RTT report read (up to 10000 peers) */
export const RTT_REPORT_MAX_BYTES = 1024 * 1024;
/** how long an undeployed instance's late "deployed" notice counts as stale (ms) */
export const LEFT_KEEP_MS = 60_000;
/** undeployed instances remembered for that at most */
export const LEFT_MAX = 10_000;

export type InstanceStatusMessage = Extract<ClusterToRoot, { type: 'instance_status' }>;
type SubnetResultMsg = Extract<RootToCluster, { type: 'subnet_result' }>;
type TableResultMsg = Extract<RootToCluster, { type: 'table_result' }>;

export type NetEffect =
  | { type: 'publish'; topic: string; payload: unknown; retain?: boolean }
  | { type: 'link'; message: ClusterToRoot }
  /** a worker's overlay place changed: send the aggregate soon (worker_summary[].net) */
  | { type: 'aggregate' }
  | { type: 'log'; level: 'info' | 'warn'; message: string };

/** What the net core reads of the cluster's desired set and workers (ClusterCore in the shell). */
export interface NetView {
  /** the instance the root wants here, or undefined */
  instance(job: string, n: number): NetInstanceView | undefined;
  /** every instance of a job the root wants here */
  instancesOf(job: string): Iterable<NetInstanceView>;
  /** every instance the root wants here */
  allInstances(): Iterable<NetInstanceView>;
  /** the worker registered with this cluster and is not forgotten */
  workerKnown(id: string): boolean;
  /** the worker is known and not declared lost */
  workerAlive(id: string): boolean;
  /** the root's first sync arrived (before it, "not assigned to you" cannot be judged) */
  synced(): boolean;
}

export interface NetInstanceView {
  job_name: string;
  instance_number: number;
  worker_id: string | null;
  status: InstanceState;
  status_detail: string;
  publicip: string | null;
  overlay?: InstanceAddresses | undefined;
  /** the epoch of its assignment (echoed in every instance_status) */
  epoch?: number | undefined;
  /** the health probe's verdict and local restarts its worker reported (issue 10; undefined: no probe) */
  health?: HealthState | undefined;
  restarts?: number | undefined;
}

/** Traffic goes to an instance only when it runs and its probe (if any) says healthy. */
export function servesTraffic(d: Pick<NetInstanceView, 'status' | 'health'>): boolean {
  return d.status === 'RUNNING' && (d.health === undefined || d.health === 'healthy');
}

export interface NetOptions {
  /** table updates are coalesced this long (ms) before they go out */
  coalesceMs: number;
  /** jobs one worker may be interested in at once */
  maxInterestsPerWorker: number;
  /** table queries to the root waiting for an answer at once */
  maxOutstandingQueries: number;
  /** a root query unanswered this long is answered from local knowledge or with an error (ms) */
  queryTimeoutMs: number;
  /** a subnet request unanswered by the root this long gets an error (the NetManager retries) */
  subnetTimeoutMs: number;
  /** table queries per worker: burst and refill per second */
  queryBurst: number;
  queryRatePerS: number;
  /** other net messages (subnet, deployed, undeployed, interest removal) per worker */
  messageBurst: number;
  messageRatePerS: number;
  /** ServiceDeployed held per worker while its subnet or the root's sync is awaited */
  maxHeldPerWorker: number;
  /** RTT entries kept per worker */
  maxRttPeers: number;
}

export function netOptions(p: Partial<NetOptions> = {}): NetOptions {
  return {
    coalesceMs: p.coalesceMs ?? 50,
    maxInterestsPerWorker: p.maxInterestsPerWorker ?? 1024,
    maxOutstandingQueries: p.maxOutstandingQueries ?? 1024,
    queryTimeoutMs: p.queryTimeoutMs ?? 5000,
    subnetTimeoutMs: p.subnetTimeoutMs ?? 5000,
    queryBurst: p.queryBurst ?? 1024,
    queryRatePerS: p.queryRatePerS ?? 50,
    messageBurst: p.messageBurst ?? 500,
    messageRatePerS: p.messageRatePerS ?? 100,
    maxHeldPerWorker: p.maxHeldPerWorker ?? 256,
    maxRttPeers: p.maxRttPeers ?? 1000,
  };
}

/** A worker's overlay place as the cluster knows it. */
export interface WorkerNetState {
  /** root-given, normalised */
  subnet: string | null;
  subnet_v6: string | null;
  /** tunnel endpoint (its NetManager's NodePublicAddress/Port) */
  host_ip: string | null;
  host_port: number | null;
  rtt: PeerRtt[];
}

interface InstanceNetRecord {
  worker_id: string;
  job_name: string;
  instance_number: number;
  net: InstanceNet;
}

interface RootQuery {
  request_id: string;
  job_name?: string;
  ip?: string;
  sentAt: number;
  waiters: { worker: string; request_id: string }[];
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Where a v4 or v6 address lies, for "nsip inside its worker's subnet". */
function hostIn(ip: string, subnet: string, v6: boolean): boolean {
  if (v6) {
    const s = parseSubnet6(subnet);
    const a = parseIPv6(ip);
    if (a === undefined || !contains6(s, a)) return false;
    // neither the network address nor the gateway (first host)
    return a !== s.network && a !== s.network + 1n;
  }
  const s = parseSubnet(subnet);
  const a = parseIPv4(ip);
  if (a === undefined || !contains(s, a)) return false;
  const last = s.network + 2 ** (32 - s.prefix) - 1;
  return a !== s.network && a !== s.network + 1 && a !== last;
}

function normalSubnet(text: string, v6: boolean): string | null {
  try {
    return v6 ? formatSubnet6(parseSubnet6(text)) : formatSubnet(parseSubnet(text));
  } catch {
    return null;
  }
}

/** a tunnel endpoint: an IPv4 or IPv6 unicast address (not unspecified, not multicast) */
function endpointProblem(ip: string): string | undefined {
  const kind = isIP(ip);
  if (kind === 0) return `host_ip ${JSON.stringify(ip.slice(0, 64))} is not an IP address`;
  if (kind === 4) {
    const n = parseIPv4(ip);
    if (n === undefined) return `host_ip ${JSON.stringify(ip)} is not in dotted decimal form`;
    if (n === 0 || n === 0xffffffff || n >>> 28 === 0xe) return `host_ip ${ip} is not a unicast address`;
  } else {
    const n = parseIPv6(ip.toLowerCase());
    if (n === undefined) return `host_ip ${JSON.stringify(ip)} is not a plain IPv6 address`;
    if (n === 0n || n >> 120n === 0xffn) return `host_ip ${ip} is not a unicast address`;
  }
  return undefined;
}

/** a job name usable as one topic level (jobs/<job>/updates_available) */
function topicSafeJob(job: string): boolean {
  return /^[^/+#$\s\u0000]{1,255}$/.test(job);
}

const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

export class NetCore {
  readonly opts: NetOptions;
  readonly workers = new Map<string, WorkerNetState>();
  /** instance name -> its namespace, from its worker */
  readonly instances = new Map<string, InstanceNetRecord>();
  /** `worker address` -> the instance holding that namespace address there */
  private readonly byAddress = new Map<string, string>();
  /** job -> workers interested in its table */
  readonly interest = new Map<string, Set<string>>();
  /** worker -> how many jobs it follows */
  private readonly interestCount = new Map<string, number>();
  /** job -> the root's table (all clusters), while a worker is interested */
  readonly rootTables = new Map<string, ServiceTable>();
  /** jobs the root was asked about (it sends table_update for them until interest_remove) */
  private readonly askedRoot = new Set<string>();
  private readonly queries = new Map<string, RootQuery>();
  private readonly subnetAsks = new Map<string, { worker: string; sentAt: number; answer: boolean }>();
  /** ServiceDeployed waiting for the worker's subnet or the root's sync */
  private readonly held = new Map<string, Map<string, ServiceDeployed>>();
  private rootPeers: OverlayPeer[] = [];
  private readonly lastTables = new Map<string, string>();
  private lastPeers: string | undefined;
  /** jobs to re-check (first time marked) and whether the peers are */
  private readonly dirty = new Map<string, number>();
  private peersDirtyAt: number | null = null;
  private readonly queryBuckets = new Map<string, Bucket>();
  private readonly messageBuckets = new Map<string, Bucket>();
  private readonly logged = new Set<string>();
  /**
   * instances undeployed here lately, by name: the worker they were on and when. Its NetManager's
   * "deployed" notice goes out after the start (over its local API and MQTT, some ms after RUNNING)
   * and may arrive after a quick undeploy; such a notice is stale, not hostile, and is dropped
   * without a warning (bounded, kept LEFT_KEEP_MS).
   */
  private readonly left = new Map<string, { worker: string; at: number }>();
  /** instances whose net info went up to the root (a later status without it says null) */
  private readonly reportedNet = new Set<string>();
  private seq = 0;
  /** the root's extra IPv4 service ranges (from its last subnet_result), passed on in every SubnetResult */
  private serviceRanges: string[] = [];
  private readonly tag = Math.floor(Math.random() * 36 ** 6).toString(36);
  clusterId: string | null = null;
  linkUp = false;

  constructor(readonly view: NetView, opts: Partial<NetOptions> = {}) {
    this.opts = netOptions(opts);
  }

  // ------------------------------------------------------------------ helpers

  private nextId(prefix: string): string {
    this.seq = (this.seq + 1) % 1_000_000_000;
    return `${prefix}-${this.tag}-${this.seq}`;
  }

  private worker(id: string): WorkerNetState {
    let w = this.workers.get(id);
    if (!w) {
      w = { subnet: null, subnet_v6: null, host_ip: null, host_port: null, rtt: [] };
      this.workers.set(id, w);
    }
    return w;
  }

  private take(buckets: Map<string, Bucket>, id: string, burst: number, perS: number, now: number): boolean {
    const b = buckets.get(id) ?? { tokens: burst, at: now };
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perS);
    b.at = now;
    buckets.set(id, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** one log line per worker and kind of refusal (until 10000 distinct ones, then again) */
  private refuse(out: NetEffect[], worker: string, kind: string, message: string): void {
    const key = `${worker} ${kind}`;
    if (this.logged.has(key)) return;
    if (this.logged.size >= 10_000) this.logged.clear();
    this.logged.add(key);
    out.push({ type: 'log', level: 'warn', message: `net: worker ${worker}: ${message}` });
  }

  private markJob(job: string, now: number): void {
    if (!this.dirty.has(job)) this.dirty.set(job, now);
  }

  private markPeers(now: number): void {
    this.peersDirtyAt ??= now;
  }

  /** when the next flush is due (ms, the caller's clock), or null when nothing waits */
  nextFlushAt(): number | null {
    let at: number | null = this.peersDirtyAt;
    for (const t of this.dirty.values()) if (at === null || t < at) at = t;
    return at === null ? null : at + this.opts.coalesceMs;
  }

  // ------------------------------------------------------------------ subnets

  /** nodes/{id}/net/subnet: the worker's subnet from the cache, else from the root */
  subnetRequest(worker: string, req: SubnetRequest, now: number): NetEffect[] {
    const out: NetEffect[] = [];
    if (!this.take(this.messageBuckets, worker, this.opts.messageBurst, this.opts.messageRatePerS, now)) {
      this.refuse(out, worker, 'rate', 'too many net messages; some are dropped');
      return out;
    }
    const problem = endpointProblem(req.host_ip);
    if (problem !== undefined) {
      this.refuse(out, worker, 'subnet-endpoint', `subnet request refused: ${problem}`);
      out.push({ type: 'publish', topic: netTopics.subnetResult(worker), payload: { error: `${problem} (NodePublicAddress in the NetManager's configuration)` } satisfies SubnetResult });
      return out;
    }
    const w = this.worker(worker);
    if (w.host_ip !== req.host_ip || w.host_port !== req.host_port) {
      w.host_ip = req.host_ip;
      w.host_port = req.host_port;
      this.markPeers(now);
      this.markWorkerJobs(worker, now);
      out.push({ type: 'aggregate' });
    }
    if (w.subnet !== null) {
      out.push({ type: 'publish', topic: netTopics.subnetResult(worker), payload: this.subnetPayload(w.subnet, w.subnet_v6) });
      return out;
    }
    out.push(...this.askSubnet(worker, now, true));
    return out;
  }

  private askSubnet(worker: string, now: number, answer: boolean): NetEffect[] {
    for (const a of this.subnetAsks.values()) {
      if (a.worker === worker) {
        a.answer ||= answer;
        return [];
      }
    }
    if (!this.linkUp) {
      return answer ? [{ type: 'publish', topic: netTopics.subnetResult(worker), payload: { error: 'the cluster cannot reach its root to get the subnet; try again' } satisfies SubnetResult }] : [];
    }
    const request_id = this.nextId('sn');
    this.subnetAsks.set(request_id, { worker, sentAt: now, answer });
    return [{ type: 'link', message: { type: 'subnet_request', request_id, worker_id: worker } }];
  }

  private subnetPayload(subnet: string, subnet_v6: string | null): SubnetResult {
    return { subnet, subnet_v6, ...(this.serviceRanges.length > 0 ? { service_ranges: [...this.serviceRanges] } : {}) };
  }

  /** the root's subnet_result */
  subnetResult(msg: SubnetResultMsg, now: number): NetEffect[] {
    const ask = this.subnetAsks.get(msg.request_id);
    if (!ask) return [];
    this.subnetAsks.delete(msg.request_id);
    const out: NetEffect[] = [];
    const topic = netTopics.subnetResult(ask.worker);
    const v4 = msg.subnet === undefined ? null : normalSubnet(msg.subnet, false);
    const v6 = msg.subnet_v6 === undefined || msg.subnet_v6 === null ? null : normalSubnet(msg.subnet_v6, true);
    if (msg.error !== undefined || v4 === null || (msg.subnet_v6 != null && v6 === null)) {
      const why = msg.error ?? 'the root gave no usable subnet';
      out.push({ type: 'log', level: 'warn', message: `net: no subnet for worker ${ask.worker}: ${why.slice(0, 300)}` });
      if (ask.answer) out.push({ type: 'publish', topic, payload: { error: why.slice(0, 1000) } satisfies SubnetResult });
      return out;
    }
    if (msg.service_ranges !== undefined) {
      const ranges = msg.service_ranges.slice(0, 15).map((r) => normalSubnet(r, false));
      if (ranges.every((r): r is string => r !== null)) this.serviceRanges = ranges;
      else out.push({ type: 'log', level: 'warn', message: 'net: the root sent service ranges that are not IPv4 subnets; kept the previous ones' });
    }
    if (!this.view.workerKnown(ask.worker)) return out;
    const w = this.worker(ask.worker);
    if (w.subnet !== v4 || w.subnet_v6 !== v6) {
      w.subnet = v4;
      w.subnet_v6 = v6;
      this.markPeers(now);
      out.push({ type: 'aggregate' });
    }
    if (ask.answer) out.push({ type: 'publish', topic, payload: this.subnetPayload(v4, v6) });
    out.push(...this.retryHeld(ask.worker, now));
    return out;
  }

  // ------------------------------------------------------------------ instances

  /** nodes/{id}/net/service/deployed: checked against the assignment and the worker's subnet */
  serviceDeployed(worker: string, m: ServiceDeployed, now: number): NetEffect[] {
    const out: NetEffect[] = [];
    if (!this.take(this.messageBuckets, worker, this.opts.messageBurst, this.opts.messageRatePerS, now)) {
      this.refuse(out, worker, 'rate', 'too many net messages; some are dropped');
      return out;
    }
    const name = instanceName(m.job_name, m.instance_number);
    const w = this.worker(worker);
    // its subnet first (after a cluster restart the root is asked for it), and the desired set
    if (w.subnet === null || !this.view.synced()) {
      const held = this.held.get(worker) ?? new Map<string, ServiceDeployed>();
      if (!held.has(name) && held.size >= this.opts.maxHeldPerWorker) {
        this.refuse(out, worker, 'held', `more than ${this.opts.maxHeldPerWorker} instances reported before its subnet is known; dropped`);
        return out;
      }
      held.set(name, m);
      this.held.set(worker, held);
      if (w.subnet === null) out.push(...this.askSubnet(worker, now, false));
      return out;
    }
    out.push(...this.acceptDeployed(worker, m, now));
    return out;
  }

  private retryHeld(worker: string, now: number): NetEffect[] {
    const held = this.held.get(worker);
    if (!held) return [];
    const w = this.workers.get(worker);
    if (!w || w.subnet === null || !this.view.synced()) return [];
    this.held.delete(worker);
    return [...held.values()].flatMap((m) => this.acceptDeployed(worker, m, now));
  }

  /** the root's sync arrived: held reports can be judged now */
  synced(now: number): NetEffect[] {
    const out: NetEffect[] = [];
    for (const worker of [...this.held.keys()]) out.push(...this.retryHeld(worker, now));
    for (const job of this.interest.keys()) this.markJob(job, now);
    out.push(...this.prune(now));
    return out;
  }

  private acceptDeployed(worker: string, m: ServiceDeployed, now: number): NetEffect[] {
    const out: NetEffect[] = [];
    const name = instanceName(m.job_name, m.instance_number);
    const w = this.worker(worker);
    const d = this.view.instance(m.job_name, m.instance_number);
    const label = `${m.job_name.slice(0, 255)}.instance.${m.instance_number}`;
    const no = (kind: string, why: string): NetEffect[] => {
      this.refuse(out, worker, `${kind} ${name}`, `service deployed for ${label} refused: ${why}`);
      return out;
    };
    if (!d) {
      const gone = this.left.get(name);
      if (gone !== undefined && gone.worker === worker && now - gone.at <= LEFT_KEEP_MS) return out;
    }
    if (!d || d.worker_id !== worker) return no('assign', 'that instance is not assigned to this worker');
    const subnet = w.subnet;
    if (subnet === null) return no('subnet', 'its subnet is not known yet');
    if (normalSubnet(m.subnet, false) !== subnet) return no('subnet', `subnet ${m.subnet.slice(0, 64)} is not the worker's own (${w.subnet ?? 'none'})`);
    const v6 = m.subnet_v6 === undefined || m.subnet_v6 === null ? null : normalSubnet(m.subnet_v6, true);
    if (m.subnet_v6 != null && (v6 === null || v6 !== w.subnet_v6)) return no('subnet6', `subnet_v6 ${m.subnet_v6.slice(0, 64)} is not the worker's own (${w.subnet_v6 ?? 'none'})`);
    if (!hostIn(m.nsip, subnet, false)) return no('nsip', `nsip ${m.nsip.slice(0, 64)} is not a host address of ${subnet}`);
    const nsip6 = m.nsip_v6 ?? null;
    if (nsip6 !== null) {
      if (w.subnet_v6 === null) return no('nsip6', 'the worker has no IPv6 subnet');
      if (!hostIn(nsip6.toLowerCase(), w.subnet_v6, true)) return no('nsip6', `nsip_v6 ${nsip6.slice(0, 64)} is not a host address of ${w.subnet_v6}`);
    }
    const problem = endpointProblem(m.host_ip);
    if (problem !== undefined) return no('endpoint', problem);
    // another instance of this worker has that address: refused while that one is active here,
    // else its record is stale (its undeploy was missed) and goes
    for (const addr of nsip6 === null ? [m.nsip] : [m.nsip, nsip6]) {
      const owner = this.byAddress.get(`${worker} ${addr}`);
      const r = owner === undefined || owner === name ? undefined : this.instances.get(owner);
      if (r === undefined || owner === undefined) continue;
      const od = this.view.instance(r.job_name, r.instance_number);
      if (od && od.worker_id === worker && ACTIVE_STATES.has(od.status)) return no('dup', `address ${addr} is already ${r.job_name.slice(0, 255)}.instance.${r.instance_number}'s`);
      this.dropInstance(owner);
      this.markJob(r.job_name, now);
    }
    const net: InstanceNet = { nsip: m.nsip, nsip_v6: nsip6, host_ip: m.host_ip, host_port: m.host_port, subnet, subnet_v6: w.subnet_v6 };
    if (w.host_ip !== m.host_ip || w.host_port !== m.host_port) {
      w.host_ip = m.host_ip;
      w.host_port = m.host_port;
      this.markPeers(now);
      this.markWorkerJobs(worker, now);
      out.push({ type: 'aggregate' });
    }
    const before = this.instances.get(name);
    if (before && before.worker_id === worker && sameJson(before.net, net)) return out;
    this.putInstance(name, { worker_id: worker, job_name: m.job_name, instance_number: m.instance_number, net });
    this.markJob(m.job_name, now);
    this.reportedNet.add(name);
    out.push({ type: 'link', message: this.statusWithNet(d, net) });
    return out;
  }

  /** nodes/{id}/net/service/undeployed */
  serviceUndeployed(worker: string, m: ServiceUndeployed, now: number): NetEffect[] {
    const out: NetEffect[] = [];
    if (!this.take(this.messageBuckets, worker, this.opts.messageBurst, this.opts.messageRatePerS, now)) {
      this.refuse(out, worker, 'rate', 'too many net messages; some are dropped');
      return out;
    }
    const name = instanceName(m.job_name, m.instance_number);
    this.held.get(worker)?.delete(name);
    const r = this.instances.get(name);
    // only its own worker takes an instance out
    if (!r || r.worker_id !== worker) return out;
    this.dropInstance(name);
    this.markJob(m.job_name, now);
    const d = this.view.instance(m.job_name, m.instance_number);
    this.reportedNet.delete(name);
    if (d) out.push({ type: 'link', message: this.statusWithNet(d, null) });
    return out;
  }

  private putInstance(name: string, r: InstanceNetRecord): void {
    this.dropInstance(name);
    this.instances.set(name, r);
    this.byAddress.set(`${r.worker_id} ${r.net.nsip}`, name);
    if (r.net.nsip_v6 != null) this.byAddress.set(`${r.worker_id} ${r.net.nsip_v6}`, name);
  }

  private dropInstance(name: string): void {
    const r = this.instances.get(name);
    if (!r) return;
    this.instances.delete(name);
    for (const a of [r.net.nsip, r.net.nsip_v6]) {
      if (a == null) continue;
      const k = `${r.worker_id} ${a}`;
      if (this.byAddress.get(k) === name) this.byAddress.delete(k);
    }
  }

  private statusWithNet(d: NetInstanceView, net: InstanceNet | null): InstanceStatusMessage {
    const m: InstanceStatusMessage = { type: 'instance_status', job_name: d.job_name, instance_number: d.instance_number, status: d.status, status_detail: d.status_detail, worker_id: d.worker_id, net };
    if (d.publicip !== null) m.publicip = d.publicip;
    if (d.epoch !== undefined) m.epoch = d.epoch;
    if (d.health !== undefined) m.health = d.health;
    if (d.restarts !== undefined) m.restarts = d.restarts;
    return m;
  }

  /** the instance's namespace as its worker reported it, if any */
  netOf(job: string, n: number): InstanceNet | undefined {
    const r = this.instances.get(instanceName(job, n));
    if (!r) return undefined;
    const d = this.view.instance(job, n);
    return d && d.worker_id === r.worker_id ? r.net : undefined;
  }

  /**
   * instance_status.net for a status going to the root: the namespace while known, null once
   * (after it was sent) it is gone (moved, undeployed), absent otherwise
   */
  netForStatus(job: string, n: number): InstanceNet | null | undefined {
    const name = instanceName(job, n);
    const net = this.netOf(job, n);
    if (net !== undefined) {
      this.reportedNet.add(name);
      return net;
    }
    if (!this.reportedNet.delete(name)) return undefined;
    return null;
  }

  /** an instance status the cluster core produced (its table may change) */
  statusChanged(job: string, now: number): void {
    this.markJob(job, now);
  }

  /**
   * The root undeployed this instance from `worker` (the shell calls it before the cluster core
   * forgets the assignment): a late "deployed" notice of that worker for it is stale.
   */
  instanceLeft(job: string, n: number, worker: string | null, now: number): void {
    if (worker === null) return;
    const name = instanceName(job, n);
    this.left.delete(name);
    if (this.left.size >= LEFT_MAX) {
      for (const [k, v] of this.left) {
        if (this.left.size < LEFT_MAX && now - v.at <= LEFT_KEEP_MS) break;
        this.left.delete(k);
      }
    }
    this.left.set(name, { worker, at: now });
  }

  /** the desired set of this job changed (deploy, undeploy) */
  jobChanged(job: string, now: number): NetEffect[] {
    this.markJob(job, now);
    return this.prune(now);
  }

  private markWorkerJobs(worker: string, now: number): void {
    for (const r of this.instances.values()) if (r.worker_id === worker) this.markJob(r.job_name, now);
  }

  /** drops net info of instances no longer desired on the worker that reported them */
  private prune(now: number): NetEffect[] {
    for (const name of this.reportedNet) {
      const r = this.instances.get(name);
      if (!r && !this.desiredName(name)) this.reportedNet.delete(name);
    }
    for (const [name, r] of this.instances) {
      const d = this.view.instance(r.job_name, r.instance_number);
      if (!d || d.worker_id !== r.worker_id) {
        this.dropInstance(name);
        this.markJob(r.job_name, now);
      }
    }
    return [];
  }

  private desiredName(name: string): boolean {
    const i = name.lastIndexOf('.instance.');
    return i > 0 && this.view.instance(name.slice(0, i), Number(name.slice(i + 10))) !== undefined;
  }

  /** the worker was removed (revoked, node removed, forgotten): its instances, interests and peer entry go */
  workerRemoved(worker: string, now: number): NetEffect[] {
    const out: NetEffect[] = [];
    if (this.workers.delete(worker)) this.markPeers(now);
    this.held.delete(worker);
    this.queryBuckets.delete(worker);
    this.messageBuckets.delete(worker);
    for (const [name, r] of this.instances) {
      if (r.worker_id !== worker) continue;
      this.dropInstance(name);
      this.markJob(r.job_name, now);
    }
    for (const [job, set] of [...this.interest]) {
      if (this.loseInterest(set, worker) && set.size === 0) out.push(...this.dropInterest(job));
    }
    for (const [rid, a] of this.subnetAsks) if (a.worker === worker) this.subnetAsks.delete(rid);
    for (const q of this.queries.values()) q.waiters = q.waiters.filter((x) => x.worker !== worker);
    return out;
  }

  /** a worker was declared lost (or came back): its instances' statuses do the rest; peers may change */
  workerLiveness(worker: string, now: number): void {
    this.markWorkerJobs(worker, now);
    this.markPeers(now);
  }

  /** nodes/{id}/net/rtt */
  rttReport(worker: string, r: RttReport): void {
    const w = this.workers.get(worker);
    if (!w) return;
    w.rtt = r.peers.slice(0, this.opts.maxRttPeers).map((p) => ({ worker_id: p.worker_id.slice(0, 200), rtt_ms: p.rtt_ms }));
  }

  /** The RTT (ms) one of the two workers measured to the other, undefined when neither did (or the peer is silent). */
  rttMs(a: string, b: string): number | undefined {
    const find = (from: string, to: string): number | undefined => {
      const e = this.workers.get(from)?.rtt.find((p) => p.worker_id === to);
      return e && typeof e.rtt_ms === 'number' ? e.rtt_ms : undefined;
    };
    return find(a, b) ?? find(b, a);
  }

    /** worker_summary[].net of the aggregate */
  workerNet(worker: string): WorkerNet | undefined {
    const w = this.workers.get(worker);
    if (!w || (w.subnet === null && w.host_ip === null)) return undefined;
    return { subnet: w.subnet, subnet_v6: w.subnet_v6, host_ip: w.host_ip, host_port: w.host_port, rtt: w.rtt };
  }

  // ------------------------------------------------------------------ tables

  /** the local instances of a job with their net info (RUNNING and not unhealthy, on a live worker only) */
  localEntries(job: string): TableEntry[] {
    const out: TableEntry[] = [];
    for (const d of this.view.instancesOf(job)) {
      if (!servesTraffic(d) || d.worker_id === null || !this.view.workerAlive(d.worker_id)) continue;
      const r = this.instances.get(instanceName(job, d.instance_number));
      if (!r || r.worker_id !== d.worker_id) continue;
      const w = this.workers.get(r.worker_id);
      out.push({
        instance_number: d.instance_number,
        instance_ip: d.overlay?.instance_ip ?? null,
        instance_ip_v6: d.overlay?.instance_ip_v6 ?? null,
        nsip: r.net.nsip,
        nsip_v6: r.net.nsip_v6 ?? null,
        worker_id: r.worker_id,
        cluster_id: this.clusterId,
        host_ip: w?.host_ip ?? r.net.host_ip,
        host_port: w?.host_port ?? r.net.host_port,
        subnet: r.net.subnet,
        subnet_v6: r.net.subnet_v6 ?? null,
      });
    }
    return out;
  }

  /** the job is known here (assigned to this cluster) */
  private localJob(job: string): boolean {
    return this.view.instancesOf(job)[Symbol.iterator]().next().done !== true;
  }

  /**
   * A job's table: the local instances (authoritative for every instance assigned here) and the
   * root's entries for the others. undefined when neither knows the job.
   */
  table(job: string): ServiceTable | undefined {
    const root = this.rootTables.get(job);
    const local = [...this.view.instancesOf(job)];
    if (!root && local.length === 0) return undefined;
    const here = new Set(local.map((d) => d.instance_number));
    const entries = this.localEntries(job);
    for (const e of root?.instances ?? []) {
      if (here.has(e.instance_number)) continue;
      if (this.clusterId !== null && e.cluster_id === this.clusterId) continue;
      entries.push(e);
    }
    entries.sort((a, b) => a.instance_number - b.instance_number);
    const ov = local.find((d) => d.overlay !== undefined)?.overlay;
    const pick = <K extends 'service_ip' | 'service_ip_v6' | 'closest_ip' | 'closest_ip_v6'>(k: K): string | null => ov?.[k] ?? root?.[k] ?? null;
    return {
      job_name: job,
      service_ip: pick('service_ip'),
      service_ip_v6: pick('service_ip_v6'),
      closest_ip: pick('closest_ip'),
      closest_ip_v6: pick('closest_ip_v6'),
      instances: entries,
    };
  }

  /** the job whose service, closest or instance address `ip` is, by what is known here */
  private jobOfIp(ip: string): string | undefined {
    const want = ip.toLowerCase();
    const hit = (o: Partial<Record<string, unknown>> | undefined): boolean =>
      o !== undefined && ['service_ip', 'service_ip_v6', 'closest_ip', 'closest_ip_v6', 'instance_ip', 'instance_ip_v6'].some((k) => typeof o[k] === 'string' && (o[k] as string).toLowerCase() === want);
    for (const d of this.view.allInstances()) if (hit(d.overlay)) return d.job_name;
    for (const [job, t] of this.rootTables) {
      if (hit(t as unknown as Record<string, unknown>) || t.instances.some((e) => hit(e as unknown as Record<string, unknown>))) return job;
    }
    return undefined;
  }

  /** nodes/{id}/net/tablequery/request: registers interest; answered once the root's table is known */
  tableQuery(worker: string, q: TableQueryRequest, now: number): NetEffect[] {
    const out: NetEffect[] = [];
    const answer = (r: Omit<TableQueryResult, 'request_id'>): NetEffect[] => {
      out.push({ type: 'publish', topic: netTopics.tableQueryResult(worker), payload: { request_id: q.request_id, ...r } satisfies TableQueryResult });
      return out;
    };
    if (!this.take(this.queryBuckets, worker, this.opts.queryBurst, this.opts.queryRatePerS, now)) {
      this.refuse(out, worker, 'query-rate', 'too many table queries; answered with an error');
      return answer({ error: `rate limited: at most ${this.opts.queryRatePerS} table queries per second (burst ${this.opts.queryBurst}); try again later` });
    }
    let job = q.job_name;
    if (job !== undefined && !topicSafeJob(job)) return answer({ error: `job name ${JSON.stringify(job.slice(0, 255))} cannot be a topic level (no /, +, #, $, spaces)` });
    if (job === undefined && q.ip !== undefined) {
      if (isIP(q.ip) === 0) return answer({ error: `ip ${JSON.stringify(q.ip.slice(0, 64))} is not an IP address` });
      job = this.jobOfIp(q.ip);
    }
    if (job === undefined && q.ip === undefined) return answer({ error: 'a table query names a job_name or an ip' });
    if (job !== undefined) {
      if (!this.addInterest(worker, job)) {
        this.refuse(out, worker, 'interests', `more than ${this.opts.maxInterestsPerWorker} tables at once; query refused`);
        return answer({ error: `too many tables: a worker follows at most ${this.opts.maxInterestsPerWorker} jobs at once (send interest/remove for those it no longer needs)` });
      }
      if (this.rootTables.has(job) || (!this.linkUp && this.localJob(job))) {
        const t = this.table(job);
        if (t) return answer({ table: t });
      }
      if (!this.linkUp) return answer({ error: 'the cluster cannot reach its root; try again' });
      for (const rq of this.queries.values()) {
        if (rq.job_name === job) {
          rq.waiters.push({ worker, request_id: q.request_id });
          return out;
        }
      }
    } else if (!this.linkUp) {
      return answer({ error: 'the cluster cannot reach its root; try again' });
    }
    if (this.queries.size >= this.opts.maxOutstandingQueries) {
      const t = job === undefined ? undefined : this.table(job);
      return answer(t ? { table: t } : { error: 'the cluster has too many table queries in flight; try again' });
    }
    const request_id = this.nextId('tq');
    const rq: RootQuery = { request_id, sentAt: now, waiters: [{ worker, request_id: q.request_id }] };
    const msg: ClusterToRoot = { type: 'table_query', request_id };
    if (job !== undefined) {
      rq.job_name = job;
      msg.job_name = job;
      this.askedRoot.add(job);
    } else if (q.ip !== undefined) {
      rq.ip = q.ip;
      msg.ip = q.ip;
    }
    this.queries.set(request_id, rq);
    out.push({ type: 'link', message: msg });
    return out;
  }

  private addInterest(worker: string, job: string): boolean {
    const set = this.interest.get(job);
    if (set?.has(worker)) return true;
    const count = this.interestCount.get(worker) ?? 0;
    if (count >= this.opts.maxInterestsPerWorker) return false;
    if (set) set.add(worker);
    else this.interest.set(job, new Set([worker]));
    this.interestCount.set(worker, count + 1);
    return true;
  }

  /** takes `worker` out of one job's interest set; true when it was in */
  private loseInterest(set: Set<string>, worker: string): boolean {
    if (!set.delete(worker)) return false;
    const n = (this.interestCount.get(worker) ?? 1) - 1;
    if (n <= 0) this.interestCount.delete(worker);
    else this.interestCount.set(worker, n);
    return true;
  }

  /** the root's table_result */
  tableResult(msg: TableResultMsg, now: number): NetEffect[] {
    const rq = this.queries.get(msg.request_id);
    if (!rq) return [];
    this.queries.delete(msg.request_id);
    const out: NetEffect[] = [];
    let job = rq.job_name;
    if (msg.table !== undefined && topicSafeJob(msg.table.job_name) && (job === undefined || msg.table.job_name === job)) {
      job = msg.table.job_name;
      if (rq.job_name === undefined) {
        // asked by address: the waiters are interested in the job the root named
        const named = job;
        rq.waiters = rq.waiters.filter((wt) => {
          if (this.addInterest(wt.worker, named)) return true;
          out.push({ type: 'publish', topic: netTopics.tableQueryResult(wt.worker), payload: { request_id: wt.request_id, error: `too many tables: a worker follows at most ${this.opts.maxInterestsPerWorker} jobs at once` } satisfies TableQueryResult });
          return false;
        });
        this.askedRoot.add(job);
      }
      if (this.interest.has(job)) this.rootTables.set(job, msg.table);
      this.markJob(job, now);
    } else if (job !== undefined && this.localJob(job) && this.interest.has(job)) {
      // the root knows nothing beyond this cluster: the local instances are the table
      this.rootTables.set(job, { job_name: job, service_ip: null, instances: [] });
    }
    const t = job === undefined ? undefined : this.table(job);
    for (const wt of rq.waiters) {
      const payload: TableQueryResult = t ? { request_id: wt.request_id, table: t } : { request_id: wt.request_id, error: (msg.error ?? 'no such service').slice(0, 1000) };
      out.push({ type: 'publish', topic: netTopics.tableQueryResult(wt.worker), payload });
    }
    if (job !== undefined && !this.interest.has(job)) out.push(...this.dropInterest(job));
    // no such service anywhere: nobody keeps an interest in it (a lookup of an unknown name costs nothing lasting)
    else if (job !== undefined && t === undefined && this.interest.has(job)) out.push(...this.dropInterest(job));
    return out;
  }

  /** the root's table_update (a job this cluster asked about changed anywhere) */
  tableUpdate(table: ServiceTable, now: number): NetEffect[] {
    if (!this.interest.has(table.job_name)) return [];
    this.rootTables.set(table.job_name, table);
    this.markJob(table.job_name, now);
    return [];
  }

  /** nodes/{id}/net/interest/remove */
  interestRemove(worker: string, job: string, now: number): NetEffect[] {
    const out: NetEffect[] = [];
    if (!this.take(this.messageBuckets, worker, this.opts.messageBurst, this.opts.messageRatePerS, now)) {
      this.refuse(out, worker, 'rate', 'too many net messages; some are dropped');
      return out;
    }
    const set = this.interest.get(job);
    if (!set || !this.loseInterest(set, worker)) return out;
    if (set.size === 0) out.push(...this.dropInterest(job));
    return out;
  }

  private dropInterest(job: string): NetEffect[] {
    const set = this.interest.get(job);
    if (set) for (const w of [...set]) this.loseInterest(set, w);
    this.interest.delete(job);
    this.rootTables.delete(job);
    this.lastTables.delete(job);
    this.dirty.delete(job);
    if (!this.askedRoot.delete(job) || !this.linkUp) return [];
    return [{ type: 'link', message: { type: 'interest_remove', job_name: job } }];
  }

  // ------------------------------------------------------------------ peers

  /** the root's `peers`: the overlay workers of the other clusters */
  peers(list: OverlayPeer[], now: number): void {
    this.rootPeers = list;
    this.markPeers(now);
  }

  /** this cluster's workers with a subnet and an endpoint, then the other clusters' */
  peerList(): OverlayPeer[] {
    const out: OverlayPeer[] = [];
    const local = new Set<string>();
    for (const [id, w] of this.workers) {
      if (!this.view.workerKnown(id) || w.subnet === null || w.host_ip === null || w.host_port === null) continue;
      local.add(id);
      out.push({ worker_id: id, cluster_id: this.clusterId, subnet: w.subnet, subnet_v6: w.subnet_v6, host_ip: w.host_ip, host_port: w.host_port });
    }
    for (const p of this.rootPeers) {
      if (local.has(p.worker_id) || this.view.workerKnown(p.worker_id)) continue;
      if (this.clusterId !== null && p.cluster_id === this.clusterId) continue;
      out.push(p);
    }
    out.sort((a, b) => (a.worker_id < b.worker_id ? -1 : a.worker_id > b.worker_id ? 1 : 0));
    return out;
  }

  // ------------------------------------------------------------------ link and time

  /** the link said welcome: ask again for every table a worker follows (the root forgot) */
  linkConnected(clusterId: string | null, now: number): NetEffect[] {
    this.linkUp = true;
    if (clusterId !== null && clusterId !== this.clusterId) {
      this.clusterId = clusterId;
      this.markPeers(now);
      for (const job of this.interest.keys()) this.markJob(job, now);
    }
    const out: NetEffect[] = [];
    this.askedRoot.clear();
    for (const job of this.interest.keys()) {
      if ([...this.queries.values()].some((q) => q.job_name === job)) continue;
      if (this.queries.size >= this.opts.maxOutstandingQueries) break;
      const request_id = this.nextId('tq');
      this.queries.set(request_id, { request_id, job_name: job, sentAt: now, waiters: [] });
      this.askedRoot.add(job);
      out.push({ type: 'link', message: { type: 'table_query', request_id, job_name: job } });
    }
    // subnets of workers that reported instances before their subnet was known
    for (const worker of this.held.keys()) if (this.workers.get(worker)?.subnet == null) out.push(...this.askSubnet(worker, now, false));
    return out;
  }

  /** the link went down: whoever waits for the root is answered now */
  linkLost(now: number): NetEffect[] {
    this.linkUp = false;
    const out: NetEffect[] = [];
    for (const a of this.subnetAsks.values()) {
      if (a.answer) out.push({ type: 'publish', topic: netTopics.subnetResult(a.worker), payload: { error: 'the cluster lost its root link; try again' } satisfies SubnetResult });
    }
    this.subnetAsks.clear();
    for (const q of this.queries.values()) out.push(...this.answerFromLocal(q, 'the cluster lost its root link; try again'));
    this.queries.clear();
    this.askedRoot.clear();
    // tables cached from the root are kept (the last word until it answers again)
    for (const job of this.interest.keys()) this.markJob(job, now);
    return out;
  }

  private answerFromLocal(q: RootQuery, why: string): NetEffect[] {
    const t = q.job_name === undefined ? undefined : this.table(q.job_name);
    return q.waiters.map((wt) => ({ type: 'publish', topic: netTopics.tableQueryResult(wt.worker), payload: (t ? { request_id: wt.request_id, table: t } : { request_id: wt.request_id, error: why }) satisfies TableQueryResult }));
  }

  /** timeouts, forgotten workers */
  tick(now: number): NetEffect[] {
    const out: NetEffect[] = [];
    for (const [rid, a] of this.subnetAsks) {
      if (now - a.sentAt < this.opts.subnetTimeoutMs) continue;
      this.subnetAsks.delete(rid);
      if (a.answer) out.push({ type: 'publish', topic: netTopics.subnetResult(a.worker), payload: { error: 'the root did not answer in time; try again' } satisfies SubnetResult });
    }
    for (const [rid, q] of this.queries) {
      if (now - q.sentAt < this.opts.queryTimeoutMs) continue;
      this.queries.delete(rid);
      out.push(...this.answerFromLocal(q, 'the root did not answer in time; try again'));
    }
    for (const id of [...this.workers.keys()]) if (!this.view.workerKnown(id)) out.push(...this.workerRemoved(id, now));
    for (const job of [...this.interest.keys()]) {
      const set = this.interest.get(job);
      if (!set) continue;
      for (const w of [...set]) if (!this.view.workerKnown(w)) this.loseInterest(set, w);
      if (set.size === 0) out.push(...this.dropInterest(job));
    }
    for (const id of this.held.keys()) if (!this.view.workerKnown(id)) this.held.delete(id);
    out.push(...this.prune(now));
    return out;
  }

  /** publishes what changed and is due: full tables of interested jobs, the retained peer list */
  flush(now: number): NetEffect[] {
    const out: NetEffect[] = [];
    for (const [job, at] of [...this.dirty]) {
      if (now - at < this.opts.coalesceMs) continue;
      this.dirty.delete(job);
      if (!this.interest.has(job)) continue;
      const t = this.table(job);
      if (!t) continue;
      const text = JSON.stringify(t);
      if (this.lastTables.get(job) === text) continue;
      this.lastTables.set(job, text);
      out.push({ type: 'publish', topic: netTopics.jobUpdates(job), payload: t });
    }
    if (this.peersDirtyAt !== null && now - this.peersDirtyAt >= this.opts.coalesceMs) {
      this.peersDirtyAt = null;
      const list = this.peerList();
      const text = JSON.stringify(list);
      if (text !== this.lastPeers) {
        this.lastPeers = text;
        out.push({ type: 'publish', topic: netTopics.peers, payload: { peers: list }, retain: true });
      }
    }
    return out;
  }
}
