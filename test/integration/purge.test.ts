import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ended, renewed } from '../../src/sessions/transitions.js';
import { createModels, type Models } from '../../src/store/models.js';
import { SessionStore } from '../../src/store/sessionStore.js';
import { InsertedVersions } from '../../src/store/versionWriters.js';
import { testDatabaseUri } from '../helpers/server.js';
import { newStoredSession } from '../helpers/store.js';

const DAY_MS = 86_400_000;
let conn: mongoose.Connection;
let models: Models;

beforeAll(async () => {
  conn = await mongoose.createConnection(testDatabaseUri()).asPromise();
  models = createModels(conn);
});
afterAll(async () => {
  await conn?.dropDatabase();
  await conn?.close();
});

// Where the database has no TTL index (FerretDB), the server purges with this; on MongoDB the TTL index does it.
describe('purging expired sessions', () => {
  it('removes a session (and its versions) once its latest expiry is past the retention, and keeps one renewed beyond it though its document lags', async () => {
    const store = new SessionStore(models, new InsertedVersions(models));
    const loggedOut = await newStoredSession(store);
    expect(await store.commit(ended(loggedOut, 'LOGGED_OUT', new Date()))).toBe(true);
    const kept = await newStoredSession(store);
    const farAhead = new Date(Date.now() + 3 * DAY_MS);
    expect(await store.commit(renewed(kept, { ...kept.expiry, expiresAt: farAhead }, new Date()))).toBe(true);
    await store.drain();
    // The session document left behind at version 1, as a race between two cache updates can leave it.
    await models.Session.updateOne({ _id: kept.id }, { $set: { version: 1, expiresAt: kept.expiry.expiresAt } });

    // Two days on, with a retention of one: the logout is past it, the renewal is not.
    expect(await store.purgeExpired(new Date(Date.now() + 2 * DAY_MS), DAY_MS / 1000)).toBe(1);
    expect(await store.findById(loggedOut.id)).toBeNull();
    expect(await models.SessionVersion.countDocuments({ sessionId: new mongoose.Types.ObjectId(loggedOut.id) })).toBe(0);
    expect((await store.findById(kept.id))?.expiry.expiresAt).toEqual(farAhead);
  });
});
