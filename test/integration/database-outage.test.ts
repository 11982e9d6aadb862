import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fsp from 'node:fs/promises';
import path from 'node:path';
import mongoose from 'mongoose';
import { WebSocket } from 'ws';
import { describe, expect, inject, it } from 'vitest';
import { FERRETDB_BIN, postgresAdminUrl, postgresUnavailable, psql, resolveDatabase } from '../../scripts/database.js';
import { unixSocketOf } from '../../scripts/database/uri.js';
import { SERVER_SELECTION_TIMEOUT_MS } from '../../src/store/databaseHealth.js';
import { versionState } from '../../src/store/versionWriters.js';
import { DATABASE_UNAVAILABLE_MESSAGE } from '../../src/store/databaseErrors.js';
import { EventRecorder } from '../helpers/events.js';
import { FaultProxy } from '../helpers/faultProxy.js';
import { errorCode, eventually, login, newUserSession, sleep, startTestServer, testDatabaseUri, type TestServer } from '../helpers/server.js';
import { mountTmpfs } from '../helpers/tmpfs.js';

const CACHE_STALENESS_MS = 300;
/**
 * A request caught by the outage's start waits first for its operation's connection to fail, and
 * then for the server selection of the driver's one retry (and a loaded machine's event loops).
 */
const FAILS_WITHIN_MS = 2 * SERVER_SELECTION_TIMEOUT_MS + 500;
/**
 * How late an expiry is told while the process knows the database is out: one ping (0.5 s) decides,
 * where a re-check otherwise waits a second for its commit first (src/engine/hub.ts).
 */
const KNOWN_OUT_LATENESS_MS = 1_300;
/** The driver's heartbeat comes within a second and gives up on a hung database after 10 s: src/store/databaseHealth.ts. */
const HUNG_DATABASE_BOUND_MS = 13_000;
const embeddedKind = () => inject('dbKind') as 'ferretdb' | 'mongod' | 'ferretdb-postgresql';

