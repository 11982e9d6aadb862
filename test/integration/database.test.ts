import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  dropPostgresDatabase,
  FERRETDB_BIN,
  postgresDatabaseExists,
  postgresUnavailable,
  resolveDatabase,
  type DatabaseKind,
} from '../../scripts/database.js';
import { canConnect } from '../../scripts/database/process.js';
import { unixSocketOf } from '../../scripts/database/uri.js';
import { DatabaseSetupError } from '../../scripts/database/setupError.js';
import { detectCapabilities } from '../../src/store/capabilities.js';
import { mountTmpfs } from '../helpers/tmpfs.js';

const uri = inject('mongoUri');
const kind = inject('dbKind') as DatabaseKind;

describe(`the test database (${kind})`, () => {
  let conn: mongoose.Connection;
  beforeAll(async () => {
    conn = await mongoose.createConnection(uri, { serverSelectionTimeoutMS: 5_000 }).asPromise();
  });
  afterAll(() => conn?.close());

  it('answers a ping', async () => {
    expect(await conn.db!.admin().ping()).toMatchObject({ ok: 1 });
  });

  it('reports capabilities consistent with its kind, one log line per gap, and leaves nothing behind', async () => {
    const lines: string[] = [];
    const started = performance.now();
    const caps = await detectCapabilities(conn, (line) => lines.push(line), { ttlIndexes: 'purging every 60 s' });
    const elapsed = performance.now() - started;

    expect(typeof caps.ttlIndexes).toBe('boolean');
    expect(typeof caps.changeStreams).toBe('boolean');
    expect(lines).toHaveLength(Number(!caps.ttlIndexes) + Number(!caps.changeStreams));
    if (kind === 'ferretdb' || kind === 'ferretdb-postgresql') {
      // FerretDB 1.x computes an update and then replaces the document: the probe must see it lose updates.
      expect(caps).toEqual({ ttlIndexes: false, changeStreams: false, atomicUpdates: false, uniqueInserts: true });
      expect(lines[0]).toMatch(/^database has no TTL indexes \(.*expireAfterSeconds.*\): purging every 60 s$/);
      expect(lines[1]).toMatch(/^database has no change streams \(.*\): the change feed polls the session_changes log instead$/);
      expect(elapsed).toBeLessThan(1_000);
    }
    if (kind === 'mongod') expect(caps).toEqual({ ttlIndexes: true, changeStreams: true, atomicUpdates: true, uniqueInserts: true });
    const names = (await conn.db!.listCollections().toArray()).map((c) => c.name);
    expect(names.filter((n) => n.startsWith('_capabilities_probe_'))).toEqual([]);
  });
});

