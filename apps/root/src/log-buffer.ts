/**
 * The lines the root holds for one log reader, between the cluster's logs_data messages and the
 * HTTP answer. Bounded (LOG_LIMITS.bufferLines / bufferBytes): when the reader is slower than the
 * instance, new lines are dropped and counted, and a note says so once there is room again.
 * A queue with a moving head: taking a line costs O(1) (Array#shift on 250,000 lines does not).
 */
import { LOG_LIMITS, capLogBatch, droppedNote } from '@oak/contracts';

export class LogBuffer {
  #items: string[] = [];
  #head = 0;
  #bytes = 0;
  #dropped = 0;
  readonly #maxLines: number;
  readonly #maxBytes: number;

  constructor(maxLines: number = LOG_LIMITS.bufferLines, maxBytes: number = LOG_LIMITS.bufferBytes) {
    this.#maxLines = maxLines;
    this.#maxBytes = maxBytes;
  }

  get length(): number {
    return this.#items.length - this.#head + (this.#dropped > 0 ? 1 : 0);
  }

  /** lines dropped so far because the buffer was full (not yet reported) */
  get dropped(): number {
    return this.#dropped;
  }

  /** Adds one cluster message's lines: cut to LOG_LIMITS per batch, then to the room left. */
  push(lines: readonly unknown[]): void {
    const batch = capLogBatch(lines).lines;
    for (const line of batch) {
      if (this.#items.length - this.#head >= this.#maxLines || this.#bytes + line.length > this.#maxBytes) {
        this.#dropped++;
        continue;
      }
      this.#items.push(line);
      this.#bytes += line.length;
    }
  }

  /** The next line (a note first when lines were dropped and there is room again), or undefined. */
  shift(): string | undefined {
    if (this.#head >= this.#items.length) {
      if (this.#dropped === 0) return undefined;
      const n = this.#dropped;
      this.#dropped = 0;
      return droppedNote(n, 'the reader was slower than the instance');
    }
    const line = this.#items[this.#head] as string;
    this.#items[this.#head] = '';
    this.#head++;
    this.#bytes -= line.length;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return line;
  }
}
