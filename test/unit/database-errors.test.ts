import { GraphQLError } from 'graphql';
import mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { asDatabaseUnavailable, DatabaseUnavailableError, isDatabaseUnreachable, isStorageFull } from '../../src/store/databaseErrors.js';

const { mongo } = mongoose;

describe('database errors', () => {
  it('recognises the errors that mean the database is out of reach, however wrapped', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:27017'), { code: 'ECONNREFUSED' });
    const unreachable = [
      new mongo.MongoNetworkError('connection 3 to 127.0.0.1:27017 closed'),
      new mongo.MongoNetworkTimeoutError('timed out'),
      new mongo.MongoNotConnectedError('not connected'),
      new mongo.MongoTopologyClosedError(),
      new mongoose.Error('Operation `sessions.findOne()` buffering timed out after 10000ms'),
      new DatabaseUnavailableError(),
      // insertMany: the driver wraps the socket's own error in a MongoBulkWriteError
      new mongo.MongoBulkWriteError(Object.assign(new Error('This socket has been ended by the other party'), { code: 'EPIPE' }) as never, {} as never),
      new mongo.MongoBulkWriteError(refused as never, {} as never),
      new GraphQLError('wrapped', { originalError: new mongo.MongoNetworkError('reset') }),
      new Error('outer', { cause: new mongo.MongoNetworkError('reset') }),
      // FerretDB on PostgreSQL, its backend out of reach (as FerretDB 1.24 words it)
      ferretdbInternal('[msg_find.go:344 handler.handleMaxTimeMSError] [collection.go:109 postgresql.(*collection).Query] failed to connect to `user=postgres database=sessions`: 127.0.0.1:5432 (127.0.0.1): dial error: dial tcp 127.0.0.1:5432: connect: connection refused'),
      ferretdbInternal('[msg_ping.go:55 handler.(*Handler).MsgPing] [backend.go:109 postgresql.(*backend).Status] FATAL: terminating connection due to administrator command (SQLSTATE 57P01)'),
      // FerretDB on SQLite, another process holding the write lock past the busy timeout
      ferretdbInternal('[msg_update.go:133 handler.(*Handler).updateDocument] [collection.go:177 sqlite.(*collection).UpdateAll.func1] database is locked (5) (SQLITE_BUSY)'),
      new mongo.MongoBulkWriteError(ferretdbInternal('[msg_insert.go:168 handler.(*Handler).MsgInsert] [collection.go:135 sqlite.(*collection).InsertAll.func1] database is locked (5) (SQLITE_BUSY)') as never, {} as never),
      // FerretDB on SQLite, the disk holding its files full (SQLITE_FULL), as a write on a full tmpfs got them
      ...storageFull,
    ];
    for (const err of unreachable) expect([err.name, isDatabaseUnreachable(err)]).toEqual([err.name, true]);
  });

  it('leaves every other error alone', () => {
    const others = [
      new mongo.MongoServerError({ message: 'E11000 duplicate key error', code: 11000 }),
      new mongo.MongoBulkWriteError({ message: 'E11000 duplicate key error', code: 11000 }, {} as never),
      ferretdbInternal('[msg_find.go:344] ERROR: relation "sessions_1234" does not exist (SQLSTATE 42P01)'),
      new mongoose.Error('Cast to ObjectId failed'),
      new GraphQLError('Your session has expired: log in again.', { extensions: { code: 'SESSION_EXPIRED' } }),
      new TypeError("Cannot read properties of undefined (reading 'expiresAt')"),
      'a string',
      null,
    ];
    for (const err of others) expect(isDatabaseUnreachable(err)).toBe(false);
  });

  it("tells a write refused for the database's full storage from other errors", () => {
    for (const err of storageFull) expect([err.name, isStorageFull(err)]).toEqual([err.name, true]);
    expect(isStorageFull(new GraphQLError('wrapped', { originalError: storageFull[0] }))).toBe(true);
    expect(isStorageFull(new mongo.MongoNetworkError('reset'))).toBe(false);
    expect(isStorageFull(ferretdbInternal('[msg_update.go:133 handler.(*Handler).updateDocument] database is locked (5) (SQLITE_BUSY)'))).toBe(false);
    // The words alone, in an error that is not the database's answer (a user's input, say), are not it.
    expect(isStorageFull(new Error('database or disk is full (13)'))).toBe(false);
  });

  it('tells the client DATABASE_UNAVAILABLE without the address', () => {
    const err = asDatabaseUnavailable(new mongo.MongoNetworkError('connect ECONNREFUSED 10.1.2.3:27017'))!;
    expect(err.extensions.code).toBe('DATABASE_UNAVAILABLE');
    expect(err.message).toBe('The database is unavailable; try again shortly.');
    expect(asDatabaseUnavailable(new Error('boom'))).toBeNull();
  });
});

const storageFull = [
  ferretdbInternal('[msg_insert.go:168 handler.(*Handler).MsgInsert] [db.go:167 fsql.(*DB).InTransaction] database or disk is full (13)'),
  ferretdbInternal(
    '[msg_update.go:133 handler.(*Handler).updateDocument] [update.go:114 common.UpdateDocument] [collection.go:191 sqlite.(*collection).UpdateAll] [db.go:167 fsql.(*DB).InTransaction] database or disk is full (13)',
  ),
  ferretdbInternal('[msg_delete.go:95 handler.(*Handler).MsgDelete] [msg_delete.go:169 handler.(*Handler).execDelete] [collection.go:241 sqlite.(*collection).DeleteAll] database or disk is full (13)'),
  // insertMany
  new mongo.MongoBulkWriteError(ferretdbInternal('[msg_insert.go:168 handler.(*Handler).MsgInsert] [db.go:167 fsql.(*DB).InTransaction] database or disk is full (13)') as never, {} as never),
];

function ferretdbInternal(message: string) {
  return new mongo.MongoServerError({ message, code: 1, codeName: 'InternalError' });
}