// These start further instances of the same embedded database next to the one of the test run.
describe.skipIf(kind === 'external')(`an embedded ${kind} (skipped with MONGODB_URI: needs an embedded database)`, () => {
  let dataRoot: string;
  let persistentPostgres: string | undefined;
  beforeAll(async () => {
    dataRoot = await fsp.mkdtemp(path.join(os.tmpdir(), 'sessions-data-root-'));
  });
  afterAll(async () => {
    await fsp.rm(dataRoot, { recursive: true, force: true });
    if (persistentPostgres) await dropPostgresDatabase(persistentPostgres);
  });

  it('keeps its data across stop and restart when persistent', async () => {
    const opts = { persistent: true, kind, dataRoot, dbName: 'persist', log: () => {} };
    const first = await resolveDatabase(opts);
    persistentPostgres = first.postgresDatabase;
    expect(first.uri).not.toBe(uri);
    expect(first.dataDir).toBe(path.join(dataRoot, kind));
    let conn = await mongoose.createConnection(first.uri).asPromise();
    await conn.db!.collection('things').insertOne({ _id: 'kept' as never, at: new Date(1_000) });
    await conn.close();
    await first.stop();
    await first.stop(); // idempotent

    const second = await resolveDatabase(opts);
    try {
      conn = await mongoose.createConnection(second.uri).asPromise();
      expect(await conn.db!.collection('things').findOne({ _id: 'kept' as never })).toEqual({ _id: 'kept', at: new Date(1_000) });
      await conn.close();
    } finally {
      await second.stop();
    }
  });

  it.skipIf(kind !== 'ferretdb')('says that the built FerretDB did not start, and why, when its data is not a database', async () => {
    // It advised installing Go or setting MONGODB_URI, the real cause buried in a quoted log.
    const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'sessions-corrupt-'));
    try {
      await fsp.mkdir(path.join(root, 'ferretdb'));
      await fsp.writeFile(path.join(root, 'ferretdb', 'sessions.sqlite'), randomBytes(64 * 1024));
      const failure = resolveDatabase({ persistent: true, dataRoot: root, log: () => {} });
      await expect(failure).rejects.toThrow(/^The embedded database \(FerretDB\) did not start: .*file is not a database/s);
      await expect(failure).rejects.toBeInstanceOf(DatabaseSetupError);
    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });

  it.skipIf(kind !== 'ferretdb')('says that the disk holding its data is full when it cannot start for that', async (ctx) => {
    // It said "FerretDB exited at start-up (code 1); last lines of …/ferretdb.log:" and nothing more: the log is on that disk.
    const disk = await mountTmpfs('8m');
    if (typeof disk === 'string') return ctx.skip(disk);
    const opts = { persistent: true, kind, dataRoot: disk.dir, log: () => {} };
    try {
      const first = await resolveDatabase(opts);
      const conn = await mongoose.createConnection(first.uri).asPromise();
      await conn.db!.collection('things').insertOne({ at: new Date() }); // FerretDB opens a database it has at start
      await conn.close();
      await first.stop();
      await disk.fill();
      const started = await resolveDatabase(opts).then(
        (db) => db.stop().then(() => 'started'),
        (err: Error) => err.message,
      );
      expect(started).toContain(`FerretDB exited at start-up (code 1): the disk holding ${path.join(disk.dir, 'ferretdb')} is full (0 kB free); `);
      await disk.free();
      await (await resolveDatabase(opts)).stop();
    } finally {
      await disk.unmount();
    }
  });

  it.skipIf(kind !== 'ferretdb')('refuses a second FerretDB on the data of a server that runs, even while it restarts its FerretDB, naming that server', async () => {
    // Two `npm start` on other ports ran two FerretDBs on one SQLite directory, neither knowing of the other;
    // and the check read FerretDB's pid file, which names a dead process while the owner waits to restart it.
    const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'sessions-shared-'));
    const opts = { persistent: true, kind, dataRoot: root, log: () => {} };
    const inUse = new RegExp(`is in use by another server \\(pid ${process.pid}\\)`);
    try {
      const first = await resolveDatabase({ ...opts, restartDelayMs: 60_000 });
      try {
        const second = resolveDatabase(opts);
        await expect(second).rejects.toThrow(inUse);
        await expect(second).rejects.toBeInstanceOf(DatabaseSetupError);

        expect(first.supervisor!.kill('SIGKILL')).toBe(true);
        await expect.poll(() => first.supervisor!.restarts()).toBe(1); // waiting 60 s before it restarts FerretDB
        await expect(resolveDatabase(opts)).rejects.toThrow(inUse);
      } finally {
        await first.stop();
      }
      await (await resolveDatabase(opts)).stop();
    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });

  it.skipIf(kind !== 'ferretdb')('is reachable by this user alone: on a socket in a directory no other user may enter, on no TCP port', async () => {
    // On 127.0.0.1 without authentication, any program on the machine could read or change what it
    // holds (a session written there would be honoured), or take its port while it restarted.
    for (const persistent of [false, true]) {
      const db = await resolveDatabase({ persistent, kind, dataRoot, dbName: 'private', log: () => {} });
      try {
        const socket = unixSocketOf(db.uri);
        expect(socket, db.uri).toMatch(/^\//);
        const dir = await fsp.stat(path.dirname(socket!));
        expect(dir.uid).toBe(process.getuid!());
        expect(dir.mode & 0o077).toBe(0);
        expect(await canConnect(socket!)).toBe(true);
        if (process.getuid!() === 0) expect(await connectionErrorAs(65534, socket!)).toBe('EACCES');
        expect(listeningTcpPorts(db.supervisor!.pid()!)).toEqual([]);
      } finally {
        await db.stop();
      }
    }
  });

  it.skipIf(kind !== 'ferretdb')('says so, and leaves nothing behind, when TMPDIR is too long a path for its socket', async () => {
    const long = await fsp.mkdtemp(path.join(os.tmpdir(), `sessions-${'x'.repeat(90)}-`));
    const tmpdir = process.env.TMPDIR;
    process.env.TMPDIR = long;
    try {
      const failure = resolveDatabase({ persistent: false, kind, log: () => {} });
      await expect(failure).rejects.toThrow(/has a longer path than a Unix socket may: set TMPDIR to a shorter directory/);
      await expect(failure).rejects.toBeInstanceOf(DatabaseSetupError);
      expect(await fsp.readdir(long)).toEqual([]);
    } finally {
      if (tmpdir === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = tmpdir;
      await fsp.rm(long, { recursive: true, force: true });
    }
  });

  it('deletes a temporary data dir and frees its port or socket on stop', async () => {
    const db = await resolveDatabase({ persistent: false, kind, log: () => {} });
    const endpoint = endpointOf(db.uri);
    expect(await canConnect(endpoint)).toBe(true);
    await db.stop();
    expect(await canConnect(endpoint)).toBe(false);
    await expect(fsp.access(db.dataDir!)).rejects.toThrow();
  });

  it.skipIf(kind !== 'ferretdb')('leaves no FerretDB behind when its parent process is killed', async () => {
    const script = `
      const { resolveDatabase } = await import(${JSON.stringify(path.resolve('scripts/database.ts'))});
      const db = await resolveDatabase({ persistent: false, kind: 'ferretdb', log: () => {} });
      console.log(JSON.stringify(db));
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const started = await new Promise<{ uri: string; dataDir: string }>((resolve, reject) => {
      child.stdout.once('data', (b: Buffer) => resolve(JSON.parse(b.toString())));
      child.once('exit', (code) => reject(new Error(`child exited early with ${code}`)));
    });
    const endpoint = endpointOf(started.uri);
    expect(await canConnect(endpoint)).toBe(true);
    child.kill('SIGKILL');
    const gone = async () => !(await canConnect(endpoint)) && (await fsp.access(started.dataDir).then(() => false, () => true));
    for (let i = 0; i < 100 && !(await gone()); i++) await sleep(50);
    expect(await canConnect(endpoint)).toBe(false);
    await expect(fsp.access(started.dataDir), 'its temporary data dir is removed too').rejects.toThrow();
  });
});

// FerretDB on PostgreSQL (SESSIONS_EMBEDDED_DB=ferretdb-postgresql), whatever database the run itself uses.
const postgresSkip = await (async () => {
  const unavailable = await postgresUnavailable();
  if (unavailable) return `PostgreSQL not reachable (set SESSIONS_POSTGRESQL_URL to use another server): ${unavailable}`;
  const built = await fsp.access(FERRETDB_BIN).then(() => true, () => false);
  if (!built && kind !== 'ferretdb') return 'FerretDB is not built (SESSIONS_EMBEDDED_DB=ferretdb npx tsx scripts/database.ts --ensure builds it)';
  return undefined;
})();
if (postgresSkip) console.warn(`[database.test] skipping the FerretDB-on-PostgreSQL cases: ${postgresSkip}`);

describe.skipIf(postgresSkip !== undefined)(`FerretDB on PostgreSQL${postgresSkip ? ` (skipped: ${postgresSkip})` : ''}`, () => {
  it('serves documents from a fresh PostgreSQL database that it drops on stop', async () => {
    const db = await resolveDatabase({ persistent: false, kind: 'ferretdb-postgresql', dbName: 'wire', log: () => {} });
    let stopped = false;
    try {
      expect(db.kind).toBe('ferretdb-postgresql');
      expect(db.postgresDatabase).toMatch(/^sessions_ferretdb_tmp_[a-z0-9_]+$/);
      expect(db.description).toContain(`PostgreSQL database`);
      expect(db.description).toContain(db.postgresDatabase!);
      expect(await postgresDatabaseExists(db.postgresDatabase!)).toBe(true);

      const conn = await mongoose.createConnection(db.uri, { serverSelectionTimeoutMS: 5_000 }).asPromise();
      try {
        const things = conn.db!.collection('things');
        await things.createIndex({ token: 1 }, { unique: true });
        await things.insertOne({ _id: 'one' as never, token: 'abc', at: new Date(2_000) });
        expect(await things.findOne({ token: 'abc' })).toEqual({ _id: 'one', token: 'abc', at: new Date(2_000) });
        await expect(things.insertOne({ _id: 'two' as never, token: 'abc' })).rejects.toThrow(/duplicate key/i);
      } finally {
        await conn.close();
      }

      const endpoint = endpointOf(db.uri);
      await db.stop();
      stopped = true;
      expect(await canConnect(endpoint)).toBe(false);
      expect(await postgresDatabaseExists(db.postgresDatabase!), 'its PostgreSQL database is dropped').toBe(false);
      await expect(fsp.access(db.dataDir!), 'its state dir is removed').rejects.toThrow();
    } finally {
      if (!stopped) await db.stop();
    }
  });

  it('keeps its data in a PostgreSQL database of a stable name when persistent', async () => {
    const dataRoot = await fsp.mkdtemp(path.join(os.tmpdir(), 'sessions-data-root-'));
    const opts = { persistent: true, kind: 'ferretdb-postgresql' as const, dataRoot, dbName: 'persist', log: () => {} };
    let database: string | undefined;
    try {
      const first = await resolveDatabase(opts);
      database = first.postgresDatabase;
      // Derived from the data root, so it is never the database of `npm start` (sessions_ferretdb).
      expect(database).toMatch(/^sessions_ferretdb_[0-9a-f]{10}$/);
      let conn = await mongoose.createConnection(first.uri).asPromise();
      await conn.db!.collection('things').insertOne({ _id: 'kept' as never });
      await conn.close();
      await first.stop();
      expect(await postgresDatabaseExists(database!)).toBe(true);

      const second = await resolveDatabase(opts);
      try {
        expect(second.postgresDatabase).toBe(database);
        conn = await mongoose.createConnection(second.uri).asPromise();
        expect(await conn.db!.collection('things').findOne({ _id: 'kept' as never })).toEqual({ _id: 'kept' });
        await conn.close();
      } finally {
        await second.stop();
      }
    } finally {
      await fsp.rm(dataRoot, { recursive: true, force: true });
      if (database) await dropPostgresDatabase(database);
    }
  });

  it('drops its PostgreSQL database when its parent process is killed', async () => {
    const script = `
      const { resolveDatabase } = await import(${JSON.stringify(path.resolve('scripts/database.ts'))});
      const db = await resolveDatabase({ persistent: false, kind: 'ferretdb-postgresql', log: () => {} });
      console.log(JSON.stringify(db));
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const started = await new Promise<{ uri: string; dataDir: string; postgresDatabase: string }>((resolve, reject) => {
      child.stdout.once('data', (b: Buffer) => resolve(JSON.parse(b.toString())));
      child.once('exit', (code) => reject(new Error(`child exited early with ${code}`)));
    });
    const endpoint = endpointOf(started.uri);
    expect(await postgresDatabaseExists(started.postgresDatabase)).toBe(true);
    child.kill('SIGKILL');
    try {
      const gone = async () => !(await canConnect(endpoint)) && !(await postgresDatabaseExists(started.postgresDatabase));
      for (let i = 0; i < 100 && !(await gone()); i++) await sleep(50);
      expect(await canConnect(endpoint)).toBe(false);
      expect(await postgresDatabaseExists(started.postgresDatabase), 'its PostgreSQL database is dropped').toBe(false);
      await expect(fsp.access(started.dataDir), 'its state dir is removed').rejects.toThrow();
    } finally {
      await dropPostgresDatabase(started.postgresDatabase);
    }
  });
});

