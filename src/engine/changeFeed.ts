import type { mongo } from 'mongoose';
import pLimit from 'p-limit';
import type { Logger } from '../logger.js';
import type { SessionDoc } from '../store/models.js';
import type { ChangeFeed, FeedListener, Session } from '../session.js';
import { CHANGE_FEED_OVERLAP_MS, type LoggedChange, type SessionStore } from '../store/sessionStore.js';

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
      if ('fullDocument' in change && change.fullDocument) listener.sessionChanged(this.store.toSession(change.fullDocument));
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

/** How the polling feed settles the intents of the change log (SessionStore.recordIntents). */
export interface IntentTiming {
  /** How long after first seeing an intent the feed waits for its change before reading the session (the change record normally follows within milliseconds). */
  graceMs: number;
  /** When a read still finds an older version (the commit may be in flight on a slow database): the waits before each next read; then the feed gives up. */
  recheckMs: number[];
  /** Reads of sessions at once. */
  maxConcurrentReads: number;
}

export const INTENT_TIMING: IntentTiming = { graceMs: 1_000, recheckMs: [1_000, 2_000, 4_000, 8_000, 16_000, 32_000], maxConcurrentReads: 4 };

export interface PollingFeedOptions {
  /** How far before the newest record seen each read looks back. */
  overlapMs?: number;
  /** How long the change records are kept; a poller that falls further behind rescans the sessions. */
  retentionMs?: number;
  intentTiming?: IntentTiming;
  /** The wall clock the change records are stamped with (ms since the epoch). */
  now?: () => number;
}

interface PendingIntent {
  version: number;
  /** Its newest stamp in the log (ms), for forgetting it once the poller no longer reads it. */
  at: number;
  /** When to read the session (monotonic clock). */
  dueAt: number;
  rechecks: number;
}

/**
 * For servers without change streams: polls the session_changes log that every process's writes
 * fill (SessionStore with recordChanges). It looks back `overlapMs` further than the newest change
 * it has seen, since writers' clocks differ a little and a write may commit after a later one; the
 * receiver drops versions it has already seen. Each poller also trims the log.
 *
 * A writer logs an intent before each commit and the change after it. An intent settles when the
 * feed delivers a change of its session at least as new; one still unsettled after the grace (its
 * writer died or lost the database between the commit and the record) is settled by reading the
 * session, and the version read is delivered like a change. A read that finds an older version
 * (a commit still in flight, or one that lost or failed) is made again later, then given up.
 */
export class PollingFeed implements ChangeFeed {
  private timer: NodeJS.Timeout | null = null;
  /** Set by start, as lastRead. */
  private since!: Date;
  /** Every change made before it is delivered (or, after `missed`, is being read again): on the wall clock and on the monotonic one. */
  private lastRead!: { wall: number; monotonic: number };
  /** On the monotonic clock. */
  private lastTrimAt = Number.NEGATIVE_INFINITY;
  private listener: FeedListener = { sessionChanged() {} };
  private polling: Promise<void> | null = null;
  /** When polls started failing (null while they work). */
  private failingSince: number | null = null;
  /** Intents waiting for their change, by session id. */
  private readonly pending = new Map<string, PendingIntent[]>();
  /** Intents settled or given up (`<session id>:<version>` → newest stamp), kept while the poller still reads them, so that they are not taken up again. */
  private readonly settled = new Map<string, number>();
  private resolving: Promise<void> | null = null;
  /** Sessions whose changes the feed may have missed (it fell behind its log), to read again until each read works. */
  private readonly toReread = new Set<string>();
  private rereading: Promise<void> | null = null;
  private readonly readLimit: ReturnType<typeof pLimit>;

  private readonly overlapMs: number;
  private readonly retentionMs: number;
  private readonly intentTiming: IntentTiming;
  private readonly now: () => number;

