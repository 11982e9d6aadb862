import mongoose from 'mongoose';
import { pino } from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { PollingFeed, type IntentTiming } from '../../src/engine/changeFeed.js';
import { createLogger } from '../../src/logger.js';
import type { Session } from '../../src/session.js';
import { SessionStore, type LoggedChange } from '../../src/store/sessionStore.js';
import { InsertedVersions, type VersionWriter } from '../../src/store/versionWriters.js';
import { ended } from '../../src/sessions/transitions.js';
import { sleep } from '../helpers/server.js';
import { newStoredSession, scratchDatabase } from '../helpers/store.js';

const scratch = scratchDatabase();
let store: SessionStore;
const logger = createLogger('silent');

beforeAll(() => {
  store = new SessionStore(scratch.models, new InsertedVersions(scratch.models), { recordChanges: true });
});

async function collect(feed: PollingFeed) {
  const seen: Session[] = [];
  await feed.start({ sessionChanged: (s) => seen.push(s) });
  return seen;
}

/** Another session written every 100 ms, which moves the pollers on past older stamps; resolves to a function that stops it. */
async function writeMeanwhile(): Promise<() => Promise<void>> {
  let running = true;
  const busy = await newStoredSession(store);
  const writing = (async () => {
    for (let current = busy; running; await sleep(100)) {
      const next = { ...current, version: current.version + 1, updatedAt: new Date() };
      if (await store.commit(next)) current = next;
    }
  })();
  return async () => {
    running = false;
    await writing;
  };
}

/** A store whose queries (`find`, of sessions and of the change log) fail until `reachable()`; reads by `_id` work. */
function storeWithoutFind() {
  let out = true;
  const failing = <T extends object>(model: T) =>
    new Proxy(model, {
      get: (target, prop, receiver) =>
        prop === 'find' && out
          ? () => {
              throw new Error('out of reach');
            }
          : Reflect.get(target, prop, receiver),
    });
  const models = { ...scratch.models, Session: failing(scratch.models.Session), SessionChange: failing(scratch.models.SessionChange) };
  return { store: new SessionStore(models, new InsertedVersions(scratch.models), { recordChanges: true }), reachable: () => void (out = false) };
}

/** A store whose next reads of the change log are the ones planned (each given the real read), the others as usual. */
function storeWithPlannedLogReads() {
  const store = new SessionStore(scratch.models, new InsertedVersions(scratch.models), { recordChanges: true });
  const readLog = store.changesSince.bind(store);
  const planned: Array<(from: Date) => Promise<LoggedChange[]>> = [];
  store.changesSince = (from) => planned.shift()?.(from) ?? readLog(from);
  return { store, readLog, planned };
}

/** A logger at level warn, and the messages it logged. */
function warnings() {
  const lines: string[] = [];
  return { lines, logged: pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line).msg) }) };
}

const newestOf = (seen: Session[], id: string) => seen.filter((s) => s.id === id).sort((a, b) => b.version - a.version)[0];

