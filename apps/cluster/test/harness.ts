/**
 * Test doubles that speak the real protocols: a fake root (gRPC link server) and fake workers
 * (HTTP registration + MQTT, behaving like a NodeEngine).
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { connectBus } from '@oak/bus';
import type { Bus } from '@oak/bus';
import { LINK_CONNECT_METHOD, formatJoinToken, instanceName, parseClusterToRoot, topics, tryParseJoinToken } from '@oak/contracts';
import { CLUSTER_SERVICE_NAME, caFingerprint, createCa, fetchPinnedCa, issueIdentity, pinnedTlsOptions, type Ca } from '@oak/trust';
import type { ClusterToRoot, DeployCommand, DeleteCommand, GpuDevice, InstanceState, LogRequest, NodeRegistrationAnswer, RootToCluster } from '@oak/contracts';
import { createTestJoin, postJson } from '@oak/testkit';
import type { TestJoin } from '@oak/testkit';
import { information, registration } from './fixtures.ts';

/** one CA, cluster certificate and token registry for every test in this process (see ClusterConfig.tokenCheck/tls) */
export const join: TestJoin = await createTestJoin();

/** what a cluster under test needs to accept workers without a root */
export function joinConfig(): { tls: TestJoin['clusterTls']; mqttSecret: string; tokenCheck: TestJoin['tokenCheck'] } {
  return { tls: join.clusterTls, mqttSecret: join.mqttSecret, tokenCheck: join.tokenCheck };
}

// ------------------------------------------------------------------------------------ fake root

export interface FakeRoot {
  address: string;
  port: number;
  /** the cluster join token this root accepts (its CA's fingerprint inside) */
  token: string;
  ca: Ca;
  received: ClusterToRoot[];
  connected: boolean;
  hellos: number;
  send(msg: RootToCluster): void;
  /** called for every message from the cluster (after it is recorded); answer with send() */
  onMessage(fn: (msg: ClusterToRoot) => void): void;
  statuses(job?: string, n?: number): Extract<ClusterToRoot, { type: 'instance_status' }>[];
  lastAggregate(): Extract<ClusterToRoot, { type: 'aggregate' }>['resources'] | undefined;
  close(): Promise<void>;
}

/** A stand-in root on TLS (a CA made here, SAN oak-root) that accepts one join token. */
export async function startFakeRoot(port = 0): Promise<FakeRoot> {
  const ca = await createCa({ commonName: 'fake root CA' });
  const token = formatJoinToken({ kind: 'cluster', id: 'fakeroot', secret: randomBytes(24).toString('base64url'), caHash: caFingerprint(ca.certPem) });
  const id = await issueIdentity(ca, { commonName: 'oak-root', dnsNames: ['oak-root'] });
  const server = new grpc.Server();
  let current: grpc.ServerDuplexStream<unknown, RootToCluster> | undefined;
  const state = { received: [] as ClusterToRoot[], hellos: 0 };
  const timers = new Set<NodeJS.Timeout>();
  const listeners: ((msg: ClusterToRoot) => void)[] = [];
  server.addService(
    { Connect: LINK_CONNECT_METHOD },
    {
      Connect: (call: grpc.ServerDuplexStream<unknown, RootToCluster>) => {
        let ping: NodeJS.Timeout | undefined;
        call.on('data', (raw: unknown) => {
          let msg: ClusterToRoot;
          try {
            msg = parseClusterToRoot(raw);
          } catch {
            return;
          }
          state.received.push(msg);
          if (msg.type !== 'hello') for (const fn of listeners) fn(msg);
          if (msg.type === 'hello') {
            state.hellos++;
            if (msg.token !== token) {
              call.write({ type: 'reject', reason: 'bad token' });
              call.end();
              return;
            }
            current = call;
            call.write({ type: 'welcome', cluster_id: `cid-${msg.cluster_name}` });
            ping = setInterval(() => call.write({ type: 'ping', t: Date.now() }), 200);
            timers.add(ping);
          }
        });
        const done = (): void => {
          clearInterval(ping);
          if (current === call) current = undefined;
        };
        call.on('end', () => { done(); call.end(); });
        call.on('error', done);
        call.on('cancelled', done);
      },
    },
  );
  const creds = grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(id.chainPem), private_key: Buffer.from(id.keyPem) }], false);
  const bound = await new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p))));
  return {
    address: `127.0.0.1:${bound}`,
    port: bound,
    token,
    ca,
    get received() { return state.received; },
    get connected() { return current !== undefined; },
    get hellos() { return state.hellos; },
    send(msg) {
      if (!current) throw new Error('no cluster connected');
      current.write(msg);
    },
    onMessage(fn) {
      listeners.push(fn);
    },
    statuses(job, n) {
      return state.received.flatMap((m) => (m.type === 'instance_status' && (job === undefined || m.job_name === job) && (n === undefined || m.instance_number === n) ? [m] : []));
    },
    lastAggregate() {
      for (let i = state.received.length - 1; i >= 0; i--) {
        const m = state.received[i];
        if (m?.type === 'aggregate') return m.resources;
      }
      return undefined;
    },
    async close() {
      for (const t of timers) clearInterval(t);
      server.forceShutdown();
    },
  };
}

