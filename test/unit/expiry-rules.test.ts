import { describe, expect, it } from 'vitest';
import type { ExpirySettings } from '../../src/config.js';
import {
  computeExpiry,
  expiresAtBrowserClose,
  expiryAge,
  expiryPeriod,
  ExpiryInputError,
  isValid,
  parseExpiry,
  slideOnRequest,
  withLifetimeCap,
  type ExpiryState,
} from '../../src/expiry/rules.js';

const settings: ExpirySettings = {
  cookieAge: 1_209_600,
  expireAtBrowserClose: false,
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

describe('settings changed since a session was saved (a restart with other settings)', () => {
  const saved = loginWith({ seconds: 300 });

  it('a new or lowered SESSION_MAX_LIFETIME caps a saved session at once, not at its next save', () => {
    expect(withLifetimeCap(saved, 100)).toEqual({ ...saved, expiresAt: at(100), limitedBy: 'MAX_LIFETIME' });
    const earlierCap = computeExpiry(saved.spec, T0, T0, { ...settings, maxLifetime: 200 });
    expect(withLifetimeCap(earlierCap, 100).expiresAt).toEqual(at(100));
  });

  it('a cap beyond the saved expiry, or none, leaves it as saved (a raised cap applies at the next save)', () => {
    expect(withLifetimeCap(saved, 1000)).toBe(saved);
    expect(withLifetimeCap(saved, null)).toBe(saved);
    const earlierCap = computeExpiry(saved.spec, T0, T0, { ...settings, maxLifetime: 200 });
    expect(withLifetimeCap(earlierCap, 1000)).toBe(earlierCap);
  });

  it('a lowered SESSION_MAX_EXPIRY shortens the renewals of a number of seconds asked for under the old one', () => {
    const lowered = { ...settings, maxExpiry: 100 };
    expect(computeExpiry(saved.spec, T0, at(10), lowered).expiresAt).toEqual(at(110));
    expect(expiryPeriod(saved.spec, at(10), lowered)).toBe(100);
  });

  it("under SESSION_SAVE_EVERY_REQUEST, a request saves a shorter expiry than the saved one, as Django's save on every request does", () => {
    const sliding = { ...settings, saveEveryRequest: true };
    const defaultPolicy = loginWith({});
    const shorter = slideOnRequest(defaultPolicy, at(1), { ...sliding, cookieAge: 40 });
    expect(shorter?.expiresAt).toEqual(at(41));
    // Then the shorter age slides as usual, by more than the touch fraction only.
    expect(slideOnRequest(shorter!, at(2), { ...sliding, cookieAge: 40 })).toBeNull();
    expect(slideOnRequest(saved, at(1), { ...sliding, maxExpiry: 100 })?.expiresAt).toEqual(at(101));
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

describe("Django's get_expire_at_browser_close (SESSION_EXPIRE_AT_BROWSER_CLOSE)", () => {
  const globalClose = { ...settings, expireAtBrowserClose: true, browserCloseAge: 3600 };

  it.each([
    ['a positive number', { seconds: 10 }, false, false],
    ['0', { seconds: 0 }, true, true],
    ['a date', { date: at(500) }, false, false],
    ['null', { seconds: null }, false, true],
    ['nothing', {}, false, true],
  ])('%s: %s without the setting, %s with it', (_what, input, without, withSetting) => {
    expect(expiresAtBrowserClose(parseExpiry(input, T0, settings), settings)).toBe(without);
    expect(expiresAtBrowserClose(parseExpiry(input, T0, globalClose), globalClose)).toBe(withSetting);
  });

  it('with the setting, null keeps the DEFAULT policy but lives the browser-close age server-side, as 0 does', () => {
    const byDefault = loginWith({}, globalClose);
    expect(byDefault.spec.policy).toBe('DEFAULT');
    expect(byDefault.expiresAt).toEqual(at(3600));
    expect(byDefault.expiresAt).toEqual(loginWith({ seconds: 0 }, globalClose).expiresAt);
    expect(loginWith({}, settings).expiresAt).toEqual(at(1_209_600));
  });

  it('with the setting, sliding renewal of a null expiry moves it by the browser-close age', () => {
    const sliding = { ...globalClose, saveEveryRequest: true };
    expect(slideOnRequest(loginWith({}, sliding), at(1000), sliding)?.expiresAt).toEqual(at(4600));
  });

  it('the setting is read when asked, as Django reads it: a stored null expiry follows a changed setting', () => {
    const spec = parseExpiry({}, T0, settings);
    expect(expiresAtBrowserClose(spec, settings)).toBe(false);
    expect(expiresAtBrowserClose(spec, globalClose)).toBe(true);
  });
});

describe("Django's get_expiry_age (expiryPeriod), next to the seconds left (expiryAge)", () => {
  it('is the configured age for a number, however much time has passed', () => {
    const state = loginWith({ seconds: 10 });
    expect(expiryPeriod(state.spec, at(0), settings)).toBe(10);
    expect(expiryPeriod(state.spec, at(7.5), settings)).toBe(10);
    expect(expiryAge(state.expiresAt, at(7.5))).toBe(3);
  });

  it('is SESSION_COOKIE_AGE for null and for 0, with or without SESSION_EXPIRE_AT_BROWSER_CLOSE', () => {
    const ages = { ...settings, cookieAge: 600, browserCloseAge: 600 };
    for (const s of [ages, { ...ages, expireAtBrowserClose: true }]) {
      expect(expiryPeriod(parseExpiry({}, T0, s), at(100), s)).toBe(600);
      expect(expiryPeriod(parseExpiry({ seconds: 0 }, T0, s), at(100), s)).toBe(600);
    }
  });

  it('is the browser-close age for a session that expires at browser close when SESSION_BROWSER_CLOSE_AGE differs', () => {
    const s = { ...settings, cookieAge: 600, browserCloseAge: 60, expireAtBrowserClose: true };
    expect(expiryPeriod(parseExpiry({ seconds: 0 }, T0, s), at(0), s)).toBe(60);
    expect(expiryPeriod(parseExpiry({}, T0, s), at(0), s)).toBe(60);
    expect(expiryPeriod(parseExpiry({}, T0, settings), at(0), { ...settings, cookieAge: 600 })).toBe(600);
  });

  it("is the whole seconds from now to a date, rounded down as Django's timedelta arithmetic is", () => {
    const spec = parseExpiry({ date: at(500) }, T0, settings);
    expect(expiryPeriod(spec, at(0), settings)).toBe(500);
    expect(expiryPeriod(spec, at(0.001), settings)).toBe(499);
    expect(expiryPeriod(spec, at(100), settings)).toBe(400);
    expect(expiryPeriod(spec, at(499.999), settings)).toBe(0);
    expect(expiryPeriod(spec, at(501), settings)).toBe(-1);
  });

  it('is not shortened by SESSION_MAX_LIFETIME, which Django does not have', () => {
    const capped = { ...settings, maxLifetime: 5 };
    const state = loginWith({ seconds: 10 }, capped);
    expect(state.limitedBy).toBe('MAX_LIFETIME');
    expect(expiryPeriod(state.spec, at(1), capped)).toBe(10);
    expect(expiryAge(state.expiresAt, at(1))).toBe(4);
  });
});
