import { describe, expect, it, vi } from 'vitest';
import type { Session } from '../../src/session.js';
import { SessionCache } from '../../src/store/sessionCache.js';

const T0 = 1_000_000;

function version(id: string, v: number, endReason: Session['endReason'] = null): Session {
  const at = new Date(T0);
  return {
    id,
    userId: 'u',
    createdAt: at,
    expiry: { spec: { policy: 'SECONDS', seconds: 60, date: null }, createdAt: at, lastSavedAt: at, expiresAt: new Date(T0 + 60_000), limitedBy: 'POLICY' },
    endedAt: endReason ? at : null,
    endReason,
    version: v,
    updatedAt: at,
    userAgent: null,
    clientAddress: null,
  };
}

function cacheAt(maxStalenessMs = 300, size = 10) {
  const clock = { now: T0 };
  const cache = new SessionCache(maxStalenessMs, size, () => clock.now);
  return { cache, clock };
}

describe('the session cache', () => {
  it('answers only while the change feed has caught up within the staleness bound', () => {
    const { cache, clock } = cacheAt(300);
    cache.added(version('a', 1), 'hash');
    expect(cache.lookup('a')).toBeNull(); // the feed has not read yet

    cache.feedCaughtUp(T0);
    expect(cache.lookup('a')).toEqual({ session: version('a', 1), secretHash: 'hash' });
    clock.now = T0 + 300;
    expect(cache.lookup('a')).not.toBeNull();
    clock.now = T0 + 301;
    expect(cache.lookup('a')).toBeNull(); // the feed stalled: read the database

    cache.feedCaughtUp(T0 + 250);
    cache.feedCaughtUp(T0 + 100); // a read that started earlier and finished later does not set it back
    clock.now = T0 + 550;
    expect(cache.lookup('a')).not.toBeNull();
  });

  it('counts the staleness on the monotonic clock, which stamps the feed\'s reads: the wall clock stepped an hour back keeps nothing fresh', () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'] });
    try {
      const cache = new SessionCache(300, 10);
      cache.added(version('a', 1), 'hash');
      cache.feedCaughtUp(performance.now());
      expect(cache.lookup('a')).not.toBeNull();
      vi.setSystemTime(Date.now() - 3_600_000);
      vi.advanceTimersByTime(301);
      expect(cache.lookup('a')).toBeNull();
    } finally {
      vi.useRealTimers();
    }
  });

  it('keeps the newest version, whichever order they arrive in', () => {
    const { cache } = cacheAt();
    cache.feedCaughtUp(T0);
    cache.added(version('a', 1), 'hash');
    cache.sessionChanged(version('a', 3, 'LOGGED_OUT'));
    cache.sessionChanged(version('a', 2));
    cache.remember(version('a', 2), 'hash', cache.beforeRead());
    expect(cache.lookup('a')?.session).toEqual(version('a', 3, 'LOGGED_OUT'));
  });

  it('does not answer for a session it only heard of from the feed until a read brings its secret', () => {
    const { cache } = cacheAt();
    cache.feedCaughtUp(T0);
    cache.sessionChanged(version('b', 2));
    expect(cache.lookup('b')).toBeNull();
    // A read that began before the feed's change must not replace it with its older version.
    cache.remember(version('b', 1), 'hash', cache.beforeRead());
    expect(cache.lookup('b')).toEqual({ session: version('b', 2), secretHash: 'hash' });
  });

  it('drops a read whose result may be older than a change it evicted meanwhile', () => {
    const { cache } = cacheAt(300, 2);
    cache.feedCaughtUp(T0);
    const token = cache.beforeRead(); // a read of "c" begins
    cache.sessionChanged(version('c', 2, 'REVOKED')); // another process ends it
    cache.added(version('x', 1), 'hash');
    cache.added(version('y', 1), 'hash'); // evicts "c", and what it knew
    cache.remember(version('c', 1), 'hash', token); // the read returns the version before the end
    expect(cache.lookup('c')).toBeNull();

    cache.remember(version('c', 2, 'REVOKED'), 'hash', cache.beforeRead());
    expect(cache.lookup('c')?.session.endReason).toBe('REVOKED');
  });

  it('once cleared (the feed missed changes), answers nothing it held, nor a read begun before', () => {
    const { cache } = cacheAt();
    cache.feedCaughtUp(T0);
    cache.added(version('a', 1), 'hash');
    const token = cache.beforeRead(); // a read of "b" begins
    cache.clear();
    cache.remember(version('b', 1), 'hash', token);
    expect([cache.lookup('a'), cache.lookup('b')]).toEqual([null, null]);
    cache.remember(version('b', 1), 'hash', cache.beforeRead());
    expect(cache.lookup('b')?.session.version).toBe(1);
  });
});
