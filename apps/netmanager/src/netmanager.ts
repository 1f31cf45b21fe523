/**
 * The NetManager process around NetCore: the local API for the NodeEngine, the MQTT client with
 * the worker's identity (`<worker id>-net`), the datapath and the resolver (injected factories),
 * the RTT prober, persistence and the clock. Every core effect batch runs in order on one queue.
 *
 * Start: a persisted registration (netmanager.json) re-attaches at once: the datapath adopts the
 * kernel state (flows keep running), the broker is dialled with the stored identity and every
 * table of interest is asked for again. Otherwise the NodeEngine's POST /register brings it.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { NETMANAGER_CLIENT_SUFFIX, connectBus, consoleLogger } from '@oak/bus';
import type { Bus, Logger } from '@oak/bus';
import {
  DEFAULT_PROBE_PORT, DEFAULT_VNI, OakError, decodeJson, netTopics, parsePeerList, parseServiceTable, parseSubnetResult, parseTableQueryResult,
} from '@oak/contracts';
import type { NetInstanceDeploy, NetInstanceUndeploy, NetRegister, NetRegisterAnswer } from '@oak/contracts';
import { CLUSTER_SERVICE_NAME, pinnedTlsOptions } from '@oak/trust/tls';
import { keyPathOf, startApi } from './api.ts';
import type { ApiServer } from './api.ts';
import { DEFAULT_API_PORT, DEFAULT_KEY_DIR, DEFAULT_PUBLIC_PORT, NETMANAGER_VERSION } from './config.ts';
import { releaseVersion } from '@oak/sysinfo';
import { NetCore, gatewayOf, gatewayOf6 } from './core.ts';
import type { CoreOptions, Effect } from './core.ts';
import { defaultDatapath, defaultResolver } from './defaults.ts';
import type { DatapathFactory, DatapathPort, ResolverFactory, ResolverPort } from './ports.ts';
import { Prober } from './probe.ts';
import { readState, removeState, secureDir, snapshotOf, writeState } from './state.ts';
import type { PersistedState } from './state.ts';

export interface NetManagerOptions {
  /** local API port on 127.0.0.1 (default 6000; 0: ephemeral, see the handle's port) */
  port?: number;
  /** where netmanager-<port>.key is written (default /run/oak) */
  keyDir?: string;
  /** netmanager.json lives here */
  dataDir: string;
  /** NodePublicAddress: this worker's tunnel endpoint */
  publicAddress: string;
  /** NodePublicPort (default 50103) */
  publicPort?: number;
  /** broker used when neither /register nor the persisted state gives one (ClusterUrl/ClusterMqttPort) */
  fallbackMqttUrl?: string;
  /**
   * a connection to the cluster's broker inside this process (the 1-DOC: the cluster's
   * `localBrokerStream`) instead of dialling the broker URL; authenticated as usual
   */
  mqttStream?: () => import('node:stream').Duplex;
  /** the resolver on the gateway (default true) */
  dns?: boolean;
  /** resolver port (default 53; tests) */
  dnsPort?: number;
  /** resolver address (default the gateway, v4 and v6; tests: 127.0.0.1) */
  dnsHost?: string;
  /** resolvers for names outside .oak (default: none given to the resolver, it uses its own) */
  upstreams?: string[];
  /** RTT probe interval (default 5000) */
  probeIntervalMs?: number;
  /** RTT probe port (default DEFAULT_PROBE_PORT; 0 in tests) */
  probePort?: number;
  /** address the prober binds (default the gateway; tests: 127.0.0.1) */
  probeHost?: string;
  /** RTT probes at all (default true; tests without a tunnel turn them off) */
  probe?: boolean;
  /** VXLAN id (default DEFAULT_VNI) */
  vni?: number;
  /** POST /register waits this long for the subnet before answering 503 (default 10 s) */
  registerTimeoutMs?: number;
  /** DNS lookups of a name without table wait this long for it (default 1500 ms) */
  lookupTimeoutMs?: number;
  /** clock tick for retries and expiry (default 250 ms) */
  tickMs?: number;
  core?: Partial<Omit<CoreOptions, 'hostIp' | 'hostPort'>>;
  /** the datapath (default: datapath.ts) */
  datapath?: DatapathFactory;
  /** the resolver (default: dns.ts); null: no resolver */
  resolver?: ResolverFactory | null;
  log?: Logger;
  now?: () => number;
}

