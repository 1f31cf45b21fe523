/**
 * startCluster: the cluster orchestrator as an embeddable service (the oak-cluster binary, oakd's
 * 1-DOC and the tests all use it). Wiring only: HTTP registration (fastify), MQTT (the bus, with
 * an embedded aedes broker unless MQTT_URL names one), the root link (gRPC, dialling out), and
 * timers; every decision is made by ClusterCore.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { DynsecProvisioner, NatsAuthProvisioner, connectBus, consoleLogger, isNatsSafeId, isTopicSafeId, provisionClusterClient, startEmbeddedBroker, workerOfClient } from '@oak/bus';
import type { BrokerPrincipal, EmbeddedBroker, Logger } from '@oak/bus';
import {
  DEFAULT_PORTS,
  NODE_GONE_MAX_BYTES,
  OakError,
  tryParseJoinToken,
  REGISTRATION_LIMITS,
  assertWithinLimits,
  decodeJson,
  httpServerTimeouts,
  instanceName,
  netTopics,
  parseInterestRemove,
  parseJobResources,
  parseJobStatus,
  parseNodeGone,
  parseNodeInformation,
  parseNodeRegistration,
  parseNodeTopic,
  parseRttReport,
  parseServiceDeployed,
  parseServiceUndeployed,
  parseSubnetRequest,
  parseTableQueryRequest,
  topics,
} from '@oak/contracts';
import type { ClusterToRoot, NodeInformation, NodeRegistrationAnswer, RootToCluster } from '@oak/contracts';
import { parseGeoPoint } from '@oak/scheduler';
import { CLUSTER_VERSION } from './config.ts';
import { ArtifactCache } from './artifacts.ts';
import { releaseVersion } from '@oak/sysinfo';
import type { ClusterConfig, WorkerTokenChecker, WorkerTokenResult } from './config.ts';
import { ClusterCore } from './core.ts';
import type { Effect } from './core.ts';
import { LinkClient } from './link-client.ts';
import { LogRelay } from './logs.ts';
import { NET_MESSAGE_MAX_BYTES, NetCore, RTT_REPORT_MAX_BYTES } from './net.ts';
import type { NetEffect, NetInstanceView, NetView } from './net.ts';
import type { DesiredInstance } from './core.ts';

export interface ClusterHandle {
  /** POST here to register a worker (http://host:port/api/node/register) */
  registrationUrl: string;
  /** http://host:port */
  httpUrl: string;
  port: number;
  /** the broker workers use */
  mqttUrl: string;
  mqttPort: number;
  /** the decision core (read-only use: tests, debugging) */
  core: ClusterCore;
  /** the overlay network's core (read-only use: tests, debugging) */
  net: NetCore;
  /** our id at the root once the link said welcome */
  readonly clusterId: string | null;
  readonly rootConnected: boolean;
  /** sends the aggregate to the root now */
  sendAggregate(): void;
  /** registration and the embedded broker speak TLS */
  readonly tls: boolean;
  /** worker ids holding credentials now, with the id of the token they joined with */
  credentials(): ReadonlyMap<string, string>;
  /**
   * user name, password and TLS options of the cluster's own (full access) broker client, for
   * tools embedded in the same process (benches, tests); never sent anywhere
   */
  ownClientOptions(): { username?: string; password?: string; tls?: import('node:tls').ConnectionOptions };
  /**
   * with the embedded broker: a connection to it inside this process, for a NodeEngine in the
   * same process (the 1-DOC): no TLS and no loopback socket per message; the client still
   * authenticates with its own credentials, as over the network. undefined with an external broker.
   */
  readonly localBrokerStream: (() => import('node:stream').Duplex) | undefined;
  /** drops credentials and connections (revoke_workers from the root does the same) */
  revokeWorkers(r: { token_id?: string; worker_ids?: string[] }): Promise<string[]>;
  close(): Promise<void>;
}

const JOIN_HINT = 'create a worker token with `oak token create worker --cluster <name>` and start the worker with `NodeEngine -t <token>` (or OAK_JOIN_TOKEN)';
/** registration body cap: a registration is a few hundred bytes */
export const REGISTRATION_BODY_LIMIT = 16 * 1024;
const REG_LIMITS: Record<string, number> = { id: 200, node_name: 253, host: 253, arch: 64, os: 64, location: 256 };
const MAX_VIRTUALIZATIONS = 16;

function registrationLimitProblem(reg: Record<string, unknown>): OakError | undefined {
  for (const [field, max] of Object.entries(REG_LIMITS)) {
    const v = reg[field];
    if (typeof v === 'string' && v.length > max) {
      return new OakError('OAK_LIMIT_EXCEEDED', `invalid node registration: ${field} is ${v.length} characters long, the limit is ${max}`, { path: field });
    }
  }
  const virt = reg['virtualizations'];
  if (Array.isArray(virt) && virt.length > MAX_VIRTUALIZATIONS) {
    return new OakError('OAK_LIMIT_EXCEEDED', `invalid node registration: virtualizations has ${virt.length} entries, the limit is ${MAX_VIRTUALIZATIONS}`, { path: 'virtualizations' });
  }
  return undefined;
}

/** user and password in an mqtt:// URL, and the URL without them (what workers may see) */
function splitBrokerUrl(url: string): { url: string; username?: string; password?: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`MQTT_URL ${JSON.stringify(url)} is not a URL such as mqtt://user:password@host:1883`);
  }
  const out: { url: string; username?: string; password?: string } = { url };
  if (u.username !== '') out.username = decodeURIComponent(u.username);
  if (u.password !== '') out.password = decodeURIComponent(u.password);
  u.username = '';
  u.password = '';
  out.url = u.toString().replace(/\/$/, '');
  return out;
}

