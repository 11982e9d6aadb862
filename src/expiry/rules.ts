/**
 * Django's session expiry semantics, made exact. Pure functions: every instant is passed in.
 *
 * A session is valid iff it has not ended and `now < expiresAt` (strict: a 300 s session is
 * refused at exactly 300 s). `expiresAt` is fixed at the last save; reading does not move it.
 */
import type { ExpirySettings } from '../config.js';

export type ExpiryPolicy = 'SECONDS' | 'BROWSER_CLOSE' | 'DEFAULT' | 'DATE';
/** Which limit produced the effective expiry: the session's own policy or SESSION_MAX_LIFETIME. */
export type ExpiryLimit = 'POLICY' | 'MAX_LIFETIME';

export interface ExpirySpec {
  policy: ExpiryPolicy;
  /** Idle seconds, for SECONDS only. */
  seconds: number | null;
  /** The fixed instant, for DATE only. */
  date: Date | null;
}

export interface ExpiryState {
  spec: ExpirySpec;
  createdAt: Date;
  lastSavedAt: Date;
  expiresAt: Date;
  limitedBy: ExpiryLimit;
}

export type ExpiryErrorCode = 'INVALID_EXPIRY' | 'EXPIRY_IN_PAST' | 'EXPIRY_TOO_LONG';

