// Resolves the MongoDB-compatible database used by `npm start` and the tests:
// MONGODB_URI, else an embedded mongod (mongodb-memory-server), else FerretDB built once with Go
// (on SQLite; on a PostgreSQL server with SESSIONS_EMBEDDED_DB=ferretdb-postgresql).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import mongoose from 'mongoose';

export type DatabaseKind = 'external' | 'mongod' | 'ferretdb' | 'ferretdb-postgresql';
const EMBEDDED_KINDS = ['mongod', 'ferretdb', 'ferretdb-postgresql'] as const;

export interface ResolvedDatabase {
  kind: DatabaseKind;
  uri: string;
  /** One human line; never contains credentials from MONGODB_URI. */
  description: string;
  /** Where an embedded database keeps its files (undefined for external; FerretDB's state and log for ferretdb-postgresql). */
  dataDir?: string;
  /** ferretdb-postgresql: the PostgreSQL database holding the data (dropped on stop unless persistent). */
  postgresDatabase?: string;
  stop(): Promise<void>;
}

export interface ResolveOptions {
  /**
   * true (npm start): data in <dataRoot>/<kind>, survives restarts; false (tests): a fresh temp dir, deleted on stop.
   * For ferretdb-postgresql: a PostgreSQL database of a stable name, or a fresh one dropped on stop.
   */
  persistent: boolean;
  /** Database name put into the URI when it names none (default 'sessions'). */
  dbName?: string;
  log?: (line: string) => void;
  /** Root of persistent data (default <repo>/.data). */
  dataRoot?: string;
  /** Force a kind instead of MONGODB_URI / SESSIONS_EMBEDDED_DB / automatic choice. */
  kind?: DatabaseKind;
}

export const FERRETDB_VERSION = 'v1.24.2';
/** Admin URL for SESSIONS_EMBEDDED_DB=ferretdb-postgresql: a role that may CREATE DATABASE, and a database to connect to. */
export const DEFAULT_POSTGRESQL_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = path.join(REPO, '.cache');
const FERRETDB_BIN = path.join(CACHE, 'ferretdb', 'bin', 'ferretdb');
const MONGOD_UNAVAILABLE = path.join(CACHE, 'mongod-unavailable');
const MONGOD_RETRY_MS = 24 * 3600_000;

export async function resolveDatabase(opts: ResolveOptions): Promise<ResolvedDatabase> {
  const o = {
    persistent: opts.persistent,
    dbName: opts.dbName ?? 'sessions',
    log: opts.log ?? ((line: string) => console.log(line)),
    dataRoot: opts.dataRoot ?? path.join(REPO, '.data'),
  };
  const kind = opts.kind ?? (process.env.MONGODB_URI ? 'external' : embeddedChoice());
  if (kind === 'external') return external(o.dbName);
  if (kind === 'mongod') return startMongod(o);
  if (kind === 'ferretdb') return startFerretDB(o);
  if (kind === 'ferretdb-postgresql') return startFerretDB(o, await postgresBackend(o));

  // Automatic: a real mongod when one can be had, else FerretDB.
  const causes: string[] = [];
  const mongodBin = await mongodBinary(o.log);
  if (mongodBin.ok) {
    try {
      return await startMongod(o);
    } catch (err) {
      causes.push(`mongod: ${message(err)}`);
      o.log(`embedded mongod did not start (${message(err).replace(/\s+/g, ' ')}); using FerretDB instead`);
    }
  } else {
    causes.push(`mongod: ${mongodBin.reason}`);
  }
  try {
    return await startFerretDB(o);
  } catch (err) {
    causes.push(`FerretDB: ${message(err)}`);
    throw new Error(
      'No database available. Set MONGODB_URI to a MongoDB server (e.g. one started by `docker compose up`), ' +
        'or install Go (https://go.dev/dl/, needed once to build FerretDB), ' +
        'or set MONGOMS_SYSTEM_BINARY to a local mongod.\n  ' +
        causes.join('\n  '),
    );
  }
}