const VALID_ID = /^[^/+#\s]{1,200}$/;

/** the request id of a table query that failed validation, when it has a usable one */
function tableQueryId(payload: Buffer): string | undefined {
  if (payload.byteLength > NET_MESSAGE_MAX_BYTES) return undefined;
  try {
    const v = JSON.parse(payload.toString('utf8')) as unknown;
    const rid = typeof v === 'object' && v !== null ? (v as { request_id?: unknown }).request_id : undefined;
    return typeof rid === 'string' && /^[A-Za-z0-9_.-]{1,128}$/.test(rid) ? rid : undefined;
  } catch {
    return undefined;
  }
}

/** a worker's MQTT password: HMAC-SHA256(the cluster's MQTT secret from the root, its id) */
export function workerPassword(secret: string, workerId: string): string {
  return createHmac('sha256', secret).update(`oak-mqtt:${workerId}`).digest('base64url');
}

function urlHost(h: string): string {
  if (h === '0.0.0.0' || h === '::' || h === '') return '127.0.0.1';
  return h.includes(':') && !h.startsWith('[') ? `[${h}]` : h;
}

export async function startCluster(config: ClusterConfig): Promise<ClusterHandle> {
  const log: Logger = config.log ?? consoleLogger(`cluster ${config.name}`);
  const reportIntervalMs = config.reportIntervalMs ?? 2000;
  const deadAfterMs = (config.deadAfterIntervals ?? 3) * reportIntervalMs;
  const core = new ClusterCore({
    reportIntervalMs,
    deadAfterMs,
    strategy: config.strategy ?? 'least-loaded',
    clusterLocation: parseGeoPoint(config.location ?? null),
    clusterAddons: config.addons ?? [],
    // the NetCore below holds the RTTs the workers' NetManagers report
    rttMs: (a, b) => net.rttMs(a, b),
  });
  const netView = (d: DesiredInstance): NetInstanceView => ({
    job_name: d.assignment.job_name,
    instance_number: d.assignment.instance_number,
    worker_id: d.worker_id,
    status: d.status,
    status_detail: d.status_detail,
    publicip: d.publicip,
    overlay: d.assignment.overlay,
    epoch: d.assignment.epoch,
    health: d.health,
    restarts: d.restarts,
  });
  const view: NetView = {
    instance: (job, n) => {
      const d = core.desired.get(instanceName(job, n));
      return d ? netView(d) : undefined;
    },
    *instancesOf(job) {
      for (const d of core.desired.values()) if (d.assignment.job_name === job) yield netView(d);
    },
    *allInstances() {
      for (const d of core.desired.values()) yield netView(d);
    },
    workerKnown: (id) => core.isRegistered(id),
    workerAlive: (id) => core.workers.get(id)?.alive === true,
    synced: () => core.synced,
  };
  const net = new NetCore(view, config.net ?? {});
  /** the address each worker registered from (its publicip when its NetManager names none) */
  const registeredFrom = new Map<string, string>();
  const host = config.host ?? '0.0.0.0';
  const cleanups: (() => Promise<void>)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => log.warn('cluster: close step failed', err));
    cleanups.length = 0;
  };

  let broker: EmbeddedBroker | undefined;
  let link: LinkClient | undefined;
  let tickTimer: NodeJS.Timeout | undefined;
  let aggTimer: NodeJS.Timeout | undefined;
  let aggSoon: NodeJS.Timeout | undefined;
  let netFlush: NodeJS.Timeout | undefined;
  let goneTimer: NodeJS.Timeout | undefined;
  let closed = false;

  try {
    // ---------------------------------------------------------------- identity
    // The cluster keeps no state: a worker's MQTT password is HMAC(secret, id) with the secret
    // from the root (stable per cluster), and `creds` holds the workers that registered with a
    // valid token since this start (the embedded broker admits only those; a restarted cluster
    // learns them again when they re-register).
    let mqttSecret: string | undefined = config.mqttSecret ?? (config.root ? undefined : randomBytes(32).toString('base64url'));
    const creds = new Map<string, string>();
    const passwordOf = (id: string, secret: string): string => workerPassword(secret, id);
    const proves = (id: string, proof: string | undefined): boolean => {
      if (mqttSecret === undefined || proof === undefined) return false;
      const want = Buffer.from(passwordOf(id, mqttSecret));
      const got = Buffer.from(proof);
      return got.length === want.length && timingSafeEqual(got, want);
    };
    const self = { user: `oak-cluster-${randomBytes(6).toString('hex')}`, password: randomBytes(24).toString('base64url') };
    const brokerAuth = (clientId: string, username: string | undefined, password: Buffer | undefined): BrokerPrincipal | null => {
      if (username === undefined || password === undefined) return null;
      const pw = password.toString('utf8');
      if (username === self.user) {
        const a = Buffer.from(pw);
        const b = Buffer.from(self.password);
        return a.length === b.length && timingSafeEqual(a, b) ? { role: 'admin', name: username } : null;
      }
      // NodeEngine `<id>`, NetManager `<id>-net` (user name its worker's id, or `<id>-net` as on Mosquitto)
      const wid = workerOfClient(clientId, username, (id) => creds.has(id));
      if (wid === null) return null;
      return proves(wid, pw) ? { role: 'worker', workerId: wid } : null;
    };

    // TLS: registration over HTTPS and the embedded broker over TLS with the certificate the
    // root gives in welcome (or an injected one). Both listen at once; until the certificate is
    // there, handshakes fail and workers retry.
    const useTls = config.tls === false ? false : config.tls !== undefined || config.root !== undefined;
    let tlsReady = typeof config.tls === 'object';

    // ---------------------------------------------------------------- broker + bus
    let mqttUrl: string;
    let mqttPort: number;
    let busUser = self;
    let external: { url: string; username?: string; password?: string } | undefined;
    let nats: NatsAuthProvisioner | undefined;
    /** may topics hold "." (false on NATS before 2.10, which closes a connection that publishes one) */
    let natsDots = true;
    if (config.mqttUrl) {
      external = splitBrokerUrl(config.mqttUrl);
      mqttUrl = external.url;
      const u = new URL(external.url);
      mqttPort = u.port === '' ? (u.protocol === 'mqtts:' ? 8883 : 1883) : Number(u.port);
      if (config.natsAuth) {
        // NATS server's MQTT mode: the users file is ours (the cluster's own user first), no dynsec
        if (external.username === undefined || external.password === undefined) {
          throw new Error('with a NATS users file (--nats-users-file), MQTT_URL must carry the cluster\'s NATS user: mqtt://<user>:<password>@host:port');
        }
        busUser = { user: external.username, password: external.password };
        const probeUrl = external.url;
        const probe = async (user: string, password: string): Promise<boolean> => {
          try {
            const b = await connectBus(probeUrl, { clientId: `oak-probe-${randomBytes(6).toString('hex')}`, username: user, password, reconnectPeriodMs: 0, connectTimeoutMs: 3000 });
            await b.close();
            return true;
          } catch (err) {
            if ((err as { code?: unknown }).code === 5 || (err as { code?: unknown }).code === 4) return false;
            throw err;
          }
        };
        nats = await NatsAuthProvisioner.open({ ...config.natsAuth, log, probe }, busUser);
        cleanups.push(async () => nats?.close());
        natsDots = nats.info?.dotsInTopics ?? false;
        if (nats.info === undefined) {
          log.warn('cluster: NATS without its monitoring URL (--nats-monitor-url): its version and JetStream are not checked, reloads are not confirmed (a worker may need a retry to connect), and MQTT topics holding "." are not published (as before NATS 2.10)');
        }
        log.warn('cluster: NATS does not bind MQTT client ids to users: one worker\'s credentials can take over another worker\'s connection by using its client id (no topic of the other becomes readable or writable, but the other is disconnected until it reconnects); Mosquitto and the embedded broker refuse that');
        if (!natsDots) {
          log.warn(`cluster: NATS${nats.info ? ` ${nats.info.version}` : ''} refuses MQTT topics holding "." (before 2.10; a publish there closes the connection): service table updates (jobs/<job>/updates_available; job names hold dots) are not published, NetManagers get tables by their queries only, and worker ids must be letters, digits, "_" and "-"`);
        }
        log.info(`cluster: NATS MQTT${nats.info ? ` ${nats.info.version}` : ''}: worker users in ${config.natsAuth.file}, reload through ${config.natsAuth.pidFile}`);
      } else if (external.username !== undefined && external.password !== undefined) {
        busUser = { user: external.username, password: external.password };
        try {
          await provisionClusterClient(external.url, external.username, external.password, { log });
        } catch (err) {
          log.warn(`cluster: could not give ${external.username} the cluster role on the broker (is its dynamic-security plugin loaded? NATS server's MQTT has none: give --nats-users-file and --nats-pid-file): ${err instanceof Error ? err.message : String(err)}`);
        }
      } else {
        log.warn('cluster: MQTT_URL carries no admin credentials: worker clients and ACLs are not provisioned on that broker (give mqtt://<dynsec admin>:<password>@host:port)');
      }
    } else {
      const b = await startEmbeddedBroker({
        host: config.mqttHost ?? host,
        port: config.mqttPort ?? DEFAULT_PORTS.clusterMqtt,
        auth: brokerAuth,
        log,
        ...(useTls ? { tls: typeof config.tls === 'object' ? { cert: config.tls.cert, key: config.tls.key } : ('later' as const) } : {}),
      });
      broker = b;
      cleanups.push(() => b.close());
      // the cluster's own client dials its own listener (over TLS when it serves TLS)
      mqttUrl = b.url;
      mqttPort = b.port;
    }
    // its own embedded broker: the broker itself (EmbeddedBroker.bus: publishes and subscriptions
    // straight into aedes, no MQTT packets; every report went through TLS and then an in-process
    // MQTT connection before, issue 13), acting as the cluster's admin identity; an external
    // mqtts:// broker is verified the usual way (system CAs)
    const embedded = broker;
    // what a tool in this process needs to dial the listener as the cluster (ownClientOptions)
    const busTls = broker?.tls === true ? { rejectUnauthorized: false } : undefined;
    const connectedBus = embedded !== undefined
      ? embedded.bus({ principal: { role: 'admin', name: self.user }, clientId: self.user, log })
      : await connectBus(mqttUrl, {
        clientId: `oak-cluster-${config.name}-${randomBytes(3).toString('hex')}`,
        ...(external === undefined || external.username !== undefined ? { username: busUser.user, password: busUser.password } : {}),
        log,
        reconnectPeriodMs: 250,
      });
    cleanups.push(() => connectedBus.close());
    let dynsec: Pick<DynsecProvisioner, 'upsertWorker' | 'removeWorker'> | undefined;
    if (nats) {
      dynsec = nats;
      for (const [id, tokenId] of nats.workerTokens()) if (isTopicSafeId(id)) creds.set(id, tokenId);
      if (creds.size > 0) log.info(`cluster: ${creds.size} worker(s) in the NATS users file from before; they are asked to register again when they report`);
    } else if (external?.username !== undefined) {
      try {
        const d = await DynsecProvisioner.attach(connectedBus, { log });
        dynsec = d;
        // the broker remembers the workers a former run of this cluster provisioned: a token
        // revocation reaches them before they register again
        for (const [id, tokenId] of await d.workerTokens()) if (isTopicSafeId(id)) creds.set(id, tokenId);
        if (creds.size > 0) log.info(`cluster: ${creds.size} worker(s) known to the broker from before; they are asked to register again when they report`);
      } catch (err) {
        log.warn('cluster: dynamic-security answers cannot be received', err);
      }
    }

    const refusedTopics = new Set<string>();
    const publish = (topic: string, payload: unknown, retain = false): void => {
      if (!natsDots && /[. ]/.test(topic)) {
        // NATS before 2.10 would close our connection: said at start, dropped here
        const kind = topic.split('/')[0] ?? '';
        if (!refusedTopics.has(kind)) log.warn(`cluster: ${topic.slice(0, 200)} not published: this NATS refuses topics holding "." (the first such ${kind}/ topic; later ones are dropped silently)`);
        refusedTopics.add(kind);
        return;
      }
      connectedBus.publishJson(topic, payload, 1, retain ? { retain: true } : {}).catch((err: unknown) => log.warn(`cluster: publish to ${topic} failed`, err));
    };
    const toRoot = (msg: ClusterToRoot): void => {
      link?.send(msg);
    };
    // fleet upgrades (issue 14): artifacts from the root, for this cluster's workers only
    const version = releaseVersion(CLUSTER_VERSION);
    const artifacts = new ArtifactCache({ send: (m) => link?.send(m) ?? false });
    const passUpgrade = (msg: Extract<RootToCluster, { type: 'worker_upgrade' }>): void => {
      const c = msg.command;
      if (!creds.has(msg.worker_id)) {
        log.warn(`cluster: fleet upgrade for ${msg.worker_id}, which is not registered here: dropped (the root sends it again)`);
        return;
      }
      if (c.action === 'rollback') {
        publish(topics.upgrade(msg.worker_id), c);
        return;
      }
      if (c.sha256 === undefined || c.size === undefined) return;
      artifacts.fetch(c.sha256, c.size).then(
        () => {
          log.info(`fleet upgrade of worker ${msg.worker_id} to ${c.version} (rollout ${c.rollout_id})`);
          publish(topics.upgrade(msg.worker_id), c);
        },
        (err: unknown) => log.warn(`cluster: could not fetch artifact ${c.sha256} from the root: ${err instanceof Error ? err.message : String(err)} (the root sends the command again)`),
      );
    };

    // ---------------------------------------------------------------- effects
    const sendAggregate = (): void => {
      clearTimeout(aggSoon);
      aggSoon = undefined;
      const resources = core.aggregate();
      resources.version = version;
      for (const s of resources.worker_summary) {
        const wn = net.workerNet(s.id);
        if (wn) s.net = wn;
        // versions and fleet-upgrade state: the latest of its registration and its last report
        // (read in place: a merged copy of both per worker and aggregate cost 10,000 objects a second)
        const w = core.workers.get(s.id);
        const info = w?.info as Partial<NodeInformation> | null | undefined;
        const reg = w?.registration as Partial<NodeInformation> | null | undefined;
        // the report's field when it has one (null included), else the registration's
        const version = info?.version !== undefined ? info.version : reg?.version;
        if (version !== undefined) s.version = version;
        const nmVersion = info?.netmanager_version !== undefined ? info.netmanager_version : reg?.netmanager_version;
        if (nmVersion !== undefined) s.netmanager_version = nmVersion;
        const blocker = info?.self_upgrade_blocker !== undefined ? info.self_upgrade_blocker : reg?.self_upgrade_blocker;
        if (blocker !== undefined) s.self_upgrade_blocker = blocker;
        const upgrade = info?.upgrade !== undefined ? info.upgrade : reg?.upgrade;
        if (upgrade !== undefined) s.upgrade = upgrade;
        if (w?.conn) s.conn = w.conn;
        if (w) s.reported_at = w.lastSeen;
      }
      const usage = core.usage();
      toRoot(usage.length > 0 ? { type: 'aggregate', resources, usage } : { type: 'aggregate', resources });
    };
    // an aggregate carries every worker's summary (about 300 bytes each, 3 MB at 10,000 workers):
    // changes are coalesced for 50 ms plus 0.1 ms per worker (1 s at 10,000), so that a fleet
    // registering at once (a cluster restart) does not send the root one every 50 ms
    const aggregateSoon = (): void => {
      if (aggSoon || closed) return;
      aggSoon = setTimeout(sendAggregate, Math.min(config.aggregateIntervalMs ?? 5000, 50 + Math.floor(core.workers.size / 10)));
    };
    const run = (effects: Effect[]): void => {
      for (const e of effects) {
        switch (e.type) {
          case 'deploy':
            log.info(`deploy ${e.command.job_name}.instance.${e.command.instance_number} on worker ${e.worker_id}`);
            publish(topics.deploy(e.worker_id), e.command);
            break;
          case 'delete':
            log.info(`delete ${e.command.job_name}.instance.${e.command.instance_number} on worker ${e.worker_id}`);
            publish(topics.delete(e.worker_id), e.command);
            break;
          case 'status': {
            // where its namespace is, once its NetManager said so
            const n = net.netForStatus(e.message.job_name, e.message.instance_number);
            if (n !== undefined) e.message.net = n;
            // Oakestra's clients read an instance's `publicip`: its worker's public address
            if (e.message.publicip === undefined && e.message.worker_id !== null) {
              const ip = publicAddress(net.workerNet(e.message.worker_id)?.host_ip, registeredFrom.get(e.message.worker_id));
              if (ip !== undefined) e.message.publicip = ip;
            }
            net.statusChanged(e.message.job_name, Date.now());
            toRoot(e.message);
            break;
          }
          case 'aggregate':
            aggregateSoon();
            break;
        }
      }
      scheduleNetFlush();
    };
    // ---------------------------------------------------------------- overlay effects
    const runNet = (effects: NetEffect[]): void => {
      for (const e of effects) {
        switch (e.type) {
          case 'publish':
            publish(e.topic, e.payload, e.retain === true);
            break;
          case 'link':
            toRoot(e.message);
            break;
          case 'aggregate':
            aggregateSoon();
            break;
          case 'log':
            log[e.level](e.message);
            break;
        }
      }
      scheduleNetFlush();
    };
    // table updates and the peer list go out coalesced (NetOptions.coalesceMs)
    function scheduleNetFlush(): void {
      if (netFlush || closed) return;
      const at = net.nextFlushAt();
      if (at === null) return;
      netFlush = setTimeout(() => {
        netFlush = undefined;
        try {
          runNet(net.flush(Date.now()));
        } catch (err) {
          log.error('cluster: overlay flush failed', err);
        }
      }, Math.max(0, at - Date.now()));
    }

    const relay = new LogRelay({
      workerOf: (job, n) => core.workerOf(job, n),
      isAlive: (id) => core.workers.get(id)?.alive === true,
      workerFacts: (id) => {
        const w = core.workers.get(id);
        return w === undefined ? undefined : { name: w.name, alive: w.alive, since: w.diedAt ?? w.goneAt };
      },
      publish,
      toRoot,
      log,
      timeoutMs: config.logsTimeoutMs ?? 10_000,
    });

    // ---------------------------------------------------------------- MQTT
    // Reports for a worker without credentials here change nothing. Behind an external broker a
    // worker stays connected across a cluster restart: it is asked (on its own control topic, at
    // most every 10 s) to register again.
    const askedToRegister = new Map<string, number>();
    /** one warning line per 10 s: after a restart behind an external broker every worker is unknown at once */
    const unknownLog = { at: 0, more: 0 };
    const unknownReport = (id: string, topic: string): void => {
      const now = Date.now();
      const last = askedToRegister.get(id);
      if (last !== undefined && now - last < 10_000) return;
      if (askedToRegister.size >= 10_000) askedToRegister.clear();
      askedToRegister.set(id, now);
      if (now - unknownLog.at >= 10_000) {
        const more = unknownLog.more > 0 ? ` (and ${unknownLog.more} other workers since the last such line)` : '';
        log.warn(`cluster: ${topic.slice(0, 200)} from a worker that is not registered here: dropped, asked to register${more}`);
        unknownLog.at = now;
        unknownLog.more = 0;
      } else {
        unknownLog.more++;
      }
      publish(topics.registerRequest(id), { reason: 'not registered with this cluster' });
    };
    const onMqtt = (kind: 'information' | 'job' | 'resources' | 'logs') => (topic: string, payload: Buffer): void => {
      const t = parseNodeTopic(topic);
      if (!t || !VALID_ID.test(t.nodeId)) return;
      // no credentials here, or credentials but forgotten by the core (dead for long): register again
      if (!creds.has(t.nodeId) || !core.isRegistered(t.nodeId)) {
        unknownReport(t.nodeId, topic);
        return;
      }
      let raw: unknown;
      try {
        raw = decodeJson(payload);
      } catch (err) {
        log.warn(`cluster: ${topic}: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
      const now = Date.now();
      try {
        switch (kind) {
          case 'information':
            run(core.information(t.nodeId, parseNodeInformation(raw), now));
            break;
          case 'job':
            run(core.jobStatus(t.nodeId, parseJobStatus(raw), now));
            break;
          case 'resources':
            core.jobResources(t.nodeId, parseJobResources(raw), now);
            break;
          case 'logs': {
            const rid = /^logs\/([^/]+)$/.exec(t.rest)?.[1];
            if (rid !== undefined) relay.batch(t.nodeId, rid, raw);
            break;
          }
        }
      } catch (err) {
        log.warn(`cluster: ${topic}: dropped: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    await connectedBus.subscribe(topics.all.information, onMqtt('information'));
    await connectedBus.subscribe(topics.all.job, onMqtt('job'));
    await connectedBus.subscribe(topics.all.jobResources, onMqtt('resources'));
    await connectedBus.subscribe(topics.all.logs, onMqtt('logs'));

    // a worker's last will: its connection dropped. Only a registered worker's own client can set
    // it (the broker ACL: a will on nodes/<its id>/gone only); the core checks its nonce.
    const goneTick = (): void => {
      clearTimeout(goneTimer);
      goneTimer = undefined;
      const at = core.nextGoneAt();
      if (at === null || closed) return;
      goneTimer = setTimeout(() => {
        goneTimer = undefined;
        try {
          run(core.tick(Date.now()));
        } catch (err) {
          log.error('cluster: tick failed', err);
        }
        goneTick();
      }, Math.max(0, at - Date.now()) + 1);
    };
    await connectedBus.subscribe(topics.all.gone, (topic, payload) => {
      const t = parseNodeTopic(topic);
      if (!t || t.rest !== 'gone' || !VALID_ID.test(t.nodeId)) return;
      if (!creds.has(t.nodeId) || !core.isRegistered(t.nodeId)) return;
      try {
        const g = parseNodeGone(decodeJson(payload, NODE_GONE_MAX_BYTES));
        if (g.id !== t.nodeId) throw new Error(`it names worker ${JSON.stringify(g.id.slice(0, 200))}`);
        const wasAlive = core.workers.get(t.nodeId)?.alive === true;
        run(core.connectionLost(t.nodeId, g.conn, Date.now()));
        if (wasAlive && core.workers.get(t.nodeId)?.goneAt != null) log.info(`worker ${t.nodeId}: its connection is gone (last will)`);
        goneTick();
      } catch (err) {
        log.warn(`cluster: ${topic.slice(0, 200)}: dropped: ${err instanceof Error ? err.message.slice(0, 500) : String(err)}`);
      }
    });

    // the workers' NetManagers (same identity as their NodeEngine): only registered workers count
    type NetKind = 'subnet' | 'tablequery' | 'deployed' | 'undeployed' | 'interest' | 'rtt';
    const onNet = (kind: NetKind) => (topic: string, payload: Buffer): void => {
      const t = parseNodeTopic(topic);
      if (!t || !VALID_ID.test(t.nodeId)) return;
      if (!creds.has(t.nodeId) || !core.isRegistered(t.nodeId)) {
        unknownReport(t.nodeId, topic);
        return;
      }
      const now = Date.now();
      try {
        const raw = decodeJson(payload, kind === 'rtt' ? RTT_REPORT_MAX_BYTES : NET_MESSAGE_MAX_BYTES);
        switch (kind) {
          case 'subnet':
            runNet(net.subnetRequest(t.nodeId, parseSubnetRequest(raw), now));
            break;
          case 'tablequery': {
            const q = parseTableQueryRequest(raw);
            runNet(net.tableQuery(t.nodeId, q, now));
            break;
          }
          case 'deployed':
            runNet(net.serviceDeployed(t.nodeId, parseServiceDeployed(raw), now));
            break;
          case 'undeployed':
            runNet(net.serviceUndeployed(t.nodeId, parseServiceUndeployed(raw), now));
            break;
          case 'interest':
            runNet(net.interestRemove(t.nodeId, parseInterestRemove(raw).job_name, now));
            break;
          case 'rtt':
            net.rttReport(t.nodeId, parseRttReport(raw));
            break;
        }
      } catch (err) {
        // a malformed query still gets an answer when it carries a usable request id
        if (kind === 'tablequery') {
          const rid = tableQueryId(payload);
          if (rid !== undefined) publish(netTopics.tableQueryResult(t.nodeId), { request_id: rid, error: (err instanceof Error ? err.message : String(err)).slice(0, 1000) });
        }
        log.warn(`cluster: ${topic.slice(0, 200)}: dropped: ${err instanceof Error ? err.message.slice(0, 500) : String(err)}`);
      }
    };
    await connectedBus.subscribe(netTopics.all.subnet, onNet('subnet'));
    await connectedBus.subscribe(netTopics.all.tableQueryRequest, onNet('tablequery'));
    await connectedBus.subscribe(netTopics.all.serviceDeployed, onNet('deployed'));
    await connectedBus.subscribe(netTopics.all.serviceUndeployed, onNet('undeployed'));
    await connectedBus.subscribe(netTopics.all.interestRemove, onNet('interest'));
    await connectedBus.subscribe(netTopics.all.rtt, onNet('rtt'));

    // ---------------------------------------------------------------- HTTP
    const timeouts = httpServerTimeouts(config.requestTimeoutMs);
    const http = (useTls
      ? Fastify({ logger: false, bodyLimit: 1024 * 1024, ...timeouts, https: { ...timeouts.http, ...(typeof config.tls === 'object' ? { cert: config.tls.cert, key: config.tls.key } : {}) } })
      : Fastify({ logger: false, bodyLimit: 1024 * 1024, ...timeouts })) as unknown as FastifyInstance;
    if (useTls) {
      // a failed handshake (no certificate yet, a client that does not trust ours) is the client's problem
      (http.server as unknown as import('node:tls').Server).on('tlsClientError', (_e, sock) => sock.destroy());
    }
    cleanups.push(() => http.close());
    const unavailableLog = { at: 0, more: 0 };
    http.setErrorHandler((err: unknown, _req, reply) => {
      const e = err as { statusCode?: number; code?: string; message?: string };
      const oak =
        err instanceof OakError
          ? err
          : e.statusCode === 413
            ? new OakError('OAK_BODY_TOO_LARGE', `the request body is larger than ${REGISTRATION_BODY_LIMIT} bytes`, { hint: 'a node registration is a small JSON object' })
            : e.statusCode === 415
              ? new OakError('OAK_UNSUPPORTED_MEDIA_TYPE', e.message ?? 'unsupported media type', { hint: 'send content-type: application/json' })
              : e.statusCode !== undefined && e.statusCode < 500
                ? new OakError(e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError ? 'OAK_MALFORMED_JSON' : 'OAK_BAD_REQUEST', e.message ?? 'bad request')
                : new OakError('OAK_INTERNAL', 'internal error');
      if (oak.code === 'OAK_UNAVAILABLE') {
        // "try again" (no root yet, token checks busy): a restarted cluster's whole fleet hears it
        // at once, so one line per 10 s with a count instead of one per request
        const now = Date.now();
        if (now - unavailableLog.at >= 10_000) {
          const more = unavailableLog.more > 0 ? ` (and ${unavailableLog.more} more such answers since the last such line)` : '';
          log.warn(`cluster: answered 503: ${oak.message}${more}`);
          unavailableLog.at = now;
          unavailableLog.more = 0;
        } else {
          unavailableLog.more++;
        }
      } else if (oak.status >= 500) log.error('cluster: request failed', err);
      void reply.code(oak.status).send(oak.toJSON());
    });
    http.setNotFoundHandler((req, reply) => {
      void reply.code(404).send(new OakError('OAK_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0] ?? ''}`).toJSON());
    });
    const answerBase: Omit<NodeRegistrationAnswer, 'id'> = { MQTT_BROKER_PORT: mqttPort, report_interval_ms: reportIntervalMs };
    const publicBroker = config.mqttPublicUrl ?? external?.url;
    if (publicBroker) answerBase.MQTT_BROKER_URL = splitBrokerUrl(publicBroker).url;
    const brokerTls = broker ? broker.tls : (publicBroker ?? '').startsWith('mqtts:');
    const tokenCheck = (): WorkerTokenChecker | undefined => {
      if (config.tokenCheck) return config.tokenCheck;
      const l = link;
      if (!l) return undefined;
      return async (token, workerId): Promise<WorkerTokenResult> => {
        if (!l.connected) return { ok: false, reason: 'the root is unreachable', unavailable: true };
        const r = await l.checkWorkerToken(token, workerId);
        return r.ok ? r : { ok: false, reason: r.reason, ...(r.unavailable === true || !l.connected ? { unavailable: true } : {}) };
      };
    };
    const unavailable = (why: string, hint: string): OakError => new OakError('OAK_UNAVAILABLE', why, { hint });
    // a worker registers once (again after a restart of this cluster): its connection is closed
    // after the answer, not kept alive for the next 72 s (fastify's keepAliveTimeout). A fleet
    // registering at once otherwise held one idle TLS socket per worker, besides its MQTT one
    // (issue 13: RSS at 10,000 workers)
    const closeAfter = (_req: unknown, reply: { header(k: string, v: string): unknown }, done: () => void): void => {
      reply.header('connection', 'close');
      done();
    };
    http.post('/api/node/register', { bodyLimit: REGISTRATION_BODY_LIMIT, onRequest: closeAfter }, async (req, reply) => {
      const body = req.body ?? null;
      assertWithinLimits(body, REGISTRATION_LIMITS); // depth and sizes before anything recurses into it
      if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
        const p = registrationLimitProblem(body as Record<string, unknown>);
        if (p) throw p;
      }
      const reg = parseNodeRegistration(body);
      if (reg.id !== undefined && !isTopicSafeId(reg.id)) {
        throw new OakError('OAK_VALIDATION', 'invalid node registration: id must not contain "/", "+", "#", "$" or spaces', { path: 'id', hint: 'leave id out to get a new one' });
      }
      const token = reg.token === undefined ? undefined : tryParseJoinToken(reg.token);
      if (token === undefined || token.kind !== 'worker') {
        throw new OakError('OAK_JOIN_TOKEN_INVALID', reg.token === undefined ? 'a worker join token is required to register' : 'the token is not a worker join token', { path: 'token', hint: JOIN_HINT });
      }
      const check = tokenCheck();
      if (check === undefined) {
        throw unavailable('this cluster has no root to check worker tokens with, so it accepts no workers', 'start the cluster with SYSTEM_MANAGER_URL and its join token (OAK_JOIN_TOKEN) so that the root can check worker tokens');
      }
      if (mqttSecret === undefined || (useTls && !tlsReady)) {
        throw unavailable('this cluster is not connected to its root yet (no certificate and MQTT key)', 'try again in a few seconds; check the cluster log for the root link');
      }
      // keep the id only for its owner (who proves it with the password it was given)
      // (on NATS an id must also be a plain user name; else the worker gets a new one)
      const id = reg.id !== undefined && proves(reg.id, reg.id_proof) && (!nats || isNatsSafeId(reg.id)) ? reg.id : randomBytes(12).toString('hex');
      let verdict: WorkerTokenResult;
      try {
        verdict = await check(reg.token ?? '', id);
      } catch (err) {
        log.warn('cluster: worker token check failed', err);
        verdict = { ok: false, reason: 'the token check failed', unavailable: true };
      }
      if (!verdict.ok) {
        if (verdict.unavailable === true) throw unavailable(`cannot check the worker token: ${verdict.reason}`, 'the cluster checks tokens with its root; try again when it is connected');
        // its owner came back with a token that is no longer valid: its credentials go
        if (reg.id === id) await revoke([id], 'its token is no longer valid');
        log.warn(`cluster: registration of ${JSON.stringify(reg.node_name.slice(0, 100))} (${req.ip}) refused: ${verdict.reason}`);
        throw new OakError('OAK_JOIN_TOKEN_INVALID', `the worker token was refused: ${verdict.reason}`, { path: 'token', hint: JOIN_HINT });
      }
      const password = passwordOf(id, mqttSecret);
      if (dynsec) {
        try {
          await dynsec.upsertWorker(id, password, verdict.tokenId);
        } catch (err) {
          log.error(`cluster: could not provision worker ${id} on the broker`, err);
          throw unavailable('the MQTT broker did not accept the worker\'s credentials', nats ? 'check the NATS server log (its users file and reload) and the cluster log' : 'check that the broker runs the dynamic-security plugin and that MQTT_URL names its admin');
        }
      }
      creds.set(id, verdict.tokenId);
      askedToRegister.delete(id);
      const known = core.workers.has(id);
      registeredFrom.set(id, req.ip);
      run(core.register(id, reg, Date.now()));
      log.info(`worker ${reg.node_name} (${reg.host}) ${known ? 're-registered' : 'registered'} as ${id} with token ${verdict.tokenId}`);
      const answer: NodeRegistrationAnswer = { id, ...answerBase, mqtt_username: id, mqtt_password: password, mqtt_tls: brokerTls };
      return reply.code(200).send(answer);
    });

    // ---------------------------------------------------------------- revocation
    const revoke = async (ids: string[], why: string): Promise<string[]> => {
      const gone: string[] = [];
      for (const id of new Set(ids)) {
        const had = creds.delete(id);
        const kicked = broker?.disconnect((p) => p.role === 'worker' && p.workerId === id) ?? 0;
        if (dynsec) {
          await dynsec.removeWorker(id).catch((err: unknown) => log.error(`cluster: could not remove worker ${id} from the broker`, err));
        }
        if (had || kicked > 0 || core.workers.has(id)) gone.push(id);
        run(core.removeWorker(id, Date.now(), why));
        runNet(net.workerRemoved(id, Date.now()));
      }
      if (gone.length > 0) log.info(`cluster: credentials of ${gone.length} worker(s) revoked (${why}): ${gone.join(', ')}`);
      return gone;
    };
    const revokeWorkers = (r: { token_id?: string; worker_ids?: string[] }): Promise<string[]> => {
      const ids = [...(r.worker_ids ?? [])];
      if (r.token_id !== undefined) for (const [id, tid] of creds) if (tid === r.token_id) ids.push(id);
      return revoke(ids, r.token_id !== undefined ? `token ${r.token_id} revoked` : 'removed');
    };

    // ---------------------------------------------------------------- certificate and MQTT key from the root
    const applyWelcome = (w: { tls?: { cert: string; ca: string }; mqtt_secret?: string }, keyPem: string | undefined): void => {
      if (config.mqttSecret === undefined && w.mqtt_secret !== undefined) {
        if (mqttSecret !== undefined && mqttSecret !== w.mqtt_secret) log.warn('cluster: the root handed a new MQTT key; workers register again');
        mqttSecret = w.mqtt_secret;
      }
      if (useTls && typeof config.tls !== 'object' && w.tls !== undefined && keyPem !== undefined) {
        try {
          const ctx = { cert: w.tls.cert, key: keyPem };
          (http.server as unknown as import('node:tls').Server).setSecureContext(ctx);
          broker?.setSecureContext(ctx);
          tlsReady = true;
        } catch (err) {
          log.error('cluster: the certificate from the root is unusable', err);
        }
      }
    };
    // worker details are for the operator on this host only
    const loopbackOnly = async (req: { ip: string }): Promise<void> => {
      if (!/^(127\.|::1$|::ffff:127\.)/.test(req.ip)) throw new OakError('OAK_FORBIDDEN', 'this view is served to the cluster host itself only', { hint: 'use the root API (GET /api/clusters) from elsewhere' });
    };
    http.get('/api/nodes', { onRequest: loopbackOnly }, async () => {
      const now = Date.now();
      return [...core.workers.values()].map((w) => ({
        id: w.id,
        name: w.name,
        host: w.registration?.host ?? null,
        alive: w.alive,
        registered_at: w.registeredAt === null ? null : new Date(w.registeredAt).toISOString(),
        last_seen: new Date(w.lastSeen).toISOString(),
        seconds_since_report: Math.round((now - w.lastSeen) / 100) / 10,
        registration: w.registration,
        information: w.info,
        resources: w.resources,
        net: net.workerNet(w.id) ?? null,
        free: w.alive ? core.ledger.apply(core.candidateOf(w)) : null,
        instances: [...core.desired.values()].filter((d) => d.worker_id === w.id).map((d) => ({ name: d.name, status: d.status, status_detail: d.status_detail })),
      }));
    });
    http.get('/api/instances', { onRequest: loopbackOnly }, async () =>
      [...core.desired.values()].map((d) => ({ name: d.name, worker_id: d.worker_id, status: d.status, status_detail: d.status_detail, publicip: d.publicip })),
    );
    // fleet upgrades (issue 14): a registered worker fetches the artifact it was told to install,
    // with its own credentials (HTTP basic: worker id, its MQTT password), over this HTTPS port
    http.get<{ Params: { sha256: string } }>('/api/node/artifact/:sha256', async (req, reply) => {
      const m = /^Basic ([A-Za-z0-9+/=]{1,1024})$/.exec(req.headers.authorization ?? '');
      const [id, pw] = m ? (Buffer.from(m[1] as string, 'base64').toString('utf8').split(/:(.*)/s) as [string, string?]) : ['', undefined];
      if (!creds.has(id) || !proves(id, pw)) throw new OakError('OAK_UNAUTHORIZED', 'a registered worker\'s credentials are required', { hint: 'the NodeEngine sends its worker id and MQTT password' });
      const data = /^[0-9a-f]{64}$/.test(req.params.sha256) ? artifacts.get(req.params.sha256) : undefined;
      if (!data) throw new OakError('OAK_NOT_FOUND', `artifact ${req.params.sha256.slice(0, 64)} is not on this cluster`, { hint: 'it comes with a fleet upgrade command from the root' });
      return reply.code(200).header('content-type', 'application/gzip').send(data);
    });
    http.get('/healthz', async () => ({
      status: 'ok',
      cluster_name: config.name,
      cluster_id: link?.clusterId ?? null,
      root_connected: link?.connected ?? false,
      mqtt_connected: connectedBus.connected,
      workers: [...core.workers.values()].filter((w) => w.alive).length,
      instances: core.desired.size,
    }));
    await http.listen({ host, port: config.port ?? DEFAULT_PORTS.cluster });
    const addr = http.server.address() as AddressInfo;
    const httpUrl = `${useTls ? 'https' : 'http'}://${urlHost(host)}:${addr.port}`;

    // ---------------------------------------------------------------- root link
    if (config.root) {
      const l = new LinkClient({
        address: config.root.address,
        token: config.root.token,
        ...(config.root.connect !== undefined ? { connect: config.root.connect } : {}),
        clusterName: config.name,
        clusterLocation: config.location ?? null,
        version,
        log,
        ...(config.linkSilenceTimeoutMs !== undefined ? { silenceTimeoutMs: config.linkSilenceTimeoutMs } : {}),
        ...(config.linkMaxBackoffMs !== undefined ? { maxBackoffMs: config.linkMaxBackoffMs } : {}),
        handlers: {
          onWelcome: (welcome) => {
            applyWelcome(welcome, l.privateKeyPem);
            sendAggregate();
            runNet(net.linkConnected(welcome.cluster_id, Date.now()));
          },
          onMessage: (msg: RootToCluster) => {
            const now = Date.now();
            switch (msg.type) {
              case 'sync':
                log.info(`sync from the root: ${msg.instances.length} instance(s) desired here`);
                run(core.sync(msg.instances, now));
                sendAggregate();
                runNet(net.synced(now));
                break;
              case 'deploy':
                run(core.deploy(msg.instance, now));
                runNet(net.jobChanged(msg.instance.job_name, now));
                break;
              case 'undeploy':
                net.instanceLeft(msg.job_name, msg.instance_number, core.desired.get(instanceName(msg.job_name, msg.instance_number))?.worker_id ?? null, now);
                run(core.undeploy(msg.job_name, msg.instance_number, now, msg.epoch));
                runNet(net.jobChanged(msg.job_name, now));
                break;
              case 'subnet_result':
                runNet(net.subnetResult(msg, now));
                break;
              case 'table_result':
                runNet(net.tableResult(msg, now));
                break;
              case 'table_update':
                runNet(net.tableUpdate(msg.table, now));
                break;
              case 'peers':
                net.peers(msg.peers, now);
                scheduleNetFlush();
                break;
              case 'logs':
                relay.request(msg);
                break;
              case 'logs_cancel':
                relay.cancel(msg.request_id);
                break;
              case 'worker_upgrade':
                passUpgrade(msg);
                break;
              case 'artifact_chunk':
                artifacts.onChunk(msg);
                break;
              case 'revoke_workers': {
                const r: { token_id?: string; worker_ids?: string[] } = {};
                if (msg.token_id !== undefined) r.token_id = msg.token_id;
                if (msg.worker_ids !== undefined) r.worker_ids = msg.worker_ids.slice(0, 10_000);
                void revokeWorkers(r);
                break;
              }
              default:
                break;
            }
          },
          onDown: () => {
            relay.cancelAll();
            artifacts.linkDown();
            runNet(net.linkLost(Date.now()));
          },
        },
      });
      link = l;
      cleanups.push(() => l.close());
      l.start();
    }

    // ---------------------------------------------------------------- timers
    const tickMs = Math.max(20, Math.min(1000, Math.floor(reportIntervalMs / 4)));
    tickTimer = setInterval(() => {
      try {
        run(core.tick(Date.now()));
        runNet(net.tick(Date.now()));
        relay.check();
      } catch (err) {
        log.error('cluster: tick failed', err);
      }
    }, tickMs);
    aggTimer = setInterval(sendAggregate, config.aggregateIntervalMs ?? 5000);
    cleanups.push(async () => {
      clearInterval(tickTimer);
      clearInterval(aggTimer);
      clearTimeout(aggSoon);
      clearTimeout(netFlush);
      clearTimeout(goneTimer);
    });
    log.info(`cluster ${config.name}: workers register at ${httpUrl}/api/node/register, MQTT ${mqttUrl}${broker ? ' (embedded)' : ''}${config.root ? `, root link ${config.root.address}${config.root.connect !== undefined ? ' (in process)' : ''}` : ' (standalone: no root)'}`);

    let closing: Promise<void> | undefined;
    return {
      registrationUrl: `${httpUrl}/api/node/register`,
      httpUrl,
      port: addr.port,
      mqttUrl,
      mqttPort,
      core,
      net,
      get clusterId() {
        return link?.clusterId ?? null;
      },
      get rootConnected() {
        return link?.connected ?? false;
      },
      sendAggregate,
      tls: useTls,
      credentials: () => new Map(creds),
      ownClientOptions: () => ({
        ...(external === undefined || external.username !== undefined ? { username: busUser.user, password: busUser.password } : {}),
        ...(busTls ? { tls: busTls } : {}),
      }),
      localBrokerStream: embedded === undefined ? undefined : () => embedded.localStream(),
      revokeWorkers,
      close() {
        closing ??= (async () => {
          closed = true;
          await closeAll();
        })();
        return closing;
      },
    };
  } catch (err) {
    closed = true;
    clearInterval(tickTimer);
    clearInterval(aggTimer);
    clearTimeout(netFlush);
    clearTimeout(goneTimer);
    await closeAll();
    throw err;
  }
}

/**
 * An instance's `publicip` (Oakestra's field): its worker's NetManager `NodePublicAddress` when
 * known, else the address the worker registered from (an IPv4-mapped IPv6 address as IPv4).
 */
export function publicAddress(netmanagerHost: string | null | undefined, registeredFrom: string | undefined): string | undefined {
  if (netmanagerHost !== null && netmanagerHost !== undefined && netmanagerHost !== '') return netmanagerHost;
  if (registeredFrom === undefined || registeredFrom === '') return undefined;
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(registeredFrom);
  return m?.[1] ?? registeredFrom;
}