/** Where a mongodb:// URI of an embedded database connects: its socket, or its port on 127.0.0.1. */
const endpointOf = (uri: string): string | number => unixSocketOf(uri) ?? Number(new URL(uri.replace(/^mongodb:/, 'http:')).port);

/** The TCP ports process `pid` listens on (Linux: its socket inodes found among /proc/net/tcp's listeners). */
function listeningTcpPorts(pid: number): number[] {
  const inodes = new Set(
    readdirSync(`/proc/${pid}/fd`)
      .map((fd) => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ''; } })
      .map((link) => /^socket:\[(\d+)\]$/.exec(link)?.[1])
      .filter((inode) => inode !== undefined),
  );
  return ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((table) =>
    readFileSync(table, 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((cols) => cols[3] === '0A' && inodes.has(cols[9]!))
      .map((cols) => parseInt(cols[1]!.split(':')[1]!, 16)),
  );
}

/** How connecting to the Unix socket fails for a process of user `uid` (its error code), or 'connected'. */
function connectionErrorAs(uid: number, socket: string): Promise<string> {
  const script = `require('node:net').connect(${JSON.stringify(socket)}).on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => console.log(e.code))`;
  const child = spawn(process.execPath, ['-e', script], { uid, gid: uid, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b));
  return new Promise((resolve) => child.once('close', () => resolve(out.trim())));
}