export interface NetManagerHandle {
  /** the API port (the real one when 0 was asked) */
  readonly port: number;
  /** the bearer key file (0600) */
  readonly keyPath: string;
  /** the bearer key itself, for an in-process NodeEngine */
  readonly key: string;
  status(): Record<string, unknown>;
  /** stops; the kernel state stays (a restart adopts it, flows keep running) */
  close(): Promise<void>;
  /** stops and removes everything this NetManager made (datapath, state, key) */
  clean(): Promise<void>;
}

interface Active {
  namespace: string;
  bridge: string;
  subnet: string;
  subnet_v6: string | null;
  datapath: DatapathPort;
  resolver: ResolverPort | undefined;
  prober: Prober | undefined;
  stop: () => void;
}

class NetManager {
  /** this NetManager's version (its release's oak-release.json, else the build's), in /register answers */
  readonly version = releaseVersion(NETMANAGER_VERSION);
  readonly log: Logger;
  readonly now: () => number;
  readonly core: NetCore;
  readonly opts: NetManagerOptions;
  readonly publicPort: number;
  api: ApiServer | undefined;
  bus: Bus | undefined;
  busKey = '';
  state: PersistedState | undefined;
  active: Active | undefined;
  activating: Promise<Active> | undefined;
  queue: Promise<void> = Promise.resolve();
  readonly subs = new Map<string, () => Promise<void>>();
  readonly subnetWaiters = new Set<() => void>();
  readonly lookupWaiters = new Map<string, Set<() => void>>();
  /** the root's extra IPv4 service ranges (subnet result, persisted), given to the datapath */
  private serviceRanges: string[] = [];
  lastSubnetError: string | undefined;
  readonly loggedInvalid = new Set<string>();
  /** where the resolver listens (port 0 resolved) */
  readonly dnsListening: Array<{ host: string; port: number }> = [];
  tickTimer: NodeJS.Timeout | undefined;
  registering: Promise<unknown> = Promise.resolve();
  closed = false;
  datapathFactory: DatapathFactory | undefined;
  resolverFactory: ResolverFactory | null | undefined;

  constructor(opts: NetManagerOptions) {
    this.opts = opts;
    this.log = opts.log ?? consoleLogger('netmanager');
    this.now = opts.now ?? Date.now;
    this.publicPort = opts.publicPort ?? DEFAULT_PUBLIC_PORT;
    this.core = new NetCore({ ...opts.core, hostIp: opts.publicAddress, hostPort: this.publicPort, requestIdPrefix: opts.core?.requestIdPrefix ?? `nm${randomBytes(3).toString('hex')}` });
    this.datapathFactory = opts.datapath;
    this.resolverFactory = opts.resolver;
  }

  // ---------------------------------------------------------------- start / stop

