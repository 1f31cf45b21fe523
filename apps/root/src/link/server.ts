/**
 * The root's end of the cluster link (SPEC §6): clusters dial in on port 50052 over TLS (a
 * certificate of the root CA, SAN `oak-root`) and keep one gRPC bidirectional stream each. The
 * first message must be `hello` with a cluster join token (docs/security.md): valid, not revoked
 * or expired, and bound to the cluster's name (the first use binds an unbound token). The root
 * answers `welcome {cluster_id, tls, mqtt_secret}` (the cluster row is found or created by name
 * and set ACTIVE) or `reject` and closes; a refused cluster changes nothing in the store. Workers'
 * join tokens are checked here too (`token_check` -> `token_result`).
 *
 * Unauthenticated streams are bounded: at most MAX_PENDING_STREAMS waiting for their hello at
 * once, a hello within `helloTimeoutMs`, a first message of at most MAX_HELLO_BYTES, and no
 * message larger than LINK_MAX_RECEIVE_BYTES on any stream (gRPC refuses it from its length
 * prefix, before reading it). The root pings every second; a cluster that stays silent for
 * `pingTimeoutMs` or whose stream ends is set INACTIVE at once. What arrives is validated; the
 * placement side (control.ts) listens through LinkListener.
 *
 * A cluster in the root's own process (oakd, the 1-DOC) connects through `connectInProcess()`
 * instead: an in-memory stream (inproc.ts) handled by the same session code as a gRPC stream, with
 * the same hello, token check, decoders and limits; only TLS and HTTP/2 are left out.
 */
