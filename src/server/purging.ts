import { systemClock, type TimerClock } from '../engine/scheduler.js';

/**
 * Runs `purge` every `intervalMs`, or less often when it is slow: the next run waits at least
 * `1 / maxShare` times as long as the last one took, so that purging never takes more than that
 * share of the time. Where the database has no TTL index (FerretDB 1.x) the purge is a scan of every
 * session (on SQLite about 0.1 ms a session: 6 s with 50 000), and every server process runs its
 * own: once a minute, 3 processes held the database a third of the time, delaying what met them.
 */
export function repeatPurge(
  purge: () => Promise<unknown>,
  o: { intervalMs: number; maxShare: number; onError: (err: unknown) => void; clock?: TimerClock },
): () => void {
  const clock = o.clock ?? systemClock;
  let timer: unknown = null;
  let stopped = false;
  const schedule = (ms: number) => {
    timer = clock.setTimer(() => void run(), ms);
    (timer as Partial<NodeJS.Timeout>).unref?.(); // never keeps the process alive
  };
  const run = async () => {
    const started = clock.now();
    await purge().catch(o.onError);
    if (!stopped) schedule(Math.max(o.intervalMs, (clock.now() - started) / o.maxShare));
  };
  schedule(o.intervalMs);
  return () => {
    stopped = true;
    clock.clearTimer(timer);
  };
}
