/**
 * The session cache (store/sessionCache.ts) against two servers on one database: what another
 * process answered (a logout, a revocation, a shorter expiry) is honoured within
 * SESSION_CACHE_MAX_STALENESS_MS, what this process answered at once, and a stalled change feed
 * sends every request back to the database.
 */
import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newSessionToken } from '../../src/auth/tokens.js';
import { SessionCache } from '../../src/store/sessionCache.js';
import { SessionStore } from '../../src/store/sessionStore.js';
import { InsertedVersions } from '../../src/store/versionWriters.js';
import { errorCode, login, newUserSession, sleep, startTestServer, testDatabaseUri, type TestServer } from '../helpers/server.js';
import { scratchDatabase } from '../helpers/store.js';

const STALENESS_MS = 300;
const READ = '{ session { id expiryDate } }';

let a: TestServer;
let b: TestServer;

beforeAll(async () => {
  const uri = testDatabaseUri();
  const env = { SESSION_CACHE_MAX_STALENESS_MS: String(STALENESS_MS) };
  [a, b] = await Promise.all([startTestServer(env, uri), startTestServer(env, uri)]);
});
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
const read = (server: TestServer, token: string) => server.gql(READ, {}, bearer(token));

/**
 * Reads the session on `server` from `lanes` concurrent loops while `end` runs on another server,
 * until `afterMs` past end's answer; returns each read's answer and send time relative to that answer.
 */
async function hammerDuring(server: TestServer, token: string, end: () => Promise<unknown>, afterMs: number, lanes = 6) {
  const reads: Array<{ sentAt: number; code: string | undefined }> = [];
  let stop = false;
  const lane = async () => {
    while (!stop) {
      const sentAt = Date.now();
      const res = await read(server, token);
      reads.push({ sentAt, code: res.errors ? errorCode(res) : undefined });
    }
  };
  const running = Array.from({ length: lanes }, lane);
  await sleep(50);
  await end();
  const endedAt = Date.now();
  await sleep(afterMs);
  stop = true;
  await Promise.all(running);
  return reads.map(({ sentAt, code }) => ({ sentAfterEnd: sentAt - endedAt, code }));
}