import { artifactChunk } from '../fleet/shell.ts';
import { createHash, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { parseClusterToRoot } from '@oak/contracts';
import type { ClusterResources, ClusterToRoot, RootToCluster } from '@oak/contracts';
import type { ClusterRow, Store } from '@oak/store';
import { CLUSTER_SERVICE_NAME, checkPublicKeyPem, issueCert } from '@oak/trust';
import type { EventHub } from '../events.ts';
import { usageIntake } from '../usage.ts';
import { checkJoinToken, clusterMqttSecret, tokenState, type RootTrust } from '../trust.ts';
import { LINK_MAX_RECEIVE_BYTES, LINK_SERVER_OPTIONS, linkHosts, rootLinkCredentials, silentLinkLog, sizedDecoder, sizedLinkDefinition } from './codec.ts';
import { inProcessLinkPair, refusedLinkStream } from './inproc.ts';
import type { InProcessClusterEnd, InProcessDirection } from './inproc.ts';
import type { LinkLog } from './codec.ts';

/** streams that have not said hello yet, at once */
export const MAX_PENDING_STREAMS = 32;
/** the first message of a stream (hello) */
export const MAX_HELLO_BYTES = 16 * 1024;
/** validity of the certificate a cluster gets in welcome (it gets a new one at every connect) */
export const CLUSTER_CERT_DAYS = 365;

type HelloMessage = Extract<ClusterToRoot, { type: 'hello' }>;
type TokenCheckMessage = Extract<ClusterToRoot, { type: 'token_check' }>;

export const DEFAULT_LINK_PORT = 50052;

export interface LinkServerOptions {
  /** default 0.0.0.0 */
  host?: string;
  /** default 50052; 0 picks a free port */
  port?: number;
  store: Store;
  events: EventHub;
  /** the root CA (certificates for the link and for clusters), the MQTT key */
  trust: RootTrust;
  /** how often the root pings each cluster (default 1000 ms) */
  pingIntervalMs?: number;
  /** a cluster silent this long is dropped and marked INACTIVE (default 3 ping intervals) */
  pingTimeoutMs?: number;
  /** a stream must say hello within this time (default 10 s) */
  helloTimeoutMs?: number;
  log?: LinkLog;
}

export interface LinkListener {
  connected?(cluster: ClusterRow): void;
  disconnected?(cluster: ClusterRow): void;
  /** after the aggregate was stored */
  aggregate?(cluster: ClusterRow, resources: ClusterResources): void;
  /** instance_status, logs_data, logs_end */
  message?(clusterId: string, msg: ClusterToRoot): void;
}

export interface LinkServer {
  readonly port: number;
  /** host:port the clusters dial */
  readonly address: string;
  /** SHA-256 of the root CA the link's certificate chains to (what join tokens carry) */
  readonly caHash: string;
  isConnected(clusterId: string): boolean;
  connectedClusters(): string[];
  /** last measured ping round trip, ms */
  rttMs(clusterId: string): number | undefined;
  /** false when the cluster is not connected (the message is dropped) */
  send(clusterId: string, msg: RootToCluster): boolean;
  /** the listener (one: the control plane) */
  setListener(l: LinkListener): void;
  /** sends revoke_workers for this token to every connected cluster; how many were told */
  revokeWorkers(tokenId: string): number;
  /** disconnects the clusters connected with this (revoked) cluster token; how many */
  dropClustersOf(tokenId: string): number;
  close(): Promise<void>;
}

/** The link server startLinkServer starts: a LinkServer that clusters in this process can also join without the network. */
export interface RootLinkServer extends LinkServer {
  /**
   * A link stream to this root inside this process, for a LinkClient (`connect`): it says hello
   * with its join token like any cluster and is handled like a gRPC stream. `toCluster` is the
   * cluster's side of the copy (its decoder and the largest message it reads). After close()
   * the stream fails at once, as a dial to a closed port.
   */
  connectInProcess(toCluster: InProcessDirection): InProcessClusterEnd;
}

/** What the session code uses of a stream: a gRPC ServerDuplexStream, or the root's end of an in-process pair. */
interface Call {
  on(event: 'data', listener: (raw: unknown) => void): unknown;
  on(event: 'end' | 'cancelled' | 'close', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  write(msg: RootToCluster): boolean;
  end(): void;
  getPeer(): string;
  readonly cancelled: boolean;
  readonly destroyed: boolean;
  destroy?(): void;
}

interface Session {
  call: Call;
  cluster: ClusterRow;
  /** the cluster join token it connected with */
  tokenId: string;
  lastHeard: number;
  rtt: number | undefined;
  timer: NodeJS.Timeout;
  ended: boolean;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Constant-time equality of two secrets; never true for an empty expected value. */
export function tokenMatches(expected: string, given: string): boolean {
  return expected !== '' && timingSafeEqual(digest(expected), digest(given));
}

const DNS_LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export async function startLinkServer(o: LinkServerOptions): Promise<RootLinkServer> {
  const log = o.log ?? silentLinkLog;
  const pingMs = o.pingIntervalMs ?? 1000;
  const timeoutMs = o.pingTimeoutMs ?? 3 * pingMs;
  const sessions = new Map<string, Session>();
  const calls = new Set<Call>();
  let listener: LinkListener = {};
  let closing = false;
  // per-instance readings of each aggregate → metrics events (usage.ts)
  const usage = usageIntake({ store: o.store, events: o.events, log });
  // store writes about one cluster happen in order (a quick reconnect must not be overtaken by
  // the INACTIVE of the stream it replaces)
  const chains = new Map<string, Promise<void>>();
  const serial = (key: string, fn: () => Promise<void>): Promise<void> => {
    const next = (chains.get(key) ?? Promise.resolve()).then(fn).catch((err: unknown) => log.error({ err, cluster: key }, 'link: store update failed'));
    chains.set(key, next);
    void next.then(() => {
      if (chains.get(key) === next) chains.delete(key);
    });
    return next;
  };
  const nowIso = (): string => new Date().toISOString();

  // no stale ACTIVE from a previous run: a cluster is ACTIVE only while its stream is up
  for (const c of await o.store.listClusters()) {
    if (c.status === 'ACTIVE') await o.store.updateCluster(c.id, { status: 'INACTIVE' });
  }

  const endSession = (s: Session, reason: string): void => {
    if (s.ended) return;
    s.ended = true;
    clearInterval(s.timer);
    try {
      s.call.end();
    } catch {
      // already closed
    }
    if (sessions.get(s.cluster.id) !== s) return;
    sessions.delete(s.cluster.id);
    log.warn({ cluster: s.cluster.name, cluster_id: s.cluster.id, reason }, 'link: cluster disconnected');
    void serial(s.cluster.id, async () => {
      if (sessions.has(s.cluster.id)) return; // it is back already
      const row = await o.store.updateCluster(s.cluster.id, { status: 'INACTIVE' });
      o.events.publish({ type: 'cluster', action: 'disconnected', cluster_id: row.id, cluster_name: row.name });
      listener.disconnected?.(row);
    });
  };

  let pending = 0;

  /** Checks a hello's token and name; the cluster row is created only when everything holds. */
  const admit = async (hello: HelloMessage): Promise<{ ok: true; tokenId: string } | { ok: false; reason: string }> => {
    const check = await checkJoinToken(o.store, hello.token, 'cluster');
    if (!check.ok) return check;
    let row = check.row;
    if (row.name === null) {
      // an unbound token may not take a name that another live token owns
      const owners = (await o.store.listJoinTokens({ kind: 'cluster' })).filter((t) => t.id !== row.id && t.name === hello.cluster_name && tokenState(t) === 'active');
      if (owners.length > 0) {
        return { ok: false, reason: `the cluster name ${JSON.stringify(hello.cluster_name)} belongs to another join token; create one for it with \`oak token create cluster --name ${hello.cluster_name}\`` };
      }
      row = (await o.store.bindJoinToken(row.id, hello.cluster_name)) ?? row;
    }
    if (row.name !== hello.cluster_name) return { ok: false, reason: 'this join token is bound to another cluster name' };
    if (hello.public_key !== undefined) {
      try {
        checkPublicKeyPem(hello.public_key);
      } catch {
        return { ok: false, reason: 'hello.public_key is not an ECDSA P-256 public key (SPKI PEM)' };
      }
    }
    return { ok: true, tokenId: row.id };
  };

  const welcomeFor = async (row: ClusterRow, hello: HelloMessage): Promise<RootToCluster> => {
    const w: Extract<RootToCluster, { type: 'welcome' }> = { type: 'welcome', cluster_id: row.id, mqtt_secret: clusterMqttSecret(o.trust, row.id) };
    if (hello.public_key !== undefined) {
      const cert = await issueCert(o.trust.ca, hello.public_key, {
        commonName: row.name,
        dnsNames: [CLUSTER_SERVICE_NAME, ...(DNS_LABEL.test(row.name) && row.name !== CLUSTER_SERVICE_NAME ? [row.name] : [])],
        days: CLUSTER_CERT_DAYS,
      });
      w.tls = { cert: cert + o.trust.ca.certPem, ca: o.trust.ca.certPem };
    }
    return w;
  };

  const answerTokenCheck = async (s: Session, m: TokenCheckMessage): Promise<RootToCluster> => {
    const check = await checkJoinToken(o.store, m.token, 'worker');
    if (!check.ok) return { type: 'token_result', request_id: m.request_id, ok: false, reason: check.reason };
    if (check.row.cluster !== s.cluster.name) {
      return { type: 'token_result', request_id: m.request_id, ok: false, reason: `this worker token is for another cluster, not ${s.cluster.name}` };
    }
    await o.store.recordJoinTokenUse(check.row.id);
    log.info({ cluster: s.cluster.name, token_id: check.row.id, worker: m.worker_id }, 'link: worker token accepted');
    return { type: 'token_result', request_id: m.request_id, ok: true, token_id: check.row.id };
  };

  const handle = (call: Call): void => {
    calls.add(call);
    let session: Session | undefined;
    let greeted = false;
    let counted = true;
    pending++;
    const uncount = (): void => {
      if (counted) {
        counted = false;
        pending--;
      }
    };
    const reject = (reason: string): void => {
      uncount();
      log.warn({ reason, peer: call.getPeer() }, 'link: cluster refused');
      try {
        call.write({ type: 'reject', reason });
        call.end();
      } catch {
        // gone
      }
    };
    if (pending > MAX_PENDING_STREAMS) {
      reject(`too many streams waiting for their hello (${MAX_PENDING_STREAMS}); try again later`);
      return;
    }
    const helloTimer = setTimeout(() => {
      if (!greeted) reject('no hello within the time limit');
    }, o.helloTimeoutMs ?? 10_000);
    const finish = (why: string): void => {
      clearTimeout(helloTimer);
      uncount();
      calls.delete(call);
      if (session) endSession(session, why);
    };
    call.on('data', (raw: unknown) => {
      if (!session && !greeted && (sizes.get(raw as object) ?? 0) > MAX_HELLO_BYTES) {
        greeted = true;
        clearTimeout(helloTimer);
        reject(`the first message must be a hello of at most ${MAX_HELLO_BYTES} bytes`);
        return;
      }
      let msg: ClusterToRoot;
      try {
        msg = parseClusterToRoot(raw);
      } catch (err) {
        log.warn({ err: err instanceof Error ? err.message : String(err), cluster: session?.cluster.name }, 'link: invalid message dropped');
        return;
      }
      if (session) {
        session.lastHeard = Date.now();
        try {
          onMessage(session, msg);
        } catch (err) {
          // a message that breaks its handler is dropped, never the process
          log.error({ err, cluster: session.cluster.name, type: msg.type }, 'link: message handler failed; message dropped');
        }
        return;
      }
      if (greeted) return; // hello being processed
      if (msg.type !== 'hello') {
        greeted = true;
        clearTimeout(helloTimer);
        reject('the first message must be hello');
        return;
      }
      greeted = true;
      uncount();
      clearTimeout(helloTimer);
      if (closing) {
        reject('the root is shutting down');
        return;
      }
      const hello = msg;
      void (async () => {
        const verdict = await admit(hello);
        if (!verdict.ok) {
          reject(verdict.reason);
          return;
        }
        if (call.cancelled || call.destroyed) return;
        uncount();
        let row = await o.store.upsertCluster(hello.cluster_name, hello.cluster_location);
        await o.store.recordJoinTokenUse(verdict.tokenId);
        const welcome = await welcomeFor(row, hello);
        const s: Session = { call, cluster: row, tokenId: verdict.tokenId, lastHeard: Date.now(), rtt: undefined, timer: setInterval(() => ping(s), pingMs), ended: false };
        const old = sessions.get(row.id);
        sessions.set(row.id, s);
        session = s;
        if (old) endSession(old, 'replaced by a new stream');
        if (call.cancelled || call.destroyed) {
          endSession(s, 'stream gone during hello');
          return;
        }
        await serial(row.id, async () => {
          row = await o.store.updateCluster(row.id, { status: 'ACTIVE', last_seen: nowIso() });
          s.cluster = row;
        });
        if (s.ended) return;
        call.write(welcome);
        log.info({ cluster: row.name, cluster_id: row.id, token_id: verdict.tokenId, peer: call.getPeer() }, 'link: cluster connected');
        o.events.publish({ type: 'cluster', action: 'connected', cluster_id: row.id, cluster_name: row.name });
        listener.connected?.(row);
      })().catch((err: unknown) => {
        log.error({ err }, 'link: hello failed');
        reject('the root could not register the cluster');
      });
    });
    call.on('end', () => {
      finish('stream ended');
      try {
        call.end();
      } catch {
        // gone
      }
    });
    call.on('error', (err: Error) => finish(`stream error: ${err.message}`));
    call.on('cancelled', () => finish('stream cancelled'));
    call.on('close', () => finish('stream closed'));
  };

  const ping = (s: Session): void => {
    if (s.ended) return;
    if (Date.now() - s.lastHeard > timeoutMs) {
      endSession(s, `silent for more than ${timeoutMs} ms`);
      return;
    }
    try {
      s.call.write({ type: 'ping', t: Date.now() });
    } catch {
      endSession(s, 'write failed');
    }
  };

  const onMessage = (s: Session, msg: ClusterToRoot): void => {
    switch (msg.type) {
      case 'hello':
        return;
      case 'pong':
        s.rtt = Math.max(0, Date.now() - msg.t);
        return;
      case 'token_check': {
        const m = msg;
        answerTokenCheck(s, m)
          .catch((err: unknown): RootToCluster => {
            log.error({ err, cluster: s.cluster.name }, 'link: token check failed');
            return { type: 'token_result', request_id: m.request_id, ok: false, reason: 'the root could not check the token' };
          })
          .then((answer) => answerOnStream(s, answer));
        return;
      }
      case 'artifact_request': {
        // fleet upgrades (issue 14): one chunk of an artifact from the store
        const m = msg;
        artifactChunk(o.store, m)
          .catch((err: unknown): RootToCluster => {
            log.error({ err, cluster: s.cluster.name }, 'link: artifact read failed');
            return { type: 'artifact_chunk', request_id: m.request_id, sha256: m.sha256, offset: m.offset, total: 0, data: '', error: 'the root could not read the artifact' };
          })
          .then((answer) => answerOnStream(s, answer));
        return;
      }
      case 'aggregate': {
        const resources = msg.resources;
        if (msg.usage !== undefined) usage(s.cluster.id, msg.usage);
        void serial(s.cluster.id, async () => {
          if (s.ended) return;
          const changed = JSON.stringify(s.cluster.resources) !== JSON.stringify(resources);
          const row = await o.store.updateCluster(s.cluster.id, { resources, last_seen: nowIso() });
          s.cluster = row;
          // last_seen alone is no news for event listeners
          if (changed) o.events.publish({ type: 'cluster', action: 'updated', cluster_id: row.id, cluster_name: row.name });
          listener.aggregate?.(row, resources);
        });
        return;
      }
      default:
        listener.message?.(s.cluster.id, msg);
    }
  };

  // the size of each decoded message, for the hello size limit
  const sizes = new WeakMap<object, number>();
  const credentials = await rootLinkCredentials(o.trust.ca);
  const server = new grpc.Server(LINK_SERVER_OPTIONS);
  server.addService(sizedLinkDefinition(sizes), { Connect: (call: grpc.ServerDuplexStream<unknown, RootToCluster>) => handle(call) });
  const decodeToRoot = sizedDecoder(sizes);
  const { bindHost, shownHost } = linkHosts(o.host ?? '0.0.0.0');
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${bindHost}:${o.port ?? DEFAULT_LINK_PORT}`, credentials, (err, p) => (err ? reject(err) : resolve(p)));
  });
  log.info({ port, ca_sha256: o.trust.caHash }, 'link: listening for clusters (TLS)');

  return {
    port,
    address: `${shownHost}:${port}`,
    caHash: o.trust.caHash,
    isConnected: (id) => sessions.has(id),
    connectedClusters: () => [...sessions.keys()],
    rttMs: (id) => sessions.get(id)?.rtt,
    send(id, msg) {
      const s = sessions.get(id);
      if (!s || s.ended) return false;
      try {
        s.call.write(msg);
        return true;
      } catch (err) {
        log.warn({ err, cluster: s.cluster.name }, 'link: write failed');
        return false;
      }
    },
    setListener(l) {
      listener = l;
    },
    connectInProcess(toCluster) {
      if (closing) return refusedLinkStream('the root is shutting down');
      const pair = inProcessLinkPair({ maxBytes: LINK_MAX_RECEIVE_BYTES, decode: decodeToRoot }, toCluster);
      handle(pair.root);
      return pair.cluster;
    },
    dropClustersOf(tokenId) {
      const hit = [...sessions.values()].filter((s) => s.tokenId === tokenId && !s.ended);
      for (const s of hit) {
        try {
          s.call.write({ type: 'reject', reason: `join token ${tokenId} was revoked` });
        } catch {
          // gone
        }
        endSession(s, 'its join token was revoked');
      }
      return hit.length;
    },
    revokeWorkers(tokenId) {
      let told = 0;
      for (const s of sessions.values()) {
        if (s.ended) continue;
        try {
          s.call.write({ type: 'revoke_workers', token_id: tokenId });
          told++;
        } catch (err) {
          log.warn({ err, cluster: s.cluster.name }, 'link: write failed');
        }
      }
      log.info({ token_id: tokenId, clusters: told }, 'link: worker token revoked, clusters told');
      return told;
    },
    async close() {
      if (closing) return;
      closing = true;
      const open = [...sessions.values()];
      for (const s of open) endSession(s, 'root shutting down');
      server.forceShutdown();
      for (const c of calls) c.destroy?.();
      await Promise.all([...chains.values()]);
    },
  };
}

/** An answer to a cluster's request, unless its stream ended meanwhile (the cluster then asks again or times out). */
function answerOnStream(s: Session, answer: RootToCluster): void {
  if (s.ended) return;
  try {
    s.call.write(answer);
  } catch {
    // the stream is going
  }
}
