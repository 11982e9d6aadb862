// Resolves the MongoDB-compatible database used by `npm start` and the tests:
// MONGODB_URI, else an embedded mongod (mongodb-memory-server), else FerretDB built once with Go.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import mongoose from 'mongoose';

export type DatabaseKind = 'external' | 'mongod' | 'ferretdb';

export interface ResolvedDatabase {
  kind: DatabaseKind;
  uri: string;
  /** One human line; never contains credentials from MONGODB_URI. */
  description: string;
  /** Where an embedded database keeps its files (undefined for external). */
  dataDir?: string;
  stop(): Promise<void>;
}

export interface ResolveOptions {
  /** true (npm start): data in <dataRoot>/<kind>, survives restarts; false (tests): a fresh temp dir, deleted on stop. */
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

function embeddedChoice(): 'mongod' | 'ferretdb' | 'auto' {
  const v = process.env.SESSIONS_EMBEDDED_DB;
  if (!v) return 'auto';
  if (v === 'mongod' || v === 'ferretdb') return v;
  throw new Error(`SESSIONS_EMBEDDED_DB must be "mongod" or "ferretdb", got "${v}"`);
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
// A temporary data dir ($REMOVE_DIR) goes with it.
const WATCHDOG =
  'exec 3<&0; "$@" </dev/null & pid=$!; (read _ <&3; kill $pid 2>/dev/null) & wait $pid; status=$?; ' +
  '[ -z "$REMOVE_DIR" ] || rm -rf "$REMOVE_DIR"; exit $status';

async function startFerretDB(o: Options): Promise<ResolvedDatabase> {
  const bin = await ensureFerretDB(o.log);
  const dir = o.persistent ? path.join(o.dataRoot, 'ferretdb') : await fsp.mkdtemp(path.join(os.tmpdir(), 'sessions-ferretdb-'));
  await fsp.mkdir(dir, { recursive: true });
  try {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const uri = `mongodb://127.0.0.1:${port}/${o.dbName}`;
      const child = launchFerretDB(bin, dir, port, !o.persistent);
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
      return {
        kind: 'ferretdb',
        uri,
        description: `FerretDB ${FERRETDB_VERSION.slice(1)} (SQLite in ${where}) at ${uri}`,
        dataDir: dir,
        stop: once(async () => {
          await stopChild();
          if (!o.persistent) await fsp.rm(dir, { recursive: true, force: true });
        }),
      };
    }
  } catch (err) {
    if (!o.persistent) await fsp.rm(dir, { recursive: true, force: true });
    throw err;
  }
}

function launchFerretDB(bin: string, dir: string, port: number, temporary: boolean): ChildProcess {
  const logFd = fs.openSync(path.join(dir, 'ferretdb.log'), 'a');
  const args = [
    '--handler=sqlite',
    `--sqlite-url=${pathToFileURL(dir).href}/`,
    `--listen-addr=127.0.0.1:${port}`,
    `--state-dir=${dir}`,
    '--telemetry=disable',
    '--debug-addr=-', // its default 127.0.0.1:8088 would clash between instances
    '--log-level=warn',
  ];
  const child = spawn('/bin/sh', ['-c', WATCHDOG, 'ferretdb-watchdog', bin, ...args], {
    detached: true,
    stdio: ['pipe', logFd, logFd],
    env: { ...process.env, REMOVE_DIR: temporary ? dir : '' },
  });
  fs.closeSync(logFd);
  child.unref(); // never keeps the event loop alive; the pipe still ties ferretdb's life to ours
  (child.stdin as net.Socket).unref();
  return child;
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
function run(cmd: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GOWORK: 'off' } });
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
    else if (choice !== 'ferretdb' && (await mongodBinary(console.log)).ok) console.log('embedded mongod is available');
    else if (choice === 'mongod') throw new Error('SESSIONS_EMBEDDED_DB=mongod but no mongod binary could be had');
    else console.log(`FerretDB ready: ${shortPath(await ensureFerretDB())}`);
  } catch (err) {
    console.error(message(err));
    process.exitCode = 1;
  }
}
