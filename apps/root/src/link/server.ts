/**
 * The root's end of the cluster link (SPEC §6): clusters dial in on port 50052 and keep one gRPC
 * bidirectional stream each. The first message must be `hello` with the registration token;
 * the root answers `welcome {cluster_id}` (the cluster row is found or created by name and set
 * ACTIVE) or `reject` and closes. The root pings every second; a cluster that stays silent for
 * `pingTimeoutMs` or whose stream ends is set INACTIVE at once. What arrives is validated; the
 * placement side (control.ts) listens through LinkListener.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { parseClusterToRoot } from '@oak/contracts';
import type { ClusterResources, ClusterToRoot, RootToCluster } from '@oak/contracts';
import type { ClusterRow, Store } from '@oak/store';
import type { EventHub } from '../events.ts';
import { LINK_SERVER_OPTIONS, linkServiceDefinition, silentLinkLog } from './codec.ts';
import type { LinkLog } from './codec.ts';

export const DEFAULT_LINK_PORT = 50052;
/** Link streams that have not said hello yet, at most (more are refused at once). */
export const MAX_PENDING_STREAMS = 32;

export interface LinkServerOptions {
  /** default 0.0.0.0 */
  host?: string;
  /** default 50052; 0 picks a free port */
  port?: number;
  store: Store;
  events: EventHub;
  /** clusters must present this token in their hello */
  token: string;
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
  readonly token: string;
  isConnected(clusterId: string): boolean;
  connectedClusters(): string[];
  /** last measured ping round trip, ms */
  rttMs(clusterId: string): number | undefined;
  /** false when the cluster is not connected (the message is dropped) */
  send(clusterId: string, msg: RootToCluster): boolean;
  /** the listener (one: the control plane) */
  setListener(l: LinkListener): void;
  close(): Promise<void>;
}

type Call = grpc.ServerDuplexStream<unknown, RootToCluster>;

interface Session {
  call: Call;
  cluster: ClusterRow;
  lastHeard: number;
  rtt: number | undefined;
  timer: NodeJS.Timeout;
  ended: boolean;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export function tokenMatches(expected: string, given: string): boolean {
  return expected !== '' && timingSafeEqual(digest(expected), digest(given));
}

export async function startLinkServer(o: LinkServerOptions): Promise<LinkServer> {
  const log = o.log ?? silentLinkLog;
  const pingMs = o.pingIntervalMs ?? 1000;
  const timeoutMs = o.pingTimeoutMs ?? 3 * pingMs;
  const sessions = new Map<string, Session>();
  const calls = new Set<Call>();
  /** streams that have not said hello yet */
  const pending = new Set<Call>();
  let listener: LinkListener = {};
  let closing = false;
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

  const handle = (call: Call): void => {
    calls.add(call);
    let session: Session | undefined;
    let greeted = false;
    // streams that have not said hello yet are capped: each may hold a message of up to
    // MAX_CLUSTER_MESSAGE_BYTES until its hello timeout
    if (pending.size >= MAX_PENDING_STREAMS) {
      calls.delete(call);
      log.warn({ peer: call.getPeer(), pending: pending.size }, 'link: too many streams without hello; refused');
      try {
        call.write({ type: 'reject', reason: 'too many connections without hello; try again later' });
        call.end();
      } catch {
        // gone
      }
      return;
    }
    pending.add(call);
    const reject = (reason: string): void => {
      pending.delete(call);
      log.warn({ reason, peer: call.getPeer() }, 'link: cluster refused');
      try {
        call.write({ type: 'reject', reason });
        call.end();
      } catch {
        // gone
      }
    };
    const helloTimer = setTimeout(() => {
      if (!greeted) reject('no hello within the time limit');
    }, o.helloTimeoutMs ?? 10_000);
    const finish = (why: string): void => {
      clearTimeout(helloTimer);
      calls.delete(call);
      pending.delete(call);
      if (session) endSession(session, why);
    };
    call.on('data', (raw: unknown) => {
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
        reject('the first message must be hello');
        return;
      }
      greeted = true;
      pending.delete(call);
      clearTimeout(helloTimer);
      if (closing) {
        reject('the root is shutting down');
        return;
      }
      if (!tokenMatches(o.token, msg.token)) {
        reject('invalid cluster token');
        return;
      }
      const hello = msg;
      void (async () => {
        let row = await o.store.upsertCluster(hello.cluster_name, hello.cluster_location);
        const s: Session = { call, cluster: row, lastHeard: Date.now(), rtt: undefined, timer: setInterval(() => ping(s), pingMs), ended: false };
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
        call.write({ type: 'welcome', cluster_id: row.id });
        log.info({ cluster: row.name, cluster_id: row.id, peer: call.getPeer() }, 'link: cluster connected');
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
      case 'aggregate': {
        const resources = msg.resources;
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

  const server = new grpc.Server(LINK_SERVER_OPTIONS);
  server.addService(linkServiceDefinition, { Connect: handle });
  const host = o.host ?? '0.0.0.0';
  const bindHost = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${bindHost}:${o.port ?? DEFAULT_LINK_PORT}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : bindHost;
  log.info({ port }, 'link: listening for clusters');

  return {
    port,
    address: `${shownHost}:${port}`,
    token: o.token,
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
