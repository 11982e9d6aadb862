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

/** Length of the inactivity period the spec stands for, in seconds; null for a fixed date. */
export function idlePeriodSeconds(spec: ExpirySpec, settings: ExpirySettings): number | null {
  switch (spec.policy) {
    case 'SECONDS':
      return spec.seconds!;
    case 'BROWSER_CLOSE':
      return settings.browserCloseAge;
    case 'DEFAULT':
      return settings.cookieAge;
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
  const byPolicy = idle === null ? spec.date!.getTime() : savedAt.getTime() + idle * 1000;
  const cap = settings.maxLifetime === null ? Infinity : createdAt.getTime() + settings.maxLifetime * 1000;
  return {
    spec,
    createdAt,
    lastSavedAt: savedAt,
    expiresAt: new Date(Math.min(byPolicy, cap)),
    limitedBy: cap < byPolicy ? 'MAX_LIFETIME' : 'POLICY',
  };
}

export function isValid(expiresAt: Date, now: Date): boolean {
  return now.getTime() < expiresAt.getTime();
}

/**
 * Django's get_expiry_age: seconds left, never negative. Rounded up, so that it is 0 exactly
 * when the session is no longer valid and a fresh 300 s session reports 300.
 */
export function expiryAge(expiresAt: Date, now: Date): number {
  return Math.max(0, Math.ceil((expiresAt.getTime() - now.getTime()) / 1000));
}

/**
 * Sliding renewal on a request (SESSION_SAVE_EVERY_REQUEST): the renewed state when it is worth a
 * write, else null. Writes are throttled like connect-mongo's touchAfter: only when the expiry
 * would move by more than `touchFraction` of the idle period.
 */
export function slideOnRequest(state: ExpiryState, now: Date, settings: ExpirySettings): ExpiryState | null {
  if (!settings.saveEveryRequest) return null;
  const idle = idlePeriodSeconds(state.spec, settings);
  if (idle === null) return null;
  const renewed = computeExpiry(state.spec, state.createdAt, now, settings);
  const gainMs = renewed.expiresAt.getTime() - state.expiresAt.getTime();
  return gainMs > settings.touchFraction * idle * 1000 ? renewed : null;
}