// Needs a database of its own to kill: an embedded one (not an external MONGODB_URI).
describe.skipIf(inject('dbKind') === 'external')('while the database is unreachable', () => {
  it('a session still ends at its last known expiry (security first)', async () => {
    const db = await resolveDatabase({ persistent: false, kind: embeddedKind(), log: () => {} });
    const server = await startTestServer({}, db.uri);
    try {
      const { token, session } = await newUserSession(server, { seconds: 6 });
      const expiresAt = new Date(session.expiryDate).getTime();
      const events = new EventRecorder(server, token);
      await events.ready(server, session.id);
      await db.stop();
      await eventually(async () => (await fetch(`${new URL(server.url).origin}/readyz`)).status === 503, 4_000, 'readiness 503');
      expect(Date.now()).toBeLessThan(expiresAt - 500);
      const expired = await events.untilEvent('EXPIRED', 5000);
      expect(expired.reason).toBe('TIMEOUT');
      expect(expired.receivedAt).toBeGreaterThanOrEqual(expiresAt);
      expect(expired.receivedAt - expiresAt).toBeLessThan(KNOWN_OUT_LATENESS_MS);
      await events.dispose();
    } finally {
      await Promise.race([server.stop(), new Promise((r) => setTimeout(r, 5000))]);
      await db.stop();
    }
  });

  it('a killed database: not ready (503) while down, requests fail fast with DATABASE_UNAVAILABLE, restarted, nothing acknowledged lost', async () => {
    // The supervisor waits this long before its first restart, so the outage is long enough to look at.
    const RESTART_DELAY_MS = 4_000;
    const dbLog: string[] = [];
    const db = await resolveDatabase({ persistent: false, kind: embeddedKind(), log: (line) => dbLog.push(line), restartDelayMs: RESTART_DELAY_MS });
    // Presence heartbeats every 500 ms: each one fails while the database is down.
    const server = await startTestServer({ SESSION_CACHE_MAX_STALENESS_MS: String(CACHE_STALENESS_MS), PRESENCE_HEARTBEAT_MS: '500' }, db.uri);
    const origin = new URL(server.url).origin;
    const address = new URL(db.uri);
    // Its host and port, or its socket's path (FerretDB), as the URI writes them and as the driver would.
    const socket = unixSocketOf(db.uri);
    const revealing = [address.host, address.hostname, ...(socket ? [socket] : []), ...(address.port ? [`:${address.port}`] : [])];
    const leaks = (text: string) => revealing.some((part) => text.includes(part));
    const load = new Load(server);
    const events: EventRecorder[] = [];
    try {
      const steady = await newUserSession(server, { seconds: 600 });
      const writer = await newUserSession(server, { seconds: 600 });
      const steadyEvents = new EventRecorder(server, steady.token);
      events.push(steadyEvents);
      await steadyEvents.ready(server, steady.session.id);

      // Steady load: health probes, reads, and writes whose acknowledgements are remembered.
      load.loop(() => load.probe(`${origin}/livez`, `${origin}/readyz`, `${origin}/healthz`), 50);
      for (let i = 0; i < 3; i++) load.loop(() => load.call('read', '{ session { id expiryAge } }', {}, steady.token), 40);
      load.loop(async () => {
        const seconds = 1_000 + load.writes.length;
        const created = await load.call('login', LOGIN, { u: writer.username, p: writer.password });
        if (!created.ok) return;
        const token = created.data.login.token as string;
        load.writes.push({ token, seconds: null });
        const set = await load.call('setExpiry', SET_EXPIRY, { s: seconds }, token);
        if (set.ok) load.writes.at(-1)!.seconds = seconds;
      }, 60);

      // A session whose expiry passes while the database is down, with a subscriber and a client polling it.
      const short = await newUserSession(server, { seconds: 4 });
      const expiresAt = Date.parse(short.session.expiryDate);
      const shortEvents = new EventRecorder(server, short.token);
      events.push(shortEvents);
      await shortEvents.ready(server, short.session.id);
      const shortAnswers: Array<{ serverTime: number }> = [];
      load.loop(async () => {
        const res = await load.call('readShort', '{ session { serverTime } }', {}, short.token);
        if (res.ok) shortAnswers.push({ serverTime: Date.parse(res.data.session.serverTime) });
      }, 50);

      await sleep(Math.max(0, expiresAt - 1_500 - Date.now()));
      const pidBefore = db.supervisor!.pid();
      const killedAt = Date.now();
      expect(db.supervisor!.kill('SIGKILL')).toBe(true);
      expect(expiresAt - killedAt).toBeGreaterThan(500); // the expiry passes during the outage

      const down = await load.until(() => load.probes.find((p) => p.path === '/readyz' && p.at > killedAt && p.status === 503), 5_000, '/readyz 503');
      const back = await load.until(() => load.probes.find((p) => p.path === '/readyz' && p.at > down.at && p.status === 200), 15_000, '/readyz 200 again');
      const recovered = () => load.calls.filter((c) => c.start > back.at && c.ok);
      await load.until(() => (recovered().filter((c) => c.op === 'read').length >= 5 && recovered().some((c) => c.op === 'setExpiry') ? true : undefined), 5_000, 'reads and writes again');
      await load.stop();
      const restartedPid = db.supervisor!.pid();

      // Readiness: 200 before, 503 while down (a JSON body naming no address), 200 after; liveness 200 throughout.
      const ready = load.probes.filter((p) => p.path !== '/livez');
      // (A probe sent just before the kill may be answered after it, and rightly with 503.)
      expect(ready.filter((p) => p.answeredAt < killedAt).every((p) => p.status === 200)).toBe(true);
      for (const path of ['/readyz', '/healthz']) {
        expect(ready.some((p) => p.path === path && p.status === 503 && p.at > killedAt && p.at < back.at)).toBe(true);
        expect(ready.filter((p) => p.path === path).at(-1)!.status).toBe(200);
      }
      const unready = ready.find((p) => p.status === 503)!;
      expect(JSON.parse(unready.body)).toMatchObject({ ok: false, database: 'unreachable' });
      expect(leaks(unready.body)).toBe(false);
      expect(ready.every((p) => p.status === 200 || p.status === 503)).toBe(true);
      expect(load.probes.filter((p) => p.path === '/livez').every((p) => p.status === 200)).toBe(true);

      // Requests: every failure is DATABASE_UNAVAILABLE (never INTERNAL_SERVER_ERROR), names no address,
      // and comes within FAILS_WITHIN_MS; every request sent while the database was certainly down
      // failed so (once the session cache went stale: until then a valid session may be answered from memory).
      const expiredAnswers = load.calls.filter((c) => c.op === 'readShort' && c.code === 'SESSION_EXPIRED');
      expect(expiredAnswers.every((c) => c.end >= expiresAt)).toBe(true);
      const failed = load.calls.filter((c) => !c.ok && !expiredAnswers.includes(c));
      expect(failed.length).toBeGreaterThan(0);
      for (const call of failed) {
        expect({ op: call.op, code: call.code, status: call.status }).toEqual({ op: call.op, code: 'DATABASE_UNAVAILABLE', status: 503 });
        expect(leaks(call.message)).toBe(false);
        expect(call.end - call.start).toBeLessThan(FAILS_WITHIN_MS);
      }
      const whileDown = load.calls.filter((c) => c.start > killedAt + 200 + CACHE_STALENESS_MS && c.start < killedAt + RESTART_DELAY_MS - 1_000);
      expect(whileDown.length).toBeGreaterThanOrEqual(6);
      expect(whileDown.filter((c) => c.ok)).toEqual([]);
      const slowest = Math.max(...load.calls.filter((c) => c.start > killedAt && c.start < back.at).map((c) => c.end - c.start));
      expect(slowest).toBeLessThan(FAILS_WITHIN_MS);

      // No session served past its expiry; its subscriber told on time.
      expect(shortAnswers.every((a) => a.serverTime < expiresAt)).toBe(true);
      const expired = await shortEvents.untilEvent('EXPIRED', 1_000);
      expect(expired.reason).toBe('TIMEOUT');
      expect(expired.receivedAt).toBeGreaterThanOrEqual(expiresAt);
      expect(expired.receivedAt - expiresAt).toBeLessThan(2_000);
      const afterwards = await server.gql('{ session { id } }', {}, { token: short.token });
      expect(afterwards.errors?.[0]?.extensions?.code).toBe('SESSION_EXPIRED');

      // The supervisor restarted the database (one log line), the API recovered by itself, and the
      // subscriber of a session that did not end heard of no end.
      expect(restartedPid).toBeDefined();
      expect(restartedPid).not.toBe(pidBefore);
      expect(db.supervisor!.restarts()).toBe(1);
      expect(dbLog.filter((line) => /exited unexpectedly \(signal SIGKILL\); restarting it in 4000 ms \(restart 1\)/.test(line))).toHaveLength(1);
      expect(steadyEvents.kinds()).toEqual([]);
      expect(steadyEvents.closeCode).toBeNull();
      const fresh = await login(server, writer.username, writer.password, { seconds: 600 });
      const freshEvents = new EventRecorder(server, fresh.token);
      events.push(freshEvents);
      await freshEvents.ready(server, fresh.session.id);

      // No acknowledged write lost: every login answered before or after the kill still stands, with
      // the expiry its acknowledged setExpiry gave it.
      expect(load.calls.some((c) => c.op === 'setExpiry' && c.ok && c.end < killedAt)).toBe(true);
      expect(load.calls.some((c) => c.op === 'setExpiry' && c.ok && c.start > back.at)).toBe(true);
      for (const write of load.writes) {
        const res = await server.gql('{ session { policySeconds } }', {}, { token: write.token });
        expect(res.errors).toBeUndefined();
        if (write.seconds !== null) expect(res.data.session.policySeconds).toBe(write.seconds);
      }
      expect(server.logs.some((line) => line.includes('database unreachable'))).toBe(true);
      expect(server.logs.some((line) => line.includes('database reachable again'))).toBe(true);
      // An outage is not a bug: its log says what failed without stack traces, each background task once.
      expect(server.logs.filter((line) => line.includes('"stack"'))).toEqual([]);
      expect(server.logs.filter((line) => line.includes('could not renew the presence lease'))).toHaveLength(1);
    } finally {
      await load.stop();
      await Promise.all(events.map((e) => e.dispose()));
      await Promise.race([server.stop(), sleep(5000)]);
      await db.stop();
    }
  });
});

