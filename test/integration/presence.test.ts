// Browser-close presence over several real processes on one database: a process that dies holding a
// session's subscription, a client that reconnects elsewhere within the grace, two holders.
import mongoose from 'mongoose';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { PresenceStore } from '../../src/store/presenceStore.js';
import { EventRecorder } from '../helpers/events.js';
import { FaultProxy, type Command } from '../helpers/faultProxy.js';
import { errorCode, login, newUserSession, sleep, startTestServer, testDatabaseUri, type TestServer } from '../helpers/server.js';
import { startServerProcess, type ServerProcess } from '../helpers/serverProcess.js';

const GRACE_MS = 1000;
const HEARTBEAT_MS = 200;
const LEASE_MS = 3 * HEARTBEAT_MS;
const ENV = { SESSION_BROWSER_CLOSE_GRACE: String(GRACE_MS / 1000), PRESENCE_HEARTBEAT_MS: String(HEARTBEAT_MS) };
const SESSION = '{ session { id } }';

const mongoUri = testDatabaseUri();
/** The surviving process, in the test's own process so that its hub can be asked what it follows. */
let observer: TestServer;
let conn: mongoose.Connection;
let presence: PresenceStore;
const processes: ServerProcess[] = [];
const recorders: EventRecorder[] = [];

async function startProcess(env: Record<string, string> = {}, uri = mongoUri): Promise<ServerProcess> {
  const proc = await startServerProcess({ mongoUri: uri, env: { ...ENV, ...env } });
  processes.push(proc);
  return proc;
}

/** A sessionEvents subscription on `target` (the recorder only uses wsClient, which a ServerProcess has too). */
function record(target: TestServer | ServerProcess, token: string, variables?: { all?: boolean }, client?: { answerPings?: boolean }): EventRecorder {
  const recorder = new EventRecorder(target as TestServer, token, variables, client);
  recorders.push(recorder);
  return recorder;
}

/**
 * A subscription on another process, resolved once it is in place there: a renewal made on the
 * observer (or `renewOn`) reaches it as EXPIRY_CHANGED.
 */
async function subscribeOn(proc: ServerProcess, token: string, client?: { answerPings?: boolean }, renewOn: TestServer | ServerProcess = observer): Promise<EventRecorder> {
  const recorder = record(proc, token, {}, client);
  const deadline = Date.now() + 10_000;
  while (!recorder.events.some((e) => e.kind === 'EXPIRY_CHANGED')) {
    if (Date.now() > deadline) throw new Error(`subscription on ${proc.name} not in place: ${JSON.stringify(recorder.kinds())}`);
    expect((await renewOn.gql('mutation { touch { id } }', {}, { token })).errors).toBeUndefined();
    await sleep(100);
  }
  return recorder;
}

/** A browser-close session, and a per-user feed on the observer from another session of the same user. */
async function browserCloseSession() {
  const user = await newUserSession(observer, { seconds: 0 });
  const other = await login(observer, user.username, user.password);
  const feed = record(observer, other.token, { all: true });
  await feed.ready(observer, user.session.id);
  return { token: user.token, id: user.session.id as string, feed };
}

async function expectValid(token: string, id: string): Promise<void> {
  const res = await observer.gql(SESSION, {}, { token });
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  expect(res.data.session.id).toBe(id);
}

async function expectBrowserClosed(token: string): Promise<void> {
  const res = await observer.gql(SESSION, {}, { token });
  expect(errorCode(res)).toBe('SESSION_EXPIRED');
  expect(res.errors![0]!.extensions!.reason).toBe('BROWSER_CLOSED');
}

function browserClosedEvents(feed: EventRecorder, id: string) {
  return feed.events.filter((e) => e.sessionId === id && e.kind === 'EXPIRED' && e.reason === 'BROWSER_CLOSED');
}

beforeAll(async () => {
  observer = await startTestServer(ENV, mongoUri);
  conn = await mongoose.createConnection(mongoUri).asPromise();
  presence = new PresenceStore(conn);
});
afterEach(async () => {
  await Promise.all(recorders.splice(0).map((r) => r.dispose()));
  await Promise.all(processes.splice(0).map((p) => p.kill('SIGKILL')));
});
afterAll(async () => {
  await observer?.stop();
  await conn?.close();
});

