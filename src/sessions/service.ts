import type { Settings } from '../config.js';
import type { Logger } from '../logger.js';
import { apiError } from '../errors.js';
import { AuthLimits } from '../auth/attemptLimiter.js';
import { PasswordHasher } from '../auth/passwords.js';
import { setTimeout as sleep } from 'node:timers/promises';
import mongoose from 'mongoose';
import pLimit from 'p-limit';
import { newSessionToken } from '../auth/tokens.js';
import {
  computeExpiry,
  expiresAtBrowserClose,
  ExpiryInputError,
  isValid,
  parseExpiry,
  slideOnRequest,
  type ExpirySpec,
} from '../expiry/rules.js';
import type { EndReason, Session, SessionListener } from '../session.js';
import { FreshReads } from '../freshReads.js';
import { MemoryAttemptStore, type AttemptStore } from '../store/attemptStore.js';
import { TooManyTokenReads, type SessionStore } from '../store/sessionStore.js';
import type { User, UserStore } from '../store/userStore.js';
import { ended, renewed } from './transitions.js';
import { WriteTurns } from './writeTurns.js';

export type Clock = () => Date;

export interface ExpiryRequest {
  seconds?: number | null;
  date?: Date | null;
}

const USERNAME = /^[a-z0-9_.@-]{3,64}$/;
const PASSWORD_MIN = 8;
const PASSWORD_MAX = 1024;
/** Sessions that logoutAll ends at once. */
export const LOGOUT_ALL_CONCURRENCY = 8;
/** Writers of one session that keep losing to others give up after this many tries. */
const MAX_WRITE_ATTEMPTS = 50;

/** A version of a session, and the instant at which it was decided (found valid, or written). */
export interface Decided {
  session: Session;
  at: Date;
}

/** A session found valid for a request, and whether serving it moved its expiry (a sliding renewal: the cookie must follow). */
export interface Authenticated extends Decided {
  expiryMoved: boolean;
}

/** Given the latest version known and the time, the next version to write, or null for none. */
type Decide = (current: Session, now: Date) => Session | null;

/** What a write commits after `current`: nothing after an end, a TIMEOUT once past its expiry, else what `decide` says. */
function nextVersion(current: Session, now: Date, decide: Decide): Session | null {
  if (current.endedAt) return null;
  return isValid(current.expiry.expiresAt, now) ? decide(current, now) : ended(current, 'TIMEOUT', now);
}

const sameSpec = (a: ExpirySpec, b: ExpirySpec) =>
  a.policy === b.policy && a.seconds === b.seconds && a.date?.getTime() === b.date?.getTime();

/** The event hub, as the service sees it: it hears of every change, and says which ends it has announced. */
export interface ChangeListener extends SessionListener {
  /** The latest version of a session this process knows of; ended once it has announced the end. */
  known(id: string): Session | null;
}

/**
 * Everything a client can do with users and sessions. Every change to a session goes through
 * `change` (docs/write-protocol.md) and is handed to the listener (the event hub), which tells this
 * process's subscribers at once.
 */
export class SessionService {
  private readonly hasher: PasswordHasher;
  private readonly limits: AuthLimits;
  private readonly turns = new WriteTurns<Session>();
  private readonly listings = new FreshReads<string, Session[]>();
  private listener: ChangeListener = { sessionChanged() {}, known: () => null };

  constructor(
    private readonly users: UserStore,
    readonly store: SessionStore,
    private readonly settings: Settings,
    private readonly logger: Logger,
    readonly clock: Clock = () => new Date(),
    /** Where login and registration attempts are counted: the database (shared by all processes); memory only in unit tests. */
    attempts: AttemptStore = new MemoryAttemptStore(),
  ) {
    this.hasher = new PasswordHasher(settings.passwordHashCost);
    this.limits = new AuthLimits(attempts, settings, clock);
  }

  /** Who hears of every change this process makes (set once at start-up: the hub is built after the service). */
  listen(listener: ChangeListener): void {
    this.listener = listener;
  }

