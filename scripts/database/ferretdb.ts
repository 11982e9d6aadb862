import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import mongoose from 'mongoose';
import { buildOnceWithGo } from '../go-build.js';
import type { DatabaseKind, ResolvedDatabase, StartOptions } from './index.js';
import { claimDirectory } from './owner.js';
import { CACHE, shortPath } from './paths.js';
import { createPostgresDatabase, dropPostgresDatabase, postgresUrl, splitPassword, type PostgresBackend } from './postgres.js';
import { canConnect, hasExited, message, once, run, supervise, type RunningProcess } from './process.js';
import { DatabaseSetupError } from './setupError.js';
import { redact } from './uri.js';

export const FERRETDB_VERSION = 'v1.24.2';

/**
 * The pid of a FerretDB still running on `dir` (its state directory), which another server started:
 * two on one directory share its files without knowing of each other. Linux only (/proc); null elsewhere.
 */
function runningOn(dir: string): number | null {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, 'ferretdb.pid'), 'utf8'));
    // The state directory is on its command line, so a pid reused by another process does not count.
    return pid > 0 && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`--state-dir=${dir}\0`) ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Changes made to FerretDB's source before it is built. On SQLite, FerretDB 1.24.2 indexes `_id` on
 * the expression `_ferretdb_sjson->"_id"` but looks documents up by `_ferretdb_sjson->'$._id'`, which
 * SQLite does not match to that index: every lookup by `_id` (each token's authentication, each
 * reconnecting socket's) scanned the whole table, about 6 µs per stored session. The patch makes
 * the lookups use the index's own expression, which reads the same value (`->` takes "_id" as
 * "$._id"). Rename the binary (FERRETDB_BIN) whenever this list changes, so that caches rebuild.
 */
const PATCHES = [
  { file: 'internal/backends/sqlite/metadata/metadata.go', from: `IDColumn = DefaultColumn + "->'$._id'"`, to: 'IDColumn = DefaultColumn + `->"_id"`' },
];
/** The built binary; "-p1": with PATCHES as they are. */
export const FERRETDB_BIN = path.join(CACHE, 'ferretdb', 'bin', `ferretdb-${FERRETDB_VERSION}-p1`);

