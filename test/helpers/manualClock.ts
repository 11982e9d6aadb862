import type { TimerClock } from '../../src/engine/scheduler.js';

/**
 * A manual clock: timers fire only when the test advances time, in deadline order. `now()` is the
 * wall clock: `time` plus the steps made with `stepWall`, which timers (monotonic) do not see.
 */
export class ManualClock implements TimerClock {
  time = 0;
  private wallSteps = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private nextId = 1;
  readonly delays: number[] = [];

  now = () => this.time + this.wallSteps;

  /** Steps the wall clock by `ms` (NTP, a machine resumed) without moving the timers' time. */
  stepWall(ms: number) {
    this.wallSteps += ms;
  }

  setTimer = (fn: () => void, ms: number) => {
    this.delays.push(ms);
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + ms, fn });
    return id;
  };

  clearTimer = (id: unknown) => {
    this.timers.delete(id as number);
  };

  get pending() {
    return this.timers.size;
  }

  advanceTo(t: number) {
    for (;;) {
      const due = [...this.timers.entries()].filter(([, x]) => x.at <= t).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].fn();
    }
    this.time = t;
  }
}
