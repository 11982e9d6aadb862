/**
 * Django's session settings over HTTP (issue 10): SESSION_EXPIRE_AT_BROWSER_CLOSE, the cookie
 * following sliding renewal, the SESSION_COOKIE_* attributes, and get_expiry_age next to the
 * seconds left. The pure rules behind them are in test/unit/expiry-rules.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { EventRecorder } from '../helpers/events.js';
import { errorCode, newUserSession, sleep, startTestServer, type GqlResponse, type TestServer } from '../helpers/server.js';

const FIELDS = 'id policy expireAtBrowserClose expiryAge expiryPeriod expiryDate lastSavedAt serverTime';
const SESSION = `{ session { ${FIELDS} } }`;
const LOGIN = `mutation($u:String!,$p:String!,$e:ExpiryInput){ login(username:$u,password:$p,expiry:$e,cookie:true){ token session { ${FIELDS} } } }`;
const SET_EXPIRY = `mutation($s:Int,$at:DateTimeISO){ setExpiry(seconds:$s,at:$at){ ${FIELDS} } }`;

/** A user logged in with `cookie: true`: the Set-Cookie of the login, and the Cookie header that sends it back. */
async function cookieLogin(server: TestServer, expiry: { seconds?: number | null; at?: string } | null, cookieName = 'sessionid') {
  const { username, password } = await newUserSession(server);
  const res = await server.gql(LOGIN, { u: username, p: password, e: expiry });
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  const setCookie = res.headers.get('set-cookie')!;
  expect(setCookie.startsWith(`${cookieName}=`)).toBe(true);
  const token = res.data.login.token as string;
  return { token, setCookie, cookie: `${cookieName}=${token}`, session: res.data.login.session as Record<string, any> };
}

const setCookies = (res: GqlResponse<unknown>) => res.headers.getSetCookie();
const maxAge = (setCookie: string) => Number(/; Max-Age=(\d+)/.exec(setCookie)?.[1]);
const expires = (setCookie: string) => Date.parse(/; Expires=([^;]+)/.exec(setCookie)?.[1] ?? '');
const seconds = (from: string, to: string) => (Date.parse(to) - Date.parse(from)) / 1000;

/** Whether a websocket whose upgrade sends `cookie` is accepted (connection_ack) or closed (the code). */
async function socketWithCookie(server: TestServer, cookie: string): Promise<string | number> {
  const ws = new WebSocket(server.url.replace(/^http/, 'ws'), 'graphql-transport-ws', { headers: { cookie } });
  ws.on('error', () => {});
  const result = new Promise<string | number>((resolve) => {
    ws.once('message', (data) => resolve(JSON.parse(String(data)).type as string));
    ws.once('close', (code) => resolve(code));
  });
  ws.once('open', () => ws.send(JSON.stringify({ type: 'connection_init' })));
  const outcome = await result;
  ws.close();
  return outcome;
}

