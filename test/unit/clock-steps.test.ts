import { describe, expect, it } from 'vitest';
import { ClockStepWatch } from '../../src/engine/clockSteps.js';

describe('ClockStepWatch', () => {
  function clocks() {
    const c = { wall: 1_000_000, monotonic: 50 };
    const watch = new ClockStepWatch(() => c.wall, () => c.monotonic, 250);
    const pass = (ms: number) => {
      c.wall += ms;
      c.monotonic += ms;
    };
    return { c, watch, pass };
  }

  it('sees no step while both clocks move together, however long between checks', () => {
    const { watch, pass } = clocks();
    pass(1_000);
    expect(watch.check()).toBe(0);
    pass(86_400_000);
    expect(watch.check()).toBe(0);
  });

  it('reports a forward step (a machine resumed: the monotonic clock stood still) and a backward one, once each', () => {
    const { c, watch, pass } = clocks();
    pass(1_000);
    c.wall += 3_600_000;
    expect(watch.check()).toBe(3_600_000);
    pass(1_000);
    expect(watch.check()).toBe(0);
    c.wall -= 30_000;
    expect(watch.check()).toBe(-30_000);
  });

  it('tolerates the small differences of reading two clocks one after the other', () => {
    const { c, watch } = clocks();
    c.wall += 200;
    expect(watch.check()).toBe(0);
    c.monotonic += 200;
    expect(watch.check()).toBe(0);
  });
});
