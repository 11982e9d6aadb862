import { setTimeout as sleep } from 'node:timers/promises';
import mongoose from 'mongoose';
import type { Logger } from '../logger.js';
import { isDatabaseUnreachable, isStorageFull } from './databaseErrors.js';

/**
 * How long an operation waits for a reachable server before it fails. The driver's default (30 s)
 * and mongoose's buffering (10 s) made every request hang that long while the database was out of
 * reach; with this a request fails within about a second with DATABASE_UNAVAILABLE (an operation
 * caught by the outage mid-flight is retried once by the driver, and may wait twice). A database
 * that is there is found again within a few milliseconds after a dropped connection, well within it.
 */
export const SERVER_SELECTION_TIMEOUT_MS = 750;
/**
 * A database that hangs (stopped, or its host gone without a reset) holds the operations already on
 * its connections until the driver's heartbeat gives up on it, which then fails them. The driver's
 * defaults (a heartbeat every 10 s, given up after 30 s) held requests about 40 s; with these, at
 * most about 11 s. Not shorter: an event loop held by a burst of expiries (up to about 6 s at
 * 50 000 sessions in the bench) must not make a heartbeat look lost.
 */
const HEARTBEAT_FREQUENCY_MS = 1_000;
const HEARTBEAT_TIMEOUT_MS = 10_000;
/** A heartbeat of the driver that has neither succeeded nor failed this long after it started: its monitor has hung. */
const HUNG_HEARTBEAT_MS = HEARTBEAT_TIMEOUT_MS + 5_000;
/** How long start-up waits for the database to answer at all. */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Opens the connection every database access goes through. Operations fail within
 * SERVER_SELECTION_TIMEOUT_MS once the database is out of reach, instead of being buffered, and
 * the driver reconnects by itself when it is back; start-up alone waits up to CONNECT_TIMEOUT_MS.
 * An operation whose answer has not started after `operationTimeoutMs` fails (its connection is
 * dropped): without it, one the database never answered, while it answered the heartbeats, held
 * its request for good, and with it every write of that session waiting its turn behind it.
 */
export async function connectDatabase(uri: string, { operationTimeoutMs }: { operationTimeoutMs: number }): Promise<mongoose.Connection> {
  const deadline = performance.now() + CONNECT_TIMEOUT_MS;
  for (;;) {
    const conn = mongoose.createConnection(uri, {
      serverSelectionTimeoutMS: SERVER_SELECTION_TIMEOUT_MS,
      heartbeatFrequencyMS: HEARTBEAT_FREQUENCY_MS,
      // The driver's heartbeat waits this long for an answer (and a new connection for its handshake).
      connectTimeoutMS: HEARTBEAT_TIMEOUT_MS,
      socketTimeoutMS: operationTimeoutMs,
      bufferCommands: false,
    });
    try {
      return await conn.asPromise();
    } catch (err) {
      await conn.close().catch(() => {});
      if (!isDatabaseUnreachable(err) || performance.now() >= deadline) throw err;
      await sleep(250);
    }
  }
}

/**
 * The driver's monitor of the database can hang for good on a connection the database is closing
 * (seen when the connections first go silent and are then closed: a heartbeat written then never
 * ends), after which the server stays unknown and every operation fails, long after the database is
 * back. When a heartbeat has been outstanding well past its timeout, the client is closed and
 * connected again (the models go on using it). Returns a function that stops watching.
 */
export function reconnectWhenMonitorHangs(conn: mongoose.Connection, logger: Logger): () => void {
  const client = conn.getClient();
  let heartbeatSince: number | null = null;
  let reconnecting = false;
  const ended = () => (heartbeatSince = null);
  client.on('serverHeartbeatStarted', () => (heartbeatSince = performance.now()));
  client.on('serverHeartbeatSucceeded', ended);
  client.on('serverHeartbeatFailed', ended);
  const timer = setInterval(() => {
    if (reconnecting || heartbeatSince === null || performance.now() - heartbeatSince < HUNG_HEARTBEAT_MS) return;
    reconnecting = true;
    logger.warn({ heartbeatOutstandingMs: Math.round(performance.now() - heartbeatSince) }, "the database driver's monitor has hung: reconnecting");
    client
      .close()
      .then(() => client.connect())
      .catch((err: unknown) => logger.warn({ err: String(err) }, 'reconnecting to the database failed: tried again'))
      .finally(() => {
        reconnecting = false;
        heartbeatSince = performance.now();
      });
  }, 1_000);
  timer.unref();
  return () => clearInterval(timer);
}

/** Whether the database answers (SessionStore). */
export interface Pingable {
  /** True when the database answers a ping within `ms`. */
  answers(ms: number): Promise<boolean>;
  /** True when a write goes through within `ms`. */
  takesWrites(ms: number): Promise<boolean>;
}

