import { describe, expect, it } from 'vitest';
import { closeReason } from '../../src/server/ws/adapter.js';

describe('a websocket close reason', () => {
  it('is kept when it fits in 123 bytes and cut to fit, on a character boundary, when it does not', () => {
    expect(closeReason('Session ended')).toBe('Session ended');
    const long = `Subscriber for ${'x'.repeat(1000)} already exists`;
    expect(Buffer.byteLength(closeReason(long))).toBe(123);
    expect(long.startsWith(closeReason(long))).toBe(true);
    const accented = 'é'.repeat(100); // 2 bytes each
    expect(closeReason(accented)).toBe('é'.repeat(61));
  });
});
