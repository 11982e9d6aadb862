import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import { EVENTS_QUERY, EventRecorder } from '../helpers/events.js';
import { FaultProxy } from '../helpers/faultProxy.js';
import { errorCode, eventually, login, newUserSession, sleep, startTestServer, testDatabaseUri, type TestServer } from '../helpers/server.js';

const TERMINAL = ['EXPIRED', 'LOGGED_OUT', 'REVOKED'];
const SESSION = '{ session { id expiryDate } }';

let server: TestServer;
const recorders: EventRecorder[] = [];
function record(target: TestServer, token: string | null, variables?: { lead?: number; all?: boolean }) {
  const recorder = new EventRecorder(target, token, variables);
  recorders.push(recorder);
  return recorder;
}
/** What the server writes to the connections made from now on, one buffer per write to the operating system. */
function recordWrites(target: TestServer) {
  const calls: Buffer[] = [];
  const wrap = (socket: Socket & { _write: Function; _writev: Function }) => {
    const write = socket._write.bind(socket);
    const writev = socket._writev.bind(socket);
    socket._write = (chunk: Buffer | string, encoding: BufferEncoding, done: () => void) => {
      calls.push(Buffer.from(chunk as string, encoding));
      return write(chunk, encoding, done);
    };
    socket._writev = (chunks: Array<{ chunk: Buffer | string; encoding: BufferEncoding }>, done: () => void) => {
      calls.push(Buffer.concat(chunks.map(({ chunk, encoding }) => Buffer.from(chunk as string, encoding))));
      return writev(chunks, done);
    };
  };
  target.httpServer.on('connection', wrap);
  return { all: () => calls, stop: () => target.httpServer.off('connection', wrap) };
}
function terminalCount(recorder: EventRecorder) {
  return recorder.events.filter((e) => TERMINAL.includes(e.kind)).length;
}

beforeAll(async () => {
  server = await startTestServer({ LOGIN_URL: '/login', SESSION_BROWSER_CLOSE_GRACE: '1' });
});
afterEach(async () => {
  await Promise.all(recorders.splice(0).map((r) => r.dispose()));
});
afterAll(async () => {
  await server?.stop();
});

describe('EXPIRED on time', () => {
  it('arrives no earlier than expiresAt and well within a second after it, then the subscription completes and the socket closes with 4401', async () => {
    const { token, session } = await newUserSession(server, { seconds: 2 });
    const events = record(server, token);
    await events.ready(server, session.id);
    const expired = await events.untilEvent('EXPIRED', 4000);
    const expiresAt = new Date(session.expiryDate).getTime();
    expect(expired.expiresAt).toBe(session.expiryDate);
    expect(expired.receivedAt).toBeGreaterThanOrEqual(expiresAt);
    expect(expired.receivedAt - expiresAt).toBeLessThan(500);
    expect(new Date(expired.serverTime).getTime()).toBeGreaterThanOrEqual(expiresAt);
    expect(expired).toMatchObject({ sessionId: session.id, reason: 'TIMEOUT', redirectTo: '/login', secondsLeft: 0 });
    await events.until(() => events.completed && events.closeCode !== null, 2000, 'completion and close');
    expect(events.closeCode).toBe(4401);
    expect(terminalCount(events)).toBe(1);
    // Recorded by the server itself, before any request could have ended it on the spot.
    let stored = await server.service.store.findById(session.id);
    for (let i = 0; i < 20 && !stored?.endedAt; i++) stored = await sleep(50).then(() => server.service.store.findById(session.id));
    expect(stored).toMatchObject({ endReason: 'TIMEOUT', expiry: { expiresAt: new Date(session.expiryDate) } });
    const refused = await server.gql(SESSION, {}, { token });
    expect(errorCode(refused)).toBe('SESSION_EXPIRED');
  });

  it('a renewal before expiry gives EXPIRY_CHANGED and no early EXPIRED; it expires at the new time', async () => {
    const { token, session } = await newUserSession(server, { seconds: 2 });
    const events = record(server, token);
    await events.ready(server, session.id);
    await sleep(1000);
    const touched = (await server.gql('mutation { touch { expiryDate } }', {}, { token })).data.touch;
    const changed = await events.untilEvent('EXPIRY_CHANGED', 1000);
    expect(changed.expiresAt).toBe(touched.expiryDate);
    await sleep(new Date(session.expiryDate).getTime() + 300 - Date.now());
    expect(events.kinds()).toEqual(['EXPIRY_CHANGED']);
    const expired = await events.untilEvent('EXPIRED', 3000);
    expect(expired.receivedAt).toBeGreaterThanOrEqual(new Date(touched.expiryDate).getTime());
    expect(terminalCount(events)).toBe(1);
  });

  it('a shortened expiry fires at the new time', async () => {
    const { token, session } = await newUserSession(server, { seconds: 600 });
    const events = record(server, token);
    await events.ready(server, session.id);
    const shortened = (await server.gql('mutation { setExpiry(seconds: 1) { expiryDate } }', {}, { token })).data.setExpiry;
    const expired = await events.untilEvent('EXPIRED', 3000);
    const at = new Date(shortened.expiryDate).getTime();
    expect(events.kinds()).toEqual(['EXPIRY_CHANGED', 'EXPIRED']);
    expect(expired.receivedAt).toBeGreaterThanOrEqual(at);
    expect(expired.receivedAt - at).toBeLessThan(500);
  });

  it('a session expiring beyond the 2^31-1 ms setTimeout limit is not ended early', async () => {
    const { token, session } = await newUserSession(server, { seconds: 30 * 24 * 3600 });
    const events = record(server, token);
    await events.ready(server, session.id);
    await sleep(500);
    expect(events.events).toEqual([]);
    expect((await server.gql(SESSION, {}, { token })).data.session.id).toBe(session.id);
  });
});

