// src/sessions/writeTurns.ts: the writes of one session in this process, one at a time.
import { describe, expect, it } from 'vitest';
import { WriteTurns } from '../../src/sessions/writeTurns.js';

type V = { version: number; by: string };

/** A write that finishes (or fails) when told, recording where it started from. */
function controlled() {
  const started: Array<{ name: string; from: V }> = [];
  const finishers = new Map<string, { ok: (v: V) => void; fail: (e: Error) => void }>();
  const write = (name: string) => (from: V) => {
    started.push({ name, from });
    return new Promise<{ session: V }>((resolve, reject) => {
      finishers.set(name, { ok: (v) => resolve({ session: v }), fail: reject });
    });
  };
  return { started, write, finish: (name: string, v: V) => finishers.get(name)!.ok(v), fail: (name: string) => finishers.get(name)!.fail(new Error(`${name} failed`)) };
}

const flush = () => new Promise((r) => setImmediate(r));
const v1: V = { version: 1, by: 'login' };

describe('WriteTurns', () => {
  it('runs the writes of one session one at a time, each from the newest version the ones before it ended with', async () => {
    const turns = new WriteTurns<V>();
    const w = controlled();
    const a = turns.run('s', v1, { urgent: false }, w.write('a'));
    const b = turns.run('s', v1, { urgent: false }, w.write('b'));
    const other = turns.run('t', v1, { urgent: false }, w.write('other'));
    await flush();
    expect(w.started.map((s) => s.name)).toEqual(['a', 'other']);
    w.finish('a', { version: 2, by: 'a' });
    await flush();
    expect(w.started.at(-1)).toEqual({ name: 'b', from: { version: 2, by: 'a' } });
    w.finish('b', { version: 3, by: 'b' });
    w.finish('other', { version: 2, by: 'other' });
    expect((await a).session.by).toBe('a');
    expect((await b).session.by).toBe('b');
    await other;
    // Nothing left in line: a new write starts at once, from what it knows.
    const c = turns.run('s', { version: 7, by: 'elsewhere' }, { urgent: false }, w.write('c'));
    await flush();
    expect(w.started.at(-1)).toEqual({ name: 'c', from: { version: 7, by: 'elsewhere' } });
    w.finish('c', { version: 8, by: 'c' });
    await c;
  });

  it('starts an end at once, beside the write under way, and the renewals waiting after both', async () => {
    const turns = new WriteTurns<V>();
    const w = controlled();
    const runs = [turns.run('s', v1, { urgent: false }, w.write('r1')), turns.run('s', v1, { urgent: false }, w.write('r2'))];
    runs.push(turns.run('s', v1, { urgent: true }, w.write('end')));
    await flush();
    expect(w.started.map((s) => s.name)).toEqual(['r1', 'end']);
    w.finish('r1', { version: 2, by: 'r1' });
    await flush();
    expect(w.started.map((s) => s.name)).toEqual(['r1', 'end']);
    w.finish('end', { version: 3, by: 'end' });
    await flush();
    expect(w.started.at(-1)).toEqual({ name: 'r2', from: { version: 3, by: 'end' } });
    w.finish('r2', { version: 3, by: 'end' });
    await Promise.all(runs);
  });

  it('once a write fails, lets every write waiting go ahead together, then takes turns again', async () => {
    const turns = new WriteTurns<V>();
    const w = controlled();
    const first = turns.run('s', v1, { urgent: false }, w.write('first'));
    const waiting = ['w1', 'w2', 'w3'].map((name) => turns.run('s', v1, { urgent: false }, w.write(name)));
    await flush();
    w.fail('first');
    await expect(first).rejects.toThrow('first failed');
    await flush();
    expect(w.started.map((s) => s.name)).toEqual(['first', 'w1', 'w2', 'w3']);
    const late = turns.run('s', v1, { urgent: false }, w.write('late'));
    await flush();
    expect(w.started).toHaveLength(4);
    for (const name of ['w1', 'w2', 'w3']) w.fail(name);
    await Promise.allSettled(waiting);
    await flush();
    expect(w.started.at(-1)!.name).toBe('late');
    w.finish('late', { version: 2, by: 'late' });
    await late;
  });
});
