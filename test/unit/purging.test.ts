import { describe, expect, it } from 'vitest';
import { repeatPurge } from '../../src/server/purging.js';
import { ManualClock } from '../helpers/manualClock.js';

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A purge that takes `takesMs` of the manual clock each time it runs (whole seconds), and records when it started. */
function setup(takesMs: number, fail = false) {
  const clock = new ManualClock();
  const started: number[] = [];
  const errors: unknown[] = [];
  const purge = async () => {
    started.push(clock.now());
    if (takesMs > 0) await new Promise<void>((resolve) => clock.setTimer(() => resolve(), takesMs));
    if (fail) throw new Error('database gone');
  };
  const stop = repeatPurge(purge, { intervalMs: 60_000, maxShare: 0.01, onError: (err) => errors.push(err), clock });
  /** Lets the clock reach `t` a second at a time, letting each purge go on between steps. */
  const advanceTo = async (t: number) => {
    while (clock.time < t) {
      clock.advanceTo(Math.min(t, clock.time + 1_000));
      await settle();
    }
  };
  return { clock, started, errors, stop, advanceTo };
}

describe('repeatPurge', () => {
  it('purges every interval while a purge is quick', async () => {
    const { started, advanceTo } = setup(0);
    await advanceTo(200_000);
    expect(started).toEqual([60_000, 120_000, 180_000]);
  });

  it('waits 1 / maxShare times as long as a slow purge took before the next, so purging keeps to its share of the time', async () => {
    const { started, advanceTo } = setup(4_000);
    await advanceTo(1_000_000);
    expect(started).toEqual([60_000, 464_000, 868_000]);
  });

  it('reports a failed purge and still purges again', async () => {
    const { started, errors, advanceTo } = setup(0, true);
    await advanceTo(130_000);
    expect(started).toEqual([60_000, 120_000]);
    expect(errors.map(String)).toEqual(['Error: database gone', 'Error: database gone']);
  });

  it('stops: no purge after stop, not even after one that was running', async () => {
    const { started, stop, clock, advanceTo } = setup(4_000);
    await advanceTo(62_000); // the purge started at 60 000 is still running
    stop();
    await advanceTo(500_000);
    expect(started).toEqual([60_000]);
    expect(clock.pending).toBe(0);
  });
});