describe('EXPIRING_SOON', () => {
  it('arrives at the lead time the subscriber asked for, then EXPIRED', async () => {
    const { token, session } = await newUserSession(server, { seconds: 3 });
    const events = record(server, token, { lead: 2 });
    await events.ready(server, session.id);
    const soon = await events.untilEvent('EXPIRING_SOON', 3000);
    const due = new Date(session.expiryDate).getTime() - 2000;
    expect(soon.receivedAt).toBeGreaterThanOrEqual(due);
    expect(soon.receivedAt - due).toBeLessThan(500);
    expect(soon.secondsLeft).toBeLessThanOrEqual(2);
    await events.untilEvent('EXPIRED', 3000);
    expect(events.kinds()).toEqual(['EXPIRING_SOON', 'EXPIRED']);
  });

  it('at once for a lead longer than the time left, whatever SESSION_MAX_EXPIRY allows clients to ask for; a negative lead is refused', async () => {
    const short = await startTestServer({ SESSION_MAX_EXPIRY: '30', SESSION_COOKIE_AGE: '30' }, server.mongoUri);
    try {
      const { token, session } = await newUserSession(short);
      const events = record(short, token, { lead: 60 });
      const soon = await events.untilEvent('EXPIRING_SOON', 3000);
      expect(soon.secondsLeft).toBeLessThanOrEqual(30);
      const refused = record(short, token, { lead: -1 });
      await refused.until(() => refused.error !== null, 3000, 'the refusal');
      expect(JSON.stringify(refused.error)).toContain('INVALID_ARGUMENT');
      await events.ready(short, session.id);
    } finally {
      await short.stop();
    }
  });
});

