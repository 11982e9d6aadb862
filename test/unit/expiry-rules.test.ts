import { describe, expect, it } from 'vitest';
import type { ExpirySettings } from '../../src/config.js';
import {
  computeExpiry,
  expiryAge,
  ExpiryInputError,
  isValid,
  parseExpiry,
  slideOnRequest,
  type ExpiryState,
} from '../../src/expiry/rules.js';

const settings: ExpirySettings = {
  cookieAge: 1_209_600,
  browserCloseAge: 1_209_600,
  maxLifetime: null,
  maxExpiry: 366 * 24 * 3600,
  saveEveryRequest: false,
  touchFraction: 0.05,
};
const T0 = new Date('2026-01-01T00:00:00.000Z');
/** The injected clock: T0 plus some seconds. */
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);

function loginWith(input: Parameters<typeof parseExpiry>[0], s: ExpirySettings = settings): ExpiryState {
  return computeExpiry(parseExpiry(input, T0, s), T0, T0, s);
}

function expectError(fn: () => unknown, code: string) {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ExpiryInputError);
    expect((err as ExpiryInputError).code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe('a session with expiry 300 s set at login', () => {
  const state = loginWith({ seconds: 300 });

  it.each([0, 100, 299, 299.999])('is valid at %s s', (t) => {
    expect(isValid(state.expiresAt, at(t))).toBe(true);
  });

  it.each([300, 301, 350])('is expired at %s s', (t) => {
    expect(isValid(state.expiresAt, at(t))).toBe(false);
  });

  it('reports seconds left rounded up: 0 exactly when expired, never negative', () => {
    expect(expiryAge(state.expiresAt, at(0))).toBe(300);
    expect(expiryAge(state.expiresAt, at(0.001))).toBe(300);
    expect(expiryAge(state.expiresAt, at(100))).toBe(200);
    expect(expiryAge(state.expiresAt, at(299.5))).toBe(1);
    expect(expiryAge(state.expiresAt, at(300))).toBe(0);
    expect(expiryAge(state.expiresAt, at(301))).toBe(0);
  });

  it('is not moved by reading: validity depends only on the saved expiry', () => {
    expect(state.expiresAt).toEqual(at(300));
    expect(slideOnRequest(state, at(100), settings)).toBeNull();
  });

  it('with 600 s instead, 301 s is valid', () => {
    const longer = loginWith({ seconds: 600 });
    expect(isValid(longer.expiresAt, at(301))).toBe(true);
    expect(isValid(longer.expiresAt, at(600))).toBe(false);
  });
});

describe('setExpiry values', () => {
  it('0 expires at browser close, capped server-side by the browser-close age', () => {
    const state = loginWith({ seconds: 0 }, { ...settings, browserCloseAge: 3600 });
    expect(state.spec.policy).toBe('BROWSER_CLOSE');
    expect(state.expiresAt).toEqual(at(3600));
  });

  it('null or omitted falls back to SESSION_COOKIE_AGE', () => {
    for (const input of [{}, { seconds: null }, { seconds: null, date: null }]) {
      const state = loginWith(input);
      expect(state.spec.policy).toBe('DEFAULT');
      expect(state.expiresAt).toEqual(at(1_209_600));
    }
  });

  it('a date expires at that instant, and renewal does not move it', () => {
    const state = loginWith({ date: at(500) });
    expect(state.spec.policy).toBe('DATE');
    expect(state.expiresAt).toEqual(at(500));
    expect(computeExpiry(state.spec, T0, at(400), settings).expiresAt).toEqual(at(500));
  });

  it('renewal moves an idle expiry to last save + N', () => {
    const state = loginWith({ seconds: 300 });
    const renewed = computeExpiry(state.spec, T0, at(250), settings);
    expect(renewed.expiresAt).toEqual(at(550));
    expect(renewed.lastSavedAt).toEqual(at(250));
    expect(isValid(renewed.expiresAt, at(301))).toBe(true);
  });
});

describe('invalid input is rejected with a code', () => {
  it.each([
    [{ seconds: -1 }, 'INVALID_EXPIRY'],
    [{ seconds: 1.5 }, 'INVALID_EXPIRY'],
    [{ seconds: Number.NaN }, 'INVALID_EXPIRY'],
    [{ seconds: Number.POSITIVE_INFINITY }, 'INVALID_EXPIRY'],
    [{ seconds: settings.maxExpiry + 1 }, 'EXPIRY_TOO_LONG'],
    [{ seconds: 1e15 }, 'EXPIRY_TOO_LONG'],
    [{ date: at(0) }, 'EXPIRY_IN_PAST'],
    [{ date: at(-10) }, 'EXPIRY_IN_PAST'],
    [{ date: at(settings.maxExpiry + 1) }, 'EXPIRY_TOO_LONG'],
    [{ date: new Date(Number.NaN) }, 'INVALID_EXPIRY'],
    [{ seconds: 300, date: at(500) }, 'INVALID_EXPIRY'],
  ])('%o → %s', (input, code) => {
    expectError(() => parseExpiry(input, T0, settings), code);
  });

  it('accepts the largest allowed seconds and date', () => {
    expect(parseExpiry({ seconds: settings.maxExpiry }, T0, settings).seconds).toBe(settings.maxExpiry);
    expect(parseExpiry({ date: at(settings.maxExpiry) }, T0, settings).policy).toBe('DATE');
  });
});

describe('maximum lifetime (idle and absolute limits together)', () => {
  const capped = { ...settings, maxLifetime: 1000 };

  it('caps renewals at createdAt + max and says so', () => {
    const state = loginWith({ seconds: 300 }, capped);
    expect(state.limitedBy).toBe('POLICY');
    const renewed = computeExpiry(state.spec, T0, at(900), capped);
    expect(renewed.expiresAt).toEqual(at(1000));
    expect(renewed.limitedBy).toBe('MAX_LIFETIME');
  });

  it('caps dates and the default too', () => {
    expect(loginWith({ date: at(5000) }, capped).expiresAt).toEqual(at(1000));
    expect(loginWith({}, capped).limitedBy).toBe('MAX_LIFETIME');
  });
});

describe('sliding renewal on every request (SESSION_SAVE_EVERY_REQUEST)', () => {
  const sliding = { ...settings, saveEveryRequest: true, touchFraction: 0.1 };
  const state = loginWith({ seconds: 300 }, sliding);

  it('does not write while the expiry would move by at most the touch fraction', () => {
    expect(slideOnRequest(state, at(30), sliding)).toBeNull();
  });

  it('slides the expiry once it would move by more', () => {
    const slid = slideOnRequest(state, at(31), sliding);
    expect(slid?.expiresAt).toEqual(at(331));
  });

  it('never slides a fixed date', () => {
    const fixed = loginWith({ date: at(500) }, sliding);
    expect(slideOnRequest(fixed, at(400), sliding)).toBeNull();
  });
});
