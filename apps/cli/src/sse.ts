/** Reading GET /api/events (text/event-stream) and other line streams from a fetch Response. */
import type { OakEvent } from '@oak/contracts';

export interface SseMessage {
  event: string;
  data: string;
}

/** The lines of a streamed text body, as they arrive (without their newline). */
export async function* lines(body: ReadableStream<Uint8Array> | null): AsyncGenerator<string> {
  if (body === null) return;
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let nl = buf.indexOf('\n');
    while (nl !== -1) {
      yield buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
    }
  }
  buf += decoder.decode();
  if (buf !== '') yield buf;
}

/** Server-sent events of a response body; comments and `retry:` lines are skipped. */
export async function* sseMessages(body: ReadableStream<Uint8Array> | null): AsyncGenerator<SseMessage> {
  let event = 'message';
  let data: string[] = [];
  for await (const line of lines(body)) {
    if (line === '') {
      if (data.length > 0) yield { event, data: data.join('\n') };
      event = 'message';
      data = [];
    } else if (line.startsWith(':')) {
      continue;
    } else {
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
  }
}

/** OakEvents of a response body; messages that do not parse are skipped. */
export async function* oakEvents(body: ReadableStream<Uint8Array> | null, onEnd?: (reason: string) => void): AsyncGenerator<OakEvent> {
  for await (const m of sseMessages(body)) {
    // the root's last message before it ends a stream (token expired, logged out, demoted, removed)
    if (m.event === 'end') {
      try {
        const r = (JSON.parse(m.data) as { reason?: unknown }).reason;
        if (typeof r === 'string') onEnd?.(r);
      } catch {
        // no reason given
      }
      continue;
    }
    try {
      const e = JSON.parse(m.data) as OakEvent;
      if (typeof e === 'object' && e !== null && typeof e.type === 'string') yield e;
    } catch {
      // not an event of ours
    }
  }
}
