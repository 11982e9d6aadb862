import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { StartOptions } from './index.js';
import { REPO } from './paths.js';
import { message, run } from './process.js';
import { DatabaseSetupError } from './setupError.js';
import { redact } from './uri.js';

/** Admin URL for SESSIONS_EMBEDDED_DB=ferretdb-postgresql: a role that may CREATE DATABASE, and a database to connect to. */
export const DEFAULT_POSTGRESQL_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const PG_PERSISTENT_DB = 'sessions_ferretdb';
/** Temporary databases start with this, so leftovers (a watchdog killed too) can be found: `\l sessions_ferretdb_tmp_*`. */
export const PG_TEMPORARY_PREFIX = 'sessions_ferretdb_tmp_';

/** FerretDB's PostgreSQL backend: the database it stores into, on the server of the admin URL. */
export interface PostgresBackend {
  adminUrl: string;
  database: string;
  /** Created for this instance and dropped on stop. */
  temporary: boolean;
}

/** SESSIONS_POSTGRESQL_URL, else the local server's postgres role. */
export function postgresAdminUrl(): string {
  return process.env.SESSIONS_POSTGRESQL_URL || DEFAULT_POSTGRESQL_URL;
}

/**
 * Names the PostgreSQL database FerretDB stores into and checks the server answers. Persistent: a
 * stable name (sessions_ferretdb for the default data root, else one derived from the data root, so
 * a test's data root never shares the database of `npm start`); otherwise a fresh unique name.
 */
export async function postgresBackend(o: StartOptions): Promise<PostgresBackend> {
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

export async function createPostgresDatabase(database: string, adminUrl: string): Promise<void> {
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
export function postgresUrl(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.href;
}

/** A URL without its password, and the password (handed to psql as PGPASSWORD rather than on its command line). */
export function splitPassword(pgUrl: string): { url: string; password: string } {
  const url = new URL(pgUrl);
  const password = decodeURIComponent(url.password);
  url.password = '';
  return { url: url.href, password };
}

/** Runs one statement with psql (the PostgreSQL client), resolving with its unaligned output. */
export async function psql(pgUrl: string, sql: string): Promise<string> {
  let target: { url: string; password: string };
  try {
    target = splitPassword(pgUrl);
    if (!/^postgres(ql)?:$/.test(new URL(pgUrl).protocol)) throw new Error('not postgres://');
  } catch {
    throw new DatabaseSetupError(`SESSIONS_POSTGRESQL_URL must be a postgres:// URL, got "${redact(pgUrl)}"`);
  }
  const env = { PGCONNECT_TIMEOUT: '5', ...(target.password ? { PGPASSWORD: target.password } : {}) };
  try {
    return await run('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', target.url, '-c', sql], REPO, env);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new DatabaseSetupError('psql is not installed (the PostgreSQL client, e.g. `apt-get install postgresql-client`)');
    }
    throw new Error(`${redact(target.url)}: ${message(err).replace(/^`[^`]*` failed \(exit \d+\):\s*/, '')}`);
  }
}
