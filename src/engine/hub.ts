import type { Logger } from '../logger.js';
import type { EndReason } from '../store/models.js';
import type { Session } from '../store/sessionStore.js';
import { EventQueue } from './eventQueue.js';
import { liveEvent, terminalEvent, type SessionEvent } from './events.js';
import type { Scheduler } from './scheduler.js';

export interface HubDeps {
  /** The current state of sessions that fell due, as far as the database knows better (the change feed's catchUp). */
  catchUp: (ids: string[]) => Promise<Session[]>;
  /** Records in the database that a session timed out (a conditional write: once, and only if it has). */
  recordTimeout: (id: string) => Promise<unknown>;
  scheduler: Scheduler;
  now: () => number;
  loginUrl: string;
  logger: Logger;
  /** Called once a session has ended and its subscribers have been told (the socket layer closes its sockets). */
  onSessionEnded: (sessionId: string) => void;
  /** How long the re-check at expiry may wait for the database before the session ends on what is known. */
  recheckTimeoutMs: number;
  /** Counts live subscriptions of browser-close sessions (see Presence). */
  presence: { attach(sessionId: string): void; detach(sessionId: string): void };
}

export interface SubscribeOptions {
  /** Seconds before expiry at which EXPIRING_SOON is sent; 0 sends none. */
  leadSeconds: number;
  /** Also follow the user's other sessions (a per-user feed). */
  allSessions: boolean;
}

/** One subscription: the queue its events go to, and what it follows. Every idle socket holds one, so it is lean. */
class Subscriber extends EventQueue<SessionEvent> {
  /** The user's other sessions this subscriber follows (per-user feeds only). */
  others: Set<string> | null = null;

  constructor(
    private readonly hub: EventHub,
    readonly id: number,
    readonly ownSessionId: string,
    readonly userId: string,
    readonly leadMs: number,
    /** Counted as a live subscription of a browser-close session. */
    readonly present: boolean,
  ) {
    super();
  }

  *following(): Iterable<string> {
    yield this.ownSessionId;
    if (this.others) yield* this.others;
  }

  protected override ended(): void {
    this.hub.unsubscribe(this);
  }
}

interface Watched {
  session: Session;
  subscribers: Set<Subscriber>;
}

/**
 * This process's subscribers and the sessions they follow. It turns session changes (made here,
 * or seen on the change feed) into events, and ends followed sessions on time: one scheduler
 * deadline per followed session at its `expiresAt`, re-checked against the database when due.
 */
export class EventHub {
  private readonly watched = new Map<string, Watched>();
  private readonly userFeeds = new Map<string, Set<Subscriber>>();
  private nextSubscriberId = 1;
  private recheckBatch = new Set<string>();
  private recheckRunning = false;
  private endWrites: Promise<void> = Promise.resolve();

  constructor(private readonly deps: HubDeps) {}

  get watchedCount(): number {
    return this.watched.size;
  }

  isWatching(sessionId: string): boolean {
    return this.watched.has(sessionId);
  }

  /**
   * Events about `own` (and, with allSessions, about `others` of the same user). A session that
   * has already ended yields its terminal event at once, then the stream completes.
   */
  subscribe(own: Session, options: SubscribeOptions, others: Session[] = []): EventQueue<SessionEvent> {
    const now = this.deps.now();
    if (own.endedAt || own.expiry.expiresAt.getTime() <= now) {
      const queue = new EventQueue<SessionEvent>();
      const reason = own.endReason ?? 'TIMEOUT';
      queue.push(terminalEvent(own, reason, new Date(now), this.deps.loginUrl));
      queue.end();
      if (!own.endedAt) this.recordTimeout(own.id);
      this.closeSocketsSoon(own.id);
      return queue;
    }
    const present = own.expiry.spec.policy === 'BROWSER_CLOSE';
    const sub = new Subscriber(this, this.nextSubscriberId++, own.id, own.userId, options.leadSeconds * 1000, present);
    this.follow(sub, own);
    if (sub.present) this.deps.presence.attach(own.id);
    if (options.allSessions) {
      sub.others = new Set();
      for (const s of others) if (s.id !== own.id && !s.endedAt) this.follow(sub, s);
      const feed = this.userFeeds.get(sub.userId) ?? new Set();
      feed.add(sub);
      this.userFeeds.set(sub.userId, feed);
    }
    return sub;
  }

  /** A session changed (here or in another process). Older or repeated versions are ignored. */
  handle(session: Session): void {
    const w = this.watched.get(session.id);
    if (!w) {
      const feed = this.userFeeds.get(session.userId);
      if (feed && !session.endedAt) for (const sub of feed) this.follow(sub, session);
      return;
    }
    if (session.version <= w.session.version) return;
    const previous = w.session;
    w.session = session;
    if (session.endedAt) {
      this.terminate(w, session.endReason ?? 'TIMEOUT');
    } else if (session.expiry.expiresAt.getTime() !== previous.expiry.expiresAt.getTime()) {
      this.armExpiry(w);
      const event = liveEvent('EXPIRY_CHANGED', session, new Date(this.deps.now()));
      for (const sub of w.subscribers) {
        sub.push(event);
        this.armExpiringSoon(sub, w);
      }
    }
  }

