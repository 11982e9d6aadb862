import { describe, expect, inject, it } from 'vitest';
import { resolveDatabase } from '../../scripts/database.js';
import { EventRecorder } from '../helpers/events.js';
import { newUserSession, startTestServer } from '../helpers/server.js';

// Needs a database of its own to kill: an embedded one (not an external MONGODB_URI).
describe.skipIf(inject('dbKind') === 'external')('while the database is unreachable', () => {
  it('a session still ends at its last known expiry (security first)', async () => {
    const db = await resolveDatabase({ persistent: false, kind: inject('dbKind') as 'ferretdb' | 'mongod' });
    const server = await startTestServer({}, db.uri);
    try {
      const { token, session } = await newUserSession(server, { seconds: 2 });
      const events = new EventRecorder(server, token);
      await events.ready(server, session.id);
      await db.stop();
      const expired = await events.untilEvent('EXPIRED', 5000);
      const expiresAt = new Date(session.expiryDate).getTime();
      expect(expired.reason).toBe('TIMEOUT');
      expect(expired.receivedAt).toBeGreaterThanOrEqual(expiresAt);
      // The re-check waits at most a second for the database before deciding on what it knows.
      expect(expired.receivedAt - expiresAt).toBeLessThan(2000);
      await events.dispose();
    } finally {
      await Promise.race([server.stop(), new Promise((r) => setTimeout(r, 5000))]);
      await db.stop();
    }
  });
});