describe('logout and revocation', () => {
  it('logout gives LOGGED_OUT at once', async () => {
    const { token, session } = await newUserSession(server);
    const events = record(server, token);
    await events.ready(server, session.id);
    const sent = Date.now();
    await server.gql('mutation { logout }', {}, { token });
    const event = await events.untilEvent('LOGGED_OUT', 1000);
    expect(event.receivedAt - sent).toBeLessThan(500);
    expect(event).toMatchObject({ reason: 'LOGGED_OUT', redirectTo: '/login' });
    await events.until(() => events.closeCode !== null, 2000, 'close');
    expect(events.closeCode).toBe(4401);
    expect(terminalCount(events)).toBe(1);
  });

  it('the terminal event, its completion and the 4401 close leave in one write to the socket, not one each', async () => {
    const writes = recordWrites(server);
    const { token, session } = await newUserSession(server);
    const events = record(server, token);
    await events.ready(server, session.id);
    await server.gql('mutation { logout }', {}, { token });
    await events.until(() => events.completed && events.closeCode !== null, 2000, 'completion and close');
    writes.stop();
    const carrying = writes.all().filter((w) => w.includes('LOGGED_OUT'));
    expect(carrying).toHaveLength(1);
    expect(carrying[0]!.includes('"type":"complete"')).toBe(true);
    expect(carrying[0]!.includes(Buffer.from([0x88, 0x0f, 0x11, 0x31]))).toBe(true); // close frame, 4401 'Session ended'
  });

  it('logoutAll from one session gives REVOKED to the others', async () => {
    const a = await newUserSession(server);
    const b = await login(server, a.username, a.password);
    const onA = record(server, a.token);
    await onA.ready(server, a.session.id);
    await server.gql('mutation { logoutAll(keepCurrent: true) }', {}, { token: b.token });
    const revoked = await onA.untilEvent('REVOKED', 1000);
    expect(revoked).toMatchObject({ sessionId: a.session.id, reason: 'REVOKED', redirectTo: '/login' });
    expect((await server.gql(SESSION, {}, { token: b.token })).data.session.id).toBe(b.session.id);
  });

  it('a logout racing the expiry gives exactly one terminal event', async () => {
    const { token, session } = await newUserSession(server, { seconds: 1 });
    const events = record(server, token);
    await events.ready(server, session.id);
    await sleep(new Date(session.expiryDate).getTime() - Date.now() - 2);
    await server.gql('mutation { logout }', {}, { token });
    await events.until(() => events.completed, 2000, 'completion');
    await sleep(300);
    expect(terminalCount(events)).toBe(1);
  });
});

