/**
 * The two ways a session changes, as pure functions from one version to the next. Each result is
 * written by the store only if nobody else has written that version first (see
 * docs/write-protocol.md), so a caller that loses simply reads the winner's version and decides again.
 */
import type { ExpiryState } from '../expiry/rules.js';
import type { EndReason, Session } from '../session.js';

/** The session saved now with a new expiry. */
export function renewed(current: Session, expiry: ExpiryState, now: Date): Session {
  return { ...current, expiry, version: current.version + 1, updatedAt: now };
}

/** The session ended now for `reason`; an end before the expiry also brings the expiry forward to now. */
export function ended(current: Session, reason: EndReason, now: Date): Session {
  const expiresAt = current.expiry.expiresAt.getTime() <= now.getTime() ? current.expiry.expiresAt : now;
  return {
    ...current,
    expiry: { ...current.expiry, expiresAt },
    endedAt: now,
    endReason: reason,
    version: current.version + 1,
    updatedAt: now,
  };
}
