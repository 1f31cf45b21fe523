/** The read loop of GET /api/events for the benches: each event's data, parsed, with performance.now() at its arrival. */
import type { OakEvent } from '@oak/contracts';

/** Opens `url` and calls `onEvent` for each event until `signal` aborts; resolves once the stream is open, with `done`: the end of its reading. */
export async function readEvents(url: string, signal: AbortSignal, onEvent: (e: OakEvent, at: number) => void): Promise<{ done: Promise<void> }> {
  const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal });
  if (!res.ok || !res.body) throw new Error(`GET /api/events -> ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const done = (async () => {
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const at = performance.now();
        buf += value;
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
          if (data) onEvent(JSON.parse(data) as OakEvent, at);
        }
      }
    } catch {
      // aborted at close
    }
  })();
  return { done };
}