describe('subscribing', () => {
  it('per-user feeds (allSessions) are bounded per user and process by WS_MAX_SOCKETS_PER_USER, on one socket or several: each of them multiplies every event of the user', async () => {
    const bounded = await startTestServer({ WS_MAX_SOCKETS_PER_USER: '3' }, server.mongoUri);
    try {
      const a = await newUserSession(bounded);
      const b = await login(bounded, a.username, a.password);
      const onB = bounded.wsClient(b.token);
      /** A subscription on `on`: the kinds of its events, or its error's code. */
      const subscribe = (on: typeof onB, all: boolean) => {
        const seen = { kinds: [] as string[], error: null as string | null };
        on.subscribe<{ sessionEvents: { kind: string } }>(
          { query: EVENTS_QUERY, variables: { lead: 0, all } },
          {
            next: (r) => (r.data ? seen.kinds.push(r.data.sessionEvents.kind) : (seen.error = String(r.errors?.[0]?.extensions?.code))),
            error: (e) => (seen.error = Array.isArray(e) ? String(e[0]?.extensions?.code) : 'closed'),
            complete: () => {},
          },
        );
        return seen;
      };
      const setExpiry = (seconds: number) => bounded.gql('mutation($s:Int){ setExpiry(seconds:$s){ id } }', { s: seconds }, { token: a.token });
      const aClient = bounded.wsClient(a.token);
      const feeds = [subscribe(aClient, true), subscribe(onB, true), subscribe(onB, true)];
      await eventually(async () => {
        await setExpiry(500);
        return feeds.every((f) => f.kinds.includes('EXPIRY_CHANGED'));
      }, 3000, 'three live feeds');
      const fourth = subscribe(onB, true);
      await eventually(async () => fourth.error !== null, 3000, 'the refusal');
      expect(fourth.error).toBe('TOO_MANY_OPERATIONS');
      // A subscription to the socket's own session alone is not a feed.
      const own = subscribe(onB, false);
      await eventually(async () => {
        await bounded.gql('mutation { touch { id } }', {}, { token: b.token });
        return own.kinds.includes('EXPIRY_CHANGED');
      }, 3000, 'the own-session subscription');
      expect(feeds.map((f) => f.error)).toEqual([null, null, null]);
      await aClient.dispose();
      // One feed gone, another may come.
      const fifth = subscribe(onB, true);
      await eventually(async () => {
        await setExpiry(600);
        return fifth.kinds.includes('EXPIRY_CHANGED') || fifth.error !== null;
      }, 3000, 'the fifth feed');
      expect(fifth.error).toBeNull();
      await onB.dispose();
    } finally {
      await bounded.stop();
    }
  });

  it('with a session that has already ended yields its terminal event at once, then completion and 4401', async () => {
    const { token } = await newUserSession(server);
    await server.gql('mutation { logout }', {}, { token });
    const events = record(server, token);
    await events.until(() => events.completed, 2000, 'completion');
    expect(events.kinds()).toEqual(['LOGGED_OUT']);
    await events.until(() => events.closeCode !== null, 2000, 'close');
    expect(events.closeCode).toBe(4401);
  });

  it('with a session that expired unnoticed yields EXPIRED at once', async () => {
    const { token } = await newUserSession(server, { seconds: 1 });
    await sleep(1100);
    const events = record(server, token);
    await events.until(() => events.completed, 2000, 'completion');
    expect(events.kinds()).toEqual(['EXPIRED']);
    expect(events.events[0]!.reason).toBe('TIMEOUT');
  });

  it('without a token, with an unknown one, with a wrong secret or with the token spelled otherwise than issued is refused with 4401', async () => {
    const { token } = await newUserSession(server);
    const [id, secret] = token.split('.') as [string, string];
    for (const attempt of [null, 'x'.repeat(43), `${id}.${'x'.repeat(43)}`, `${id.toUpperCase()}.${secret}`]) {
      const client = record(server, attempt);
      await client.until(() => client.closeCode !== null, 2000, 'close');
      expect(client.closeCode).toBe(4401);
      expect(client.events).toEqual([]);
    }
  });

  it('a message larger than 64 KiB closes the socket with 1009 and changes nothing', async () => {
    const { token, session } = await newUserSession(server, { seconds: 600 });
    const socket = new WebSocket(server.url.replace(/^http/, 'ws'), 'graphql-transport-ws');
    const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
    socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { token, padding: 'x'.repeat(70_000) } })));
    expect(await closed).toBe(1009);
    const after = (await server.gql(SESSION, {}, { token })).data.session;
    expect(after).toEqual({ id: session.id, expiryDate: session.expiryDate });
  });

  it("never delivers another user's events, even on the per-user feed", async () => {
    const alice = await newUserSession(server);
    const alice2 = await login(server, alice.username, alice.password);
    const bob = await newUserSession(server);
    const feed = record(server, alice.token, { all: true });
    await feed.ready(server, alice2.session.id);
    const bobs = record(server, bob.token);
    await bobs.ready(server, bob.session.id);
    await server.gql('mutation { setExpiry(seconds: 100) { id } }', {}, { token: bob.token });
    await server.gql('mutation { setExpiry(seconds: 200) { id } }', {}, { token: alice2.token });
    await server.gql('mutation { logout }', {}, { token: bob.token });
    await bobs.untilEvent('LOGGED_OUT', 1000);
    const changed = await feed.untilEvent('EXPIRY_CHANGED', 1000);
    expect(changed.sessionId).toBe(alice2.session.id);
    await sleep(200);
    expect(feed.events.every((e) => e.sessionId !== bob.session.id)).toBe(true);
    expect(bobs.events.every((e) => e.sessionId === bob.session.id)).toBe(true);
  });
});

describe('browser-close sessions', () => {
  it('end with BROWSER_CLOSED when the last subscription has been gone for the grace period', async () => {
    const { token, session } = await newUserSession(server, { seconds: 0 });
    const first = record(server, token);
    await first.ready(server, session.id);
    await first.dispose();
    await sleep(1600);
    const res = await server.gql(SESSION, {}, { token });
    expect(errorCode(res)).toBe('SESSION_EXPIRED');
    expect(res.errors![0]!.extensions!.reason).toBe('BROWSER_CLOSED');
    const late = record(server, token);
    await late.until(() => late.completed, 2000, 'completion');
    expect(late.events.map((e) => [e.kind, e.reason])).toEqual([['EXPIRED', 'BROWSER_CLOSED']]);
  });

  it('survive when a subscription comes back within the grace period', async () => {
    const { token, session } = await newUserSession(server, { seconds: 0 });
    const first = record(server, token);
    await first.ready(server, session.id);
    await first.dispose();
    await sleep(400);
    const again = record(server, token);
    await again.ready(server, session.id);
    await sleep(1600);
    expect((await server.gql(SESSION, {}, { token })).data.session.id).toBe(session.id);
    expect(again.events).toEqual([]);
  });
});

