/**
 * The cluster link inside one process (1-DOC, issue 9): a root and a cluster in the same process
 * talk over an in-memory duplex pair instead of gRPC + TLS on loopback. Only the transport
 * differs: the root's end goes through the same session code as a gRPC stream (hello with the
 * cluster join token, pings, INACTIVE when the stream closes, parseClusterToRoot with the hello
 * size limit) and the cluster's LinkClient through the same code as its gRPC call
 * (parseRootToCluster, pongs, reconnect when the stream ends).
 *
 * Every message is copied as it would be on the wire: encoded when written (the writer may change
 * its object afterwards) and decoded by the receiving side's decoder, so neither side ever holds
 * an object of the other, and the byte limits of the gRPC channel hold here too (a message over
 * the receiver's limit fails the stream, as RESOURCE_EXHAUSTED does over gRPC). Messages, ends
 * and closes arrive in order, each in a later turn of the event loop (setImmediate, as socket data
 * would): never inside the writer's call and never inside the writer's promise chain, the orders
 * both sides know from gRPC (on SQLite a reconciler pass runs in microtasks alone: a microtask
 * delivery would put a cluster's answer in the middle of the pass that sent the command). Cost of
 * a deploy + status round trip: bench/tools/link-cost.ts.
 */
import { EventEmitter } from 'node:events';
import { encodeLinkMessage } from '@oak/contracts';
import type { ClusterToRoot, RootToCluster } from '@oak/contracts';

/** One direction of the pair: the largest message its reader takes, and its reader's decoder. */
export interface InProcessDirection {
  maxBytes: number;
  decode(buf: Buffer): unknown;
}

/** The peer a root logs for an in-process cluster (gRPC gives `ipv4:127.0.0.1:port`). */
export const IN_PROCESS_PEER = 'in-process';

type EndEvent = 'data' | 'end' | 'error' | 'close' | 'cancelled';

/** What both ends share: who is closed, and the order of what arrives. */
class Wire {
  /** no event for the root's end anymore */
  rootDone = false;
  /** no event for the cluster's end anymore */
  clusterDone = false;
  readonly root: InProcessRootEnd;
  readonly cluster: InProcessClusterEnd;
  constructor(
    readonly toRoot: InProcessDirection,
    readonly toCluster: InProcessDirection,
  ) {
    this.root = new InProcessRootEnd(this);
    this.cluster = new InProcessClusterEnd(this);
  }

  /** an event on one end, later and in order; nothing after that end's 'close' */
  emit(side: 'root' | 'cluster', event: EndEvent, arg?: unknown): void {
    setImmediate(() => {
      const end = side === 'root' ? this.root : this.cluster;
      if (side === 'root' ? this.rootDone : this.clusterDone) return;
      if (event === 'close') {
        if (side === 'root') this.rootDone = true;
        else this.clusterDone = true;
      }
      // an 'error' nobody listens to would throw out of the microtask (EventEmitter's rule)
      if (event === 'error' && end.listenerCount('error') === 0) return;
      if (event === 'data') end.emit('data', (side === 'root' ? this.toRoot : this.toCluster).decode(arg as Buffer));
      else if (arg === undefined) end.emit(event);
      else end.emit(event, arg);
    });
  }

  /** a failed stream: an error and a close on both ends (as a broken gRPC call) */
  fail(rootErr: Error, clusterErr: Error): void {
    this.root.finished = true;
    this.cluster.finished = true;
    this.emit('root', 'error', rootErr);
    this.emit('root', 'close');
    this.emit('cluster', 'error', clusterErr);
    this.emit('cluster', 'close');
  }

  /** writes one message towards `to`: the bytes are taken now, read by `to`'s decoder later */
  send(to: 'root' | 'cluster', msg: unknown): boolean {
    const dir = to === 'root' ? this.toRoot : this.toCluster;
    // throws OAK_LIMIT_EXCEEDED over MAX_LINK_MESSAGE_BYTES, as gRPC's serializer does
    const buf = encodeLinkMessage(msg);
    if (buf.byteLength > dir.maxBytes) {
      const e = linkError(`RESOURCE_EXHAUSTED: Received message larger than max (${buf.byteLength} vs. ${dir.maxBytes})`);
      this.fail(e, e);
      return false;
    }
    this.emit(to, 'data', buf);
    return true;
  }
}

function linkError(message: string): Error {
  return Object.assign(new Error(message), { details: message });
}

/**
 * The root's end: what the link server's session code uses of a gRPC ServerDuplexStream.
 * `end()` finishes the call (the cluster sees the stream end), `destroy()` breaks it.
 */
export class InProcessRootEnd extends EventEmitter {
  finished = false;
  cancelled = false;
  destroyed = false;
  readonly #wire: Wire;
  constructor(wire: Wire) {
    super();
    this.#wire = wire;
  }

  getPeer(): string {
    return IN_PROCESS_PEER;
  }

  /** false (dropped) once the call is over, as a write into a closing gRPC call goes nowhere */
  write(msg: RootToCluster): boolean {
    if (this.finished) return false;
    return this.#wire.send('cluster', msg);
  }

  end(): void {
    if (this.finished) return;
    this.finished = true;
    this.#wire.cluster.finished = true;
    this.#wire.emit('cluster', 'end');
    this.#wire.emit('cluster', 'close');
    this.#wire.emit('root', 'close');
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.#wire.fail(linkError('CANCELLED: the link stream was destroyed'), linkError('UNAVAILABLE: the root closed the link'));
  }
}

/**
 * The cluster's end: what LinkClient uses of a gRPC ClientDuplexStream. `cancel()` is how a
 * cluster leaves (the root sees the call cancelled and closed, the cluster INACTIVE at once).
 */
export class InProcessClusterEnd extends EventEmitter {
  finished = false;
  #halfClosed = false;
  readonly #wire: Wire;
  constructor(wire: Wire) {
    super();
    this.#wire = wire;
  }

  getPeer(): string {
    return IN_PROCESS_PEER;
  }

  write(msg: ClusterToRoot): boolean {
    if (this.finished) return false;
    return this.#wire.send('root', msg);
  }

  /** half-close: the root's end sees 'end' */
  end(): void {
    if (this.finished || this.#halfClosed) return;
    this.#halfClosed = true;
    this.#wire.emit('root', 'end');
  }

  cancel(): void {
    if (!this.finished) {
      this.finished = true;
      this.#wire.root.finished = true;
      this.#wire.root.cancelled = true;
      this.#wire.emit('root', 'cancelled');
      this.#wire.emit('root', 'close');
    }
    this.#wire.emit('cluster', 'close');
  }
}

/** A connected pair: give `root` to the link server's session code and `cluster` to a LinkClient. */
export function inProcessLinkPair(toRoot: InProcessDirection, toCluster: InProcessDirection): { root: InProcessRootEnd; cluster: InProcessClusterEnd } {
  const w = new Wire(toRoot, toCluster);
  return { root: w.root, cluster: w.cluster };
}

/** A pair whose root is gone: the cluster's end fails at once, as a dial to a closed port. */
export function refusedLinkStream(reason: string): InProcessClusterEnd {
  const w = new Wire({ maxBytes: 0, decode: () => undefined }, { maxBytes: 0, decode: () => undefined });
  w.rootDone = true;
  w.cluster.finished = true;
  w.emit('cluster', 'error', linkError(`UNAVAILABLE: ${reason}`));
  w.emit('cluster', 'close');
  return w.cluster;
}
