/**
 * A follower's link listener (several roots on one PostgreSQL): a cluster that dials a root that
 * does not lead gets `redirect {address: <the leader's link URL>}` and the stream ends. The
 * follower listens on the link port while it follows and gives the port back when it leads (its
 * control plane's link listener binds it then).
 *
 * Same TLS as the real link (a certificate of the root CA, SAN oak-root) and the same bounds: at
 * most MAX_PENDING_STREAMS streams at once, a hello within `helloTimeoutMs`, a first message of at
 * most MAX_HELLO_BYTES. Only a hello with a valid cluster join token learns the leader's address;
 * anything else gets `reject`. It writes nothing to the store.
 */
import * as grpc from '@grpc/grpc-js';
import { parseClusterToRoot } from '@oak/contracts';
import type { ClusterToRoot, RootToCluster } from '@oak/contracts';
import type { Store } from '@oak/store';
import { checkJoinToken, type RootTrust } from '../trust.ts';
import { LINK_SERVER_OPTIONS, linkHosts, rootLinkCredentials, sizedLinkDefinition } from '../link/codec.ts';
import type { LeaseLog } from './leader.ts';

export const REDIRECT_MAX_PENDING = 32;
export const REDIRECT_MAX_HELLO_BYTES = 16 * 1024;
const ADDRESS = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}$/;

/** true for host:port or [v6]:port */
export function isLinkAddress(a: string): boolean {
  return a.length <= 300 && ADDRESS.test(a);
}

export interface RedirectLinkOptions {
  host?: string;
  /** 0 picks a free port */
  port: number;
  store: Store;
  trust: RootTrust;
  /** the leader's link address (host:port), undefined when unknown */
  target: () => string | undefined;
  log: LeaseLog;
  helloTimeoutMs?: number;
  /** EADDRINUSE: try again this often, this many times (the leader's listener may still hold it) */
  bindRetryMs?: number;
  bindAttempts?: number;
}

export interface RedirectLink {
  readonly port: number;
  readonly address: string;
  /** clusters redirected, refused */
  readonly stats: { redirected: number; refused: number };
  close(): Promise<void>;
}

type Call = grpc.ServerDuplexStream<unknown, RootToCluster>;

export async function startRedirectLink(o: RedirectLinkOptions): Promise<RedirectLink> {
  const stats = { redirected: 0, refused: 0 };
  const calls = new Set<Call>();
  let pending = 0;
  const sizes = new WeakMap<object, number>();

  const handle = (call: Call): void => {
    calls.add(call);
    let answered = false;
    pending++;
    const answer = (msg: RootToCluster): void => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      pending--;
      if (msg.type === 'reject') {
        stats.refused++;
        o.log.warn({ reason: msg.reason, peer: call.getPeer() }, 'lead: cluster refused by a follower');
      } else stats.redirected++;
      try {
        call.write(msg);
        call.end();
      } catch {
        // gone
      }
    };
    const gone = (): void => {
      calls.delete(call);
      if (!answered) {
        answered = true;
        clearTimeout(timer);
        pending--;
      }
    };
    const timer = setTimeout(() => answer({ type: 'reject', reason: 'no hello within the time limit' }), o.helloTimeoutMs ?? 10_000);
    if (pending > REDIRECT_MAX_PENDING) {
      answer({ type: 'reject', reason: `too many streams waiting for their hello (${REDIRECT_MAX_PENDING}); try again later` });
      return;
    }
    let seen = false;
    call.on('data', (raw: unknown) => {
      if (seen) return;
      seen = true;
      if ((sizes.get(raw as object) ?? 0) > REDIRECT_MAX_HELLO_BYTES) {
        answer({ type: 'reject', reason: `the first message must be a hello of at most ${REDIRECT_MAX_HELLO_BYTES} bytes` });
        return;
      }
      let msg: ClusterToRoot;
      try {
        msg = parseClusterToRoot(raw);
      } catch {
        answer({ type: 'reject', reason: 'the first message must be hello' });
        return;
      }
      if (msg.type !== 'hello') {
        answer({ type: 'reject', reason: 'the first message must be hello' });
        return;
      }
      const token = msg.token;
      void checkJoinToken(o.store, token, 'cluster')
        .then((check) => {
          if (!check.ok) return answer({ type: 'reject', reason: check.reason });
          const target = o.target();
          if (target === undefined || !isLinkAddress(target)) return answer({ type: 'reject', reason: 'this root follows and no leading root is known yet; try again in a few seconds' });
          answer({ type: 'redirect', address: target, reason: 'this root follows; the leading root holds the cluster links' });
        })
        .catch((err: unknown) => {
          o.log.error({ err }, 'lead: checking a cluster token failed');
          answer({ type: 'reject', reason: 'the root could not check the token' });
        });
    });
    call.on('error', gone);
    call.on('cancelled', gone);
    call.on('close', gone);
    call.on('end', () => {
      gone();
      try {
        call.end();
      } catch {
        // gone
      }
    });
  };

  const credentials = await rootLinkCredentials(o.trust.ca);
  const { bindHost, shownHost } = linkHosts(o.host ?? '0.0.0.0');
  let server: grpc.Server | undefined;
  let port = 0;
  const attempts = o.bindAttempts ?? 30;
  for (let k = 1; ; k++) {
    const s = new grpc.Server(LINK_SERVER_OPTIONS);
    s.addService(sizedLinkDefinition(sizes), { Connect: handle });
    try {
      port = await new Promise<number>((resolve, reject) => s.bindAsync(`${bindHost}:${o.port}`, credentials, (err, p) => (err ? reject(err) : resolve(p))));
      server = s;
      break;
    } catch (err) {
      s.forceShutdown();
      if (k >= attempts) throw err;
      await new Promise((r) => setTimeout(r, o.bindRetryMs ?? 100));
    }
  }
  o.log.info({ port }, 'lead: follower link listening (redirects clusters to the leading root)');
  const srv = server;
  return {
    port,
    address: `${shownHost}:${port}`,
    stats,
    async close() {
      srv.forceShutdown();
      for (const c of calls) c.destroy?.();
    },
  };
}
