import { describe, expect, it } from 'vitest';
import { ConfigError, loadSettings } from '../../src/config.js';

describe('loadSettings', () => {
  it("has Django's defaults", () => {
    const s = loadSettings({});
    expect(s.expiry.cookieAge).toBe(1_209_600);
    expect(s.expiry.saveEveryRequest).toBe(false);
    expect(s.expiry.maxLifetime).toBeNull();
    expect(s.expiry.browserCloseAge).toBe(1_209_600);
    expect(s.browserCloseGraceMs).toBe(30_000);
    expect(s.presenceHeartbeatMs).toBe(5000);
    expect(s.presenceLeaseMs).toBe(15_000);
    expect(s.graphiqlEnabled).toBe(true);
  });

  it('has login and registration limits after OWASP: small per username and address, larger per username and per address', () => {
    const s = loadSettings({});
    expect(s.loginRateLimit).toEqual({
      perUserAndAddress: { limit: 5, windowSeconds: 900 },
      perUser: { limit: 50, windowSeconds: 3600 },
      perAddress: { limit: 50, windowSeconds: 900 },
    });
    expect(s.registrationRateLimit).toEqual({ limit: 10, windowSeconds: 3600 });
  });

  it('reads the limits from the environment', () => {
    const s = loadSettings({
      LOGIN_RATE_LIMIT: '3',
      LOGIN_RATE_WINDOW: '60',
      LOGIN_USER_RATE_LIMIT: '30',
      LOGIN_USER_RATE_WINDOW: '600',
      LOGIN_ADDRESS_RATE_LIMIT: '100',
      LOGIN_ADDRESS_RATE_WINDOW: '120',
      REGISTRATION_RATE_LIMIT: '2',
      REGISTRATION_RATE_WINDOW: '86400',
    });
    expect(s.loginRateLimit).toEqual({
      perUserAndAddress: { limit: 3, windowSeconds: 60 },
      perUser: { limit: 30, windowSeconds: 600 },
      perAddress: { limit: 100, windowSeconds: 120 },
    });
    expect(s.registrationRateLimit).toEqual({ limit: 2, windowSeconds: 86400 });
  });

  it('reads booleans and numbers from the environment', () => {
    const s = loadSettings({ SESSION_SAVE_EVERY_REQUEST: 'true', SESSION_MAX_LIFETIME: '3600', NODE_ENV: 'production' });
    expect(s.expiry.saveEveryRequest).toBe(true);
    expect(s.expiry.maxLifetime).toBe(3600);
    expect(s.graphiqlEnabled).toBe(false);
  });

  it.each([
    [{ SESSION_COOKIE_AGE: '-5' }, 'SESSION_COOKIE_AGE'],
    [{ SESSION_COOKIE_AGE: '1.5' }, 'SESSION_COOKIE_AGE'],
    [{ SESSION_SAVE_EVERY_REQUEST: 'maybe' }, 'SESSION_SAVE_EVERY_REQUEST'],
    [{ PORT: '70000' }, 'PORT'],
    [{ PRESENCE_HEARTBEAT_MS: '0' }, 'PRESENCE_HEARTBEAT_MS'],
    [{ COOKIE_SAMESITE: 'none' }, 'COOKIE_SAMESITE'],
    [{ LOGIN_RATE_LIMIT: '0' }, 'LOGIN_RATE_LIMIT'],
    [{ LOGIN_USER_RATE_LIMIT: '2.5' }, 'LOGIN_USER_RATE_LIMIT'],
    [{ LOGIN_ADDRESS_RATE_WINDOW: 'soon' }, 'LOGIN_ADDRESS_RATE_WINDOW'],
    [{ REGISTRATION_RATE_LIMIT: '-1' }, 'REGISTRATION_RATE_LIMIT'],
    [{ REGISTRATION_RATE_WINDOW: '0' }, 'REGISTRATION_RATE_WINDOW'],
  ])('refuses %o and names the variable', (env, name) => {
    expect(() => loadSettings(env)).toThrow(ConfigError);
    expect(() => loadSettings(env)).toThrow(name);
  });
});