describe('browser-close presence across processes', { timeout: 60_000 }, () => {
  it('a session whose only subscription was on a process killed with SIGKILL ends BROWSER_CLOSED once its lease and the grace have run out', async () => {
    const doomed = await startProcess();
    onTestFailed(() => doomed.printLogs());
    const { token, id, feed } = await browserCloseSession();
    await subscribeOn(doomed, token);

    const killedAt = Date.now();
    await doomed.kill('SIGKILL');
    // Its lease runs on for up to LEASE_MS after the kill, then the grace starts: not ended a grace after the kill.
    const earliestEnd = killedAt + GRACE_MS;
    await sleep(earliestEnd - 200 - Date.now());
    await expectValid(token, id);
    expect(browserClosedEvents(feed, id)).toEqual([]);

    await feed.until(() => browserClosedEvents(feed, id).length > 0, LEASE_MS + GRACE_MS + 5000, 'EXPIRED (BROWSER_CLOSED)');
    expect(browserClosedEvents(feed, id)[0]!.receivedAt).toBeGreaterThanOrEqual(earliestEnd);
    await expectBrowserClosed(token);
    // The ended session's presence is cleaned up.
    await expect.poll(() => presence.holdersOf([id]), { timeout: 5000 }).toEqual([]);
  });

  it('a client that reconnects through another process within the grace keeps its session', async () => {
    const first = await startProcess();
    onTestFailed(() => first.printLogs());
    const { token, id, feed } = await browserCloseSession();
    await subscribeOn(first, token);

    // A graceful stop releases the session at once: the grace starts now, not when the lease runs out.
    const stoppedAt = Date.now();
    await first.stop();
    await sleep(stoppedAt + GRACE_MS / 2 - Date.now());
    const again = record(observer, token);
    await again.ready(observer, id);

    await sleep(stoppedAt + GRACE_MS + LEASE_MS + 3 * HEARTBEAT_MS + 500 - Date.now());
    await expectValid(token, id);
    expect(again.events).toEqual([]);
    expect(browserClosedEvents(feed, id)).toEqual([]);

    // Without a subscription anywhere it does end, the grace after the last one closed.
    const closedAt = Date.now();
    await again.dispose();
    await feed.until(() => browserClosedEvents(feed, id).length > 0, GRACE_MS + 5000, 'EXPIRED (BROWSER_CLOSED)');
    expect(browserClosedEvents(feed, id)[0]!.receivedAt).toBeGreaterThanOrEqual(closedAt + GRACE_MS);
    await expectBrowserClosed(token);
  });

  it('with subscriptions on two processes, closing one keeps the session; closing both ends it after the grace', async () => {
    const other = await startProcess();
    onTestFailed(() => other.printLogs());
    const { token, id, feed } = await browserCloseSession();
    const there = await subscribeOn(other, token);
    const here = record(observer, token);
    await here.ready(observer, id);

    await there.dispose();
    await sleep(GRACE_MS + LEASE_MS + 3 * HEARTBEAT_MS);
    await expectValid(token, id);
    expect(here.events).toEqual([]);

    const closedAt = Date.now();
    await here.dispose();
    await feed.until(() => browserClosedEvents(feed, id).length > 0, GRACE_MS + 5000, 'EXPIRED (BROWSER_CLOSED)');
    expect(browserClosedEvents(feed, id)[0]!.receivedAt).toBeGreaterThanOrEqual(closedAt + GRACE_MS);
    expect(browserClosedEvents(feed, id)).toHaveLength(1);
    await expectBrowserClosed(token);
  });

  it('a browser that stops answering pings without closing its socket is cut off by the keep-alive, and its session ends after the grace; one that answers keeps both', async () => {
    // Two seconds, so that a test process busy for a moment still answers in time.
    const PING_MS = 2000;
    const proc = await startProcess({ WS_PING_INTERVAL: String(PING_MS / 1000) });
    onTestFailed(() => proc.printLogs());
    const deaf = await browserCloseSession();
    const answering = await browserCloseSession();
    const deafSocket = await subscribeOn(proc, deaf.token, { answerPings: false });
    const subscribedAt = Date.now();
    const answeringSocket = await subscribeOn(proc, answering.token);

    // The next sweep pings it, the one after finds no pong and terminates the socket; then the grace runs.
    await deaf.feed.until(() => browserClosedEvents(deaf.feed, deaf.id).length > 0, 2 * PING_MS + GRACE_MS + 5000, 'EXPIRED (BROWSER_CLOSED)');
    expect(browserClosedEvents(deaf.feed, deaf.id)[0]!.receivedAt).toBeGreaterThanOrEqual(subscribedAt + GRACE_MS);
    // Terminated: no close frame reached the client.
    expect(deafSocket.closeCode).toBe(1006);
    await expectBrowserClosed(deaf.token);

    // Several sweeps later the one that answers is still connected and its session valid.
    await sleep(subscribedAt + 4 * PING_MS - Date.now());
    expect(answeringSocket.closeCode).toBeNull();
    expect(browserClosedEvents(answering.feed, answering.id)).toEqual([]);
    await expectValid(answering.token, answering.id);
  });
});

