import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type mongoose from 'mongoose';

export interface DatabaseCapabilities {
  ttlIndexes: boolean;
  changeStreams: boolean;
  /** Concurrent updates of one document are all applied, each on the document as the one before left it (MongoDB; not FerretDB 1.x). */
  atomicUpdates: boolean;
  /** Of concurrent inserts of one _id, exactly one succeeds (the primitive the session writes need everywhere). */
  uniqueInserts: boolean;
}

/** Concurrent writers per probe round: FerretDB 1.24 applied 5-7 of 50 concurrent $inc. */
const PROBE_WRITERS = 40;
const PROBE_ROUNDS = 3;

/** What the caller does instead, appended to the one log line per missing capability. */
export interface CapabilityFallbacks {
  ttlIndexes?: string; // e.g. 'expired sessions are purged by the server every 60 s'
  changeStreams?: string; // e.g. 'the change feed polls the session_changes log every 100 ms'
}

/**
 * Finds out by trying, on a scratch collection that is dropped afterwards, whether the server supports
 * TTL indexes (FerretDB v1: "not implemented") and change streams (FerretDB; a mongod without replica set),
 * and whether it applies concurrent writes of one document atomically (a real race, not a version string).
 * Logs one line per missing capability.
 */
export async function detectCapabilities(
  conn: mongoose.Connection,
  log: (line: string) => void,
  fallbacks: CapabilityFallbacks = {},
): Promise<DatabaseCapabilities> {
  await conn.asPromise();
  const db = conn.db;
  if (!db) throw new Error('detectCapabilities needs an open connection');
  const scratch = db.collection(`_capabilities_probe_${randomBytes(6).toString('hex')}`);
  try {
    const ttl = await attempt(() => scratch.createIndex({ at: 1 }, { expireAfterSeconds: 0 }));
    const changeStreams = await attempt(() => openChangeStream(scratch));
    const atomicUpdates = await probeAtomicUpdates(scratch);
    const uniqueInserts = await probeUniqueInserts(scratch);
    if (ttl !== true) {
      log(`database has no TTL indexes (${ttl}): ${fallbacks.ttlIndexes ?? 'expired sessions are purged by the server instead'}`);
    }
    if (changeStreams !== true) {
      log(`database has no change streams (${changeStreams}): ${fallbacks.changeStreams ?? 'the change feed polls the session_changes log instead'}`);
    }
    return { ttlIndexes: ttl === true, changeStreams: changeStreams === true, atomicUpdates, uniqueInserts };
  } finally {
    await scratch.drop().catch(() => {}); // older servers fail on a collection that was never created
  }
}

/** true, or the server's reason for refusing. */
async function attempt(fn: () => Promise<unknown>): Promise<true | string> {
  try {
    await fn();
    return true;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

// The driver sends the $changeStream aggregate only on the first read. A server without change streams
// refuses it at once; a replica set answers an empty batch within maxAwaitTimeMS. No error within
// the bounded wait counts as support.
async function openChangeStream(collection: mongoose.mongo.Collection): Promise<void> {
  const stream = collection.watch([], { maxAwaitTimeMS: 100 });
  try {
    const first = stream.tryNext();
    first.catch(() => {}); // may settle after the timeout below won the race
    await Promise.race([first, sleep(1_000, undefined, { ref: false })]);
  } finally {
    await stream.close().catch(() => {});
  }
}

/** Rounds of concurrent conditional `$inc` on one document: atomic only if every one of them is applied. */
async function probeAtomicUpdates(scratch: mongoose.mongo.Collection): Promise<boolean> {
  for (let round = 0; round < PROBE_ROUNDS; round++) {
    const _id = `inc-${round}` as never;
    await scratch.insertOne({ _id, n: 0 });
    await Promise.all(Array.from({ length: PROBE_WRITERS }, () => scratch.updateOne({ _id, n: { $gte: 0 } }, { $inc: { n: 1 } })));
    const doc = await scratch.findOne({ _id });
    if (doc?.n !== PROBE_WRITERS) return false;
  }
  return true;
}

/** Rounds of concurrent inserts of one _id: exactly one may succeed. */
async function probeUniqueInserts(scratch: mongoose.mongo.Collection): Promise<boolean> {
  for (let round = 0; round < PROBE_ROUNDS; round++) {
    const _id = `insert-${round}` as never;
    const results = await Promise.allSettled(Array.from({ length: PROBE_WRITERS }, () => scratch.insertOne({ _id })));
    if (results.filter((r) => r.status === 'fulfilled').length !== 1) return false;
  }
  return true;
}
