import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { printedSchema } from '../../src/graphql/schema.js';
import { errorCode, login, newUserSession, SESSION_FIELDS, sleep, startTestServer, testDatabaseUri, type TestServer } from '../helpers/server.js';

const SESSION = `{ session { ${SESSION_FIELDS} } }`;
const LOGIN = 'mutation($u:String!,$p:String!){ login(username:$u,password:$p){ token } }';

const running: TestServer[] = [];
async function start(env: Record<string, string>, uri?: string) {
  const server = await startTestServer(env, uri);
  running.push(server);
  return server;
}
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

describe('login rate limit', () => {
  it('refuses further attempts per username once the failures are used up, even with the right password', async () => {
    const server = await start({ LOGIN_RATE_LIMIT: '3', LOGIN_USER_RATE_LIMIT: '3', LOGIN_RATE_WINDOW: '60', LOGIN_USER_RATE_WINDOW: '60', TRUST_PROXY: 'loopback' });
    const { username, password } = await newUserSession(server);
    for (let i = 0; i < 3; i++) {
      const res = await server.gql(LOGIN, { u: username, p: 'wrong password' }, { headers: { 'x-forwarded-for': `10.0.0.${i}` } });
      expect(errorCode(res)).toBe('INVALID_CREDENTIALS');
    }
    const limited = await server.gql(LOGIN, { u: username, p: password }, { headers: { 'x-forwarded-for': '10.0.0.9' } });
    expect(errorCode(limited)).toBe('RATE_LIMITED');
    expect(limited.errors![0]!.extensions!.retryAfter).toBeGreaterThan(0);
  });

  it('refuses further attempts per client address, whatever the username', async () => {
    const server = await start({ LOGIN_RATE_LIMIT: '3', LOGIN_ADDRESS_RATE_LIMIT: '3', LOGIN_RATE_WINDOW: '60', LOGIN_ADDRESS_RATE_WINDOW: '60', TRUST_PROXY: 'loopback' });
    const { username, password } = await newUserSession(server);
    const from = { headers: { 'x-forwarded-for': '10.1.1.1' } };
    for (let i = 0; i < 3; i++) {
      expect(errorCode(await server.gql(LOGIN, { u: `someone${i}`, p: 'wrong password' }, from))).toBe('INVALID_CREDENTIALS');
    }
    expect(errorCode(await server.gql(LOGIN, { u: username, p: password }, from))).toBe('RATE_LIMITED');
    const elsewhere = await server.gql(LOGIN, { u: username, p: password }, { headers: { 'x-forwarded-for': '10.1.1.2' } });
    expect(elsewhere.data.login.token).toBeTruthy();
  });
});

describe('SESSION_SAVE_EVERY_REQUEST', () => {
  it('slides the expiry on authenticated requests', async () => {
    const server = await start({ SESSION_SAVE_EVERY_REQUEST: 'true' });
    const { token, session } = await newUserSession(server, { seconds: 3 });
    await sleep(1100);
    const read = (await server.gql(SESSION, {}, { token })).data.session;
    expect(new Date(read.expiryDate).getTime()).toBeGreaterThan(new Date(session.expiryDate).getTime() + 1000);
    await sleep(2200); // past the original expiry, within the slid one
    expect((await server.gql(SESSION, {}, { token })).data.session.id).toBe(session.id);
  });

  it('is off by default: requests do not move the expiry', async () => {
    const server = await start({});
    const { token, session } = await newUserSession(server, { seconds: 3 });
    await sleep(1100);
    expect((await server.gql(SESSION, {}, { token })).data.session.expiryDate).toBe(session.expiryDate);
  });
});

describe('SESSION_MAX_LIFETIME', () => {
  it('caps renewals at login + max and says which limit applies', async () => {
    const server = await start({ SESSION_MAX_LIFETIME: '3' });
    const { token, session } = await newUserSession(server, { seconds: 2 });
    expect(session.limitedBy).toBe('POLICY');
    await sleep(1500);
    const touched = (await server.gql(`mutation { touch { ${SESSION_FIELDS} } }`, {}, { token })).data.touch;
    expect(touched.limitedBy).toBe('MAX_LIFETIME');
    const created = new Date(touched.expiryDate).getTime() - 3000;
    expect(Math.abs(created - new Date(session.lastSavedAt).getTime())).toBeLessThan(5);
    await sleep(1600);
    expect(errorCode(await server.gql(SESSION, {}, { token }))).toBe('SESSION_EXPIRED');
  });
});

describe('restart', () => {
  it('keeps users and sessions: a token works after the server restarts', async () => {
    const uri = testDatabaseUri();
    const first = await start({}, uri);
    const { token, username, password, session } = await newUserSession(first, { seconds: 600 });
    await first.stop();
    running.splice(running.indexOf(first), 1);
    const second = await start({}, uri);
    const read = (await second.gql(SESSION, {}, { token })).data.session;
    expect(read.id).toBe(session.id);
    expect(read.expiryDate).toBe(session.expiryDate);
    expect((await login(second, username, password)).token).toBeTruthy();
  });
});

describe('schema.graphql', () => {
  it('is what the type-graphql classes emit (run `npm run schema` after changing them)', async () => {
    const committed = await readFile(new URL('../../schema.graphql', import.meta.url), 'utf8');
    expect(committed).toBe(await printedSchema());
  });
});
