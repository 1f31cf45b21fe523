/**
 * The cluster's side of the root link (SPEC §6, docs/security.md): the cluster dials out to the
 * root's port 50052 over TLS and keeps one bidirectional stream. On first contact it takes the
 * root CA from the chain the root presents and accepts it only if its fingerprint is the one in
 * the join token; from then on it trusts that CA alone and requires SAN `oak-root`, whatever
 * address it dials. Its hello carries the join token and a public key made fresh at each start;
 * the welcome brings a certificate for that key and the cluster's MQTT secret. Lost streams are
 * re-opened with exponential backoff (capped, ~5 s); a root that stays silent longer than
 * `silenceTimeoutMs` (it pings every second or so) counts as lost.
 *
 * A cluster in the root's own process (oakd, the 1-DOC) is given `connect`: its stream is then
 * an in-memory one to that root (the root's link server, connectInProcess) instead of a TLS dial;
 * the hello with the join token, the validation of what arrives, pings, the reconnect when the
 * stream ends are the same code. A redirect to another root is dialled over gRPC as always.
 */
import { randomBytes } from 'node:crypto';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { LINK_SERVICE_PATH, parseRootToCluster, tryParseJoinToken } from '@oak/contracts';
import type { ClusterToRoot, JoinToken, RootToCluster } from '@oak/contracts';
import { silentLogger } from '@oak/bus';
import type { Logger } from '@oak/bus';
import { ROOT_SERVICE_NAME, fetchPinnedCa, generateKeyPair, type KeyPair } from '@oak/trust';
import { LINK_CHANNEL_OPTIONS, decodeMessage, encodeMessage } from './link-codec.ts';

export type WelcomeMessage = Extract<RootToCluster, { type: 'welcome' }>;
/** `unavailable`: the root could not be asked (link down, no answer in time), not a verdict on the token */
export type WorkerTokenCheck = { ok: true; tokenId: string } | { ok: false; reason: string; unavailable?: boolean };

export interface LinkClientHandlers {
  /** the root accepted us: our id there, the certificate for our key (tls) and the MQTT secret */
  onWelcome(welcome: WelcomeMessage): void;
  /** any other message from the root, validated (token_result is answered through checkWorkerToken) */
  onMessage(msg: RootToCluster): void;
  /** the stream is gone (we reconnect by ourselves) */
  onDown?(reason: string): void;
}

/** What LinkClient uses of a link stream: a gRPC ClientDuplexStream, or the cluster's end of an in-process pair. */
export interface LinkStream {
  on(event: 'data', listener: (raw: unknown) => void): unknown;
  on(event: 'error', listener: (err: Error & { details?: string }) => void): unknown;
  on(event: 'end' | 'close', listener: () => void): unknown;
  write(msg: ClusterToRoot): boolean;
  cancel(): void;
  removeAllListeners(event: 'data'): unknown;
}

/** How this side reads what the root sends: its decoder and the largest message it takes (as its gRPC channel). */
export interface LinkReceiver {
  maxBytes: number;
  decode(buf: Buffer): unknown;
}

/** Opens a stream to a root in this process (no network): the root's link server's connectInProcess. */
export type LinkConnector = (receiver: LinkReceiver) => LinkStream;

export interface LinkClientOptions {
  /** host:port of the root's link listener */
  address: string;
  /** the root runs in this process: open the stream through this instead of dialling `address` (hello and token as always) */
  connect?: LinkConnector;
  /** the cluster's join token (oak1.c....): its CA fingerprint pins the root */
  token: string;
  /** the root CA (PEM) when already known; else fetched on first contact and pinned by the token */
  caPem?: string;
  clusterName: string;
  clusterLocation: string | null;
  version: string;
  handlers: LinkClientHandlers;
  log?: Logger;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** no message from the root for this long: the stream is considered dead (default 10 s) */
  silenceTimeoutMs?: number;
  /** waiting for welcome after hello (default 10 s) */
  helloTimeoutMs?: number;
  /** waiting for a token_result (default 5 s) */
  tokenCheckTimeoutMs?: number;
}

