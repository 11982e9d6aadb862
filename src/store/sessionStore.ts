import mongoose, { type mongo } from 'mongoose';
import { addressBucket } from '../auth/attemptLimiter.js';
import { parseSessionToken, secretMatches } from '../auth/tokens.js';
import { withLifetimeCap, type ExpiryState } from '../expiry/rules.js';
import type { EndReason, Session } from '../session.js';
import type { Models, SessionChangeDoc, SessionDoc, SessionState } from './models.js';
import { within } from '../timeLimit.js';
import type { VersionWriter } from './versionWriters.js';
import { FairTurns } from './fairTurns.js';
import type { SessionCache } from './sessionCache.js';

/** An id as one flat string: bson's toHexString() builds it from concatenated pieces, which the hub would keep for each followed session. */
const flatHex = (id: mongoose.Types.ObjectId) => Buffer.from(id.id).toString('hex');

/** A session as stored, under today's SESSION_MAX_LIFETIME (`maxLifetime`) if it has not ended. */
function sessionFromDoc(doc: SessionDoc, maxLifetime: number | null): Session {
  const expiry: ExpiryState = {
    spec: { policy: doc.policy, seconds: doc.policySeconds ?? null, date: doc.policyDate ?? null },
    createdAt: doc.createdAt,
    lastSavedAt: doc.lastSavedAt,
    expiresAt: doc.expiresAt,
    limitedBy: doc.limitedBy,
  };
  return {
    id: flatHex(doc._id),
    userId: flatHex(doc.userId),
    createdAt: doc.createdAt,
    expiry: doc.endedAt ? expiry : withLifetimeCap(expiry, maxLifetime),
    endedAt: doc.endedAt ?? null,
    endReason: (doc.endReason as EndReason | null) ?? null,
    version: doc.version,
    updatedAt: doc.updatedAt,
    userAgent: doc.userAgent ?? null,
    clientAddress: doc.clientAddress ?? null,
  };
}

function stateFields(session: Session): SessionState {
  const { expiry } = session;
  return {
    lastSavedAt: expiry.lastSavedAt,
    expiresAt: expiry.expiresAt,
    policy: expiry.spec.policy,
    policySeconds: expiry.spec.seconds,
    policyDate: expiry.spec.date,
    limitedBy: expiry.limitedBy,
    endedAt: session.endedAt,
    endReason: session.endReason,
    version: session.version,
    updatedAt: session.updatedAt,
  };
}

const oid = (id: string) => new mongoose.Types.ObjectId(id);

/**
 * Every process that follows a session has its own deadline at its expiry, so a timeout there needs
 * no record. One that ends a version before its expiry (an end announced while the database did
 * not answer, made to stick over a renewal: SessionService.endAfterAnnouncedTimeout) brings the
 * expiry forward to the end, and the processes that know the renewal must hear of it. So must
 * those of a timeout at SESSION_MAX_LIFETIME: during a rolling restart that sets or lowers it, the
 * processes still on the old settings have their deadline later.
 */
const needsRecord = (next: Session) =>
  next.endReason !== 'TIMEOUT' || next.expiry.limitedBy === 'MAX_LIFETIME' || next.expiry.expiresAt.getTime() >= next.endedAt!.getTime();

/** A record of the change log: a version as written, or (`intent`) a version about to be committed. */
export type LoggedChange = { at: Date; session: Session; intent?: undefined } | { at: Date; intent: { sessionId: string; version: number }; session?: undefined };

/** The least time after a session stopped being valid before `purgeExpired` removes it, whatever SESSION_RETENTION says. */
export const MIN_PURGE_AGE_S = 600;

/** How far back a polling change feed looks before the newest change it has seen (clocks of processes differ a little too). */
export const CHANGE_FEED_OVERLAP_MS = 1_000;
/** A change record whose insert took longer than this after its stamp is logged again. */
const CHANGE_RECORD_MAX_DELAY_MS = CHANGE_FEED_OVERLAP_MS / 2;
const MAX_CHANGE_RECORD_ATTEMPTS = 5;