  async register(rawUsername: string, password: string, clientAddress: string): Promise<User> {
    if (!this.settings.registrationEnabled) {
      throw apiError('REGISTRATION_DISABLED', 'Registration is switched off on this server.');
    }
    const username = rawUsername.trim().toLowerCase();
    if (!USERNAME.test(username)) {
      throw apiError(
        'INVALID_USERNAME',
        'A username is 3 to 64 characters: letters, digits and . _ @ - (case does not matter).',
      );
    }
    if (password.length < PASSWORD_MIN || password.length > PASSWORD_MAX) {
      throw apiError('INVALID_PASSWORD', `A password is ${PASSWORD_MIN} to ${PASSWORD_MAX} characters long.`);
    }
    // The hash reads it as UTF-8, where every lone surrogate becomes U+FFFD: two such passwords would be one.
    if (/\p{Cs}/u.test(password)) {
      throw apiError('INVALID_PASSWORD', 'A password may not hold half of a character (a lone UTF-16 surrogate).');
    }
    return this.inHand(clientAddress, async () => {
      // Charged before the hash, whatever comes of it: the hash is what the limit protects.
      const admission = await this.limits.admitRegistration(clientAddress);
      if (!admission.admitted) {
        throw apiError('RATE_LIMITED', `Too many registrations from this address. Try again in ${admission.retryAfter} s.`, {
          retryAfter: admission.retryAfter,
        });
      }
      const passwordHash = await this.hasher.hash(password);
      const user = await this.users.create(username, passwordHash, this.clock());
      if (!user) throw apiError('USERNAME_TAKEN', `The username "${username}" is taken.`);
      return user;
    });
  }

  /** Runs a login or registration counted among those its client address has in hand here (AuthLimits.enter). */
  private async inHand<T>(clientAddress: string, work: () => Promise<T>): Promise<T> {
    if (!this.limits.enter(clientAddress)) {
      throw apiError('RATE_LIMITED', 'Too many logins and registrations at once from this address. Try again in 1 s.', { retryAfter: 1 });
    }
    try {
      return await work();
    } finally {
      this.limits.leave(clientAddress);
    }
  }

  findUser(id: string): Promise<User | null> {
    return this.users.findById(id);
  }

  async login(input: {
    username: string;
    password: string;
    expiry?: ExpiryRequest | null;
    userAgent?: string | null;
    clientAddress: string;
  }): Promise<{ token: string; session: Session }> {
    const username = input.username.trim().toLowerCase();
    const spec = this.parseExpiry(input.expiry ?? {});
    return this.inHand(input.clientAddress, () => this.checkAndLogIn(username, input, spec));
  }

  private async checkAndLogIn(
    username: string,
    input: { password: string; userAgent?: string | null; clientAddress: string },
    spec: ExpirySpec,
  ): Promise<{ token: string; session: Session }> {
    // Charged before the password is checked (so a burst cannot have more checked than the budgets
    // allow), refunded once it proves right; unknown users are charged and hashed like known ones.
    const admission = await this.limits.admitLogin(username, input.clientAddress);
    if (!admission.admitted) {
      const wait = admission.retryAfter;
      throw apiError('RATE_LIMITED', `Too many failed logins. Try again in ${wait} s.`, { retryAfter: wait });
    }
    const user = await this.users.findForLogin(username);
    const ok = user
      ? await this.hasher.verify(input.password, user.passwordHash)
      : await this.hasher.verifyAgainstNobody(input.password);
    if (!user || !ok) throw apiError('INVALID_CREDENTIALS', 'Unknown username or wrong password.');
    const now = this.clock();
    const id = new mongoose.Types.ObjectId().toHexString();
    const { token, secretHash } = newSessionToken(id);
    const [session] = await Promise.all([
      this.store.create({
        id,
        userId: user.id,
        secretHash,
        expiry: computeExpiry(spec, now, now, this.settings.expiry),
        userAgent: input.userAgent?.slice(0, 256) ?? null,
        clientAddress: input.clientAddress,
      }),
      this.limits.loginSucceeded(admission.attempt, username, input.clientAddress),
    ]);
    this.listener.sessionChanged(session);
    await this.endOldestBeyondLimit(session);
    return { token, session };
  }

