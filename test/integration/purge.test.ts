import mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { ended, renewed } from '../../src/sessions/transitions.js';
import { MIN_PURGE_AGE_S, SessionStore } from '../../src/store/sessionStore.js';
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

  it(`keeps an ended session ${MIN_PURGE_AGE_S} s at least, whatever the retention: a writer still holding the version before its end must lose to it`, async () => {
    const store = new SessionStore(scratch.models, new InsertedVersions(scratch.models));
    const live = await newStoredSession(store);
    const loggedOut = ended(live, 'LOGGED_OUT', new Date());
    expect(await store.commit(loggedOut)).toBe(true);
    await store.drain();
    expect(await store.purgeExpired(new Date(Date.now() + (MIN_PURGE_AGE_S - 5) * 1000), 0)).toBe(0);
    // A renewal decided from the version before the logout, committed late.
    expect(await store.commit(renewed(live, { ...live.expiry, expiresAt: new Date(Date.now() + DAY_MS) }, new Date()))).toBe(false);
    expect((await store.findById(live.id))?.endReason).toBe('LOGGED_OUT');
    expect(await store.purgeExpired(new Date(Date.now() + (MIN_PURGE_AGE_S + 5) * 1000), 0)).toBe(1);
  });
});
