/**
 * The NodeEngine: registers with its cluster, reports the machine and its instances over MQTT,
 * and runs what the cluster sends through the runtime drivers. Embeddable (1-DOC runs it next to
 * root and cluster in one process); `close()` leaves instances running for the next start to
 * re-adopt.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { connectBus } from '@oak/bus';
import type { Bus } from '@oak/bus';
import type { ConnectionOptions } from 'node:tls';
import { OakError, decodeJson, instanceName, parseDeleteCommand, parseDeployCommand, parseWorkerUpgradeCommand, tryParseJoinToken, topics } from '@oak/contracts';
import { arch as hostArch, releaseVersion } from '@oak/sysinfo';
import { Upgrader, downloadArtifact, type SelfUpgradeDeps } from './upgrade.ts';
import type { DeployCommand, InstanceState, JobResources, JobStatus, JoinToken, NetInstanceDeploy, NetRegister, NetRegisterAnswer, NodeRegistrationAnswer, Virtualization } from '@oak/contracts';
import { DEFAULT_SERVICE_POOL, DEFAULT_SERVICE_POOL_V6, DEFAULT_WORKER_POOL, DEFAULT_WORKER_POOL_V6, bridgePlan, inPlan } from '@oak/net';
import { CLUSTER_SERVICE_NAME, fetchPinnedCa, pinnedTlsOptions } from '@oak/trust/tls';
import { readLines } from '@oak/runtimes';
import type { InstanceExit, InstanceSpec, InstanceStatus, Runtime } from '@oak/runtimes';
import { consoleLog, withDefaults } from './config.ts';
import type { EngineLog, NodeEngineConfig } from './config.ts';
import { GpuInventory, HostSampler, registrationBody } from './host.ts';
import { assignGpus, giveGpus, gpusNeeded } from './gpus.ts';
import { applyState, decideDeploy, heldGpus, isSettledActive, planAdoption, runningNames } from './instances.ts';
import type { Entry } from './instances.ts';
import { KeptLogs, droppedReason, spoken, when } from './kept-logs.ts';
import { logTopics, parseLogRequest, pumpLogs } from './logs.ts';
import type { LogBatch } from './logs.ts';
import { brokerUrl, isFinalRefusal, readNodeId, readNodeSecret, registeredSince, registerWithRetry, registrationUrl, writeNodeId, writeNodeSecret } from './register.ts';
import { InstanceNetworks, isolationProblem, persistedAttachmentIps, routeConflict } from './network.ts';
import type { Attachment } from './network.ts';
import { DEFAULT_NETMANAGER_KEY_DIR, NetManagerLink, planOfAnswer, readOverlayState, sameAnswer, writeOverlayState } from './netmanager.ts';
import { applyPolicy } from './policy.ts';
import { fetchAddedFiles, filesDirOf } from './files.ts';
import { needsRunRecord, restartExtras, writeRunRecord } from './run-record.ts';
import { HealthMonitor, decideRestart, probeFor, probeSettings, restartSettings } from './health.ts';
import type { EndCause, HealthView, RestartSettings } from './health.ts';
import { chooseVirtualizations, createDefaultRuntimes, probeAll } from './runtimes.ts';
import { LABEL_RESTARTS, deployToSpec, exitToJobStatus, jobNameProblem, jobStatus, unavailableReason } from './spec.ts';

export interface NodeEngineDeps {
  /** drivers to use instead of the default ones (containerd, process) */
  runtimes?: Runtime[];
  /** aborts a start that still waits for the cluster */
  signal?: AbortSignal;
  /** fleet upgrades (issue 14): the install it runs from and how it restarts (NodeEngine's main only) */
  selfUpgrade?: SelfUpgradeDeps;
}

export interface NodeEngineHandle {
  /** the node id the cluster gave (kept across restarts) */
  readonly id: string;
  /** virtualizations offered to the cluster */
  readonly virtualizations: readonly Virtualization[];
  /** stops reporting and disconnects; instances keep running and are re-adopted at the next start */
  close(): Promise<void>;
  /** like close(); with `stopInstances` every instance is stopped, removed and reported UNDEPLOYED first */
  shutdown(opts?: { stopInstances?: boolean }): Promise<void>;
}

export type NodeEngineOptions = Partial<NodeEngineConfig>;