  /**
   * Beyond MAX_SESSIONS_PER_USER valid sessions, the user's oldest others end REVOKED (the new one
   * never), a few at a time. Concurrent logins each keep their own and the newest
   * others they see, so once all have answered no more than the limit are left. One that cannot be
   * ended now (the database is out) is ended by the next login. The user's listing is read as
   * `sessions` reads it, shared with that user's other logins and listings: on FerretDB each read
   * is a scan of every session.
   */
  private async endOldestBeyondLimit(session: Session): Promise<void> {
    const limit = this.settings.maxSessionsPerUser;
    if (limit === null) return;
    try {
      const valid = await this.listSessions(session);
      if (valid.length <= limit) return;
      await this.revokeFewAtATime(valid.filter((s) => s.id !== session.id).slice(limit - 1));
    } catch (err) {
      this.logger.warn({ err: String(err), userId: session.userId }, `could not end the sessions beyond MAX_SESSIONS_PER_USER (${limit}): the next login will`);
    }
  }

  /**
   * The session a token stands for, if it may be served now, and the instant it was found valid
   * (the answer's serverTime). An expired session is ended on the spot (so its subscribers hear of
   * it) and refused with SESSION_EXPIRED. With SESSION_SAVE_EVERY_REQUEST the request renews it
   * (throttled), and `expiryMoved` says that the expiry served is not the one found.
   */
  async authenticate(token: string, clientAddress: string): Promise<Authenticated> {
    const found = await this.store.findByToken(token, clientAddress).catch((err: unknown) => {
      if (!(err instanceof TooManyTokenReads)) throw err;
      throw apiError('RATE_LIMITED', `${err.message}. Try again in 1 s.`, { retryAfter: 1 });
    });
    if (!found) throw this.unknownSession();
    const settled = await this.change(found, () => null);
    const { session } = settled;
    if (session.endedAt) throw this.endedError(session);
    if (!slideOnRequest(session.expiry, settled.at, this.settings.expiry)) return { ...settled, expiryMoved: false };
    const slid = await this.change(session, (current, now) => {
      const expiry = slideOnRequest(current.expiry, now, this.settings.expiry);
      return expiry ? renewed(current, expiry, now) : null;
    });
    if (slid.session.endedAt) throw this.endedError(slid.session);
    return { ...slid, expiryMoved: slid.session.expiry.expiresAt.getTime() !== session.expiry.expiresAt.getTime() };
  }

  /** The latest version of a session (null when there is none), with a passed expiry recorded as its end. */
  async current(id: string): Promise<Session | null> {
    const session = await this.store.findById(id);
    return session && (await this.settle(session));
  }

  /**
   * For the event hub: `sessions` reached their expiry. Each is ended with TIMEOUT unless another
   * process got there first or renewed it in time; returns the latest version of each, which the
   * hub applies (not handed to the listener here: the hub paces a burst's events itself).
   */
  async expireDue(sessions: Session[]): Promise<Session[]> {
    const now = this.clock();
    const ends = sessions.filter((s) => !s.endedAt && !isValid(s.expiry.expiresAt, now)).map((s) => ended(s, 'TIMEOUT', now));
    const won = await this.store.commitMany(ends);
    const written = ends.filter((_, i) => won[i]);
    // Renewed or ended by another writer meanwhile: their latest version decides.
    const writtenIds = new Set(written.map((s) => s.id));
    const others = await Promise.all(sessions.filter((s) => !writtenIds.has(s.id)).map((s) => this.current(s.id)));
    return [...written, ...others.filter((s): s is Session => s !== null)];
  }

  /**
   * For the event hub, after it announced a timeout on what it knew while the database did not
   * answer: an announced end must stick, so the session ends now whatever was written meanwhile.
   */
  async endAfterAnnouncedTimeout(id: string): Promise<void> {
    const session = await this.store.findById(id);
    if (session) await this.writeInTurn(session, (current, now) => ended(current, 'TIMEOUT', now));
  }

  private unknownSession() {
    return apiError('UNAUTHENTICATED', 'Unknown session: log in again.', { loginUrl: this.settings.loginUrl });
  }

  private endedError(session: Session) {
    if (session.endReason === 'TIMEOUT' || session.endReason === 'BROWSER_CLOSED') {
      return apiError('SESSION_EXPIRED', 'Your session has expired: log in again.', {
        loginUrl: this.settings.loginUrl,
        expiredAt: session.expiry.expiresAt.toISOString(),
        reason: session.endReason,
      });
    }
    return apiError('SESSION_ENDED', `This session has ended (${session.endReason}): log in again.`, {
      reason: session.endReason,
      loginUrl: this.settings.loginUrl,
    });
  }

