/**
 * In-process fan-out of OakEvents to SSE subscribers (and anything else that listens). With
 * several roots on one PostgreSQL (lead/events-bridge.ts), what this root publishes is also handed
 * to the forwarder (sent to the other roots) and what the others publish comes in through
 * deliver(), which reaches the local subscribers only (never forwarded again).
 */
import type { OakEvent } from '@oak/contracts';

export type EventListener = (e: OakEvent) => void;

export class EventHub {
  private readonly listeners = new Set<EventListener>();
  private forwarder: EventListener | undefined;

  /** an event of this root: local subscribers and the other roots */
  publish(e: OakEvent): void {
    this.deliver(e);
    if (this.forwarder) {
      try {
        this.forwarder(e);
      } catch {
        // the bridge must not break the publisher
      }
    }
  }

  /** an event to this root's subscribers only (one that another root published) */
  deliver(e: OakEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // a broken subscriber must not break the publisher
      }
    }
  }

  /** where published events also go (one forwarder; undefined removes it) */
  setForwarder(f: EventListener | undefined): void {
    this.forwarder = f;
  }

  subscribe(l: EventListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  get size(): number {
    return this.listeners.size;
  }
}