/** Returns the FerretDB binary, building it once with Go if it is missing. */
export function ensureFerretDB(log: (line: string) => void = console.log): Promise<string> {
  return buildOnceWithGo(
    {
      bin: FERRETDB_BIN,
      name: 'FerretDB',
      announce: `building FerretDB ${FERRETDB_VERSION} with Go into .cache/ferretdb (once; about 2-3 minutes on a cold machine)`,
      build: async (go, work) => {
        // `go install …/cmd/ferretdb@v1.24.2` succeeds but its binary panics at start-up: the module ships
        // without build/version/version.txt. So build a copy of the module source with that file added.
        const info = JSON.parse(await run(go, ['mod', 'download', '-json', `github.com/FerretDB/FerretDB@${FERRETDB_VERSION}`], work));
        const src = path.join(work, 'src');
        await fsp.cp(info.Dir, src, { recursive: true });
        for (const d of [src, ...(await fsp.readdir(src, { recursive: true, withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => path.join(e.parentPath, e.name))]) {
          await fsp.chmod(d, 0o755); // the module cache is read-only
        }
        await fsp.writeFile(path.join(src, 'build', 'version', 'version.txt'), `${FERRETDB_VERSION}\n`);
        for (const { file, from, to } of PATCHES) {
          const text = await fsp.readFile(path.join(src, file), 'utf8');
          if (!text.includes(from)) throw new Error(`FerretDB ${FERRETDB_VERSION}: ${file} no longer holds ${from}`);
          await fsp.chmod(path.join(src, file), 0o644);
          await fsp.writeFile(path.join(src, file), text.replace(from, to));
        }
        const bin = path.join(work, 'ferretdb');
        await run(go, ['build', '-buildvcs=false', '-o', bin, './cmd/ferretdb'], src);
        const version = await run(bin, ['--version'], work);
        if (!version.includes(FERRETDB_VERSION)) throw new Error(`built FerretDB reports an unexpected version:\n${version}`);
        return bin;
      },
    },
    log,
  );
}

// Runs ferretdb under a tiny sh watchdog in its own process group: when our end of its stdin pipe closes
// (stop(), or this process dying in any way, even SIGKILL) the watchdog kills ferretdb, so none is orphaned.
// Its own process group keeps a terminal's Ctrl-C away from it while the app shuts down gracefully.
// Only then (the owner is done: $STOP_FILE says so) does $REMOVE_DIR go with it (a temporary data dir, or a
// persistent one's socket dir),
// and so does a temporary PostgreSQL database ($DROP_PG_DATABASE, through psql to $DROP_PG_URL; WITH (FORCE)
// needs PostgreSQL 13, hence the retry without). A ferretdb that dies by itself leaves its data for the
// restart (supervise() in process.ts). The watchdog writes ferretdb's own pid to $PID_FILE.
const WATCHDOG =
  'exec 3<&0; rm -f "$STOP_FILE"; "$@" </dev/null & pid=$!; echo $pid >"$PID_FILE"; ' +
  '(read _ <&3; : >"$STOP_FILE"; kill $pid 2>/dev/null) & reader=$!; wait $pid; status=$?; kill $reader 2>/dev/null; ' +
  '[ -e "$STOP_FILE" ] || exit $status; rm -f "$STOP_FILE"; ' +
  '[ -z "$REMOVE_DIR" ] || rm -rf "$REMOVE_DIR"; ' +
  'if [ -n "$DROP_PG_DATABASE" ]; then ' +
  'psql -X -q -d "$DROP_PG_URL" -c "DROP DATABASE IF EXISTS \\"$DROP_PG_DATABASE\\" WITH (FORCE)" >/dev/null 2>&1 || ' +
  'psql -X -q -d "$DROP_PG_URL" -c "DROP DATABASE IF EXISTS \\"$DROP_PG_DATABASE\\"" >/dev/null 2>&1; fi; ' +
  'exit $status';

/** Linux keeps a Unix socket's path in 108 bytes, its terminating zero included. */
const MAX_SOCKET_PATH_BYTES = 107;

export async function startFerretDB(o: StartOptions, pg?: PostgresBackend): Promise<ResolvedDatabase> {
  const kind: DatabaseKind = pg ? 'ferretdb-postgresql' : 'ferretdb';
  const bin = await ensureFerretDB(o.log);
  const dir = o.persistent ? path.join(o.dataRoot, kind) : await fsp.mkdtemp(path.join(os.tmpdir(), `sessions-${kind}-`));
  await fsp.mkdir(dir, { recursive: true });
  const inUse = (by: string) =>
    new DatabaseSetupError(
      `The embedded database's data (${shortPath(dir)}) is in use by ${by}: stop that server, or give this one a database of its own (MONGODB_URI).`,
    );
  // Held for this server's whole life, restarts of its FerretDB included.
  const claim = await claimDirectory(dir);
  if (!claim.ok) throw inUse(`another server${claim.owner ? ` (pid ${claim.owner})` : ''}`);
  // One whose server was killed a moment ago, and which its watchdog is stopping.
  const other = runningOn(dir);
  if (other !== null) {
    await claim.release();
    throw inUse(`the FerretDB of another server (pid ${other})`);
  }
  const dropTemporary = async () => {
    if (!pg?.temporary) return;
    await dropPostgresDatabase(pg.database, pg.adminUrl).catch((err) =>
      o.log(`could not drop the PostgreSQL database ${pg.database} (${message(err).replace(/\s+/g, ' ')}); drop it by hand`),
    );
  };
  // Only this user may connect: no authentication is set up, so a TCP port on 127.0.0.1 would let any
  // program on the machine read or change the data, or take the port while FerretDB restarts.
  // A temporary data dir is such a directory; it goes on stop with the socket.
  const socketDir = o.persistent ? await fsp.mkdtemp(path.join(os.tmpdir(), `sessions-${kind}-socket-`)) : dir;
  const socket = path.join(socketDir, 'ferretdb.sock');
  const uri = `mongodb://${encodeURIComponent(socket)}/${o.dbName}`;
  const launch = () => {
    fs.rmSync(socket, { force: true }); // left by one that died: FerretDB would not bind over it
    return launchFerretDB(bin, dir, socket, socketDir, pg);
  };
  try {
    if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) {
      throw new DatabaseSetupError(`The embedded database's socket, ${socket}, has a longer path than a Unix socket may: set TMPDIR to a shorter directory.`);
    }
    if (pg) await createPostgresDatabase(pg.database, pg.adminUrl);
    const child = launch();
    const first = ferretdbProcess(child, dir);
    await waitUntilReady(child, socket, uri, path.join(dir, 'ferretdb.log')).catch(async (err: unknown) => {
      await first.stop();
      throw err;
    });
    const where = o.persistent ? shortPath(dir) : `${dir}, deleted on stop`;
    const storage = pg
      ? `PostgreSQL database ${redact(postgresUrl(pg.adminUrl, pg.database))}${pg.temporary ? ', dropped on stop' : ''}; state in ${where}`
      : `SQLite in ${where}`;
    // Restarted on the same socket and data when it dies; a restart that fails is abandoned without
    // its watchdog's clean-up, which would delete the very data the next attempt needs.
    const supervisor = supervise(
      first,
      async () => {
        const again = launch();
        const restarted = ferretdbProcess(again, dir);
        await waitUntilReady(again, socket, uri, path.join(dir, 'ferretdb.log')).catch(async (err: unknown) => {
          await abandonProcessGroup(again);
          throw err;
        });
        return restarted;
      },
      { name: `embedded FerretDB on ${socket}`, log: o.log, minDelayMs: o.restartDelayMs },
    );
    return {
      kind,
      uri,
      description: `FerretDB ${FERRETDB_VERSION.slice(1)} (${storage}) at ${uri}`,
      dataDir: dir,
      postgresDatabase: pg?.database,
      supervisor,
      stop: once(async () => {
        await supervisor.stop(); // its watchdog drops a temporary database; this makes sure, had it been cut short
        await fsp.rm(socketDir, { recursive: true, force: true });
        await dropTemporary();
        await claim.release();
      }),
    };
  } catch (err) {
    await fsp.rm(socketDir, { recursive: true, force: true });
    await dropTemporary();
    await claim.release();
    throw err;
  }
}

/** FerretDB on the data in `dir`, listening on `socket` alone; `removeDir` goes when it is stopped. */
function launchFerretDB(bin: string, dir: string, socket: string, removeDir: string, pg?: PostgresBackend): ChildProcess {
  const logFd = fs.openSync(path.join(dir, 'ferretdb.log'), 'a');
  const args = [
    ...(pg ? ['--handler=postgresql'] : ['--handler=sqlite', `--sqlite-url=${pathToFileURL(dir).href}/`]),
    '--listen-addr=',
    `--listen-unix=${socket}`,
    `--state-dir=${dir}`,
    '--telemetry=disable',
    '--debug-addr=-', // its default 127.0.0.1:8088 would clash between instances
    '--log-level=warn',
  ];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    REMOVE_DIR: removeDir,
    DROP_PG_DATABASE: '',
    PID_FILE: path.join(dir, 'ferretdb.pid'),
    STOP_FILE: path.join(dir, 'ferretdb.stopping'),
  };
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

/** Below this much free space FerretDB may fail to start for want of it (SQLite's -shm file alone takes 32 kB). */
const LOW_SPACE_BYTES = 1024 * 1024;

/**
 * ": the disk holding <dir> is full (12 kB free)" when its file system has less than
 * LOW_SPACE_BYTES left, else "". FerretDB's log is on that disk too: it may say nothing of it.
 */
async function fullDisk(dir: string): Promise<string> {
  const stats = await fsp.statfs(dir).catch(() => null);
  if (!stats || stats.bavail * stats.bsize >= LOW_SPACE_BYTES) return '';
  return `: the disk holding ${dir} is full (${Math.floor((stats.bavail * stats.bsize) / 1024)} kB free)`;
}

async function waitUntilReady(child: ChildProcess, socket: string, uri: string, logFile: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  const fail = async (why: string) => {
    const log = await fsp.readFile(logFile, 'utf8').catch(() => '');
    const tail = log.trimEnd().split('\n').slice(-15).join('\n');
    return new Error(`FerretDB ${why}${await fullDisk(path.dirname(logFile))}; last lines of ${logFile}:\n${tail || '(none)'}`);
  };
  for (;;) {
    if (hasExited(child)) throw await fail(`exited at start-up (code ${child.exitCode ?? child.signalCode})`);
    if (await canConnect(socket)) break;
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

/** A FerretDB run for supervise(): `child` is its watchdog, whose exit status is ferretdb's. */
function ferretdbProcess(child: ChildProcess, dir: string): RunningProcess {
  const exited = new Promise<string>((resolve) =>
    child.once('exit', (code, signal) => {
      child.stdin?.destroy();
      resolve(exitDescription(code, signal));
    }),
  );
  let pid: number | undefined;
  return {
    pid: () => {
      if (hasExited(child)) return undefined;
      try {
        pid ??= Number(fs.readFileSync(path.join(dir, 'ferretdb.pid'), 'utf8')) || undefined;
      } catch {
        // not written yet
      }
      return pid;
    },
    exited,
    stop: once(() => stopProcessGroup(child)),
  };
}

/** How a watchdog exited, in ferretdb's terms: sh reports a child killed by signal N as status 128 + N. */
function exitDescription(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) return `signal ${signal}`;
  const name = code !== null && code > 128 ? Object.entries(os.constants.signals).find(([, n]) => n === code - 128)?.[0] : undefined;
  return name ? `signal ${name}` : `exit code ${code}`;
}

/** Ends a watchdog and its ferretdb without the watchdog's clean-up (a restart that failed: the data stays). */
async function abandonProcessGroup(child: ChildProcess): Promise<void> {
  if (hasExited(child)) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
  await exited;
  child.stdin?.destroy();
}

async function stopProcessGroup(child: ChildProcess): Promise<void> {
  if (hasExited(child)) {
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
