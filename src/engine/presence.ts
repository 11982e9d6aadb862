import mongoose from 'mongoose';
import type { Logger } from '../logger.js';
import type { Models, SessionDoc } from '../store/models.js';
import type { Scheduler } from './scheduler.js';

/**
 * "Until the browser closes", seen from the server: the database counts the live subscriptions
 * of each browser-close session over all processes. When the count drops to zero, the session
 * ends with BROWSER_CLOSED after the grace period, unless a subscription came back meanwhile
 * (the ending update only wins while the count is still zero).
 */
export class Presence {
  /** Per session, the chain of its pending writes, so an attach and a detach never swap places. */
  private readonly pending = new Map<string, Promise<void>>();

  constructor(
    private readonly models: Models,
    private readonly scheduler: Scheduler,
    private readonly graceMs: number,
    private readonly endBrowserClosed: (id: string, detachedBefore: Date) => Promise<unknown>,
    private readonly now: () => number,
    private readonly logger: Logger,
  ) {}

  attach(sessionId: string): void {
    this.scheduler.cancel(graceKey(sessionId));
    this.enqueue(sessionId, async () => {
      await this.models.Session.updateOne(
        { _id: new mongoose.Types.ObjectId(sessionId), endedAt: null },
        { $inc: { liveSubscriptions: 1 }, $set: { detachedAt: null } },
      );
    });
  }

  detach(sessionId: string): void {
    this.enqueue(sessionId, async () => {
      const _id = new mongoose.Types.ObjectId(sessionId);
      const doc = await this.models.Session.findOneAndUpdate(
        { _id, endedAt: null },
        { $inc: { liveSubscriptions: -1 } },
        { returnDocument: 'after' },
      ).lean<SessionDoc>();
      if (!doc || doc.liveSubscriptions > 0) return;
      const detachedAt = new Date(this.now());
      await this.models.Session.updateOne({ _id, endedAt: null, liveSubscriptions: { $lte: 0 } }, { $set: { detachedAt } });
      this.armGrace(sessionId, detachedAt);
    });
  }

  /** At start-up: browser-close sessions whose last subscription went away while no server watched them. */
  async recover(): Promise<void> {
    const docs = await this.models.Session.find(
      { endedAt: null, policy: 'BROWSER_CLOSE', liveSubscriptions: { $lte: 0 }, detachedAt: { $ne: null } },
      { _id: 1, detachedAt: 1 },
    ).lean<Pick<SessionDoc, '_id' | 'detachedAt'>[]>();
    for (const doc of docs) this.armGrace(doc._id.toHexString(), doc.detachedAt!);
  }

  /** Waits for the writes in flight (at shutdown, before the connection closes). */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending.values());
  }

  private armGrace(sessionId: string, detachedAt: Date): void {
    this.scheduler.schedule(graceKey(sessionId), detachedAt.getTime() + this.graceMs, () => {
      const detachedBefore = new Date(this.now() - this.graceMs);
      this.endBrowserClosed(sessionId, detachedBefore).catch((err: unknown) =>
        this.logger.warn({ err }, 'could not end a browser-close session'),
      );
    });
  }

  private enqueue(sessionId: string, write: () => Promise<void>): void {
    const previous = this.pending.get(sessionId) ?? Promise.resolve();
    const next = previous
      .then(write)
      .catch((err: unknown) => this.logger.warn({ err }, 'could not update the live subscriptions of a session'))
      .finally(() => {
        if (this.pending.get(sessionId) === next) this.pending.delete(sessionId);
      });
    this.pending.set(sessionId, next);
  }
}

const graceKey = (sessionId: string) => `browser-close:${sessionId}`;
