import type { ExpirySettings } from '../config.js';
import { expiresAtBrowserClose } from '../expiry/rules.js';
import type { Logger } from '../logger.js';
import { countOf, holds, itemsOf, withItem, withoutItem, type OneOrMore } from '../oneOrMore.js';
import { inSlices } from '../slices.js';
import type { EndReason, Session, SessionListener } from '../session.js';
import { within } from '../timeLimit.js';
import { EventQueue } from './eventQueue.js';
import { liveEvent, terminalEvent, type SessionEvent } from './events.js';
import type { Scheduler } from './scheduler.js';

/** What the hub asks of the session rules when deadlines fall due (SessionService). */
export interface SessionTimeouts {
  /** Ends each of `sessions` with TIMEOUT unless it was renewed or ended first; the latest version of each. */
  expireDue(sessions: Session[]): Promise<Session[]>;
  /** Makes a timeout announced without the database stick: ends the session whatever was written meanwhile. */
  endAfterAnnouncedTimeout(id: string): Promise<void>;
}

/** The sockets of a session, told once it has ended and its subscribers have been told (server/subscriptions.ts). */
export interface SessionSockets {
  sessionEnded(sessionId: string): void;
}

/** Browser-close presence: the live subscriptions of browser-close sessions (engine/presence.ts). */
export interface SubscriptionPresence {
  attach(sessionId: string): void;
  detach(sessionId: string): void;
  /** The session no longer expires at browser close: made one again, its presence starts afresh. */
  forget(sessionId: string): void;
}

/** Whether the database is there at all (store/databaseHealth.ts). */
export interface DatabaseHealth {
  /** False from when the database was found out of reach until it answers again. */
  readonly reachable: boolean;
  /** True when the database answers a ping within `ms`. */
  answers(ms: number): Promise<boolean>;
}

export interface HubDeps {
  sessions: SessionTimeouts;
  database: DatabaseHealth;
  presence: SubscriptionPresence;
  scheduler: Scheduler;
  now: () => number;
  /** Which sessions expire at browser close (their subscriptions count as the browser's presence). */
  expiry: ExpirySettings;
  loginUrl: string;
  logger: Logger;
  /** How long the re-check at expiry waits for the database before asking whether it is there at all. */
  recheckTimeoutMs: number;
  /** How long it waits in all for a database that answers those questions but has not decided. */
  recheckMaxWaitMs: number;
}

/** A database that does not answer a ping within this is taken to be out of reach. */
const PING_TIMEOUT_MS = 500;

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
    public present: boolean,
    /** Per-user feeds: changes of other sessions written before this were covered by the list at subscription. */
    readonly since: number,
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
  /** Almost always none or one (a Set only from the second on): most sessions have one socket. */
  subscribers: OneOrMore<Subscriber>;
  /** This process holds sockets authenticated with the session (subscribed or not): they close when it ends. */
  sockets: boolean;
}

/** Subscribers told of a burst of expiries per turn of the event loop. */
const DELIVERY_SLICE = 500;

/** About how many sockets a session's end reaches in this process: its subscribers, at least one (its sockets close). */
const reach = (w: Watched | undefined) => Math.max(1, countOf(w?.subscribers ?? null));

/** How long the hub remembers a session it has seen end, so that a change feed re-delivering older versions cannot revive it. */
const ENDED_MEMORY_MS = 60_000;
/**
 * A session is stamped before its insert can be seen, so the listing of a per-user feed may miss
 * one stamped up to this long before it: those are followed when they reach the hub.
 */
const LISTING_BLIND_MS = 1_000;

/**
 * This process's subscribers and the sessions they follow. It turns session changes (made here,
 * or seen on the change feed) into events, and ends followed sessions on time: one scheduler
 * deadline per followed session at its `expiresAt`, re-checked against the database when due.
 */
