import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * A session token is `<session id>.<secret>`, the secret being 32 random bytes (base64url). The id
 * finds the record by its primary key; only the secret's SHA-256 is stored, and it is compared in
 * constant time.
 */
export function newSessionToken(sessionId: string): { token: string; secretHash: string } {
  const secret = randomBytes(32).toString('base64url');
  return { token: `${sessionId}.${secret}`, secretHash: hashSecret(secret) };
}

/**
 * A token as `newSessionToken` spells it, and no other way: the id names a session whatever the case
 * of its hex digits, and a token spelled otherwise would be a second token for one session, which the
 * cache (keyed by the id as issued) never answers.
 */
const TOKEN_SHAPE = /^([0-9a-f]{24})\.([A-Za-z0-9_-]{43})$/;

/** The session id a token names, or null when the token is not shaped like one of ours. */
export function parseSessionToken(token: string): { sessionId: string; secret: string } | null {
  const match = TOKEN_SHAPE.exec(token);
  return match ? { sessionId: match[1]!, secret: match[2]! } : null;
}

export function secretMatches(secret: string, storedHash: string): boolean {
  const given = Buffer.from(hashSecret(secret), 'hex');
  const stored = Buffer.from(storedHash, 'hex');
  return given.length === stored.length && timingSafeEqual(given, stored);
}

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}
