import { pino } from 'pino';
import { describe, expect, inject, it } from 'vitest';
import { loadSettings } from '../../src/config.js';
import type { Session } from '../../src/session.js';
import { SessionService } from '../../src/sessions/service.js';
import { ended, renewed } from '../../src/sessions/transitions.js';
import { createModels, type Models } from '../../src/store/models.js';
import { SessionStore } from '../../src/store/sessionStore.js';
import { UserStore } from '../../src/store/userStore.js';
import { AtomicUpdates, chooseVersionWriter, InsertedVersions, UnsafeDatabaseError, versionState, type VersionWriter } from '../../src/store/versionWriters.js';
import { newStoredSession, scratchDatabase } from '../helpers/store.js';

const quiet = pino({ enabled: false });

const scratch = scratchDatabase();
const ferretdb = inject('dbKind').startsWith('ferretdb');

/** `writers` versions that all follow `from`: one ends it, the others renew it to distinct expiries. */
function rivals(from: Session, writers: number): Session[] {
  const now = new Date();
  return Array.from({ length: writers }, (_, i) =>
    i === 0 ? ended(from, 'LOGGED_OUT', now) : renewed(from, { ...from.expiry, expiresAt: new Date(now.getTime() + 60_000 + i) }, now),
  );
}

const writers: Array<[string, (m: Models) => VersionWriter, boolean]> = [
  ['inserted versions', (m) => new InsertedVersions(m), true],
  // Not on FerretDB 1.x, which does not apply concurrent updates of one document atomically: the reason for the other path.
  ['version-checked updates (needs atomic single-document updates)', (m) => new AtomicUpdates(m), !ferretdb],
];

describe.each(writers)('commits with %s', (_name, makeWriter, safeHere) => {
  it.skipIf(!safeHere)('exactly one of 30 concurrent writers of a version wins, and every read returns the winner, over 10 rounds', async () => {
    const store = new SessionStore(scratch.models, makeWriter(scratch.models));
    let current = await newStoredSession(store);
    for (let round = 0; round < 10 && !current.endedAt; round++) {
      const candidates = rivals(current, 30);
      const won = await Promise.all(candidates.map((c) => store.commit(c)));
      expect(won.filter(Boolean), `round ${round}`).toHaveLength(1);
      const winner = candidates[won.indexOf(true)]!;
      await store.drain();
      const read = await store.findById(current.id);
      expect(read, `round ${round}`).toEqual(winner);
      current = winner;
    }
  });
});

describe.each(writers)('a burst of commits with %s', (_name, makeWriter, safeHere) => {
  it.skipIf(!safeHere)('says for each session of the burst whether this writer wrote it', async () => {
    const store = new SessionStore(scratch.models, makeWriter(scratch.models));
    const sessions = await Promise.all([1, 2, 3].map(() => newStoredSession(store)));
    const taken = rivals(sessions[1]!, 2)[1]!;
    expect(await store.commit(taken)).toBe(true);
    const burst = sessions.map((s) => ended(s, 'TIMEOUT', new Date()));
    expect(await store.commitMany(burst)).toEqual([true, false, true]);
    await store.drain();
    expect((await store.findById(sessions[1]!.id))?.version).toBe(2);
    expect((await store.findById(sessions[1]!.id))?.endedAt).toBeNull();
    expect((await store.findById(sessions[2]!.id))?.endReason).toBe('TIMEOUT');
  });
});

describe('inserted versions', () => {
  it('a read follows the versions beyond a session document that lags behind, and brings it up to date', async () => {
    const store = new SessionStore(scratch.models, new InsertedVersions(scratch.models));
    const first = await newStoredSession(store);
    const second = rivals(first, 2)[1]!;
    const third = ended(second, 'REVOKED', new Date());
    expect(await store.commit(second)).toBe(true);
    expect(await store.commit(third)).toBe(true);
    await store.drain();
    // As a race between two cache updates could leave it: the session document set back to version 1.
    await scratch.models.Session.updateOne({ _id: first.id }, { $set: { version: 1, endedAt: null, endReason: null } });
    expect(await store.findById(first.id)).toEqual(third);
    await store.drain();
    expect((await scratch.models.Session.findById(first.id).lean())?.version).toBe(3);
  });

  it('a timeout is committed without updating the session document; reads, listings and later writers still see the end', async () => {
    const store = new SessionStore(scratch.models, new InsertedVersions(scratch.models));
    const first = await newStoredSession(store);
    const timeout = ended(first, 'TIMEOUT', new Date());
    expect(await store.commitMany([timeout])).toEqual([true]);
    await store.drain();
    expect((await scratch.models.Session.findById(first.id).lean())?.version).toBe(1);
    expect(await store.listOpen(first.userId)).toEqual([]);
    expect(await store.commit(rivals(first, 2)[1]!)).toBe(false);
    expect(await store.findById(first.id)).toEqual(timeout);
    await store.drain();
    expect((await scratch.models.Session.findById(first.id).lean())?.endReason).toBe('TIMEOUT');
  });

  it('a version reads back as written, every date and null included, and one stored as a subdocument (before versions were text) is followed too', async () => {
    const store = new SessionStore(scratch.models, new InsertedVersions(scratch.models));
    const first = await newStoredSession(store);
    const now = new Date();
    const fixedDate = new Date(now.getTime() + 3_600_000);
    const second = renewed(first, { ...first.expiry, spec: { policy: 'DATE', seconds: null, date: fixedDate }, expiresAt: fixedDate }, now);
    expect(await store.commit(second)).toBe(true);
    await store.drain();
    await scratch.models.Session.updateOne({ _id: first.id }, { $set: { version: 1 } });
    expect(await store.findById(first.id)).toEqual(second);

    const third = ended(second, 'REVOKED', new Date());
    expect(await store.commit(third)).toBe(true);
    await store.drain();
    await scratch.models.Session.updateOne({ _id: first.id }, { $set: { version: 1 } });
    const versions = scratch.conn.collection<{ _id: string; state: unknown }>('session_versions');
    const stored = await versions.findOne({ _id: `${first.id}:3` });
    expect(typeof stored?.state).toBe('string');
    await versions.updateOne({ _id: `${first.id}:3` }, { $set: { state: versionState(stored!.state as string) } });
    expect(await store.findById(first.id)).toEqual(third);
  });

  it('a writer of a version that exists loses, even if the session document does not show it yet', async () => {
    const store = new SessionStore(scratch.models, new InsertedVersions(scratch.models));
    const first = await newStoredSession(store);
    const [end, renewal] = rivals(first, 2);
    expect(await store.commit(end!)).toBe(true);
    await store.drain();
    await scratch.models.Session.updateOne({ _id: first.id }, { $set: { version: 1, endedAt: null, endReason: null } });
    expect(await store.commit(renewal!)).toBe(false);
    expect((await store.findById(first.id))?.endReason).toBe('LOGGED_OUT');
  });
});

