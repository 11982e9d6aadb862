import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadSettings } from '../../src/config.js';
import { cookieOriginAllowed, normaliseOrigin, ownOrigin, parseAllowedOrigins, upgradeRequestOrigin } from '../../src/server/origin.js';

const HOST = '127.0.0.1:4000';
const allowed = (origin: string | string[] | undefined, options: { host?: string; secure?: boolean; list?: string[] } = {}) =>
  cookieOriginAllowed({ origin, host: 'host' in options ? options.host : HOST, secure: options.secure ?? false }, options.list ?? []);

describe('cookieOriginAllowed', () => {
  it('allows the server’s own origin', () => {
    expect(allowed('http://127.0.0.1:4000')).toBe(true);
    expect(allowed('https://api.example.com', { host: 'api.example.com', secure: true })).toBe(true);
    expect(allowed('http://[::1]:4000', { host: '[::1]:4000' })).toBe(true);
  });

  it('refuses another port, another scheme, another host of the same site', () => {
    expect(allowed('http://127.0.0.1:4001')).toBe(false);
    expect(allowed('http://127.0.0.1')).toBe(false);
    expect(allowed('https://127.0.0.1:4000')).toBe(false);
    expect(allowed('http://api.example.com', { host: 'api.example.com', secure: true })).toBe(false);
    expect(allowed('https://evil.example.com', { host: 'api.example.com', secure: true })).toBe(false);
    expect(allowed('http://localhost:4000')).toBe(false); // same machine, different origin
    expect(allowed('https://evil.example')).toBe(false);
  });

  it('refuses `null` and anything that is not one well-formed origin', () => {
    for (const origin of ['null', 'NULL', '', ' ', 'http://', 'http://:4000', '127.0.0.1:4000', '//127.0.0.1:4000', 'ws://127.0.0.1:4000', 'file://', 'data:']) {
      expect(allowed(origin), origin).toBe(false);
    }
  });

  it('allows a missing Origin (not a browser: browsers always send one on a websocket upgrade)', () => {
    expect(allowed(undefined)).toBe(true);
    expect(allowed(undefined, { host: undefined })).toBe(true);
  });

  it('allows a listed origin, and only a listed one', () => {
    const list = ['https://app.example.com', 'http://localhost:5173'];
    expect(allowed('https://app.example.com', { list })).toBe(true);
    expect(allowed('http://localhost:5173', { list })).toBe(true);
    expect(allowed('http://app.example.com', { list })).toBe(false);
    expect(allowed('https://app.example.com:8443', { list })).toBe(false);
    expect(allowed('https://evil.app.example.com', { list })).toBe(false);
    expect(allowed('https://app.example.com.evil.example', { list })).toBe(false);
    expect(allowed('http://localhost:5174', { list })).toBe(false);
    expect(allowed('http://127.0.0.1:4000', { list })).toBe(true); // the own origin still is
  });

  it('compares hosts and schemes case-insensitively, as browsers serialise them', () => {
    expect(allowed('HTTP://API.Example.COM', { host: 'api.example.com' })).toBe(true);
    expect(allowed('http://api.example.com', { host: 'API.EXAMPLE.COM' })).toBe(true);
    expect(allowed('https://APP.example.com', { list: ['https://app.example.com'] })).toBe(true);
  });

  it('normalises default ports on both sides', () => {
    expect(allowed('http://api.example.com', { host: 'api.example.com:80' })).toBe(true);
    expect(allowed('http://api.example.com:80', { host: 'api.example.com' })).toBe(true);
    expect(allowed('https://api.example.com', { host: 'api.example.com:443', secure: true })).toBe(true);
    expect(allowed('https://api.example.com:443', { host: 'api.example.com', secure: true })).toBe(true);
    expect(allowed('http://api.example.com:443', { host: 'api.example.com', secure: true })).toBe(false);
    expect(allowed('https://api.example.com:80', { host: 'api.example.com:80', secure: true })).toBe(true); // odd, but the same origin
    expect(allowed('https://app.example.com:443', { list: ['https://app.example.com'] })).toBe(true);
  });

  it('refuses hostile values that merely start with the right origin', () => {
    for (const origin of [
      'http://127.0.0.1:4000.evil.example',
      'http://127.0.0.1:4000@evil.example',
      'http://user@127.0.0.1:4000',
      'http://127.0.0.1:4000/',
      'http://127.0.0.1:4000/path',
      'http://127.0.0.1:4000?x',
      'http://127.0.0.1:4000#x',
      'http://127.0.0.1:4000\\@evil.example',
      'http://127.0.0.1%3a4000',
      'http://127.0.0.1:4000%00',
      'http://127.0.0.1:4000\u0000',
      'http://127.0.0.1:4000\r\nX-Evil: 1',
      'http://127.0.0.1:99999',
      'http://127.0.0.1:4000:4000',
    ]) {
      expect(allowed(origin), JSON.stringify(origin)).toBe(false);
    }
  });

  it('refuses whitespace inside or around the value', () => {
    for (const origin of [' http://127.0.0.1:4000', 'http://127.0.0.1:4000 ', 'http://127.0.0.1 :4000', '\thttp://127.0.0.1:4000', 'http://127.0.0.1:4000\n']) {
      expect(allowed(origin), JSON.stringify(origin)).toBe(false);
    }
  });

  it('refuses several values, joined or repeated', () => {
    expect(allowed('http://127.0.0.1:4000, https://evil.example')).toBe(false);
    expect(allowed('https://evil.example, http://127.0.0.1:4000')).toBe(false);
    expect(allowed('http://127.0.0.1:4000,http://127.0.0.1:4000')).toBe(false);
    expect(allowed(['http://127.0.0.1:4000', 'https://evil.example'])).toBe(false);
    expect(allowed(['http://127.0.0.1:4000', 'http://127.0.0.1:4000'])).toBe(false);
    expect(allowed([])).toBe(false);
    expect(allowed(['http://127.0.0.1:4000'])).toBe(true);
  });

  it('has no own origin without a well-formed Host header (a listed origin still works)', () => {
    expect(allowed('http://127.0.0.1:4000', { host: undefined })).toBe(false);
    expect(allowed('http://127.0.0.1:4000', { host: '' })).toBe(false);
    expect(allowed('http://evil.example', { host: 'evil.example/x' })).toBe(false);
    expect(allowed('http://evil.example', { host: '127.0.0.1:4000@evil.example' })).toBe(false);
    expect(allowed('http://127.0.0.1:4000', { host: '127.0.0.1:4000, evil.example' })).toBe(false);
    expect(allowed('https://app.example.com', { host: undefined, list: ['https://app.example.com'] })).toBe(true);
  });
});

