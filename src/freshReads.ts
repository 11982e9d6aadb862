/**
 * Reads of one key, one at a time, shared: whoever asks while a read of the key runs waits for the
 * next one, which starts when that one ends and is shared by everyone who asked meanwhile. So at
 * most one read per key runs, and every caller gets one that began after it asked (it sees every
 * change committed before it asked).
 */
export class FreshReads<K, V> {
  private readonly running = new Map<K, Promise<V>>();
  private readonly next = new Map<K, Promise<V>>();

  read(key: K, load: () => Promise<V>): Promise<V> {
    const queued = this.next.get(key);
    if (queued) return queued;
    const start = (): Promise<V> => {
      this.next.delete(key);
      const run = load().finally(() => {
        if (this.running.get(key) === run) this.running.delete(key);
      });
      this.running.set(key, run);
      return run;
    };
    const previous = this.running.get(key);
    if (!previous) return start();
    const waiting = previous.then(start, start);
    this.next.set(key, waiting);
    return waiting;
  }
}