describe('the session cache, across two processes', () => {
  it('answers repeated requests from memory while the change feed is fresh', async (ctx) => {
    if (b.capabilities.changeStreams) ctx.skip(); // only polling feeds can say how fresh they are
    const { token } = await newUserSession(a);
    expect(await b.service.store.findByToken(token, '127.0.0.1')).not.toBeNull(); // read, and remembered
    const cached = await b.service.store.findByToken(token, '127.0.0.1');
    expect(await b.service.store.findByToken(token, '127.0.0.1')).toBe(cached); // the same object: no database read
    const wrongSecret = `${token.split('.')[0]}.${'A'.repeat(43)}`;
    expect(errorCode(await read(b, wrongSecret))).toBe('UNAUTHENTICATED');
  });

  it('honours a logout answered by another process within SESSION_CACHE_MAX_STALENESS_MS, under concurrent reads', async () => {
    const { token } = await newUserSession(a);
    expect((await read(b, token)).errors).toBeUndefined(); // b has it cached
    const logout = () => a.gql('mutation { logout }', {}, bearer(token)).then((res) => expect(res.errors).toBeUndefined());
    const reads = await hammerDuring(b, token, logout, STALENESS_MS + 400);
    const after = reads.filter((r) => r.sentAfterEnd > STALENESS_MS);
    expect(after.length).toBeGreaterThan(10);
    expect(after.filter((r) => r.code !== 'SESSION_ENDED')).toEqual([]);
    // And the process that answered the logout honours it at once.
    expect(errorCode(await read(a, token))).toBe('SESSION_ENDED');
  });

  it('honours a revocation and a shortened expiry made on another process within the bound', async () => {
    const victim = await newUserSession(a);
    const other = await login(a, victim.username, victim.password);
    expect((await read(b, other.token)).errors).toBeUndefined();
    const revoke = () =>
      a.gql('mutation($id:ID!){ revokeSession(id:$id) }', { id: other.session.id }, bearer(victim.token)).then((res) => expect(res.data?.revokeSession).toBe(true));
    const reads = await hammerDuring(b, other.token, revoke, STALENESS_MS + 400);
    expect(reads.filter((r) => r.sentAfterEnd > STALENESS_MS && r.code !== 'SESSION_ENDED')).toEqual([]);

    // setExpiry to 1 s on a; 1 s + the bound later b refuses it as expired.
    expect((await read(b, victim.token)).errors).toBeUndefined();
    const set = await a.gql('mutation { setExpiry(seconds: 1) { expiryDate } }', {}, bearer(victim.token));
    expect(set.errors).toBeUndefined();
    await sleep(1000 + STALENESS_MS + 50);
    expect(errorCode(await read(b, victim.token))).toBe('SESSION_EXPIRED');
  });

  it('reads the database once the change feed has stalled for longer than the bound', async () => {
    const { token } = await newUserSession(a);
    expect((await read(b, token)).errors).toBeUndefined();
    const server = await startTestServer({ SESSION_CACHE_MAX_STALENESS_MS: String(STALENESS_MS) }, b.mongoUri);
    try {
      expect((await read(server, token)).errors).toBeUndefined(); // cached there too
      await server.feed.stop(); // it hears of nothing more
      expect((await a.gql('mutation { logout }', {}, bearer(token))).errors).toBeUndefined();
      await sleep(STALENESS_MS + 50);
      expect(errorCode(await read(server, token))).toBe('SESSION_ENDED');
    } finally {
      await server.stop();
    }
  });

  it('honours at once an end this process answered in a logoutAll, when another process ended that session first', async (ctx) => {
    if (b.capabilities.changeStreams) ctx.skip(); // only polling feeds can say how fresh they are
    const actor = await newUserSession(a);
    const victim = await login(a, actor.username, actor.password);
    // A process whose feed hears of nothing more while its cache still counts as fresh.
    const server = await startTestServer({ SESSION_CACHE_MAX_STALENESS_MS: '10000' }, b.mongoUri);
    try {
      await sleep(300); // its feed has read the log: the cache answers
      expect((await read(server, victim.token)).errors).toBeUndefined(); // cached there
      await server.feed.stop();
      const revoked = await a.gql('mutation($id:ID!){ revokeSession(id:$id) }', { id: victim.session.id }, bearer(actor.token));
      expect(revoked.data?.revokeSession).toBe(true);
      // The logoutAll finds the victim already ended: its answer still says every other session has ended.
      const all = await server.gql('mutation { logoutAll(keepCurrent: true) }', {}, bearer(actor.token));
      expect(all.errors).toBeUndefined();
      expect(errorCode(await read(server, victim.token))).toBe('SESSION_ENDED');
    } finally {
      await server.stop();
    }
  });
});

describe('a session the database no longer has', () => {
  const scratch = scratchDatabase();

  it('is not answered from the cache once a read has found it gone (a purge, or a database restored without it)', async () => {
    let now = Date.now();
    const cache = new SessionCache(STALENESS_MS, 100, () => now);
    const store = new SessionStore(scratch.models, new InsertedVersions(scratch.models), { recordChanges: false, cache });
    const id = new mongoose.Types.ObjectId().toHexString();
    const { token, secretHash } = newSessionToken(id);
    const at = new Date(now);
    await store.create({
      id,
      userId: new mongoose.Types.ObjectId().toHexString(),
      secretHash,
      expiry: { spec: { policy: 'SECONDS', seconds: 60, date: null }, createdAt: at, lastSavedAt: at, expiresAt: new Date(now + 60_000), limitedBy: 'POLICY' },
      userAgent: null,
      clientAddress: null,
    });
    cache.feedCaughtUp(now);
    expect((await store.findByToken(token, '127.0.0.1'))?.id).toBe(id);
    await scratch.models.Session.deleteOne({ _id: id });
    now += STALENESS_MS + 1; // the feed stalls: the next lookup reads the database
    expect(await store.findByToken(token, '127.0.0.1')).toBeNull();
    cache.feedCaughtUp(now); // and is fresh again
    expect(await store.findByToken(token, '127.0.0.1')).toBeNull();
  });
});
