/**
 * A push-driven async iterator: the producer pushes values and ends it; the consumer (graphql-ws)
 * iterates. `onReturn` runs once when the consumer stops early or the queue ends.
 *
 * Every idle subscription holds one, so it is kept small: the buffer exists only while values
 * wait to be read. A subclass may override `ended()` instead of passing `onReturn` (one object
 * per subscriber instead of a queue plus a closure).
 */
export class EventQueue<T> implements AsyncIterableIterator<T> {
  private buffered: T[] | null = null;
  private waiting: ((result: IteratorResult<T>) => void) | null = null;
  private done = false;

  constructor(private onReturn: (() => void) | null = null) {}

  get closed(): boolean {
    return this.done;
  }

  push(value: T): void {
    if (this.done) return;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value, done: false });
    } else {
      (this.buffered ??= []).push(value);
    }
  }

  /** Ends the stream after what was pushed so far has been read. */
  end(): void {
    if (this.done) return;
    this.done = true;
    this.ended();
    if (this.waiting && !this.buffered?.length) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<T>> {
    const buffered = this.buffered;
    if (buffered) {
      const value = buffered.shift()!;
      if (buffered.length === 0) this.buffered = null;
      return Promise.resolve({ value, done: false });
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiting = resolve));
  }

  return(): Promise<IteratorResult<T>> {
    this.buffered = null;
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Runs once, when the queue ends (by the producer or because the consumer stopped). */
  protected ended(): void {
    const onReturn = this.onReturn;
    this.onReturn = null;
    onReturn?.();
  }
}