export interface SessionStoreOptions {
  /**
   * Where the database has no change streams: log every write in the session_changes collection,
   * for the other processes' polling feeds (engine/changeFeed.ts), and before each commit other
   * than a timeout at its expiry an intent, so that a write whose record is lost still reaches them.
   */
  recordChanges: boolean;
  /** SESSION_MAX_LIFETIME in seconds (null: none): every session is read under today's, whatever it was saved under. */
  maxLifetime?: number | null;
  /** The wall clock that stamps the change records (ms since the epoch). */
  now?: () => number;
  /** Where `findByToken` may answer from memory (store/sessionCache.ts); this store's writes go into it as they are committed. */
  cache?: SessionCache | null;
  /**
   * `findByToken` reads of the database at once (MAX_CONCURRENT_TOKEN_READS); the others wait
   * their turn, client addresses taking turns (FairTurns). Every request and socket a client brings
   * reads its session: when a process dies, its clients all come back to the others at once, and a
   * client may send tokens that are in no cache. Unbounded, those reads queue in the database ahead
   * of the expiries' commits and the health pings, and the process reports the database unreachable.
   */
  maxConcurrentTokenReads?: number;
  /**
   * Of those, how many one client address (IPv6: its /64) may have waiting or running at once
   * (TOKEN_READ_ADDRESS_CONCURRENCY); more are refused before they wait (TooManyTokenReads). Tokens
   * that name no session are never cached: with one queue for all and no bound, one address
   * sending them at 1 000 a second queued every other client's reads behind its own for seconds.
   */
  tokenReadsPerAddress?: number;
}

/** The client address already has TOKEN_READ_ADDRESS_CONCURRENCY token reads in hand here. */
export class TooManyTokenReads extends Error {
  constructor() {
    super('Too many sessions being looked up at once from this address');
  }
}

/**
 * Every read and write of the sessions. A session changes only by `commit`, which writes its next
 * version if nobody else has (the VersionWriter decides how); every read returns the latest version.
 */
export class SessionStore {
  private readonly readingTokens: FairTurns;

  constructor(
    private readonly models: Models,
    readonly writer: VersionWriter,
    private readonly options: SessionStoreOptions = { recordChanges: false },
  ) {
    this.readingTokens = new FairTurns(options.maxConcurrentTokenReads ?? Number.POSITIVE_INFINITY, options.tokenReadsPerAddress ?? Number.POSITIVE_INFINITY);
  }

  /**
   * After the write. A process that dies in between (or loses the database) loses the record, not
   * the write: the intent logged before the commit (`recordIntents`) makes the pollers read it.
   */
  private async recordChange(id: string, userId: string, doc: SessionState & Pick<SessionDoc, 'createdAt' | 'userAgent' | 'clientAddress'>): Promise<void> {
    if (!this.options.recordChanges) return;
    const session = { ...doc, _id: oid(id), userId: oid(userId) };
    await this.logged(async (at) => void (await this.models.SessionChange.create({ at, session })));
  }

  /**
   * Before the commits of `nexts`, in one insert: each version is about to be committed. A poller
   * that has not seen the change itself within about a second reads the session
   * (engine/changeFeed.ts). An intent whose commit fails costs each poller a few reads; one that
   * loses is settled by the winner's record (or, when the intent lands after it, by one read).
   */
  private async recordIntents(nexts: Session[]): Promise<void> {
    if (!this.options.recordChanges || nexts.length === 0) return;
    await this.logged(async (at) => {
      await this.models.SessionChange.insertMany(nexts.map((next) => ({ at, intent: { sessionId: oid(next.id), version: next.version } })), { lean: true });
    });
  }

