/**
 * The cluster's side of the root link (SPEC §6): the cluster dials out to the root's port 50052,
 * says hello with its token, and keeps one bidirectional stream. Lost streams are re-opened with
 * exponential backoff (capped, ~5 s); a root that stays silent longer than `silenceTimeoutMs`
 * (it pings every second or so) counts as lost.
 */
import * as grpc from '@grpc/grpc-js';
import { LINK_SERVICE_PATH, parseRootToCluster } from '@oak/contracts';
import type { ClusterToRoot, RootToCluster } from '@oak/contracts';
import { silentLogger } from '@oak/bus';
import type { Logger } from '@oak/bus';
import { LINK_CHANNEL_OPTIONS, decodeMessage, encodeMessage } from './link-codec.ts';

export interface LinkClientHandlers {
  /** the root accepted us; `clusterId` is our id there */
  onWelcome(clusterId: string): void;
  /** any other message from the root, validated */
  onMessage(msg: RootToCluster): void;
  /** the stream is gone (we reconnect by ourselves) */
  onDown?(reason: string): void;
}

export interface LinkClientOptions {
  /** host:port of the root's link listener */
  address: string;
  token: string;
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
}

type Call = grpc.ClientDuplexStream<ClusterToRoot, unknown>;

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

  constructor(o: LinkClientOptions) {
    this.#o = o;
    this.#log = o.log ?? silentLogger;
    this.#backoff = o.initialBackoffMs ?? 200;
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

  /** number of streams opened so far */
  get attempts(): number {
    return this.#attempts;
  }

  start(): void {
    if (this.#closed || this.#call) return;
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
  }

  #open(): void {
    this.#attempts++;
    const client = new grpc.Client(this.#o.address, grpc.credentials.createInsecure(), LINK_CHANNEL_OPTIONS);
    const call = client.makeBidiStreamRequest<ClusterToRoot, unknown>(LINK_SERVICE_PATH, encodeMessage, decodeMessage);
    this.#client = client;
    this.#call = call;
    this.#welcomed = false;
    call.on('data', (raw: unknown) => this.#onData(call, raw));
    call.on('error', (err: grpc.ServiceError) => this.#down(call, `stream error: ${err.details || err.message}`));
    call.on('end', () => this.#down(call, 'the root ended the stream'));
    call.on('close', () => this.#down(call, 'stream closed'));
    this.#armSilence(call, this.#o.helloTimeoutMs ?? 10_000);
    call.write({ type: 'hello', token: this.#o.token, cluster_name: this.#o.clusterName, cluster_location: this.#o.clusterLocation, version: this.#o.version });
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
        this.#clusterId = msg.cluster_id;
        this.#lastReject = null;
        this.#backoff = this.#o.initialBackoffMs ?? 200;
        this.#log.info(`link: connected to the root as cluster ${msg.cluster_id}`);
        this.#o.handlers.onWelcome(msg.cluster_id);
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
    if (call && was) this.#o.handlers.onDown?.(reason);
    return call !== undefined;
  }

  #down(call: Call, reason: string): void {
    if (call !== this.#call) return;
    const was = this.#welcomed;
    this.#teardown(reason);
    if (this.#closed) return;
    if (was) this.#log.warn(`link: lost the root (${reason}); reconnecting`);
    else this.#log.debug(`link: attempt failed (${reason}); retrying in ${this.#backoff} ms`);
    const delay = this.#backoff;
    this.#backoff = Math.min(this.#o.maxBackoffMs ?? 5000, Math.max(1, this.#backoff * 2));
    this.#retryTimer = setTimeout(() => {
      if (!this.#closed) this.#open();
    }, delay);
  }
}
