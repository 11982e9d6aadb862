import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { LRUCache } from 'lru-cache';
import type { RateBudget, Settings } from '../config.js';
import { CountsByKey } from '../countsByKey.js';
import type { AttemptStore } from '../store/attemptStore.js';

/** One budget an attempt is charged to: at most `budget.limit` attempts of `key` per `budget.windowSeconds`. */
export interface Charge {
  key: string;
  budget: RateBudget;
}

/** An attempt that was let through: its records, by key, until it is refunded or its window passes. */
export interface Attempt {
  readonly ids: ReadonlyMap<string, string>;
  /** When it was charged. */
  readonly at: Date;
}

export type Admission = { admitted: true; attempt: Attempt } | { admitted: false; retryAfter: number };

/**
 * Budgets of attempts that hold under concurrency and across processes: an attempt is charged
 * *before* the work it guards (a password hash), by writing one record per key, and goes ahead
 * only if, counted after its own record was written, the key has no more records in its window
 * than its budget allows. Of k attempts racing for one key, the last one to be written counts all
 * k, so no more than the budget ever go ahead; in a tight race a few more may be refused than
 * strictly needed (each counts the others' records before they are taken back).
 * A refused attempt takes its records back at once: refusals cost nothing and do not extend a
 * lock-out. A failed attempt keeps its records for its window; a successful one is refunded.
 * A key the database has found spent twice within a second is then refused from memory for the
 * rest of that second (unless this process refunds it), so that a flood of refused attempts costs
 * the database a few counts a second: each would otherwise cost it a dozen operations. Not on the
 * first refusal, nor for longer: in a tight race a refusal may see a key spent by attempts that
 * are refused with it, and a success on another process may clear the key meanwhile.
 */
export class AttemptLimiter {
  /** Keys the database found spent: when they have room again, when it last said so and how many times in a row (ms). */
  private readonly spent = new LRUCache<string, { roomAt: number; refusedAt: number; refusals: number }>({ max: SPENT_KEYS_KEPT });

  constructor(
    private readonly store: AttemptStore,
    private readonly clock: () => Date,
  ) {}

  async admit(charges: Charge[]): Promise<Admission> {
    for (let charged = 1; ; charged++) {
      const now = this.clock();
      const ms = now.getTime();
      const spent = this.secondsUntilKnownRoom(charges, ms);
      if (spent > 0) return { admitted: false, retryAfter: spent };
      const ids = await this.store.insert(
        charges.map((c) => ({ key: c.key, at: now, expiresAt: new Date(ms + c.budget.windowSeconds * 1000) })),
        now,
      );
      const counts = await this.store.count(charges.map((c) => ({ key: c.key, since: windowStart(c, ms) })));
      const over = charges.filter((c) => counts.get(c.key)! > c.budget.limit);
      if (over.length > 0) {
        await this.store.remove(ids);
        const waits = await Promise.all(over.map((c) => this.secondsUntilRoom(c)));
        over.forEach((c, i) => waits[i] !== null && this.foundSpent(c.key, ms + waits[i]! * 1000, ms));
        return { admitted: false, retryAfter: Math.max(1, ...waits.map((w) => w ?? 1)) };
      }
      // A success clears its key of the attempts charged up to its own (refund's clearKeys), some of
      // which may not have been counted yet. Such an attempt would go ahead holding no record,
      // uncounted by the attempts after it: a whole burst could go through so. It is charged again
      // instead, after that success, which then no longer clears it.
      if (await this.store.present(ids)) return { admitted: true, attempt: { ids: new Map(charges.map((c, i) => [c.key, ids[i]!])), at: now } };
      await this.store.remove(ids);
      if (charged === MAX_CHARGES) return { admitted: false, retryAfter: 1 };
    }
  }

  /**
   * Takes the attempt back from the budgets of `keys` (default: all of them); `clearKeys` lose every
   * record charged up to this attempt, others' too (not those charged after it: they are not vouched for).
   */
  async refund(attempt: Attempt, options: { keys?: string[]; clearKeys?: string[] } = {}): Promise<void> {
    const clear = new Set(options.clearKeys ?? []);
    const keys = (options.keys ?? [...attempt.ids.keys()]).filter((k) => !clear.has(k));
    for (const k of [...keys, ...clear]) this.spent.delete(k);
    const ids = keys.map((k) => attempt.ids.get(k)).filter((id): id is string => id !== undefined);
    await Promise.all([this.store.remove(ids), ...[...clear].map((k) => this.store.removeKey(k, attempt.at))]);
  }

  private foundSpent(key: string, roomAt: number, ms: number): void {
    const last = this.spent.get(key);
    const refusals = last && ms - last.refusedAt < SPENT_BELIEVED_MS ? last.refusals + 1 : 1;
    this.spent.set(key, { roomAt, refusedAt: ms, refusals });
  }

  /** The longest wait among the charged keys believed spent without asking (0: none is). */
  private secondsUntilKnownRoom(charges: Charge[], ms: number): number {
    let wait = 0;
    for (const c of charges) {
      const known = this.spent.get(c.key);
      if (!known || known.refusals < 2 || ms - known.refusedAt >= SPENT_BELIEVED_MS || known.roomAt <= ms) continue;
      wait = Math.max(wait, Math.ceil((known.roomAt - ms) / 1000));
    }
    return wait;
  }

