// Resolves the MongoDB-compatible database used by `npm start` and the tests:
// MONGODB_URI, else an embedded mongod (mongodb-memory-server), else FerretDB built once with Go
// (on SQLite; on a PostgreSQL server with SESSIONS_EMBEDDED_DB=ferretdb-postgresql).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { FERRETDB_BIN, startFerretDB } from './ferretdb.js';
import { mongodBinary, startMongod } from './mongod.js';
import { REPO } from './paths.js';
import { postgresBackend } from './postgres.js';
import { message, type Supervisor } from './process.js';
import { DatabaseSetupError } from './setupError.js';
import { redact, withDbName } from './uri.js';

export { ensureFerretDB, FERRETDB_BIN, FERRETDB_VERSION } from './ferretdb.js';
export {
  DEFAULT_POSTGRESQL_URL,
  dropPostgresDatabase,
  PG_TEMPORARY_PREFIX,
  postgresAdminUrl,
  postgresDatabaseExists,
  postgresUnavailable,
  psql,
} from './postgres.js';
export type { Supervisor } from './process.js';
export { redact, withDbName } from './uri.js';

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
  /**
   * Embedded databases: the server process, restarted with backoff when it dies (same port, same
   * data) until `stop()`. `supervisor.kill('SIGKILL')` crashes it on purpose (tests).
   */
  supervisor?: Supervisor;
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
  /** Embedded databases: the first delay before restarting a server process that died (default 100 ms; doubles up to 5 s). */
  restartDelayMs?: number;
}

/** ResolveOptions with its defaults filled in. */
export type StartOptions = { persistent: boolean; dbName: string; log: (line: string) => void; dataRoot: string; restartDelayMs: number };

export async function resolveDatabase(opts: ResolveOptions): Promise<ResolvedDatabase> {
  const o = {
    persistent: opts.persistent,
    dbName: opts.dbName ?? 'sessions',
    log: opts.log ?? ((line: string) => console.log(line)),
    dataRoot: opts.dataRoot ?? path.join(REPO, '.data'),
    restartDelayMs: opts.restartDelayMs ?? 100,
  };
  const kind = opts.kind ?? (externalUri() ? 'external' : embeddedChoice());
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
    if (err instanceof DatabaseSetupError) throw err;
    // Built already, so what failed is the server itself (its data, say), not a missing Go.
    if (existsSync(FERRETDB_BIN)) throw new DatabaseSetupError(`The embedded database (FerretDB) did not start: ${message(err)}`);
    causes.push(`FerretDB: ${message(err)}`);
    throw new DatabaseSetupError(
      'No database available. Set MONGODB_URI to a MongoDB server (e.g. one started by `docker compose up`), ' +
        'or install Go (https://go.dev/dl/, needed once to build FerretDB), ' +
        'or set MONGOMS_SYSTEM_BINARY to a local mongod.\n  ' +
        causes.join('\n  '),
    );
  }
}

/**
 * MONGODB_URI, or undefined when it is unset. Set but empty is refused, not taken for unset: a
 * compose file's `MONGODB_URI=${MONGO_URL}` with MONGO_URL missing would give each replica a
 * private embedded database of its own, where no logout reaches the others.
 */
export function externalUri(): string | undefined {
  return setOrUnset('MONGODB_URI');
}

function setOrUnset(name: string): string | undefined {
  const value = process.env[name];
  if (value !== undefined && value.trim() === '') throw new DatabaseSetupError(`${name} is empty: unset it for the default, or give it a value.`);
  return value;
}

export function embeddedChoice(): (typeof EMBEDDED_KINDS)[number] | 'auto' {
  const v = setOrUnset('SESSIONS_EMBEDDED_DB');
  if (v === undefined) return 'auto';
  const kind = EMBEDDED_KINDS.find((k) => k === v);
  if (kind) return kind;
  throw new DatabaseSetupError(`SESSIONS_EMBEDDED_DB must be one of ${EMBEDDED_KINDS.map((k) => `"${k}"`).join(', ')}, got "${v}"`);
}

function external(dbName: string): ResolvedDatabase {
  const uri = withDbName(externalUri()!, dbName);
  return { kind: 'external', uri, description: `MongoDB at ${redact(uri)} (MONGODB_URI)`, stop: async () => {} };
}
