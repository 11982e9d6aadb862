import mongoose from 'mongoose';
import { parseSessionToken, secretMatches } from '../auth/tokens.js';
import type { ExpiryState } from '../expiry/rules.js';
import type { EndReason, Models, SessionChangeDoc, SessionDoc } from './models.js';

/** A session as the rest of the server sees it. */
export interface Session {
  id: string;
  userId: string;
  createdAt: Date;
  expiry: ExpiryState;
  endedAt: Date | null;
  endReason: EndReason | null;
  version: number;
  updatedAt: Date;
  liveSubscriptions: number;
  detachedAt: Date | null;
  userAgent: string | null;
  clientAddress: string | null;
}

/** An id as one flat string: bson's toHexString() builds it from concatenated pieces, which the hub would keep for each followed session. */
const flatHex = (id: mongoose.Types.ObjectId) => Buffer.from(id.id).toString('hex');

export function toSession(doc: SessionDoc): Session {
  return {
    id: flatHex(doc._id),
    userId: flatHex(doc.userId),
    createdAt: doc.createdAt,
    expiry: {
      spec: { policy: doc.policy, seconds: doc.policySeconds ?? null, date: doc.policyDate ?? null },
      createdAt: doc.createdAt,
      lastSavedAt: doc.lastSavedAt,
      expiresAt: doc.expiresAt,
      limitedBy: doc.limitedBy,
    },
    endedAt: doc.endedAt ?? null,
    endReason: (doc.endReason as EndReason | null) ?? null,
    version: doc.version,
    updatedAt: doc.updatedAt,
    liveSubscriptions: doc.liveSubscriptions ?? 0,
    detachedAt: doc.detachedAt ?? null,
    userAgent: doc.userAgent ?? null,
    clientAddress: doc.clientAddress ?? null,
  };
}

function expiryFields(state: ExpiryState) {
  return {
    lastSavedAt: state.lastSavedAt,
    expiresAt: state.expiresAt,
    policy: state.spec.policy,
    policySeconds: state.spec.seconds,
    policyDate: state.spec.date,
    limitedBy: state.limitedBy,
  };
}

const oid = (id: string) => new mongoose.Types.ObjectId(id);

/** Which session `end` may end: one that has not ended, and for a timeout only once past its expiry. */
function endFilter(id: string, reason: EndReason, now: Date, onlyIfDetachedBefore?: Date): Record<string, unknown> {
  // A session past its expiry has expired, whatever ends it later: only a TIMEOUT records that.
  const filter: Record<string, unknown> = { _id: oid(id), endedAt: null, expiresAt: reason === 'TIMEOUT' ? { $lte: now } : { $gt: now } };
  if (reason === 'BROWSER_CLOSED') {
    filter.policy = 'BROWSER_CLOSE';
    filter.liveSubscriptions = { $lte: 0 };
    filter.detachedAt = { $lte: onlyIfDetachedBefore ?? now };
  }
  return filter;
}

const endUpdate = (now: Date, reason: EndReason) => ({
  $set: { endedAt: now, endReason: reason, updatedAt: now },
  $min: { expiresAt: now },
  $inc: { version: 1 },
});

/** Every read and write of the sessions collection. Writes are conditional so that only live sessions change. */
export class SessionStore {
  /**
   * @param recordChanges where the database has no change streams: log every write in the
   *   session_changes collection, for the other processes' polling feeds (engine/changeFeed.ts).
   */
  constructor(
    private readonly models: Models,
    private readonly options: { recordChanges: boolean } = { recordChanges: false },
  ) {}

  /** After the write: a process that dies in between loses the change for the other processes' polling feeds, not the write. */
  private async written(doc: SessionDoc | null, record = true): Promise<Session | null> {
    if (!doc) return null;
    if (record && this.options.recordChanges) await this.models.SessionChange.create({ at: doc.updatedAt, session: doc });
    return toSession(doc);
  }

  /** Changes logged at or after `from`, oldest first. */
  async changesSince(from: Date): Promise<Session[]> {
    const docs = await this.models.SessionChange.find({ at: { $gte: from } }).sort({ at: 1 }).lean<SessionChangeDoc[]>();
    return docs.map((d) => toSession(d.session));
  }

  async forgetChangesBefore(before: Date): Promise<void> {
    await this.models.SessionChange.deleteMany({ at: { $lt: before } });
  }