  constructor(
    private readonly store: SessionStore,
    private readonly intervalMs: number,
    private readonly logger: Logger,
    options: PollingFeedOptions = {},
  ) {
    this.overlapMs = options.overlapMs ?? CHANGE_FEED_OVERLAP_MS;
    this.retentionMs = options.retentionMs ?? 10_000;
    this.intentTiming = options.intentTiming ?? INTENT_TIMING;
    this.now = options.now ?? Date.now;
    this.readLimit = pLimit(this.intentTiming.maxConcurrentReads);
  }

  async start(listener: FeedListener): Promise<void> {
    this.listener = listener;
    this.since = new Date(this.now());
    this.lastRead = { wall: this.now(), monotonic: performance.now() };
    const tick = async () => {
      this.polling = this.read()
        .then(() => this.resolveDueIntents())
        .then(() => this.rereadMissed())
        .then(() => this.trim())
        .then(
          () => {
            if (this.failingSince !== null) this.logger.info({ failedForMs: Math.round(performance.now() - this.failingSince) }, 'polling for session changes works again');
            this.failingSince = null;
          },
          (err: unknown) => {
            // One line per outage, not one per poll.
            if (this.failingSince === null) this.logger.warn({ err: String(err) }, 'polling for session changes failed: retrying');
            this.failingSince ??= performance.now();
          },
        );
      await this.polling;
      if (this.timer) this.timer = setTimeout(tick, this.intervalMs);
    };
    this.timer = setTimeout(tick, this.intervalMs);
  }

  private async read(): Promise<void> {
    const started = { wall: this.now(), monotonic: performance.now() };
    // Records stamped later than this clock reads: it was stepped back (or their writer's runs
    // ahead). Records made from now on are stamped earlier than those: read from what it reads.
    if (this.since.getTime() > started.wall) this.since = new Date(started.wall);
    const from = new Date(this.since.getTime() - this.overlapMs);
    const changes: LoggedChange[] = await this.store.changesSince(from);
    // The log keeps `retentionMs` of the wall clock. This read may have run as late as it was
    // answered, and the last one as early as it began: that far apart, records made in between may
    // have been trimmed. By either clock: a step of the wall clock forward moves the trimming on
    // that far, a step back hides the time that passed.
    const answered = { wall: this.now(), monotonic: performance.now() };
    const sinceLastRead = Math.max(answered.wall - this.lastRead.wall, answered.monotonic - this.lastRead.monotonic);
    const missedSome = sinceLastRead > this.retentionMs - this.overlapMs;
    if (missedSome) changes.push(...(await this.missed(from)));
    this.lastRead = missedSome ? answered : started;
    for (const change of changes) {
      if (change.at > this.since) this.since = change.at;
      if (change.intent) this.intentSeen(change.intent.sessionId, change.intent.version, change.at.getTime());
      else this.deliver(change.session);
    }
    this.listener.caughtUp?.(started.monotonic);
    // Records older than this are not read again.
    const forgetBefore = this.since.getTime() - this.overlapMs;
    for (const [key, at] of this.settled) if (at < forgetBefore) this.settled.delete(key);
  }

  /**
   * What the log may no longer hold: the sessions whose documents changed since `from` (new ones
   * among them), and every session the listener follows, read again in the background (`rereadMissed`):
   * a session document is not a reliable witness of the latest version (a timeout does not update
   * it, nor does a writer that died after its commit), and what the listener held of the others it
   * has dropped. The polls go on meanwhile, so that the log covers every change from now on however
   * long the reads take.
   */
  private async missed(from: Date): Promise<LoggedChange[]> {
    for (const id of this.listener.missedChanges?.() ?? []) this.toReread.add(id);
    const changed = await this.store.updatedSince(from);
    // Once it worked, not at every poll that fails while the database is out.
    this.logger.warn({ sessions: this.toReread.size }, 'the change poller fell behind the change log: reading again the sessions it follows');
    return changed;
  }

