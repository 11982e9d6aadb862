/**
 * Deadlines for many keys behind a single timer: a binary min-heap ordered by deadline, with the
 * one `setTimeout` armed for the earliest. Rescheduling or cancelling a key leaves its old heap
 * entry behind, recognised as stale by no longer being the key's current entry. Waits longer than setTimeout's 2^31-1 ms
 * limit are split into shorter hops, and a deadline never fires before the clock reaches it.
 */
export interface TimerClock {
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const systemClock: TimerClock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** setTimeout's largest delay; longer waits are re-armed in hops of this length. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** One object per deadline, in the heap and (while current) in `live`: every followed session has one. */
interface Entry {
  key: string;
  at: number;
  fire: (key: string) => void;
}

export class Scheduler {
  private heap: Entry[] = [];
  /** The current entry of each key: any other entry of it in the heap is stale. */
  private readonly live = new Map<string, Entry>();
  private timer: unknown = null;
  private timerAt = Infinity;

  constructor(private readonly clock: TimerClock = systemClock) {}

  get size(): number {
    return this.live.size;
  }

  /**
   * Calls `fire` once (with the key, so that one function can serve many keys), at `at` (ms since
   * the epoch) or as soon after as possible; replaces any deadline of `key`.
   */
  schedule(key: string, at: number, fire: (key: string) => void): void {
    const entry: Entry = { key, at, fire };
    this.live.set(key, entry);
    this.push(entry);
    if (this.heap.length > 2 * this.live.size + 1024) this.compact();
    if (at < this.timerAt) this.arm();
  }

  cancel(key: string): void {
    this.live.delete(key);
  }

  /**
   * The wall clock was stepped (clockSteps.ts): the timer, armed in monotonic time, is armed again
   * for the earliest deadline as the wall clock now reads, so that those a forward step passed fire now.
   */
  clockStepped(): void {
    this.arm();
  }

  stop(): void {
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
    this.heap = [];
    this.live.clear();
  }

  private arm(): void {
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
    const next = this.peekLive();
    if (!next) return;
    const delay = Math.min(Math.max(0, next.at - this.clock.now()), MAX_TIMER_MS);
    this.timerAt = next.at;
    this.timer = this.clock.setTimer(() => this.run(), delay);
  }

  private run(): void {
    this.timer = null;
    this.timerAt = Infinity;
    const now = this.clock.now();
    const due: Entry[] = [];
    for (let next = this.peekLive(); next && next.at <= now; next = this.peekLive()) {
      this.pop();
      due.push(next);
      this.live.delete(next.key);
    }
    this.arm();
    for (const { key, fire } of due) fire(key);
  }

  /** The earliest entry that is still current, dropping stale ones on the way. */
  private peekLive(): Entry | undefined {
    while (this.heap.length > 0) {
      const top = this.heap[0]!;
      if (this.live.get(top.key) === top) return top;
      this.pop();
    }
    return undefined;
  }

  /** Rebuilds the heap from the current entries once stale ones outnumber them. */
  private compact(): void {
    this.heap = [];
    for (const entry of this.live.values()) this.push(entry);
  }

  private push(entry: Entry): void {
    const h = this.heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.at <= entry.at) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = entry;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= h.length) break;
      const right = left + 1;
      const child = right < h.length && h[right]!.at < h[left]!.at ? right : left;
      if (h[child]!.at >= last.at) break;
      h[i] = h[child]!;
      i = child;
    }
    h[i] = last;
  }
}
