import { CountsByKey } from '../countsByKey.js';

/**
 * Runs tasks at most `concurrency` at once, the waiting ones taking turns by key (a client's
 * address): each key with tasks waiting starts one per round, so a key with thousands waiting
 * delays another key's task by about one task per busy key, not by its whole backlog. A key may
 * have at most `perKey` tasks waiting or running; `run` refuses more (null), so that one key's
 * backlog cannot grow without bound.
 */
export class FairTurns {
  private running = 0;
  /** The starts of the tasks waiting, by key, in the order the keys take their turns. */
  private readonly waiting = new Map<string, Array<() => void>>();
  private readonly inHand = new CountsByKey();

  constructor(
    private readonly concurrency: number,
    private readonly perKey: number,
  ) {}

  run<T>(key: string, task: () => Promise<T>): Promise<T> | null {
    if (this.inHand.of(key) >= this.perKey) return null;
    this.inHand.add(key);
    return new Promise<void>((start) => this.enqueue(key, start))
      .then(task)
      .finally(() => {
        this.inHand.remove(key);
        this.running--;
        this.startNext();
      });
  }

  private enqueue(key: string, start: () => void): void {
    if (this.running < this.concurrency) {
      this.running++;
      start();
      return;
    }
    const queue = this.waiting.get(key);
    if (queue) queue.push(start);
    else this.waiting.set(key, [start]);
  }

  private startNext(): void {
    while (this.running < this.concurrency) {
      const next = this.waiting.entries().next();
      if (next.done) return;
      const [key, queue] = next.value;
      const start = queue.shift()!;
      // To the back of the round, if it has more.
      this.waiting.delete(key);
      if (queue.length > 0) this.waiting.set(key, queue);
      this.running++;
      start();
    }
  }
}