  private parseExpiry(request: ExpiryRequest): ExpirySpec {
    try {
      return parseExpiry(request, this.clock(), this.settings.expiry);
    } catch (err) {
      if (err instanceof ExpiryInputError) throw apiError(err.code, err.message);
      throw err;
    }
  }

  /** Django's set_expiry: saves the session now with a new policy. */
  async setExpiry(session: Session, request: ExpiryRequest): Promise<Decided> {
    const spec = this.parseExpiry(request);
    return this.renewOrRefuse(session, () => spec);
  }

  /** Renews the session: saves it now with the policy it has. */
  async touch(session: Session): Promise<Decided> {
    return this.renewOrRefuse(session, (current) => current.expiry.spec);
  }

  private async renewOrRefuse(session: Session, specOf: (current: Session) => ExpirySpec): Promise<Decided> {
    const askedAt = this.clock();
    const saved = await this.change(session, (current, now) => {
      const spec = specOf(current);
      // Another writer saved it with this policy after this request arrived: that save is this one's too.
      if (current.version > session.version && current.expiry.lastSavedAt >= askedAt && sameSpec(current.expiry.spec, spec)) return null;
      const expiry = computeExpiry(spec, current.createdAt, now, this.settings.expiry);
      // A date that was ahead when the request came but has passed while it waited for its turn.
      if (!isValid(expiry.expiresAt, now)) {
        throw apiError('EXPIRY_IN_PAST', `Expiry date ${expiry.expiresAt.toISOString()} passed before it could be saved: nothing was changed.`);
      }
      return renewed(current, expiry, now);
    });
    if (saved.session.endedAt) throw this.endedError(saved.session);
    return saved;
  }

  /**
   * Ends a session once, starting from a version read earlier: the winner's end is the one that
   * counts. True when this call's end won; false when it had already ended (or cannot end so).
   */
  private async end(known: Session, reason: EndReason): Promise<boolean> {
    let mine: Session | null = null;
    const result = await this.change(known, (current, now) => {
      if (reason === 'BROWSER_CLOSED' && !expiresAtBrowserClose(current.expiry.spec, this.settings.expiry)) return null;
      return (mine = ended(current, reason, now));
    });
    return result.session === mine;
  }

  /** Ends a browser-close session whose browser has gone (engine/presence.ts decides when). True for the winner. */
  async endBrowserClosed(id: string): Promise<boolean> {
    const session = await this.store.findById(id);
    return session !== null && (await this.end(session, 'BROWSER_CLOSED'));
  }

  /** Ends the session LOGGED_OUT; one that another end reached first (its expiry, a revocation) is refused as it now would be. */
  async logout(session: Session): Promise<void> {
    const { session: final } = await this.change(session, (current, now) => ended(current, 'LOGGED_OUT', now));
    if (final.endReason !== 'LOGGED_OUT') throw this.endedError(final);
  }

  /**
   * Ends all of the user's other sessions with REVOKED, a few at a time (a user with thousands must
   * not hold the database for everyone else), and then this one with LOGGED_OUT unless kept. When
   * one could not be ended, every other is still tried and the error is thrown, with this session
   * left as it was, so that the client can retry with it.
   */
  async logoutAll(session: Session, keepCurrent: boolean): Promise<number> {
    const others = (await this.store.listAll(session.userId)).filter((s) => s.id !== session.id && !s.endedAt);
    await this.stillValid(session);
    const revoked = await this.revokeFewAtATime(others, () => this.stillValid(session));
    const endedCurrent = !keepCurrent && (await this.end(session, 'LOGGED_OUT'));
    return revoked + Number(endedCurrent);
  }