describe('SESSION_EXPIRE_AT_BROWSER_CLOSE=true', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      SESSION_EXPIRE_AT_BROWSER_CLOSE: 'true',
      SESSION_COOKIE_AGE: '600',
      SESSION_BROWSER_CLOSE_AGE: '300',
      SESSION_BROWSER_CLOSE_GRACE: '1',
      PRESENCE_HEARTBEAT_MS: '500',
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a login with the global policy expires at browser close: policy DEFAULT, expireAtBrowserClose, no Max-Age or Expires, the browser-close age server-side', async () => {
    for (const expiry of [null, { seconds: null }]) {
      const { setCookie, session } = await cookieLogin(server, expiry);
      expect(setCookie).not.toMatch(/Max-Age|Expires/i);
      expect(session).toMatchObject({ policy: 'DEFAULT', expireAtBrowserClose: true, expiryAge: 300, expiryPeriod: 300 });
      expect(seconds(session.lastSavedAt, session.expiryDate)).toBe(300);
    }
    const settings = (await server.gql('{ serverSettings { expireAtBrowserClose cookieAge browserCloseAge } }')).data.serverSettings;
    expect(settings).toEqual({ expireAtBrowserClose: true, cookieAge: 600, browserCloseAge: 300 });
  });

  it("setExpiry answers as Django's get_expire_at_browser_close: false for a number or a date, true for 0 and null, and the cookie follows", async () => {
    const { cookie } = await cookieLogin(server, null);
    const at = new Date(Date.now() + 120_000).toISOString();
    const cases: Array<[{ s?: number | null; at?: string }, boolean, string]> = [
      [{ s: 60 }, false, 'SECONDS'],
      [{ s: 0 }, true, 'BROWSER_CLOSE'],
      [{ at }, false, 'DATE'],
      [{ s: null }, true, 'DEFAULT'],
    ];
    for (const [variables, atBrowserClose, policy] of cases) {
      const res = await server.gql(SET_EXPIRY, variables, { headers: { cookie } });
      expect(res.data.setExpiry, JSON.stringify(variables)).toMatchObject({ policy, expireAtBrowserClose: atBrowserClose });
      const [setCookie] = setCookies(res);
      if (atBrowserClose) {
        expect(setCookie).not.toMatch(/Max-Age|Expires/i);
      } else {
        expect(maxAge(setCookie!)).toBe(res.data.setExpiry.expiryAge);
        expect(Math.abs(expires(setCookie!) - Date.parse(res.data.setExpiry.expiryDate))).toBeLessThanOrEqual(1000);
      }
    }
  });

  it('a session with the global policy ends BROWSER_CLOSED once its last subscription has been gone for the grace period', async () => {
    const { token, session } = await newUserSession(server);
    expect(session.expireAtBrowserClose).toBe(true);
    const events = new EventRecorder(server, token);
    await events.ready(server, session.id);
    await events.dispose();
    let res = await server.gql(SESSION, {}, { token });
    expect(res.data?.session.id).toBe(session.id); // within the grace
    for (const deadline = Date.now() + 8000; !res.errors && Date.now() < deadline; ) {
      await sleep(250);
      res = await server.gql(SESSION, {}, { token });
    }
    expect(errorCode(res)).toBe('SESSION_EXPIRED');
    expect(res.errors![0]!.extensions!.reason).toBe('BROWSER_CLOSED');
  });
});

describe('the cookie follows sliding renewal (SESSION_SAVE_EVERY_REQUEST=true)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ SESSION_SAVE_EVERY_REQUEST: 'true' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a request by cookie that moves the expiry refreshes the cookie with the new Max-Age and Expires; one that does not, leaves it', async () => {
    const { cookie, session } = await cookieLogin(server, { seconds: 10 });
    await sleep(1100); // more than SESSION_TOUCH_FRACTION (5 %) of the 10 s
    const read = await server.gql(SESSION, {}, { headers: { cookie } });
    const slid = read.data.session;
    expect(Date.parse(slid.expiryDate) - Date.parse(session.expiryDate)).toBeGreaterThanOrEqual(1000);
    const [setCookie, ...more] = setCookies(read);
    expect(more).toEqual([]);
    expect(setCookie).toContain(`${cookie};`);
    expect(maxAge(setCookie!)).toBe(10);
    expect(Math.abs(expires(setCookie!) - Date.parse(slid.expiryDate))).toBeLessThanOrEqual(1000);

    const again = await server.gql(SESSION, {}, { headers: { cookie } });
    expect(again.data.session.expiryDate).toBe(slid.expiryDate); // moved by less than the touch fraction: not written
    expect(setCookies(again)).toEqual([]);
  });

  it('a request by Bearer token slides the expiry but sets no cookie', async () => {
    const { token, session } = await cookieLogin(server, { seconds: 10 });
    await sleep(1100);
    const read = await server.gql(SESSION, {}, { token });
    expect(read.data.session.expiryDate).not.toBe(session.expiryDate);
    expect(setCookies(read)).toEqual([]);
  });

  it('a request that slides the expiry and then saves a new one sends one Set-Cookie, the last', async () => {
    const { cookie } = await cookieLogin(server, { seconds: 10 });
    await sleep(1100);
    const res = await server.gql(SET_EXPIRY, { s: 30 }, { headers: { cookie } });
    expect(setCookies(res)).toHaveLength(1);
    expect(maxAge(setCookies(res)[0]!)).toBe(30);
  });
});