  /**
   * Seconds until one more attempt of the charge's key would fit in its budget, on the records there
   * are now (records of attempts refused at the same moment are on their way out, hence a recount);
   * null when it has room already (the refusal lost a tight race).
   */
  private async secondsUntilRoom(charge: Charge): Promise<number | null> {
    const ms = this.clock().getTime();
    const since = windowStart(charge, ms);
    const n = (await this.store.count([{ key: charge.key, since }])).get(charge.key)!;
    if (n < charge.budget.limit) return null;
    // Room for one more once n - limit + 1 of the records have left the window.
    const [at] = await this.store.oldest(charge.key, since, n - charge.budget.limit, 1);
    if (!at) return null;
    return Math.max(1, Math.ceil((at.getTime() + charge.budget.windowSeconds * 1000 - ms) / 1000));
  }
}

/** How long after the database last found a key spent it is refused without asking again. */
const SPENT_BELIEVED_MS = 1_000;
/** Spent keys remembered at most (least recently asked dropped first: asked again, it is counted in the database again). */
const SPENT_KEYS_KEPT = 100_000;

/** How many times an attempt is charged when successes keep clearing its key under it, before it is refused. */
const MAX_CHARGES = 3;

const windowStart = (c: Charge, nowMs: number) => new Date(nowMs - c.budget.windowSeconds * 1000);

/**
 * The client's address as rate limits see it: an IPv4-mapped IPv6 address, however spelt, is its
 * IPv4 address, and an IPv6 address stands for its /64 (one host usually has a whole /64 to pick
 * addresses from). A port, as some proxies add to X-Forwarded-For, is not part of it.
 */
export function addressBucket(address: string): string {
  const bare = withoutPort(address).split('%')[0]!;
  if (!isIPv6(bare)) return bare;
  const groups = expandIPv6(bare);
  if (groups.slice(0, 5).every((g) => g === '0') && groups[5] === 'ffff') {
    const [high, low] = [parseInt(groups[6]!, 16), parseInt(groups[7]!, 16)];
    return [high >> 8, high & 255, low >> 8, low & 255].join('.');
  }
  return `${groups.slice(0, 4).join(':')}::/64`;
}

/** `1.2.3.4:80` and `[2001:db8::1]:80` without their port; anything else as it is. */
function withoutPort(address: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed) return bracketed[1]!;
  const v4 = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(address);
  return v4 && isIPv4(v4[1]!) ? v4[1]! : address;
}

/** The eight 16-bit groups of an IPv6 address, as lower-case hex without leading zeros. */
function expandIPv6(address: string): string[] {
  let text = address.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const middle = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...middle, ...right].map((g) => parseInt(g, 16).toString(16));
}

/** A key that names whose attempts it counts without storing them: usernames may be passwords typed in the wrong field. */
function key(kind: string, ...parts: string[]): string {
  return `${kind}:${createHash('sha256').update(parts.join('\0')).digest('base64url').slice(0, 32)}`;
}

export type LoginLimitSettings = Pick<Settings, 'loginRateLimit' | 'registrationRateLimit' | 'loginAddressConcurrency'>;

/**
 * The product's limits, after OWASP's authentication cheat sheet: each login attempt is charged to
 * the (username, client address) pair (a small budget: the real user's own typos, or one attacker
 * on one account), to the username from everywhere (a larger budget: bounds a distributed guess at
 * one account without letting a few addresses lock its owner out) and to the client address
 * across usernames (credential stuffing). Unknown usernames are charged like known ones. A
 * successful login clears its pair of the failures charged up to it (the user proved who they are
 * from that address) and takes itself back from the other two, without clearing failures others
 * caused. Registrations (one expensive hash each, whatever the outcome) are charged to the client
 * address and never refunded.
 * Before any of that, a process handles only a few logins and registrations of one address at
 * once: a budget is counted in the database, a dozen operations per attempt, and successful logins
 * are not charged, so one client sending hundreds at once with a right password would keep the
 * database busy for everyone (other clients' logins waited 20 s).
 */
export class AuthLimits {
  private readonly limiter: AttemptLimiter;
  private readonly inFlight = new CountsByKey();

  constructor(
    store: AttemptStore,
    private readonly settings: LoginLimitSettings,
    clock: () => Date,
  ) {
    this.limiter = new AttemptLimiter(store, clock);
  }

  loginCharges(username: string, address: string): { pair: Charge; user: Charge; address: Charge } {
    const bucket = addressBucket(address);
    const limits = this.settings.loginRateLimit;
    return {
      pair: { key: key('login-pair', username, bucket), budget: limits.perUserAndAddress },
      user: { key: key('login-user', username), budget: limits.perUser },
      address: { key: key('login-addr', bucket), budget: limits.perAddress },
    };
  }

  /**
   * Counts a login or registration of the address among those this process has in hand, until
   * `leave`; false, counting nothing, when the address has as many in hand as allowed.
   */
  enter(address: string): boolean {
    const bucket = addressBucket(address);
    if (this.inFlight.of(bucket) >= this.settings.loginAddressConcurrency) return false;
    this.inFlight.add(bucket);
    return true;
  }

  leave(address: string): void {
    this.inFlight.remove(addressBucket(address));
  }

  /** Charges a login before its password is checked. */
  admitLogin(username: string, address: string): Promise<Admission> {
    const { pair, user, address: addr } = this.loginCharges(username, address);
    return this.limiter.admit([pair, user, addr]);
  }

  /** The password was right: the pair starts afresh (of the attempts charged up to this one), and this attempt is taken back from the username's and the address's budgets. */
  loginSucceeded(attempt: Attempt, username: string, address: string): Promise<void> {
    const { pair } = this.loginCharges(username, address);
    return this.limiter.refund(attempt, { clearKeys: [pair.key] });
  }

  /** Charges a registration before its password is hashed. */
  admitRegistration(address: string): Promise<Admission> {
    return this.limiter.admit([{ key: key('register-addr', addressBucket(address)), budget: this.settings.registrationRateLimit }]);
  }
}
