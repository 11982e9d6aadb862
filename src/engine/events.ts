import type { EndReason, Session } from '../session.js';

export type SessionEventKind = 'EXPIRING_SOON' | 'EXPIRY_CHANGED' | 'EXPIRED' | 'LOGGED_OUT' | 'REVOKED';

export interface SessionEvent {
  kind: SessionEventKind;
  sessionId: string;
  expiresAt: Date;
  serverTime: Date;
  /** Terminal events only. */
  reason: EndReason | null;
  /** Terminal events only: where the client should send its user. */
  redirectTo: string | null;
}

export const TERMINAL_KIND: Record<EndReason, SessionEventKind> = {
  TIMEOUT: 'EXPIRED',
  BROWSER_CLOSED: 'EXPIRED',
  LOGGED_OUT: 'LOGGED_OUT',
  REVOKED: 'REVOKED',
};

export function terminalEvent(session: Session, reason: EndReason, now: Date, loginUrl: string): SessionEvent {
  return {
    kind: TERMINAL_KIND[reason],
    sessionId: session.id,
    expiresAt: session.expiry.expiresAt,
    serverTime: now,
    reason,
    redirectTo: loginUrl,
  };
}

export function liveEvent(kind: 'EXPIRING_SOON' | 'EXPIRY_CHANGED', session: Session, now: Date): SessionEvent {
  return { kind, sessionId: session.id, expiresAt: session.expiry.expiresAt, serverTime: now, reason: null, redirectTo: null };
}