describe('restart and several processes', () => {
  it('after a restart, a client whose session expired during the downtime gets EXPIRED at once', async () => {
    const uri = testDatabaseUri();
    const first = await startTestServer({}, uri);
    const { token, session } = await newUserSession(first, { seconds: 1 });
    const before = record(first, token);
    await before.ready(first, session.id);
    await first.stop();
    await before.until(() => before.closeCode !== null, 2000, 'close');
    expect(before.closeCode).toBe(1001);
    expect(before.events).toEqual([]);
    await sleep(1200);
    const second = await startTestServer({}, uri);
    try {
      const after = record(second, token);
      await after.until(() => after.completed, 2000, 'completion');
      expect(after.kinds()).toEqual(['EXPIRED']);
    } finally {
      await second.stop();
    }
  });

  it('a renewal on another process is honoured at the deadline, even before the change feed has delivered it', async () => {
    const uri = testDatabaseUri();
    const a = await startTestServer({}, uri);
    // B polls rarely: only its re-check at the deadline can learn of the renewal in time.
    const b = await startTestServer({ CHANGE_POLL_INTERVAL_MS: '5000' }, uri);
    try {
      const { token, session } = await newUserSession(a, { seconds: 2 });
      const onB = record(b, token);
      await onB.ready(b, session.id);
      await sleep(new Date(session.expiryDate).getTime() - 400 - Date.now());
      const renewed = (await a.gql('mutation { setExpiry(seconds: 3) { expiryDate } }', {}, { token })).data.setExpiry;
      const changed = await onB.untilEvent('EXPIRY_CHANGED', 2000);
      expect(changed.expiresAt).toBe(renewed.expiryDate);
      expect(changed.receivedAt).toBeGreaterThanOrEqual(new Date(session.expiryDate).getTime());
      expect(onB.kinds()).toEqual(['EXPIRY_CHANGED']);
      const expired = await onB.untilEvent('EXPIRED', 4000);
      expect(expired.receivedAt).toBeGreaterThanOrEqual(new Date(renewed.expiryDate).getTime());
      expect(expired.receivedAt - new Date(renewed.expiryDate).getTime()).toBeLessThan(1000);
      expect(terminalCount(onB)).toBe(1);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('changes made on another process between connection_init and subscribe reach the subscription (it is not read again)', async () => {
    const uri = testDatabaseUri();
    const a = await startTestServer({}, uri);
    // B polls every 500 ms: each change below is subscribed to once right away (before B has heard
    // of it) and once after B's change feed has delivered it to the socket's session alone: 700 ms
    // after a logout (B closes a socket whose session ended without a subscription after 1 s), 2.5 s
    // after a renewal (past the feed's re-reading of recent changes, so only the hub can know it).
    const b = await startTestServer({ CHANGE_POLL_INTERVAL_MS: '500' }, uri);
    const sockets: WebSocket[] = [];
    try {
      /** A socket on B that sent connection_init and got its ack; `subscribe` then subscribes and records. */
      const acked = async (token: string) => {
        const socket = new WebSocket(b.url.replace(/^http/, 'ws'), 'graphql-transport-ws');
        sockets.push(socket);
        const messages: Array<{ type: string; payload?: { data?: { sessionEvents: { kind: string; expiresAt: string } } } }> = [];
        socket.on('message', (data) => messages.push(JSON.parse(String(data))));
        await new Promise((resolve) => socket.on('open', resolve));
        socket.send(JSON.stringify({ type: 'connection_init', payload: { token } }));
        const deadline = Date.now() + 2000;
        while (!messages.some((m) => m.type === 'connection_ack') && Date.now() < deadline) await sleep(10);
        return {
          subscribe: () => socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: 'subscription { sessionEvents(expiringSoonLead: 0) { kind expiresAt } }' } })),
          events: () => messages.flatMap((m) => (m.type === 'next' && m.payload?.data ? [m.payload.data.sessionEvents] : [])),
        };
      };
      const until = async (what: () => boolean, ms: number) => {
        const deadline = Date.now() + ms;
        while (!what() && Date.now() < deadline) await sleep(20);
      };

      for (const [logoutWaitMs, renewalWaitMs] of [[0, 0], [700, 2500]] as const) {
        // A logout on A: the subscription on B ends with LOGGED_OUT, once.
        const loggedOut = await newUserSession(a);
        const first = await acked(loggedOut.token);
        await a.gql('mutation { logout }', {}, { token: loggedOut.token });
        await sleep(logoutWaitMs);
        first.subscribe();
        await until(() => first.events().length > 0, 3000);
        await sleep(300); // room for a duplicate
        expect(first.events().map((e) => e.kind), `logout, subscribed ${logoutWaitMs} ms after it`).toEqual(['LOGGED_OUT']);

        // A renewal on A: the subscription on B expires at the new time, not the one read at connection_init.
        const renewed = await newUserSession(a, { seconds: 4 });
        const second = await acked(renewed.token);
        const newExpiry = (await a.gql('mutation { setExpiry(seconds: 7) { expiryDate } }', {}, { token: renewed.token })).data.setExpiry.expiryDate;
        await sleep(renewalWaitMs);
        second.subscribe();
        await until(() => second.events().some((e) => e.kind === 'EXPIRED'), 8000);
        const expired = second.events().filter((e) => e.kind === 'EXPIRED');
        expect(expired, `renewal, subscribed ${renewalWaitMs} ms after it`).toHaveLength(1);
        expect(expired[0]!.expiresAt).toBe(newExpiry);
        expect(second.events().filter((e) => TERMINAL.includes(e.kind))).toHaveLength(1);
      }
    } finally {
      for (const socket of sockets) socket.terminate();
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('a logout on one process reaches a subscriber on another at once', async () => {
    const uri = testDatabaseUri();
    const a = await startTestServer({}, uri);
    const b = await startTestServer({}, uri);
    try {
      const { token, session } = await newUserSession(a);
      const onB = record(b, token);
      await onB.ready(b, session.id);
      const sent = Date.now();
      await a.gql('mutation { setExpiry(seconds: 100) { id } }', {}, { token });
      await onB.untilEvent('EXPIRY_CHANGED', 2000);
      await a.gql('mutation { logout }', {}, { token });
      const event = await onB.untilEvent('LOGGED_OUT', 2000);
      expect(event.receivedAt - sent).toBeLessThan(1000);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});

describe('a per-user feed whose listing is slow', () => {
  it("gets its own session's terminal event as soon as the session ends while the feed is being set up, not once the listing answers", async () => {
    const uri = testDatabaseUri();
    const proxy = await FaultProxy.start(uri);
    const slow = await startTestServer({}, proxy.uri);
    try {
      const { token } = await newUserSession(slow, { seconds: 600 });
      // The feed lists the user's sessions while it is set up (on FerretDB, a scan of every session: seconds under load).
      const LISTING_MS = 3_000;
      proxy.delayAnswersTo((c) => c.command === 'find' && c.collection === 'sessions', LISTING_MS);
      const feed = record(slow, token, { all: true });
      await sleep(500);
      const out = await slow.gql('mutation { logout }', {}, { token });
      expect(out.data).toEqual({ logout: true });
      const answeredAt = Date.now();
      const event = await feed.untilEvent('LOGGED_OUT', LISTING_MS + 2_000);
      expect(event.receivedAt - answeredAt).toBeLessThan(1_000);
      await feed.until(() => feed.completed && feed.closeCode !== null, 2_000, 'completion and close');
      expect(feed.kinds()).toEqual(['LOGGED_OUT']);
      expect(feed.closeCode).toBe(4401);
    } finally {
      proxy.delayAnswersTo(() => false, 0);
      await slow.stop();
      await proxy.close();
    }
  });
});