describe("Django's SESSION_COOKIE_* settings", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      SESSION_COOKIE_NAME: 'djsid',
      SESSION_COOKIE_DOMAIN: 'example.test',
      SESSION_COOKIE_PATH: '/graphql',
      SESSION_COOKIE_SECURE: 'True',
      SESSION_COOKIE_HTTPONLY: 'False',
      SESSION_COOKIE_SAMESITE: 'False',
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('the cookie has those attributes and Expires next to Max-Age; it authenticates HTTP and the websocket under its name; logout clears it with the same path and domain', async () => {
    const before = Date.now();
    const { setCookie, cookie, token } = await cookieLogin(server, { seconds: 300 }, 'djsid');
    expect(setCookie).toMatch(/^djsid=[\w.-]+; Max-Age=300; Domain=example\.test; Path=\/graphql; Expires=[^;]+ GMT; Secure$/);
    expect(expires(setCookie)).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 300_000);
    expect(expires(setCookie)).toBeLessThanOrEqual(Date.now() + 301_000);

    expect((await server.gql(SESSION, {}, { headers: { cookie } })).data.session.policy).toBe('SECONDS');
    expect(errorCode(await server.gql(SESSION, {}, { headers: { cookie: `sessionid=${token}` } }))).toBe('UNAUTHENTICATED');
    expect(await socketWithCookie(server, cookie)).toBe('connection_ack');
    expect(await socketWithCookie(server, `sessionid=${token}`)).toBe(4401);

    const out = await server.gql('mutation { logout }', {}, { headers: { cookie } });
    expect(setCookies(out)).toEqual(['djsid=; Max-Age=0; Domain=example.test; Path=/graphql; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure']);
  });
});

describe('the older cookie variables, and unknown SESSION_* variables', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ COOKIE_NAME: 'legacy', COOKIE_SAMESITE: 'strict', SESSION_EXPIRE_AT_BROWSER_CLOSED: 'true', SESSION_ENGINE: 'db' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('COOKIE_NAME and COOKIE_SAMESITE still work, and the start-up log warns once for each, and once for the unknown variables', async () => {
    const { setCookie, cookie } = await cookieLogin(server, { seconds: 300 }, 'legacy');
    expect(setCookie).toMatch(/^legacy=[\w.-]+; Max-Age=300; Path=\/; Expires=[^;]+; HttpOnly; SameSite=Strict$/);
    expect((await server.gql(SESSION, {}, { headers: { cookie } })).data.session.expireAtBrowserClose).toBe(false);
    const warnings = server.logs.map((line) => JSON.parse(line) as { level: number; msg: string }).filter((l) => l.level === 40).map((l) => l.msg);
    expect(warnings.filter((msg) => msg.includes('deprecated'))).toEqual([
      'COOKIE_NAME is deprecated: use SESSION_COOKIE_NAME.',
      'COOKIE_SAMESITE is deprecated: use SESSION_COOKIE_SAMESITE.',
    ]);
    const unknown = warnings.filter((msg) => msg.startsWith('Unknown SESSION_*'));
    expect(unknown).toHaveLength(1);
    expect(unknown[0]).toContain('ignored: SESSION_ENGINE, SESSION_EXPIRE_AT_BROWSER_CLOSED.');
  });
});

describe("expiryAge (seconds left) and expiryPeriod (Django's get_expiry_age)", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ SESSION_COOKIE_AGE: '600', SESSION_BROWSER_CLOSE_AGE: '300' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('after setExpiry(10), expiryPeriod stays 10 while expiryAge counts down', async () => {
    const { token } = await newUserSession(server);
    await server.gql(SET_EXPIRY, { s: 10 }, { token });
    await sleep(1100);
    const read = (await server.gql(SESSION, {}, { token })).data.session;
    expect(read).toMatchObject({ expiryPeriod: 10, expiryAge: 9 });
  });

  it('is SESSION_COOKIE_AGE for null, the browser-close age for 0, and the whole seconds to a date from serverTime', async () => {
    const { token } = await newUserSession(server);
    const byDefault = (await server.gql(SET_EXPIRY, { s: null }, { token })).data.setExpiry;
    expect(byDefault).toMatchObject({ policy: 'DEFAULT', expireAtBrowserClose: false, expiryPeriod: 600, expiryAge: 600 });
    const atClose = (await server.gql(SET_EXPIRY, { s: 0 }, { token })).data.setExpiry;
    expect(atClose).toMatchObject({ policy: 'BROWSER_CLOSE', expireAtBrowserClose: true, expiryPeriod: 300 });
    const at = new Date(Date.now() + 500_500).toISOString();
    await server.gql(SET_EXPIRY, { at }, { token });
    await sleep(50);
    const dated = (await server.gql(SESSION, {}, { token })).data.session;
    expect(dated.expiryPeriod).toBe(Math.floor(seconds(dated.serverTime, at)));
    expect(dated.expiryAge).toBe(Math.ceil(seconds(dated.serverTime, at)));
  });
});

