import mongoose from 'mongoose';
import { beforeAll, describe, expect, it } from 'vitest';
import { PollingFeed } from '../../src/engine/changeFeed.js';
import { createLogger } from '../../src/logger.js';
import type { Session } from '../../src/session.js';
import { SessionStore } from '../../src/store/sessionStore.js';
import { InsertedVersions } from '../../src/store/versionWriters.js';
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

describe('the polling change feed', () => {
  it('delivers every write through the change log, which it trims', async () => {
    const feed = new PollingFeed(store, 50, logger, 100, 500);
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

  it('rescans the sessions when it fell behind and the changes it missed were trimmed', async () => {
    const trimmer = new PollingFeed(store, 50, logger, 100, 300);
    const slow = new PollingFeed(store, 1500, logger, 100, 300);
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
      const busy = await newStoredSession(store);
      const target = await newStoredSession(store);
      let running = true;
      const otherWrites = (async () => {
        for (let current = busy; running; await sleep(100)) {
          const next = { ...current, version: current.version + 1, updatedAt: new Date() };
          if (await store.commit(next)) current = next;
        }
      })();
      delayNext = true;
      const loggedOut = ended(target, 'LOGGED_OUT', new Date());
      expect(await slowWriter.commit(loggedOut)).toBe(true);
      await sleep(1500);
      running = false;
      await otherWrites;
      expect(seen.some((s) => s.id === target.id && s.endReason === 'LOGGED_OUT')).toBe(true);
    } finally {
      await feed.stop();
      // The records of this test's writes are recent enough to reach the next test's feed.
      await scratch.models.SessionChange.deleteMany({});
    }
  });
});
