import { describe, expect, it } from 'vitest';
import { FairTurns } from '../../src/store/fairTurns.js';

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** Tasks that finish when the test says; `order` records which started. */
function tasks() {
  const order: string[] = [];
  const finishers: Array<() => void> = [];
  const task = (name: string) => () =>
    new Promise<string>((resolve) => {
      order.push(name);
      finishers.push(() => resolve(name));
    });
  /** Finishes the oldest running task and lets the next ones start. */
  const finishOne = async () => {
    finishers.shift()!();
    await settle();
  };
  return { order, task, finishOne };
}

describe('FairTurns', () => {
  it('runs at most `concurrency` tasks, the waiting ones taking turns by key', async () => {
    const turns = new FairTurns(2, 100);
    const { order, task, finishOne } = tasks();
    for (let i = 1; i <= 5; i++) turns.run('flood', task(`flood${i}`));
    turns.run('b', task('b1'));
    turns.run('c', task('c1'));
    turns.run('b', task('b2'));
    await settle();
    expect(order).toEqual(['flood1', 'flood2']);
    for (let i = 0; i < 6; i++) await finishOne();
    // One of the flood's, then each other key's, then the flood's again: not the flood's whole backlog first.
    expect(order).toEqual(['flood1', 'flood2', 'flood3', 'b1', 'c1', 'flood4', 'b2', 'flood5']);
  });

  it("refuses a key's task beyond `perKey` waiting or running, and takes it again once one has finished", async () => {
    const turns = new FairTurns(1, 2);
    const { task, finishOne } = tasks();
    const first = turns.run('a', task('a1'));
    expect(turns.run('a', task('a2'))).not.toBeNull();
    expect(turns.run('a', task('a3'))).toBeNull();
    expect(turns.run('b', task('b1'))).not.toBeNull();
    await settle();
    await finishOne();
    expect(await first).toBe('a1');
    expect(turns.run('a', task('a4'))).not.toBeNull();
  });

  it('frees the place of a task that fails', async () => {
    const turns = new FairTurns(1, 1);
    await expect(turns.run('a', () => Promise.reject(new Error('read failed')))).rejects.toThrow('read failed');
    await expect(turns.run('a', async () => 'again')).resolves.toBe('again');
  });
});