function embeddedChoice(): (typeof EMBEDDED_KINDS)[number] | 'auto' {
  const v = process.env.SESSIONS_EMBEDDED_DB;
  if (!v) return 'auto';
  const kind = EMBEDDED_KINDS.find((k) => k === v);
  if (kind) return kind;
  throw new Error(`SESSIONS_EMBEDDED_DB must be one of ${EMBEDDED_KINDS.map((k) => `"${k}"`).join(', ')}, got "${v}"`);
}

// ---------- MONGODB_URI ----------

function external(dbName: string): ResolvedDatabase {
  const uri = withDbName(process.env.MONGODB_URI!, dbName);
  return { kind: 'external', uri, description: `MongoDB at ${redact(uri)} (MONGODB_URI)`, stop: async () => {} };
}

/** Adds /<dbName> to a mongodb:// URI that names no database. */
export function withDbName(uri: string, dbName: string): string {
  const m = /^(mongodb(?:\+srv)?:\/\/[^/?#]*)(\/[^?#]*)?(.*)$/.exec(uri);
  if (!m) throw new Error('MONGODB_URI must start with mongodb:// or mongodb+srv://');
  const [, hosts, dbPath, rest] = m;
  return dbPath && dbPath !== '/' ? uri : `${hosts}/${dbName}${rest}`;
}

/** Drops user info and query options (which may hold secrets). */
export function redact(uri: string): string {
  return uri.replace(/\/\/[^/?#]*@/, '//').replace(/[?#].*$/, '');
}

// ---------- embedded mongod (mongodb-memory-server) ----------

type Options = { persistent: boolean; dbName: string; log: (line: string) => void; dataRoot: string };

/** Finds or downloads mongod; a failed download is remembered for 24 h so later starts skip the ~6 s it costs. */
async function mongodBinary(log: (line: string) => void): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (!process.env.MONGOMS_SYSTEM_BINARY) {
    const known = await fsp.readFile(MONGOD_UNAVAILABLE, 'utf8').then(JSON.parse, () => undefined);
    if (known && Date.now() - Date.parse(known.date) < MONGOD_RETRY_MS) {
      return { ok: false, reason: `unavailable since ${known.date} (${known.error}); retried after 24 h or with MONGOMS_SYSTEM_BINARY` };
    }
  }
  try {
    const { MongoBinary } = await import('mongodb-memory-server');
    await MongoBinary.getPath();
    await fsp.rm(MONGOD_UNAVAILABLE, { force: true });
    return { ok: true };
  } catch (err) {
    const error = message(err).replace(/\s+/g, ' ');
    const reason = `no mongod binary: ${error}`;
    if (!process.env.MONGOMS_SYSTEM_BINARY) {
      await fsp.mkdir(CACHE, { recursive: true });
      await fsp.writeFile(MONGOD_UNAVAILABLE, JSON.stringify({ date: new Date().toISOString(), error }) + '\n');
      log(`embedded mongod unavailable (${error}); remembered in .cache/mongod-unavailable for 24 h`);
    }
    return { ok: false, reason };
  }
}

async function startMongod(o: Options): Promise<ResolvedDatabase> {
  const { MongoBinary, MongoMemoryReplSet } = await import('mongodb-memory-server');
  // Fail with one clear line rather than the stack trace mongodb-memory-server prints when the download fails.
  await MongoBinary.getPath().catch((err) => {
    throw new Error(`no mongod binary (${message(err).replace(/\s+/g, ' ')}); set MONGOMS_SYSTEM_BINARY to a local mongod`);
  });
  const dbPath = o.persistent ? path.join(o.dataRoot, 'mongod') : undefined;
  let port: number | undefined;
  if (dbPath) {
    await fsp.mkdir(dbPath, { recursive: true });
    // The replica set config stored in dbPath names host:port, so a persistent set must keep its port.
    const portFile = path.join(o.dataRoot, 'mongod.port');
    port = Number(await fsp.readFile(portFile, 'utf8').catch(() => '')) || (await freePort());
    await fsp.writeFile(portFile, `${port}\n`);
  }
  const rs = await MongoMemoryReplSet.create({
    replSet: { count: 1, name: 'rs0', storageEngine: 'wiredTiger' },
    instanceOpts: [{ dbPath, port, storageEngine: 'wiredTiger' }],
  });
  const uri = withDbName(rs.getUri(), o.dbName);
  const where = dbPath ? `data in ${shortPath(dbPath)}` : 'temporary data';
  const dataDir = rs.servers[0]?.instanceInfo?.dbPath ?? dbPath;
  return {
    kind: 'mongod',
    uri,
    description: `mongod single-node replica set (${where}) at ${redact(uri)}`,
    dataDir,
    stop: once(() => rs.stop({ doCleanup: !o.persistent, force: !o.persistent }).then(() => undefined)),
  };
}

// ---------- FerretDB ----------

/** Returns the FerretDB binary, building it once with Go if it is missing. */
export async function ensureFerretDB(log: (line: string) => void = console.log): Promise<string> {
  if (await fsp.access(FERRETDB_BIN, fs.constants.X_OK).then(() => true, () => false)) return FERRETDB_BIN;
  const go = await findGo();
  log(`building FerretDB ${FERRETDB_VERSION} with Go into .cache/ferretdb (once; about 2-3 minutes on a cold machine)`);
  await fsp.mkdir(path.dirname(FERRETDB_BIN), { recursive: true });
  const work = await fsp.mkdtemp(path.join(CACHE, 'ferretdb', 'build-'));
  try {
    // `go install …/cmd/ferretdb@v1.24.2` succeeds but its binary panics at start-up: the module ships
    // without build/version/version.txt. So build a copy of the module source with that file added.
    const info = JSON.parse(await run(go, ['mod', 'download', '-json', `github.com/FerretDB/FerretDB@${FERRETDB_VERSION}`], work));
    const src = path.join(work, 'src');
    await fsp.cp(info.Dir, src, { recursive: true });
    for (const d of [src, ...(await fsp.readdir(src, { recursive: true, withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => path.join(e.parentPath, e.name))]) {
      await fsp.chmod(d, 0o755); // the module cache is read-only
    }
    await fsp.writeFile(path.join(src, 'build', 'version', 'version.txt'), `${FERRETDB_VERSION}\n`);
    const bin = path.join(work, 'ferretdb');
    await run(go, ['build', '-buildvcs=false', '-o', bin, './cmd/ferretdb'], src);
    const version = await run(bin, ['--version'], work);
    if (!version.includes(FERRETDB_VERSION)) throw new Error(`built FerretDB reports an unexpected version:\n${version}`);
    await fsp.rename(bin, FERRETDB_BIN); // atomic: concurrent builds never expose a partial binary
    return FERRETDB_BIN;
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

async function findGo(): Promise<string> {
  for (const go of ['go', '/usr/local/go/bin/go']) {
    if (await run(go, ['version'], REPO).then(() => true, () => false)) return go;
  }
  throw new Error('Go is not installed (https://go.dev/dl/); it is needed once to build FerretDB');
}

// Runs ferretdb under a tiny sh watchdog in its own process group: when our end of its stdin pipe closes
// (stop(), or this process dying in any way, even SIGKILL) the watchdog kills ferretdb, so none is orphaned.
// Its own process group keeps a terminal's Ctrl-C away from it while the app shuts down gracefully.
// A temporary data dir ($REMOVE_DIR) goes with it, and so does a temporary PostgreSQL database
// ($DROP_PG_DATABASE, through psql to $DROP_PG_URL; WITH (FORCE) needs PostgreSQL 13, hence the retry without).
const WATCHDOG =
  'exec 3<&0; "$@" </dev/null & pid=$!; (read _ <&3; kill $pid 2>/dev/null) & wait $pid; status=$?; ' +
  '[ -z "$REMOVE_DIR" ] || rm -rf "$REMOVE_DIR"; ' +
  'if [ -n "$DROP_PG_DATABASE" ]; then ' +
  'psql -X -q -d "$DROP_PG_URL" -c "DROP DATABASE IF EXISTS \\"$DROP_PG_DATABASE\\" WITH (FORCE)" >/dev/null 2>&1 || ' +
  'psql -X -q -d "$DROP_PG_URL" -c "DROP DATABASE IF EXISTS \\"$DROP_PG_DATABASE\\"" >/dev/null 2>&1; fi; ' +
  'exit $status';

/** FerretDB's PostgreSQL backend: the database it stores into, on the server of the admin URL. */
interface PostgresBackend {
  adminUrl: string;
  database: string;
  /** Created for this instance and dropped on stop. */
  temporary: boolean;
}

async function startFerretDB(o: Options, pg?: PostgresBackend): Promise<ResolvedDatabase> {
  const kind: DatabaseKind = pg ? 'ferretdb-postgresql' : 'ferretdb';
  const bin = await ensureFerretDB(o.log);
  const dir = o.persistent ? path.join(o.dataRoot, kind) : await fsp.mkdtemp(path.join(os.tmpdir(), `sessions-${kind}-`));
  await fsp.mkdir(dir, { recursive: true });
  const dropTemporary = async () => {
    if (!pg?.temporary) return;
    await dropPostgresDatabase(pg.database, pg.adminUrl).catch((err) =>
      o.log(`could not drop the PostgreSQL database ${pg.database} (${message(err).replace(/\s+/g, ' ')}); drop it by hand`),
    );
  };
  try {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const uri = `mongodb://127.0.0.1:${port}/${o.dbName}`;
      // Created on every attempt: the watchdog of a failed one drops a temporary database as it exits.
      if (pg) await createPostgresDatabase(pg.database, pg.adminUrl);
      const child = launchFerretDB(bin, dir, port, !o.persistent, pg);
      const stopChild = once(() => stopProcessGroup(child));
      try {
        await waitUntilReady(child, port, uri, path.join(dir, 'ferretdb.log'));
      } catch (err) {
        await stopChild();
        // Another process may grab the port between freePort() and ferretdb's bind.
        if (attempt < 3 && /address already in use/.test(message(err))) continue;
        throw err;
      }
      const where = o.persistent ? shortPath(dir) : `${dir}, deleted on stop`;
      const storage = pg
        ? `PostgreSQL database ${redact(postgresUrl(pg.adminUrl, pg.database))}${pg.temporary ? ', dropped on stop' : ''}; state in ${where}`
        : `SQLite in ${where}`;
      return {
        kind,
        uri,
        description: `FerretDB ${FERRETDB_VERSION.slice(1)} (${storage}) at ${uri}`,
        dataDir: dir,
        postgresDatabase: pg?.database,
        stop: once(async () => {
          await stopChild(); // its watchdog drops a temporary database; this makes sure, had it been cut short
          if (!o.persistent) await fsp.rm(dir, { recursive: true, force: true });
          await dropTemporary();
        }),
      };
    }
  } catch (err) {
    if (!o.persistent) await fsp.rm(dir, { recursive: true, force: true });
    await dropTemporary();
    throw err;
  }
}

function launchFerretDB(bin: string, dir: string, port: number, temporary: boolean, pg?: PostgresBackend): ChildProcess {
  const logFd = fs.openSync(path.join(dir, 'ferretdb.log'), 'a');
  const args = [
    ...(pg ? ['--handler=postgresql'] : ['--handler=sqlite', `--sqlite-url=${pathToFileURL(dir).href}/`]),
    `--listen-addr=127.0.0.1:${port}`,
    `--state-dir=${dir}`,
    '--telemetry=disable',
    '--debug-addr=-', // its default 127.0.0.1:8088 would clash between instances
    '--log-level=warn',
  ];
  const env: NodeJS.ProcessEnv = { ...process.env, REMOVE_DIR: temporary ? dir : '', DROP_PG_DATABASE: '' };
  if (pg) {
    // FerretDB reads its PostgreSQL URL from the environment, so a password never shows in `ps`.
    env.FERRETDB_POSTGRESQL_URL = postgresUrl(pg.adminUrl, pg.database);
    const admin = splitPassword(pg.adminUrl);
    if (pg.temporary) Object.assign(env, { DROP_PG_DATABASE: pg.database, DROP_PG_URL: admin.url });
    if (admin.password) env.PGPASSWORD = admin.password; // for the watchdog's psql
  }
  const child = spawn('/bin/sh', ['-c', WATCHDOG, 'ferretdb-watchdog', bin, ...args], {
    detached: true,
    stdio: ['pipe', logFd, logFd],
    env,
  });
  fs.closeSync(logFd);
  child.unref(); // never keeps the event loop alive; the pipe still ties ferretdb's life to ours
  (child.stdin as net.Socket).unref();
  return child;
}

// ---------- FerretDB's PostgreSQL backend (SESSIONS_EMBEDDED_DB=ferretdb-postgresql) ----------

/** SESSIONS_POSTGRESQL_URL, else the local server's postgres role. */
export function postgresAdminUrl(): string {
  return process.env.SESSIONS_POSTGRESQL_URL || DEFAULT_POSTGRESQL_URL;
}

/**
 * Names the PostgreSQL database FerretDB stores into and checks the server answers. Persistent: a
 * stable name (sessions_ferretdb for the default data root, else one derived from the data root, so
 * a test's data root never shares the database of `npm start`); otherwise a fresh unique name.
 */
async function postgresBackend(o: Options): Promise<PostgresBackend> {
  const adminUrl = postgresAdminUrl();
  const unavailable = await postgresUnavailable(adminUrl);
  if (unavailable) {
    throw new Error(
      `SESSIONS_EMBEDDED_DB=ferretdb-postgresql: PostgreSQL is not reachable (${unavailable}). ` +
        `Start it, or set SESSIONS_POSTGRESQL_URL (default ${DEFAULT_POSTGRESQL_URL}) to a role that may CREATE DATABASE, ` +
        'or unset SESSIONS_EMBEDDED_DB to use FerretDB on SQLite.',
    );
  }
  if (o.persistent) {
    const defaultRoot = path.resolve(o.dataRoot) === path.join(REPO, '.data');
    const suffix = defaultRoot ? '' : `_${createHash('sha256').update(path.resolve(o.dataRoot)).digest('hex').slice(0, 10)}`;
    return { adminUrl, database: `${PG_PERSISTENT_DB}${suffix}`, temporary: false };
  }
  return { adminUrl, database: `${PG_TEMPORARY_PREFIX}${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`, temporary: true };
}

const PG_PERSISTENT_DB = 'sessions_ferretdb';
/** Temporary databases start with this, so leftovers (a watchdog killed too) can be found: `\l sessions_ferretdb_tmp_*`. */
export const PG_TEMPORARY_PREFIX = 'sessions_ferretdb_tmp_';

/** Why the PostgreSQL server of the admin URL cannot be used, or undefined when it answers. */
export async function postgresUnavailable(adminUrl = postgresAdminUrl()): Promise<string | undefined> {
  try {
    await psql(adminUrl, 'SELECT 1');
    return undefined;
  } catch (err) {
    return message(err).replace(/\s+/g, ' ').trim();
  }
}

export async function postgresDatabaseExists(database: string, adminUrl = postgresAdminUrl()): Promise<boolean> {
  return (await psql(adminUrl, `SELECT 1 FROM pg_database WHERE datname = '${checkedName(database)}'`)).trim() === '1';
}

async function createPostgresDatabase(database: string, adminUrl: string): Promise<void> {
  if (await postgresDatabaseExists(database, adminUrl)) return;
  await psql(adminUrl, `CREATE DATABASE "${checkedName(database)}"`).catch((err) => {
    if (!/already exists/.test(message(err))) throw err; // a concurrent start created it
  });
}

/** Drops a database even while FerretDB still holds connections to it (PostgreSQL 13+; older: once they are gone). */
export async function dropPostgresDatabase(database: string, adminUrl = postgresAdminUrl()): Promise<void> {
  const sql = `DROP DATABASE IF EXISTS "${checkedName(database)}"`;
  await psql(adminUrl, `${sql} WITH (FORCE)`).catch((err) => {
    if (!/syntax error/.test(message(err))) throw err;
    return psql(adminUrl, sql);
  });
}

function checkedName(database: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(database)) throw new Error(`unexpected PostgreSQL database name "${database}"`);
  return database;
}

/** The admin URL with another database. */
function postgresUrl(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.href;
}

/** A URL without its password, and the password (handed to psql as PGPASSWORD rather than on its command line). */
function splitPassword(pgUrl: string): { url: string; password: string } {
  const url = new URL(pgUrl);
  const password = decodeURIComponent(url.password);
  url.password = '';
  return { url: url.href, password };
}

/** Runs one statement with psql (the PostgreSQL client), resolving with its unaligned output. */
async function psql(pgUrl: string, sql: string): Promise<string> {
  let target: { url: string; password: string };
  try {
    target = splitPassword(pgUrl);
    if (!/^postgres(ql)?:$/.test(new URL(pgUrl).protocol)) throw new Error('not postgres://');
  } catch {
    throw new Error(`SESSIONS_POSTGRESQL_URL must be a postgres:// URL, got "${redact(pgUrl)}"`);
  }
  const env = { PGCONNECT_TIMEOUT: '5', ...(target.password ? { PGPASSWORD: target.password } : {}) };
  try {
    return await run('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', target.url, '-c', sql], REPO, env);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error('psql is not installed (the PostgreSQL client, e.g. `apt-get install postgresql-client`)');
    }
    throw new Error(`${redact(target.url)}: ${message(err).replace(/^`[^`]*` failed \(exit \d+\):\s*/, '')}`);
  }
}

async function waitUntilReady(child: ChildProcess, port: number, uri: string, logFile: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  const fail = async (why: string) => {
    const log = await fsp.readFile(logFile, 'utf8').catch(() => '');
    const tail = log.trimEnd().split('\n').slice(-15).join('\n');
    return new Error(`FerretDB ${why}; last lines of ${logFile}:\n${tail}`);
  };
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw await fail(`exited at start-up (code ${child.exitCode ?? child.signalCode})`);
    if (await canConnect(port)) break;
    if (Date.now() > deadline) throw await fail('did not accept connections within 20 s');
    await sleep(25);
  }
  const client = new mongoose.mongo.MongoClient(uri, { serverSelectionTimeoutMS: 10_000, directConnection: true });
  try {
    await client.db().admin().ping();
  } catch (err) {
    throw await fail(`did not answer a ping (${message(err)})`);
  } finally {
    await client.close();
  }
}

async function stopProcessGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    child.stdin?.destroy();
    return;
  }
  child.ref();
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.stdin?.end(); // the watchdog sends SIGTERM to ferretdb
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }, 5_000);
  await exited;
  clearTimeout(timer);
}

// ---------- helpers ----------

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/** Runs a command, resolving with its stdout; rejects with the tail of its output. */
function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GOWORK: 'off', ...env } });
    let out = '';
    let all = '';
    child.stdout.on('data', (b) => ((out += b), (all += b)));
    child.stderr.on('data', (b) => (all += b));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`\`${cmd} ${args.join(' ')}\` failed (exit ${code}):\n${all.trimEnd().split('\n').slice(-40).join('\n')}`));
    });
  });
}

