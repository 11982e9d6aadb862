import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import mongoose from 'mongoose';

/**
 * A session token is `<session id>.<secret>`, the secret being 32 random bytes (base64url). The id
 * finds the record by its primary key; only the secret's SHA-256 is stored, and it is compared in
 * constant time.
 */
export function newSessionToken(sessionId: string): { token: string; secretHash: string } {
  const secret = randomBytes(32).toString('base64url');
  return { token: `${sessionId}.${secret}`, secretHash: hashSecret(secret) };
}

/** The session id a token names, or null when the token is not shaped like one of ours. */
export function parseSessionToken(token: string): { sessionId: string; secret: string } | null {
  const dot = token.indexOf('.');
  const sessionId = token.slice(0, dot);
  const secret = token.slice(dot + 1);
  if (dot < 0 || !mongoose.isObjectIdOrHexString(sessionId) || secret.length === 0) return null;
  return { sessionId, secret };
}

export function secretMatches(secret: string, storedHash: string): boolean {
  const given = Buffer.from(hashSecret(secret), 'hex');
  const stored = Buffer.from(storedHash, 'hex');
  return given.length === stored.length && timingSafeEqual(given, stored);
}

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}
