import type { GraphQLError } from 'graphql';
import { apiError } from '../errors.js';

/** What a client is told when the database is out of reach: never the driver's message, which names the address. */
export const DATABASE_UNAVAILABLE_MESSAGE = 'The database is unavailable; try again shortly.';

/** Driver and mongoose errors that mean "the database cannot be reached", not "the database refused this". */
const UNREACHABLE = new Set([
  'MongoServerSelectionError', // no server answered within serverSelectionTimeoutMS
  'MongooseServerSelectionError', // the same, from mongoose's initial connection
  'MongoNetworkError', // the connection broke (server killed, network gone)
  'MongoNetworkTimeoutError',
  'MongoPoolClearedError', // the pool was cleared after a network error while the operation waited for it
  'MongoServerClosedError',
  'MongoNotConnectedError',
  'MongoTopologyClosedError',
  'DatabaseUnavailableError', // ours, below
]);

/** Socket errors that reach the caller unwrapped (e.g. a write to a connection the server closed: EPIPE). */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTCONN', 'ECONNABORTED']);

/** Mongoose's own messages for operations it could not send (buffering, a closed connection). */
const MONGOOSE_UNREACHABLE = /buffering timed out|Connection was force closed|before initial connection is complete/;

/**
 * FerretDB stays up while its backend cannot serve it and answers with an InternalError (code 1)
 * quoting the backend's failure. On PostgreSQL: it could not connect, or its connection was cut
 * (PostgreSQL shutting down, restarting, or refusing connections to the database). On SQLite: a
 * write waited out the busy timeout (10 s) behind another process's write lock.
 */
const FERRETDB_BACKEND_UNREACHABLE = /failed to connect to|SQLSTATE 57P0[1-3]|SQLSTATE 08\d{3}|conn closed|unexpected EOF|\(SQLITE_BUSY\)/;

/**
 * FerretDB on SQLite refuses a write with an InternalError (code 1) quoting SQLite's SQLITE_FULL
 * when the disk holding its files is full; reads and pings are answered meanwhile. A dependency
 * that fails, as above, not a bug: the write changed nothing and goes through once there is space.
 */
const FERRETDB_STORAGE_FULL = /database or disk is full \(13\)/;

/** A command's error answer, as such or as insertMany reports it (the driver copies its code and message). */
const SERVER_ERRORS = new Set(['MongoServerError', 'MongoBulkWriteError']);

/** FerretDB's InternalError (code 1) whose message, which quotes its backend, matches `pattern`. */
const ferretdbInternal = (err: Error, pattern: RegExp) => SERVER_ERRORS.has(err.name) && (err as { code?: unknown }).code === 1 && pattern.test(err.message);

/** The errors `err` wraps: a GraphQLError's originalError, an error's cause, the driver error a MongoBulkWriteError (insertMany) wraps in its errorResponse. */
const wrappedIn = (err: Error): unknown[] => {
  const wrapped = err as { originalError?: unknown; cause?: unknown; errorResponse?: unknown };
  return [wrapped.originalError, wrapped.cause, wrapped.errorResponse].filter((inner) => inner !== err);
};

/** Thrown by code that knows the database is out of reach before asking it. */
export class DatabaseUnavailableError extends Error {
  override readonly name = 'DatabaseUnavailableError';
  constructor(message = 'the database is out of reach') {
    super(message);
  }
}

/** True when `err`, or an error it wraps (`wrappedIn`, at most 4 deep), passes `test`. */
function anyInChain(err: unknown, test: (e: Error) => boolean, depth = 0): boolean {
  if (!(err instanceof Error) || depth > 4) return false;
  return test(err) || wrappedIn(err).some((inner) => anyInChain(inner, test, depth + 1));
}

/**
 * True when `err`, or an error it wraps (`wrappedIn`), says that the database could not be reached,
 * or could not take the write for now (SQLite's write lock held past its timeout, its storage
 * full): what clients are told as DATABASE_UNAVAILABLE. By name, since mongoose may bring a copy
 * of the driver of its own.
 */
export function isDatabaseUnreachable(err: unknown): boolean {
  return anyInChain(
    err,
    (e) =>
      UNREACHABLE.has(e.name) ||
      (e.name === 'MongooseError' && MONGOOSE_UNREACHABLE.test(e.message)) ||
      ferretdbInternal(e, FERRETDB_BACKEND_UNREACHABLE) ||
      ferretdbInternal(e, FERRETDB_STORAGE_FULL) ||
      NETWORK_CODES.has(String((e as { code?: unknown }).code)),
  );
}

/** True when `err`, or an error it wraps, is a write the database refused because its storage is full. */
export function isStorageFull(err: unknown): boolean {
  return anyInChain(err, (e) => ferretdbInternal(e, FERRETDB_STORAGE_FULL));
}

/**
 * The error a client gets for `err` when it means the database is out of reach (code
 * DATABASE_UNAVAILABLE, a message without address, host or port); null for any other error.
 */
export function asDatabaseUnavailable(err: unknown): GraphQLError | null {
  return isDatabaseUnreachable(err) ? apiError('DATABASE_UNAVAILABLE', DATABASE_UNAVAILABLE_MESSAGE) : null;
}

/**
 * An error as a log line's `err`: one that says the database is out of reach is an outage, not a
 * bug, logged as its message alone (not its stack and the driver's whole topology, each time).
 */
export function loggable(err: unknown): unknown {
  return isDatabaseUnreachable(err) ? String(err) : err;
}
