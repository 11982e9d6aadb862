import type { mongo } from 'mongoose';
import type { Logger } from '../logger.js';
import type { SessionDoc } from '../store/models.js';
import type { ChangeFeed, FeedListener } from '../session.js';
import { CHANGE_FEED_OVERLAP_MS, toSession, type SessionStore } from '../store/sessionStore.js';

/** MongoDB change streams; after an error the stream is reopened after the last change it delivered. */
export class ChangeStreamFeed implements ChangeFeed {
  private stream: mongo.ChangeStream<SessionDoc> | null = null;
  private resumeToken: mongo.ResumeToken | undefined;
  private stopped = false;

  constructor(
    private readonly store: SessionStore,
    private readonly logger: Logger,
  ) {}

  async start(listener: FeedListener): Promise<void> {
    this.stopped = false;
    const stream = this.store.watchChanges(this.resumeToken);
    this.stream = stream;
    stream.on('change', (change) => {
      this.resumeToken = change._id;
      if ('fullDocument' in change && change.fullDocument) listener.sessionChanged(toSession(change.fullDocument));
    });
    stream.on('error', (err) => {
      if (this.stopped) return;
      this.logger.warn({ err }, 'change stream failed: reopening');
      void stream.close().catch(() => {});
      setTimeout(() => void this.start(listener).catch((e: unknown) => this.logger.error({ err: e }, 'reopening the change stream failed')), 500);
    });
    // The stream only delivers changes made after the server has registered it.
    await stream.tryNext().catch(() => null);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.stream?.close();
  }
}

const TRIM_INTERVAL_MS = 1_000;

/**
 * For servers without change streams: polls the session_changes log that every process's writes
 * fill (SessionStore with recordChanges). It looks back `overlapMs` further than the newest change
 * it has seen, since writers' clocks differ a little and a write may commit after a later one; the
 * receiver drops versions it has already seen. Each poller also trims the log.
 */
export class PollingFeed implements ChangeFeed {
  private timer: NodeJS.Timeout | null = null;
  private since = new Date();
  private lastReadAt = Date.now();
  private lastTrimAt = 0;
  private listener: FeedListener = { sessionChanged() {} };
  private polling: Promise<void> | null = null;
  /** When polls started failing (null while they work). */
  private failingSince: number | null = null;

  constructor(
    private readonly store: SessionStore,
    private readonly intervalMs: number,
    private readonly logger: Logger,
    private readonly overlapMs = CHANGE_FEED_OVERLAP_MS,
    /** How long the change records are kept; a poller that falls further behind rescans the sessions. */
    private readonly retentionMs = 10_000,
  ) {}

  async start(listener: FeedListener): Promise<void> {
    this.listener = listener;
    this.since = new Date();
    this.lastReadAt = Date.now();
    const tick = async () => {
      this.polling = this.read()
        .then(() => this.trim())
        .then(
          () => {
            if (this.failingSince !== null) this.logger.info({ failedForMs: Date.now() - this.failingSince }, 'polling for session changes works again');
            this.failingSince = null;
          },
          (err: unknown) => {
            // One line per outage, not one per poll.
            if (this.failingSince === null) this.logger.warn({ err: String(err) }, 'polling for session changes failed: retrying');
            this.failingSince ??= Date.now();
          },
        );
      await this.polling;
      if (this.timer) this.timer = setTimeout(tick, this.intervalMs);
    };
    this.timer = setTimeout(tick, this.intervalMs);
  }

  private async read(): Promise<void> {
    const startedAt = Date.now();
    const from = new Date(this.since.getTime() - this.overlapMs);
    const missedSome = startedAt - this.lastReadAt > this.retentionMs - this.overlapMs;
    if (missedSome) this.logger.warn('the change poller fell behind the change log: rescanning the sessions');
    const changes = missedSome ? await this.store.updatedSince(from) : await this.store.changesSince(from);
    this.lastReadAt = Math.max(this.lastReadAt, startedAt);
    for (const { at, session } of changes) {
      if (at > this.since) this.since = at;
      this.listener.sessionChanged(session);
    }
    this.listener.caughtUp?.(startedAt);
  }

  private async trim(): Promise<void> {
    const now = Date.now();
    if (now - this.lastTrimAt < TRIM_INTERVAL_MS) return;
    this.lastTrimAt = now;
    await this.store.forgetChangesBefore(new Date(now - this.retentionMs));
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.polling;
  }
}
