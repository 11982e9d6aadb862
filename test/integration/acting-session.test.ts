/**
 * A session that has ended acts no more, not even in a request it began while it was valid: a
 * mutation's fields run one after another, and one that ends other sessions (logoutAll,
 * revokeSession) must find its own session still valid when it acts, on this process at once and
 * on another within SESSION_CACHE_MAX_STALENESS_MS, as a new request would. Otherwise someone
 * holding a stolen token, revoked by the user, still logs the user out with a request sent before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOGOUT_ALL_CONCURRENCY } from '../../src/sessions/service.js';
import { FaultProxy, type Command } from '../helpers/faultProxy.js';
import { errorCode, login, newUserSession, overSocket, sleep, startTestServer, testDatabaseUri, type TestServer, type WsResult } from '../helpers/server.js';

const STALENESS_MS = 300;
/** How long the attacker's request is held, in the login in its middle (the users collection's reads answered late). */
const HELD_MS = 1_500;
const VALID = '{ session { id } }';

let a: TestServer;
let b: TestServer;
let proxy: FaultProxy;

beforeAll(async () => {
  const uri = testDatabaseUri();
  proxy = await FaultProxy.start(uri);
  const env = { SESSION_CACHE_MAX_STALENESS_MS: String(STALENESS_MS) };
  // `a` reaches the database through the proxy, which can hold its reads of users; `b` directly.
  [a, b] = await Promise.all([startTestServer(env, proxy.uri), startTestServer(env, uri)]);
});
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await proxy?.close();
});

const stillValid = async (server: TestServer, token: string) => errorCode(await server.gql(VALID, {}, { token })) ?? 'valid';

/** A user with two sessions: the attacker's (stolen) and the victim's (the user's own). */
async function twoSessions(server: TestServer) {
  const victim = await newUserSession(server, { seconds: 600 });
  const attacker = await login(server, victim.username, victim.password, { seconds: 600 });
  return { victim, attacker };
}

/** Over a websocket of its own, authenticated by `token`, the result of one operation. */
async function overOwnSocket(server: TestServer, token: string, query: string, variables: Record<string, unknown>): Promise<WsResult> {
  const client = server.wsClient(token);
  try {
    return await overSocket(client, query, variables);
  } finally {
    await client.dispose();
  }
}

/** Each ends others: a non-null field, so its error nulls the whole answer (and stops the mutation). */
const ACTS = {
  revokeSession: { act: 'revokeSession(id: $victim)', variables: ['$victim: ID!'] },
  logoutAll: { act: 'logoutAll(keepCurrent: true)', variables: [] },
} as const;

/** The error of the answer: on `field`, SESSION_ENDED, and the data nulled by it. */
function expectRefusedAt(res: { data?: unknown; errors?: any[] }, field: string): void {
  expect(res.data).toBeNull();
  expect(res.errors).toHaveLength(1);
  expect(res.errors![0]).toMatchObject({ path: [field], extensions: { code: 'SESSION_ENDED' } });
}

describe('a session that has ended acts no more', () => {
  for (const [field, { act, variables }] of Object.entries(ACTS)) {
    const declared = (more: string[]) => ([...more, ...variables].length > 0 ? `(${[...more, ...variables].join(', ')})` : '');
    const afterLogout = `mutation${declared([])} { logout ${field}: ${act} }`;

    it(`after \`logout\`, a later \`${field}\` of the same mutation ends nothing (HTTP and websocket)`, async () => {
      for (const send of [(token: string, vars: Record<string, unknown>) => a.gql(afterLogout, vars, { token }), (token: string, vars: Record<string, unknown>) => overOwnSocket(a, token, afterLogout, vars)]) {
        const { victim, attacker } = await twoSessions(a);
        expectRefusedAt(await send(attacker.token, { victim: victim.session.id }), field);
        expect(await stillValid(a, attacker.token)).toBe('SESSION_ENDED');
        expect(await stillValid(a, victim.token)).toBe('valid');
      }
    });

    // touch finds the session valid; a login whose read of users the proxy holds keeps the request going while the user revokes it.
    const held = `mutation${declared(['$u: String!', '$p: String!'])} { t: touch { id } l: login(username: $u, password: $p) { token } ${field}: ${act} }`;

    for (const where of ['this process', 'another process'] as const) {
      it(`a request in flight when its session is revoked on ${where}: its later \`${field}\` ends nothing`, async () => {
        const { victim, attacker } = await twoSessions(a);
        const spare = await newUserSession(a);
        const revoker = where === 'this process' ? a : b;
        proxy.delayAnswersTo((c) => c.command === 'find' && c.collection === 'users', HELD_MS);
        try {
          const attack = a.gql(held, { u: spare.username, p: spare.password, victim: victim.session.id }, { token: attacker.token });
          await sleep(300);
          const revoked = await revoker.gql('mutation($id: ID!) { revokeSession(id: $id) }', { id: attacker.session.id }, { token: victim.token });
          expect(revoked.data).toEqual({ revokeSession: true });
          expectRefusedAt(await attack, field);
        } finally {
          proxy.delayAnswersTo(() => false, 0);
        }
        // The request did go on past the revocation: the spare user's login went through.
        expect((await a.gql('{ sessions { id } }', {}, { token: spare.token })).data.sessions).toHaveLength(2);
        expect(await stillValid(a, victim.token)).toBe('valid');
        expect(await stillValid(b, victim.token)).toBe('valid');
      });
    }
  }

  it('a logoutAll under way when its session is revoked on another process ends no more of the others', async () => {
    const attacker = await newUserSession(a, { seconds: 600 });
    const others = await Promise.all(Array.from({ length: 3 * LOGOUT_ALL_CONCURRENCY }, () => login(a, attacker.username, attacker.password)));
    // logoutAll ends LOGOUT_ALL_CONCURRENCY at a time: each round's commits (an insert of the
    // version on FerretDB, a version-checked update on MongoDB: src/store/versionWriters.ts) answered ROUND_MS late.
    const ROUND_MS = 800;
    const commit = (c: Command) =>
      (c.command === 'insert' && c.collection === 'session_versions') || (c.command === 'update' && c.collection === 'sessions');
    proxy.delayAnswersTo(commit, ROUND_MS);
    try {
      const attack = a.gql('mutation { logoutAll(keepCurrent: true) }', {}, { token: attacker.token });
      await sleep(200);
      // Logged in after logoutAll listed the sessions to end, so not among them.
      const victim = await login(b, attacker.username, attacker.password);
      const revoked = await b.gql('mutation($id: ID!) { revokeSession(id: $id) }', { id: attacker.session.id }, { token: victim.token });
      expect(revoked.data).toEqual({ revokeSession: true });
      expectRefusedAt(await attack, 'logoutAll');
      expect(await stillValid(b, victim.token)).toBe('valid');
    } finally {
      proxy.delayAnswersTo(() => false, 0);
    }
    const valid = (await Promise.all(others.map((o) => stillValid(b, o.token)))).filter((code) => code === 'valid');
    // The first round went through before the revocation was known; no other did.
    expect(valid.length).toBeGreaterThanOrEqual(others.length - LOGOUT_ALL_CONCURRENCY);
  });
});
