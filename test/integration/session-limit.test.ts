// MAX_SESSIONS_PER_USER: a user logging in again and again (a script without logout, or anyone with
// the password) keeps no more than that many valid sessions; each login beyond it ends the oldest.
import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventRecorder } from '../helpers/events.js';
import { errorCode, newUserSession, startTestServer, testDatabaseUri, type TestServer } from '../helpers/server.js';

const LIMIT = 3;
const LOGIN = 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token session { id } } }';

describe('MAX_SESSIONS_PER_USER', () => {
  let server: TestServer;
  /** The listings of a user's sessions running in the database now, and the most at once. */
  const counts = { running: new Set<number>(), most: 0 };
  beforeAll(async () => {
    const uri = new URL(testDatabaseUri());
    uri.searchParams.set('monitorCommands', 'true');
    // Behind a proxy on loopback, so that concurrent logins can come from addresses of their own.
    server = await startTestServer({ MAX_SESSIONS_PER_USER: String(LIMIT), TRUST_PROXY: 'loopback' }, uri.toString());
    const client = mongoose.connections.find((c) => c.name === uri.pathname.slice(1))!.getClient();
    client.on('commandStarted', (e) => {
      if (e.commandName !== 'find' || e.command.find !== 'sessions' || !JSON.stringify(e.command.filter).includes('userId')) return;
      counts.running.add(e.requestId);
      counts.most = Math.max(counts.most, counts.running.size);
    });
    const done = (e: { requestId: number }) => counts.running.delete(e.requestId);
    client.on('commandSucceeded', done);
    client.on('commandFailed', done);
  });
  afterAll(async () => {
    await server?.stop();
  });

  const logIn = async (username: string, password: string, address = '198.51.100.1', on = server) => {
    const res = await on.gql(LOGIN, { u: username, p: password }, { headers: { 'x-forwarded-for': address } });
    if (res.errors) throw new Error(JSON.stringify(res.errors));
    return res.data.login.token as string;
  };
  const answerTo = (token: string) => server.gql('{ session { id } }', {}, { token });

  it('a login beyond the limit ends the oldest session REVOKED: its requests are refused, its subscriber hears it once', async () => {
    const first = await newUserSession(server);
    const events = new EventRecorder(server, first.token);
    await events.ready(server, first.session.id);
    const later: string[] = [];
    for (let i = 1; i < LIMIT; i++) later.push(await logIn(first.username, first.password));
    expect((await answerTo(first.token)).data?.session.id).toBe(first.session.id);

    later.push(await logIn(first.username, first.password));
    const refused = await answerTo(first.token);
    expect(errorCode(refused)).toBe('SESSION_ENDED');
    expect(refused.errors![0]!.extensions!.reason).toBe('REVOKED');
    await events.untilEvent('REVOKED');
    for (const token of later) expect((await answerTo(token)).data?.session.id).toBeTruthy();
    const listed = await server.gql('{ sessions { id } }', {}, { token: later.at(-1)! });
    expect(listed.data.sessions).toHaveLength(LIMIT);
    await events.until(() => events.closeCode !== null, 5_000, 'the socket closes');
    expect(events.kinds()).toEqual(['REVOKED']);
  });

  it('concurrent logins of one user from many addresses: once all are answered, no more than the limit are valid', async () => {
    const first = await newUserSession(server);
    const tokens = await Promise.all(Array.from({ length: 12 }, (_, i) => logIn(first.username, first.password, `198.51.100.${10 + i}`)));
    const answers = await Promise.all([first.token, ...tokens].map(answerTo));
    const valid = answers.filter((a) => a.data?.session);
    expect(valid.length).toBeGreaterThanOrEqual(1);
    expect(valid.length).toBeLessThanOrEqual(LIMIT);
    for (const a of answers.filter((x) => !x.data?.session)) expect(a.errors![0]!.extensions!.reason).toBe('REVOKED');
    // A login after them all keeps its own and the newest others.
    const last = await logIn(first.username, first.password);
    const listed = await server.gql('{ sessions { id } }', {}, { token: last });
    expect(listed.data.sessions).toHaveLength(LIMIT);
    // One user's logins at once listed its sessions one at a time (on FerretDB each listing is a scan of every session).
    expect(counts.most).toBe(1);
  });

  it('0 sets no limit', async () => {
    const unlimited = await startTestServer({ MAX_SESSIONS_PER_USER: '0' });
    try {
      const first = await newUserSession(unlimited);
      const tokens = [first.token];
      for (let i = 0; i < LIMIT + 2; i++) tokens.push(await logIn(first.username, first.password, '198.51.100.1', unlimited));
      for (const token of tokens) expect((await unlimited.gql('{ session { id } }', {}, { token })).data?.session.id).toBeTruthy();
    } finally {
      await unlimited.stop();
    }
  });

  it('other users keep theirs', async () => {
    const bystander = await newUserSession(server);
    const busy = await newUserSession(server);
    for (let i = 0; i < LIMIT + 2; i++) await logIn(busy.username, busy.password);
    expect((await answerTo(bystander.token)).data?.session.id).toBe(bystander.session.id);
  });
});
