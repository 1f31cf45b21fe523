/**
 * A keyed work queue (issue 9): the reconciler's shell runs one pass per service id at a time.
 *
 * - `request(key)`: a pass of `key` runs soon. Requests of a key that is waiting are merged into
 *   one; a request that arrives while the key's pass runs makes it run exactly once more after.
 * - At most `concurrency` keys run at the same time (default 4); the others wait in FIFO order.
 * - A pass that throws is logged (the key is not retried by the queue: the periodic resync heals).
 * - `idle()` resolves when nothing is waiting or running (tests); `close()` drops what waits and
 *   resolves when the running passes ended; requests after close are ignored.
 */

export interface KeyedQueueLog {
  error(obj: object, msg: string): void;
}

export interface KeyedQueueOptions {
  /** runs one pass of `key` */
  run: (key: string) => Promise<void>;
  /** keys running at the same time (default 4) */
  concurrency?: number;
  log?: KeyedQueueLog;
}

export class KeyedQueue {
  readonly #run: (key: string) => Promise<void>;
  readonly #concurrency: number;
  readonly #log: KeyedQueueLog | undefined;
  /** keys waiting for a slot, in request order (a Set keeps the order and merges repeats) */
  readonly #waiting = new Set<string>();
  /** keys whose pass runs now */
  readonly #running = new Set<string>();
  /** running keys requested again during their pass */
  readonly #again = new Set<string>();
  #idleWaiters: (() => void)[] = [];
  #closed = false;

  constructor(o: KeyedQueueOptions) {
    this.#run = o.run;
    this.#concurrency = Math.max(1, o.concurrency ?? 4);
    this.#log = o.log;
  }

  /** a pass of `key` runs soon (merged with a waiting one; once more after a running one) */
  request(key: string): void {
    if (this.#closed) return;
    if (this.#running.has(key)) {
      this.#again.add(key);
      return;
    }
    this.#waiting.add(key);
    this.#pump();
  }

  /** keys waiting or running */
  get size(): number {
    return this.#waiting.size + this.#running.size;
  }

  has(key: string): boolean {
    return this.#waiting.has(key) || this.#running.has(key);
  }

  /** resolves once nothing waits or runs */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** no new passes; resolves when the running ones ended */
  async close(): Promise<void> {
    this.#closed = true;
    this.#waiting.clear();
    this.#again.clear();
    await this.idle();
  }

  #pump(): void {
    while (this.#running.size < this.#concurrency && this.#waiting.size > 0) {
      const key = this.#waiting.values().next().value as string;
      this.#waiting.delete(key);
      this.#start(key);
    }
    if (this.size === 0) {
      const ws = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of ws) w();
    }
  }

  #start(key: string): void {
    this.#running.add(key);
    void (async () => {
      try {
        await this.#run(key);
      } catch (err) {
        this.#log?.error({ err, key }, 'reconcile pass failed');
      } finally {
        this.#running.delete(key);
        if (this.#again.delete(key) && !this.#closed) this.#waiting.add(key);
        this.#pump();
      }
    })();
  }
}