/**
 * Takes SQLite's write lock on `file` from another process, as a stuck writer would: readers (WAL)
 * and FerretDB's pings go on, every write waits (FerretDB's busy timeout is 10 s).
 */
async function holdWriteLock(file: string): Promise<{ release(): Promise<void> }> {
  const script = 'import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nc.execute("BEGIN IMMEDIATE")\nprint("locked", flush=True)\nsys.stdin.read()';
  const holder = spawn('python3', ['-c', script, file], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = once(holder, 'exit');
  await Promise.race([once(holder.stdout!, 'data'), exited.then(([code]) => Promise.reject(new Error(`the lock holder exited with ${code}`)))]);
  return {
    async release() {
      holder.stdin!.end();
      await exited;
    },
  };
}

describe.skipIf(inject('dbKind') === 'external')('while the database hangs (SIGSTOP: it holds its connections and answers nothing)', () => {
  it("requests fail with DATABASE_UNAVAILABLE within HUNG_DATABASE_BOUND_MS, not after the driver's 30 s; all recover once it answers again", async () => {
    const db = await resolveDatabase({ persistent: false, kind: embeddedKind(), log: () => {} });
    const server = await startTestServer({ SESSION_CACHE_MAX_STALENESS_MS: String(CACHE_STALENESS_MS) }, db.uri);
    const pid = db.supervisor!.pid()!;
    let stopped = false;
    try {
      const { token } = await newUserSession(server, { seconds: 600 });
      // Expires once the hang is known (readiness 503 within about 3 s).
      const expiring = await newUserSession(server, { seconds: 7 });
      const expiringEvents = new EventRecorder(server, expiring.token);
      await expiringEvents.ready(server, expiring.session.id);
      process.kill(pid, 'SIGSTOP');
      stopped = true;
      const knownOutAt = (async () => {
        while ((await fetch(`${new URL(server.url).origin}/readyz`)).status !== 503) await sleep(100);
        return Date.now();
      })();
      const read = async () => {
        const sentAt = Date.now();
        const res = await server.gql('{ session { id } }', {}, { token, timeoutMs: 60_000 });
        return { code: errorCode(res), waitedMs: Date.now() - sentAt };
      };
      await sleep(CACHE_STALENESS_MS + 200); // the session cache no longer answers
      // One sent as it hangs (its operation waits on a connection), one a few seconds in.
      const first = read();
      await sleep(4_000);
      const later = read();
      const results = await Promise.all([first, later]);
      for (const result of results) {
        expect(result.code).toBe('DATABASE_UNAVAILABLE');
        expect(result.waitedMs).toBeLessThan(HUNG_DATABASE_BOUND_MS);
      }
      expect((await fetch(`${new URL(server.url).origin}/readyz`)).status).toBe(503);
      // The hang was known before the expiry: one ping decided it.
      const expiresAt = Date.parse(expiring.session.expiryDate);
      const expired = await expiringEvents.untilEvent('EXPIRED', 10_000);
      expect(await knownOutAt).toBeLessThan(expiresAt - 500);
      expect(expired.receivedAt).toBeGreaterThanOrEqual(expiresAt);
      expect(expired.receivedAt - expiresAt).toBeLessThan(KNOWN_OUT_LATENESS_MS);
      await expiringEvents.dispose();
      process.kill(pid, 'SIGCONT');
      stopped = false;
      await eventually(async () => !(await server.gql('{ session { id } }', {}, { token })).errors, 15_000, 'recovery');
    } finally {
      if (stopped) process.kill(pid, 'SIGCONT');
      await Promise.race([server.stop(), sleep(5000)]);
      await db.stop();
    }
  }, 60_000);
});

describe.skipIf(inject('dbKind') !== 'ferretdb')('while the database answers pings but commits no write', () => {
  it('a session ends on its last known expiry EXPIRY_RECHECK_MAX_WAIT after it; a logout meanwhile fails with DATABASE_UNAVAILABLE and changes nothing; the end is written once writes go through', async () => {
    const MAX_WAIT_MS = 2_000;
    const db = await resolveDatabase({ persistent: false, kind: 'ferretdb', log: () => {} });
    const server = await startTestServer({ EXPIRY_RECHECK_MAX_WAIT: String(MAX_WAIT_MS / 1000) }, db.uri);
    const conn = await mongoose.createConnection(db.uri).asPromise();
    let lock: { release(): Promise<void> } | null = null;
    try {
      const { token, session } = await newUserSession(server, { seconds: 3 });
      const other = await newUserSession(server, { seconds: 600 });
      const events = new EventRecorder(server, token);
      await events.ready(server, session.id);
      lock = await holdWriteLock(path.join(db.dataDir!, `${new URL(db.uri).pathname.slice(1)}.sqlite`));
      expect((await fetch(`${new URL(server.url).origin}/readyz`)).status).toBe(200);
      const logout = server.gql('mutation { logout }', {}, { token: other.token, timeoutMs: 60_000 });

      const expired = await events.untilEvent('EXPIRED', 10_000);
      const late = expired.receivedAt - new Date(session.expiryDate).getTime();
      expect(expired.reason).toBe('TIMEOUT');
      // Waited for while it answered pings, then no longer: long before SQLite's busy timeout failed the write.
      expect(late).toBeGreaterThanOrEqual(MAX_WAIT_MS);
      expect(late).toBeLessThan(MAX_WAIT_MS + 3_000);

      // The logout's write waits out SQLite's busy timeout, and is refused as the database being unavailable.
      const refused = await logout;
      expect({ status: refused.status, code: errorCode(refused) }).toEqual({ status: 503, code: 'DATABASE_UNAVAILABLE' });

      await lock.release();
      lock = null;
      const ends = async () =>
        (await conn.collection('session_versions').find({ sessionId: new mongoose.Types.ObjectId(session.id) }).toArray()).filter(
          (v) => versionState(v.state).endReason === 'TIMEOUT',
        ).length;
      await eventually(async () => (await ends()) === 1, 15_000, 'the TIMEOUT written');
      expect((await server.gql('{ session { id } }', {}, { token: other.token })).errors).toBeUndefined();
      await events.dispose();
    } finally {
      await lock?.release();
      await conn.close();
      await Promise.race([server.stop(), sleep(5000)]);
      await db.stop();
    }
  }, 60_000);
});

describe.skipIf(inject('dbKind') !== 'ferretdb')("while the disk holding the database is full (FerretDB on SQLite, on a tmpfs of its own)", () => {
  it('a write fails with DATABASE_UNAVAILABLE (503), not INTERNAL_SERVER_ERROR, and changes nothing; reads go on; not ready (503) until a write goes through; all recover once there is space, without a restart; the cause logged once', async (ctx) => {
    const disk = await mountTmpfs('8m');
    if (typeof disk === 'string') return ctx.skip(disk);
    let server: TestServer | undefined;
    let db: Awaited<ReturnType<typeof resolveDatabase>> | undefined;
    try {
      db = await resolveDatabase({ persistent: true, dataRoot: disk.dir, kind: 'ferretdb', log: () => {} });
      server = await startTestServer({}, db.uri);
      const { token } = await newUserSession(server, { seconds: 600 });
      await disk.fill();

      const refused = await server.gql('mutation { logout }', {}, { token });
      expect({ status: refused.status, code: errorCode(refused), message: refused.errors?.[0]?.message }).toEqual({
        status: 503,
        code: 'DATABASE_UNAVAILABLE',
        message: DATABASE_UNAVAILABLE_MESSAGE,
      });
      expect((await server.gql('{ session { id } }', {}, { token })).errors).toBeUndefined();
      // Not ready from the refused write on, and still not after the health checks' probe writes
      // (every 250 ms) have had time to be refused too.
      const readyz = () => fetch(`${new URL(server!.url).origin}/readyz`);
      expect((await readyz()).status).toBe(503);
      await sleep(1_500);
      const unready = await readyz();
      expect({ status: unready.status, body: await unready.json() }).toMatchObject({ status: 503, body: { ok: false, database: 'full' } });
      expect(errorCode(await server.gql('mutation { logout }', {}, { token }))).toBe('DATABASE_UNAVAILABLE');

      await disk.free();
      await eventually(async () => (await readyz()).status === 200, 3_000, '/readyz 200 again');
      const logout = await server.gql('mutation { logout }', {}, { token });
      expect(logout.errors).toBeUndefined();
      expect(errorCode(await server.gql('{ session { id } }', {}, { token }))).toBe('SESSION_ENDED');
      expect(server.logs.filter((line) => line.includes('unexpected error'))).toEqual([]);
      const said = server.logs.filter((line) => line.includes('database storage full'));
      expect(said).toHaveLength(1);
      expect(JSON.parse(said[0]!).why).toBe('a write was refused: database or disk is full (13)');
      expect(server.logs.filter((line) => line.includes('database takes writes again: ready'))).toHaveLength(1);
    } finally {
      if (server) await Promise.race([server.stop(), sleep(5000)]);
      await db?.stop();
      await disk.unmount();
    }
  });
});

/** A server whose connections to the test database go through a fault proxy, for `body`; both stopped after. */
async function withServerBehindProxy(env: Record<string, string>, body: (server: TestServer, proxy: FaultProxy) => Promise<void>) {
  const proxy = await FaultProxy.start(testDatabaseUri());
  const server = await startTestServer(env, proxy.uri);
  try {
    await body(server, proxy);
  } finally {
    await Promise.race([server.stop(), sleep(5000)]);
    await proxy.close();
  }
}

describe('connections that go silent, then are reset', () => {
  it('the process recovers by itself once the database answers again, although the driver hangs on a connection being closed', async () => {
    await withServerBehindProxy({ SESSION_CACHE_MAX_STALENESS_MS: String(CACHE_STALENESS_MS) }, async (server, proxy) => {
      const { token } = await newUserSession(server, { seconds: 600 });
      // Packets dropped for a moment, then every connection reset and new ones refused for 4 s.
      proxy.silence();
      await sleep(500);
      const resetAt = Date.now();
      proxy.reset(4_000);
      await eventually(async () => !(await server.gql('{ session { id } }', {}, { token })).errors, 30_000, 'requests answered again');
      expect(Date.now() - resetAt).toBeLessThan(25_000);
      await eventually(async () => (await fetch(`${new URL(server.url).origin}/readyz`)).status === 200, 5_000, 'ready again');
    });
  }, 60_000);
});

describe('one operation the database never answers, while it answers everything else', () => {
  it('fails after DATABASE_OPERATION_TIMEOUT, and the writes of that session waiting behind it are answered, not held with it; the session still ends', async () => {
    await withServerBehindProxy({ DATABASE_OPERATION_TIMEOUT: '2' }, async (server, proxy) => {
      const { token } = await newUserSession(server, { seconds: 600 });
      proxy.holdWhen((c) => c.command === 'insert' && c.collection === 'session_versions');
      const timed = (query: string) => {
        const sentAt = Date.now();
        return server.gql(query, {}, { token, timeoutMs: 60_000 }).then((res) => ({ code: errorCode(res) ?? 'ok', afterMs: Date.now() - sentAt }));
      };
      const held = timed('mutation { setExpiry(seconds: 1000) { expiryDate } }');
      await eventually(async () => proxy.held === 1, 5_000, 'the commit held');
      const waiting = [timed('mutation { setExpiry(seconds: 1001) { expiryDate } }'), timed('mutation { touch { expiryDate } }')];
      const logout = await timed('mutation { logout }');
      expect(logout.code).toBe('ok');
      // Before, the held write never answered, nor did the writes behind it (the probe gave up after 60 s).
      const first = await held;
      expect(first.code).toBe('DATABASE_UNAVAILABLE');
      expect(first.afterMs).toBeLessThan(8_000);
      for (const w of await Promise.all(waiting)) {
        expect(['SESSION_ENDED', 'DATABASE_UNAVAILABLE']).toContain(w.code);
        expect(w.afterMs).toBeLessThan(8_000);
      }
      expect(errorCode(await server.gql('{ session { id } }', {}, { token }))).toBe('SESSION_ENDED');
    });
  }, 60_000);

  it('a login it never answers gives its address its place among the logins in hand back once it fails', async () => {
    const env = { DATABASE_OPERATION_TIMEOUT: '2', TRUST_PROXY: 'loopback', LOGIN_ADDRESS_CONCURRENCY: '1' };
    await withServerBehindProxy(env, async (server, proxy) => {
      const { username, password } = await newUserSession(server);
      const login = () => server.gql('mutation($u:String!,$p:String!){ login(username:$u,password:$p){ token } }', { u: username, p: password }, { headers: { 'x-forwarded-for': '203.0.113.50' }, timeoutMs: 60_000 });
      proxy.holdWhen((c) => c.command === 'insert' && c.collection === 'auth_attempts');
      const held = login();
      await eventually(async () => proxy.held === 1, 5_000, 'the login held');
      expect(errorCode(await login())).toBe('RATE_LIMITED');
      // Before, the address stayed refused for as long as the database did not answer: for good.
      expect(errorCode(await held)).toBe('DATABASE_UNAVAILABLE');
      expect(errorCode(await login())).toBeUndefined();
    });
  }, 60_000);
});

describe('a socket that connects while the database is out of reach', () => {
  it('is closed with 1013 (Try Again Later), which clients retry, not 4500, which the graphql-ws client never retries', async () => {
    await withServerBehindProxy({}, async (server, proxy) => {
      const { token } = await newUserSession(server);
      proxy.reset(5_000); // connections dropped, new ones refused for 5 s
      await sleep(500); // the session cache no longer answers
      const socket = new WebSocket(server.url.replace(/^http/, 'ws'), 'graphql-transport-ws');
      await once(socket, 'open');
      socket.send(JSON.stringify({ type: 'connection_init', payload: { token } }));
      const [code, reason] = (await once(socket, 'close')) as [number, Buffer];
      expect({ code, reason: String(reason) }).toEqual({ code: 1013, reason: 'The database is unavailable; try again shortly.' });
      expect(server.logs.filter((line) => line.includes('"level":50'))).toEqual([]);
    });
  }, 30_000);
});

describe('a renewal and an end announced without the database', () => {
  it('a renewal committed before the expiry but answered after EXPIRED was announced is refused: the announced end sticks', async () => {
    // The database takes 3 s to answer commits (inserts of session versions) and reads of sessions,
    // and answers everything else at once. The renewal's commit lands 0.5 s before the expiry and is
    // answered 2.5 s after it; the expiry's re-check, which loses to it, waits EXPIRY_RECHECK_MAX_WAIT
    // (1 s) for a database that answers pings, gives up and announces the end on what it knew; the
    // change feed's read of the renewal's intent is answered later still.
    await withServerBehindProxy({ EXPIRY_RECHECK_MAX_WAIT: '1' }, async (server, proxy) => {
      const { token, session } = await newUserSession(server, { seconds: 4 });
      const events = new EventRecorder(server, token);
      await events.ready(server, session.id);
      proxy.delayAnswersTo((c) => (c.command === 'insert' && c.collection === 'session_versions') || (c.command === 'find' && c.collection === 'sessions'), 3_000);
      const expiresAt = new Date(session.expiryDate).getTime();
      await sleep(expiresAt - 500 - Date.now());
      const touch = server.gql('mutation { touch { expiryAge } }', {}, { token, timeoutMs: 60_000 });
      expect((await events.untilEvent('EXPIRED', 10_000)).reason).toBe('TIMEOUT');
      const answer = await touch;
      expect({ code: errorCode(answer), reason: answer.errors?.[0]?.extensions?.reason }).toEqual({ code: 'SESSION_EXPIRED', reason: 'TIMEOUT' });
      // The end is not written yet (its commit waits 3 s more) and this process's cache holds the
      // renewal: the session is refused all the same.
      const plain = await server.gql('{ session { id } }', {}, { token });
      expect({ code: errorCode(plain), reason: plain.errors?.[0]?.extensions?.reason }).toEqual({ code: 'SESSION_EXPIRED', reason: 'TIMEOUT' });
      proxy.delayAnswersTo(() => false, 0);
      await eventually(async () => errorCode(await server.gql('{ session { id } }', {}, { token })) === 'SESSION_EXPIRED', 10_000, 'the end written');
      expect(events.kinds()).toEqual(['EXPIRED']);
      await events.dispose();
    });
  }, 60_000);
});

// FerretDB on PostgreSQL, whatever database the run itself uses: FerretDB stays up while its
// backend is out of reach, and says so with errors of its own.
const postgresSkip = (await postgresUnavailable()) ?? ((await fsp.access(FERRETDB_BIN).then(() => true, () => false)) ? undefined : 'FerretDB is not built');

describe.skipIf(postgresSkip !== undefined)('while the PostgreSQL behind FerretDB is out of reach', () => {
  it('requests fail with DATABASE_UNAVAILABLE, /readyz answers 503, and both recover once it is back', async () => {
    const db = await resolveDatabase({ persistent: false, kind: 'ferretdb-postgresql', log: () => {} });
    const server = await startTestServer({ SESSION_CACHE_MAX_STALENESS_MS: String(CACHE_STALENESS_MS) }, db.uri);
    const database = db.postgresDatabase!;
    const admit = (allowed: boolean) => psql(postgresAdminUrl(), `ALTER DATABASE "${database}" ALLOW_CONNECTIONS ${allowed}`);
    const readyz = async () => (await fetch(`${new URL(server.url).origin}/readyz`)).status;
    try {
      const { token } = await newUserSession(server);
      await admit(false);
      await psql(postgresAdminUrl(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${database}'`);
      await sleep(CACHE_STALENESS_MS + 200); // the session cache no longer answers
      const read = await server.gql('{ session { id } }', {}, { token });
      expect({ code: read.errors?.[0]?.extensions?.code, status: read.status }).toEqual({ code: 'DATABASE_UNAVAILABLE', status: 503 });
      expect(read.errors?.[0]?.message).not.toContain(database);
      await eventually(async () => (await readyz()) === 503, 3_000, '/readyz answering 503');

      await admit(true);
      await eventually(async () => (await readyz()) === 200 && !(await server.gql('{ session { id } }', {}, { token })).errors, 10_000, 'recovery');
    } finally {
      await admit(true).catch(() => {});
      await Promise.race([server.stop(), sleep(5000)]);
      await db.stop();
    }
  });
});

const LOGIN = 'mutation($u:String!,$p:String!){ login(username:$u,password:$p){ token } }';
const SET_EXPIRY = 'mutation($s:Int){ setExpiry(seconds:$s){ policySeconds } }';

interface Call {
  op: string;
  start: number;
  end: number;
  ok: boolean;
  status?: number;
  code?: string;
  message: string;
  data?: any;
}

interface Probe {
  path: string;
  /** Sent. */
  at: number;
  answeredAt: number;
  status: number;
  body: string;
}

/** Loops of requests that run until stop(), each recording what it got and how long it took. */
class Load {
  readonly calls: Call[] = [];
  readonly probes: Probe[] = [];
  /** Sessions created by an acknowledged login, with the seconds of their acknowledged setExpiry (null: none acknowledged). */
  readonly writes: Array<{ token: string; seconds: number | null }> = [];
  private running = true;
  private readonly loops: Promise<void>[] = [];

  constructor(private readonly server: TestServer) {}

  loop(step: () => Promise<unknown>, pauseMs: number): void {
    this.loops.push(
      (async () => {
        while (this.running) {
          await step();
          await sleep(pauseMs);
        }
      })(),
    );
  }

  async call(op: string, query: string, variables: Record<string, unknown>, token?: string): Promise<Call> {
    const start = Date.now();
    let call: Call;
    try {
      const res = await this.server.gql(query, variables, { token, timeoutMs: 10_000 });
      const error = res.errors?.[0];
      call = { op, start, end: Date.now(), ok: !error, status: res.status, code: error?.extensions?.code, message: error?.message ?? '', data: res.data };
    } catch (err) {
      call = { op, start, end: Date.now(), ok: false, code: 'NO_ANSWER', message: String(err) };
    }
    this.calls.push(call);
    return call;
  }

  async probe(...urls: string[]): Promise<void> {
    await Promise.all(
      urls.map(async (url) => {
        const at = Date.now();
        try {
          const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
          const body = await res.text();
          this.probes.push({ path: new URL(url).pathname, at, answeredAt: Date.now(), status: res.status, body });
        } catch (err) {
          this.probes.push({ path: new URL(url).pathname, at, answeredAt: Date.now(), status: 0, body: String(err) });
        }
      }),
    );
  }

  /** The value of `find` once it has one, polling; rejects after `timeoutMs`. */
  async until<T>(find: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(20);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}