// ---------------------------------------------------------------------------------- fake worker

export interface FakeWorkerOptions {
  cores?: number;
  memory?: number;
  reportIntervalMs?: number;
  /** reach RUNNING after a deploy (default true) */
  run?: boolean;
  /** lines served to a log request */
  logLines?: string[];
  id?: string;
  /** the worker join token (default: a fresh one from `join`) */
  token?: string;
  /** proof for `id` (the password the cluster gave for it) */
  idProof?: string;
  /** like a NodeEngine (issue 9): this connection nonce in the registration and reports, and a last will on nodes/<id>/gone */
  conn?: string;
  /** dial the broker here instead of the URL of the registration answer (a proxy in between) */
  mqttUrl?: string;
  /** addon labels sent as supported_addons (NodeEngine --addons) */
  addons?: string[];
  /** NVIDIA GPUs it registers and reports */
  gpus?: GpuDevice[];
}

export interface FakeWorker {
  id: string;
  name: string;
  /** the join token it registered with */
  token: string;
  answer: NodeRegistrationAnswer;
  deploys: DeployCommand[];
  deletes: DeleteCommand[];
  logRequests: LogRequest[];
  logCancels: string[];
  running: Set<string>;
  bus: Bus;
  /** stop reporting (the worker looks dead) */
  silence(): void;
  /** publish one report now */
  report(): Promise<void>;
  publishStatus(job: string, n: number, status: InstanceState, detail?: string): Promise<void>;
  close(): Promise<void>;
}