describe('normaliseOrigin and ownOrigin', () => {
  it('serialise as browsers do', () => {
    expect(normaliseOrigin('HTTPS://App.Example.COM:443')).toBe('https://app.example.com');
    expect(normaliseOrigin('http://[::1]:80')).toBe('http://[::1]');
    expect(normaliseOrigin('http://localhost:5173')).toBe('http://localhost:5173');
    expect(normaliseOrigin('null')).toBeNull();
    expect(ownOrigin('127.0.0.1:4000', false)).toBe('http://127.0.0.1:4000');
    expect(ownOrigin('api.example.com:443', true)).toBe('https://api.example.com');
    expect(ownOrigin(undefined, false)).toBeNull();
  });
});

describe('upgradeRequestOrigin', () => {
  const request = (headers: Record<string, string>, socket: { encrypted?: boolean; remoteAddress?: string } = {}) =>
    ({ headers, socket: { remoteAddress: '127.0.0.1', ...socket } }) as unknown as IncomingMessage;

  it('reads Origin and Host, and takes ws: for http and wss: (TLS) for https', () => {
    expect(upgradeRequestOrigin(request({ origin: 'http://a', host: 'a' }))).toEqual({ origin: 'http://a', host: 'a', secure: false });
    expect(upgradeRequestOrigin(request({ host: 'a' }, { encrypted: true }))).toEqual({ origin: undefined, host: 'a', secure: true });
  });

  it('believes X-Forwarded-Proto only from a trusted proxy', () => {
    const proxied = request({ host: 'a', 'x-forwarded-proto': 'https' }, { remoteAddress: '10.0.0.1' });
    expect(upgradeRequestOrigin(proxied).secure).toBe(false);
    expect(upgradeRequestOrigin(proxied, () => false).secure).toBe(false);
    expect(upgradeRequestOrigin(proxied, () => true).secure).toBe(true);
    expect(upgradeRequestOrigin(proxied, (address) => address === '10.0.0.1').secure).toBe(true);
    expect(upgradeRequestOrigin(proxied, (address) => address === '10.0.0.2').secure).toBe(false);
    expect(upgradeRequestOrigin(request({ host: 'a', 'x-forwarded-proto': 'HTTPS, http' }), () => true).secure).toBe(true);
    expect(upgradeRequestOrigin(request({ host: 'a', 'x-forwarded-proto': 'http, https' }), () => true).secure).toBe(false);
  });
});

describe('ALLOWED_ORIGINS', () => {
  it('is empty by default', () => {
    expect(loadSettings({}).allowedOrigins).toEqual([]);
    expect(loadSettings({ ALLOWED_ORIGINS: '' }).allowedOrigins).toEqual([]);
  });

  it('reads a comma-separated list into canonical origins', () => {
    expect(loadSettings({ ALLOWED_ORIGINS: 'https://app.example.com, http://localhost:5173' }).allowedOrigins).toEqual([
      'https://app.example.com',
      'http://localhost:5173',
    ]);
    expect(loadSettings({ ALLOWED_ORIGINS: 'HTTPS://App.Example.com:443,,https://app.example.com,' }).allowedOrigins).toEqual(['https://app.example.com']);
  });

  it.each([
    'https://app.example.com/',
    'https://app.example.com/path',
    'app.example.com',
    'ftp://app.example.com',
    'https://user@app.example.com',
    'https://app.example.com:99999',
    'https://*.example.com',
    '*',
    'null',
    'http://localhost:5173 https://app.example.com',
  ])('refuses %j with a configuration error that names ALLOWED_ORIGINS', (value) => {
    expect(() => loadSettings({ ALLOWED_ORIGINS: value })).toThrow(ConfigError);
    expect(() => loadSettings({ ALLOWED_ORIGINS: value })).toThrow(/ALLOWED_ORIGINS: .*(not an origin|wildcards|"null")/);
  });

  it('says what is wrong', () => {
    expect(parseAllowedOrigins('https://a.example/')).toEqual({
      error: expect.stringContaining('"https://a.example/" is not an origin: expected scheme://host[:port]'),
    });
  });
});
