/**
 * The session vocabulary every layer speaks: what a session is, how it can end, and the feed of
 * changes to it. Rules live in expiry/ and sessions/; storage in store/.
 */
import type { ExpiryState } from './expiry/rules.js';

export const END_REASONS = ['TIMEOUT', 'BROWSER_CLOSED', 'LOGGED_OUT', 'REVOKED'] as const;
export type EndReason = (typeof END_REASONS)[number];

/** A session as the rest of the server sees it: one version of its state. */
export interface Session {
  id: string;
  userId: string;
  createdAt: Date;
  expiry: ExpiryState;
  endedAt: Date | null;
  endReason: EndReason | null;
  /** 1 at login, one more for every write: each version is written once, by one writer. */
  version: number;
  updatedAt: Date;
  userAgent: string | null;
  clientAddress: string | null;
}

/** Hears of every change this process makes to a session (the event hub). */
export interface SessionListener {
  /** `replaced`: the version that this process's own write replaced, where it is the writer. */
  sessionChanged(session: Session, replaced?: Session): void;
}

/** Hears of every change any process makes, from the change feed. */
export interface FeedListener extends SessionListener {
  /** A polling feed has handed over every change committed before `startedAt` (`performance.now()`: a step of the wall clock does not move it). */
  caughtUp?(startedAt: number): void;
  /**
   * A polling feed fell behind its change log and may have missed changes: what it cannot re-read
   * is dropped, and the sessions returned are read again (their latest versions delivered).
   */
  missedChanges?(): Iterable<string>;
  /** A session the database no longer has (purged, or removed from it). */
  sessionGone?(id: string): void;
}

/** Delivers every change to the sessions, from whichever process made it. */
export interface ChangeFeed {
  start(listener: FeedListener): Promise<void>;
  stop(): Promise<void>;
}
