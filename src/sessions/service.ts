import type { Settings } from '../config.js';
import { apiError } from '../errors.js';
import { LoginLimiter } from '../auth/loginLimiter.js';
import { PasswordHasher } from '../auth/passwords.js';
import mongoose from 'mongoose';
import { newSessionToken } from '../auth/tokens.js';
import {
  computeExpiry,
  ExpiryInputError,
  isValid,
  parseExpiry,
  slideOnRequest,
  type ExpirySpec,
} from '../expiry/rules.js';
import type { EndReason, Models, UserDoc } from '../store/models.js';
import type { Session, SessionStore } from '../store/sessionStore.js';

export type Clock = () => Date;

export interface ExpiryRequest {
  seconds?: number | null;
  date?: Date | null;
}

export interface User {
  id: string;
  username: string;
  createdAt: Date;
}

const USERNAME = /^[a-z0-9_.@-]{3,64}$/;
const PASSWORD_MIN = 8;
const PASSWORD_MAX = 1024;

const toUser = (doc: UserDoc): User => ({ id: doc._id.toHexString(), username: doc.username, createdAt: doc.createdAt });

/**
 * Everything a client can do with users and sessions. Every change to a session goes through
 * here and is handed to `publish`, which tells this process's subscribers at once.
 */
export class SessionService {
  private readonly hasher: PasswordHasher;
  private readonly limiter: LoginLimiter;

  constructor(
    private readonly models: Models,
    readonly store: SessionStore,
    private readonly settings: Settings,
    readonly clock: Clock = () => new Date(),
    private readonly publish: (session: Session) => void = () => {},
  ) {
    this.hasher = new PasswordHasher(settings.passwordHashCost);
    this.limiter = new LoginLimiter(settings.loginRateLimit.points, settings.loginRateLimit.windowSeconds);
  }

  async register(rawUsername: string, password: string): Promise<User> {
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
    const passwordHash = await this.hasher.hash(password);
    try {
      const doc = await this.models.User.create({ username, passwordHash, createdAt: this.clock() });
      return toUser(doc.toObject());
    } catch (err) {
      if ((err as { code?: number }).code === 11000) {
        throw apiError('USERNAME_TAKEN', `The username "${username}" is taken.`);
      }
      throw err;
    }
  }

  async findUser(id: string): Promise<User | null> {
    const doc = await this.models.User.findById(id).lean<UserDoc>();
    return doc ? toUser(doc) : null;
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
    const wait = await this.limiter.retryAfter(username, input.clientAddress);
    if (wait > 0) {
      throw apiError('RATE_LIMITED', `Too many failed logins. Try again in ${wait} s.`, { retryAfter: wait });
    }
    const user = await this.models.User.findOne({ username }).lean<UserDoc>();
    const ok = user
      ? await this.hasher.verify(input.password, user.passwordHash)
      : await this.hasher.verifyAgainstNobody(input.password);
    if (!user || !ok) {
      await this.limiter.recordFailure(username, input.clientAddress);
      throw apiError('INVALID_CREDENTIALS', 'Unknown username or wrong password.');
    }
    await this.limiter.recordSuccess(username);
    const now = this.clock();
    const id = new mongoose.Types.ObjectId().toHexString();
    const { token, secretHash } = newSessionToken(id);
    const session = await this.store.create({
      id,
      userId: user._id.toHexString(),
      secretHash,
      expiry: computeExpiry(spec, now, now, this.settings.expiry),
      userAgent: input.userAgent?.slice(0, 256) ?? null,
      clientAddress: input.clientAddress,
    });
    this.publish(session);
    return { token, session };
  }

  /**
   * The session a token stands for, if it may be served now. An expired session is ended on
   * the spot (so its subscribers hear of it) and refused with SESSION_EXPIRED.
   */
  async authenticate(token: string): Promise<Session> {
    const session = await this.store.findByToken(token);
    if (!session) {
      throw apiError('UNAUTHENTICATED', 'Unknown session: log in again.', { loginUrl: this.settings.loginUrl });
    }
    const now = this.clock();
    if (session.endedAt === null && !isValid(session.expiry.expiresAt, now)) {
      await this.end(session.id, 'TIMEOUT');
      throw this.expiredError(session);
    }
    if (session.endedAt !== null) {
      throw session.endReason === 'TIMEOUT' || session.endReason === 'BROWSER_CLOSED'
        ? this.expiredError(session)
        : apiError('SESSION_ENDED', `This session has ended (${session.endReason}): log in again.`, {
            reason: session.endReason,
            loginUrl: this.settings.loginUrl,
          });
    }
    const slid = slideOnRequest(session.expiry, now, this.settings.expiry);
    return slid ? ((await this.saveExpiry(session, slid.spec)) ?? session) : session;
  }

  private expiredError(session: Session) {
    return apiError('SESSION_EXPIRED', 'Your session has expired: log in again.', {
      loginUrl: this.settings.loginUrl,
      expiredAt: session.expiry.expiresAt.toISOString(),
      reason: session.endReason ?? 'TIMEOUT',
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
  async setExpiry(session: Session, request: ExpiryRequest): Promise<Session> {
    return this.saveOrRefuse(session, this.parseExpiry(request));
  }

  /** Renews the session: saves it now with the policy it has. */
  async touch(session: Session): Promise<Session> {
    return this.saveOrRefuse(session, session.expiry.spec);
  }

  private async saveOrRefuse(session: Session, spec: ExpirySpec): Promise<Session> {
    const saved = await this.saveExpiry(session, spec);
    if (!saved) throw this.expiredError(session);
    return saved;
  }

  private async saveExpiry(session: Session, spec: ExpirySpec): Promise<Session | null> {
    const now = this.clock();
    const state = computeExpiry(spec, session.createdAt, now, this.settings.expiry);
    const saved = await this.store.saveExpiry(session.id, state, now);
    if (saved) this.publish(saved);
    return saved;
  }

  /** Ends a session once; the winner publishes the terminal change. */
  async end(id: string, reason: EndReason, detachedBefore?: Date): Promise<Session | null> {
    const ended = await this.store.end(id, reason, this.clock(), detachedBefore);
    if (ended) this.publish(ended);
    return ended;
  }

  async logout(session: Session): Promise<void> {
    await this.end(session.id, 'LOGGED_OUT');
  }

  /** Ends all of the user's other sessions with REVOKED, and this one with LOGGED_OUT unless kept. */
  async logoutAll(session: Session, keepCurrent: boolean): Promise<number> {
    const others = await this.store.openSessionIds(session.userId, session.id);
    const ended = await Promise.all(others.map((id) => this.end(id, 'REVOKED')));
    if (!keepCurrent) await this.logout(session);
    return ended.filter(Boolean).length + (keepCurrent ? 0 : 1);
  }

  /** Ends another of the user's own sessions. False when there is no such valid session. */
  async revoke(session: Session, id: string): Promise<boolean> {
    const target = await this.store.findById(id);
    if (!target || target.userId !== session.userId) return false;
    return (await this.end(id, id === session.id ? 'LOGGED_OUT' : 'REVOKED')) !== null;
  }

  listSessions(session: Session): Promise<Session[]> {
    return this.store.listValid(session.userId, this.clock());
  }
}
