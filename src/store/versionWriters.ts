import mongoose from 'mongoose';
import type { DatabaseCapabilities } from './capabilities.js';
import type { Models, SessionDoc, SessionState, SessionVersionDoc } from './models.js';

/**
 * How the store writes version N+1 of a session so that exactly one writer succeeds, whatever runs
 * at the same time, and how it finds the latest version. One of two, chosen at start-up by probing
 * the database (store/capabilities.ts); docs/write-protocol.md says why each is safe.
 */
export interface VersionWriter {
  readonly name: 'atomic-updates' | 'inserted-versions';
  /** The session document brought up to its latest version. */
  latest(head: SessionDoc): Promise<SessionDoc>;
  /** Writes `next.version` over `next.version - 1`; true for the one writer that did. */
  commit(id: mongoose.Types.ObjectId, next: SessionState): Promise<boolean>;
  /** `commit` for many sessions at once (a burst of expiries), in as few round trips as the path allows. */
  commitMany(writes: Array<{ id: mongoose.Types.ObjectId; next: SessionState }>): Promise<boolean[]>;
  /** Waits for the housekeeping writes still in flight. */
  drain(): Promise<void>;
}

/**
 * MongoDB, where one update of one document is atomic: the update that writes version N+1 only
 * matches while the stored version is N.
 */
export class AtomicUpdates implements VersionWriter {
  readonly name = 'atomic-updates';

  constructor(private readonly models: Models) {}

  async latest(head: SessionDoc): Promise<SessionDoc> {
    return head;
  }

  async commit(id: mongoose.Types.ObjectId, next: SessionState): Promise<boolean> {
    const result = await this.models.Session.updateOne({ _id: id, version: next.version - 1 }, { $set: next });
    return result.matchedCount === 1;
  }

  commitMany(writes: Array<{ id: mongoose.Types.ObjectId; next: SessionState }>): Promise<boolean[]> {
    return Promise.all(writes.map(({ id, next }) => this.commit(id, next)));
  }

  async drain(): Promise<void> {}
}

interface WriteError {
  index: number;
  code: number;
}

const versionId = (id: mongoose.Types.ObjectId, version: number) => `${id.toHexString()}:${version}`;

type DateField = { [K in keyof SessionState]-?: NonNullable<SessionState[K]> extends Date ? K : never }[keyof SessionState];
/** Every field of a state that holds a date: the type makes a date field added to SessionState fail to compile until it is listed. */
const DATE_FIELDS: Record<DateField, true> = { lastSavedAt: true, expiresAt: true, policyDate: true, endedAt: true, updatedAt: true };
const DATE_FIELD_NAMES = Object.keys(DATE_FIELDS) as DateField[];
const isDateField = (key: string): key is DateField => Object.hasOwn(DATE_FIELDS, key);

/**
 * A version's state is stored as JSON text, its dates as milliseconds since the epoch, not as a
 * subdocument: FerretDB 1.x converts every field of a document it stores, and a burst of timeouts
 * is one insert of as many versions. 10 000 of them cost FerretDB on SQLite about 0.7 s of CPU as
 * subdocuments, 0.27 s as text.
 */
function storedState(state: SessionState): string {
  const stored: Record<string, unknown> = { ...state };
  for (const field of DATE_FIELD_NAMES) stored[field] = state[field]?.getTime() ?? null;
  return JSON.stringify(stored);
}

/** The state a version holds: as text, or as a subdocument where it was written before versions were text. */
export function versionState(stored: string | SessionState): SessionState {
  if (typeof stored !== 'string') return stored;
  return JSON.parse(stored, (key, value) => (isDateField(key) && typeof value === 'number' ? new Date(value) : value)) as SessionState;
}

/**
 * FerretDB 1.x, which computes an update and then replaces the document, so concurrent updates of
 * one document overwrite each other, but an insert of an _id that exists always fails. Version N+1
 * is committed by inserting the document `<id>:<N+1>`: the first insert wins, every other writer of
 * N+1 gets a duplicate key and reads again. The session document is updated after the commit as a
 * cache (it may lag, or even be overwritten by an older version in a race between two of these
 * updates), so readers start from it and follow the versions that exist beyond it.
 */
export class InsertedVersions implements VersionWriter {
  readonly name = 'inserted-versions';
  /** The session document updates in flight, by session id: at most one each. */
  private readonly housekeeping = new Map<string, Promise<void>>();

  constructor(private readonly models: Models) {}

  async latest(head: SessionDoc): Promise<SessionDoc> {
    let state: SessionState = head;
    for (;;) {
      const next = await this.models.SessionVersion.findById(versionId(head._id, state.version + 1)).lean<SessionVersionDoc>();
      if (!next) break;
      state = versionState(next.state);
    }
    if (state.version === head.version) return head;
    this.updateHead(head._id, state);
    return { ...head, ...state };
  }

