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
  ])('refuses %o and names the variable', (env, name) => {
    expect(() => loadSettings(env)).toThrow(ConfigError);
    expect(() => loadSettings(env)).toThrow(name);
  });
});