export async function startFakeWorker(registrationUrl: string, name: string, opts: FakeWorkerOptions = {}): Promise<FakeWorker> {
  const cores = opts.cores ?? 4;
  const memory = opts.memory ?? 4096;
  const body = {
    ...registration(name, cores, memory),
    token: opts.token ?? join.workerToken(),
    ...(opts.id !== undefined ? { id: opts.id } : {}),
    ...(opts.idProof !== undefined ? { id_proof: opts.idProof } : {}),
    ...(opts.conn !== undefined ? { conn: opts.conn } : {}),
    ...(opts.addons !== undefined ? { supported_addons: opts.addons } : {}),
    ...(opts.gpus !== undefined ? { gpus: opts.gpus.length, gpu_devices: opts.gpus } : {}),
  };
  // a token of another CA (a real root's): pin that CA on first contact, as a NodeEngine does
  // a cluster that just started waits for its certificate from the root (503 or no TLS yet): retry a while
  const parsed = tryParseJoinToken(body.token);
  const u = new URL(registrationUrl);
  let tls = join.clientTls();
  let res: { status: number; json: Record<string, unknown> } | undefined;
  for (let attempt = 0, until = Date.now() + 15_000; ; attempt++) {
    try {
      if (parsed !== undefined && parsed.caHash !== join.caHash) tls = pinnedTlsOptions(await fetchPinnedCa(u.hostname, Number(u.port), parsed.caHash, { timeoutMs: 2000 }), CLUSTER_SERVICE_NAME);
      res = await postJson(registrationUrl, body, tls);
      if (res.status !== 503) break;
    } catch (err) {
      if (Date.now() > until) throw err;
    }
    if (Date.now() > until) break;
    await new Promise((r) => setTimeout(r, Math.min(500, 50 * 2 ** attempt)));
  }
  if (res?.status !== 200) throw new Error(`registration failed: ${res?.status ?? '?'} ${JSON.stringify(res?.json)}`);
  const answer = res.json as unknown as NodeRegistrationAnswer;
  const id = answer.id;
  const url = opts.mqttUrl ?? answer.MQTT_BROKER_URL ?? `${answer.mqtt_tls === true ? 'mqtts' : 'mqtt'}://${u.host.replace(/:\d+$/, '')}:${answer.MQTT_BROKER_PORT}`;
  // like a NodeEngine: a refused MQTT connect (the cluster restarted) or a register request means register again
  let registering: Promise<void> | undefined;
  const reRegister = (): void => {
    registering ??= (async () => {
      try {
        const r = await postJson(registrationUrl, { ...body, id, id_proof: answer.mqtt_password }, tls);
        const a = r.json as unknown as NodeRegistrationAnswer;
        if (r.status === 200 && a.id === id && a.mqtt_password !== undefined) bus.setCredentials(id, a.mqtt_password);
      } catch {
        // the next refusal tries again
      } finally {
        registering = undefined;
      }
    })();
  };
  const bus = await connectBus(url, {
    clientId: id,
    ...(answer.mqtt_username !== undefined && answer.mqtt_password !== undefined ? { username: answer.mqtt_username, password: answer.mqtt_password } : {}),
    ...(url.startsWith('mqtts:') ? { tls } : {}),
    reconnectPeriodMs: 200,
    onRefused: () => reRegister(),
    ...(opts.conn !== undefined ? { will: { topic: topics.gone(id), payload: JSON.stringify({ id, conn: opts.conn }), qos: 1 as const } } : {}),
  });
  await bus.subscribe(topics.registerRequest(id), () => reRegister());
  const running = new Set<string>();
  const deploys: DeployCommand[] = [];
  const deletes: DeleteCommand[] = [];
  const logRequests: LogRequest[] = [];
  const logCancels: string[] = [];
  const publishStatus = (job: string, n: number, status: InstanceState, detail = ''): Promise<void> =>
    bus.publishJson(topics.job(id), { job_name: job, instance_number: n, status, status_detail: detail, publicip: '127.0.0.1' });
  const report = (): Promise<void> => bus.publishJson(topics.information(id), { ...information([...running].sort(), cores, memory), ...(opts.conn !== undefined ? { conn: opts.conn } : {}), ...(opts.gpus !== undefined ? { gpus: opts.gpus.length, gpu_devices: opts.gpus } : {}) });
  await bus.subscribe(topics.deploy(id), (_t, p) => {
    const cmd = JSON.parse(p.toString()) as DeployCommand;
    deploys.push(cmd);
    const n = instanceName(cmd.job_name, cmd.instance_number);
    const fresh = !running.has(n);
    running.add(n);
    if (fresh) {
      void publishStatus(cmd.job_name, cmd.instance_number, 'CREATING').then(() => (opts.run === false ? undefined : publishStatus(cmd.job_name, cmd.instance_number, 'RUNNING')));
    } else {
      void publishStatus(cmd.job_name, cmd.instance_number, 'RUNNING');
    }
  });
  await bus.subscribe(topics.delete(id), (_t, p) => {
    const cmd = JSON.parse(p.toString()) as DeleteCommand;
    deletes.push(cmd);
    if (running.delete(instanceName(cmd.job_name, cmd.instance_number))) void publishStatus(cmd.job_name, cmd.instance_number, 'UNDEPLOYED');
  });
  await bus.subscribe(topics.logsRequest(id), (_t, p) => {
    const req = JSON.parse(p.toString()) as LogRequest;
    logRequests.push(req);
    const lines = opts.logLines ?? [];
    const topic = topics.logsAnswer(id, req.request_id);
    void (async () => {
      await bus.publishJson(topic, { lines: lines.slice(0, 2) });
      await bus.publishJson(topic, { lines: lines.slice(2), end: !req.follow });
    })();
  });
  await bus.subscribe(topics.logsCancel(id), (_t, p) => {
    logCancels.push((JSON.parse(p.toString()) as { request_id: string }).request_id);
  });
  const timer = setInterval(() => { void report().catch(() => undefined); }, opts.reportIntervalMs ?? answer.report_interval_ms);
  await report();
  return {
    id,
    name,
    token: body.token,
    answer,
    deploys,
    deletes,
    logRequests,
    logCancels,
    running,
    bus,
    silence: () => clearInterval(timer),
    report,
    publishStatus,
    async close() {
      clearInterval(timer);
      await bus.close();
    },
  };
}