  /**
   * A poller reads the log by `at`, looking back CHANGE_FEED_OVERLAP_MS before the newest record it
   * has seen: a record that became visible later than that after its stamp (a slow insert) would be
   * passed over. Stamped when logged, not when decided, and logged again with a fresh stamp when the
   * insert took too long (pollers drop what they have seen).
   */
  private async logged(insert: (at: Date) => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const at = new Date((this.options.now ?? Date.now)());
      const insertedFrom = performance.now();
      await insert(at);
      if (performance.now() - insertedFrom <= CHANGE_RECORD_MAX_DELAY_MS || attempt === MAX_CHANGE_RECORD_ATTEMPTS) return;
    }
  }

  /** A session document as the rest of the server sees it. */
  toSession(doc: SessionDoc): Session {
    return sessionFromDoc(doc, this.options.maxLifetime ?? null);
  }

  /** A MongoDB change stream of the session documents as written, after `resumeAfter` when given. */
  watchChanges(resumeAfter?: mongo.ResumeToken): mongo.ChangeStream<SessionDoc> {
    return this.models.Session.collection.watch<SessionDoc>(
      [{ $match: { operationType: { $in: ['insert', 'update', 'replace'] } } }],
      { fullDocument: 'updateLookup', ...(resumeAfter ? { resumeAfter } : {}) },
    );
  }

  /** Changes and intents logged at or after `from`, oldest first, with when each was logged. */
  async changesSince(from: Date): Promise<LoggedChange[]> {
    const docs = await this.models.SessionChange.find({ at: { $gte: from } }).sort({ at: 1 }).lean<SessionChangeDoc[]>();
    return docs.map((d) =>
      d.intent ? { at: d.at, intent: { sessionId: flatHex(d.intent.sessionId), version: d.intent.version } } : { at: d.at, session: this.toSession(d.session!) },
    );
  }

  async forgetChangesBefore(before: Date): Promise<void> {
    await this.models.SessionChange.deleteMany({ at: { $lt: before } });
  }

  /** Sessions written after `from`, oldest first, as `changesSince` gives them: a scan of the sessions collection on FerretDB. */
  async updatedSince(from: Date): Promise<Array<{ at: Date; session: Session }>> {
    const docs = await this.models.Session.find({ updatedAt: { $gt: from } }).sort({ updatedAt: 1 }).lean<SessionDoc[]>();
    return (await this.latestOf(docs)).map((session) => ({ at: session.updatedAt, session }));
  }

  async create(input: {
    id: string;
    userId: string;
    secretHash: string;
    expiry: ExpiryState;
    userAgent: string | null;
    clientAddress: string | null;
  }): Promise<Session> {
    const now = input.expiry.lastSavedAt;
    const session: Session = {
      id: input.id,
      userId: input.userId,
      createdAt: input.expiry.createdAt,
      expiry: input.expiry,
      endedAt: null,
      endReason: null,
      version: 1,
      updatedAt: now,
      userAgent: input.userAgent,
      clientAddress: input.clientAddress,
    };
    const fixed = { createdAt: session.createdAt, userAgent: session.userAgent, clientAddress: session.clientAddress };
    await this.models.Session.create({ _id: oid(input.id), userId: oid(input.userId), secretHash: input.secretHash, ...fixed, ...stateFields(session) });
    this.options.cache?.added(session, input.secretHash);
    await this.recordChange(session.id, session.userId, { ...fixed, ...stateFields(session) });
    return session;
  }

  /**
   * Writes `next` as the session's version `next.version` unless another writer already wrote that
   * version: true for the one writer that did. The caller builds `next` from the latest version it
   * read (sessions/transitions.ts), and on false reads again.
   */
  async commit(next: Session): Promise<boolean> {
    return (await this.commitMany([next]))[0]!;
  }

  /** `commit` for many sessions at once (a burst of expiries): which of them this writer wrote. */
  async commitMany(nexts: Session[]): Promise<boolean[]> {
    await this.recordIntents(nexts.filter(needsRecord));
    const won = await this.writer.commitMany(nexts.map((next) => ({ id: oid(next.id), next: stateFields(next) })));
    nexts.forEach((next, i) => won[i] && this.options.cache?.sessionChanged(next));
    const logged = nexts.filter((next, i) => won[i] && needsRecord(next));
    for (const next of logged) {
      const fixed = { createdAt: next.createdAt, userAgent: next.userAgent, clientAddress: next.clientAddress };
      await this.recordChange(next.id, next.userId, { ...fixed, ...stateFields(next) });
    }
    return won;
  }

  /**
   * The session a token stands for, read by its primary key (at most `maxConcurrentTokenReads` such
   * reads at once, `tokenReadsPerAddress` of them for `clientAddress`) or found in the cache while it
   * is fresh; null when there is none or the secret is wrong.
   */
  async findByToken(token: string, clientAddress: string): Promise<Session | null> {
    const parsed = parseSessionToken(token);
    if (!parsed) return null;
    const { cache } = this.options;
    const fromCache = () => {
      const cached = cache?.lookup(parsed.sessionId);
      if (!cached) return undefined;
      return secretMatches(parsed.secret, cached.secretHash) ? cached.session : null;
    };
    const known = fromCache();
    if (known !== undefined) return known;
    const read = this.readingTokens.run(addressBucket(clientAddress), async () => {
      // A read of the same session that went first (its other sockets and requests, coming back
      // together after their process died) may have put it in the cache meanwhile.
      const meanwhile = fromCache();
      if (meanwhile !== undefined) return meanwhile;
      const readToken = cache?.beforeRead() ?? 0;
      const head = await this.models.Session.findById(parsed.sessionId).lean<SessionDoc>();
      if (!head) cache?.forget(parsed.sessionId);
      if (!head || !secretMatches(parsed.secret, head.secretHash)) return null;
      const session = this.toSession(await this.writer.latest(head));
      cache?.remember(session, head.secretHash, readToken);
      return session;
    });
    if (!read) throw new TooManyTokenReads();
    return read;
  }

  /** The latest version of a session: from the cache while it is fresh (as `findByToken`), else read. */
  async findCurrent(id: string): Promise<Session | null> {
    return this.options.cache?.lookup(id)?.session ?? this.findById(id);
  }

  async findById(id: string): Promise<Session | null> {
    if (!mongoose.isValidObjectId(id)) return null;
    const head = await this.models.Session.findById(id).lean<SessionDoc>();
    if (!head) {
      this.options.cache?.forget(id);
      return null;
    }
    const session = this.toSession(await this.writer.latest(head));
    this.options.cache?.sessionChanged(session);
    return session;
  }

  /**
   * Every session of the user still on record, ended ones included, each at its latest version and
   * told to the cache: a process that answers for all of them (logoutAll) must not go on serving
   * from memory one that another process ended just before.
   */
  async listAll(userId: string): Promise<Session[]> {
    const heads = await this.models.Session.find({ userId: oid(userId) }).lean<SessionDoc[]>();
    const sessions = await this.latestOf(heads);
    for (const session of sessions) this.options.cache?.sessionChanged(session);
    return sessions;
  }

  /** The user's sessions that have not ended, newest first (an ended session document is never stale: nothing follows an end). */
  async listOpen(userId: string): Promise<Session[]> {
    const heads = await this.models.Session.find({ userId: oid(userId), endedAt: null }).sort({ createdAt: -1 }).lean<SessionDoc[]>();
    return (await this.latestOf(heads)).filter((s) => !s.endedAt);
  }

  /**
   * Fallback for databases without TTL indexes: what the TTL index would have removed, with its
   * versions, but never within `MIN_PURGE_AGE_S` of the session's end: on FerretDB the version
   * documents are what stops a writer still holding an older version (read before the end) from
   * committing the end's version number again.
   */
  async purgeExpired(now: Date, retentionSeconds: number): Promise<number> {
    const cutoff = new Date(now.getTime() - Math.max(retentionSeconds, MIN_PURGE_AGE_S) * 1000);
    const heads = await this.models.Session.find({ expiresAt: { $lt: cutoff } }).lean<SessionDoc[]>();
    const ids = (await this.latestOf(heads)).filter((s) => s.expiry.expiresAt < cutoff).map((s) => oid(s.id));
    if (ids.length === 0) return 0;
    const result = await this.models.Session.deleteMany({ _id: { $in: ids } });
    await this.models.SessionVersion.deleteMany({ sessionId: { $in: ids } });
    return result.deletedCount;
  }

  /** True when the database answers a ping within `ms`. */
  answers(ms: number): Promise<boolean> {
    const ping = this.models.Session.db.db!.admin().ping().then(() => true, () => false);
    return within(ping, ms, false);
  }

  /**
   * True when a write goes through within `ms`: the upsert of one document of the collection
   * `write_probes`, written only while the database's storage is full (DatabaseHealth).
   */
  takesWrites(ms: number): Promise<boolean> {
    const probes = this.models.Session.db.db!.collection<{ _id: string; at: Date }>('write_probes');
    const write = probes.updateOne({ _id: 'probe' }, { $set: { at: new Date() } }, { upsert: true }).then(() => true, () => false);
    return within(write, ms, false);
  }

  /** Waits for the writes still in flight (at shutdown). */
  drain(): Promise<void> {
    return this.writer.drain();
  }

  private async latestOf(heads: SessionDoc[]): Promise<Session[]> {
    return (await Promise.all(heads.map((h) => this.writer.latest(h)))).map((doc) => this.toSession(doc));
  }
}