  async start(): Promise<void> {
    await secureDir(this.opts.dataDir);
    this.state = await readState(this.opts.dataDir, (m) => this.log.warn(m));
    const s = this.state;
    this.serviceRanges = s?.service_ranges ?? [];
    if (s !== undefined) {
      this.run(this.core.attach(s.worker_id, s.subnet === null ? undefined : { subnet: s.subnet, subnet_v6: s.subnet_v6 }));
      this.core.restore(snapshotOf(s), this.now());
      this.log.info(`re-attaching as ${s.worker_id}${s.subnet !== null ? ` with subnet ${s.subnet}` : ''} (${s.instances.length} instance(s))`);
      if (s.subnet !== null) {
        // a datapath that cannot come up now is tried again at the next /register
        await this.activate(s.namespace, s.bridge, s.subnet, s.subnet_v6).catch((err: unknown) => this.log.error(`the datapath could not be adopted: ${err instanceof Error ? err.message : String(err)}`));
      }
      this.connect(s.worker_id, s.mqtt.url, s.mqtt.username, s.mqtt.password, s.mqtt.ca);
    }
    this.api = await startApi({
      port: this.opts.port ?? DEFAULT_API_PORT,
      keyDir: this.opts.keyDir ?? DEFAULT_KEY_DIR,
      log: this.log,
      handlers: {
        register: (r) => this.serialRegister(r),
        deploy: (d) => this.deploy(d),
        undeploy: (u) => this.undeploy(u),
        status: () => this.status(),
      },
    });
    this.tickTimer = setInterval(() => this.run(this.core.tick(this.now())), this.opts.tickMs ?? 250);
    this.tickTimer.unref();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.tickTimer);
    for (const w of this.subnetWaiters) w();
    for (const ws of this.lookupWaiters.values()) for (const w of ws) w();
    await this.api?.close();
    await this.queue.catch(() => {});
    await this.bus?.close();
    this.bus = undefined;
    const a = this.active ?? (await this.activating?.catch(() => undefined));
    this.active = undefined;
    if (a !== undefined) await this.deactivate(a);
  }

  private async deactivate(a: Active): Promise<void> {
    a.stop();
    this.dnsListening.length = 0;
    a.prober?.close();
    try {
      await a.resolver?.close();
    } catch (err) {
      this.log.warn('resolver close failed', err);
    }
    try {
      await a.datapath.close();
    } catch (err) {
      this.log.warn('datapath close failed', err);
    }
  }

  async clean(): Promise<void> {
    const s = this.state;
    const a = this.active;
    await this.close();
    let dp: DatapathPort | undefined = a?.datapath;
    if (dp === undefined && s !== undefined) dp = (await this.factory())(this.datapathOptions(s.namespace, s.bridge, s.subnet ?? '10.18.0.0/26', s.subnet_v6));
    if (dp !== undefined) await dp.clean();
    await removeState(this.opts.dataDir);
    if (this.api !== undefined) await rm(this.api.keyPath, { force: true });
    this.log.info('cleaned: tunnel, routes, nftables table and state removed');
  }

  // ---------------------------------------------------------------- effects

  /** runs an effect batch after the ones before it */
  run(fx: Effect[]): Promise<void> {
    if (fx.length === 0) return this.queue;
    this.queue = this.queue.then(async () => {
      for (const e of fx) {
        try {
          await this.apply(e);
        } catch (err) {
          this.log.warn(`effect ${e.type} failed`, err);
        }
      }
      this.wakeLookups();
    });
    return this.queue;
  }

  private async apply(e: Effect): Promise<void> {
    switch (e.type) {
      case 'publish': {
        const bus = this.bus;
        if (bus === undefined) return;
        // not awaited: offline, the bus queues it; a reconnect announces everything again anyway
        bus.publishJson(e.topic, e.payload, 1).catch((err: unknown) => this.log.debug(`publish ${e.topic} failed: ${err instanceof Error ? err.message : String(err)}`));
        return;
      }
      case 'subscribe': {
        if (this.bus === undefined || this.subs.has(e.topic)) return;
        const job = /^jobs\/(.+)\/updates_available$/.exec(e.topic)?.[1];
        if (job === undefined) return;
        const unsub = await this.bus.subscribe(e.topic, (_t, payload) => this.onUpdate(job, payload));
        this.subs.set(e.topic, unsub);
        return;
      }
      case 'unsubscribe': {
        const u = this.subs.get(e.topic);
        this.subs.delete(e.topic);
        if (u !== undefined) await u();
        return;
      }
      case 'services':
        if (this.active !== undefined) this.problems('services', await this.active.datapath.setServices(e.services));
        return;
      case 'peers':
        if (this.active !== undefined) {
          this.problems('peers', await this.active.datapath.setPeers(e.peers));
          const targets: Array<{ worker_id: string; address: string }> = [];
          for (const p of e.peers) {
            try {
              targets.push({ worker_id: p.worker_id, address: gatewayOf(p.subnet) });
            } catch {
              this.invalid(`peer ${p.worker_id.slice(0, 100)} subnet`, new Error(`${p.subnet.slice(0, 64)} is not an IPv4 subnet`));
            }
          }
          this.active.prober?.setTargets(targets);
        }
        return;
      case 'forget':
        if (this.active !== undefined) await this.active.datapath.forgetInstance(e.nsip, e.nsip_v6);
        return;
      case 'subnet':
        this.lastSubnetError = undefined;
        if (e.changed) this.log.warn(`the cluster gave subnet ${e.subnet} instead of ${this.state?.subnet ?? '?'}: the NodeEngine must re-create its bridge`);
        if (this.state !== undefined) {
          this.state = { ...this.state, subnet: e.subnet, subnet_v6: e.subnet_v6, service_ranges: e.service_ranges };
          await this.persist();
        }
        if (this.serviceRanges.join(',') !== e.service_ranges.join(',')) {
          this.serviceRanges = e.service_ranges;
          if (e.service_ranges.length > 0) this.log.info(`extra service ranges from the root: ${e.service_ranges.join(', ')}`);
          if (this.active?.datapath.setServiceRanges) this.problems('service ranges', await this.active.datapath.setServiceRanges(e.service_ranges));
        }
        this.log.info(`subnet ${e.subnet}${e.subnet_v6 !== null ? ` + ${e.subnet_v6}` : ''}`);
        for (const w of this.subnetWaiters) w();
        return;
      case 'subnet-error':
        this.lastSubnetError = e.error;
        this.log.warn(`no subnet from the cluster: ${e.error}`);
        return;
      case 'persist':
        await this.persist();
        return;
      case 'table':
        return;
    }
  }

  /** what the datapath refused (a result `{ problems: string[] }`), logged once per text */
  private problems(what: string, result: unknown): void {
    const list = (result as { problems?: unknown } | undefined)?.problems;
    if (!Array.isArray(list)) return;
    for (const p of list.slice(0, 20)) {
      const text = `datapath ${what}: ${String(p).slice(0, 300)}`;
      if (this.loggedInvalid.has(text)) continue;
      if (this.loggedInvalid.size < 1000) this.loggedInvalid.add(text);
      this.log.warn(text);
    }
  }

  private async persist(): Promise<void> {
    if (this.state === undefined) return;
    const snap = this.core.snapshot();
    this.state = { ...this.state, subnet: this.core.subnet, subnet_v6: this.core.subnet_v6, instances: snap.instances, interest: snap.interest };
    await writeState(this.opts.dataDir, this.state);
  }

  private wakeLookups(): void {
    for (const [job, ws] of this.lookupWaiters) {
      if (this.core.tables.has(job) || !this.core.pending.has(`job:${job}`)) {
        this.lookupWaiters.delete(job);
        for (const w of ws) w();
      }
    }
  }

  // ---------------------------------------------------------------- MQTT

  private invalid(kind: string, err: unknown): void {
    if (this.loggedInvalid.has(kind)) return;
    this.loggedInvalid.add(kind);
    this.log.warn(`ignoring an invalid ${kind} message (logged once): ${err instanceof Error ? err.message : String(err)}`);
  }

  private parse<T>(kind: string, payload: Buffer, parser: (v: unknown) => T): T | undefined {
    try {
      return parser(decodeJson(payload));
    } catch (err) {
      this.invalid(kind, err);
      return undefined;
    }
  }

  private onUpdate(job: string, payload: Buffer): void {
    const t = this.parse(`jobs/${job}/updates_available`, payload, parseServiceTable);
    if (t !== undefined) this.run(this.core.update(job, t, this.now()));
  }

  /** (re)dials the broker when the identity or URL changed */
  private connect(workerId: string, url: string, username: string | undefined, password: string | undefined, ca: string | undefined): void {
    const k = JSON.stringify([workerId, url, username, password, ca]);
    if (this.bus !== undefined && k === this.busKey) return;
    const old = this.bus;
    this.busKey = k;
    this.subs.clear();
    if (old !== undefined) void old.close();
    const tls = url.startsWith('mqtts:') || url.startsWith('ssl:') ? (ca !== undefined ? pinnedTlsOptions(ca, CLUSTER_SERVICE_NAME) : { rejectUnauthorized: true }) : undefined;
    const clientId = `${workerId}${NETMANAGER_CLIENT_SUFFIX}`;
    this.log.info(`MQTT ${url} as ${clientId}`);
    // connectBus with waitForConnect false returns at once; reconnects forever
    void connectBus(url, {
      clientId,
      // user `<id>-net` with the worker's password: Mosquitto's dynamic security pins one client id
      // per user, so the NetManager has its own (same role); the embedded broker accepts both forms
      ...(username !== undefined ? { username: `${username}${NETMANAGER_CLIENT_SUFFIX}`, password: password ?? '' } : {}),
      ...(this.opts.mqttStream !== undefined ? { stream: this.opts.mqttStream } : tls !== undefined ? { tls } : {}),
      waitForConnect: false,
      reconnectPeriodMs: 1000,
      log: this.log,
      onConnect: () => this.run(this.core.connected(this.now())),
      onRefused: (code) => this.log.warn(`the broker refused ${clientId} (CONNACK ${code}); retrying (the NodeEngine's next /register brings new credentials)`),
    }).then(async (bus) => {
      if (this.closed || this.busKey !== k) {
        await bus.close();
        return;
      }
      this.bus = bus;
      await bus.subscribe(netTopics.subnetResult(workerId), (_t, p) => {
        const m = this.parse('subnet result', p, parseSubnetResult);
        if (m !== undefined) this.run(this.core.subnetResult(m, this.now()));
      });
      await bus.subscribe(netTopics.tableQueryResult(workerId), (_t, p) => {
        const m = this.parse('table query result', p, parseTableQueryResult);
        if (m !== undefined) this.run(this.core.tableResult(m, this.now()));
      });
      await bus.subscribe(netTopics.peers, (_t, p) => {
        const m = this.parse('net/peers', p, parsePeerList);
        if (m !== undefined) this.run(this.core.setPeers(m.peers, this.now()));
      });
      for (const job of this.core.interest.keys()) {
        const topic = netTopics.jobUpdates(job);
        if (!this.subs.has(topic)) this.subs.set(topic, await bus.subscribe(topic, (_t, payload) => this.onUpdate(job, payload)));
      }
    }).catch((err: unknown) => this.log.error(`MQTT ${url}: ${err instanceof Error ? err.message : String(err)}`));
  }

  // ---------------------------------------------------------------- datapath

  private async factory(): Promise<DatapathFactory> {
    this.datapathFactory ??= await defaultDatapath();
    return this.datapathFactory;
  }

  private datapathOptions(namespace: string, bridge: string, subnet: string, subnet_v6: string | null): Parameters<DatapathFactory>[0] {
    return {
      namespace, bridge, subnet, subnet_v6, serviceRanges: this.serviceRanges,
      publicAddress: this.opts.publicAddress, publicPort: this.publicPort, vni: this.opts.vni ?? DEFAULT_VNI, log: this.log,
    };
  }

  /** the datapath for this subnet (adopting what the kernel has), the resolver and the prober */
  private activate(namespace: string, bridge: string, subnet: string, subnet_v6: string | null): Promise<Active> {
    const a = this.active;
    if (a !== undefined && a.namespace === namespace && a.bridge === bridge && a.subnet === subnet && a.subnet_v6 === subnet_v6) return Promise.resolve(a);
    if (this.activating !== undefined) return this.activating.then(() => this.activate(namespace, bridge, subnet, subnet_v6));
    this.activating = (async () => {
      if (a !== undefined) {
        this.log.warn(`the datapath moves from ${a.namespace}/${a.bridge}/${a.subnet} to ${namespace}/${bridge}/${subnet}`);
        this.active = undefined;
        await this.deactivate(a);
      }
      const datapath = (await this.factory())(this.datapathOptions(namespace, bridge, subnet, subnet_v6));
      await datapath.init();
      let stopped = false;
      const unwatch = datapath.watchUnknown((ip) => {
        if (!stopped) this.run(this.core.unknownAddress(ip, this.now()));
      });
      const gateway = gatewayOf(subnet);
      const next: Active = {
        namespace, bridge, subnet, subnet_v6, datapath, resolver: undefined, prober: undefined,
        stop: () => {
          stopped = true;
          if (typeof unwatch === 'function') (unwatch as () => void)();
        },
      };
      if (this.opts.dns !== false && this.resolverFactory !== null) next.resolver = await this.startResolver(next, gateway, subnet_v6 === null ? null : gatewayOf6(subnet_v6));
      if (this.opts.probe !== false) next.prober = new Prober({
        host: this.opts.probeHost ?? gateway,
        port: this.opts.probePort ?? DEFAULT_PROBE_PORT,
        intervalMs: this.opts.probeIntervalMs ?? 5000,
        log: this.log,
        onResults: (r) => this.run(this.core.rttResults(r, this.now())),
      });
      next.prober?.start();
      this.active = next;
      // everything known so far goes into the new datapath
      await this.run(this.core.resetDatapathView());
      return next;
    })().finally(() => { this.activating = undefined; });
    return this.activating;
  }

  private async startResolver(a: Active, gateway: string, gateway6: string | null): Promise<ResolverPort | undefined> {
    this.resolverFactory ??= await defaultResolver();
    const factory = this.resolverFactory;
    if (factory === null) return undefined;
    let resolver: ResolverPort;
    try {
      resolver = factory({ lookup: (name, type) => this.lookup(name, type), upstreams: this.opts.upstreams ?? [], log: this.log });
    } catch (err) {
      // the overlay works without names: instances get no resolver (dns: null in the answer)
      this.log.error(`the resolver cannot start: ${err instanceof Error ? err.message : String(err)}; instances get no overlay DNS`);
      return undefined;
    }
    const port = this.opts.dnsPort ?? 53;
    // the gateway address appears when the NodeEngine configured its bridge: retry until then
    const listen = (host: string): void => {
      let timer: NodeJS.Timeout | undefined;
      let warned = false;
      const attempt = (): void => {
        if (this.closed || (this.active !== a && this.active !== undefined)) return;
        resolver.listen({ host, port }).then(
          (r: unknown) => {
            const got = (r as { port?: unknown } | undefined)?.port;
            this.dnsListening.push({ host, port: typeof got === 'number' ? got : port });
            this.log.info(`resolver on ${host}:${typeof got === 'number' ? got : port}`);
          },
          (err: unknown) => {
            const code = (err as NodeJS.ErrnoException).code;
            if (code !== 'EADDRNOTAVAIL' && !warned) {
              warned = true;
              this.log.warn(`resolver on ${host}:${port}: ${err instanceof Error ? err.message : String(err)}; retrying`);
            }
            timer = setTimeout(attempt, code === 'EADDRNOTAVAIL' ? 200 : 2000);
            timer.unref();
          },
        );
      };
      attempt();
      const prev = a.stop;
      a.stop = () => {
        clearTimeout(timer);
        prev();
      };
    };
    if (this.opts.dnsHost !== undefined) listen(this.opts.dnsHost);
    else {
      listen(gateway);
      if (gateway6 !== null) listen(gateway6);
    }
    return resolver;
  }

  // ---------------------------------------------------------------- DNS

  async lookup(name: string, type: 'A' | 'AAAA'): Promise<string[] | undefined> {
    const r = this.core.lookup(name, type, this.now());
    if (r.kind === 'forward') return undefined;
    if (r.kind === 'answer') return r.addresses ?? undefined;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.opts.lookupTimeoutMs ?? 1500);
      timer.unref();
      const ws = this.lookupWaiters.get(r.job_name) ?? new Set<() => void>();
      this.lookupWaiters.set(r.job_name, ws);
      function done(): void {
        clearTimeout(timer);
        ws.delete(done);
        resolve();
      }
      ws.add(done);
      void this.run(r.effects);
    });
    const again = this.core.lookup(name, type, this.now());
    // still no answer from the cluster: SERVFAIL (the client asks again), not a cached NXDOMAIN
    if (again.kind === 'wait') throw new OakError('OAK_UNAVAILABLE', `no table for ${again.job_name} from the cluster yet`, { hint: 'the cluster did not answer the table query in time' });
    return again.kind === 'answer' ? again.addresses ?? undefined : undefined;
  }

  // ---------------------------------------------------------------- API handlers

  serialRegister(r: NetRegister): Promise<NetRegisterAnswer> {
    const p = this.registering.then(() => this.register(r), () => this.register(r));
    this.registering = p.catch(() => {});
    return p;
  }

  private async register(r: NetRegister): Promise<NetRegisterAnswer> {
    if (this.closed) throw new OakError('OAK_UNAVAILABLE', 'the NetManager is shutting down', { hint: 'retry after its restart' });
    const url = r.mqtt_url !== '' ? r.mqtt_url : this.opts.fallbackMqttUrl;
    if (url === undefined) throw new OakError('OAK_BAD_REQUEST', 'no broker URL', { path: 'mqtt_url', hint: 'send the cluster broker URL' });
    if (!/^(mqtts?|ssl|tcp|ws|wss):\/\//.test(url)) throw new OakError('OAK_BAD_REQUEST', `mqtt_url ${JSON.stringify(url.slice(0, 100))} is not an MQTT URL`, { path: 'mqtt_url', hint: 'e.g. mqtts://192.0.2.1:10003' });
    this.run(this.core.attach(r.worker_id));
    const previous = this.state;
    const sameWorker = previous?.worker_id === r.worker_id;
    this.state = {
      version: 1,
      worker_id: r.worker_id,
      subnet: sameWorker ? previous.subnet : null,
      subnet_v6: sameWorker ? previous.subnet_v6 : null,
      namespace: r.namespace,
      bridge: r.bridge,
      mqtt: { url, ...(r.mqtt_username !== undefined ? { username: r.mqtt_username } : {}), ...(r.mqtt_password !== undefined ? { password: r.mqtt_password } : {}), ...(r.mqtt_ca !== undefined ? { ca: r.mqtt_ca } : {}) },
      instances: sameWorker ? previous.instances : [],
      interest: sameWorker ? previous.interest : [],
    };
    await this.run([{ type: 'persist' }]);
    this.connect(r.worker_id, url, r.mqtt_username, r.mqtt_password, r.mqtt_ca);
    if (this.core.subnet === null) await this.waitForSubnet();
    const subnet = this.core.subnet;
    if (subnet === null) {
      throw new OakError('OAK_UNAVAILABLE', `no subnet from the cluster within ${Math.round((this.opts.registerTimeoutMs ?? 10_000) / 1000)} s${this.lastSubnetError !== undefined ? `: ${this.lastSubnetError}` : ''}`, {
        hint: `check that the broker ${url} is reachable with this worker's credentials and that the cluster serves nodes/+/net/subnet; the NodeEngine retries`,
      });
    }
    const subnet_v6 = this.core.subnet_v6;
    let a: Active;
    try {
      a = await this.activate(r.namespace, r.bridge, subnet, subnet_v6);
    } catch (err) {
      throw new OakError('OAK_INTERNAL', `the datapath could not be set up: ${err instanceof Error ? err.message : String(err)}`, { hint: 'the NetManager needs root, iproute2 and nftables; see its log' });
    }
    const gateway = gatewayOf(subnet);
    return {
      subnet,
      subnet_v6,
      gateway,
      gateway_v6: subnet_v6 === null ? null : gatewayOf6(subnet_v6),
      tunnel_device: a.datapath.tunnelDevice,
      mtu: a.datapath.mtu,
      dns: a.resolver !== undefined ? gateway : null,
      version: this.version,
    };
  }

  private waitForSubnet(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.subnetWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, this.opts.registerTimeoutMs ?? 10_000);
      this.subnetWaiters.add(done);
    });
  }

  async deploy(d: NetInstanceDeploy): Promise<void> {
    const fx = this.core.deploy(d, this.now());
    await this.run(fx);
  }

  async undeploy(u: NetInstanceUndeploy): Promise<void> {
    await this.run(this.core.undeploy(u, this.now()));
  }

  status(): Record<string, unknown> {
    const a = this.active;
    return {
      ...this.core.status(),
      mqtt_connected: this.bus?.connected ?? false,
      datapath: a === undefined ? null : { namespace: a.namespace, bridge: a.bridge, tunnel_device: a.datapath.tunnelDevice, mtu: a.datapath.mtu },
      dns: a?.resolver === undefined ? null : { listening: this.dnsListening },
      last_subnet_error: this.lastSubnetError ?? null,
    };
  }
}