describe('the polling change feed', () => {
  it('delivers every write through the change log, which it trims', async () => {
    const feed = new PollingFeed(store, 50, logger, { overlapMs: 100, retentionMs: 500 });
    const seen = await collect(feed);
    try {
      const written = await newStoredSession(store);
      const loggedOut = ended(written, 'LOGGED_OUT', new Date());
      expect(await store.commit(loggedOut)).toBe(true);
      await sleep(300);
      const versions = [...new Map(seen.map((s) => [`${s.id}/${s.version}`, s])).values()];
      expect(versions.map((s) => [s.id, s.version, s.endReason])).toEqual([
        [written.id, 1, null],
        [written.id, 2, 'LOGGED_OUT'],
      ]);
      expect(loggedOut.version).toBe(2);
      await sleep(1600);
      expect(await scratch.models.SessionChange.countDocuments()).toBe(0);
    } finally {
      await feed.stop();
    }
  });

  it('delivers a timeout that ends a version before its expiry (an announced timeout made to stick over a renewal); a timeout at the expiry needs no record', async () => {
    const feed = new PollingFeed(store, 50, logger);
    const seen = await collect(feed);
    try {
      const renewed = await newStoredSession(store);
      const atExpiry = await newStoredSession(store);
      // Ended before its expiry, a minute away: the processes that know that expiry would wait for it.
      expect(await store.commit(ended(renewed, 'TIMEOUT', new Date()))).toBe(true);
      // Ended at its expiry: every process that follows it has its own deadline then.
      expect(await store.commit(ended(atExpiry, 'TIMEOUT', new Date(atExpiry.expiry.expiresAt.getTime() + 5)))).toBe(true);
      await sleep(300);
      const ends = seen.filter((s) => s.endReason === 'TIMEOUT').map((s) => s.id);
      expect(ends).toContain(renewed.id);
      expect(ends).not.toContain(atExpiry.id);
    } finally {
      await feed.stop();
    }
  });

  it('logs one line for an outage longer than the log keeps changes, and one for the rescan after it, not one per failed poll', async () => {
    const { store: unreachable, reachable } = storeWithoutFind();
    const { lines, logged } = warnings();
    // Changes kept 300 ms, and a poll every 20 ms: an outage of 1 s is some 50 failed polls, all behind the log.
    const feed = new PollingFeed(unreachable, 20, logged, { overlapMs: 100, retentionMs: 300 });
    await collect(feed);
    try {
      await sleep(1_000);
      reachable();
      await sleep(300);
      expect(lines).toEqual(['polling for session changes failed: retrying', 'the change poller fell behind the change log: reading again the sessions it follows']);
    } finally {
      await feed.stop();
    }
  });

  it('after falling behind, reads again the sessions its listener follows: an end that left the session document as it was reaches it, and a session the database no longer has is reported gone', async () => {
    const { store: cutOff, reachable } = storeWithoutFind();
    const timedOut = await newStoredSession(store);
    const removed = await newStoredSession(store);
    const seen: Session[] = [];
    const gone = new Set<string>();
    // Changes kept 300 ms; the poller cannot read the log for 600 ms.
    const feed = new PollingFeed(cutOff, 20, logger, { overlapMs: 100, retentionMs: 300 });
    await feed.start({ sessionChanged: (s) => seen.push(s), missedChanges: () => [timedOut.id, removed.id], sessionGone: (id) => gone.add(id) });
    try {
      // A timeout that ends a version before its expiry (an announced one made to stick): logged, but
      // it leaves the session document at the version before.
      expect(await store.commit(ended(timedOut, 'TIMEOUT', new Date()))).toBe(true);
      await scratch.models.Session.deleteOne({ _id: removed.id });
      await sleep(600);
      reachable();
      await sleep(300);
      expect(newestOf(seen, timedOut.id)?.endReason).toBe('TIMEOUT');
      expect([...gone]).toEqual([removed.id]);
    } finally {
      await feed.stop();
      await scratch.models.SessionChange.deleteMany({});
    }
  });

  it('reads again the sessions it follows when a read of the log ran too long after the last one began, though the two began close together', async () => {
    // Changes kept 1 s (a poll that falls 0.9 s behind may miss some). One read is answered 0.7 s
    // late (it saw the log as it began), the next begins soon after that answer but runs 0.4 s late,
    // once the records of a change made in between have been trimmed.
    const { store: late, readLog, planned } = storeWithPlannedLogReads();
    let snapshotTaken = false;
    const timedOut = await newStoredSession(store);
    const seen: Session[] = [];
    const { lines, logged } = warnings();
    const feed = new PollingFeed(late, 20, logged, { overlapMs: 100, retentionMs: 1_000 });
    await feed.start({ sessionChanged: (s) => seen.push(s), missedChanges: () => [timedOut.id] });
    try {
      await sleep(200);
      planned.push(
        async (from) => {
          const changes = await readLog(from);
          snapshotTaken = true;
          await sleep(700);
          return changes;
        },
        async (from) => {
          await sleep(400);
          await scratch.models.SessionChange.deleteMany({ at: { $lt: new Date(Date.now() - 1_000) } });
          return readLog(from);
        },
      );
      while (!snapshotTaken) await sleep(1);
      // A timeout that ends a version before its expiry leaves the session document as it was.
      expect(await store.commit(ended(timedOut, 'TIMEOUT', new Date()))).toBe(true);
      await sleep(1_600);
      expect(planned).toEqual([]);
      // Once: the read after the one answered late is no further behind than that answer.
      expect(lines).toEqual(['the change poller fell behind the change log: reading again the sessions it follows']);
      expect(newestOf(seen, timedOut.id)?.endReason).toBe('TIMEOUT');
    } finally {
      await feed.stop();
      await scratch.models.SessionChange.deleteMany({});
    }
  });

  it('reads again once after a read of the log answered long after it began, not at the next poll too', async () => {
    const { store: late, readLog, planned } = storeWithPlannedLogReads();
    const { lines, logged } = warnings();
    const feed = new PollingFeed(late, 20, logged, { overlapMs: 100, retentionMs: 1_000 });
    await feed.start({ sessionChanged() {}, missedChanges: () => [] });
    try {
      await sleep(200);
      planned.push(async (from) => {
        const changes = await readLog(from);
        await sleep(1_200);
        return changes;
      });
      await sleep(1_800);
      expect(lines).toEqual(['the change poller fell behind the change log: reading again the sessions it follows']);
    } finally {
      await feed.stop();
    }
  });

  it('when stopped, makes none of the reads of followed sessions still queued', async () => {
    const { store: cutOff, reachable } = storeWithoutFind();
    let reads = 0;
    cutOff.findById = async () => {
      reads++;
      await sleep(50);
      return null;
    };
    const followed = Array.from({ length: 200 }, () => new mongoose.Types.ObjectId().toHexString());
    const feed = new PollingFeed(cutOff, 20, logger, { overlapMs: 100, retentionMs: 300 });
    await feed.start({ sessionChanged() {}, missedChanges: () => followed });
    await sleep(600);
    reachable();
    while (reads === 0) await sleep(5);
    const stoppingAt = Date.now();
    await feed.stop();
    expect(Date.now() - stoppingAt).toBeLessThan(500);
    expect(reads).toBeLessThan(20);
  });

  it('rescans the sessions when it fell behind and the changes it missed were trimmed', async () => {
    const trimmer = new PollingFeed(store, 50, logger, { overlapMs: 100, retentionMs: 300 });
    const slow = new PollingFeed(store, 1500, logger, { overlapMs: 100, retentionMs: 300 });
    const seen = await collect(slow);
    try {
      const written = await newStoredSession(store);
      // Started once the record is older than its retention, the trimmer removes it at its first poll;
      // started before, it trims once a second, and could come to it only after the check below.
      await sleep(400);
      await collect(trimmer);
      await sleep(700);
      expect(await scratch.models.SessionChange.countDocuments({ 'session._id': new mongoose.Types.ObjectId(written.id) })).toBe(0);
      await sleep(800);
      expect(seen.map((s) => s.id)).toContain(written.id);
    } finally {
      await Promise.all([trimmer.stop(), slow.stop()]);
    }
  });

  it('delivers a change whose intent became visible long after its stamp and whose record was lost, while other changes move the poller on', async () => {
    // A writer whose intent takes 1.5 s to reach the database after it was stamped, and which dies
    // (its change record never comes) after its commit.
    let slowIntent = true;
    const SessionChange = new Proxy(scratch.models.SessionChange, {
      get(target, prop, receiver) {
        if (prop === 'create') return async () => Promise.reject(new Error('the writer died'));
        if (prop !== 'insertMany' || !slowIntent) return Reflect.get(target, prop, receiver);
        slowIntent = false;
        return async (docs: object[], options: object) => {
          await sleep(1500);
          return target.insertMany(docs as never[], options);
        };
      },
    });
    const dyingWriter = new SessionStore({ ...scratch.models, SessionChange }, new InsertedVersions(scratch.models), { recordChanges: true });
    const feed = new PollingFeed(store, 50, logger);
    const seen = await collect(feed);
    try {
      const target = await newStoredSession(store);
      const stopWriting = await writeMeanwhile();
      await expect(dyingWriter.commit(ended(target, 'LOGGED_OUT', new Date()))).rejects.toThrow('the writer died');
      await sleep(2_500);
      await stopWriting();
      expect(seen.some((s) => s.id === target.id && s.endReason === 'LOGGED_OUT')).toBe(true);
    } finally {
      await feed.stop();
      await scratch.models.SessionChange.deleteMany({});
    }
  });

  it('delivers a change whose log record became visible long after its stamp (a slow insert), while other changes move the poller on', async () => {
    // A writer whose next change record takes 1.5 s to reach the database after it was stamped.
    let delayNext = false;
    const SessionChange = new Proxy(scratch.models.SessionChange, {
      get(target, prop, receiver) {
        if (prop !== 'create' || !delayNext) return Reflect.get(target, prop, receiver);
        delayNext = false;
        return async (doc: object) => {
          await sleep(1500);
          return target.create(doc as never);
        };
      },
    });
    const slowWriter = new SessionStore({ ...scratch.models, SessionChange }, new InsertedVersions(scratch.models), { recordChanges: true });
    const feed = new PollingFeed(store, 50, logger);
    const seen = await collect(feed);
    try {
      const target = await newStoredSession(store);
      const stopWriting = await writeMeanwhile();
      delayNext = true;
      const loggedOut = ended(target, 'LOGGED_OUT', new Date());
      expect(await slowWriter.commit(loggedOut)).toBe(true);
      await sleep(1500);
      await stopWriting();
      expect(seen.some((s) => s.id === target.id && s.endReason === 'LOGGED_OUT')).toBe(true);
    } finally {
      await feed.stop();
      // The records of this test's writes are recent enough to reach the next test's feed.
      await scratch.models.SessionChange.deleteMany({});
    }
  });
});

