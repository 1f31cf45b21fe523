/**
 * Two event streams read at once while the tab switches from one to the other (events.ts): each
 * event comes on both, some (published before the newer stream subscribed, or of a type only one
 * carries) on one only. Pure. An event is handed over when its stream has now carried it more
 * often than it was handed over, so each is handed over once and two events with the same text
 * (the same service updated twice in a second) are both handed over.
 */
export class OverlapDedupe<K> {
  private readonly handed = new Map<string, number>();
  private readonly carried = new Map<K, Map<string, number>>();

  /** true when `data`, just read from `stream`, is to be handed to the views */
  take(stream: K, data: string): boolean {
    let mine = this.carried.get(stream);
    if (mine === undefined) {
      mine = new Map();
      this.carried.set(stream, mine);
    }
    const n = (mine.get(data) ?? 0) + 1;
    mine.set(data, n);
    if (n <= (this.handed.get(data) ?? 0)) return false;
    this.handed.set(data, n);
    return true;
  }
}
