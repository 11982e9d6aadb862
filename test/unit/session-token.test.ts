import fc from 'fast-check';
import mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { newSessionToken, parseSessionToken, secretMatches } from '../../src/auth/tokens.js';

const id = () => new mongoose.Types.ObjectId().toHexString();

describe('session tokens', () => {
  it('parses a token as issued, and its secret matches the stored hash', () => {
    const sessionId = id();
    const { token, secretHash } = newSessionToken(sessionId);
    const parsed = parseSessionToken(token)!;
    expect(parsed.sessionId).toBe(sessionId);
    expect(secretMatches(parsed.secret, secretHash)).toBe(true);
  });

  it('refuses every spelling but the one issued: the id in lower-case hex, the secret 43 base64url characters', () => {
    const { token } = newSessionToken(id());
    const [sessionId, secret] = token.split('.') as [string, string];
    for (const other of [`${sessionId.toUpperCase()}.${secret}`, ` ${token}`, `${token} `, `${token}=`, `${sessionId}.${secret.slice(1)}`, `${sessionId}.${secret}.`, `${sessionId.slice(1)}.${secret}`, `${sessionId}.${secret.slice(0, -1)}+`]) {
      expect(parseSessionToken(other), other).toBeNull();
    }
  });

  it('parses any string exactly when it has the issued shape', () => {
    const shape = /^[0-9a-f]{24}\.[A-Za-z0-9_-]{43}$/;
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.constant(newSessionToken(id()).token).map((t) => t.replace(/[a-f]/, 'A'))), (text) => {
        expect(parseSessionToken(text) !== null).toBe(shape.test(text));
      }),
    );
  });
});
