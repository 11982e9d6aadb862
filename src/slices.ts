import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * Runs `apply` on each item, letting the event loop turn whenever the weights applied since its
 * last turn reach `perTurn`: work for thousands of sockets in one stretch would hold the process
 * for seconds, with its health checks, database pings and change feed waiting behind it.
 */
export async function inSlices<T>(items: Iterable<T>, perTurn: number, weight: (item: T) => number, apply: (item: T) => void): Promise<void> {
  let sliced = 0;
  for (const item of items) {
    if (sliced >= perTurn) {
      await nextTurn();
      sliced = 0;
    }
    sliced += weight(item);
    apply(item);
  }
}