describe('choosing the write path', () => {
  const log = () => {};

  it('the first process records what its probe found, and later processes follow the record', async () => {
    const db = createModels(scratch.conn.useDb(`wp_${Date.now()}`));
    expect((await chooseVersionWriter(db, { atomicUpdates: false, uniqueInserts: true }, log)).name).toBe('inserted-versions');
    expect((await chooseVersionWriter(db, { atomicUpdates: true, uniqueInserts: true }, log)).name).toBe('inserted-versions');
    await db.Session.db.dropDatabase();
  });

  it('a process whose database does not apply updates atomically refuses to join one written with atomic updates', async () => {
    const db = createModels(scratch.conn.useDb(`wp_${Date.now()}`));
    expect((await chooseVersionWriter(db, { atomicUpdates: true, uniqueInserts: true }, log)).name).toBe('atomic-updates');
    await expect(chooseVersionWriter(db, { atomicUpdates: false, uniqueInserts: true }, log)).rejects.toThrow(UnsafeDatabaseError);
    await db.Session.db.dropDatabase();
  });

  it('refuses to start where concurrent inserts of one _id can both succeed', async () => {
    await expect(chooseVersionWriter(scratch.models, { atomicUpdates: true, uniqueInserts: false }, log)).rejects.toThrow(/refusing to start/);
  });
});

describe('a renewal that waited for its turn', () => {
  it('is refused with EXPIRY_IN_PAST, changing nothing, when the date it asked for passed while it waited', async () => {
    const store = new SessionStore(scratch.models, new InsertedVersions(scratch.models));
    let now = Date.now();
    const service = new SessionService(new UserStore(scratch.models), store, loadSettings({}), quiet, () => new Date(now));
    const session = await newStoredSession(store);
    // Another writer takes the next version first, and two seconds pass before this one reads it again.
    const commit = store.commit.bind(store);
    let raced = false;
    store.commit = async (next) => {
      if (!raced) {
        raced = true;
        expect(await commit(renewed(session, session.expiry, new Date(now)))).toBe(true);
        now += 2000;
      }
      return commit(next);
    };
    const error = await service.setExpiry(session, { date: new Date(now + 1000) }).catch((err: unknown) => err);
    expect(error).toMatchObject({ extensions: { code: 'EXPIRY_IN_PAST' } });
    await store.drain();
    expect((await store.findById(session.id))?.version).toBe(2);
  });
});

describe('logoutAll', () => {
  it('ends the other sessions a few at a time; when one fails, tries every other and keeps the current one, so that a retry finishes', async () => {
    const store = new SessionStore(scratch.models, new InsertedVersions(scratch.models));
    const service = new SessionService(new UserStore(scratch.models), store, loadSettings({}), quiet);
    const current = await newStoredSession(store);
    const others = await Promise.all(Array.from({ length: 20 }, () => newStoredSession(store, current.userId)));
    const commit = store.commit.bind(store);
    let inFlight = 0;
    let mostInFlight = 0;
    let failNext = others[5]!.id;
    store.commit = async (next) => {
      if (next.id === failNext) {
        failNext = '';
        throw new Error('database out');
      }
      mostInFlight = Math.max(mostInFlight, ++inFlight);
      try {
        return await commit(next);
      } finally {
        inFlight--;
      }
    };
    const endReasons = async () => Promise.all([current, ...others].map(async (s) => (await store.findById(s.id))?.endReason ?? null));

    await expect(service.logoutAll(current, false)).rejects.toThrow('database out');
    expect(await endReasons()).toEqual([null, ...others.map((s, i) => (i === 5 ? null : 'REVOKED'))]);
    expect(await service.logoutAll(current, false)).toBe(2);
    expect(await endReasons()).toEqual(['LOGGED_OUT', ...others.map(() => 'REVOKED')]);
    expect(mostInFlight).toBeGreaterThan(1);
    expect(mostInFlight).toBeLessThanOrEqual(8);
  });
});
