/**
 * startCluster: the cluster orchestrator as an embeddable service (the oak-cluster binary, oakd's
 * 1-DOC and the tests all use it). Wiring only: HTTP registration (fastify), MQTT (the bus, with
 * an embedded aedes broker unless MQTT_URL names one), the root link (gRPC, dialling out), and
 * timers; every decision is made by ClusterCore.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { connectBus, consoleLogger, startEmbeddedBroker } from '@oak/bus';
import type { EmbeddedBroker, Logger } from '@oak/bus';
import {
  DEFAULT_PORTS,
  OakError,
  REGISTRATION_LIMITS,
  assertWithinLimits,
  decodeJson,
  httpServerTimeouts,
  parseJobResources,
  parseJobStatus,
  parseNodeInformation,
  parseNodeRegistration,
  parseNodeTopic,
  topics,
} from '@oak/contracts';
import type { ClusterToRoot, NodeRegistrationAnswer, RootToCluster } from '@oak/contracts';
import { parseGeoPoint } from '@oak/scheduler';
import { CLUSTER_VERSION } from './config.ts';
import type { ClusterConfig } from './config.ts';
import { ClusterCore } from './core.ts';
import type { Effect } from './core.ts';
import { LinkClient } from './link-client.ts';
import { LogRelay } from './logs.ts';

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
  /** our id at the root once the link said welcome */
  readonly clusterId: string | null;
  readonly rootConnected: boolean;
  /** sends the aggregate to the root now */
  sendAggregate(): void;
  close(): Promise<void>;
}

