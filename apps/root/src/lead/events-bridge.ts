/**
 * Events across roots (several roots on one PostgreSQL): every event this root publishes is also
 * sent as `store.notify('oak_events', {v:1, origin, event})`, and every root hands the events of
 * the others (origin ≠ its own) to its SSE clients (EventHub.deliver, never forwarded again).
 *
 * Bounded: publish() only queues (at most `queueCap` events; when full the oldest is dropped and
 * counted), one sender drains the queue, so a burst never blocks the publisher. An event whose
 * JSON exceeds the notify limit (7,000 bytes, PostgreSQL's is 8,000) is sent as a reference: an
 * instance event as {ref: {type: 'instance', microserviceID, instance_number}}, which receivers
 * turn back into an event from the store's row; any other event that big (none is: they carry
 * ids and names) is dropped with a log line. A payload that is not one of ours (junk, too big,
 * wrong shape) is ignored with a log line.
 */
import type { OakEvent } from '@oak/contracts';
import type { Store } from '@oak/store';
import { instanceDoc } from '../docs.ts';
import type { EventHub } from '../events.ts';
import type { LeaseLog } from './leader.ts';
import { limitedWarn } from './log-limit.ts';

export const EVENTS_CHANNEL = 'oak_events';
/** what store.notify takes at most (bytes of the payload) */
export const NOTIFY_MAX_BYTES = 7000;
export const DEFAULT_EVENT_QUEUE_CAP = 1000;

export interface EventBridgeStats {
  sent: number;
  /** sent as a reference (too big) */
  refs: number;
  /** dropped from a full queue (oldest first) */
  dropped: number;
  /** too big and not referable, or notify failed */
  lost: number;
  /** metrics events not sent because the queue was half full (state events keep the room) */
  shed: number;
  /** others' events delivered here */
  received: number;
  /** payloads that were not ours */
  ignored: number;
}

export interface EventBridgeOptions {
  store: Pick<Store, 'notify' | 'listen' | 'getService' | 'getInstance'>;
  hub: EventHub;
  /** this root (its lease holder id) */
  origin: string;
  log: LeaseLog;
  queueCap?: number;
  /** payload limit (tests) */
  maxBytes?: number;
}

type Wire = { v: 1; origin: string; event: OakEvent } | { v: 1; origin: string; ref: { type: 'instance'; microserviceID: string; instance_number: number } };

const ID = (x: unknown): x is string => typeof x === 'string' && x.length > 0 && x.length <= 256;

/** The payload as one of ours, or a reason why not. */
export function parseEventPayload(text: string, maxBytes = NOTIFY_MAX_BYTES + 1000): Wire | string {
  if (text.length > maxBytes) return `payload of ${text.length} characters`;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null) return 'not an object';
  const o = v as Record<string, unknown>;
  if (o.v !== 1 || !ID(o.origin)) return 'no version or origin';
  if (o.ref !== undefined) {
    const r = o.ref as Record<string, unknown> | null;
    if (typeof r !== 'object' || r === null || r.type !== 'instance' || !ID(r.microserviceID) || !Number.isInteger(r.instance_number) || (r.instance_number as number) < 0) return 'bad reference';
    return { v: 1, origin: o.origin, ref: { type: 'instance', microserviceID: r.microserviceID, instance_number: r.instance_number as number } };
  }
  const e = o.event as Record<string, unknown> | null;
  if (typeof e !== 'object' || e === null) return 'no event';
  switch (e.type) {
    case 'instance':
      if (!ID(e.microserviceID) || !ID(e.applicationID) || typeof e.job_name !== 'string' || typeof e.instance !== 'object' || e.instance === null) return 'bad instance event';
      break;
    case 'application':
      if (!ID(e.applicationID) || !['created', 'updated', 'deleted'].includes(String(e.action))) return 'bad application event';
      break;
    case 'service':
      if (!ID(e.microserviceID) || !ID(e.applicationID) || !['created', 'updated', 'deleted'].includes(String(e.action))) return 'bad service event';
      break;
    case 'cluster':
      if (!ID(e.cluster_id) || typeof e.cluster_name !== 'string' || !['connected', 'disconnected', 'updated'].includes(String(e.action))) return 'bad cluster event';
      break;
    case 'metrics': {
      if (!ID(e.microserviceID) || !ID(e.applicationID) || typeof e.job_name !== 'string' || typeof e.at !== 'number' || !Number.isFinite(e.at) || !Array.isArray(e.instances) || e.instances.length > 1000) return 'bad metrics event';
      const fine = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x >= 0;
      for (const r of e.instances as unknown[]) {
        const i = r as Record<string, unknown> | null;
        if (typeof i !== 'object' || i === null || !Number.isInteger(i.instance_number) || !fine(i.instance_number) || !fine(i.cpu_percent) || !fine(i.memory_mb)) return 'bad metrics event';
      }
      break;
    }
    default:
      return 'unknown event type';
  }
  return { v: 1, origin: o.origin, event: e as unknown as OakEvent };
}