  async commit(id: mongoose.Types.ObjectId, next: SessionState): Promise<boolean> {
    return (await this.commitMany([{ id, next }]))[0]!;
  }

  /** One unordered insert for all: each document goes in or fails on its own, a duplicate key only for the loser. */
  async commitMany(writes: Array<{ id: mongoose.Types.ObjectId; next: SessionState }>): Promise<boolean[]> {
    const won = writes.map(() => true);
    const docs = writes.map(({ id, next }) => ({ _id: versionId(id, next.version), sessionId: id, state: storedState(next) }));
    try {
      await this.models.SessionVersion.collection.insertMany(docs as never[], { ordered: false });
    } catch (err) {
      const { code, writeErrors } = err as { code?: number; writeErrors?: WriteError[] | WriteError };
      const failed = writeErrors === undefined ? (code === 11000 && writes.length === 1 ? [{ index: 0, code }] : []) : [writeErrors].flat();
      if (failed.length === 0 || failed.some((e) => e.code !== 11000)) throw err;
      for (const e of failed) won[e.index] = false;
    }
    // A timeout leaves the session document as it was: the expiries of a burst would otherwise each
    // update it, ahead of the next commits, and the first reader of the ended session repairs it.
    writes.forEach(({ id, next }, i) => won[i] && next.endReason !== 'TIMEOUT' && this.updateHead(id, next));
    return won;
  }

  async drain(): Promise<void> {
    while (this.housekeeping.size > 0) await Promise.all(this.housekeeping.values());
  }

  /**
   * Brings the cached state forward (never back, as far as this non-atomic update allows). FerretDB
   * looks a document up by index only for a filter on `_id` alone: with `version` in the filter
   * each of these updates scanned every session, holding the database's write lock meanwhile (on
   * SQLite, about 0.1 s per 1 000 sessions). So the version is compared on the document read by
   * `_id`, and it is written by `_id`. One at a time per session: every read of a lagging document
   * asks for one (a wave of reconnecting clients asked thousands), and the next read or write after
   * it brings the document further if need be.
   */
  private updateHead(id: mongoose.Types.ObjectId, state: SessionState): void {
    const key = id.toHexString();
    if (this.housekeeping.has(key)) return;
    const write = this.models.Session.findById(id, { version: 1 })
      .lean<Pick<SessionDoc, 'version'>>()
      .then(async (head) => {
        if (head && head.version < state.version) await this.models.Session.updateOne({ _id: id }, { $set: state });
      })
      .catch(() => {}) // a reader finds the version anyway; the next write or read repairs the cache
      .finally(() => this.housekeeping.delete(key));
    this.housekeeping.set(key, write);
  }
}

export class UnsafeDatabaseError extends Error {}

/**
 * The write path for this database, the same for every process on it: the first process records
 * what its probe found, later processes follow that record, and a process refuses to start where
 * no path would keep session writes safe.
 */
export async function chooseVersionWriter(
  models: Models,
  capabilities: Pick<DatabaseCapabilities, 'atomicUpdates' | 'uniqueInserts'>,
  log: (line: string) => void,
): Promise<VersionWriter> {
  if (!capabilities.uniqueInserts) {
    throw new UnsafeDatabaseError(
      'refusing to start: this database let several concurrent inserts of one _id succeed, so no write of a session could be made to happen once',
    );
  }
  const probed: VersionWriter['name'] = capabilities.atomicUpdates ? 'atomic-updates' : 'inserted-versions';
  const records = models.Session.db.collection<{ _id: string; writer: VersionWriter['name'] }>('write_protocol');
  await records.insertOne({ _id: 'sessions', writer: probed }).catch((err: { code?: number }) => {
    if (err.code !== 11000) throw err;
  });
  const chosen = (await records.findOne({ _id: 'sessions' }))?.writer ?? probed;
  if (chosen === 'atomic-updates' && !capabilities.atomicUpdates) {
    throw new UnsafeDatabaseError(
      'refusing to start: the sessions in this database are written with version-checked updates, which this database does not apply atomically',
    );
  }
  log(
    chosen === 'atomic-updates'
      ? 'session writes: this database applies concurrent updates of one document atomically; each version is a version-checked update'
      : `session writes: ${capabilities.atomicUpdates ? 'following this database\'s record' : 'this database does not apply concurrent updates of one document atomically'}; each version is an insert of <session>:<version>`,
  );
  return chosen === 'atomic-updates' ? new AtomicUpdates(models) : new InsertedVersions(models);
}