export interface DatabaseStatus {
  ok: boolean;
  /** 'full': its storage is full, it refuses writes. */
  database: 'reachable' | 'unreachable' | 'full';
  /** When the database was last found out of reach or full (ISO 8601), while it is. */
  since?: string;
}

export interface DatabaseHealthOptions {
  database: Pingable;
  /** The mongoose connection: its 'disconnected' event (the driver lost the server) is heard at once; the monitor stops when it closes. */
  connection: Pick<mongoose.Connection, 'on'>;
  logger: Logger;
  /** Between pings while the database answers. */
  intervalMs?: number;
  /** Between pings while it does not: how soon its return is noticed. */
  downIntervalMs?: number;
  /** A ping not answered within this counts as "out of reach". */
  pingTimeoutMs?: number;
}

/**
 * Tracks whether the database can be reached, for readiness (server/health.ts): a ping every
 * `intervalMs` (every `downIntervalMs` while out of reach), and the driver's word at once when it
 * loses the server. Logs one line when the database goes out of reach and one when it is back.
 * A database whose storage is full answers pings but refuses writes: a request's write refused so
 * (`refused`) makes it unready, and the checks try a write instead of a ping until one goes through.
 */
export class DatabaseHealth {
  private reachableNow = true;
  private storageFull = false;
  private downSince = 0;
  private timer: NodeJS.Timeout | null = null;
  private checking = false;
  private checkAgain = false;
  private stopped = false;
  private readonly intervalMs: number;
  private readonly downIntervalMs: number;
  private readonly pingTimeoutMs: number;

  constructor(private readonly options: DatabaseHealthOptions) {
    this.intervalMs = options.intervalMs ?? 1_000;
    this.downIntervalMs = options.downIntervalMs ?? 250;
    this.pingTimeoutMs = options.pingTimeoutMs ?? 2_000;
  }

  /** A started monitor of `connection`, stopped when the connection closes. */
  static monitor(options: DatabaseHealthOptions): DatabaseHealth {
    const health = new DatabaseHealth(options);
    health.start();
    return health;
  }

  get reachable(): boolean {
    return this.reachableNow;
  }

  /** Asks the database now, for whoever cannot wait for the next ping (the expiry re-check). */
  answers(ms: number): Promise<boolean> {
    return this.options.database.answers(ms);
  }

  status(): DatabaseStatus {
    return this.reachableNow
      ? { ok: true, database: 'reachable' }
      : { ok: false, database: this.storageFull ? 'full' : 'unreachable', since: new Date(this.downSince).toISOString() };
  }

  /** Told of the error a request failed with: a write refused because the database's storage is full makes it unready. */
  refused(err: unknown): void {
    if (this.storageFull || this.stopped || !isStorageFull(err)) return;
    this.storageFull = true;
    // The database's own words, without FerretDB's Go source locations ("[file.go:12 function] ").
    const words = err instanceof Error ? err.message : String(err);
    this.markDown(`a write was refused: ${words.replace(/\[[^\]]*\]\s*/g, '')}`, 'database storage full');
  }

  start(): void {
    this.stopped = false;
    this.options.connection.on('disconnected', () => {
      this.markDown('the driver lost the connection');
      this.checkNow();
    });
    this.options.connection.on('reconnected', () => this.checkNow());
    // Closing the connection (a graceful stop) is no outage.
    this.options.connection.on('disconnecting', () => this.stop());
    this.options.connection.on('close', () => this.stop());
    this.schedule(this.intervalMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Pings now rather than at the next interval (after the ping in flight, if any). */
  private checkNow(): void {
    if (this.stopped) return;
    if (this.checking) {
      this.checkAgain = true;
      return;
    }
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.check(), ms);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    this.timer = null;
    this.checking = true;
    this.checkAgain = false;
    const writing = this.storageFull;
    const answered = await (writing ? this.options.database.takesWrites(this.pingTimeoutMs) : this.options.database.answers(this.pingTimeoutMs));
    this.checking = false;
    if (this.stopped) return;
    // A ping answered while a write was refused for full storage does not say the writes go through.
    if (answered && (writing || !this.storageFull)) this.markUp();
    else if (!answered) this.markDown(`a ping went unanswered for ${this.pingTimeoutMs} ms or failed`);
    this.schedule(this.checkAgain ? 0 : this.reachableNow ? this.intervalMs : this.downIntervalMs);
  }

  private markDown(why: string, what = 'database unreachable'): void {
    if (!this.reachableNow || this.stopped) return;
    this.reachableNow = false;
    this.downSince = Date.now();
    this.options.logger.warn({ why }, `${what}: not ready (HTTP 503) and answering DATABASE_UNAVAILABLE until it is back`);
  }

  private markUp(): void {
    if (this.reachableNow) return;
    this.reachableNow = true;
    this.options.logger.info({ outageMs: Date.now() - this.downSince }, this.storageFull ? 'database takes writes again: ready' : 'database reachable again: ready');
    this.storageFull = false;
  }
}
