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

  it('takes a login URL that is a path or an http(s) URL', () => {
    for (const url of ['/login', '/app/login?next=1', 'https://accounts.example.com/login', 'HTTP://sso.example/x']) {
      expect(loadSettings({ LOGIN_URL: url }).loginUrl).toBe(url);
    }
  });

  it('reads booleans and numbers from the environment', () => {
    const s = loadSettings({ SESSION_SAVE_EVERY_REQUEST: 'true', SESSION_MAX_LIFETIME: '3600', NODE_ENV: 'production' });
    expect(s.expiry.saveEveryRequest).toBe(true);
    expect(s.expiry.maxLifetime).toBe(3600);
    expect(s.graphiqlEnabled).toBe(false);
  });

  it("keeps an idle keep-alive connection 5 s (Node's default), or with HTTP_KEEP_ALIVE_TIMEOUT=0 until the client closes it", () => {
    expect(loadSettings({}).httpKeepAliveTimeoutMs).toBe(5_000);
    expect(loadSettings({ HTTP_KEEP_ALIVE_TIMEOUT: '0' }).httpKeepAliveTimeoutMs).toBe(0);
    expect(loadSettings({ HTTP_KEEP_ALIVE_TIMEOUT: '65' }).httpKeepAliveTimeoutMs).toBe(65_000);
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
    // Empty values were read as 0 or "" (a random port, no grace, no login page), other notations as their number.
    [{ PORT: '' }, 'PORT'],
    [{ SESSION_BROWSER_CLOSE_GRACE: '' }, 'SESSION_BROWSER_CLOSE_GRACE'],
    [{ SESSION_TOUCH_FRACTION: ' ' }, 'SESSION_TOUCH_FRACTION'],
    [{ SESSION_CACHE_MAX_STALENESS_MS: '' }, 'SESSION_CACHE_MAX_STALENESS_MS'],
    [{ LOGIN_URL: '' }, 'LOGIN_URL'],
    [{ HOST: '' }, 'HOST'],
    [{ PORT: '0x1F90' }, 'PORT'],
    [{ SESSION_COOKIE_AGE: '1e3' }, 'SESSION_COOKIE_AGE'],
    // Longer than Node's timers run (2^31 - 1 ms): they fired at once, warning each time.
    [{ DATABASE_OPERATION_TIMEOUT: '3000000' }, 'DATABASE_OPERATION_TIMEOUT'],
    [{ PRESENCE_HEARTBEAT_MS: '3000000000' }, 'PRESENCE_HEARTBEAT_MS'],
    [{ CHANGE_POLL_INTERVAL_MS: '3000000000' }, 'CHANGE_POLL_INTERVAL_MS'],
    [{ WS_PING_INTERVAL: '3000000' }, 'WS_PING_INTERVAL'],
    [{ HTTP_KEEP_ALIVE_TIMEOUT: '3000000' }, 'HTTP_KEEP_ALIVE_TIMEOUT'],
    [{ HTTP_KEEP_ALIVE_TIMEOUT: '-1' }, 'HTTP_KEEP_ALIVE_TIMEOUT'],
    // Accepted, and then sliding renewal never wrote a renewal before the session expired.
    [{ SESSION_TOUCH_FRACTION: '1' }, 'SESSION_TOUCH_FRACTION'],
    // Milliseconds written as seconds: an idle server wrote a presence heartbeat every 5 ms.
    [{ PRESENCE_HEARTBEAT_MS: '5' }, 'PRESENCE_HEARTBEAT_MS'],
    [{ CHANGE_POLL_INTERVAL_MS: '1' }, 'CHANGE_POLL_INTERVAL_MS'],
    // The login URL goes to the frontend's location.assign: a path or an http(s) URL only.
    [{ LOGIN_URL: 'javascript:alert(1)' }, 'LOGIN_URL'],
    [{ LOGIN_URL: 'data:text/html,x' }, 'LOGIN_URL'],
    [{ LOGIN_URL: '//evil.example/login' }, 'LOGIN_URL'],
    [{ LOGIN_URL: 'login' }, 'LOGIN_URL'],
    // Crashed the server at start-up with proxy-addr's stack trace, after the database had started.
    [{ TRUST_PROXY: 'garbage' }, 'TRUST_PROXY'],
    [{ TRUST_PROXY: '' }, 'TRUST_PROXY'],
  ])('refuses %o and names the variable', (env, name) => {
    expect(() => loadSettings(env)).toThrow(ConfigError);
    expect(() => loadSettings(env)).toThrow(name);
  });

  it('reads TRUST_PROXY as true or false in any case, a number of hops, or addresses and subnets', () => {
    expect(loadSettings({ TRUST_PROXY: 'True' }).trustProxy).toBe(true);
    expect(loadSettings({ TRUST_PROXY: ' FALSE ' }).trustProxy).toBe(false);
    expect(loadSettings({ TRUST_PROXY: '2' }).trustProxy).toBe('2');
    expect(loadSettings({ TRUST_PROXY: 'loopback, 10.0.0.0/8' }).trustProxy).toBe('loopback, 10.0.0.0/8');
  });

  it("has Django's session cookie defaults, SESSION_EXPIRE_AT_BROWSER_CLOSE off, and nothing to warn about", () => {
    const s = loadSettings({});
    expect(s.cookie).toEqual({ name: 'sessionid', domain: null, path: '/', secure: false, httpOnly: true, sameSite: 'lax' });
    expect(s.expiry.expireAtBrowserClose).toBe(false);
    expect(s.warnings).toEqual([]);
  });

  it("reads Django's SESSION_COOKIE_* settings, with Django's spellings of the values", () => {
    const s = loadSettings({
      SESSION_COOKIE_NAME: 'djsid',
      SESSION_COOKIE_DOMAIN: '.example.com',
      SESSION_COOKIE_PATH: '/graphql',
      SESSION_COOKIE_SECURE: 'True',
      SESSION_COOKIE_HTTPONLY: 'False',
      SESSION_COOKIE_SAMESITE: 'None',
      SESSION_EXPIRE_AT_BROWSER_CLOSE: 'True',
    });
    expect(s.cookie).toEqual({ name: 'djsid', domain: '.example.com', path: '/graphql', secure: true, httpOnly: false, sameSite: 'none' });
    expect(s.expiry.expireAtBrowserClose).toBe(true);
    expect(s.warnings).toEqual([]);
  });

  it.each([
    ['Lax', 'lax'],
    ['strict', 'strict'],
    ['STRICT', 'strict'],
    ['False', false],
    ['false', false],
  ])('reads SESSION_COOKIE_SAMESITE=%s case-insensitively as %s (False: no attribute)', (value, expected) => {
    expect(loadSettings({ SESSION_COOKIE_SAMESITE: value }).cookie.sameSite).toBe(expected);
  });

  it('reads an empty SESSION_COOKIE_DOMAIN as none (a host-only cookie)', () => {
    expect(loadSettings({ SESSION_COOKIE_DOMAIN: '' }).cookie.domain).toBeNull();
  });

  it('still reads COOKIE_NAME, COOKIE_SECURE and COOKIE_SAMESITE, each with a deprecation warning', () => {
    const s = loadSettings({ COOKIE_NAME: 'old', COOKIE_SECURE: 'true', COOKIE_SAMESITE: 'strict' });
    expect(s.cookie).toMatchObject({ name: 'old', secure: true, sameSite: 'strict' });
    expect(s.warnings).toEqual([
      'COOKIE_NAME is deprecated: use SESSION_COOKIE_NAME.',
      'COOKIE_SECURE is deprecated: use SESSION_COOKIE_SECURE.',
      'COOKIE_SAMESITE is deprecated: use SESSION_COOKIE_SAMESITE.',
    ]);
  });

  it('accepts an alias set to the same value as its new name (with a warning), and refuses different values naming both', () => {
    const same = loadSettings({ SESSION_COOKIE_SAMESITE: 'Lax', COOKIE_SAMESITE: 'lax' });
    expect(same.cookie.sameSite).toBe('lax');
    expect(same.warnings).toEqual(['COOKIE_SAMESITE is deprecated: use SESSION_COOKIE_SAMESITE (both are set: remove COOKIE_SAMESITE).']);
    for (const env of [
      { SESSION_COOKIE_NAME: 'new', COOKIE_NAME: 'old' },
      { SESSION_COOKIE_SECURE: 'true', COOKIE_SECURE: 'false' },
      { SESSION_COOKIE_SAMESITE: 'Strict', COOKIE_SAMESITE: 'lax' },
    ]) {
      const [current, alias] = Object.keys(env) as [string, string];
      expect(() => loadSettings(env)).toThrow(ConfigError);
      expect(() => loadSettings(env)).toThrow(new RegExp(`${current}: .*${alias}`));
    }
  });

  it('refuses a __Host- or __Secure- cookie name with attributes that browsers would refuse the cookie for', () => {
    // A prefixed cookie is what resists a page of another port or subdomain planting its own session
    // cookie; without the attributes its prefix asks for, browsers drop it and nobody can log in.
    const host = { SESSION_COOKIE_NAME: '__Host-sessionid', SESSION_COOKIE_SECURE: 'true' };
    expect(loadSettings(host).cookie).toMatchObject({ name: '__Host-sessionid', secure: true, path: '/', domain: null });
    expect(loadSettings({ SESSION_COOKIE_NAME: '__Secure-sessionid', SESSION_COOKIE_SECURE: 'true', SESSION_COOKIE_DOMAIN: 'example.com' }).cookie.domain).toBe('example.com');
    for (const [env, problem] of [
      [{ SESSION_COOKIE_NAME: '__Host-sessionid' }, /SESSION_COOKIE_NAME: "__Host-sessionid" requires SESSION_COOKIE_SECURE=true/],
      [{ ...host, SESSION_COOKIE_PATH: '/graphql' }, /"__Host-sessionid" requires SESSION_COOKIE_PATH=\/ /],
      [{ ...host, SESSION_COOKIE_DOMAIN: 'example.com' }, /"__Host-sessionid" requires no SESSION_COOKIE_DOMAIN/],
      [{ SESSION_COOKIE_NAME: '__secure-sessionid' }, /"__secure-sessionid" requires SESSION_COOKIE_SECURE=true/],
    ] as const) {
      expect(() => loadSettings(env)).toThrow(ConfigError);
      expect(() => loadSettings(env)).toThrow(problem);
    }
  });

  it('reads MAX_CONCURRENT_TOKEN_READS (16 by default), and its old name WS_MAX_CONCURRENT_AUTHENTICATIONS with a deprecation warning', () => {
    expect(loadSettings({}).maxConcurrentTokenReads).toBe(16);
    expect(loadSettings({ MAX_CONCURRENT_TOKEN_READS: '4' }).maxConcurrentTokenReads).toBe(4);
    const old = loadSettings({ WS_MAX_CONCURRENT_AUTHENTICATIONS: '3' });
    expect(old.maxConcurrentTokenReads).toBe(3);
    expect(old.warnings).toEqual(['WS_MAX_CONCURRENT_AUTHENTICATIONS is deprecated: use MAX_CONCURRENT_TOKEN_READS.']);
    expect(() => loadSettings({ MAX_CONCURRENT_TOKEN_READS: '4', WS_MAX_CONCURRENT_AUTHENTICATIONS: '3' })).toThrow(/MAX_CONCURRENT_TOKEN_READS: .*WS_MAX_CONCURRENT_AUTHENTICATIONS/);
    expect(() => loadSettings({ MAX_CONCURRENT_TOKEN_READS: '0' })).toThrow(ConfigError);
    // Every contradicted alias is named in the one error, the cookie's too.
    expect(() => loadSettings({ COOKIE_NAME: 'old', SESSION_COOKIE_NAME: 'new', MAX_CONCURRENT_TOKEN_READS: '4', WS_MAX_CONCURRENT_AUTHENTICATIONS: '3' })).toThrow(
      /SESSION_COOKIE_NAME: [^\n]*COOKIE_NAME[\s\S]*MAX_CONCURRENT_TOKEN_READS: [^\n]*WS_MAX_CONCURRENT_AUTHENTICATIONS/,
    );
  });

  it('names every unknown SESSION_* variable in one warning, and no other variable', () => {
    const s = loadSettings({
      SESSION_EXPIRE_AT_BROWSER_CLOSED: 'true',
      SESSION_ENGINE: 'django.contrib.sessions.backends.db',
      SESSION_COOKIE_AGE: '60',
      SESSIONS_EMBEDDED_DB: 'ferretdb',
      SOMETHING_ELSE: 'x',
    });
    expect(s.warnings).toHaveLength(1);
    expect(s.warnings[0]).toMatch(/^Unknown SESSION_\* environment variables, ignored: SESSION_ENGINE, SESSION_EXPIRE_AT_BROWSER_CLOSED\. This server reads: .*SESSION_EXPIRE_AT_BROWSER_CLOSE,/);
    expect(s.warnings[0]).not.toMatch(/ignored: [^.]*(SESSION_COOKIE_AGE|SESSIONS_EMBEDDED_DB|SOMETHING_ELSE)/);
  });

  it('warns of a wait in seconds long enough to have been meant as milliseconds', () => {
    expect(loadSettings({ HTTP_REQUEST_TIMEOUT: '15000' }).warnings).toEqual([
      'HTTP_REQUEST_TIMEOUT=15000 is in seconds (4.2 h): if milliseconds were meant, write 15.',
    ]);
    expect(loadSettings({ HTTP_REQUEST_TIMEOUT: '999', DATABASE_OPERATION_TIMEOUT: '600' }).warnings).toEqual([]);
  });

  it('names variables that look like misspelt settings, with the setting each may mean, and not the usual others', () => {
    const s = loadSettings({
      LOGIN_RATE_LIMT: '3',
      MAX_SESSION_PER_USER: '5',
      HTTP_KEEPALIVE_TIMEOUT: '10',
      WS_PING_INTERVAL_MS: '20000',
      MONGODB_URL: 'mongodb://db/x',
      HTTP_PROXY: 'http://proxy:3128',
      NODE_OPTIONS: '--max-old-space-size=4096',
      HOSTNAME: 'box',
      SESSIONS_EMBEDDED_DB: 'ferretdb',
      LOGIN_RATE_LIMIT: '4',
    });
    expect(s.warnings).toEqual([
      'Environment variables that look like misspelt settings, ignored: HTTP_KEEPALIVE_TIMEOUT (HTTP_KEEP_ALIVE_TIMEOUT?), ' +
        'LOGIN_RATE_LIMT (LOGIN_RATE_LIMIT?), MAX_SESSION_PER_USER (MAX_SESSIONS_PER_USER?), MONGODB_URL (MONGODB_URI?), WS_PING_INTERVAL_MS (WS_PING_INTERVAL?).',
    ]);
    expect(s.loginRateLimit.perUserAndAddress.limit).toBe(4);
  });

  it('warns when SESSION_COOKIE_PATH does not cover /graphql (the browser would not send the cookie to the API)', () => {
    for (const path of ['/', '/graphql']) expect(loadSettings({ SESSION_COOKIE_PATH: path }).warnings).toEqual([]);
    for (const path of ['/app', '/graph', '/graphql/']) {
      expect(loadSettings({ SESSION_COOKIE_PATH: path }).warnings).toEqual([
        `SESSION_COOKIE_PATH=${path} does not cover /graphql: browsers will not send the session cookie to the API.`,
      ]);
    }
  });

  it('reads the session cache settings, and warns when the cache could seldom be fresh', () => {
    expect(loadSettings({}).sessionCache).toEqual({ maxStalenessMs: 300, size: 100_000 });
    expect(loadSettings({ SESSION_CACHE_MAX_STALENESS_MS: '0' }).warnings).toEqual([]);
    expect(loadSettings({ SESSION_CACHE_MAX_STALENESS_MS: '100' }).warnings).toEqual([
      'SESSION_CACHE_MAX_STALENESS_MS=100 is not above CHANGE_POLL_INTERVAL_MS=100: the session cache will seldom be fresh enough to answer (set it to 0 to switch it off, or to about 3 poll intervals).',
    ]);
  });

  it.each([
    [{ SESSION_CACHE_MAX_STALENESS_MS: '-1' }, 'SESSION_CACHE_MAX_STALENESS_MS'],
    [{ SESSION_CACHE_SIZE: '0' }, 'SESSION_CACHE_SIZE'],
    [{ SESSION_EXPIRE_AT_BROWSER_CLOSE: 'sometimes' }, 'SESSION_EXPIRE_AT_BROWSER_CLOSE'],
    [{ SESSION_COOKIE_NAME: 'a;b' }, 'SESSION_COOKIE_NAME'],
    [{ SESSION_COOKIE_DOMAIN: 'exa mple.com' }, 'SESSION_COOKIE_DOMAIN'],
    [{ SESSION_COOKIE_PATH: 'graphql' }, 'SESSION_COOKIE_PATH'],
    [{ SESSION_COOKIE_PATH: '/a;b' }, 'SESSION_COOKIE_PATH'],
    [{ SESSION_COOKIE_HTTPONLY: 'perhaps' }, 'SESSION_COOKIE_HTTPONLY'],
    [{ SESSION_COOKIE_SAMESITE: 'sometimes' }, 'SESSION_COOKIE_SAMESITE'],
    [{ SESSION_COOKIE_SAMESITE: 'None' }, 'SESSION_COOKIE_SAMESITE'],
  ])('refuses %o and names the variable', (env, name) => {
    expect(() => loadSettings(env)).toThrow(ConfigError);
    expect(() => loadSettings(env)).toThrow(name);
  });
});
