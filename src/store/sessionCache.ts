import { LRUCache } from 'lru-cache';
import type { Session, SessionListener } from '../session.js';

interface Entry {
  /** The newest version this process knows of (from its own writes, a read, or the change feed). */
  session: Session;
  /** From a read of the session document: the feed's change records do not carry it. */
  secretHash: string | null;
}

/**
 * The sessions this process has read, written or heard of, so that authenticating a request need
 * not read the database. Kept current by this process's own writes and by the polling change
 * feed, and answered from only while the feed is fresh: while its last complete read of the change
 * log started at most `maxStalenessMs` ago. A change answered by another process (a logout, a
 * revocation) is in the log before its answer leaves, so every process honours it within
 * `maxStalenessMs` of that answer; this process's own writes are honoured at once.
 */
export class SessionCache implements SessionListener {
  private readonly entries: LRUCache<string, Entry>;
  /** When the last complete read of the change feed started (monotonic clock). */
  private feedReadStartedAt = Number.NEGATIVE_INFINITY;
  /** Entries dropped unasked (evicted, or all of them cleared): reads begun before are not remembered. */
  private evictions = 0;

  constructor(
    readonly maxStalenessMs: number,
    maxEntries: number,
    /** The monotonic clock, as the feed's stamps: a step of the wall clock stretches no staleness. */
    private readonly now: () => number = () => performance.now(),
  ) {
    this.entries = new LRUCache({
      max: maxEntries,
      dispose: (_entry, _id, reason) => {
        if (reason === 'evict') this.evictions++;
      },
    });
  }

  /** The change feed has handed over every change committed before `startedAt`. */
  feedCaughtUp(startedAt: number): void {
    this.feedReadStartedAt = Math.max(this.feedReadStartedAt, startedAt);
  }

  private fresh(): boolean {
    return this.now() - this.feedReadStartedAt <= this.maxStalenessMs;
  }

  /** The newest known version of a session and its secret's hash, while the feed is fresh; else null (read the database). */
  lookup(id: string): { session: Session; secretHash: string } | null {
    if (!this.fresh()) return null;
    const entry = this.entries.get(id);
    return entry?.secretHash ? { session: entry.session, secretHash: entry.secretHash } : null;
  }

  /** Taken before a database read whose result is then passed to `remember`. */
  beforeRead(): number {
    return this.evictions;
  }

  /**
   * A session as read from the database, unless an entry was evicted since the read began: that
   * entry may have held a change newer than the read, which the read's result must not replace.
   */
  remember(session: Session, secretHash: string, readToken: number): void {
    if (this.evictions !== readToken) return;
    const entry = this.entries.get(session.id);
    if (entry) {
      entry.secretHash = secretHash;
      if (session.version > entry.session.version) entry.session = session;
    } else {
      this.entries.set(session.id, { session, secretHash });
    }
  }

  /** A session the database no longer has (purged, or a database restored without it): read again next time. */
  forget(id: string): void {
    this.entries.delete(id);
  }

  /** The change feed may have missed changes: nothing held is trusted, nor are reads begun before. */
  clear(): void {
    this.entries.clear();
    this.evictions++;
  }

  /** A session this process has just created. */
  added(session: Session, secretHash: string): void {
    this.entries.set(session.id, { session, secretHash });
  }

  /** A version written by this process or delivered by the feed: kept if it is the newest known. */
  sessionChanged(session: Session): void {
    const entry = this.entries.get(session.id);
    if (!entry) this.entries.set(session.id, { session, secretHash: null });
    else if (session.version > entry.session.version) entry.session = session;
  }
}
