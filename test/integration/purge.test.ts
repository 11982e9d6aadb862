import mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { ended, renewed } from '../../src/sessions/transitions.js';
import { SessionStore } from '../../src/store/sessionStore.js';
import { InsertedVersions } from '../../src/store/versionWriters.js';
import { newStoredSession, scratchDatabase } from '../helpers/store.js';

const DAY_MS = 86_400_000;
const scratch = scratchDatabase();

// Where the database has no TTL index (FerretDB), the server purges with this; on MongoDB the TTL index does it.
describe('purging expired sessions', () => {
  it('removes a session (and its versions) once its latest expiry is past the retention, and keeps one renewed beyond it though its document lags', async () => {
    const store = new SessionStore(scratch.models, new InsertedVersions(scratch.models));
    const loggedOut = await newStoredSession(store);
    expect(await store.commit(ended(loggedOut, 'LOGGED_OUT', new Date()))).toBe(true);
    const kept = await newStoredSession(store);
    const farAhead = new Date(Date.now() + 3 * DAY_MS);
    expect(await store.commit(renewed(kept, { ...kept.expiry, expiresAt: farAhead }, new Date()))).toBe(true);
    await store.drain();
    // The session document left behind at version 1, as a race between two cache updates can leave it.
    await scratch.models.Session.updateOne({ _id: kept.id }, { $set: { version: 1, expiresAt: kept.expiry.expiresAt } });

    // Two days on, with a retention of one: the logout is past it, the renewal is not.
    expect(await store.purgeExpired(new Date(Date.now() + 2 * DAY_MS), DAY_MS / 1000)).toBe(1);
    expect(await store.findById(loggedOut.id)).toBeNull();
    expect(await scratch.models.SessionVersion.countDocuments({ sessionId: new mongoose.Types.ObjectId(loggedOut.id) })).toBe(0);
    expect((await store.findById(kept.id))?.expiry.expiresAt).toEqual(farAhead);
  });
});
