/**
 * One read at a time per stack for a connection served by aedes (issue 13).
 *
 * aedes reads a connection in paused mode: on 'readable', and again each time a packet it parsed
 * has been handled, it calls `conn.read()` and hands the chunk to its MQTT parser. A packet that is
 * handled at once (a QoS 0 publish nobody subscribes to) asks for the next chunk from within the
 * parser's 'packet' event, that is from inside the parse of the previous chunk. With a socket that
 * read returns nothing (the last read took the whole buffer; more arrives on a later turn of the
 * event loop: TCP and TLS floods of 50,000-200,000 publishes never read reentrantly here), but a
 * stream that hands over data synchronously when it is read (a Readable whose `_read()` pushes at
 * once) feeds the parser while it is still inside its previous parse. The parser is not
 * reentrant: it loses its place in the byte stream and the connection is closed ("Invalid header
 * flag bits", after about 1,500 small publishes), and the stack grows by one parse per chunk
 * (on a smaller stack "Maximum call stack size exceeded" comes first, uncaught: the process ends).
 *
 * The guard: while the data of a read is being processed (from that read until the stack has
 * unwound, i.e. the next microtask checkpoint), a further `read()` returns null, and the
 * connection emits 'readable' again on the next turn of the event loop so that aedes asks once
 * more. aedes' own accounting of the packets in flight is left alone; to it the deferred read is
 * a read that found no data, followed by data arriving. `read(0)` (a stream's own "fetch more",
 * it never returns data) passes unguarded.
 */
import type { Readable } from 'node:stream';

export function guardReads(conn: Readable): void {
  const read = conn.read.bind(conn);
  /** a read returned data and the stack has not unwound since */
  let busy = false;
  /** a read was refused and no read has been made since */
  let refused = false;
  let wake: NodeJS.Immediate | undefined;
  const unwound = (): void => {
    busy = false;
  };
  const again = (): void => {
    wake = undefined;
    if (!refused || conn.destroyed) return;
    refused = false;
    conn.emit('readable');
  };
  conn.read = (size?: number): unknown => {
    if (size === 0) return read(0);
    if (busy) {
      refused = true;
      wake ??= setImmediate(again);
      return null;
    }
    refused = false;
    const data: unknown = read(size);
    if (data !== null) {
      busy = true;
      queueMicrotask(unwound);
    }
    return data;
  };
}
