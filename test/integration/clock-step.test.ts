// Deadlines are wall-clock instants and Node's timers count the monotonic clock: a step of the
// server's wall clock (NTP; a machine resumed, its monotonic clock having stood still while it
// slept) must not leave the expiries it passed waiting out timers armed before it.
import { afterEach, describe, expect, it } from 'vitest';
import { EventRecorder } from '../helpers/events.js';
import { FaultProxy } from '../helpers/faultProxy.js';
import { errorCode, newUserSession, sleep, startTestServer, testDatabaseUri, type TestServer } from '../helpers/server.js';

const servers: TestServer[] = [];
const recorders: EventRecorder[] = [];
afterEach(async () => {
  await Promise.all(recorders.splice(0).map((r) => r.dispose()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

/** A server whose wall clock `step` moves, and a session of `seconds` on it with its events subscribed. */
async function subscribedSession(seconds: number) {
  let stepMs = 0;
  const server = await startTestServer({}, undefined, () => new Date(Date.now() + stepMs));
  servers.push(server);
  const { token, session } = await newUserSession(server, { seconds });
  const events = new EventRecorder(server, token);
  recorders.push(events);
  await events.ready(server, session.id);
  return { server, token, session, events, step: (ms: number) => (stepMs += ms) };
}

describe('a step of the wall clock', () => {
  it('an hour forward: a session with an hour left gets EXPIRED within seconds, not an hour later', { timeout: 30_000 }, async () => {
    const { session, events, step } = await subscribedSession(3600);
    step(3_600_000 + 1_000);
    const expired = await events.untilEvent('EXPIRED', 5_000);
    expect(Date.parse(expired.expiresAt)).toBe(Date.parse(session.expiryDate));
    expect(events.events.filter((e) => e.kind === 'EXPIRED')).toHaveLength(1);
  });

  it('a minute back: a session with 3 s left is not announced expired, nor refused, before the stepped clock reaches its expiry', { timeout: 30_000 }, async () => {
    const { server, token, events, step } = await subscribedSession(3);
    step(-60_000);
    await sleep(6_000);
    expect(events.events.filter((e) => e.kind === 'EXPIRED')).toEqual([]);
    expect((await server.gql('{ session { id } }', {}, { token })).errors).toBeUndefined();
  });

  it.each([
    ['back', -3_600_000],
    ['forward', 3_600_000],
  ])('an hour %s on two processes: a logout on one reaches the other\'s subscriber and requests at once', { timeout: 30_000 }, async (_, stepBy) => {
    let stepMs = 0;
    const clock = () => new Date(Date.now() + stepMs);
    const db = testDatabaseUri();
    const [a, b] = await Promise.all([startTestServer({}, db, clock), startTestServer({}, db, clock)]);
    servers.push(a, b);
    const { token, session } = await newUserSession(a, { seconds: 7200 });
    const events = new EventRecorder(a, token);
    recorders.push(events);
    await events.ready(a, session.id);
    expect((await a.gql('{ session { id } }', {}, { token })).errors).toBeUndefined();

    stepMs += stepBy; // both processes' clock, as on one machine
    await sleep(1_000);
    const logout = await b.gql('mutation { logout }', {}, { token });
    expect(logout.errors).toBeUndefined();
    expect(logout.data).toEqual({ logout: true });
    const loggedOut = await events.untilEvent('LOGGED_OUT', 3_000);
    expect(loggedOut.sessionId).toBe(session.id);
    expect(errorCode(await a.gql('{ session { id } }', {}, { token }))).toBe('SESSION_ENDED');
  });

  it('two minutes forward while the processes renew their presence leases slowly: a browser-close session with a live tab is not ended', { timeout: 30_000 }, async () => {
    // Every lease, renewed before the step, has run out by far by the stepped clock; a sweep that
    // judges them before this process's own renewal has answered takes the others for dead.
    let stepMs = 0;
    const clock = () => new Date(Date.now() + stepMs);
    const db = testDatabaseUri();
    const proxies = await Promise.all([FaultProxy.start(db), FaultProxy.start(db)]);
    try {
      const env = { SESSION_BROWSER_CLOSE_GRACE: '1', PRESENCE_HEARTBEAT_MS: '200' };
      const [a, b] = await Promise.all(proxies.map((proxy) => startTestServer(env, proxy.uri, clock)));
      servers.push(a!, b!);
      const { token, session } = await newUserSession(a!, { seconds: 0 });
      const tab = new EventRecorder(b!, token);
      recorders.push(tab);
      await tab.ready(b!, session.id);
      for (const proxy of proxies) proxy.delayAnswersTo((c) => c.command === 'update' && c.collection === 'server_processes', 1_500);
      stepMs += 120_000;
      await sleep(4_000);
      expect(tab.events.map((e) => e.kind)).toEqual([]);
      expect((await a!.gql('{ session { id } }', {}, { token })).errors).toBeUndefined();
    } finally {
      await Promise.all(servers.splice(0).map((s) => s.stop()));
      await Promise.all(proxies.map((p) => p.close()));
    }
  });
});