interface PendingCheck {
  resolve(r: WorkerTokenCheck): void;
  timer: NodeJS.Timeout;
}

interface QueuedCheck extends PendingCheck {
  token: string;
  workerId: string | undefined;
  /** when it is answered "unreachable" if the root has not answered (Date.now() time) */
  deadline: number;
}

const UNREACHABLE = 'the root is unreachable, so the worker token cannot be checked; try again when the cluster is connected';
/** token checks sent to the root and not answered yet, at most; more wait in a queue */
export const MAX_PENDING_TOKEN_CHECKS = 256;
/**
 * token checks waiting for one of those slots, at most; more are answered "busy" at once. A
 * restarted cluster's whole fleet registers within seconds: answering the 257th "try again" made
 * each of them come back with a new TLS handshake and request (56,000 refusals for 10,000
 * workers, most of the cluster's CPU, issue 13), while a queued one waits for an answer at the
 * cost of an open request. Each waits at most tokenCheckTimeoutMs in all, queue included.
 */
export const MAX_QUEUED_TOKEN_CHECKS = 4096;

type Call = LinkStream;

export class LinkClient {
  readonly #o: LinkClientOptions;
  readonly #log: Logger;
  #client: grpc.Client | undefined;
  #call: Call | undefined;
  #welcomed = false;
  #clusterId: string | null = null;
  #backoff: number;
  #retryTimer: NodeJS.Timeout | undefined;
  #silenceTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #lastReject: string | null = null;
  #attempts = 0;
  /** where a follower root redirected us (several roots on one PostgreSQL); undefined: o.address */
  #target: string | undefined;
  /** redirects in a row without a welcome */
  #redirects = 0;
  readonly #keys: KeyPair;
  readonly #token: JoinToken | undefined;
  #caPem: string | undefined;
  #connecting = false;
  readonly #checks = new Map<string, PendingCheck>();
  /** checks waiting for a free slot among #checks, oldest first */
  readonly #queued = new Set<QueuedCheck>();
  #checkSeq = 0;

  constructor(o: LinkClientOptions) {
    this.#o = o;
    this.#log = o.log ?? silentLogger;
    this.#backoff = o.initialBackoffMs ?? 200;
    this.#keys = generateKeyPair();
    this.#token = tryParseJoinToken(o.token);
    this.#caPem = o.caPem;
  }

  /** the private key (PKCS#8 PEM) of the certificate in welcome.tls; new at every start */
  get privateKeyPem(): string {
    return this.#keys.privateKeyPem;
  }

  /** the root CA, once pinned (undefined before the first contact) */
  get caPem(): string | undefined {
    return this.#caPem;
  }

