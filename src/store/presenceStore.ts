import { Schema, type Connection, type Model } from 'mongoose';

/**
 * Browser-close presence, stored so that each document has one writer (FerretDB 1.24 does not
 * apply concurrent updates of one document atomically; inserts by _id and deletions are safe):
 *
 * - `server_processes`: one document per server process, its lease. Only that process writes it
 *   (renews it every heartbeat, deletes it at a graceful stop); the others only delete it once
 *   its lease has long run out.
 * - `session_presence`: one document per (session, process) that has had live subscriptions of
 *   the session. Only that process writes it; any process deletes those of a session that is over.
 */
export interface Holder {
  sessionId: string;
  processId: string;
  /** The process has live subscriptions of the session (as long as its lease runs). */
  live: boolean;
  /** When it released its last one (live: false). */
  releasedAt: Date | null;
}

interface HolderDoc extends Holder {
  _id: string;
}

interface ProcessDoc {
  _id: string;
  leaseUntil: Date;
}

const holderSchema = new Schema<HolderDoc>(
  {
    _id: { type: String, required: true },
    sessionId: { type: String, required: true, index: true },
    processId: { type: String, required: true, index: true },
    live: { type: Boolean, required: true },
    releasedAt: { type: Date, default: null },
  },
  { versionKey: false },
);

const processSchema = new Schema<ProcessDoc>(
  {
    _id: { type: String, required: true },
    leaseUntil: { type: Date, required: true },
  },
  { versionKey: false },
);

const holderId = (sessionId: string, processId: string) => `${sessionId}:${processId}`;

export class PresenceStore {
  private readonly holders: Model<HolderDoc>;
  private readonly processes: Model<ProcessDoc>;

  constructor(conn: Connection) {
    this.holders = conn.model<HolderDoc>('SessionPresence', holderSchema, 'session_presence');
    this.processes = conn.model<ProcessDoc>('ServerProcess', processSchema, 'server_processes');
  }

  async init(): Promise<void> {
    await Promise.all([this.holders.init(), this.processes.init()]);
  }

  /** The process's own lease: created at start, then renewed by its heartbeat. */
  async renewLease(processId: string, leaseUntil: Date): Promise<void> {
    await this.processes.updateOne({ _id: processId }, { $set: { leaseUntil } }, { upsert: true });
  }

  async removeProcess(processId: string): Promise<void> {
    await this.processes.deleteOne({ _id: processId });
  }

  /** Forgets processes whose lease ran out before `before`. */
  async forgetProcessesGoneBefore(before: Date): Promise<void> {
    await this.processes.deleteMany({ leaseUntil: { $lt: before } });
  }

  /** Every process's lease end, by process id. */
  async leases(): Promise<Map<string, number>> {
    const docs = await this.processes.find().lean<ProcessDoc[]>();
    return new Map(docs.map((d) => [d._id, d.leaseUntil.getTime()]));
  }

  /** Written by `processId` only, for its own holding of the session. */
  async saveHolder(sessionId: string, processId: string, live: boolean, releasedAt: Date | null): Promise<void> {
    await this.holders.updateOne(
      { _id: holderId(sessionId, processId) },
      { $set: { sessionId, processId, live, releasedAt } },
      { upsert: true },
    );
  }

  /** A graceful stop: the process releases every session it still holds. */
  async releaseAll(processId: string, at: Date): Promise<void> {
    await this.holders.updateMany({ processId, live: true }, { $set: { live: false, releasedAt: at } });
  }

  /** Sessions with a holder that has let go: released, or a process not in `aliveProcessIds`. */
  async sessionsLetGo(aliveProcessIds: string[]): Promise<string[]> {
    const docs = await this.holders
      .find({ $or: [{ live: false }, { processId: { $nin: aliveProcessIds } }] }, { sessionId: 1 })
      .lean<Pick<HolderDoc, 'sessionId'>[]>();
    return [...new Set(docs.map((d) => d.sessionId))];
  }

  async holdersOf(sessionIds: string[]): Promise<Holder[]> {
    return this.holders.find({ sessionId: { $in: sessionIds } }, { _id: 0 }).lean<Holder[]>();
  }

  /** A session that is over needs no presence any more. */
  async forgetSession(sessionId: string): Promise<void> {
    await this.holders.deleteMany({ sessionId });
  }
}