function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

function shortPath(p: string): string {
  const rel = path.relative(REPO, p);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---------- CLI: `tsx scripts/database.ts --ensure` prepares the embedded database binary ----------

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    if (!process.argv.includes('--ensure')) throw new Error('usage: tsx scripts/database.ts --ensure');
    const choice = process.env.MONGODB_URI ? 'external' : embeddedChoice();
    if (choice === 'external') console.log('MONGODB_URI is set: no embedded database needed');
    else if (choice === 'ferretdb-postgresql') {
      const unavailable = await postgresUnavailable();
      if (unavailable) throw new Error(`SESSIONS_EMBEDDED_DB=ferretdb-postgresql: PostgreSQL not reachable: ${unavailable}`);
      console.log(`PostgreSQL reachable at ${redact(postgresAdminUrl())}; FerretDB ready: ${shortPath(await ensureFerretDB())}`);
    }
    else if (choice !== 'ferretdb' && (await mongodBinary(console.log)).ok) console.log('embedded mongod is available');
    else if (choice === 'mongod') throw new Error('SESSIONS_EMBEDDED_DB=mongod but no mongod binary could be had');
    else console.log(`FerretDB ready: ${shortPath(await ensureFerretDB())}`);
  } catch (err) {
    console.error(message(err));
    process.exitCode = 1;
  }
}