  /**
   * Asks the root whether a worker join token is valid for this cluster (kind worker, this
   * cluster's name, not revoked or expired). A link that is down, or no answer within
   * tokenCheckTimeoutMs, answers ok:false saying the root is unreachable.
   */
  checkWorkerToken(token: string, workerId?: string): Promise<WorkerTokenCheck> {
    if (!this.#welcomed || !this.#call) return Promise.resolve({ ok: false, reason: UNREACHABLE, unavailable: true });
    const deadline = Date.now() + (this.#o.tokenCheckTimeoutMs ?? 5000);
    if (this.#checks.size < MAX_PENDING_TOKEN_CHECKS) return new Promise<WorkerTokenCheck>((resolve) => this.#sendCheck(token, workerId, resolve, deadline));
    // not a verdict on the token: a worker refused here must retry (503), and a known worker must
    // not lose its credentials as if its token were invalid
    if (this.#queued.size >= MAX_QUEUED_TOKEN_CHECKS) return Promise.resolve({ ok: false, reason: 'too many registrations are being checked at once; try again in a moment', unavailable: true });
    return new Promise<WorkerTokenCheck>((resolve) => {
      const q: QueuedCheck = {
        token,
        workerId,
        resolve,
        deadline,
        timer: setTimeout(() => {
          this.#queued.delete(q);
          resolve({ ok: false, reason: UNREACHABLE, unavailable: true });
        }, deadline - Date.now()),
      };
      this.#queued.add(q);
    });
  }

  /** sends one check to the root, answered "unreachable" at `deadline` without an answer */
  #sendCheck(token: string, workerId: string | undefined, resolve: (r: WorkerTokenCheck) => void, deadline: number): void {
    const requestId = `tc-${++this.#checkSeq}-${randomBytes(4).toString('hex')}`;
    const timer = setTimeout(() => {
      this.#checks.delete(requestId);
      resolve({ ok: false, reason: UNREACHABLE, unavailable: true });
      this.#sendQueued();
    }, Math.max(1, deadline - Date.now()));
    this.#checks.set(requestId, { resolve, timer });
    const sent = this.send({ type: 'token_check', request_id: requestId, token: token.slice(0, 512), ...(workerId !== undefined ? { worker_id: workerId.slice(0, 200) } : {}) });
    if (!sent) {
      this.#checks.delete(requestId);
      clearTimeout(timer);
      resolve({ ok: false, reason: UNREACHABLE, unavailable: true });
    }
  }

  /** queued checks into the free slots, oldest first */
  #sendQueued(): void {
    for (const q of this.#queued) {
      if (this.#checks.size >= MAX_PENDING_TOKEN_CHECKS) return;
      this.#queued.delete(q);
      clearTimeout(q.timer);
      if (!this.#welcomed || !this.#call) q.resolve({ ok: false, reason: UNREACHABLE, unavailable: true });
      else this.#sendCheck(q.token, q.workerId, q.resolve, q.deadline);
    }
  }

  #settleCheck(requestId: string, r: WorkerTokenCheck): void {
    const p = this.#checks.get(requestId);
    if (!p) return;
    this.#checks.delete(requestId);
    clearTimeout(p.timer);
    p.resolve(r);
    this.#sendQueued();
  }

  #failChecks(): void {
    // the queued ones first: settling a sent one moves queued ones into its slot
    for (const q of this.#queued) {
      clearTimeout(q.timer);
      q.resolve({ ok: false, reason: UNREACHABLE, unavailable: true });
    }
    this.#queued.clear();
    for (const id of [...this.#checks.keys()]) this.#settleCheck(id, { ok: false, reason: UNREACHABLE, unavailable: true });
  }

  get connected(): boolean {
    return this.#welcomed;
  }

  get clusterId(): string | null {
    return this.#clusterId;
  }

  /** why the root refused us last (bad token, ...) */
  get lastReject(): string | null {
    return this.#lastReject;
  }

  /** the address dialled now: the configured one, or the leading root a follower redirected us to */
  get address(): string {
    return this.#target ?? this.#o.address;
  }

  /** number of streams opened so far */
  get attempts(): number {
    return this.#attempts;
  }

  start(): void {
    if (this.#closed || this.#call || this.#connecting) return;
    this.#open();
  }

  /** Sends when welcomed; returns false (message dropped) otherwise. */
  send(msg: ClusterToRoot): boolean {
    if (!this.#welcomed || !this.#call) return false;
    try {
      this.#call.write(msg);
      return true;
    } catch (err) {
      this.#log.warn('link: write failed', err);
      return false;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#teardown('closing');
    this.#failChecks();
  }

  /** A failure before any stream: remembered as the reason, retried with the longest backoff. */
  #refusedLocally(reason: string): void {
    if (this.#lastReject !== reason) this.#log.error(`link: ${reason}`);
    this.#lastReject = reason;
    this.#backoff = this.#o.maxBackoffMs ?? 5000;
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    if (this.#closed) return;
    const delay = this.#backoff;
    this.#backoff = Math.min(this.#o.maxBackoffMs ?? 5000, Math.max(1, this.#backoff * 2));
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      if (!this.#closed) this.#open();
    }, delay);
  }

  #open(): void {
    this.#attempts++;
    const token = this.#token;
    if (!token || token.kind !== 'cluster') {
      this.#refusedLocally(
        token ? 'the join token is a worker token; a cluster needs a cluster token (oak token create cluster --name <name>)' : 'no valid join token (OAK_JOIN_TOKEN); create one on the root with `oak token create cluster --name <name>`',
      );
      return;
    }
    if (this.#o.connect !== undefined && this.#target === undefined) {
      this.#attach(this.#o.connect({ maxBytes: LINK_CHANNEL_OPTIONS['grpc.max_receive_message_length'], decode: decodeMessage }), undefined);
      return;
    }
    if (this.#caPem !== undefined) {
      this.#dial(this.#caPem);
      return;
    }
    const { host, port } = splitAddress(this.address);
    this.#connecting = true;
    fetchPinnedCa(host, port, token.caHash, { servername: ROOT_SERVICE_NAME, alpn: ['h2'], timeoutMs: this.#o.helloTimeoutMs ?? 10_000 }).then(
      (pem) => {
        this.#connecting = false;
        if (this.#closed) return;
        this.#caPem = pem;
        this.#log.info(`link: pinned the root CA ${token.caHash} from ${this.address}`);
        this.#dial(pem);
      },
      (err: unknown) => {
        this.#connecting = false;
        if (this.#closed) return;
        const e = err as { code?: string; message?: string };
        if (e.code === 'OAK_JOIN_TOKEN_INVALID') this.#refusedLocally(e.message ?? String(err));
        else {
          this.#log.debug(`link: attempt failed (${e.message ?? String(err)}); retrying in ${this.#backoff} ms`);
          this.#scheduleRetry();
        }
      },
    );
  }

  #dial(caPem: string): void {
    const creds = grpc.credentials.createSsl(Buffer.from(caPem), null, null, {
      checkServerIdentity: (_host: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(ROOT_SERVICE_NAME, cert),
    });
    const client = new grpc.Client(this.address, creds, {
      ...LINK_CHANNEL_OPTIONS,
      'grpc.ssl_target_name_override': ROOT_SERVICE_NAME,
      'grpc.default_authority': ROOT_SERVICE_NAME,
    });
    this.#attach(client.makeBidiStreamRequest<ClusterToRoot, unknown>(LINK_SERVICE_PATH, encodeMessage, decodeMessage), client);
  }

  /** Takes a new stream (gRPC or in-process) and says hello on it. */
  #attach(call: Call, client: grpc.Client | undefined): void {
    this.#client = client;
    this.#call = call;
    this.#welcomed = false;
    call.on('data', (raw: unknown) => this.#onData(call, raw));
    call.on('error', (err) => this.#down(call, `stream error: ${err.details || err.message}`));
    call.on('end', () => this.#down(call, 'the root ended the stream'));
    call.on('close', () => this.#down(call, 'stream closed'));
    this.#armSilence(call, this.#o.helloTimeoutMs ?? 10_000);
    call.write({
      type: 'hello',
      token: this.#o.token,
      cluster_name: this.#o.clusterName,
      cluster_location: this.#o.clusterLocation,
      version: this.#o.version,
      public_key: this.#keys.publicKeyPem,
    });
  }

  #armSilence(call: Call, ms: number): void {
    clearTimeout(this.#silenceTimer);
    this.#silenceTimer = setTimeout(() => {
      if (call === this.#call) {
        this.#log.warn(`link: no message from the root for ${ms} ms; reconnecting`);
        this.#down(call, 'root silent');
      }
    }, ms);
  }

  #onData(call: Call, raw: unknown): void {
    if (call !== this.#call) return;
    let msg: RootToCluster;
    try {
      msg = parseRootToCluster(raw);
    } catch (err) {
      this.#log.warn('link: invalid message from the root dropped', err);
      return;
    }
    this.#armSilence(call, this.#o.silenceTimeoutMs ?? 10_000);
    switch (msg.type) {
      case 'welcome':
        this.#welcomed = true;
        this.#redirects = 0;
        this.#clusterId = msg.cluster_id;
        this.#lastReject = null;
        this.#backoff = this.#o.initialBackoffMs ?? 200;
        this.#log.info(`link: connected to the root as cluster ${msg.cluster_id}`);
        this.#o.handlers.onWelcome(msg);
        return;
      case 'token_result':
        this.#settleCheck(msg.request_id, msg.ok ? { ok: true, tokenId: msg.token_id ?? '' } : { ok: false, reason: msg.reason ?? 'the root refused the token' });
        return;
      case 'redirect':
        this.#redirected(call, msg.address, msg.reason);
        return;
      case 'reject':
        this.#lastReject = msg.reason;
        this.#log.error(`link: the root refused this cluster: ${msg.reason}`);
        this.#backoff = this.#o.maxBackoffMs ?? 5000;
        this.#down(call, `rejected: ${msg.reason}`);
        return;
      case 'ping':
        try {
          call.write({ type: 'pong', t: msg.t });
        } catch {
          // the stream is going away; 'error'/'close' follow
        }
        return;
      default:
        if (!this.#welcomed) {
          this.#log.warn(`link: ${msg.type} before welcome dropped`);
          return;
        }
        try {
          this.#o.handlers.onMessage(msg);
        } catch (err) {
          // a message that breaks its handler is dropped, never the process
          this.#log.error(`link: handler for ${msg.type} failed; message dropped`, err);
        }
    }
  }

  /**
   * A follower root sends us to the leader: dial `address` next, at once. At most MAX_REDIRECTS
   * in a row without a welcome (then back to the configured root, with the longest backoff); any
   * failure on a redirected address goes back to the configured root too.
   */
  #redirected(call: Call, address: string, reason: string | undefined): void {
    if (this.#redirects >= MAX_REDIRECTS || !isLinkAddress(address)) {
      const why = this.#redirects >= MAX_REDIRECTS ? `more than ${MAX_REDIRECTS} redirects in a row` : `an invalid redirect address ${JSON.stringify(address.slice(0, 100))}`;
      this.#log.warn(`link: ${why}; back to ${this.#o.address}`);
      this.#target = undefined;
      this.#redirects = 0;
      this.#backoff = this.#o.maxBackoffMs ?? 5000;
      this.#down(call, why);
      return;
    }
    this.#redirects++;
    this.#log.info(`link: ${this.address} redirects to the leading root ${address}${reason !== undefined ? ` (${reason.slice(0, 200)})` : ''}`);
    this.#teardown('redirected');
    this.#target = address;
    this.#backoff = this.#o.initialBackoffMs ?? 200;
    if (!this.#closed) this.#open();
  }

  #teardown(reason: string): boolean {
    const call = this.#call;
    const client = this.#client;
    const was = this.#welcomed;
    this.#call = undefined;
    this.#client = undefined;
    this.#welcomed = false;
    clearTimeout(this.#silenceTimer);
    if (call) {
      call.removeAllListeners('data');
      call.on('error', () => {});
      try {
        call.cancel();
      } catch {
        // already gone
      }
    }
    client?.close();
    this.#failChecks();
    if (call && was) this.#o.handlers.onDown?.(reason);
    return call !== undefined;
  }

  #down(call: Call, reason: string): void {
    if (call !== this.#call) return;
    const was = this.#welcomed;
    this.#teardown(reason);
    if (this.#target !== undefined) {
      // the redirected root failed (or went away): ask the configured one again
      this.#log.info(`link: ${this.#target} failed (${reason}); back to ${this.#o.address}`);
      this.#target = undefined;
    }
    if (this.#closed) return;
    if (was) this.#log.warn(`link: lost the root (${reason}); reconnecting`);
    else this.#log.debug(`link: attempt failed (${reason}); retrying in ${this.#backoff} ms`);
    this.#scheduleRetry();
  }
}

/** redirects followed in a row without a welcome */
export const MAX_REDIRECTS = 3;

/** host:port or [v6]:port, nothing else (a redirect target) */
export function isLinkAddress(a: string): boolean {
  return a.length <= 300 && /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}$/.test(a);
}

/** host and port of `host:port` or `[v6]:port`. */
export function splitAddress(address: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
  if (!m || m[1] === undefined || m[2] === undefined) return { host: address, port: 50052 };
  return { host: m[1], port: Number(m[2]) };
}
