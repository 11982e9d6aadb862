/**
 * A push-driven async iterator: the producer pushes values and ends it; the consumer (graphql-ws)
 * iterates. `onReturn` runs once when the consumer stops early or the queue ends.
 */
export class EventQueue<T> implements AsyncIterableIterator<T> {
  private readonly buffered: T[] = [];
  private waiting: ((result: IteratorResult<T>) => void) | null = null;
  private ended = false;

  constructor(private onReturn: (() => void) | null = null) {}

  get closed(): boolean {
    return this.ended;
  }

  push(value: T): void {
    if (this.ended) return;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value, done: false });
    } else {
      this.buffered.push(value);
    }
  }

  /** Ends the stream after what was pushed so far has been read. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.finish();
    if (this.waiting && this.buffered.length === 0) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.buffered.length > 0) return Promise.resolve({ value: this.buffered.shift()!, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiting = resolve));
  }

  return(): Promise<IteratorResult<T>> {
    this.buffered.length = 0;
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private finish(): void {
    const onReturn = this.onReturn;
    this.onReturn = null;
    onReturn?.();
  }
}
