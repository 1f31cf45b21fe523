/** In-process fan-out of OakEvents to SSE subscribers (and anything else that listens). */
import type { OakEvent } from '@oak/contracts';

export type EventListener = (e: OakEvent) => void;

export class EventHub {
  private readonly listeners = new Set<EventListener>();

  publish(e: OakEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // a broken subscriber must not break the publisher
      }
    }
  }

  subscribe(l: EventListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  get size(): number {
    return this.listeners.size;
  }
}
