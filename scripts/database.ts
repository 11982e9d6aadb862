// The database resolver's entry point (the code is in ./database/); run with --ensure it prepares the
// embedded database binary ahead of time, as .ci/run does.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { embeddedChoice, ensureFerretDB, externalUri, postgresAdminUrl, postgresUnavailable, redact } from './database/index.js';
import { mongodBinary } from './database/mongod.js';
import { shortPath } from './database/paths.js';
import { message } from './database/process.js';

export {
  DEFAULT_POSTGRESQL_URL,
  dropPostgresDatabase,
  ensureFerretDB,
  FERRETDB_BIN,
  FERRETDB_VERSION,
  PG_TEMPORARY_PREFIX,
  postgresAdminUrl,
  postgresDatabaseExists,
  postgresUnavailable,
  psql,
  redact,
  resolveDatabase,
  withDbName,
  type DatabaseKind,
  type ResolvedDatabase,
  type ResolveOptions,
} from './database/index.js';

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    if (!process.argv.includes('--ensure')) throw new Error('usage: tsx scripts/database.ts --ensure');
    const choice = externalUri() ? 'external' : embeddedChoice();
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
