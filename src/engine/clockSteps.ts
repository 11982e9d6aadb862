/**
 * Deadlines are instants of the wall clock, but Node's timers count the monotonic clock. When the
 * wall clock is stepped (NTP correcting it; a virtual machine or a laptop resumed: the monotonic
 * clock stands still while the machine sleeps), a timer armed before then fires that much late, or
 * early. This notices a step: the two clocks moving apart by more than `toleranceMs` between checks.
 */
export class ClockStepWatch {
  private offset: number;

  constructor(
    private readonly wall: () => number,
    private readonly monotonic: () => number,
    private readonly toleranceMs: number,
  ) {
    this.offset = wall() - monotonic();
  }

  /** How far the wall clock was stepped since the last check (ms; negative: back), or 0. */
  check(): number {
    const offset = this.wall() - this.monotonic();
    const step = offset - this.offset;
    this.offset = offset;
    return Math.abs(step) > this.toleranceMs ? step : 0;
  }
}

/** Calls `onStep` within about a second of a step of the wall clock `wall` (ms); returns a function that stops watching. */
export function watchClockSteps(wall: () => number, onStep: (stepMs: number) => void): () => void {
  const watch = new ClockStepWatch(wall, () => performance.now(), STEP_TOLERANCE_MS);
  const timer = setInterval(() => {
    const step = watch.check();
    if (step !== 0) onStep(step);
  }, CHECK_INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** How far the wall clock `wall` (ms) is ahead of the monotonic clock: a step of the wall clock moves it. */
export const wallLead = (wall: () => number): number => wall() - performance.now();

const CHECK_INTERVAL_MS = 1_000;
/** Far more than NTP's slewing moves the wall clock between two checks (at most 0.5 ms a second). */
const STEP_TOLERANCE_MS = 250;

/** The wall clock was stepped between two readings of wallLead (`before` null: never read, as good as stepped). */
export const steppedBetween = (before: number | null, after: number): boolean => before === null || Math.abs(after - before) > STEP_TOLERANCE_MS;