  /** Starts reading again the sessions of `toReread`, a few at a time; one round at a time. A read that fails is left for the next round. */
  private rereadMissed(): void {
    if (this.rereading || this.toReread.size === 0) return;
    const rereadOne = async (id: string) => {
      if (!this.timer) return; // stopped: the reads still queued are not made
      try {
        const session = await this.store.findById(id);
        this.toReread.delete(id);
        if (session) this.deliver(session);
        else this.listener.sessionGone?.(id);
      } catch {
        // The database is out: read in the next round.
      }
    };
    this.rereading = Promise.all([...this.toReread].map((id) => this.readLimit(() => rereadOne(id)))).then(() => {
      this.rereading = null;
    });
  }

  /** Hands a version to the listener, settling the intents of its session that it covers. */
  private deliver(session: Session): void {
    for (const intent of this.pending.get(session.id) ?? []) {
      if (intent.version <= session.version) this.settle(session.id, intent);
    }
    this.listener.sessionChanged(session);
  }

  /** No longer waited for: remembered while the poller still reads its record. */
  private settle(sessionId: string, intent: PendingIntent): void {
    const left = (this.pending.get(sessionId) ?? []).filter((other) => other !== intent);
    if (left.length > 0) this.pending.set(sessionId, left);
    else this.pending.delete(sessionId);
    const key = `${sessionId}:${intent.version}`;
    this.settled.set(key, Math.max(intent.at, this.settled.get(key) ?? intent.at));
  }

  /** An intent read from the log: taken up unless it is already (the overlap is read at every poll, and writers that race log the same version). */
  private intentSeen(sessionId: string, version: number, at: number): void {
    const key = `${sessionId}:${version}`;
    const settledAt = this.settled.get(key);
    if (settledAt !== undefined) {
      this.settled.set(key, Math.max(at, settledAt));
      return;
    }
    const intents = this.pending.get(sessionId) ?? [];
    const known = intents.find((intent) => intent.version === version);
    if (known) {
      known.at = Math.max(known.at, at);
      return;
    }
    intents.push({ version, at, dueAt: performance.now() + this.intentTiming.graceMs, rechecks: 0 });
    this.pending.set(sessionId, intents);
  }

  /**
   * Starts reading the sessions of the intents whose grace has passed, a few at a time, without
   * holding up the polls; one round at a time. A read that fails leaves its intent due for the next.
   */
  private resolveDueIntents(): void {
    if (this.resolving || this.pending.size === 0) return;
    const now = performance.now();
    const due: Array<[string, PendingIntent]> = [];
    for (const [sessionId, intents] of this.pending) {
      for (const intent of intents) if (intent.dueAt <= now) due.push([sessionId, intent]);
    }
    if (due.length === 0) return;
    const resolveOne = async (sessionId: string, intent: PendingIntent) => {
      try {
        const session = await this.store.findById(sessionId);
        if (!this.pending.get(sessionId)?.includes(intent)) return; // settled meanwhile
        if (session && session.version >= intent.version) return this.deliver(session);
        if (session && intent.rechecks < this.intentTiming.recheckMs.length) {
          intent.dueAt = performance.now() + this.intentTiming.recheckMs[intent.rechecks++]!;
          return;
        }
        // Purged, or a commit that never came (it failed, or its writer died before it).
        this.logger.debug({ sessionId, version: intent.version, found: session?.version ?? null }, 'intent never committed: given up');
        this.settle(sessionId, intent);
        if (!session) this.listener.sessionGone?.(sessionId);
      } catch {
        // The database is out: due again at the next poll that works.
      }
    };
    this.resolving = Promise.all(due.map(([sessionId, intent]) => this.readLimit(() => resolveOne(sessionId, intent)))).then(
      () => {
        this.resolving = null;
      },
    );
  }

  private async trim(): Promise<void> {
    if (performance.now() - this.lastTrimAt < TRIM_INTERVAL_MS) return;
    this.lastTrimAt = performance.now();
    await this.store.forgetChangesBefore(new Date(this.now() - this.retentionMs));
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.polling;
    await Promise.all([this.resolving, this.rereading]);
  }
}