  private follow(sub: Subscriber, session: Session): void {
    let w = this.watched.get(session.id);
    if (!w) {
      w = { session, subscribers: new Set() };
      this.watched.set(session.id, w);
      this.armExpiry(w);
    }
    w.subscribers.add(sub);
    if (session.id !== sub.ownSessionId) sub.others?.add(session.id);
    this.armExpiringSoon(sub, w);
  }

  /** Called once by the subscriber when its queue ends. */
  unsubscribe(sub: Subscriber): void {
    for (const id of sub.following()) {
      this.deps.scheduler.cancel(soonKey(sub, id));
      const w = this.watched.get(id);
      if (!w) continue;
      w.subscribers.delete(sub);
      if (w.subscribers.size === 0) {
        this.watched.delete(id);
        this.deps.scheduler.cancel(expiryKey(id));
      }
    }
    sub.others = null;
    if (sub.present) this.deps.presence.detach(sub.ownSessionId);
    const feed = this.userFeeds.get(sub.userId);
    feed?.delete(sub);
    if (feed?.size === 0) this.userFeeds.delete(sub.userId);
  }

  private armExpiry(w: Watched): void {
    const id = w.session.id;
    this.deps.scheduler.schedule(expiryKey(id), w.session.expiry.expiresAt.getTime(), () => this.queueRecheck(id));
  }

  private armExpiringSoon(sub: Subscriber, w: Watched): void {
    if (sub.leadMs <= 0) return;
    const at = w.session.expiry.expiresAt.getTime() - sub.leadMs;
    this.deps.scheduler.schedule(soonKey(sub, w.session.id), at, () => {
      if (sub.closed || !w.subscribers.has(sub)) return;
      sub.push(liveEvent('EXPIRING_SOON', w.session, new Date(this.deps.now())));
    });
  }

  /**
   * Deadlines that fall due together are re-checked with one database read, and only one read is
   * in flight at a time: what falls due meanwhile waits for the next one (a slow database then
   * gets fewer, larger reads instead of a pile of small ones).
   */
  private queueRecheck(id: string): void {
    this.recheckBatch.add(id);
    if (this.recheckRunning) return;
    this.recheckRunning = true;
    setImmediate(() => void this.drainRechecks());
  }

  private async drainRechecks(): Promise<void> {
    while (this.recheckBatch.size > 0) {
      const ids = [...this.recheckBatch];
      this.recheckBatch = new Set();
      await this.recheck(ids);
    }
    this.recheckRunning = false;
  }

  /**
   * Followed sessions reached their expiry. The database decides: changes it holds that this
   * process has not seen yet (a renewal in another process) are applied first and move the
   * deadline; what is still due has expired, since no write can renew a session past its expiry.
   * If the database does not answer in time, the sessions end on what this process knows: never
   * kept alive past their last known expiry.
   */
  private async recheck(ids: string[]): Promise<void> {
    try {
      const fresh = await withTimeout(this.deps.catchUp(ids), this.deps.recheckTimeoutMs);
      for (const session of fresh) this.handle(session);
    } catch (err) {
      this.deps.logger.warn({ err, sessions: ids.length }, 'expiry re-check failed: ending sessions on their last known expiry');
    }
    const now = this.deps.now();
    for (const id of ids) {
      const w = this.watched.get(id);
      if (!w) continue;
      if (w.session.expiry.expiresAt.getTime() <= now) {
        this.terminate(w, 'TIMEOUT');
        this.recordTimeout(id);
      } else {
        this.armExpiry(w);
      }
    }
  }

  private terminate(w: Watched, reason: EndReason): void {
    const id = w.session.id;
    this.watched.delete(id);
    this.deps.scheduler.cancel(expiryKey(id));
    const event = terminalEvent(w.session, reason, new Date(this.deps.now()), this.deps.loginUrl);
    for (const sub of w.subscribers) {
      this.deps.scheduler.cancel(soonKey(sub, id));
      sub.others?.delete(id);
      sub.push(event);
      if (sub.ownSessionId === id) sub.end();
    }
    this.closeSocketsSoon(id);
  }

  /** After the consumers have sent the terminal event and the completion. */
  private closeSocketsSoon(sessionId: string): void {
    setImmediate(() => this.deps.onSessionEnded(sessionId));
  }

  /**
   * Records a timeout the subscribers have already been told of (the stored expiry had passed, so
   * nothing could have renewed it). One write at a time: a burst of expiries must not swamp the
   * database that the next re-check reads from.
   */
  private recordTimeout(id: string): void {
    this.endWrites = this.endWrites
      .then(() => this.deps.recordTimeout(id))
      .then(
        () => {},
        (err: unknown) => this.deps.logger.warn({ err }, 'could not record the end of a session'),
      );
  }
}

const expiryKey = (sessionId: string) => `expire:${sessionId}`;
const soonKey = (sub: Subscriber, sessionId: string) => `soon:${sub.id}:${sessionId}`;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
