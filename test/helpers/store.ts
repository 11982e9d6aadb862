import mongoose from 'mongoose';
import { afterAll, beforeAll } from 'vitest';
import type { Session } from '../../src/session.js';
import { createModels, type Models } from '../../src/store/models.js';
import type { SessionStore } from '../../src/store/sessionStore.js';
import { testDatabaseUri } from './server.js';

/** A database of the test file's own with the server's models: connected before its tests, dropped after them. */
export function scratchDatabase(): { conn: mongoose.Connection; models: Models } {
  const scratch = {} as { conn: mongoose.Connection; models: Models };
  beforeAll(async () => {
    scratch.conn = await mongoose.createConnection(testDatabaseUri()).asPromise();
    scratch.models = createModels(scratch.conn);
  });
  afterAll(async () => {
    await scratch.conn?.dropDatabase();
    await scratch.conn?.close();
  });
  return scratch;
}

/** A fresh 60 s session (of a new user unless given) written straight into the store, for tests below the service. */
export function newStoredSession(store: SessionStore, userId = new mongoose.Types.ObjectId().toHexString()): Promise<Session> {
  const now = new Date();
  return store.create({
    id: new mongoose.Types.ObjectId().toHexString(),
    userId,
    secretHash: 'x'.repeat(64),
    expiry: { spec: { policy: 'SECONDS', seconds: 60, date: null }, createdAt: now, lastSavedAt: now, expiresAt: new Date(now.getTime() + 60_000), limitedBy: 'POLICY' },
    userAgent: null,
    clientAddress: null,
  });
}