describe('a restart with other settings, on the sessions saved before it', () => {
  const TOUCH = `mutation { touch { ${FIELDS} } }`;
  /** Sessions saved under the defaults; then the same database is served under `settings` (the first server stopped, as in a restart). */
  async function restartWith(settings: Record<string, string>, save: (before: TestServer) => Promise<void>): Promise<TestServer> {
    const before = await startTestServer();
    try {
      await save(before);
    } finally {
      await before.stop();
    }
    return startTestServer(settings, before.mongoUri);
  }

  it('a new SESSION_MAX_LIFETIME ends the sessions older than it at once and the others at the cap, with EXPIRED then', async () => {
    let old!: Awaited<ReturnType<typeof newUserSession>>;
    let young!: Awaited<ReturnType<typeof newUserSession>>;
    const server = await restartWith({ SESSION_MAX_LIFETIME: '4' }, async (before) => {
      old = await newUserSession(before);
      await sleep(4100);
      young = await newUserSession(before);
    });
    try {
      for (const query of [SESSION, TOUCH]) {
        const res = await server.gql(query, {}, { token: old.token });
        expect(errorCode(res), `${query}: ${JSON.stringify(res.errors)}`).toBe('SESSION_EXPIRED');
      }
      const cap = Date.parse(young.session.lastSavedAt) + 4000;
      const res = await server.gql(`{ session { expiryDate limitedBy } }`, {}, { token: young.token });
      expect(res.data?.session).toEqual({ expiryDate: new Date(cap).toISOString(), limitedBy: 'MAX_LIFETIME' });
      const events = new EventRecorder(server, young.token);
      await events.ready(server, young.session.id);
      const expired = await events.untilEvent('EXPIRED', 6000);
      expect(expired).toMatchObject({ reason: 'TIMEOUT', expiresAt: new Date(cap).toISOString() });
      expect(expired.receivedAt).toBeGreaterThanOrEqual(cap);
      await events.dispose();
    } finally {
      await server.stop();
    }
  });

  it('during a rolling restart, a session that a process with the new cap ends at it is ended on a process without it too', async () => {
    const without = await startTestServer();
    const capped = await startTestServer({ SESSION_MAX_LIFETIME: '3' }, without.mongoUri);
    try {
      const user = await newUserSession(without); // saved with two weeks
      expect((await without.gql(SESSION, {}, { token: user.token })).data?.session.id).toBe(user.session.id); // in that process's cache
      const onCapped = new EventRecorder(capped, user.token);
      const onWithout = new EventRecorder(without, user.token);
      await onCapped.ready(capped, user.session.id);
      await onWithout.ready(without, user.session.id);
      await onCapped.untilEvent('EXPIRED', 6000);
      // Within the change feed's delay (polls of 50 ms here, the cache's 300 ms).
      const ended = await onWithout.untilEvent('EXPIRED', 1500);
      expect(ended.reason).toBe('TIMEOUT');
      expect(errorCode(await without.gql(SESSION, {}, { token: user.token }))).toBe('SESSION_EXPIRED');
      await Promise.all([onCapped.dispose(), onWithout.dispose()]);
    } finally {
      await capped.stop();
      await without.stop();
    }
  });

  it('under SESSION_SAVE_EVERY_REQUEST, a request saves the shorter expiry of a lowered SESSION_COOKIE_AGE or SESSION_MAX_EXPIRY, and subscribers hear of it', async () => {
    let byDefault!: Awaited<ReturnType<typeof newUserSession>>;
    let hour!: Awaited<ReturnType<typeof newUserSession>>;
    const server = await restartWith({ SESSION_SAVE_EVERY_REQUEST: 'true', SESSION_COOKIE_AGE: '40', SESSION_MAX_EXPIRY: '100' }, async (before) => {
      byDefault = await newUserSession(before);
      hour = await newUserSession(before, { seconds: 3600 });
    });
    try {
      for (const [user, age] of [[byDefault, 40], [hour, 100]] as const) {
        const events = new EventRecorder(server, user.token);
        await events.ready(server, user.session.id);
        const res = await server.gql(SESSION, {}, { token: user.token });
        const session = res.data?.session;
        expect(seconds(session.serverTime, session.expiryDate), JSON.stringify(session)).toBeLessThanOrEqual(age);
        expect(session.expiryPeriod).toBe(age);
        const changed = await events.untilEvent('EXPIRY_CHANGED');
        expect(changed.expiresAt).toBe(session.expiryDate);
        await events.dispose();
      }
    } finally {
      await server.stop();
    }
  });
});