export class EventHub implements SessionListener {
  private readonly watched = new Map<string, Watched>();
  /** Sessions seen to end (their last version), with when they may be forgotten: an announced end not yet written, never. */
  private readonly ended = new Map<string, { session: Session; until: number }>();
  private sockets: SessionSockets = { sessionEnded() {} };
  private readonly userFeeds = new Map<string, Set<Subscriber>>();
  /** Per session, the callers of `unlessEnded` waiting for its end. */
  private readonly endWaiters = new Map<string, Set<() => void>>();
  private nextSubscriberId = 1;
  private recheckBatch = new Set<string>();
  private recheckRunning = false;
  /** While a burst of expiries is being delivered: the sessions whose sockets close once it has been. */
  private burstCloses: Array<{ id: string; weight: number }> | null = null;
  private pendingEnds: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly deps: HubDeps) {}

  /**
   * The server is stopping: announced ends still waiting for the database are given up to
   * `waitMs` to be written, then no longer retried. One not written lives on in the database, and
   * may have been renewed on another process meanwhile: it is logged as an error, by session.
   */
  async stop(waitMs = 5_000): Promise<void> {
    const written = await within(this.pendingEnds.then(() => true), waitMs, false);
    this.stopped = true;
    if (!written) {
      const unwritten = [...this.ended].filter(([, { until }]) => until === Number.POSITIVE_INFINITY).map(([id]) => id);
      this.deps.logger.error({ sessions: unwritten }, 'stopping with announced ends the database has not taken: those sessions may still be served by other processes');
    }
  }

  /** The socket layer, built after the hub. */
  closeSocketsWith(sockets: SessionSockets): void {
    this.sockets = sockets;
  }

  /** How many sessions have a subscriber in this process. */
  get subscribedCount(): number {
    let count = 0;
    for (const w of this.watched.values()) if (w.subscribers !== null) count++;
    return count;
  }

  /** Per-user feeds (allSessions subscriptions) of the user in this process. */
  feedCount(userId: string): number {
    return this.userFeeds.get(userId)?.size ?? 0;
  }

  hasSubscribers(sessionId: string): boolean {
    return (this.watched.get(sessionId)?.subscribers ?? null) !== null;
  }

  /**
   * Events about `own` (and, with allSessions, about `others` of the same user, as listed at
   * `listedAt`). A session that has already ended yields its terminal event at once, then the
   * stream completes; one whose expiry has passed ends at once through the usual deadline.
   */
  subscribe(own: Session, options: SubscribeOptions, others: Session[] = [], listedAt = this.deps.now()): EventQueue<SessionEvent> {
    // Read after this process last heard of it: the subscribers it already has learn of the end first.
    if (own.endedAt) this.sessionChanged(own);
    const last = this.ended.get(own.id)?.session;
    if (last) {
      const queue = new EventQueue<SessionEvent>();
      queue.push(terminalEvent(last, last.endReason!, new Date(this.deps.now()), this.deps.loginUrl));
      queue.end();
      this.closeSocketsSoon(own.id);
      return queue;
    }
    const present = this.expiresAtBrowserClose(own);
    const sub = new Subscriber(this, this.nextSubscriberId++, own.id, own.userId, options.leadSeconds * 1000, present, listedAt);
    this.follow(sub, own);
    if (sub.present) this.deps.presence.attach(own.id);
    if (options.allSessions) {
      sub.others = new Set();
      for (const s of others) if (s.id !== own.id && !s.endedAt && !this.ended.has(s.id)) this.follow(sub, s);
      const feed = this.userFeeds.get(sub.userId) ?? new Set();
      feed.add(sub);
      this.userFeeds.set(sub.userId, feed);
    }
    return sub;
  }

  /**
   * `work`'s result, or null as soon as this process learns that session `id` has ended (at once if
   * it knows): a subscription set up for a session that ends meanwhile is owed its terminal event
   * now, not once a slow read for its setup (a per-user feed's listing) has answered.
   */
  async unlessEnded<T>(id: string, work: Promise<T>): Promise<T | null> {
    if (this.ended.has(id)) {
      work.catch(() => {}); // not awaited: its failure is nobody's
      return null;
    }
    let wake!: () => void;
    const ended = new Promise<null>((resolve) => (wake = () => resolve(null)));
    const waiters = this.endWaiters.get(id) ?? new Set();
    waiters.add(wake);
    this.endWaiters.set(id, waiters);
    try {
      return await Promise.race([work, ended]);
    } finally {
      waiters.delete(wake);
      if (waiters.size === 0) this.endWaiters.delete(id);
    }
  }

  /**
   * The latest version this process knows of a session it follows or has seen end, or null. A
   * socket's session is followed from its connection_init on (`socketsOpened`), and every change
   * since has reached the hub, made here or delivered by the change feed.
   */
  known(id: string): Session | null {
    return this.ended.get(id)?.session ?? this.watched.get(id)?.session ?? null;
  }

  /** A session changed (here or in another process). Older or repeated versions are ignored. */
  sessionChanged(session: Session, replaced?: Session): void {
    // Also where none of its subscribers is: a process whose tab of it closed within the grace has
    // its release stored, and would end it once it is a browser-close session again.
    if (replaced && this.expiresAtBrowserClose(replaced) && !session.endedAt && !this.expiresAtBrowserClose(session)) {
      this.deps.presence.forget(session.id);
    }
    const w = this.watched.get(session.id);
    if (!w) {
      if (session.endedAt) return this.rememberEnded(session);
      // A session of a user with a per-user feed here: the feed may follow it (watch decides).
      if (this.userFeeds.has(session.userId) && !this.ended.has(session.id)) this.unwatchIfUnused(this.watch(session));
      return;
    }
    if (session.version <= w.session.version) return;
    const previous = w.session;
    w.session = session;
    if (session.endedAt) {
      this.terminate(w, session.endReason!);
      return;
    }
    this.updatePresence(w);
    if (session.expiry.expiresAt.getTime() !== previous.expiry.expiresAt.getTime()) {
      this.armExpiry(w);
      const event = liveEvent('EXPIRY_CHANGED', session, new Date(this.deps.now()));
      for (const sub of itemsOf(w.subscribers)) {
        sub.push(event);
        this.armExpiringSoon(sub, w);
      }
    }
  }

  /** The feed may have missed changes: the sessions followed here are read again. */
  missedChanges(): Iterable<string> {
    return this.watched.keys();
  }

  /**
   * A followed session the database no longer has: nobody can be served it, so its subscribers are
   * told it ended, as EXPIRED if its expiry has passed and else as REVOKED (how it ended is gone
   * with it).
   */
  sessionGone(id: string): void {
    const w = this.watched.get(id);
    if (w) this.terminate(w, w.session.expiry.expiresAt.getTime() <= this.deps.now() ? 'TIMEOUT' : 'REVOKED');
  }

  /**
   * This process holds sockets of `session`: it is followed so that they close when it ends, whether
   * or not they subscribed. Those of a session already ended close at once, also when the version
   * they were opened with was read before an end this hub has heard of since.
   */
  socketsOpened(session: Session): void {
    if (session.endedAt) this.rememberEnded(session);
    if (this.ended.has(session.id)) {
      this.closeSocketsSoon(session.id);
    } else {
      this.watch(session).sockets = true;
    }
  }

  /** The last socket of the session in this process closed. */
  socketsClosed(sessionId: string): void {
    const w = this.watched.get(sessionId);
    if (!w) return;
    w.sockets = false;
    this.unwatchIfUnused(w);
  }

  /** Starts following a session (its deadline, and the per-user feeds of its user that had not listed it). */
  private watch(session: Session): Watched {
    let w = this.watched.get(session.id);
    if (!w) {
      w = { session, subscribers: null, sockets: false };
      this.watched.set(session.id, w);
      this.armExpiry(w);
      const feed = this.userFeeds.get(session.userId);
      if (feed) for (const sub of feed) if (session.updatedAt.getTime() >= sub.since - LISTING_BLIND_MS) this.addFollower(w, sub);
    }
    return w;
  }

  private unwatchIfUnused(w: Watched): void {
    if (w.subscribers !== null || w.sockets) return;
    this.watched.delete(w.session.id);
    this.deps.scheduler.cancel(expiryKey(w.session.id));
  }

  private follow(sub: Subscriber, session: Session): void {
    this.addFollower(this.watch(session), sub);
  }

  private addFollower(w: Watched, sub: Subscriber): void {
    w.subscribers = withItem(w.subscribers, sub);
    if (w.session.id !== sub.ownSessionId) sub.others?.add(w.session.id);
    this.armExpiringSoon(sub, w);
  }

  /**
   * A session's own subscribers count as its browser's presence exactly while it expires at browser
   * close: those held since it last became a browser-close session.
   */
  private updatePresence(w: Watched): void {
    const present = this.expiresAtBrowserClose(w.session);
    let forget = false;
    for (const sub of itemsOf(w.subscribers)) {
      if (sub.ownSessionId !== w.session.id || sub.present === present) continue;
      sub.present = present;
      if (present) this.deps.presence.attach(sub.ownSessionId);
      else forget = true;
    }
    if (forget) this.deps.presence.forget(w.session.id);
  }

  private expiresAtBrowserClose(session: Session): boolean {
    return expiresAtBrowserClose(session.expiry.spec, this.deps.expiry);
  }

  /** Called once by the subscriber when its queue ends. */
  unsubscribe(sub: Subscriber): void {
    for (const id of sub.following()) {
      this.deps.scheduler.cancel(soonKey(sub, id));
      const w = this.watched.get(id);
      if (!w) continue;
      w.subscribers = withoutItem(w.subscribers, sub);
      this.unwatchIfUnused(w);
    }
    sub.others = null;
    if (sub.present) this.deps.presence.detach(sub.ownSessionId);
    const feed = this.userFeeds.get(sub.userId);
    feed?.delete(sub);
    if (feed?.size === 0) this.userFeeds.delete(sub.userId);
  }

  private armExpiry(w: Watched): void {
    const id = w.session.id;
    this.deps.scheduler.schedule(expiryKey(id), w.session.expiry.expiresAt.getTime(), this.expiryDue);
  }

  /** A followed session's deadline: one function for all of them (the scheduler hands it the key) rather than a closure each. */
  private readonly expiryDue = (key: string): void => this.queueRecheck(key.slice(EXPIRY_PREFIX.length));

  private armExpiringSoon(sub: Subscriber, w: Watched): void {
    if (sub.leadMs <= 0) return;
    const at = w.session.expiry.expiresAt.getTime() - sub.leadMs;
    this.deps.scheduler.schedule(soonKey(sub, w.session.id), at, () => {
      // Past the expiry (a client that reconnected after it) only EXPIRED is due.
      if (sub.closed || !holds(w.subscribers, sub) || this.deps.now() >= w.session.expiry.expiresAt.getTime()) return;
      sub.push(liveEvent('EXPIRING_SOON', w.session, new Date(this.deps.now())));
    });
  }

  /**
   * Deadlines that fall due together are re-checked with one database write, and only one is in
   * flight at a time: what falls due meanwhile waits for the next one (a slow database then gets
   * fewer, larger writes instead of a pile of small ones).
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
   * Followed sessions reached their expiry. The database decides: each is ended with TIMEOUT by
   * committing its next version, which fails where another writer (a renewal or an end in another
   * process, not seen here yet) committed that version first; those are read again and their latest
   * version applies. Only then is anything announced. A database that is slow but there is waited
   * for, up to `recheckMaxWaitMs`. One that is out of reach (the re-check fails, or a ping goes
   * unanswered: at once when the database was already found out of reach, else after
   * `recheckTimeoutMs`) or stuck (it answers pings but has not decided
   * by then) cannot keep a session alive: the sessions end on what this process knows, never past
   * their last known expiry, and that end is made to stick once the database answers again.
   */
  private async recheck(ids: string[]): Promise<void> {
    const due = this.dueSessions(ids);
    const latest = due.length > 0 ? this.deps.sessions.expireDue(due) : Promise.resolve([]);
    const giveUpAt = performance.now() + this.deps.recheckMaxWaitMs;
    // Known to be out (a dropped connection, pings unanswered): the first ping comes at once, not after
    // a wait for the commit. Still a ping: an event loop held by a burst makes pings look lost.
    let waitMs = this.deps.database.reachable ? this.deps.recheckTimeoutMs : 0;
    try {
      while (!(await within(latest.then(() => true), waitMs, false))) {
        if (!(await this.deps.database.answers(PING_TIMEOUT_MS))) throw new Error('the database does not answer');
        if (performance.now() >= giveUpAt) throw new Error(`the database answers but has not decided within ${this.deps.recheckMaxWaitMs} ms`);
        waitMs = this.deps.recheckTimeoutMs;
      }
      await this.applyInSlices(await latest);
    } catch (err) {
      this.deps.logger.warn({ err: String(err), sessions: ids.length }, 'expiry re-check failed: ending sessions on their last known expiry');
      latest.then((sessions) => this.applyInSlices(sessions), () => {}); // what it decided after all still applies
    }
    for (const session of this.dueSessions(ids)) {
      this.terminate(this.watched.get(session.id)!, 'TIMEOUT');
      this.endAfterAnnouncedTimeout(session.id);
    }
    for (const id of ids) {
      const w = this.watched.get(id);
      if (w) this.armExpiry(w);
    }
  }

  /**
   * The re-check's outcome, about DELIVERY_SLICE subscribers' events per turn of the event loop:
   * the events of thousands at once (executed and written for every subscriber) would hold the
   * process for seconds, with its health checks, database pings and change feed waiting behind them.
   */
  private async applyInSlices(sessions: Session[]): Promise<void> {
    // The sockets close after every event of the burst has gone (their teardown would otherwise
    // come between the slices, ahead of the later events), behind the next re-check's commit.
    const closes: Array<{ id: string; weight: number }> = [];
    this.burstCloses = closes;
    try {
      await inSlices(sessions, DELIVERY_SLICE, (session) => reach(this.watched.get(session.id)), (session) => this.sessionChanged(session));
    } finally {
      if (this.burstCloses === closes) this.burstCloses = null;
    }
    setImmediate(() => void inSlices(closes, DELIVERY_SLICE, (close) => close.weight, (close) => this.sockets.sessionEnded(close.id)));
  }

  private dueSessions(ids: string[]): Session[] {
    const now = this.deps.now();
    const due: Session[] = [];
    for (const id of ids) {
      const w = this.watched.get(id);
      if (w && w.session.expiry.expiresAt.getTime() <= now) due.push(w.session);
    }
    return due;
  }

  private terminate(w: Watched, reason: EndReason): void {
    const id = w.session.id;
    this.watched.delete(id);
    this.rememberEnded(w.session.endedAt ? w.session : { ...w.session, endedAt: new Date(this.deps.now()), endReason: reason });
    this.deps.scheduler.cancel(expiryKey(id));
    const event = terminalEvent(w.session, reason, new Date(this.deps.now()), this.deps.loginUrl);
    const sockets = reach(w);
    for (const sub of itemsOf(w.subscribers)) {
      this.deps.scheduler.cancel(soonKey(sub, id));
      sub.others?.delete(id);
      sub.push(event);
      if (sub.ownSessionId === id) sub.end();
    }
    this.closeSocketsSoon(id, sockets);
  }

  /** After the consumers have sent the terminal event and the completion (during a burst, after the whole burst's). `weight`: about how many sockets. */
  private closeSocketsSoon(sessionId: string, weight = 1): void {
    if (this.burstCloses) this.burstCloses.push({ id: sessionId, weight });
    else setImmediate(() => this.sockets.sessionEnded(sessionId));
  }

  private rememberEnded(session: Session): void {
    const now = this.deps.now();
    if (this.ended.has(session.id)) return;
    this.ended.set(session.id, { session, until: now + ENDED_MEMORY_MS });
    for (const wake of this.endWaiters.get(session.id) ?? []) wake();
    // Oldest first (insertion order): forget what has been kept long enough.
    for (const [id, { until }] of this.ended) {
      if (until > now) break;
      this.ended.delete(id);
    }
  }

  /**
   * Retries until the database answers: one session at a time, so a database that comes back is
   * not swamped, and every announced end is written before anything else of this hub's. Until it is
   * written, the end is remembered: `known` is how requests here see it (the session cache may hold
   * a renewal that this end overrides).
   */
  private endAfterAnnouncedTimeout(id: string): void {
    const announced = this.ended.get(id)!;
    announced.until = Number.POSITIVE_INFINITY;
    const written = () => {
      this.ended.delete(id);
      this.ended.set(id, { ...announced, until: this.deps.now() + ENDED_MEMORY_MS });
    };
    const attempt = (): Promise<void> =>
      this.deps.sessions.endAfterAnnouncedTimeout(id).then(written, async () => {
        await new Promise((resolve) => setTimeout(resolve, 1_000).unref());
        return this.stopped ? undefined : attempt();
      });
    this.pendingEnds = this.pendingEnds.then(attempt);
  }
}

const EXPIRY_PREFIX = 'expire:';
const expiryKey = (sessionId: string) => `${EXPIRY_PREFIX}${sessionId}`;
const soonKey = (sub: Subscriber, sessionId: string) => `soon:${sub.id}:${sessionId}`;
