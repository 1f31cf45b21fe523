/**
 * The root's side of the link for the `fleet` benchmark, in the bench process: a gRPC link server
 * on TLS (oak-root, issued by the test CA) that does what a root does for one cluster and nothing
 * else: checks the cluster join token, answers `welcome` with a certificate for the cluster's key
 * (SAN oak-cluster, the same CA the workers' tokens pin) and the MQTT secret, answers worker
 * `token_check`s against the test join tokens, sends deploys and keeps what the cluster reports.
 * The shipped cluster bundle talks to it exactly as to a real root.
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { LINK_CONNECT_METHOD, formatJoinToken, parseClusterToRoot } from '@oak/contracts';
import type { ClusterResources, ClusterToRoot, InstanceAssignment, RootToCluster } from '@oak/contracts';
import { CLUSTER_SERVICE_NAME, issueCert, issueIdentity } from '@oak/trust';
import type { TestJoin } from '@oak/testkit';

export type StatusMessage = Extract<ClusterToRoot, { type: 'instance_status' }>;

export interface LinkRoot {
  port: number;
  /** the cluster join token it accepts */
  token: string;
  readonly connected: boolean;
  readonly welcomes: number;
  /** the last aggregate and when it came (its worker count only: `resources.workers`) */
  readonly aggregate: { at: number; resources: ClusterResources } | undefined;
  send(msg: RootToCluster): void;
  /** resolves with the first instance_status of `job` that `match` accepts (checked from now on) */
  waitStatus(job: string, match: (m: StatusMessage) => boolean, timeoutMs: number): Promise<StatusMessage & { at: number }>;
  close(): Promise<void>;
}

export async function startLinkRoot(join: TestJoin): Promise<LinkRoot> {
  const token = formatJoinToken({ kind: 'cluster', id: 'fleetrt1', secret: randomBytes(24).toString('base64url'), caHash: join.caHash });
  const id = await issueIdentity(join.ca, { commonName: 'oak-root', dnsNames: ['oak-root'] });
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  const state = { current: undefined as grpc.ServerDuplexStream<unknown, RootToCluster> | undefined, welcomes: 0, aggregate: undefined as LinkRoot['aggregate'] };
  const waiters = new Set<{ job: string; match: (m: StatusMessage) => boolean; resolve: (m: StatusMessage & { at: number }) => void }>();
  const timers = new Set<NodeJS.Timeout>();
  const desired = new Map<string, InstanceAssignment>();
  server.addService({ Connect: LINK_CONNECT_METHOD }, {
    Connect: (call: grpc.ServerDuplexStream<unknown, RootToCluster>) => {
      let ping: NodeJS.Timeout | undefined;
      call.on('data', (raw: unknown) => {
        const at = Date.now();
        // an aggregate of 10,000 workers is megabytes: this stand-in reads the count only, so that
        // its own work does not hold up token checks and pings (a real root validates it all)
        const r = raw as { type?: unknown; resources?: { workers?: unknown } };
        if (r.type === 'aggregate') {
          state.aggregate = { at, resources: { workers: Number(r.resources?.workers ?? 0) } as ClusterResources };
          return;
        }
        let msg: ClusterToRoot;
        try {
          msg = parseClusterToRoot(raw);
        } catch {
          return;
        }
        switch (msg.type) {
          case 'hello': {
            if (msg.token !== token || msg.public_key === undefined) {
              call.write({ type: 'reject', reason: 'bad token' });
              call.end();
              return;
            }
            const key = msg.public_key;
            void issueCert(join.ca, key, { commonName: msg.cluster_name, dnsNames: [CLUSTER_SERVICE_NAME] }).then((cert) => {
              state.current = call;
              state.welcomes++;
              call.write({ type: 'welcome', cluster_id: `cid-${msg.cluster_name}`, tls: { cert: cert + join.ca.certPem, ca: join.ca.certPem }, mqtt_secret: join.mqttSecret });
              // the desired set, as a root sends it after every welcome
              call.write({ type: 'sync', instances: [...desired.values()] });
              ping = setInterval(() => call.write({ type: 'ping', t: Date.now() }), 1000);
              timers.add(ping);
            });
            return;
          }
          case 'token_check':
            void join.tokenCheck(msg.token, msg.worker_id ?? '').then((r) => {
              call.write(r.ok ? { type: 'token_result', request_id: msg.request_id, ok: true, token_id: r.tokenId } : { type: 'token_result', request_id: msg.request_id, ok: false, reason: r.reason });
            });
            return;
          case 'instance_status':
            for (const w of waiters) {
              if (w.job === msg.job_name && w.match(msg)) {
                waiters.delete(w);
                w.resolve({ ...msg, at });
              }
            }
            return;
          default:
        }
      });
      const done = (): void => {
        clearInterval(ping);
        if (state.current === call) state.current = undefined;
      };
      call.on('end', () => { done(); call.end(); });
      call.on('error', done);
      call.on('cancelled', done);
    },
  });
  const creds = grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(id.chainPem), private_key: Buffer.from(id.keyPem) }], false);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));
  return {
    port,
    token,
    get connected() { return state.current !== undefined; },
    get welcomes() { return state.welcomes; },
    get aggregate() { return state.aggregate; },
    send(msg) {
      if (!state.current) throw new Error('no cluster connected');
      if (msg.type === 'deploy') desired.set(msg.instance.job_name, msg.instance);
      state.current.write(msg);
    },
    waitStatus(job, match, timeoutMs) {
      return new Promise((resolve, reject) => {
        const w = { job, match, resolve: (m: StatusMessage & { at: number }) => { clearTimeout(t); resolve(m); } };
        const t = setTimeout(() => { waiters.delete(w); reject(new Error(`no matching status of ${job} within ${timeoutMs} ms`)); }, timeoutMs);
        waiters.add(w);
      });
    },
    async close() {
      for (const t of timers) clearInterval(t);
      server.forceShutdown();
    },
  };
}

/** a small service instance for a deploy (the simulated workers have room for many) */
export function fleetAssignment(job: string, workerId?: string): InstanceAssignment {
  return {
    microserviceID: `svc-${job}`,
    job_name: job,
    instance_number: 0,
    service: { microservice_name: 'web', microservice_namespace: 'fleet', virtualization: 'container', code: 'docker.io/library/nginx:latest', vcpus: 0.1, memory: 16 },
    ...(workerId !== undefined ? { worker_id: workerId } : {}),
  };
}
