/**
 * What the database costs on the server's hot paths, with the server's own schema and indexes:
 * each query the expiry path issues, timed (median of up to 5) on a scratch database holding 1 000
 * and then 10 000 session documents, with whether the database says it used an index.
 */
import mongoose from 'mongoose';
import { createModels } from '../src/store/models.js';

export interface ProbeRow {
  query: string;
  where: string;
  ms: Record<number, number>;
  indexed: string;
}

const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** Median of up to 5 runs (fewer once 3 s have gone by). */
async function time(fn: () => Promise<unknown>): Promise<number> {
  const samples: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < 5 && (i === 0 || performance.now() - t0 < 3000); i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  return median(samples);
}

/** FerretDB reports `filterPushdown`; MongoDB names its plan stages (IXSCAN, IDHACK, COLLSCAN). */
function indexUse(explain: Record<string, unknown>): string {
  if ('filterPushdown' in explain) return explain.filterPushdown ? 'pushed down' : 'full scan';
  const plan = JSON.stringify(explain.queryPlanner ?? explain);
  return /COLLSCAN/.test(plan) ? 'full scan' : /IXSCAN|IDHACK|EXPRESS/.test(plan) ? 'index' : '?';
}

export async function probeDatabase(uri: string, sizes = [1000, 10_000]): Promise<ProbeRow[]> {
  const conn = await mongoose.createConnection(uri, { serverSelectionTimeoutMS: 10_000 }).asPromise();
  try {
    const { Session, SessionChange } = createModels(conn);
    await Promise.all([Session.init(), SessionChange.init()]);
    const rows = new Map<string, ProbeRow>();
    const record = (query: string, where: string, size: number, ms: number, indexed: string) => {
      const row = rows.get(query) ?? { query, where, ms: {}, indexed };
      row.ms[size] = ms;
      row.indexed = indexed;
      rows.set(query, row);
    };
    let inserted = 0;
    const far = new Date(Date.now() + 3600_000);
    for (const size of sizes) {
      const now = new Date();
      const docs = Array.from({ length: size - inserted }, (_, k) => ({
        userId: new mongoose.Types.ObjectId(),
        secretHash: `${'0'.repeat(50)}${inserted + k}`.slice(-64),
        createdAt: now,
        lastSavedAt: now,
        expiresAt: far,
        policy: 'DATE',
        policyDate: far,
        limitedBy: 'POLICY',
        version: 1,
        updatedAt: new Date(now.getTime() - 60_000),
        userAgent: 'bench',
        clientAddress: '127.0.0.1',
      }));
      for (let i = 0; i < docs.length; i += 1000) await Session.insertMany(docs.slice(i, i + 1000), { lean: true });
      inserted = size;
      const ids = (await Session.find({}, { _id: 1 }).lean()).map((d) => d._id);
      const lastId = ids[ids.length - 1]!;
      // The change log holds the last 10 s of writes, whatever the number of sessions; 100 here.
      if (inserted === sizes[0]) {
        const changes = docs.slice(0, 100).map((session, k) => ({ at: new Date(now.getTime() - 5000 + k), session }));
        await SessionChange.insertMany(changes, { lean: true });
      }
      const probes: Array<[string, string, mongoose.Query<unknown, unknown>, () => Promise<unknown>]> = [
        ['findOne({ _id })', 'every authenticated request and socket (the token names its session)', Session.findOne({ _id: lastId }), () => Session.findById(lastId).lean()],
        [
          'session_changes.find({ at: { $gte } }).sort() (100 records)',
          'polling change feed every 100 ms, and the expiry re-check, without change streams',
          SessionChange.find({ at: { $gte: new Date(now.getTime() - 6000) } }).sort({ at: 1 }),
          () => SessionChange.find({ at: { $gte: new Date(now.getTime() - 6000) } }).sort({ at: 1 }).lean(),
        ],
        ['find({ _id: { $in: [1 id] } })', 'expiry re-check with change streams, one session due', Session.find({ _id: { $in: [lastId] } }), () => Session.find({ _id: { $in: [lastId] } }).lean()],
        ['find({ _id: { $in: [all ids] } })', 'expiry re-check with change streams, all due at once', Session.find({ _id: { $in: ids } }), () => Session.find({ _id: { $in: ids } }).lean()],
        [
          'find({ updatedAt: { $gt } }).sort()',
          'a polling feed that fell behind its change log (rare)',
          Session.find({ updatedAt: { $gt: new Date() } }).sort({ updatedAt: 1 }),
          () => Session.find({ updatedAt: { $gt: new Date() } }).sort({ updatedAt: 1 }).lean(),
        ],
        [
          'updateOne({ _id })',
          'every write of a session on FerretDB but a timeout, after the insert that decides it, and a read that found the document behind: the session document brought up to date in the background, once its version has been read by _id (store/versionWriters.ts)',
          Session.findOne({ _id: lastId }),
          () => Session.updateOne({ _id: lastId }, { $set: { version: 1 } }),
        ],
      ];
      for (const [query, where, explained, run] of probes) {
        const explain = (await explained.explain()) as unknown as Record<string, unknown>;
        record(query, where, size, await time(run), indexUse(Array.isArray(explain) ? explain[0] : explain));
      }
    }
    await conn.dropDatabase();
    return [...rows.values()];
  } finally {
    await conn.close();
  }
}
