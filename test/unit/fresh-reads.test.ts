import { describe, expect, it } from 'vitest';
import { FreshReads } from '../../src/freshReads.js';

/** Reads that finish when the test says, each answering its own number. */
function controlledLoads() {
  const started: Array<{ n: number; finish: () => void; fail: () => void }> = [];
  const load = () =>
    new Promise<number>((resolve, reject) => {
      const n = started.length + 1;
      started.push({ n, finish: () => resolve(n), fail: () => reject(new Error(`read ${n} failed`)) });
    });
  return { started, load };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('FreshReads', () => {
  it('runs one read per key at a time; those who ask meanwhile share the next one, which starts after it', async () => {
    const reads = new FreshReads<string, number>();
    const { started, load } = controlledLoads();
    const first = reads.read('u', load);
    const [second, third] = [reads.read('u', load), reads.read('u', load)];
    expect(started.map((s) => s.n)).toEqual([1]);
    started[0]!.finish();
    expect(await first).toBe(1);
    await settle();
    expect(started.map((s) => s.n)).toEqual([1, 2]);
    const fourth = reads.read('u', load); // asked after read 2 began: waits for read 3
    started[1]!.finish();
    expect([await second, await third]).toEqual([2, 2]);
    await settle();
    started[2]!.finish();
    expect(await fourth).toBe(3);
  });

  it('keeps keys apart, and a failed read fails only those who shared it', async () => {
    const reads = new FreshReads<string, number>();
    const { started, load } = controlledLoads();
    const a = reads.read('a', load);
    const b = reads.read('b', load);
    expect(started).toHaveLength(2);
    const nextA = reads.read('a', load);
    started[0]!.fail();
    await expect(a).rejects.toThrow('read 1 failed');
    await settle();
    started[2]!.finish();
    expect(await nextA).toBe(3);
    started[1]!.finish();
    expect(await b).toBe(2);
    // Nothing is kept once a key's reads are over: the next read starts at once.
    reads.read('a', load);
    expect(started).toHaveLength(4);
  });
});
