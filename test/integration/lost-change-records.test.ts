// A process that dies between a session's commit and its change record (SIGKILL, or the database
// lost in between): the other processes, which learn of changes from the session_changes log on
// FerretDB, must still hear of the change. The writer logs an intent before its commit; a poller
// that sees no record for it within about a second reads the session (docs/write-protocol.md).
import { afterEach, describe, expect, it } from 'vitest';
import { EventRecorder } from '../helpers/events.js';
import { FaultProxy } from '../helpers/faultProxy.js';
import { errorCode, eventually, newUserSession, sleep, startTestServer, testDatabaseUri, type TestServer } from '../helpers/server.js';
import { startServerProcess, type ServerProcess } from '../helpers/serverProcess.js';

/** The feed's grace for an intent (about 1 s) and a few polls: the bound within which B must know. */
const HEARD_WITHIN_MS = 3_000;

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * B in this process, A a child process whose database connection goes through a proxy, on one
 * database; a session logged in on B (600 s), read once on A, with a subscriber on B. Then a logout
 * sent to A, whose change record (the first session_changes insert after the version's insert) the
 * proxy holds, and A killed 50 ms after the hold.
 */
async function logoutOnADiesAfterCommit() {
  const uri = testDatabaseUri();
  const proxy = await FaultProxy.start(uri);
  cleanups.push(() => proxy.close());
  const b: TestServer = await startTestServer({}, uri);
  cleanups.push(() => Promise.race([b.stop(), sleep(5_000)]));
  const a: ServerProcess = await startServerProcess({ mongoUri: proxy.uri });
  cleanups.push(() => a.kill('SIGKILL'));

  const s = await newUserSession(b, { seconds: 600 });
  expect((await a.gql('{ session { id } }', {}, { token: s.token })).errors).toBeUndefined();
  const sub = new EventRecorder(b, s.token);
  cleanups.push(() => sub.dispose());
  await sub.ready(b, s.session.id);

  let heldAt = 0;
  let committed = false;
  proxy.holdWhen((c) => {
    if (c.command !== 'insert') return false;
    if (c.collection === 'session_versions') committed = true;
    if (!committed || c.collection !== 'session_changes') return false;
    heldAt = Date.now();
    setTimeout(() => void a.kill('SIGKILL'), 50);
    return true;
  });
  const logout = await a.gql('mutation { logout }', {}, { token: s.token }).catch((err: unknown) => err);
  expect(logout, 'the logout sent to A got no answer: A died').toBeInstanceOf(Error);
  expect(proxy.held).toBe(1);
  expect((await a.exited).signal).toBe('SIGKILL');
  return { a, b, s, sub, heldAt };
}

describe('a change whose record was lost with its writer', () => {
  it('reaches the other processes: B announces LOGGED_OUT and refuses the session within a few seconds', async () => {
    const { b, s, sub, heldAt } = await logoutOnADiesAfterCommit();
    await sub.until(() => sub.kinds().includes('LOGGED_OUT'), heldAt + HEARD_WITHIN_MS - Date.now(), 'LOGGED_OUT on B');
    const refused = async () => errorCode(await b.gql('{ session { id } }', {}, { token: s.token })) === 'SESSION_ENDED';
    await eventually(refused, Math.max(0, heldAt + HEARD_WITHIN_MS - Date.now()), 'B refuses the logged-out session');
    // Nothing more comes (an intent read twice, or a read and a record, must not announce twice).
    await sleep(1_000);
    expect(sub.kinds()).toEqual(['LOGGED_OUT']);
    expect(sub.closeCode).toBe(4401);
  }, 60_000);

  it('a logout retried on B, which loses to the end A committed, announces that end on B at once', async () => {
    const { b, s, sub, heldAt } = await logoutOnADiesAfterCommit();
    // The client got no answer from A and retries on another process, before B's feed could have
    // resolved A's intent (its grace is about 1 s from when it saw it, just before the hold).
    const retry = await b.gql('mutation { logout }', {}, { token: s.token });
    expect(Date.now() - heldAt, 'the retry was answered before the intent could have been resolved').toBeLessThan(900);
    expect(retry.errors).toBeUndefined();
    expect(b.hub.known(s.session.id)?.endReason, 'B\'s hub was told of the end its commit lost to').toBe('LOGGED_OUT');
    await sub.until(() => sub.closeCode !== null, 2_000, 'the socket on B closes');
    expect(sub.kinds()).toEqual(['LOGGED_OUT']);
    expect(sub.closeCode).toBe(4401);
    expect(errorCode(await b.gql('{ session { id } }', {}, { token: s.token }))).toBe('SESSION_ENDED');
    await sleep(1_500);
    expect(sub.kinds()).toEqual(['LOGGED_OUT']);
  }, 60_000);

  it('reaches a process whose feed fell behind the log meanwhile: an answered logout whose session document was never updated', async () => {
    // A and B in this process, each through its own proxy. B's feed stalls 13 s (one read of the
    // log answered that late: the log keeps 10 s, so B then rescans instead of reading it); meanwhile
    // A answers a logout, but the update of the session document that follows its commit is held
    // (as when A dies, or loses the database, just after answering), so only the version is stored.
    const uri = testDatabaseUri();
    const [proxyA, proxyB] = await Promise.all([FaultProxy.start(uri), FaultProxy.start(uri)]);
    cleanups.push(() => proxyA.close(), () => proxyB.close());
    const [a, b] = await Promise.all([startTestServer({}, proxyA.uri), startTestServer({ LOG_LEVEL: 'warn' }, proxyB.uri)]);
    cleanups.push(() => Promise.race([a.stop(), sleep(5_000)]), () => Promise.race([b.stop(), sleep(5_000)]));
    const s = await newUserSession(b, { seconds: 600 });
    for (const server of [a, b]) expect((await server.gql('{ session { id } }', {}, { token: s.token })).errors).toBeUndefined();
    const sub = new EventRecorder(b, s.token);
    cleanups.push(() => sub.dispose());
    await sub.ready(b, s.session.id);
    // Another login moves B's feed past the session's own records (by more than the feed's overlap).
    await sleep(1_500);
    await newUserSession(b, { seconds: 600 });
    await sleep(300);

    const STALL_MS = 13_000;
    proxyB.delayAnswersTo((c) => c.command === 'find' && c.collection === 'session_changes', STALL_MS);
    await sleep(300);
    proxyB.delayAnswersTo(() => false, 0);
    proxyA.holdWhen((c) => c.command === 'update' && c.collection === 'sessions');
    expect((await a.gql('mutation { logout }', {}, { token: s.token })).errors).toBeUndefined();

    // Asked once the rescan is done and B's cache answers again (asked before, B reads the database).
    await eventually(async () => b.logs.some((line) => line.includes('fell behind the change log')), STALL_MS + 5_000, 'B rescanning after its stall');
    await sleep(500);
    expect(errorCode(await b.gql('{ session { id } }', {}, { token: s.token }))).toBe('SESSION_ENDED');
    await eventually(async () => sub.kinds().length > 0, HEARD_WITHIN_MS, 'the subscriber told');
    expect(sub.kinds()).toEqual(['LOGGED_OUT']);
  }, 60_000);
});
