import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorCode, login, newUserSession, SESSION_FIELDS, sleep, startTestServer, type TestServer } from '../helpers/server.js';

const SESSION = `{ session { ${SESSION_FIELDS} } }`;
const SET_EXPIRY = `mutation($s:Int,$at:DateTimeISO){ setExpiry(seconds:$s, at:$at){ ${SESSION_FIELDS} } }`;

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ LOGIN_URL: '/login-here' });
});
afterAll(async () => {
  await server?.stop();
});

describe('register and login', () => {
  it('registers a user, refuses a taken or malformed username and a short password', async () => {
    const ok = await server.gql('mutation { register(username:"Alice_01", password:"long enough pw"){ id username } }');
    expect(ok.data.register.username).toBe('alice_01');
    const taken = await server.gql('mutation { register(username:"ALICE_01", password:"long enough pw"){ id } }');
    expect(errorCode(taken)).toBe('USERNAME_TAKEN');
    expect(errorCode(await server.gql('mutation { register(username:"a b", password:"long enough pw"){ id } }'))).toBe('INVALID_USERNAME');
    expect(errorCode(await server.gql('mutation { register(username:"bob_01", password:"short"){ id } }'))).toBe('INVALID_PASSWORD');
    // A lone surrogate is hashed as U+FFFD: two such passwords would be one.
    const REGISTER = 'mutation($p: String!) { register(username: "bob_01", password: $p) { id } }';
    const lone = await server.gql(REGISTER, { p: 'long enough \ud800 pw' });
    expect(lone.errors?.[0]).toMatchObject({ message: 'A password may not hold half of a character (a lone UTF-16 surrogate).', extensions: { code: 'INVALID_PASSWORD' } });
    expect(errorCode(await server.gql(REGISTER, { p: 'long enough \ud83d\ude00 pw' }))).toBeUndefined(); // a pair is one character
  });

  it('logs in with the global default expiry and returns a token of the session id and a 32-byte secret', async () => {
    const { token, session } = await newUserSession(server);
    const [id, secret] = token.split('.');
    expect(id).toBe(session.id);
    expect(Buffer.from(secret!, 'base64url')).toHaveLength(32);
    expect(session.policy).toBe('DEFAULT');
    expect(session.expiryAge).toBe(1_209_600);
    expect(session.current).toBe(true);
  });

  it('answers with X-Content-Type-Options: nosniff everywhere, not only on its pages', async () => {
    const origin = new URL(server.url).origin;
    const answers = [await fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{ serverTime }"}' })];
    for (const p of ['/livez', '/readyz', '/no-such-page']) answers.push(await fetch(`${origin}${p}`));
    expect(answers.map((res) => `${res.status} ${res.headers.get('x-content-type-options')}`)).toEqual(['200 nosniff', '200 nosniff', '200 nosniff', '404 nosniff']);
  });

  it('serves its pages unframeable (CSP frame-ancestors, and X-Frame-Options for older browsers) and sending no Referer', async () => {
    const origin = new URL(server.url).origin;
    for (const page of ['/app', '/graphiql']) {
      const res = await fetch(`${origin}${page}`);
      expect(res.status, page).toBe(200);
      expect(res.headers.get('content-security-policy'), page).toContain("frame-ancestors 'none'");
      expect([res.headers.get('x-frame-options'), res.headers.get('referrer-policy')], page).toEqual(['DENY', 'no-referrer']);
    }
  });

  it('gives the same error for an unknown user and a wrong password', async () => {
    const { username } = await newUserSession(server);
    const wrong = await server.gql('mutation($u:String!){ login(username:$u, password:"wrong password"){ token } }', { u: username });
    const unknown = await server.gql('mutation { login(username:"nobody_here", password:"wrong password"){ token } }');
    expect(errorCode(wrong)).toBe('INVALID_CREDENTIALS');
    expect(errorCode(unknown)).toBe('INVALID_CREDENTIALS');
    expect(wrong.errors![0]!.message).toBe(unknown.errors![0]!.message);
  });

  it('refuses requests without a session, with an unknown token, with a wrong secret or with the token spelled otherwise than issued', async () => {
    const none = await server.gql(SESSION);
    expect(errorCode(none)).toBe('UNAUTHENTICATED');
    expect(none.errors![0]!.extensions!.loginUrl).toBe('/login-here');
    const { token } = await newUserSession(server);
    const [id, secret] = token.split('.') as [string, string];
    const flipped = `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;
    // Each token has one spelling: the id in upper case named the same session and was never found in the cache.
    for (const bad of ['not-a-token', `${id}.`, `${id}.${flipped}`, `000000000000000000000000.${secret}`, `${id.toUpperCase()}.${secret}`, `${id}.${secret}=`]) {
      expect(errorCode(await server.gql(SESSION, {}, { token: bad })), bad).toBe('UNAUTHENTICATED');
    }
    expect(errorCode(await server.gql(SESSION, {}, { token }))).toBeUndefined();
  });
});

describe('expiry', () => {
  it('setExpiry(seconds: 300) reports age and date, and reading does not move them', async () => {
    const { token } = await newUserSession(server);
    const set = await server.gql(SET_EXPIRY, { s: 300 }, { token });
    const saved = set.data.setExpiry;
    expect(saved.policy).toBe('SECONDS');
    expect(saved.policySeconds).toBe(300);
    expect(saved.expiryAge).toBe(300);
    expect(new Date(saved.expiryDate).getTime() - new Date(saved.lastSavedAt).getTime()).toBe(300_000);
    await sleep(1100);
    const read = (await server.gql(SESSION, {}, { token })).data.session;
    expect(read.expiryDate).toBe(saved.expiryDate);
    expect(read.lastSavedAt).toBe(saved.lastSavedAt);
    expect(read.expiryAge).toBe(299);
  });

  it('serves a session until its expiry and refuses it from then on with SESSION_EXPIRED and the login URL', async () => {
    const { token } = await newUserSession(server, { seconds: 2 });
    await sleep(1000);
    expect((await server.gql(SESSION, {}, { token })).data.session.expiryAge).toBe(1);
    await sleep(1100);
    const refused = await server.gql(SESSION, {}, { token });
    expect(errorCode(refused)).toBe('SESSION_EXPIRED');
    expect(refused.errors![0]!.extensions!.loginUrl).toBe('/login-here');
    expect(refused.data).toBeNull();
    expect(errorCode(await server.gql('mutation { touch { id } }', {}, { token }))).toBe('SESSION_EXPIRED');
  });

  it('renewal with touch slides an idle expiry; a fixed date does not move', async () => {
    const { token } = await newUserSession(server, { seconds: 2 });
    await sleep(1200);
    const touched = (await server.gql(`mutation { touch { ${SESSION_FIELDS} } }`, {}, { token })).data.touch;
    expect(touched.expiryAge).toBe(2);
    await sleep(1200);
    expect((await server.gql(SESSION, {}, { token })).data.session.policy).toBe('SECONDS');

    const at = new Date(Date.now() + 60_000).toISOString();
    const fixed = (await server.gql(SET_EXPIRY, { at }, { token })).data.setExpiry;
    expect(fixed.policy).toBe('DATE');
    expect(fixed.expiryDate).toBe(at);
    const touchedFixed = (await server.gql(`mutation { touch { ${SESSION_FIELDS} } }`, {}, { token })).data.touch;
    expect(touchedFixed.expiryDate).toBe(at);
  });

  it('0 means browser close, null the global default', async () => {
    const { token } = await newUserSession(server);
    const zero = (await server.gql(SET_EXPIRY, { s: 0 }, { token })).data.setExpiry;
    expect(zero.expireAtBrowserClose).toBe(true);
    expect(zero.policy).toBe('BROWSER_CLOSE');
    const back = (await server.gql(SET_EXPIRY, { s: null }, { token })).data.setExpiry;
    expect(back.policy).toBe('DEFAULT');
    expect(back.expireAtBrowserClose).toBe(false);
    expect(back.expiryAge).toBe(1_209_600);
  });

  it('rejects bad input with a code and changes nothing', async () => {
    const { token } = await newUserSession(server, { seconds: 600 });
    const before = (await server.gql(SESSION, {}, { token })).data.session;
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ s: -1 }, 'INVALID_EXPIRY'],
      [{ s: 400 * 24 * 3600 }, 'EXPIRY_TOO_LONG'],
      [{ s: 1.5 }, 'BAD_USER_INPUT'],
      [{ s: 1e12 }, 'BAD_USER_INPUT'],
      [{ s: 'NaN' }, 'BAD_USER_INPUT'],
      [{ at: new Date(Date.now() - 1000).toISOString() }, 'EXPIRY_IN_PAST'],
      [{ at: new Date(Date.now() + 400 * 24 * 3600 * 1000).toISOString() }, 'EXPIRY_TOO_LONG'],
      [{ at: 'tomorrow' }, 'BAD_USER_INPUT'],
      [{ s: 300, at: new Date(Date.now() + 60_000).toISOString() }, 'INVALID_EXPIRY'],
    ];
    for (const [variables, code] of cases) {
      const res = await server.gql(SET_EXPIRY, variables, { token });
      expect(errorCode(res), JSON.stringify(variables)).toBe(code);
    }
    const after = (await server.gql(SESSION, {}, { token })).data.session;
    expect(after.expiryDate).toBe(before.expiryDate);
    expect(after.lastSavedAt).toBe(before.lastSavedAt);
    expect(after.policySeconds).toBe(600);
  });

  it('rejects a bad expiry at login without creating a session', async () => {
    const { username, password, token } = await newUserSession(server);
    const res = await server.gql('mutation($u:String!,$p:String!){ login(username:$u,password:$p,expiry:{seconds:-5}){ token } }', {
      u: username,
      p: password,
    });
    expect(errorCode(res)).toBe('INVALID_EXPIRY');
    expect((await server.gql('{ sessions { id } }', {}, { token })).data.sessions).toHaveLength(1);
  });
});

describe('cookie transport', () => {
  it('sets an HttpOnly cookie with Max-Age and Expires, and neither for a browser-close session; the cookie authenticates', async () => {
    const { username, password } = await newUserSession(server);
    const q = 'mutation($u:String!,$p:String!,$e:ExpiryInput){ login(username:$u,password:$p,expiry:$e,cookie:true){ token } }';
    const timed = await server.gql(q, { u: username, p: password, e: { seconds: 300 } });
    const cookie = timed.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^sessionid=[\w.-]+; Max-Age=300; Path=\/; Expires=[^;]+ GMT; HttpOnly; SameSite=Lax$/);

    const closing = await server.gql(q, { u: username, p: password, e: { seconds: 0 } });
    const browserClose = closing.headers.get('set-cookie')!;
    expect(browserClose).toContain('HttpOnly');
    expect(browserClose).not.toMatch(/Max-Age|Expires/i);

    const viaCookie = await server.gql(SESSION, {}, { headers: { cookie: browserClose.split(';')[0]! } });
    expect(viaCookie.data.session.expireAtBrowserClose).toBe(true);

    const renewed = await server.gql(SET_EXPIRY, { s: 120 }, { headers: { cookie: browserClose.split(';')[0]! } });
    expect(renewed.headers.get('set-cookie')).toContain('Max-Age=120');
  });

  it('refuses a cross-site form post (CSRF prevention)', async () => {
    const res = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify({ query: '{ serverTime }' }),
    });
    expect(res.status).toBe(400);
  });
});

describe('logout, logoutAll, sessions', () => {
  it('logout ends the session: later requests get SESSION_ENDED', async () => {
    const { token } = await newUserSession(server);
    expect((await server.gql('mutation { logout }', {}, { token })).data.logout).toBe(true);
    const after = await server.gql(SESSION, {}, { token });
    expect(errorCode(after)).toBe('SESSION_ENDED');
    expect(after.errors![0]!.extensions!.reason).toBe('LOGGED_OUT');
    expect(after.errors![0]!.extensions!.loginUrl).toBe('/login-here');
  });

  it('logoutAll revokes the other sessions and logs out this one; keepCurrent keeps it', async () => {
    const first = await newUserSession(server);
    const second = await login(server, first.username, first.password);
    const third = await login(server, first.username, first.password);
    const listed = (await server.gql('{ sessions { id current } }', {}, { token: third.token })).data.sessions;
    expect(listed.map((s: { id: string }) => s.id).sort()).toEqual([first.session.id, second.session.id, third.session.id].sort());

    const kept = await server.gql('mutation { logoutAll(keepCurrent: true) }', {}, { token: third.token });
    expect(kept.data.logoutAll).toBe(2);
    for (const t of [first.token, second.token]) {
      const res = await server.gql(SESSION, {}, { token: t });
      expect(errorCode(res)).toBe('SESSION_ENDED');
      expect(res.errors![0]!.extensions!.reason).toBe('REVOKED');
    }
    expect((await server.gql(SESSION, {}, { token: third.token })).data.session.id).toBe(third.session.id);
    expect((await server.gql('mutation { logoutAll }', {}, { token: third.token })).data.logoutAll).toBe(1);
    expect(errorCode(await server.gql(SESSION, {}, { token: third.token }))).toBe('SESSION_ENDED');
  });

  it('lists the sessions once per request, however many aliases ask for them', async () => {
    const { token } = await newUserSession(server);
    const listSessions = server.service.listSessions.bind(server.service);
    let listings = 0;
    server.service.listSessions = (...args) => (listings++, listSessions(...args));
    try {
      const res = await server.gql('{ a: sessions { id } b: sessions { current } c: sessions { id } }', {}, { token });
      expect([res.data.a.length, res.data.b[0].current, res.data.c.length]).toEqual([1, true, 1]);
      expect(listings).toBe(1);
    } finally {
      server.service.listSessions = listSessions;
    }
  });

  it("reads a user's sessions one read at a time however many requests list them at once, each from a read begun after it was sent", async () => {
    // On FerretDB every listing scans the sessions collection: 400 at once from one session kept the
    // database busy enough that the process's ping timed out and it reported the database unreachable.
    const user = await newUserSession(server);
    const other = await login(server, user.username, user.password);
    const store = server.service.store;
    const listOpen = store.listOpen.bind(store);
    let reads = 0;
    let running = 0;
    let mostAtOnce = 0;
    store.listOpen = async (...args) => {
      reads++;
      mostAtOnce = Math.max(mostAtOnce, ++running);
      try {
        return await listOpen(...args);
      } finally {
        running--;
      }
    };
    try {
      const LIST = '{ sessions { id } }';
      const first = Array.from({ length: 100 }, () => server.gql(LIST, {}, { token: user.token }));
      await sleep(20);
      expect((await server.gql('mutation($id: ID!) { revokeSession(id: $id) }', { id: other.session.id }, { token: user.token })).data.revokeSession).toBe(true);
      const after = Array.from({ length: 100 }, () => server.gql(LIST, {}, { token: user.token }));
      const answers = await Promise.all([...first, ...after]);
      expect(answers.filter((res) => res.errors)).toEqual([]);
      // Those sent after the revocation was answered never list it.
      expect(new Set((await Promise.all(after)).map((res) => res.data.sessions.length))).toEqual(new Set([1]));
      expect(mostAtOnce).toBe(1);
      expect(reads).toBeLessThan(answers.length);
    } finally {
      store.listOpen = listOpen;
    }
  });

  it('logoutAll and revokeSession leave a session that has already expired as expired', async () => {
    const current = await newUserSession(server);
    const expired = await login(server, current.username, current.password, { seconds: 1 });
    await sleep(new Date(expired.session.expiryDate).getTime() + 50 - Date.now());
    const q = 'mutation($id:ID!){ revokeSession(id:$id) }';
    expect((await server.gql(q, { id: expired.session.id }, { token: current.token })).data.revokeSession).toBe(false);
    expect((await server.gql('mutation { logoutAll(keepCurrent: true) }', {}, { token: current.token })).data.logoutAll).toBe(0);
    const res = await server.gql(SESSION, {}, { token: expired.token });
    expect(errorCode(res)).toBe('SESSION_EXPIRED');
    expect(res.errors![0]!.extensions!.reason).toBe('TIMEOUT');
  });

  it("revokeSession ends one's own other session but not another user's", async () => {
    const a = await newUserSession(server);
    const a2 = await login(server, a.username, a.password);
    const b = await newUserSession(server);
    const q = 'mutation($id:ID!){ revokeSession(id:$id) }';
    expect((await server.gql(q, { id: b.session.id }, { token: a.token })).data.revokeSession).toBe(false);
    expect((await server.gql(SESSION, {}, { token: b.token })).data.session.id).toBe(b.session.id);
    expect((await server.gql(q, { id: a2.session.id }, { token: a.token })).data.revokeSession).toBe(true);
    expect(errorCode(await server.gql(SESSION, {}, { token: a2.token }))).toBe('SESSION_ENDED');
  });
});

describe('what is never logged', () => {
  it('no token, password or hash appears in the logs', async () => {
    const { token, password } = await newUserSession(server);
    await server.gql(SESSION, {}, { token });
    await server.gql('mutation { logout }', {}, { token });
    const all = server.logs.join('\n');
    expect(all.length).toBeGreaterThan(0);
    expect(all).not.toContain(token);
    expect(all).not.toContain(password);
    expect(all).not.toContain('scrypt$');
  });
});

describe('server clock and settings', () => {
  it('answers serverTime and serverSettings without a session', async () => {
    const res = await server.gql('{ serverTime serverSettings { cookieAge maxExpiry loginUrl saveEveryRequest maxLifetime } }');
    expect(Math.abs(new Date(res.data.serverTime).getTime() - Date.now())).toBeLessThan(5000);
    expect(res.data.serverSettings).toEqual({
      cookieAge: 1_209_600,
      maxExpiry: 366 * 24 * 3600,
      loginUrl: '/login-here',
      saveEveryRequest: false,
      maxLifetime: null,
    });
  });
});