describe('a session taken off browser close and made one again', { timeout: 60_000 }, () => {
  // Its presence counts the subscriptions held since it last became a browser-close session, as at
  // login. It ended BROWSER_CLOSED when it was made one again within the grace after its tab
  // closed, and lived on (to SESSION_BROWSER_CLOSE_AGE) when that came later.
  const SET_EXPIRY = 'mutation($s: Int) { setExpiry(seconds: $s) { policy } }';
  const setExpiry = async (token: string, seconds: number) => expect((await observer.gql(SET_EXPIRY, { s: seconds }, { token })).errors).toBeUndefined();

  /** A subscription of the session, once stored as its browser's presence (the per-user feed makes `ready` no sign of it). */
  async function openTab(token: string, id: string): Promise<EventRecorder> {
    const tab = record(observer, token);
    await expect.poll(() => presence.holdersOf([id]), { timeout: 5000 }).toEqual([expect.objectContaining({ live: true })]);
    return tab;
  }

  it('with its tab open when taken off, then closed: made one again within the grace, it lives on until a new tab has come and gone', async () => {
    const { token, id, feed } = await browserCloseSession();
    const tab = await openTab(token, id);
    await setExpiry(token, 60);
    await tab.dispose();
    await sleep(GRACE_MS / 3);
    await setExpiry(token, 0);
    await sleep(GRACE_MS + 3 * HEARTBEAT_MS + 500);
    await expectValid(token, id);

    const again = await openTab(token, id);
    const closedAt = Date.now();
    await again.dispose();
    await feed.until(() => browserClosedEvents(feed, id).length > 0, GRACE_MS + 5000, 'EXPIRED (BROWSER_CLOSED)');
    expect(browserClosedEvents(feed, id)[0]!.receivedAt).toBeGreaterThanOrEqual(closedAt + GRACE_MS);
  });

  it('with its tab on another process closed before it was taken off, within the grace: made one again, it lives on', async () => {
    const { token, id } = await browserCloseSession();
    const tab = await subscribeOn(await startProcess(), token);
    await tab.dispose();
    await expect.poll(() => presence.holdersOf([id]), { timeout: 5000 }).toEqual([expect.objectContaining({ live: false })]);
    await setExpiry(token, 60);
    await setExpiry(token, 0);
    await sleep(GRACE_MS + 3 * HEARTBEAT_MS + 500);
    await expectValid(token, id);
  });
});

describe('browser-close presence on a slow database', { timeout: 60_000 }, () => {
  it('every process alive but the database 1 s slow for all of them for 4 s: a session with a live tab is not ended when it is fast again', async () => {
    // Each process's heartbeat then renews its lease late (a renewal and a sweep take seconds), so
    // every lease runs out; the first process fast again took the others for dead and ended the
    // sessions they held, live tabs and all (3 of 3, about 130 ms after the database was fast).
    const uri = testDatabaseUri();
    const proxies = await Promise.all([FaultProxy.start(uri), FaultProxy.start(uri)]);
    try {
      const [holder, other] = await Promise.all(proxies.map((proxy) => startProcess({}, proxy.uri)));
      onTestFailed(() => [holder!, other!].forEach((p) => p.printLogs(30)));
      const { token } = await newUserSession(other as unknown as TestServer, { seconds: 0 });
      const tab = await subscribeOn(holder!, token, undefined, other!);
      const notPing = (c: Command) => !['hello', 'isMaster', 'ismaster', 'ping'].includes(c.command);
      for (const proxy of proxies) proxy.delayAnswersTo(notPing, 1000);
      await sleep(4000);
      for (const proxy of proxies) proxy.delayAnswersTo(() => false, 0);
      await sleep(3 * LEASE_MS + GRACE_MS);
      expect(tab.events.filter((e) => e.reason === 'BROWSER_CLOSED')).toEqual([]);
      expect(tab.closeCode).toBeNull();
      expect((await other!.gql(SESSION, {}, { token })).errors).toBeUndefined();
    } finally {
      await Promise.all(processes.splice(0).map((p) => p.kill('SIGKILL')));
      await Promise.all(proxies.map((p) => p.close()));
    }
  });

  it('one process reads the leases 2.5 s late while every lease is renewed on time: no session with a live tab is ended', async () => {
    // A tab on the fast process: the slow one judged the leases it read when the answer came, and by
    // then every one of them (renewed at most a heartbeat before the read) had run out by more than
    // the grace. A tab on the slow process: its lease must not wait for its sweeps.
    const uri = testDatabaseUri();
    const proxy = await FaultProxy.start(uri);
    try {
      const fast = await startProcess({}, uri);
      const slow = await startProcess({}, proxy.uri);
      onTestFailed(() => [fast, slow].forEach((p) => p.printLogs(30)));
      const tabs = await Promise.all(
        [fast, slow].map(async (proc) => {
          const { token } = await newUserSession(proc as unknown as TestServer, { seconds: 0 });
          return { token, recorder: await subscribeOn(proc, token, undefined, proc) };
        }),
      );
      proxy.delayAnswersTo((c) => c.command === 'find' && c.collection === 'server_processes', 2500);
      await sleep(3 * 2500 + GRACE_MS);
      for (const { token, recorder } of tabs) {
        expect(recorder.events.filter((e) => e.reason === 'BROWSER_CLOSED')).toEqual([]);
        expect(recorder.closeCode).toBeNull();
        expect((await fast.gql(SESSION, {}, { token })).errors).toBeUndefined();
      }
    } finally {
      await Promise.all(processes.splice(0).map((p) => p.kill('SIGKILL')));
      await proxy.close();
    }
  });
});
