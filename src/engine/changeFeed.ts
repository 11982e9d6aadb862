import type { mongo } from 'mongoose';
import type { Logger } from '../logger.js';
import type { Models, SessionDoc } from '../store/models.js';
import { toSession, type Session } from '../store/sessionStore.js';

/** Delivers every change to the sessions collection, from whichever process made it. */
export interface ChangeFeed {
  start(onChange: (session: Session) => void): Promise<void>;
  stop(): Promise<void>;
}

/** MongoDB change streams; after an error the stream is reopened after the last change it delivered. */
export class ChangeStreamFeed implements ChangeFeed {
  private stream: mongo.ChangeStream<SessionDoc> | null = null;
  private resumeToken: mongo.ResumeToken | undefined;
  private stopped = false;

  constructor(
    private readonly models: Models,
    private readonly logger: Logger,
  ) {}

  async start(onChange: (session: Session) => void): Promise<void> {
    this.stopped = false;
    const stream = this.models.Session.collection.watch<SessionDoc>(
      [{ $match: { operationType: { $in: ['insert', 'update', 'replace'] } } }],
      { fullDocument: 'updateLookup', ...(this.resumeToken ? { resumeAfter: this.resumeToken } : {}) },
    );
    this.stream = stream;
    stream.on('change', (change) => {
      this.resumeToken = change._id;
      if ('fullDocument' in change && change.fullDocument) onChange(toSession(change.fullDocument));
    });
    stream.on('error', (err) => {
      if (this.stopped) return;
      this.logger.warn({ err }, 'change stream failed: reopening');
      void stream.close().catch(() => {});
      setTimeout(() => void this.start(onChange).catch((e: unknown) => this.logger.error({ err: e }, 'reopening the change stream failed')), 500);
    });
    // The stream only delivers changes made after the server has registered it.
    await stream.tryNext().catch(() => null);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.stream?.close();
  }
}

/**
 * For servers without change streams: reads what changed since the last poll, through the index
 * on `updatedAt`. It looks back `overlapMs` further than the newest change it has seen, since
 * writers' clocks differ a little and a write may commit after a later one; the receiver drops
 * versions it has already seen.
 */
export class PollingFeed implements ChangeFeed {
  private timer: NodeJS.Timeout | null = null;
  private since = new Date();

  constructor(
    private readonly models: Models,
    private readonly intervalMs: number,
    private readonly logger: Logger,
    private readonly overlapMs = 1000,
  ) {}

  async start(onChange: (session: Session) => void): Promise<void> {
    this.since = new Date();
    const poll = async () => {
      try {
        const from = new Date(this.since.getTime() - this.overlapMs);
        const docs = await this.models.Session.find({ updatedAt: { $gt: from } }).sort({ updatedAt: 1 }).lean<SessionDoc[]>();
        for (const doc of docs) {
          if (doc.updatedAt > this.since) this.since = doc.updatedAt;
          onChange(toSession(doc));
        }
      } catch (err) {
        this.logger.warn({ err }, 'polling for session changes failed');
      }
      if (this.timer) this.timer = setTimeout(poll, this.intervalMs);
    };
    this.timer = setTimeout(poll, this.intervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