const VALID_ID = /^[^/+#\s]{1,200}$/;
/** A registration is a few hundred bytes; larger bodies get 413. */
export const REGISTRATION_BODY_LIMIT = 64 * 1024;

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
  });
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
  let closed = false;

  try {
    // ---------------------------------------------------------------- broker + bus
    let mqttUrl: string;
    let mqttPort: number;
    if (config.mqttUrl) {
      mqttUrl = config.mqttUrl;
      const u = new URL(config.mqttUrl);
      mqttPort = u.port === '' ? 1883 : Number(u.port);
    } else {
      const b = await startEmbeddedBroker({ host: config.mqttHost ?? host, port: config.mqttPort ?? DEFAULT_PORTS.clusterMqtt });
      broker = b;
      cleanups.push(() => b.close());
      mqttUrl = b.url;
      mqttPort = b.port;
    }
    const connectedBus = await connectBus(mqttUrl, { clientId: `oak-cluster-${config.name}-${randomBytes(3).toString('hex')}`, log });
    cleanups.push(() => connectedBus.close());

    const publish = (topic: string, payload: unknown): void => {
      connectedBus.publishJson(topic, payload, 1).catch((err: unknown) => log.warn(`cluster: publish to ${topic} failed`, err));
    };
    const toRoot = (msg: ClusterToRoot): void => {
      link?.send(msg);
    };

    // ---------------------------------------------------------------- effects
    const sendAggregate = (): void => {
      clearTimeout(aggSoon);
      aggSoon = undefined;
      toRoot({ type: 'aggregate', resources: core.aggregate() });
    };
    const aggregateSoon = (): void => {
      if (aggSoon || closed) return;
      aggSoon = setTimeout(sendAggregate, 50);
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
          case 'status':
            toRoot(e.message);
            break;
          case 'aggregate':
            aggregateSoon();
            break;
        }
      }
    };

    const relay = new LogRelay({
      workerOf: (job, n) => core.workerOf(job, n),
      isAlive: (id) => core.workers.get(id)?.alive === true,
      publish,
      toRoot,
      log,
      timeoutMs: config.logsTimeoutMs ?? 10_000,
    });

    // ---------------------------------------------------------------- MQTT
    const onMqtt = (kind: 'information' | 'job' | 'resources' | 'logs') => (topic: string, payload: Buffer): void => {
      const t = parseNodeTopic(topic);
      if (!t || !VALID_ID.test(t.nodeId)) return;
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

    // ---------------------------------------------------------------- HTTP
    const http = Fastify({ logger: false, bodyLimit: REGISTRATION_BODY_LIMIT, ...httpServerTimeouts(config.requestTimeoutMs) });
    cleanups.push(() => http.close());
    http.setErrorHandler((err: unknown, _req, reply) => {
      const e = err as { statusCode?: number; code?: string; message?: string };
      const oak =
        err instanceof OakError
          ? err
          : e.statusCode !== undefined && e.statusCode < 500
            ? new OakError(
                e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'OAK_BODY_TOO_LARGE' : e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError ? 'OAK_MALFORMED_JSON' : 'OAK_BAD_REQUEST',
                e.message ?? 'bad request',
              )
            : new OakError('OAK_INTERNAL', 'internal error');
      if (oak.status >= 500) log.error('cluster: request failed', err);
      void reply.code(oak.status).send(oak.toJSON());
    });
    http.setNotFoundHandler((req, reply) => {
      void reply.code(404).send(new OakError('OAK_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0] ?? ''}`).toJSON());
    });
    const answerBase: Omit<NodeRegistrationAnswer, 'id'> = { MQTT_BROKER_PORT: mqttPort, report_interval_ms: reportIntervalMs };
    const publicBroker = config.mqttPublicUrl ?? config.mqttUrl;
    if (publicBroker) answerBase.MQTT_BROKER_URL = publicBroker;
    http.post('/api/node/register', async (req, reply) => {
      assertWithinLimits(req.body ?? null, REGISTRATION_LIMITS); // depth and sizes before anything recurses into it
      const reg = parseNodeRegistration(req.body ?? null);
      if (reg.id !== undefined && !VALID_ID.test(reg.id)) {
        throw new OakError('OAK_VALIDATION', 'invalid node registration: id must not contain "/", "+", "#" or spaces', { path: 'id', hint: 'leave id out to get a new one' });
      }
      const id = reg.id ?? randomBytes(12).toString('hex');
      const known = core.workers.has(id);
      run(core.register(id, reg, Date.now()));
      log.info(`worker ${reg.node_name} (${reg.host}) ${known ? 're-registered' : 'registered'} as ${id}`);
      const answer: NodeRegistrationAnswer = { id, ...answerBase };
      return reply.code(200).send(answer);
    });
    http.get('/api/nodes', async () => {
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
        free: w.alive ? core.ledger.apply(core.candidateOf(w)) : null,
        instances: [...core.desired.values()].filter((d) => d.worker_id === w.id).map((d) => ({ name: d.name, status: d.status, status_detail: d.status_detail })),
      }));
    });
    http.get('/api/instances', async () =>
      [...core.desired.values()].map((d) => ({ name: d.name, worker_id: d.worker_id, status: d.status, status_detail: d.status_detail, publicip: d.publicip })),
    );
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
    const httpUrl = `http://${urlHost(host)}:${addr.port}`;

    // ---------------------------------------------------------------- root link
    if (config.root) {
      const l = new LinkClient({
        address: config.root.address,
        token: config.root.token,
        clusterName: config.name,
        clusterLocation: config.location ?? null,
        version: CLUSTER_VERSION,
        log,
        ...(config.linkSilenceTimeoutMs !== undefined ? { silenceTimeoutMs: config.linkSilenceTimeoutMs } : {}),
        ...(config.linkMaxBackoffMs !== undefined ? { maxBackoffMs: config.linkMaxBackoffMs } : {}),
        handlers: {
          onWelcome: () => sendAggregate(),
          onMessage: (msg: RootToCluster) => {
            const now = Date.now();
            switch (msg.type) {
              case 'sync':
                log.info(`sync from the root: ${msg.instances.length} instance(s) desired here`);
                run(core.sync(msg.instances, now));
                sendAggregate();
                break;
              case 'deploy':
                run(core.deploy(msg.instance, now));
                break;
              case 'undeploy':
                run(core.undeploy(msg.job_name, msg.instance_number));
                break;
              case 'logs':
                relay.request(msg);
                break;
              case 'logs_cancel':
                relay.cancel(msg.request_id);
                break;
              default:
                break;
            }
          },
          onDown: () => relay.cancelAll(),
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
    });
    log.info(`cluster ${config.name}: workers register at ${httpUrl}/api/node/register, MQTT ${mqttUrl}${broker ? ' (embedded)' : ''}${config.root ? `, root link ${config.root.address}` : ' (standalone: no root)'}`);

    let closing: Promise<void> | undefined;
    return {
      registrationUrl: `${httpUrl}/api/node/register`,
      httpUrl,
      port: addr.port,
      mqttUrl,
      mqttPort,
      core,
      get clusterId() {
        return link?.clusterId ?? null;
      },
      get rootConnected() {
        return link?.connected ?? false;
      },
      sendAggregate,
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
    await closeAll();
    throw err;
  }
}