export class EventBridge {
  readonly stats: EventBridgeStats = { sent: 0, refs: 0, dropped: 0, lost: 0, shed: 0, received: 0, ignored: 0 };
  readonly #o: EventBridgeOptions;
  readonly #cap: number;
  readonly #max: number;
  readonly #queue: OakEvent[] = [];
  #draining: Promise<void> | undefined;
  #unlisten: (() => Promise<void>) | undefined;
  #closed = false;
  /** last moment a drop was logged (one line per second at most) */
  #droppedLogAt = 0;
  /** ignored payloads: one line per second at most */
  readonly #ignoredWarn: (obj: object, msg: string) => void;

  constructor(o: EventBridgeOptions) {
    this.#o = o;
    this.#cap = Math.max(1, o.queueCap ?? DEFAULT_EVENT_QUEUE_CAP);
    this.#max = o.maxBytes ?? NOTIFY_MAX_BYTES;
    this.#ignoredWarn = limitedWarn(o.log);
  }

  async start(): Promise<void> {
    this.#unlisten = await this.#o.store.listen(EVENTS_CHANNEL, (p) => this.#receive(p));
    this.#o.hub.setForwarder((e) => this.push(e));
  }

  /** queues an event for the other roots (never blocks) */
  push(e: OakEvent): void {
    if (this.#closed) return;
    // readings come again with the next aggregate: under a backlog they give way, so that they
    // never push a state change (instance, service, application, cluster) out of the queue
    if (e.type === 'metrics' && this.#queue.length >= this.#cap / 2) {
      this.stats.shed++;
      return;
    }
    if (this.#queue.length >= this.#cap) {
      this.#queue.shift();
      this.stats.dropped++;
      const now = Date.now();
      if (now - this.#droppedLogAt >= 1000) {
        this.#droppedLogAt = now;
        this.#o.log.warn({ dropped: this.stats.dropped, cap: this.#cap }, 'lead: event queue full, oldest events dropped (the other roots miss them)');
      }
    }
    this.#queue.push(e);
    this.#kick();
  }

  #kick(): void {
    if (this.#draining) return;
    this.#draining = this.#drain().finally(() => {
      this.#draining = undefined;
      // pushed between the last shift and here
      if (this.#queue.length > 0) this.#kick();
    });
  }

  /** resolves when the queue is empty (tests) */
  async flushed(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  #encode(e: OakEvent): string | undefined {
    const origin = this.#o.origin;
    const full = JSON.stringify({ v: 1, origin, event: e });
    if (Buffer.byteLength(full) <= this.#max) return full;
    if (e.type === 'instance') {
      this.stats.refs++;
      return JSON.stringify({ v: 1, origin, ref: { type: 'instance', microserviceID: e.microserviceID, instance_number: e.instance.instance_number } });
    }
    this.stats.lost++;
    this.#o.log.warn({ type: e.type, bytes: Buffer.byteLength(full) }, 'lead: event too big for the other roots, not sent');
    return undefined;
  }

  async #drain(): Promise<void> {
    // yield first: a burst of publishes queues up before the first send
    await Promise.resolve();
    for (let e = this.#queue.shift(); e !== undefined; e = this.#queue.shift()) {
      const payload = this.#encode(e);
      if (payload === undefined) continue;
      try {
        await this.#o.store.notify(EVENTS_CHANNEL, payload);
        this.stats.sent++;
      } catch (err) {
        this.stats.lost++;
        this.#o.log.warn({ err: err instanceof Error ? err.message : String(err), type: e.type }, 'lead: sending an event to the other roots failed');
      }
    }
  }

  #receive(payload: string): void {
    const w = parseEventPayload(payload);
    if (typeof w === 'string') {
      this.stats.ignored++;
      this.#ignoredWarn({ reason: w, bytes: payload.length, ignored: this.stats.ignored }, `lead: ignored a payload on ${EVENTS_CHANNEL}`);
      return;
    }
    if (w.origin === this.#o.origin) return;
    if ('event' in w) {
      this.stats.received++;
      this.#o.hub.deliver(w.event);
      return;
    }
    const ref = w.ref;
    void (async () => {
      const s = await this.#o.store.getService(ref.microserviceID);
      const i = s ? await this.#o.store.getInstance(s.id, ref.instance_number) : undefined;
      if (!s || !i) return; // gone meanwhile: its removal has an event of its own
      this.stats.received++;
      this.#o.hub.deliver({ type: 'instance', microserviceID: s.id, applicationID: s.application_id, job_name: s.job_name, instance: instanceDoc(i) });
    })().catch((err: unknown) => this.#o.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'lead: reading a referenced event failed'));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#o.hub.setForwarder(undefined);
    await this.flushed();
    await this.#unlisten?.().catch(() => undefined);
  }
}
