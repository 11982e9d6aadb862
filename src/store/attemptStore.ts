import mongoose from 'mongoose';
import type { DatabaseCapabilities } from './capabilities.js';

/**
 * One attempt charged to one key (auth/attemptLimiter.ts): a login or a registration, counted
 * against a budget of attempts per window. An attempt is a document of its own, never an
 * increment of a counter: FerretDB 1.x loses concurrent `$inc`s of one document (capabilities.ts),
 * while every committed insert is there to be counted.
 */
export interface AttemptRecord {
  key: string;
  at: Date;
  /** When the record no longer counts under any budget of its key: the TTL index (or the purge) removes it then. */
  expiresAt: Date;
}

/** Where attempts are kept: in the database (MongoAttemptStore), or one process's memory (MemoryAttemptStore, for unit tests). */
export interface AttemptStore {
  /** Writes the records; returns their ids, in order. */
  insert(records: AttemptRecord[], now: Date): Promise<string[]>;
  /** How many records each key has with `at` after its `since`. */
  count(windows: Array<{ key: string; since: Date }>): Promise<Map<string, number>>;
  /** The `at` of the key's records after `since`, oldest first, the first `skip` left out, at most `limit`. */
  oldest(key: string, since: Date, skip: number, limit: number): Promise<Date[]>;
  /** Whether every one of the records is still there (none removed since they were written). */
  present(ids: string[]): Promise<boolean>;
  remove(ids: string[]): Promise<void>;
  /** Removes every record of the key charged at or before `upTo`. */
  removeKey(key: string, upTo: Date): Promise<void>;
}

interface AttemptDoc {
  _id: mongoose.Types.ObjectId;
  key: string;
  at: Date;
  expiresAt: Date;
}

const COLLECTION = 'auth_attempts';

/** Attempts in the `auth_attempts` collection, shared by every process on the database. */
export class MongoAttemptStore implements AttemptStore {
  private readonly collection: mongoose.mongo.Collection<AttemptDoc>;

  private constructor(conn: mongoose.Connection) {
    if (!conn.db) throw new Error('MongoAttemptStore needs an open connection');
    this.collection = conn.db.collection<AttemptDoc>(COLLECTION);
  }

  /** The store, with its indexes: a TTL index where the database has them, else the server calls `purgeExpired` (app.ts). */
  static async open(conn: mongoose.Connection, capabilities: Pick<DatabaseCapabilities, 'ttlIndexes'>): Promise<MongoAttemptStore> {
    const store = new MongoAttemptStore(conn);
    await store.collection.createIndex({ key: 1, at: 1 }, { name: 'key_at' });
    if (capabilities.ttlIndexes) await store.collection.createIndex({ expiresAt: 1 }, { name: 'expiresAt_ttl', expireAfterSeconds: 0 });
    return store;
  }

  async insert(records: AttemptRecord[]): Promise<string[]> {
    const result = await this.collection.insertMany(records.map((r) => ({ ...r }) as AttemptDoc), { ordered: true });
    return records.map((_, i) => String(result.insertedIds[i]));
  }

  /** One count per key, each an equality on the indexed key (FerretDB on PostgreSQL scans `$or`/`$in` queries). */
  async count(windows: Array<{ key: string; since: Date }>): Promise<Map<string, number>> {
    const counts = await Promise.all(windows.map((w) => this.collection.countDocuments({ key: w.key, at: { $gt: w.since } })));
    return new Map(windows.map((w, i) => [w.key, counts[i]!]));
  }

  async oldest(key: string, since: Date, skip: number, limit: number): Promise<Date[]> {
    const docs = await this.collection
      .find({ key, at: { $gt: since } }, { projection: { at: 1 } })
      .sort({ at: 1 })
      .skip(skip)
      .limit(limit)
      .toArray();
    return docs.map((d) => d.at);
  }

  async present(ids: string[]): Promise<boolean> {
    // By _id, one at a time: the lookup FerretDB makes with its index.
    const found = await Promise.all(ids.map((id) => this.collection.findOne({ _id: new mongoose.Types.ObjectId(id) }, { projection: { _id: 1 } })));
    return found.every((doc) => doc !== null);
  }

  async remove(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    // One delete per _id rather than one `$in`, which FerretDB on PostgreSQL answers with a scan.
    await Promise.all(ids.map((id) => this.collection.deleteOne({ _id: new mongoose.Types.ObjectId(id) })));
  }

  async removeKey(key: string, upTo: Date): Promise<void> {
    await this.collection.deleteMany({ key, at: { $lte: upTo } });
  }

  /** What the TTL index would do; returns how many records it removed. */
  async purgeExpired(now: Date): Promise<number> {
    return (await this.collection.deleteMany({ expiresAt: { $lte: now } })).deletedCount;
  }
}

/** Attempts in this process's memory: for unit tests, and for a service built without a database store. */
export class MemoryAttemptStore implements AttemptStore {
  private readonly records = new Map<string, AttemptRecord>();
  private nextId = 0;

  async insert(records: AttemptRecord[], now: Date): Promise<string[]> {
    for (const [id, r] of this.records) if (r.expiresAt <= now) this.records.delete(id);
    return records.map((r) => {
      const id = String(++this.nextId);
      this.records.set(id, { ...r });
      return id;
    });
  }

  async count(windows: Array<{ key: string; since: Date }>): Promise<Map<string, number>> {
    const counts = new Map(windows.map((w) => [w.key, 0]));
    for (const r of this.records.values()) {
      for (const w of windows) if (r.key === w.key && r.at > w.since) counts.set(w.key, counts.get(w.key)! + 1);
    }
    return counts;
  }

  async oldest(key: string, since: Date, skip: number, limit: number): Promise<Date[]> {
    return [...this.records.values()]
      .filter((r) => r.key === key && r.at > since)
      .map((r) => r.at)
      .sort((a, b) => a.getTime() - b.getTime())
      .slice(skip, skip + limit);
  }

  async present(ids: string[]): Promise<boolean> {
    return ids.every((id) => this.records.has(id));
  }

  async remove(ids: string[]): Promise<void> {
    for (const id of ids) this.records.delete(id);
  }

  async removeKey(key: string, upTo: Date): Promise<void> {
    for (const [id, r] of this.records) if (r.key === key && r.at <= upTo) this.records.delete(id);
  }

  /** How many records are kept (expired ones go at the next insert). */
  get size(): number {
    return this.records.size;
  }
}
