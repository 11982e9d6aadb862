import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PollingFeed } from '../../src/engine/changeFeed.js';
import { createLogger } from '../../src/logger.js';
import { createModels, type Models } from '../../src/store/models.js';
import type { Session } from '../../src/session.js';
import { SessionStore } from '../../src/store/sessionStore.js';
import { InsertedVersions } from '../../src/store/versionWriters.js';
import { ended } from '../../src/sessions/transitions.js';
import { sleep, testDatabaseUri } from '../helpers/server.js';
import { newStoredSession } from '../helpers/store.js';

let conn: mongoose.Connection;
let models: Models;
let store: SessionStore;
const logger = createLogger('silent');

beforeAll(async () => {
  conn = await mongoose.createConnection(testDatabaseUri()).asPromise();
  models = createModels(conn);
  store = new SessionStore(models, new InsertedVersions(models), { recordChanges: true });
});
afterAll(async () => {
  await conn?.dropDatabase();
  await conn?.close();
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
      expect(await models.SessionChange.countDocuments()).toBe(0);
    } finally {
      await feed.stop();
    }
  });

  it('rescans the sessions when it fell behind and the changes it missed were trimmed', async () => {
    const trimmer = new PollingFeed(store, 50, logger, 100, 300);
    const slow = new PollingFeed(store, 1500, logger, 100, 300);
    await collect(trimmer);
    const seen = await collect(slow);
    try {
      const written = await newStoredSession(store);
      await sleep(1100);
      expect(await models.SessionChange.countDocuments({ 'session._id': new mongoose.Types.ObjectId(written.id) })).toBe(0);
      await sleep(800);
      expect(seen.map((s) => s.id)).toContain(written.id);
    } finally {
      await Promise.all([trimmer.stop(), slow.stop()]);
    }
  });

  it('catchUp reads the changes made up to the moment it was called', async () => {
    const feed = new PollingFeed(store, 60_000, logger);
    const seen = await collect(feed);
    try {
      const written = await newStoredSession(store);
      expect(seen).toEqual([]);
      await feed.catchUp();
      expect(seen.map((s) => s.id)).toEqual([written.id]);
    } finally {
      await feed.stop();
    }
  });
});