const VALID_ID = /^[^/+#\s]{1,200}$/;

/** the build's version (a release's oak-release.json says better: releaseVersion) */
export const NODE_ENGINE_VERSION = '0.1.0';

class Engine {
  readonly cfg: NodeEngineConfig;
  readonly log: EngineLog;
  readonly runtimes: Runtime[];
  readonly byVirt = new Map<Virtualization, Runtime>();
  offered: Virtualization[] = [];
  readonly entries = new Map<string, Entry>();
  readonly queues = new Map<string, Promise<void>>();
  readonly retention = new Map<string, NodeJS.Timeout>();
  /** what a local restart needs: the spec it was started with, its restart settings, its probe (issue 10) */
  readonly runs = new Map<string, { spec: InstanceSpec; cmd: DeployCommand; restart: RestartSettings; ip: string | undefined; netns: string | undefined }>();
  readonly monitors = new Map<string, HealthMonitor>();
  readonly restartTimers = new Map<string, NodeJS.Timeout>();
  readonly logSessions = new Map<string, { instance: string; abort: AbortController }>();
  readonly closing = new AbortController();
  readonly sampler: HostSampler;
  /** the logs of ended and undeployed instances (docs/operations.md "Logs of ended instances") */
  readonly kept: KeptLogs;
  keptTimer: NodeJS.Timeout | undefined;
  id = '';
  bus: Bus | undefined;
  reportTimer: NodeJS.Timeout | undefined;
  reportIntervalMs = 2000;
  unsubscribe: (() => Promise<void>)[] = [];
  closed: Promise<void> | undefined;
  /** close() was called: control messages are ignored from now on */
  shuttingDown = false;
  /** a report is being sent: a slow broker must not pile reports up */
  reporting = false;
  /** the instances' network namespaces; undefined when isolation is off */
  net: InstanceNetworks | undefined;
  /** isolation default when the config says nothing (off for injected test runtimes) */
  isolationDefault: 'auto' | 'off' = 'auto';
  /** the worker join token (its CA fingerprint pins the cluster) */
  readonly token: JoinToken;
  /** the cluster CA, pinned on first contact */
  caPem: string | undefined;
  /**
   * this process's connection nonce: in the last will of its MQTT connection (nodes/<id>/gone),
   * its registrations and its reports, so that the cluster tells its will from an older process's
   */
  readonly conn = randomBytes(9).toString('base64url');
  /** the MQTT password for `id` (it also proves the id when registering again) */
  password: string | undefined;
  /** a registration after an MQTT refusal or a request of the cluster is under way */
  reregistering: Promise<void> | undefined;
  lastRegistration = 0;
  /** when the broker connection last dropped (0: never) */
  lostAt = 0;
  /** the NetManager link (with -n) */
  nm: NetManagerLink | undefined;
  /** the NetManager answer the current bridge is built on (undefined: the default bridge, no overlay) */
  netAnswer: NetRegisterAnswer | undefined;
  /** a bridge change after a new NetManager answer is under way: deploys wait for it */
  switching: Promise<void> | undefined;
  /** the broker URL and user name of the NetManager registration */
  mqttUrl = '';
  mqttUser: string | undefined;
  /** instances were re-adopted: from now on they are announced to the NetManager */
  adopted = false;
  /** isolation is off (by config or because the machine cannot): no bridge to move */
  isolationUnavailable = false;
  /** this NodeEngine's version (its release's manifest) */
  readonly version = releaseVersion(NODE_ENGINE_VERSION);
  /** fleet upgrades (issue 14) */
  upgrader: Upgrader | undefined;

  /** versions and upgrade state, in every registration and report */
  versionFields(): { version: string; self_upgrade_blocker: string | null; upgrade?: NonNullable<Upgrader['state']> } {
    const u = this.upgrader?.state;
    return { version: this.version, ...(this.nm?.answer?.version !== undefined ? { netmanager_version: this.nm.answer.version } : {}), self_upgrade_blocker: this.upgrader === undefined ? 'fleet upgrades are not set up' : this.upgrader.blocker, ...(u !== undefined ? { upgrade: u } : {}) };
  }

  constructor(cfg: NodeEngineConfig, runtimes: Runtime[]) {
    this.cfg = cfg;
    this.log = cfg.log ?? consoleLog;
    this.runtimes = runtimes;
    this.sampler = new HostSampler(cfg.dataDir, new GpuInventory(cfg.gpuReader));
    this.token = requireJoinToken(cfg.joinToken);
    this.kept = new KeptLogs({
      dir: join(cfg.dataDir, 'kept-logs'),
      retentionMs: cfg.logRetentionMs,
      perInstanceBytes: cfg.logKeepInstanceBytes,
      totalBytes: cfg.logKeepTotalBytes,
      now: cfg.now,
      warn: (m) => this.log.warn(m),
    });
  }

  get now(): number {
    return (this.cfg.now ?? Date.now)();
  }

  /**
   * Stops and removes an instance through its driver, which moves the log file to the keeper;
   * the keeper then keeps it for the retention period (status: how the run ended).
   */
  async retire(runtime: Runtime | undefined, id: string, status: string, endedAt: number | undefined): Promise<void> {
    if (runtime === undefined) return;
    await runtime.stop(id, { keepLog: this.kept.incomingPath(id) });
    await this.kept.take(id, status, endedAt ?? this.now).catch((err: unknown) => this.log.warn(`${id}: its logs could not be kept: ${err instanceof Error ? err.message : String(err)}`));
  }

  /** drops expired kept logs now, and again when the next one expires (at most a minute from now) */
  sweepKept(): void {
    clearTimeout(this.keptTimer);
    void this.kept.sweep().then((next) => {
      if (this.shuttingDown) return;
      const ms = next === undefined ? 60_000 : Math.max(1000, Math.min(60_000, next - this.now));
      this.keptTimer = setTimeout(() => this.sweepKept(), ms);
      this.keptTimer.unref();
    }, (err: unknown) => this.log.warn(`kept logs: ${err instanceof Error ? err.message : String(err)}`));
  }

  /** TLS options that trust the cluster's CA only (fetched and checked against the token once) */
  async tls(): Promise<ConnectionOptions> {
    this.caPem ??= await fetchPinnedCa(this.cfg.clusterAddress, this.cfg.clusterPort, this.token.caHash);
    return pinnedTlsOptions(this.caPem, CLUSTER_SERVICE_NAME);
  }

  // ---------------------------------------------------------------- start

  async start(signal: AbortSignal): Promise<void> {
    await this.secureDataDir();
    await this.kept.load();
    this.sweepKept();
    const overlay = this.cfg.useNetManager === true && this.cfg.netmanagerPort !== null;
    // with a NetManager the bridge is built on the subnet it gives, after the cluster registration
    if (!overlay) await this.startIsolation();
    const probes = await probeAll(this.runtimes);
    const choice = chooseVirtualizations(probes, this.cfg.runtimes);
    for (const l of choice.lines) this.log.info(l);
    this.offered = choice.offered;
    if (this.offered.length === 0) throw new Error('no virtualization is available on this worker (see the lines above)');
    const available = this.runtimes.filter((r) => probes.some((p) => p.virtualization === r.virtualization && p.result.available));
    for (const r of available) {
      if (!this.byVirt.has(r.virtualization)) this.byVirt.set(r.virtualization, r);
      r.onExit((ex) => this.onExit(r, ex));
    }

    const previous = await readNodeId(this.cfg.dataDir);
    const answer = await this.register(previous, previous === undefined ? undefined : await readNodeSecret(this.cfg.dataDir, previous), signal, true);
    this.id = answer.id;
    await writeNodeId(this.cfg.dataDir, this.id);
    this.reportIntervalMs = this.cfg.reportIntervalMs ?? answer.report_interval_ms ?? 2000;
    const url = this.cfg.mqttUrl ?? brokerUrl(this.cfg.clusterAddress, answer);
    this.log.info(`registered as ${this.id}; MQTT ${url}, reports every ${this.reportIntervalMs} ms`);
    this.mqttUrl = url;
    this.mqttUser = answer.mqtt_username;
    if (url.startsWith('mqtts:') || url.startsWith('ssl:')) await this.tls();

    let firstConnect: () => void = () => {};
    const connected = new Promise<void>((r) => { firstConnect = r; });
    const bus = await connectBus(url, {
      clientId: this.id,
      ...(answer.mqtt_username !== undefined && answer.mqtt_password !== undefined ? { username: answer.mqtt_username, password: answer.mqtt_password } : {}),
      ...(this.cfg.mqttStream !== undefined && this.cfg.mqttUrl === undefined
        ? { stream: this.cfg.mqttStream }
        : url.startsWith('mqtts:') || url.startsWith('ssl:') ? { tls: await this.tls() } : {}),
      waitForConnect: false,
      reconnectPeriodMs: 1000,
      // the broker publishes it when this connection drops without a clean disconnect
      will: this.will(this.id),
      onConnect: (reconnect) => {
        if (!reconnect) firstConnect();
        else void this.onReconnect();
      },
      onDisconnect: () => { this.lostAt = Date.now(); },
      // the cluster restarted (it keeps no state) or dropped our credentials: register again
      onRefused: () => void this.reregister('the broker refused our credentials'),
    });
    this.bus = bus;
    try {
      await Promise.race([connected, new Promise<never>((_, reject) => {
        if (signal.aborted) reject(signal.reason as Error);
        signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
      })]);
    } catch (err) {
      await bus.close();
      throw err;
    }

    if (overlay) await this.startOverlay();
    await this.adopt(available);
    this.adopted = true;
    // the re-adopted instances are announced again (idempotent for the NetManager)
    for (const d of this.announcements()) this.nm?.deployed(instanceName(d.job_name, d.instance_number), d);
    this.nm?.start();
    await this.subscribe();
    this.publishAllStatuses();
    await this.report();
    this.reportTimer = setInterval(() => void this.report(), this.reportIntervalMs);
    // a fleet upgrade or rollback that restarted us: check and confirm it
    void this.upgrader?.afterStart();
  }

  /** the data dir (node id, instance state with the SLAs' env, keys) is root's alone: 0700 */
  async secureDataDir(): Promise<void> {
    await mkdir(this.cfg.dataDir, { recursive: true, mode: 0o700 });
    const st = await stat(this.cfg.dataDir);
    if (st.uid === process.getuid?.() && (st.mode & 0o077) !== 0) await chmod(this.cfg.dataDir, 0o700);
  }

  /** every instance in its own network namespace, or a clear line why not */
  async startIsolation(answer?: NetRegisterAnswer): Promise<void> {
    const mode = this.cfg.isolation ?? this.isolationDefault;
    const off = 'instances share the node\'s network: they can reach every port of the node, its broker, registration, link and API included';
    if (mode === 'off') {
      this.isolationUnavailable = true;
      if (this.cfg.isolation === 'off') this.log.warn(`network isolation: OFF (--isolation off); ${off}`);
      else this.log.info('network isolation: off (drivers given by the embedder)');
      return;
    }
    const problem = await isolationProblem();
    if (problem !== undefined) {
      if (mode === 'on') throw new Error(`network isolation is required (--isolation on) but not possible: ${problem}`);
      this.isolationUnavailable = true;
      this.log.warn(`network isolation: OFF (${problem}); ${off}. Run as root with iproute2 and nftables, or pass --isolation off to say so explicitly`);
      return;
    }
    let net: InstanceNetworks;
    try {
      net = new InstanceNetworks({
        namespace: this.cfg.namespace ?? 'oak',
        dataDir: this.cfg.dataDir,
        subnet: answer?.subnet ?? this.cfg.bridgeSubnet,
        log: this.log,
        ...(answer !== undefined ? {
          subnetV6: answer.subnet_v6,
          mtu: answer.mtu,
          dns: answer.dns,
          overlay: {
            tunnelDevice: answer.tunnel_device,
            workerPool: DEFAULT_WORKER_POOL,
            virtualPools: [DEFAULT_SERVICE_POOL],
            ...(answer.subnet_v6 !== null ? { workerPool6: DEFAULT_WORKER_POOL_V6, virtualPools6: [DEFAULT_SERVICE_POOL_V6] } : {}),
          },
        } : {}),
      });
    } catch (err) {
      throw new Error(`network: ${err instanceof Error ? err.message : String(err)}`);
    }
    try {
      await net.init();
    } catch (err) {
      await net.close().catch(() => {});
      const why = err instanceof Error ? err.message : String(err);
      // on the NetManager's subnet: the caller falls back to the bridge the node had (never unisolated)
      if (answer !== undefined) throw new Error(`the bridge on the NetManager's subnet ${answer.subnet} failed: ${why}`);
      if (mode === 'on') throw new Error(`network isolation is required (--isolation on) but failed: ${why}`);
      this.log.warn(`network isolation: OFF (${why}); ${off}`);
      return;
    }
    this.net = net;
    this.netAnswer = answer;
    this.log.info(`network isolation: on; each instance in its own namespace on ${net.describe()}; instances cannot reach the node's ports`);
  }

  // ---------------------------------------------------------------- overlay (NetManager)

  netRegistration(): NetRegister {
    const ns = this.cfg.namespace ?? 'oak';
    return {
      worker_id: this.id,
      mqtt_url: this.mqttUrl,
      ...(this.password !== undefined ? { mqtt_username: this.mqttUser ?? this.id, mqtt_password: this.password } : {}),
      ...(this.caPem !== undefined ? { mqtt_ca: this.caPem } : {}),
      namespace: ns,
      bridge: this.net?.plan.bridge ?? bridgePlan(ns).bridge,
    };
  }

  /**
   * Registers with the NetManager (waiting a little for it) and builds the bridge on its subnet;
   * not reachable: on the subnet it gave before (persisted), else on the default bridge without
   * the overlay, and the link keeps trying in the background.
   */
  async startOverlay(): Promise<void> {
    const port = this.cfg.netmanagerPort as number;
    this.nm = new NetManagerLink({
      port,
      keyDir: this.cfg.netmanagerKeyDir ?? DEFAULT_NETMANAGER_KEY_DIR,
      log: this.log,
      registration: () => this.netRegistration(),
      onAnswer: (a) => this.takeAnswer(a),
      current: () => this.announcements(),
      checkMs: this.cfg.netmanagerCheckMs,
    });
    if (await this.nm.first(this.cfg.netmanagerWaitMs ?? 10_000)) return;
    if (this.net !== undefined) return;
    const persisted = await readOverlayState(this.cfg.dataDir);
    const ips = await persistedAttachmentIps(this.cfg.dataDir);
    const fits = (subnet: string): boolean => {
      try {
        const p = bridgePlan(this.cfg.namespace ?? 'oak', subnet);
        return ips.every((ip) => inPlan(p, ip));
      } catch {
        return false;
      }
    };
    if (persisted !== undefined && fits(persisted.subnet)) {
      this.log.info(`NetManager not reachable yet: building the bridge on the subnet it gave before (${persisted.subnet})`);
      try {
        planOfAnswer(this.cfg.namespace ?? 'oak', persisted);
        await this.startIsolation(persisted);
        return;
      } catch (err) {
        this.log.warn(`the persisted overlay subnet cannot be used: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    await this.startIsolation();
  }

  /** A NetManager answer: the bridge moves onto its subnet (persisted first); throws when refused. */
  takeAnswer(a: NetRegisterAnswer): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.net !== undefined && sameAnswer(this.netAnswer, a)) return;
      const mode = this.cfg.isolation ?? this.isolationDefault;
      const plan = planOfAnswer(this.cfg.namespace ?? 'oak', a);
      if (this.net === undefined && this.isolationUnavailable) {
        // no namespaces on this node (said once at start): the NetManager still gets the worker's identity
        if (!sameAnswer(await readOverlayState(this.cfg.dataDir), a)) await writeOverlayState(this.cfg.dataDir, this.cfg.netmanagerPort as number, a);
        return;
      }
      if (mode !== 'off') {
        const conflict = await routeConflict(plan).catch(() => undefined);
        if (conflict !== undefined) throw new Error(`refusing the NetManager's subnet: ${conflict}`);
      }
      const busy = this.net !== undefined && (this.net.list().length > 0 || [...this.entries.values()].some((e) => e.state === 'CREATING'));
      if (busy) throw new Error(`the NetManager gave subnet ${a.subnet} but instances run on ${this.net?.plan.cidr ?? '?'}; the bridge moves when they are gone`);
      if (this.net === undefined) {
        // instances from before this start on another subnet (an upgrade to the overlay): they keep
        // the bridge they have until they are gone (the start falls back to it)
        const foreign = (await persistedAttachmentIps(this.cfg.dataDir)).filter((ip) => !inPlan(plan, ip));
        if (foreign.length > 0) throw new Error(`the NetManager gave subnet ${a.subnet} but ${foreign.length} instance(s) from before run on ${foreign.join(', ')}; the bridge moves when they are gone`);
      }
      await writeOverlayState(this.cfg.dataDir, this.cfg.netmanagerPort as number, a);
      const old = this.net;
      const oldAnswer = this.netAnswer;
      if (old !== undefined) {
        this.net = undefined;
        await old.destroy();
      }
      let failure: string | undefined;
      await this.startIsolation(a).catch((err: unknown) => {
        failure = err instanceof Error ? err.message : String(err);
      });
      if (this.net === undefined && old !== undefined) {
        // back onto the bridge the node had (instances must not run unisolated)
        await this.startIsolation(oldAnswer).catch(() => undefined);
        throw new Error(`the bridge could not be built on the NetManager's subnet ${a.subnet}${failure !== undefined ? `: ${failure}` : ''}`);
      }
      if (failure !== undefined) throw new Error(failure);
      if (this.net !== undefined) this.net.prepare();
    };
    const p = (this.switching ?? Promise.resolve()).then(run);
    const tracked = p.catch(() => undefined).finally(() => {
      if (this.switching === tracked) this.switching = undefined;
    });
    this.switching = tracked;
    return p;
  }

  /** the deploy notice of an attachment (when the bridge is the NetManager's) */
  notice(a: Attachment): NetInstanceDeploy | undefined {
    if (this.netAnswer === undefined || a.job_name === undefined || a.instance_number === undefined) return undefined;
    return {
      job_name: a.job_name,
      instance_number: a.instance_number,
      nsip: a.ip,
      ...(a.ip6 !== undefined ? { nsip_v6: a.ip6 } : {}),
      ...(a.overlay !== undefined ? { overlay: a.overlay } : {}),
    };
  }

  announcements(): NetInstanceDeploy[] {
    if (!this.adopted || this.net === undefined) return [];
    const out: NetInstanceDeploy[] = [];
    for (const a of this.net.list()) {
      const e = this.entries.get(a.id);
      if (e === undefined || e.deleting || (e.state !== 'RUNNING' && e.state !== 'CREATING')) continue;
      const n = this.notice(a);
      if (n !== undefined) out.push(n);
    }
    return out;
  }

  announceUndeploy(id: string, job: string, n: number): void {
    if (this.nm === undefined || this.netAnswer === undefined) return;
    this.nm.undeployed(id, { job_name: job, instance_number: n });
  }

  /** removes the instance's namespace and tells the NetManager */
  async detachNet(id: string, job: string, n: number): Promise<void> {
    const had = this.net?.get(id) !== undefined;
    await this.net?.detach(id);
    if (had) this.announceUndeploy(id, job, n);
  }

  /**
   * Registers with the join token (and, to keep `id`, the password that proves it). `first`: a
   * refused token ends the start instead of being retried.
   */
  register(id: string | undefined, proof: string | undefined, signal: AbortSignal, first = false): Promise<NodeRegistrationAnswer> {
    const url = registrationUrl(this.cfg.clusterAddress, this.cfg.clusterPort);
    return (async () => {
      const body = await registrationBody({
        id,
        name: this.cfg.name,
        host: this.cfg.host ?? hostname(),
        virtualizations: this.offered,
        netmanagerPort: this.cfg.netmanagerPort,
        location: this.cfg.location,
        dataDir: this.cfg.dataDir,
        gpus: await this.sampler.gpus.refresh(true),
        addons: this.cfg.addons,
      });
      const backoff = this.cfg.registerBackoffMs ?? { initial: 500, max: 10_000 };
      const answer = await registerWithRetry(
        url,
        () => ({ ...body, ...this.versionFields(), token: this.cfg.joinToken ?? '', conn: this.conn, ...(id !== undefined ? { id } : {}), ...(id !== undefined && proof !== undefined ? { id_proof: proof } : {}) }),
        () => this.tls(),
        {
          initialMs: backoff.initial,
          maxMs: backoff.max,
          signal,
          stopOnRefusal: first,
          onFailure: (attempt, err, delay) => {
            if (attempt <= 3 || attempt % 10 === 0) {
              const hint = err instanceof OakError && err.hint !== undefined ? ` (${err.hint})` : '';
              this.log.warn(`registration at ${url} failed (attempt ${attempt}): ${err instanceof Error ? err.message : String(err)}${hint}; retrying in ${delay} ms`);
            }
          },
        },
      ).catch((err: unknown) => {
        if (isFinalRefusal(err)) {
          const e = err as OakError;
          throw new Error(`the cluster refused this worker: ${e.message}${e.hint !== undefined ? `; ${e.hint}` : ''}`);
        }
        throw err;
      });
      if (!VALID_ID.test(answer.id)) throw new Error(`the cluster gave an unusable node id ${JSON.stringify(answer.id)}`);
      this.lastRegistration = Date.now();
      if (answer.mqtt_password !== undefined) {
        this.password = answer.mqtt_password;
        await writeNodeSecret(this.cfg.dataDir, answer.id, answer.mqtt_password);
      }
      this.bus?.setCredentials(answer.mqtt_username ?? answer.id, answer.mqtt_password ?? '', answer.id);
      this.bus?.setWill(this.will(answer.id));
      if (answer.mqtt_username !== undefined) this.mqttUser = answer.mqtt_username;
      // the NetManager talks to the broker with these credentials: tell it the new ones
      if (this.nm !== undefined && this.adopted) this.nm.refresh();
      return answer;
    })();
  }

  /** Registers again (one at a time) and takes the new credentials and id. */
  reregister(why: string): Promise<void> {
    if (this.closing.signal.aborted || this.shuttingDown) return Promise.resolve();
    this.reregistering ??= (async () => {
      this.log.info(`${why}; registering again`);
      try {
        const answer = await this.register(this.id, this.password, this.closing.signal);
        await this.adoptId(answer.id);
      } catch (err) {
        if (!this.closing.signal.aborted) this.log.error(`re-registration failed: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        this.reregistering = undefined;
      }
    })();
    return this.reregistering;
  }

  async adoptId(id: string): Promise<void> {
    if (id === this.id) return;
    this.log.warn(`the cluster changed this node's id from ${this.id} to ${id}`);
    for (const u of this.unsubscribe.splice(0)) await u().catch(() => {});
    this.id = id;
    await writeNodeId(this.cfg.dataDir, this.id);
    await this.subscribe();
  }

  /** The cluster may have restarted (it keeps no state): register again, then tell it everything. */
  async onReconnect(): Promise<void> {
    if (this.closing.signal.aborted) return;
    // a registration made since the connection dropped (after a refusal: the restarted cluster
    // knew us not) already told this cluster who we are, however long the reconnect took after it;
    // a second one per worker doubled a restarted cluster's registrations under a large fleet
    if (this.reregistering !== undefined) await this.reregistering;
    else if (!registeredSince(this.lastRegistration, this.lostAt)) await this.reregister('MQTT reconnected');
    if (this.closing.signal.aborted) return;
    this.publishAllStatuses();
    await this.report();
  }

  /** Instances the drivers still hold from before: keep the running ones, report and clean up the ended. */
  async adopt(available: Runtime[]): Promise<void> {
    const found: { virtualization: Virtualization; status: InstanceStatus }[] = [];
    for (const r of available) {
      try {
        for (const status of await r.list()) found.push({ virtualization: r.virtualization, status });
      } catch (err) {
        this.log.warn(`${r.virtualization}: could not list instances: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    const plan = planAdoption(found);
    for (const e of plan.keep) this.entries.set(e.id, e);
    for (const e of plan.finished) {
      this.reportEntry(e);
      await this.retire(this.byVirt.get(e.virtualization), e.id, e.state, undefined).catch(() => {});
    }
    if (this.net !== undefined) {
      const keepIds = new Set(plan.keep.map((e) => e.id));
      for (const a of this.net.list()) {
        if (!keepIds.has(a.id) && a.job_name !== undefined && a.instance_number !== undefined) this.announceUndeploy(a.id, a.job_name, a.instance_number);
      }
      // namespaces of the kept instances stay; those of ended ones, spares and crash leftovers go
      const removed = await this.net.reconcile(new Set(plan.keep.map((e) => e.id))).catch((err: unknown) => {
        this.log.warn(`could not clean up network namespaces: ${err instanceof Error ? err.message : String(err)}`);
        return [];
      });
      if (removed.length > 0) this.log.info(`removed ${removed.length} stale network namespace(s)`);
      this.net.prepare(0);
    }
    if (found.length > 0) {
      this.log.info(`re-adopted ${plan.keep.length} running instance(s); ${plan.finished.length} had ended; ${plan.unknown.length} unknown left alone`);
    }
  }

  async subscribe(): Promise<void> {
    const bus = this.bus;
    if (bus === undefined) return;
    const handle = (what: string, fn: (payload: unknown) => void | Promise<void>) => (_t: string, buf: Buffer) => {
      let payload: unknown;
      try {
        payload = decodeJson(buf);
      } catch (err) {
        this.log.warn(`${what}: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
      return fn(payload);
    };
    this.unsubscribe.push(await bus.subscribe(topics.deploy(this.id), handle('deploy', (p) => this.onDeploy(p))));
    this.unsubscribe.push(await bus.subscribe(topics.delete(this.id), handle('delete', (p) => this.onDelete(p))));
    this.unsubscribe.push(await bus.subscribe(logTopics.request(this.id), handle('logs', (p) => this.onLogs(p))));
    this.unsubscribe.push(await bus.subscribe(logTopics.cancel(this.id), handle('logs cancel', (p) => this.onLogsCancel(p))));
    this.unsubscribe.push(await bus.subscribe(topics.upgrade(this.id), handle('upgrade', (p) => {
      if (this.shuttingDown) return;
      let cmd;
      try {
        cmd = parseWorkerUpgradeCommand(p);
      } catch (err) {
        this.log.warn(`upgrade: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
      void this.upgrader?.handle(cmd);
    })));
    // the cluster does not know us (it restarted behind an external broker, or dropped us)
    this.unsubscribe.push(await bus.subscribe(topics.registerRequest(this.id), () => {
      if (Date.now() - this.lastRegistration > 5000) void this.reregister('the cluster asked this worker to register');
    }));
  }

  // ---------------------------------------------------------------- reporting

  publishJob(s: JobStatus): void {
    const bus = this.bus;
    if (bus === undefined || this.closing.signal.aborted) return;
    bus.publishJson(topics.job(this.id), s, 1).catch((err: unknown) => this.log.warn(`could not publish job status: ${String(err)}`));
  }

  reportEntry(e: Entry): void {
    const s = jobStatus(e, e.state, e.detail, e.exit_code);
    if (e.health !== undefined) s.health = e.health;
    if (e.restarts !== undefined) s.restarts = e.restarts;
    this.publishJob(s);
  }

  publishAllStatuses(): void {
    for (const e of this.entries.values()) if (!e.deleting) this.reportEntry(e);
  }

  async report(): Promise<void> {
    const bus = this.bus;
    if (bus === undefined || !bus.connected || this.shuttingDown || this.reporting) return;
    this.reporting = true;
    try {
      const info = await this.sampler.information(this.offered, runningNames(this.entries.values()));
      // reports at QoS 0 (statuses stay QoS 1): the next one supersedes a lost one within one
      // interval, and a cluster with 10,000 workers is spared a PUBACK and an in-flight entry per
      // report in both directions (issue 13); same topics and payloads as before
      await bus.publishJson(topics.information(this.id), { ...info, conn: this.conn, ...this.versionFields() }, 0);
      const res: JobResources = { instances: [] };
      for (const e of this.entries.values()) {
        if (e.deleting || e.state !== 'RUNNING') continue;
        const s = await this.byVirt.get(e.virtualization)?.stats(e.id).catch(() => undefined);
        if (s === undefined) continue;
        res.instances.push({ job_name: e.job_name, instance_number: e.instance_number, cpu_percent: Math.max(0, s.cpu_percent), memory_mb: Math.max(0, s.memory_mb) });
      }
      await bus.publishJson(topics.jobResources(this.id), res, 0);
    } catch (err) {
      if (!this.shuttingDown) this.log.warn(`report failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      this.reporting = false;
    }
  }

  // ---------------------------------------------------------------- instances

  /** Runs `op` after everything queued for the same instance. */
  enqueue(id: string, op: () => Promise<void>): Promise<void> {
    const prev = this.queues.get(id) ?? Promise.resolve();
    const next = prev.then(op).catch((err: unknown) => this.log.error(`${id}: ${err instanceof Error ? err.message : String(err)}`));
    this.queues.set(id, next);
    void next.then(() => {
      if (this.queues.get(id) === next) this.queues.delete(id);
    });
    return next;
  }

  setState(e: Entry, state: InstanceState, detail: string, exitCode?: number): void {
    const changed = applyState(e, state, detail, exitCode);
    if (changed && (state === 'COMPLETED' || state === 'FAILED')) e.ended_at = this.now;
    if (changed && !e.deleting) this.reportEntry(e);
    if (state === 'COMPLETED' || state === 'FAILED') this.scheduleCleanup(e);
  }

  /** Remains of an ended instance the cluster never deletes go away after the retention time. */
  scheduleCleanup(e: Entry): void {
    const ms = this.cfg.exitedRetentionMs ?? 600_000;
    clearTimeout(this.retention.get(e.id));
    const t = setTimeout(() => {
      this.retention.delete(e.id);
      void this.enqueue(e.id, async () => {
        const cur = this.entries.get(e.id);
        if (cur !== e || (e.state !== 'COMPLETED' && e.state !== 'FAILED')) return;
        await this.retire(this.byVirt.get(e.virtualization), e.id, e.state, e.ended_at).catch(() => {});
        await this.detachNet(e.id, e.job_name, e.instance_number).catch(() => {});
        await rm(filesDirOf(this.cfg.dataDir, e.id), { recursive: true, force: true }).catch(() => {});
        this.entries.delete(e.id);
        this.forgetRun(e.id);
      });
    }, ms);
    t.unref();
    this.retention.set(e.id, t);
  }

  onDeploy(raw: unknown): void {
    if (this.shuttingDown) return;
    let cmd: DeployCommand;
    try {
      cmd = parseDeployCommand(raw);
    } catch (err) {
      const reason = `invalid deploy command: ${err instanceof Error ? err.message : String(err)}`;
      const o = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : {};
      const job = o['job_name'];
      const n = o['instance_number'];
      if (typeof job === 'string' && job !== '' && typeof n === 'number' && Number.isInteger(n) && n >= 0) {
        this.log.warn(`${instanceName(job, n)}: ${reason}`);
        this.publishJob(jobStatus({ job_name: job, instance_number: n }, 'FAILED', reason));
      } else {
        this.log.warn(reason);
      }
      return;
    }
    const problem = jobNameProblem(cmd.job_name);
    if (problem !== undefined) {
      this.publishJob(jobStatus(cmd, 'FAILED', problem));
      return;
    }
    const id = instanceName(cmd.job_name, cmd.instance_number);
    const existing = this.entries.get(id);
    if (isSettledActive(existing) && existing !== undefined) {
      // a re-adopted instance (no restart record since this start): its probe and restarts resume
      if (!this.runs.has(id) && existing.state === 'RUNNING') void this.enqueue(id, () => this.resumeRun(existing, cmd));
      this.reportEntry(existing);
      return;
    }
    void this.enqueue(id, () => this.deploy(id, cmd));
  }

  async deploy(id: string, cmd: DeployCommand): Promise<void> {
    const old = this.entries.get(id);
    const decision = decideDeploy(old);
    if (decision === 'report' && old !== undefined) {
      this.reportEntry(old);
      return;
    }
    if (decision === 'replace' && old !== undefined) {
      clearTimeout(this.retention.get(id));
      this.retention.delete(id);
      this.forgetRun(id);
      await this.retire(this.byVirt.get(old.virtualization), id, old.state, old.ended_at).catch(() => {});
      await this.detachNet(id, old.job_name, old.instance_number).catch(() => {});
      await rm(filesDirOf(this.cfg.dataDir, id), { recursive: true, force: true }).catch(() => {});
      this.entries.delete(id);
    }
    const e: Entry = { id, job_name: cmd.job_name, instance_number: cmd.instance_number, virtualization: cmd.virtualization, state: 'CREATING', detail: 'deploying', deleting: false, restarts: 0 };
    this.entries.set(id, e);
    this.reportEntry(e);
    const runtime = this.offered.includes(cmd.virtualization) ? this.byVirt.get(cmd.virtualization) : undefined;
    if (runtime === undefined) {
      this.setState(e, 'FAILED', unavailableReason(cmd.virtualization, this.offered));
      return;
    }
    const spec = deployToSpec(cmd);
    if (!spec.ok) {
      this.setState(e, 'FAILED', spec.reason);
      return;
    }
    // GPUs (issue 10): chosen in the same synchronous step that registered the entry, so two
    // deploys running side by side never pick the same one
    const needGpus = gpusNeeded(cmd.vgpus);
    if (needGpus > 0) {
      const devices = this.sampler.gpus.current;
      const got = assignGpus(needGpus, cmd.virtualization, devices, heldGpus(this.entries.values(), id));
      if (!got.ok) {
        this.log.warn(`${id}: ${got.reason}`);
        this.setState(e, 'FAILED', got.reason);
        return;
      }
      e.gpus = got.indices;
      giveGpus(spec.spec, got.indices.map((index) => ({ index, uuid: devices.find((d) => d.index === index)?.uuid ?? '' })));
    }
    const policy = await applyPolicy(cmd, this.policyOptions());
    if (!policy.ok) {
      this.log.warn(`${id}: ${policy.reason}`);
      this.setState(e, 'FAILED', policy.reason);
      return;
    }
    if (policy.privileged) spec.spec.privileged = true;
    if (policy.mounts.length > 0) spec.spec.mounts = policy.mounts;
    if (cmd.added_files !== undefined && cmd.added_files.length > 0) {
      const files = await fetchAddedFiles(cmd.added_files, cmd.virtualization, filesDirOf(this.cfg.dataDir, id));
      if (!files.ok) {
        this.log.warn(`${id}: ${files.reason}`);
        this.setState(e, 'FAILED', files.reason);
        return;
      }
      if (files.files.length > 0) spec.spec.files = files.files;
    }
    // what a later local restart needs beyond the command, on disk before the start: a restart
    // after a NodeEngine restart (re-adoption) reads it back and starts the same instance
    if (needsRunRecord(spec.spec)) {
      const dir = filesDirOf(this.cfg.dataDir, id);
      try {
        await mkdir(dir, { recursive: true, mode: 0o755 });
        await writeRunRecord(dir, spec.spec);
      } catch (err) {
        const reason = `could not keep the instance's restart record: ${err instanceof Error ? err.message : String(err)}`;
        this.log.warn(`${id}: ${reason}`);
        await rm(dir, { recursive: true, force: true }).catch(() => {});
        this.setState(e, 'FAILED', reason);
        return;
      }
    }
    let address = '';
    let attached: Attachment | undefined;
    await this.switching;
    if (this.net !== undefined) {
      try {
        const a = await this.net.attach(id, spec.spec.ports, { job_name: cmd.job_name, instance_number: cmd.instance_number, overlay: cmd.overlay });
        attached = a;
        spec.spec.netns = a.path;
        const resolv = this.net.resolvConf;
        if (resolv !== undefined) spec.spec.resolvConf = resolv;
        address = `, address ${a.ip}${a.ip6 !== undefined ? ` ${a.ip6}` : ''}`;
      } catch (err) {
        const reason = `network: ${err instanceof Error ? err.message : String(err)}`;
        this.log.warn(`${id}: ${reason}`);
        this.setState(e, 'FAILED', reason);
        return;
      }
    }
    try {
      const st = await runtime.start(spec.spec);
      if (st.state === 'COMPLETED' || st.state === 'FAILED') this.setState(e, st.state, st.detail, st.exit_code);
      else {
        this.runs.set(id, { spec: spec.spec, cmd, restart: restartSettings(cmd), ip: attached?.ip, netns: attached?.path });
        this.startMonitor(e);
        this.setState(e, st.state === 'CREATED' ? 'RUNNING' : st.state, `${st.detail !== '' ? st.detail : 'running'}${address}`);
        const n = attached !== undefined ? this.notice(attached) : undefined;
        if (n !== undefined) this.nm?.deployed(id, n);
      }
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      this.log.warn(`${id}: start failed: ${reason}`);
      await runtime.stop(id).catch(() => {});
      await this.detachNet(id, cmd.job_name, cmd.instance_number).catch(() => {});
      await rm(filesDirOf(this.cfg.dataDir, id), { recursive: true, force: true }).catch(() => {});
      this.setState(e, 'FAILED', reason);
    } finally {
      // the registry login served the pull: nothing on the worker keeps it
      delete spec.spec.registryAuth;
      delete cmd.registry_auth;
    }
    this.net?.prepare();
  }

  onExit(runtime: Runtime, ex: InstanceExit): void {
    const e = this.entries.get(ex.id);
    if (e === undefined || e.deleting || e.restarting === true || e.virtualization !== runtime.virtualization) return;
    this.stopMonitor(e.id);
    const s = exitToJobStatus(e, ex);
    const gaveUp = this.restartOrGiveUp(e, ex.state === 'COMPLETED' ? 'completed' : 'failed', s.status_detail);
    if (gaveUp === undefined) return;
    this.setState(e, s.status, `${s.status_detail}${gaveUp}`, ex.exit_code);
  }

  // ---------------------------------------------------------------- health and local restarts

  /** Takes up probing and restarts of an instance re-adopted after a NodeEngine restart (its count kept in its labels). */
  async resumeRun(e: Entry, cmd: DeployCommand): Promise<void> {
    if (this.runs.has(e.id) || this.entries.get(e.id) !== e || e.deleting || e.state !== 'RUNNING') return;
    const spec = deployToSpec(cmd);
    if (!spec.ok) return;
    const policy = await applyPolicy(cmd, this.policyOptions());
    if (!policy.ok) return;
    if (policy.privileged) spec.spec.privileged = true;
    if (policy.mounts.length > 0) spec.spec.mounts = policy.mounts;
    // its fetched files and GPUs, as its first start had them (kept in its run record)
    const rec = await restartExtras(filesDirOf(this.cfg.dataDir, e.id), e.gpus !== undefined && e.gpus.length > 0);
    if (!rec.ok) {
      // without them a restart would start a different instance: its end goes to the cluster
      this.log.warn(`${e.id}: re-adopted without local restarts: ${rec.reason}`);
      return;
    }
    if (rec.record.files !== undefined) spec.spec.files = rec.record.files;
    giveGpus(spec.spec, rec.record.gpus ?? []);
    if (this.runs.has(e.id) || this.entries.get(e.id) !== e || e.deleting || e.state !== 'RUNNING') return;
    const a = this.net?.get(e.id);
    if (a !== undefined) {
      spec.spec.netns = a.path;
      const resolv = this.net?.resolvConf;
      if (resolv !== undefined) spec.spec.resolvConf = resolv;
    }
    e.restarts ??= 0;
    spec.spec.labels[LABEL_RESTARTS] = String(e.restarts);
    this.runs.set(e.id, { spec: spec.spec, cmd, restart: restartSettings(cmd), ip: a?.ip, netns: a?.path });
    this.startMonitor(e);
  }

  /** what applyPolicy checks a command against on this worker (deploy and re-adoption alike) */
  policyOptions(): Parameters<typeof applyPolicy>[1] {
    return { allowPrivileged: this.cfg.allowPrivileged === true, volumeAllow: this.cfg.volumeAllow ?? [], volumesDir: join(this.cfg.dataDir, 'volumes') };
  }

  /** Starts the instance's health probe (when its SLA has one). */
  startMonitor(e: Entry): void {
    const run = this.runs.get(e.id);
    this.stopMonitor(e.id);
    const probe = run?.cmd.health;
    if (run === undefined || probe === undefined) {
      e.health = undefined;
      return;
    }
    const settings = probeSettings(probe);
    const runtime = this.byVirt.get(e.virtualization);
    const target = async (): Promise<{ host: string; netns?: string | undefined; pid?: number | undefined }> => {
      const pid = settings.type === 'exec' ? (await runtime?.status(e.id).catch(() => undefined))?.pid : undefined;
      return { host: run.ip ?? '127.0.0.1', netns: run.netns, pid };
    };
    const m = new HealthMonitor(settings, probeFor(settings, target), (v) => this.onHealth(e, m, v));
    e.health = m.view.status;
    this.monitors.set(e.id, m);
    m.start();
  }

  stopMonitor(id: string): void {
    this.monitors.get(id)?.stop();
    this.monitors.delete(id);
  }

  /** forgets everything of a local restart (delete, replace, cleanup) */
  forgetRun(id: string): void {
    this.stopMonitor(id);
    clearTimeout(this.restartTimers.get(id));
    this.restartTimers.delete(id);
    this.runs.delete(id);
  }

  onHealth(e: Entry, m: HealthMonitor, v: HealthView): void {
    if (this.monitors.get(e.id) !== m || this.entries.get(e.id) !== e || e.deleting) return;
    e.health = v.status;
    if (v.status !== 'unhealthy') {
      this.reportEntry(e);
      return;
    }
    this.log.warn(`${e.id}: unhealthy (${v.failures} failed probes: ${v.detail})`);
    this.reportEntry(e);
    const why = `unhealthy: ${v.failures} health probes failed (last: ${v.detail})`;
    // no restarts wanted: it keeps running and probed, unhealthy (the overlay leaves it out)
    if (this.runs.get(e.id)?.restart.policy === 'never') return;
    this.stopMonitor(e.id);
    const gaveUp = this.restartOrGiveUp(e, 'unhealthy', why);
    if (gaveUp === undefined) return;
    // restarts exhausted: stopped here and FAILED, for the cluster to place elsewhere
    e.restarting = true;
    void this.enqueue(e.id, async () => {
      await this.byVirt.get(e.virtualization)?.stop(e.id).catch(() => {});
      e.restarting = false;
      if (this.entries.get(e.id) !== e || e.deleting) return;
      this.setState(e, 'FAILED', `${why}${gaveUp}`);
    });
  }

  /**
   * An instance ended (or turned unhealthy): a local restart is scheduled (undefined returned),
   * or the caller reports the end with the returned suffix (empty, or why no more restarts).
   */
  restartOrGiveUp(e: Entry, cause: EndCause, why: string): string | undefined {
    const run = this.runs.get(e.id);
    if (run === undefined || this.shuttingDown) return '';
    const b = this.cfg.restartBackoffMs;
    const d = decideRestart(run.restart, e.restarts ?? 0, cause, b?.initial, b?.max);
    if (!d.restart) {
      return d.reason === 'exhausted' && run.restart.max > 0 ? `; gave up after ${e.restarts ?? 0} local restart(s) (restart_max ${run.restart.max})` : '';
    }
    e.restarting = true;
    this.setState(e, 'CREATING', `restart ${d.attempt} of ${run.restart.max} in ${fmtSeconds(d.delayMs)} s after: ${why}`);
    this.log.info(`${e.id}: ${why}; local restart ${d.attempt} of ${run.restart.max} in ${d.delayMs} ms`);
    clearTimeout(this.restartTimers.get(e.id));
    const t = setTimeout(() => {
      this.restartTimers.delete(e.id);
      void this.enqueue(e.id, () => this.restartNow(e, d.attempt));
    }, d.delayMs);
    t.unref();
    this.restartTimers.set(e.id, t);
    return undefined;
  }

  async restartNow(e: Entry, attempt: number): Promise<void> {
    const run = this.runs.get(e.id);
    const runtime = this.byVirt.get(e.virtualization);
    if (run === undefined || runtime === undefined || this.entries.get(e.id) !== e || e.deleting || this.shuttingDown) return;
    // the old copy's remains go; its network namespace (and address) stays
    await runtime.stop(e.id).catch(() => {});
    e.restarts = attempt;
    run.spec.labels[LABEL_RESTARTS] = String(attempt);
    let st: InstanceStatus;
    try {
      st = await runtime.start(run.spec);
    } catch (err) {
      e.restarting = false;
      const reason = `restart ${attempt} failed: ${err instanceof Error ? err.message : String(err)}`;
      await runtime.stop(e.id).catch(() => {});
      const gaveUp = this.restartOrGiveUp(e, 'failed', reason);
      if (gaveUp !== undefined) this.setState(e, 'FAILED', `${reason}${gaveUp}`);
      return;
    }
    e.restarting = false;
    if (this.entries.get(e.id) !== e || e.deleting) return;
    if (st.state === 'COMPLETED' || st.state === 'FAILED') {
      const gaveUp = this.restartOrGiveUp(e, st.state === 'COMPLETED' ? 'completed' : 'failed', st.detail);
      if (gaveUp !== undefined) this.setState(e, st.state, `${st.detail}${gaveUp}`, st.exit_code);
      return;
    }
    this.startMonitor(e);
    this.setState(e, 'RUNNING', `running (local restart ${attempt} of ${run.restart.max})`);
  }

  onDelete(raw: unknown): void {
    if (this.shuttingDown) return;
    let job: string;
    let n: number;
    let virt: Virtualization | undefined;
    try {
      const cmd = parseDeleteCommand(raw);
      job = cmd.job_name;
      n = cmd.instance_number;
      virt = cmd.virtualization;
    } catch (err) {
      // the virtualization is not needed to find an instance: accept a delete without it
      const o = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : {};
      const j = o['job_name'];
      const k = o['instance_number'];
      if (typeof j !== 'string' || j === '' || typeof k !== 'number' || !Number.isInteger(k) || k < 0) {
        this.log.warn(`invalid delete command: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
      job = j;
      n = k;
    }
    const id = instanceName(job, n);
    const e = this.entries.get(id);
    if (e !== undefined) e.deleting = true;
    void this.enqueue(id, () => this.remove(id, job, n, virt));
  }

  async remove(id: string, job: string, n: number, virt: Virtualization | undefined): Promise<void> {
    const e = this.entries.get(id);
    clearTimeout(this.retention.get(id));
    this.retention.delete(id);
    this.forgetRun(id);
    const runtime = this.byVirt.get(e?.virtualization ?? virt ?? 'process');
    try {
      const ended = e !== undefined && (e.state === 'COMPLETED' || e.state === 'FAILED');
      if (runtime !== undefined && (e !== undefined || jobNameProblem(job) === undefined)) await this.retire(runtime, id, ended ? e.state : 'UNDEPLOYED', ended ? e.ended_at : undefined);
      await this.detachNet(id, job, n);
      if (jobNameProblem(job) === undefined) await rm(filesDirOf(this.cfg.dataDir, id), { recursive: true, force: true });
    } catch (err) {
      const reason = `could not stop: ${err instanceof Error ? err.message : String(err)}`;
      this.log.error(`${id}: ${reason}`);
      if (e !== undefined) {
        e.deleting = false;
        this.setState(e, 'FAILED', reason);
      }
      return;
    }
    if (this.entries.get(id) === e) this.entries.delete(id);
    for (const [rid, s] of this.logSessions) if (s.instance === id) { s.abort.abort(); this.logSessions.delete(rid); }
    this.publishJob(jobStatus({ job_name: job, instance_number: n }, 'UNDEPLOYED', 'undeployed'));
  }

  // ---------------------------------------------------------------- logs

  onLogs(raw: unknown): void {
    const parsed = parseLogRequest(raw);
    if (!parsed.ok) {
      this.log.warn(`invalid log request: ${parsed.reason}`);
      if (parsed.request_id !== undefined) this.sendLogs(parsed.request_id, { lines: [], end: true, error: parsed.reason });
      return;
    }
    const req = parsed.req;
    const id = instanceName(req.job_name, req.instance_number);
    const e = this.entries.get(id);
    const runtime = e === undefined ? undefined : this.byVirt.get(e.virtualization);
    let source: (signal: AbortSignal) => AsyncIterable<string>;
    if (e !== undefined && runtime !== undefined && !e.deleting) {
      const follow = req.follow && e.state !== 'COMPLETED' && e.state !== 'FAILED';
      source = (signal) => runtime.logs(id, { follow, ...(req.tail !== undefined ? { tail: req.tail } : {}), signal });
    } else {
      // not (or no longer) here: what was kept of it, printed once (a follow ends after it)
      const found = this.kept.lookup(id);
      const me = this.cfg.name === this.id ? this.id : `${this.cfg.name} (${this.id})`;
      if (found.kind !== 'kept') {
        const error = found.kind === 'dropped' ? droppedReason(found.drop, me, this.kept) : `instance ${id} is not on this worker (${me}) and no logs of it are kept here`;
        this.sendLogs(req.request_id, { lines: [], end: true, error, gone: true });
        return;
      }
      const k = found.log;
      const note = `# oak: ${id} ended ${when(k.ended_at)} (${k.status}); its logs are kept on worker ${me} until ${when(k.ended_at + this.kept.retentionMs)} (${spoken(this.kept.retentionMs)})`;
      source = (signal) => (async function* () {
        yield note;
        yield* readLines(found.path, { ...(req.tail !== undefined ? { tail: req.tail } : {}), signal });
      })();
    }
    this.logSessions.get(req.request_id)?.abort.abort();
    const abort = new AbortController();
    this.logSessions.set(req.request_id, { instance: id, abort });
    const lines = source(abort.signal);
    void pumpLogs(lines, (b) => this.sendLogs(req.request_id, b), abort.signal).finally(() => {
      if (this.logSessions.get(req.request_id)?.abort === abort) this.logSessions.delete(req.request_id);
    });
  }

  onLogsCancel(raw: unknown): void {
    const rid = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>)['request_id'] : undefined;
    if (typeof rid !== 'string') return;
    this.logSessions.get(rid)?.abort.abort();
  }

  /** the last will of the MQTT connection of worker `id` (NodeGone) */
  will(id: string): { topic: string; payload: string; qos: 1; retain: false } {
    return { topic: topics.gone(id), payload: JSON.stringify({ id, conn: this.conn }), qos: 1, retain: false };
  }

  sendLogs(requestId: string, b: LogBatch): void {
    const bus = this.bus;
    if (bus === undefined) return;
    bus.publishJson(logTopics.answer(this.id, requestId), b, 1).catch(() => {});
  }

  // ---------------------------------------------------------------- stop

  close(stopInstances: boolean): Promise<void> {
    this.closed ??= (async () => {
      this.shuttingDown = true;
      if (stopInstances) {
        for (const e of this.entries.values()) {
          e.deleting = true;
          void this.enqueue(e.id, () => this.remove(e.id, e.job_name, e.instance_number, e.virtualization));
        }
      }
      // publishJob refuses once `closing` aborts: let the removals report first
      const pending = [...this.queues.values()];
      await Promise.race([Promise.allSettled(pending), new Promise((r) => setTimeout(r, stopInstances ? 30_000 : 5000).unref())]);
      this.closing.abort(new Error('NodeEngine closed'));
      clearInterval(this.reportTimer);
      clearTimeout(this.keptTimer);
      for (const t of this.retention.values()) clearTimeout(t);
      this.retention.clear();
      for (const id of [...this.runs.keys()]) this.forgetRun(id);
      for (const s of this.logSessions.values()) s.abort.abort();
      await new Promise((r) => setTimeout(r, 20));
      await this.nm?.close();
      // stopping for good (instances removed): the cluster may forget this worker at once; a plain
      // close() (a restart re-adopts the instances) disconnects cleanly and says nothing
      if (stopInstances && this.bus?.connected === true && this.id !== '') {
        const b = this.bus;
        await Promise.race([b.publishJson(topics.gone(this.id), { id: this.id, conn: this.conn, at: Date.now() }, 1).catch(() => {}), new Promise((r) => setTimeout(r, 1000).unref())]);
      }
      await this.bus?.close();
      await Promise.allSettled(this.runtimes.map((r) => r.close()));
      await this.net?.close().catch(() => {});
    })();
    return this.closed;
  }
}

export async function startNodeEngine(config: NodeEngineOptions, deps: NodeEngineDeps = {}): Promise<NodeEngineHandle> {
  const cfg = withDefaults(config);
  const engine = new Engine(cfg, deps.runtimes ?? createDefaultRuntimes(cfg));
  engine.upgrader = new Upgrader({
    dataDir: cfg.dataDir,
    version: engine.version,
    arch: hostArch(),
    self: deps.selfUpgrade,
    check: cfg.upgradeCheck,
    // from its own cluster only: HTTPS pinned to the cluster CA, its own worker credentials
    download: async (sha, size) =>
      downloadArtifact(`${registrationUrl(cfg.clusterAddress, cfg.clusterPort).replace(/\/api\/node\/register$/, '')}/api/node/artifact/${sha}`, await engine.tls(), engine.id, engine.password ?? '', size),
    changed: () => void engine.report(),
    log: engine.log,
  });
  // drivers given by the embedder (test fakes) get no namespaces unless the config asks for them
  if (deps.runtimes !== undefined) engine.isolationDefault = 'off';
  const signal = deps.signal === undefined ? engine.closing.signal : AbortSignal.any([deps.signal, engine.closing.signal]);
  try {
    await engine.start(signal);
  } catch (err) {
    clearInterval(engine.reportTimer);
    engine.shuttingDown = true;
    clearTimeout(engine.keptTimer);
    await engine.nm?.close().catch(() => {});
    await engine.bus?.close().catch(() => {});
    await Promise.allSettled(engine.runtimes.map((r) => r.close()));
    await engine.net?.close().catch(() => {});
    throw err;
  }
  return {
    get id() {
      return engine.id;
    },
    virtualizations: engine.offered,
    close: () => engine.close(false),
    shutdown: (opts = {}) => engine.close(opts.stopInstances === true),
  };
}

function fmtSeconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}

/** The worker join token from the config, or a clear error (NodeEngine -t / OAK_JOIN_TOKEN). */
export function requireJoinToken(text: string | undefined): JoinToken {
  if (text === undefined || text.trim() === '') {
    throw new Error('a worker join token is required: start NodeEngine with -t <token> (or OAK_JOIN_TOKEN); create one on the root with `oak token create worker --cluster <name>`');
  }
  const t = tryParseJoinToken(text);
  if (t === undefined) throw new Error('the join token is not an oak token (oak1.w.<id>.<secret>.<ca hash>); create one with `oak token create worker --cluster <name>`');
  if (t.kind !== 'worker') throw new Error('this is a cluster join token; a worker needs a worker token: `oak token create worker --cluster <name>`');
  return t;
}
