import mongoose from 'mongoose';
import type { Session } from '../../src/session.js';
import type { SessionStore } from '../../src/store/sessionStore.js';

/** A fresh 60 s session written straight into the store, for tests below the service. */
export function newStoredSession(store: SessionStore): Promise<Session> {
  const now = new Date();
  return store.create({
    id: new mongoose.Types.ObjectId().toHexString(),
    userId: new mongoose.Types.ObjectId().toHexString(),
    secretHash: 'x'.repeat(64),
    expiry: { spec: { policy: 'SECONDS', seconds: 60, date: null }, createdAt: now, lastSavedAt: now, expiresAt: new Date(now.getTime() + 60_000), limitedBy: 'POLICY' },
    userAgent: null,
    clientAddress: null,
  });
}