  /** Sessions written after `from`, oldest first: a scan of the sessions collection on FerretDB. */
  async updatedSince(from: Date): Promise<Session[]> {
    const docs = await this.models.Session.find({ updatedAt: { $gt: from } }).sort({ updatedAt: 1 }).lean<SessionDoc[]>();
    return docs.map(toSession);
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
    const doc = await this.models.Session.create({
      _id: oid(input.id),
      userId: oid(input.userId),
      secretHash: input.secretHash,
      createdAt: input.expiry.createdAt,
      ...expiryFields(input.expiry),
      version: 1,
      updatedAt: now,
      userAgent: input.userAgent,
      clientAddress: input.clientAddress,
    });
    return (await this.written(doc.toObject()))!;
  }

  /** The session a token stands for, read by its primary key; null when there is none or the secret is wrong. */
  async findByToken(token: string): Promise<Session | null> {
    const parsed = parseSessionToken(token);
    if (!parsed) return null;
    const doc = await this.models.Session.findById(parsed.sessionId).lean<SessionDoc>();
    return doc && secretMatches(parsed.secret, doc.secretHash) ? toSession(doc) : null;
  }

  async findById(id: string): Promise<Session | null> {
    if (!mongoose.isValidObjectId(id)) return null;
    const doc = await this.models.Session.findById(id).lean<SessionDoc>();
    return doc ? toSession(doc) : null;
  }

  async findByIds(ids: string[]): Promise<Session[]> {
    const docs = await this.models.Session.find({ _id: { $in: ids.map(oid) } }).lean<SessionDoc[]>();
    return docs.map(toSession);
  }

  /** The user's sessions that are valid at `now`, newest first. */
  async listValid(userId: string, now: Date): Promise<Session[]> {
    const docs = await this.models.Session.find({ userId: oid(userId), endedAt: null, expiresAt: { $gt: now } })
      .sort({ createdAt: -1 })
      .lean<SessionDoc[]>();
    return docs.map(toSession);
  }

  /** Saves a new expiry if the session is still valid at `now`; null when it is not (any more). */
  async saveExpiry(id: string, state: ExpiryState, now: Date): Promise<Session | null> {
    const doc = await this.models.Session.findOneAndUpdate(
      { _id: oid(id), endedAt: null, expiresAt: { $gt: now } },
      { $set: { ...expiryFields(state), updatedAt: now }, $inc: { version: 1 } },
      { returnDocument: 'after' },
    ).lean<SessionDoc>();
    return this.written(doc);
  }

  /**
   * Ends a session once: the one conditional update that only the first caller wins. A TIMEOUT
   * only wins when the session really is past its expiry, so a renewal made elsewhere is honoured;
   * any other reason only while it is not.
   * Returns the ended session to the winner, null to everybody else.
   */
  async end(id: string, reason: EndReason, now: Date, onlyIfDetachedBefore?: Date): Promise<Session | null> {
    const doc = await this.models.Session.findOneAndUpdate(
      endFilter(id, reason, now, onlyIfDetachedBefore),
      endUpdate(now, reason),
      { returnDocument: 'after' },
    ).lean<SessionDoc>();
    // Every process that follows a session has its own deadline for it, so a timeout needs no record.
    return this.written(doc, reason !== 'TIMEOUT');
  }

  /**
   * `end(id, 'TIMEOUT')` for a timeout that everybody concerned already knows of (the hub told
   * this process's subscribers; every other process following the session has its own deadline):
   * the same conditional write, without reading the session back.
   */
  async recordTimeout(id: string, now: Date): Promise<void> {
    await this.models.Session.updateOne(endFilter(id, 'TIMEOUT', now), endUpdate(now, 'TIMEOUT'));
  }

  /** Ids of the user's sessions that have not ended, except `exceptId`. */
  async openSessionIds(userId: string, exceptId?: string): Promise<string[]> {
    const filter: Record<string, unknown> = { userId: oid(userId), endedAt: null };
    if (exceptId) filter._id = { $ne: oid(exceptId) };
    const docs = await this.models.Session.find(filter, { _id: 1 }).lean<{ _id: mongoose.Types.ObjectId }[]>();
    return docs.map((d) => d._id.toHexString());
  }

  /** Fallback for databases without TTL indexes: what the TTL index would have removed. */
  async purgeExpired(now: Date, retentionSeconds: number): Promise<number> {
    const result = await this.models.Session.deleteMany({
      expiresAt: { $lt: new Date(now.getTime() - retentionSeconds * 1000) },
    });
    return result.deletedCount;
  }
}