/** Starts a NetManager (the process's main and oakd's in-process one). */
export async function startNetManager(opts: NetManagerOptions): Promise<NetManagerHandle> {
  const nm = new NetManager(opts);
  try {
    await nm.start();
  } catch (err) {
    await nm.close().catch(() => {});
    throw err;
  }
  const api = nm.api as ApiServer;
  return {
    port: api.port,
    keyPath: api.keyPath,
    key: api.key,
    status: () => nm.status(),
    close: () => nm.close(),
    clean: () => nm.clean(),
  };
}

/** `NetManager --clean`: removes the datapath of the persisted registration, the state and the key file. */
export async function cleanNetManager(opts: { dataDir: string; keyDir?: string; port?: number; publicAddress?: string; publicPort?: number; datapath?: DatapathFactory; log?: Logger }): Promise<void> {
  const log = opts.log ?? consoleLogger('netmanager');
  const s = await readState(opts.dataDir, (m) => log.warn(m));
  const factory = opts.datapath ?? (await defaultDatapath());
  const dp = factory({
    namespace: s?.namespace ?? 'oak',
    bridge: s?.bridge ?? 'oak0',
    subnet: s?.subnet ?? '10.18.0.0/26',
    subnet_v6: s?.subnet_v6 ?? null,
    publicAddress: opts.publicAddress ?? '127.0.0.1',
    publicPort: opts.publicPort ?? DEFAULT_PUBLIC_PORT,
    vni: DEFAULT_VNI,
    log,
  });
  await dp.clean();
  await removeState(opts.dataDir);
  await rm(keyPathOf(opts.keyDir ?? DEFAULT_KEY_DIR, opts.port ?? DEFAULT_API_PORT), { force: true });
}