  /**
   * Ends `sessions` with REVOKED, LOGOUT_ALL_CONCURRENCY at a time, each after `beforeEach`: all are
   * tried, then the first failure is thrown. Returns how many this call ended.
   */
  private async revokeFewAtATime(sessions: Session[], beforeEach: () => Promise<void> = async () => {}): Promise<number> {
    const fewAtATime = pLimit(LOGOUT_ALL_CONCURRENCY);
    const results = await Promise.allSettled(
      sessions.map((s) =>
        fewAtATime(async () => {
          await beforeEach();
          return this.end(s, 'REVOKED');
        }),
      ),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    return results.filter((r) => r.status === 'fulfilled' && r.value).length;
  }

  /** Ends another of the user's own sessions. False when there is no such valid session. */
  async revoke(session: Session, id: string): Promise<boolean> {
    const target = await this.store.findById(id);
    await this.stillValid(session);
    if (!target || target.userId !== session.userId) return false;
    return this.end(target, id === session.id ? 'LOGGED_OUT' : 'REVOKED');
  }

  /**
   * Checked by a session just before it ends others: refused as its next request would be once it
   * has ended, although the request it acts in found it valid (a `logout` earlier in the same
   * mutation; a revocation answered meanwhile, on this process at once, on another within the
   * cache's staleness). The end of another still follows its check by one write: one that crosses
   * the check (milliseconds) is not seen.
   */
  private async stillValid(session: Session): Promise<void> {
    const latest = await this.store.findCurrent(session.id);
    if (!latest) throw this.unknownSession();
    const settled = await this.settle(latest);
    if (settled.endedAt) throw this.endedError(settled);
  }

  /**
   * `session` as it is now, with a passed expiry recorded as its end: the first to see it commits
   * the TIMEOUT, and nobody refuses or announces an expiry before one is committed.
   */
  private async settle(session: Session): Promise<Session> {
    return (await this.change(session, () => null)).session;
  }

  /**
   * The one way a session changes (`write`), for everything but the hub's announced ends: a session
   * whose end the hub has announced is ended here too, written yet or not (the database did not
   * answer the expiry's re-check in time, and a renewal may have been committed meanwhile).
   */
  private async change(known: Session, decide: Decide): Promise<Decided> {
    const announced = this.announcedEnd(known.id);
    if (announced) return { session: announced, at: this.clock() };
    const result = await this.writeInTurn(known, decide);
    return { session: (!result.session.endedAt && this.announcedEnd(known.id)) || result.session, at: result.at };
  }

  private announcedEnd(id: string): Session | null {
    const known = this.listener.known(id);
    return known?.endedAt ? known : null;
  }

  /** `write`, in turn with this process's other writes of the session (WriteTurns); nothing to write, no wait. */
  private async writeInTurn(known: Session, decide: Decide): Promise<Decided> {
    const now = this.clock();
    const next = nextVersion(known, now, decide);
    if (!next) return { session: known, at: now };
    return this.turns.run(known.id, known, { urgent: next.endedAt !== null }, (from) => this.write(from, decide));
  }

  /**
   * Starting from `known` (a version read earlier), asks `decide` for the next version and commits
   * it; a writer that loses to another reads the winner's version, hands it to the listener, and
   * decides again. A session found past its expiry is first ended with TIMEOUT, and an ended one is
   * returned as it is: nothing follows an end. `decide` returning null changes nothing.
   */
  private async write(known: Session, decide: Decide): Promise<Decided> {
    let current = known;
    for (let attempt = 1; ; attempt++) {
      const now = this.clock();
      const next = nextVersion(current, now, decide);
      if (!next) return { session: current, at: now };
      if (await this.store.commit(next)) {
        this.listener.sessionChanged(next, current);
        return { session: next, at: now };
      }
      if (attempt >= MAX_WRITE_ATTEMPTS) {
        throw apiError('SESSION_BUSY', 'This session is being changed by too many requests at once: try again.');
      }
      if (attempt > 2) await sleep(Math.random() * Math.min(50, 2 ** attempt));
      const latest = await this.store.findById(known.id);
      if (!latest) throw this.unknownSession();
      // The winner may have died before logging its change (a client then retries here): this
      // process's subscribers hear of it now, not when the change feed reads it. The hub ignores
      // versions it has.
      if (latest.version > known.version) this.listener.sessionChanged(latest);
      current = latest;
    }
  }

  /**
   * The user's sessions that are valid now, newest first. On FerretDB each read scans every session:
   * one user's listings (requests, allSessions subscriptions) share their reads (FreshReads).
   */
  async listSessions(session: Session, now = this.clock()): Promise<Session[]> {
    const open = await this.listings.read(session.userId, () => this.store.listOpen(session.userId));
    return open.filter((s) => isValid(s.expiry.expiresAt, now));
  }
}
