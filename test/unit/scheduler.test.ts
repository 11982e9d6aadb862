import { describe, expect, it } from 'vitest';
import { MAX_TIMER_MS, Scheduler, type TimerClock } from '../../src/engine/scheduler.js';
import { ManualClock } from '../helpers/manualClock.js';

function setup() {
  const clock = new ManualClock();
  const scheduler = new Scheduler(clock);
  const fired: Array<[string, number]> = [];
  const at = (key: string, t: number) => scheduler.schedule(key, t, () => fired.push([key, clock.now()]));
  return { clock, scheduler, fired, at };
}

describe('Scheduler', () => {
  it('fires each deadline once, in order, not before it is due', () => {
    const { clock, fired, at } = setup();
    at('b', 300);
    at('a', 100);
    at('c', 200);
    clock.advanceTo(99);
    expect(fired).toEqual([]);
    clock.advanceTo(1000);
    expect(fired).toEqual([
      ['a', 100],
      ['c', 200],
      ['b', 300],
    ]);
  });

  it('keeps a single timer for many deadlines', () => {
    const { clock, at } = setup();
    for (let i = 0; i < 10_000; i++) at(`k${i}`, 1000 + i);
    expect(clock.pending).toBe(1);
  });

  it('moves a rescheduled key and forgets a cancelled one', () => {
    const { clock, scheduler, fired, at } = setup();
    at('x', 100);
    at('y', 150);
    at('x', 500);
    scheduler.cancel('y');
    clock.advanceTo(400);
    expect(fired).toEqual([]);
    clock.advanceTo(600);
    expect(fired).toEqual([['x', 500]]);
    expect(scheduler.size).toBe(0);
  });

  it('fires deadlines that fall due together in one pass', () => {
    const { clock, fired, at } = setup();
    for (let i = 0; i < 5; i++) at(`same${i}`, 250);
    clock.advanceTo(250);
    expect(fired.map(([, t]) => t)).toEqual([250, 250, 250, 250, 250]);
  });

  it('waits past the 2^31-1 ms setTimeout limit in hops, firing exactly at the deadline', () => {
    const { clock, fired, at } = setup();
    const far = 3 * MAX_TIMER_MS + 12_345;
    at('far', far);
    expect(Math.max(...clock.delays)).toBeLessThanOrEqual(MAX_TIMER_MS);
    clock.advanceTo(far - 1);
    expect(fired).toEqual([]);
    clock.advanceTo(far);
    expect(fired).toEqual([['far', far]]);
  });

  it('fires the deadlines a forward step of the wall clock passed once told of the step, not a whole timer later', () => {
    // A machine resumed after an hour asleep: the wall clock has moved an hour, the timers' clock not at all.
    const { clock, scheduler, fired, at } = setup();
    at('passed', 60_000);
    at('ahead', 3_700_000);
    clock.stepWall(3_600_000);
    clock.advanceTo(10);
    expect(fired).toEqual([]);
    scheduler.clockStepped();
    clock.advanceTo(20);
    expect(fired.map(([key]) => key)).toEqual(['passed']);
    clock.advanceTo(100_020);
    expect(fired.map(([key]) => key)).toEqual(['passed', 'ahead']);
    expect(fired[1]![1]).toBe(3_700_000);
  });

  it('re-arms instead of firing when the timer goes off early', () => {
    const clock = new ManualClock();
    const early: TimerClock = { ...clock, now: clock.now, setTimer: (fn, ms) => clock.setTimer(fn, ms > 5 ? ms - 5 : ms), clearTimer: clock.clearTimer };
    const scheduler = new Scheduler(early);
    const fired: number[] = [];
    scheduler.schedule('k', 100, () => fired.push(clock.now()));
    clock.advanceTo(200);
    expect(fired).toHaveLength(1);
    expect(fired[0]).toBeGreaterThanOrEqual(100);
  });

  it('fires a deadline already in the past at once', () => {
    const { clock, fired, at } = setup();
    clock.advanceTo(1000);
    at('late', 10);
    clock.advanceTo(1000);
    expect(fired).toEqual([['late', 1000]]);
  });

  it('stays bounded when one key is rescheduled many times', () => {
    const { clock, scheduler, fired, at } = setup();
    for (let i = 0; i < 50_000; i++) at('renewed', 1000 + i);
    expect((scheduler as unknown as { heap: unknown[] }).heap.length).toBeLessThan(3000);
    clock.advanceTo(100_000);
    expect(fired).toEqual([['renewed', 50_999]]);
  });
});
