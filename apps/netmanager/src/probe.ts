/**
 * RTT between workers over the tunnel. One UDP socket on this worker's gateway address, port
 * DEFAULT_PROBE_PORT, both answers probes (echo) and sends them to the other workers' gateways,
 * so probes and answers cross the VXLAN tunnel like instance traffic does.
 *
 * Packet (16 bytes): "OAKP", type (1 probe, 2 answer), version 1, two zero bytes, an 8-byte nonce.
 * Anything else is ignored; answers are rate limited (token bucket). An answer counts only when
 * its nonce is outstanding and it comes from the address probed. RTT is the median of the last
 * `samples` answers; after `maxMisses` probes in a row without answer it is null.
 */
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from '@oak/bus';

export const PROBE_SIZE = 16;
const MAGIC = Buffer.from('OAKP', 'ascii');
const TYPE_PROBE = 1;
const TYPE_ANSWER = 2;
const VERSION = 1;

export function probePacket(type: 1 | 2, nonce: Buffer): Buffer {
  const b = Buffer.alloc(PROBE_SIZE);
  MAGIC.copy(b, 0);
  b[4] = type;
  b[5] = VERSION;
  nonce.copy(b, 8, 0, 8);
  return b;
}

/** the packet's type and nonce, or undefined for anything that is not a probe packet */
export function parseProbePacket(b: Buffer): { type: 1 | 2; nonce: Buffer } | undefined {
  if (b.length !== PROBE_SIZE || !b.subarray(0, 4).equals(MAGIC) || b[5] !== VERSION || b[6] !== 0 || b[7] !== 0) return undefined;
  const t = b[4];
  if (t !== TYPE_PROBE && t !== TYPE_ANSWER) return undefined;
  return { type: t, nonce: Buffer.from(b.subarray(8, 16)) };
}

export interface ProbeTarget {
  worker_id: string;
  address: string;
  /** default: the prober's own port */
  port?: number;
}

export interface ProberOptions {
  /** the gateway address (it appears when the NodeEngine configured the bridge: bind retries) */
  host: string;
  /** default DEFAULT_PROBE_PORT; 0 picks one (tests) */
  port: number;
  intervalMs: number;
  /** an answer later than this is a miss (default min(1000, 80% of the interval)) */
  timeoutMs?: number;
  samples?: number;
  maxMisses?: number;
  /** answers per second at most (default 200) */
  answerRate?: number;
  /** bind retry period while the address does not exist (default 200 ms) */
  bindRetryMs?: number;
  /** after each round: the RTT of every target measured so far (null: silent) */
  onResults?: (rtt: Map<string, number | null>) => void;
  log: Logger;
}

interface PeerState {
  samples: number[];
  misses: number;
}

export class Prober {
  readonly opts: Required<Omit<ProberOptions, 'onResults'>> & Pick<ProberOptions, 'onResults'>;
  private socket: Socket | undefined;
  private targets: ProbeTarget[] = [];
  private readonly outstanding = new Map<string, { worker_id: string; address: string; sentAt: number }>();
  private readonly state = new Map<string, PeerState>();
  private timer: NodeJS.Timeout | undefined;
  private bindTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private tokens: number;
  private lastRefill = performance.now();
  private boundPort = 0;
  private readyResolve: () => void = () => {};
  /** resolves once the socket is bound */
  readonly ready: Promise<void>;
  /** packets ignored (not probe packets, unknown nonces, over the rate) */
  ignored = 0;

  constructor(opts: ProberOptions) {
    this.opts = {
      timeoutMs: Math.min(1000, Math.floor(opts.intervalMs * 0.8)), samples: 5, maxMisses: 3, answerRate: 200, bindRetryMs: 200, ...opts,
    };
    this.tokens = this.opts.answerRate;
    this.ready = new Promise((r) => { this.readyResolve = r; });
  }

  get port(): number {
    return this.boundPort;
  }

  /** binds (retrying until the address exists) and starts the rounds; returns at once */
  start(): void {
    this.bind();
    this.timer = setInterval(() => this.round(), this.opts.intervalMs);
    this.timer.unref();
  }

