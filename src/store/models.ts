import mongoose, { Schema, type Connection, type InferSchemaType, type Model } from 'mongoose';
import { END_REASONS } from '../session.js';


const userSchema = new Schema(
  {
    /** Lower-cased at registration, so the unique index is case-insensitive. */
    username: { type: String, required: true, unique: true },
    passwordHash: { type: String, required: true },
    createdAt: { type: Date, required: true },
  },
  { versionKey: false },
);

const sessionSchema = new Schema(
  {
    userId: { type: Schema.Types.ObjectId, required: true },
    /** SHA-256 of the token's secret part (see auth/tokens.ts); the secret itself is never stored. */
    secretHash: { type: String, required: true },
    createdAt: { type: Date, required: true },
    lastSavedAt: { type: Date, required: true },
    /** When the session stops being valid; for an ended session, when it ended. */
    expiresAt: { type: Date, required: true },
    policy: { type: String, required: true, enum: ['SECONDS', 'BROWSER_CLOSE', 'DEFAULT', 'DATE'] },
    policySeconds: { type: Number, default: null },
    policyDate: { type: Date, default: null },
    limitedBy: { type: String, required: true, enum: ['POLICY', 'MAX_LIFETIME'] },
    endedAt: { type: Date, default: null },
    endReason: { type: String, enum: [...END_REASONS, null], default: null },
    /** 1 at login, one more for every write; each version is written by one writer only. */
    version: { type: Number, required: true },
    /** Set by every write; a polling change feed that fell behind its change log rescans by it. */
    updatedAt: { type: Date, required: true },
    userAgent: { type: String, default: null },
    clientAddress: { type: String, default: null },
  },
  { versionKey: false },
);
sessionSchema.index({ userId: 1, endedAt: 1 });
sessionSchema.index({ updatedAt: 1 });
sessionSchema.index({ endedAt: 1, expiresAt: 1 });

/**
 * Where single-document updates are not atomic (FerretDB 1.x): version N of a session (N >= 2) is
 * one document whose _id is `<session id>:<N>`, so that of all the writers of version N, only the
 * one whose insert lands first succeeds (docs/write-protocol.md). It holds the session's state as of
 * that version (as JSON text: store/versionWriters.ts says why); the session document follows it as a cache.
 */
const sessionVersionSchema = new Schema(
  {
    _id: { type: String, required: true },
    sessionId: { type: Schema.Types.ObjectId, required: true, index: true },
    state: { type: Schema.Types.Mixed, required: true },
  },
  { versionKey: false },
);

/**
 * Where the database has no change streams: one record per session write, holding the session as
 * written, kept for a few seconds. Polling this small collection costs the database little, where
 * polling the sessions collection costs it a scan of every session on FerretDB. A record holds
 * either a `session` (a write, logged after its commit) or an `intent` (a write about to be
 * committed, logged before it: a poller that sees no record of it soon reads the session, so a
 * writer that dies between its commit and its record loses the record, not the change).
 */
const sessionChangeSchema = new Schema(
  {
    at: { type: Date, required: true, index: true },
    session: {
      type: Schema.Types.Mixed,
      required(this: { intent?: unknown }) {
        return this.intent == null;
      },
    },
    intent: {
      type: new Schema({ sessionId: { type: Schema.Types.ObjectId, required: true }, version: { type: Number, required: true } }, { _id: false }),
      default: undefined,
    },
  },
  { versionKey: false },
);

export type UserDoc = InferSchemaType<typeof userSchema> & { _id: mongoose.Types.ObjectId };
export type SessionDoc = InferSchemaType<typeof sessionSchema> & { _id: mongoose.Types.ObjectId };
export interface SessionVersionDoc {
  _id: string;
  sessionId: mongoose.Types.ObjectId;
  /** JSON text; a subdocument in versions written before versions were text. */
  state: string | SessionState;
}
/** What changes from one version of a session to the next. */
export type SessionState = Pick<
  SessionDoc,
  'lastSavedAt' | 'expiresAt' | 'policy' | 'policySeconds' | 'policyDate' | 'limitedBy' | 'endedAt' | 'endReason' | 'version' | 'updatedAt'
>;
/** The version `version` of session `sessionId` is about to be committed. */
export interface SessionIntentDoc {
  sessionId: mongoose.Types.ObjectId;
  version: number;
}
/** A record of the session_changes log: a write (`session`) or a write about to be committed (`intent`). */
export type SessionChangeDoc =
  | { _id: mongoose.Types.ObjectId; at: Date; session: SessionDoc; intent?: undefined }
  | { _id: mongoose.Types.ObjectId; at: Date; intent: SessionIntentDoc; session?: undefined };

export interface Models {
  User: Model<UserDoc>;
  Session: Model<SessionDoc>;
  SessionVersion: Model<SessionVersionDoc>;
  SessionChange: Model<SessionChangeDoc>;
}

export function createModels(conn: Connection): Models {
  return {
    User: conn.model<UserDoc>('User', userSchema, 'users'),
    Session: conn.model<SessionDoc>('Session', sessionSchema, 'sessions'),
    SessionVersion: conn.model<SessionVersionDoc>('SessionVersion', sessionVersionSchema, 'session_versions'),
    SessionChange: conn.model<SessionChangeDoc>('SessionChange', sessionChangeSchema, 'session_changes'),
  };
}

/**
 * The TTL index removes a session's record `retentionSeconds` after it stopped being valid.
 * Replaced when the retention setting changed, since MongoDB refuses to redefine an index in place.
 */
export async function ensureTtlIndex(models: Models, retentionSeconds: number): Promise<void> {
  const collection = models.Session.collection;
  const name = 'expiresAt_ttl';
  const existing = (await collection.indexes()).find((i) => i.name === name);
  if (existing && existing.expireAfterSeconds === retentionSeconds) return;
  if (existing) await collection.dropIndex(name);
  await collection.createIndex({ expiresAt: 1 }, { name, expireAfterSeconds: retentionSeconds });
}