export class ExpiryInputError extends Error {
  constructor(
    readonly code: ExpiryErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Turns what a client asked for (Django's `set_expiry(value)`) into a spec, or throws.
 * `seconds` and `date` are mutually exclusive; neither (or null) means the global default.
 */
export function parseExpiry(
  input: { seconds?: number | null; date?: Date | null },
  now: Date,
  settings: ExpirySettings,
): ExpirySpec {
  const { seconds, date } = input;
  const hasSeconds = seconds !== undefined && seconds !== null;
  const hasDate = date !== undefined && date !== null;
  if (hasSeconds && hasDate) {
    throw new ExpiryInputError('INVALID_EXPIRY', 'Give either seconds or a date, not both.');
  }
  if (hasSeconds) {
    if (typeof seconds !== 'number' || !Number.isFinite(seconds) || !Number.isInteger(seconds)) {
      throw new ExpiryInputError('INVALID_EXPIRY', `Expiry seconds must be a whole number, got ${String(seconds)}.`);
    }
    if (seconds < 0) {
      throw new ExpiryInputError('INVALID_EXPIRY', `Expiry seconds must not be negative, got ${seconds}.`);
    }
    if (seconds > settings.maxExpiry) {
      throw new ExpiryInputError(
        'EXPIRY_TOO_LONG',
        `Expiry of ${seconds} s exceeds the allowed maximum of ${settings.maxExpiry} s.`,
      );
    }
    return seconds === 0
      ? { policy: 'BROWSER_CLOSE', seconds: null, date: null }
      : { policy: 'SECONDS', seconds, date: null };
  }
  if (hasDate) {
    const at = date.getTime();
    if (!(date instanceof Date) || Number.isNaN(at)) {
      throw new ExpiryInputError('INVALID_EXPIRY', 'Expiry date is not a valid instant.');
    }
    if (at <= now.getTime()) {
      throw new ExpiryInputError('EXPIRY_IN_PAST', `Expiry date ${date.toISOString()} is not in the future.`);
    }
    if (at > now.getTime() + settings.maxExpiry * 1000) {
      throw new ExpiryInputError(
        'EXPIRY_TOO_LONG',
        `Expiry date ${date.toISOString()} is more than the allowed maximum of ${settings.maxExpiry} s away.`,
      );
    }
    return { policy: 'DATE', seconds: null, date: new Date(at) };
  }
  return { policy: 'DEFAULT', seconds: null, date: null };
}

/**
 * Django's get_expire_at_browser_close(): true for an expiry of 0; for a null expiry (the global
 * policy) whatever SESSION_EXPIRE_AT_BROWSER_CLOSE says; false for a number of seconds or a date.
 * Such a session's cookie has no Max-Age or Expires, and the browser-close presence rules end it.
 */
export function expiresAtBrowserClose(spec: ExpirySpec, settings: ExpirySettings): boolean {
  return spec.policy === 'BROWSER_CLOSE' || (spec.policy === 'DEFAULT' && settings.expireAtBrowserClose);
}

/**
 * Length of the inactivity period the spec stands for, in seconds; null for a fixed date. A session
 * that expires at browser close lives the browser-close age server-side (SESSION_BROWSER_CLOSE_AGE,
 * by default SESSION_COOKIE_AGE, as in Django).
 */
export function idlePeriodSeconds(spec: ExpirySpec, settings: ExpirySettings): number | null {
  switch (spec.policy) {
    case 'SECONDS':
      // Asked for under a SESSION_MAX_EXPIRY since lowered: renewed within the current one.
      return Math.min(spec.seconds!, settings.maxExpiry);
    case 'BROWSER_CLOSE':
      return settings.browserCloseAge;
    case 'DEFAULT':
      return settings.expireAtBrowserClose ? settings.browserCloseAge : settings.cookieAge;
    case 'DATE':
      return null;
  }
}

/** The expiry a session gets when it is saved at `savedAt` with `spec`, capped by the max lifetime. */
export function computeExpiry(
  spec: ExpirySpec,
  createdAt: Date,
  savedAt: Date,
  settings: ExpirySettings,
): ExpiryState {
  const idle = idlePeriodSeconds(spec, settings);
  const byPolicy = idle === null ? spec.date! : new Date(savedAt.getTime() + idle * 1000);
  return withLifetimeCap({ spec, createdAt, lastSavedAt: savedAt, expiresAt: byPolicy, limitedBy: 'POLICY' }, settings.maxLifetime);
}

/**
 * SESSION_MAX_LIFETIME (seconds, or null for none) over an expiry: at most createdAt + max. Applied
 * to every session as it is read, not only as it is saved, so that a cap set or lowered at a
 * restart ends the sessions saved before it at once (a raised one lets them renew further).
 */
export function withLifetimeCap(expiry: ExpiryState, maxLifetime: number | null): ExpiryState {
  if (maxLifetime === null) return expiry;
  const cap = expiry.createdAt.getTime() + maxLifetime * 1000;
  return cap < expiry.expiresAt.getTime() ? { ...expiry, expiresAt: new Date(cap), limitedBy: 'MAX_LIFETIME' } : expiry;
}

export function isValid(expiresAt: Date, now: Date): boolean {
  return now.getTime() < expiresAt.getTime();
}

/**
 * Seconds left, never negative (the API's `expiryAge`; not Django's get_expiry_age, which is
 * `expiryPeriod`). Rounded up, so that it is 0 exactly when the session is no longer valid and a
 * fresh 300 s session reports 300.
 */
export function expiryAge(expiresAt: Date, now: Date): number {
  return Math.max(0, Math.ceil((expiresAt.getTime() - now.getTime()) / 1000));
}

/**
 * Django's get_expiry_age() (django/contrib/sessions/backends/base.py): the configured age for a
 * number of seconds (10 after set_expiry(10), however much time has passed); the global age for a
 * null expiry or 0 (here the browser-close age for a session that expires at browser close, which
 * is SESSION_COOKIE_AGE unless SESSION_BROWSER_CLOSE_AGE says otherwise); for a date, the whole
 * seconds from `now` to it, rounded down as Django's `delta.days * 86400 + delta.seconds` is.
 * SESSION_MAX_LIFETIME, which Django does not have, does not shorten it (`limitedBy` says when it
 * applies).
 */
export function expiryPeriod(spec: ExpirySpec, now: Date, settings: ExpirySettings): number {
  const idle = idlePeriodSeconds(spec, settings);
  return idle ?? Math.floor((spec.date!.getTime() - now.getTime()) / 1000);
}

/**
 * Sliding renewal on a request (SESSION_SAVE_EVERY_REQUEST): the renewed state when it is worth a
 * write, else null. Writes are throttled like connect-mongo's touchAfter: only when the expiry
 * would move later by more than `touchFraction` of the idle period. One that would move it earlier
 * (an age lowered since the last save) is written, as Django's save on every request would.
 */
export function slideOnRequest(state: ExpiryState, now: Date, settings: ExpirySettings): ExpiryState | null {
  if (!settings.saveEveryRequest) return null;
  const idle = idlePeriodSeconds(state.spec, settings);
  if (idle === null) return null;
  const renewed = computeExpiry(state.spec, state.createdAt, now, settings);
  const gainMs = renewed.expiresAt.getTime() - state.expiresAt.getTime();
  return gainMs < 0 || gainMs > settings.touchFraction * idle * 1000 ? renewed : null;
}