  private bind(): void {
    if (this.closed) return;
    const s = createSocket({ type: isIP(this.opts.host) === 6 ? 'udp6' : 'udp4', reuseAddr: false });
    const retry = (err: Error): void => {
      s.close();
      if (this.closed) return;
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EADDRNOTAVAIL') this.opts.log.warn(`RTT probe socket ${this.opts.host}:${this.opts.port}: ${err.message}; retrying`);
      this.bindTimer = setTimeout(() => this.bind(), code === 'EADDRNOTAVAIL' ? this.opts.bindRetryMs : Math.max(this.opts.bindRetryMs, 2000));
      this.bindTimer.unref();
    };
    s.once('error', retry);
    s.bind({ address: this.opts.host, port: this.opts.port, exclusive: true }, () => {
      s.off('error', retry);
      if (this.closed) {
        s.close();
        return;
      }
      s.on('error', (err) => this.opts.log.debug(`RTT probe socket: ${err.message}`));
      s.on('message', (msg, rinfo) => this.onMessage(msg, rinfo.address, rinfo.port));
      this.socket = s;
      this.boundPort = s.address().port;
      this.opts.log.debug(`RTT probes on ${this.opts.host}:${this.boundPort}`);
      this.readyResolve();
    });
  }

  setTargets(targets: ProbeTarget[]): void {
    this.targets = targets;
    const ids = new Set(targets.map((t) => t.worker_id));
    for (const w of [...this.state.keys()]) if (!ids.has(w)) this.state.delete(w);
  }

  /** RTT per target measured so far: a number (ms), null (silent), absent (not known yet) */
  results(): Map<string, number | null> {
    const out = new Map<string, number | null>();
    for (const t of this.targets) {
      const st = this.state.get(t.worker_id);
      if (st === undefined) continue;
      if (st.misses >= this.opts.maxMisses) out.set(t.worker_id, null);
      else if (st.samples.length > 0) out.set(t.worker_id, median(st.samples));
    }
    return out;
  }

  private take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.opts.answerRate, this.tokens + ((now - this.lastRefill) / 1000) * this.opts.answerRate);
    this.lastRefill = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private onMessage(msg: Buffer, address: string, port: number): void {
    const p = parseProbePacket(msg);
    if (p === undefined) {
      this.ignored++;
      return;
    }
    if (p.type === TYPE_PROBE) {
      if (!this.take()) {
        this.ignored++;
        return;
      }
      this.socket?.send(probePacket(TYPE_ANSWER, p.nonce), port, address);
      return;
    }
    const k = p.nonce.toString('hex');
    const o = this.outstanding.get(k);
    if (o === undefined || o.address !== address) {
      this.ignored++;
      return;
    }
    this.outstanding.delete(k);
    const rtt = performance.now() - o.sentAt;
    if (rtt > this.opts.timeoutMs) return;
    const st = this.state.get(o.worker_id) ?? { samples: [], misses: 0 };
    st.misses = 0;
    st.samples.push(rtt);
    if (st.samples.length > this.opts.samples) st.samples.shift();
    this.state.set(o.worker_id, st);
  }

  /** closes the previous round (unanswered = missed), reports, sends the next */
  round(): void {
    const now = performance.now();
    for (const [k, o] of [...this.outstanding]) {
      if (now - o.sentAt < this.opts.timeoutMs) continue;
      this.outstanding.delete(k);
      const st = this.state.get(o.worker_id) ?? { samples: [], misses: 0 };
      st.misses++;
      if (st.misses >= this.opts.maxMisses) st.samples = [];
      this.state.set(o.worker_id, st);
    }
    if (this.targets.length > 0 && this.socket !== undefined) {
      try {
        this.opts.onResults?.(this.results());
      } catch (err) {
        this.opts.log.warn('RTT results handler failed', err);
      }
    }
    const s = this.socket;
    if (s === undefined) return;
    for (const t of this.targets) {
      const nonce = randomBytes(8);
      this.outstanding.set(nonce.toString('hex'), { worker_id: t.worker_id, address: t.address, sentAt: performance.now() });
      s.send(probePacket(TYPE_PROBE, nonce), t.port ?? this.boundPort, t.address, (err) => {
        if (err) this.opts.log.debug(`RTT probe to ${t.worker_id} (${t.address}): ${err.message}`);
      });
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.bindTimer);
    this.socket?.close();
    this.socket = undefined;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