describe('intents: a change whose record was lost with its writer', () => {
  /** The server's grace (INTENT_TIMING in engine/changeFeed.ts), with its first rechecks. */
  const TIMING: IntentTiming = { graceMs: 1_000, recheckMs: [1_000, 2_000], maxConcurrentReads: 4 };

  /** A store for the feed whose reads of session documents (one per `findById`) are counted; `failReads` of them fail first. */
  function countingStore(failReads = 0) {
    const counts = { reads: 0 };
    const Session = new Proxy(scratch.models.Session, {
      get(target, prop, receiver) {
        if (prop !== 'findById') return Reflect.get(target, prop, receiver);
        return (...args: Parameters<typeof target.findById>) => {
          counts.reads++;
          if (failReads-- > 0) throw new Error('database out');
          return target.findById(...args);
        };
      },
    });
    return { counts, store: new SessionStore({ ...scratch.models, Session }, new InsertedVersions(scratch.models), { recordChanges: true }) };
  }

  /** A writer that dies after its commits and before their change records (its intents are logged); `commitDelayMs`: a slow commit. */
  function dyingWriter({ commitDelayMs = 0, commitFails = false } = {}) {
    const SessionChange = new Proxy(scratch.models.SessionChange, {
      get(target, prop, receiver) {
        if (prop !== 'create') return Reflect.get(target, prop, receiver);
        return async () => {
          throw new Error('the writer died');
        };
      },
    });
    const versions = new InsertedVersions(scratch.models);
    const writer: VersionWriter = {
      name: versions.name,
      latest: (head) => versions.latest(head),
      commit: (id, next) => versions.commit(id, next),
      async commitMany(writes) {
        await sleep(commitDelayMs);
        if (commitFails) throw new Error('the commit failed');
        return versions.commitMany(writes);
      },
      drain: () => versions.drain(),
    };
    return new SessionStore({ ...scratch.models, SessionChange }, writer, { recordChanges: true });
  }

  const loggedOut = (seen: Session[], id: string) => seen.some((s) => s.id === id && s.endReason === 'LOGGED_OUT');

  async function until(condition: () => boolean, ms: number, what: string) {
    const deadline = Date.now() + ms;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
      await sleep(20);
    }
  }

  async function withFeed(timing: IntentTiming, failReads: number, body: (feed: { seen: Session[]; counts: { reads: number } }) => Promise<void>) {
    const { counts, store: feedStore } = countingStore(failReads);
    const feed = new PollingFeed(feedStore, 50, logger, { intentTiming: timing });
    const seen = await collect(feed);
    try {
      await body({ seen, counts });
    } finally {
      await feed.stop();
      await scratch.models.SessionChange.deleteMany({});
    }
  }

  it('logs an intent before the commit, which the change record then settles: no read', async () => {
    await withFeed(TIMING, 0, async ({ seen, counts }) => {
      const written = await newStoredSession(store);
      expect(await store.commit(ended(written, 'LOGGED_OUT', new Date()))).toBe(true);
      const records = await scratch.models.SessionChange.find({}).sort({ at: 1 }).lean();
      expect(records.map((r) => (r.intent ? `intent ${r.intent.version}` : `session ${r.session!.version}`))).toEqual(['session 1', 'intent 2', 'session 2']);
      await until(() => loggedOut(seen, written.id), 1_000, 'the logout delivered');
      // Past the grace, and past the overlap in which the intent is read again at every poll.
      await sleep(TIMING.graceMs + 1_000);
      expect(counts.reads).toBe(0);
    });
  });

  it('reads the session of an intent with no change record (the writer died) once its grace has passed', async () => {
    await withFeed(TIMING, 0, async ({ seen, counts }) => {
      const written = await newStoredSession(store);
      const committedAt = Date.now();
      await expect(dyingWriter().commit(ended(written, 'LOGGED_OUT', new Date()))).rejects.toThrow('the writer died');
      await until(() => loggedOut(seen, written.id), TIMING.graceMs + 500, 'the logout delivered');
      expect(Date.now() - committedAt).toBeGreaterThanOrEqual(TIMING.graceMs - 100);
      expect(counts.reads).toBe(1);
      // Read again at every poll within the overlap, it is not taken up again.
      await sleep(1_500);
      expect(counts.reads).toBe(1);
      expect(seen.filter((s) => s.id === written.id && s.version === 2)).toHaveLength(1);
    });
  });

  it('reads again later when the commit was still in flight at the first read', async () => {
    await withFeed(TIMING, 0, async ({ seen, counts }) => {
      const written = await newStoredSession(store);
      // Committed 1.5 s after its intent: the first read (after 1 s) finds version 1, the next (1 s later) version 2.
      await expect(dyingWriter({ commitDelayMs: 1_500 }).commit(ended(written, 'LOGGED_OUT', new Date()))).rejects.toThrow('the writer died');
      expect(counts.reads).toBe(1);
      expect(loggedOut(seen, written.id)).toBe(false);
      await until(() => loggedOut(seen, written.id), TIMING.recheckMs[0]! + 500, 'the logout delivered');
      expect(counts.reads).toBe(2);
    });
  });

  it('gives up on an intent whose commit never comes, after its rechecks', async () => {
    const timing: IntentTiming = { graceMs: 200, recheckMs: [100, 200], maxConcurrentReads: 2 };
    await withFeed(timing, 0, async ({ seen, counts }) => {
      const written = await newStoredSession(store);
      await expect(dyingWriter({ commitFails: true }).commit(ended(written, 'LOGGED_OUT', new Date()))).rejects.toThrow('the commit failed');
      await until(() => counts.reads === 3, 1_500, 'three reads');
      await sleep(1_500);
      expect(counts.reads).toBe(3);
      expect(seen.filter((s) => s.id === written.id).map((s) => s.version)).not.toContain(2);
    });
  });

  it('reads again at the next poll when a read fails (the database is out)', async () => {
    const timing: IntentTiming = { graceMs: 200, recheckMs: [], maxConcurrentReads: 2 };
    await withFeed(timing, 2, async ({ seen, counts }) => {
      const written = await newStoredSession(store);
      await expect(dyingWriter().commit(ended(written, 'LOGGED_OUT', new Date()))).rejects.toThrow('the writer died');
      await until(() => loggedOut(seen, written.id), 1_000, 'the logout delivered');
      expect(counts.reads).toBe(3);
    });
  });
});
