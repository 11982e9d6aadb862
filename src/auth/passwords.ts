import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const KEY_LENGTH = 32;

function derive(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFKC'), salt, KEY_LENGTH, options, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** scrypt (memory-hard), stored as `scrypt$<log2 N>$<r>$<p>$<salt>$<key>` so the cost can change later. */
export class PasswordHasher {
  private dummyHash: Promise<string> | undefined;

  constructor(private readonly logN: number) {}

  async hash(password: string): Promise<string> {
    const salt = randomBytes(16);
    const options = { N: 2 ** this.logN, r: 8, p: 1, maxmem: 256 * 2 ** this.logN * 8 };
    const key = await derive(password, salt, options);
    return ['scrypt', this.logN, 8, 1, salt.toString('base64url'), key.toString('base64url')].join('$');
  }

  async verify(password: string, stored: string): Promise<boolean> {
    const [scheme, logN, r, p, salt, key] = stored.split('$');
    if (scheme !== 'scrypt' || !salt || !key) return false;
    const N = 2 ** Number(logN);
    const options = { N, r: Number(r), p: Number(p), maxmem: 256 * N * Number(r) };
    const expected = Buffer.from(key, 'base64url');
    const actual = await derive(password, Buffer.from(salt, 'base64url'), options);
    return actual.length === expected.length && timingSafeEqual(actual, expected);
  }

  /** Spends the same time as a real check, so an unknown username is not told apart by timing. */
  async verifyAgainstNobody(password: string): Promise<false> {
    this.dummyHash ??= this.hash('not a password of anybody');
    await this.verify(password, await this.dummyHash);
    return false;
  }
}
