/** What the commands that serve the API share: the lines they print when ready, how signals stop them, and how they fail to start. */
import { ConfigError, type Settings } from '../src/config.js';
import type { Logger } from '../src/logger.js';
import { ClusterStartError } from './cluster/cluster.js';
import { DatabaseSetupError } from './database/setupError.js';
import { redact } from './database/uri.js';

/** The URLs a newcomer needs, printed once the API answers at `url` (extra lines after the API's). */
export function printUrls(url: string, settings: Settings, databaseDescription: string, extra: string[] = []): void {
  const origin = new URL(url).origin;
  console.log(
    [
      '',
      `  GraphQL API:  ${url} (subscriptions: ${url.replace(/^http/, 'ws')})`,
      ...extra,
      settings.graphiqlEnabled ? `  GraphiQL:     ${origin}/graphiql` : null,
      `  App:          ${origin}/app`,
      `  Database:     ${databaseDescription}`,
      '',
    ]
      .filter((line) => line !== null)
      .join('\n'),
  );
}

/**
 * SIGTERM, SIGINT and SIGHUP (its terminal closed) run `stop` once, then exit: 0 when it stopped, 1
 * when stopping failed (logged). A second signal while it stops exits at once, with 1 (a graceful
 * stop waits for a database that does not answer; an embedded one is stopped by its watchdog).
 * Returns the same shutdown, for other reasons to stop (`why` is logged, `code` is the exit code on success).
 */
export function stopOnSignals(logger: Logger, stop: () => Promise<void>): (why: string, code?: number) => Promise<void> {
  let stopping = false;
  const shutdown = async (why: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    logger.info({ why }, 'shutting down');
    try {
      await stop();
      process.exit(code);
    } catch (err) {
      logger.error({ err }, 'graceful stop failed');
      process.exit(1);
    }
  };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (!stopping) return void shutdown(signal);
      logger.warn({ why: signal }, 'told again to stop: stopping at once');
      process.exit(1);
    });
  }
  return shutdown;
}

/**
 * What an operator reads when the server cannot start for a reason outside the code (a setting, the
 * port, the database), in a few lines; null for anything else, a bug, whose stack trace is printed.
 * `database`: the one the server was given, and whether MONGODB_URI named it.
 */
function startupFailure(err: unknown, database?: { uri: string; external: boolean }): string | null {
  if (err instanceof ConfigError || err instanceof DatabaseSetupError || err instanceof ClusterStartError) return err.message;
  const e = err as { code?: unknown; name?: unknown; message?: unknown; syscall?: unknown; address?: unknown; port?: unknown; hostname?: unknown };
  const firstLine = String(e.message ?? '').split('\n')[0];
  if (e.code === 'EADDRINUSE') return `Cannot listen on ${String(e.address)}:${String(e.port)}: the port is in use (set PORT to a free one, or stop what holds it).`;
  if (e.code === 'EADDRNOTAVAIL') return `Cannot listen on HOST=${String(e.address)}: not an address of this machine.`;
  if (e.syscall === 'getaddrinfo') return `Cannot listen on HOST=${String(e.hostname)}: no such host (${String(e.code)}).`;
  const where = database ? ` at ${redact(database.uri)} (${database.external ? 'MONGODB_URI' : 'the embedded database'})` : '';
  // querySrv, queryTxt: the DNS records a mongodb+srv:// URI names, looked up before any connection.
  const dnsOfSrvUri = e.syscall === 'querySrv' || e.syscall === 'queryTxt';
  if (e.name === 'MongooseServerSelectionError' || e.name === 'MongoServerSelectionError' || e.name === 'MongoNetworkError' || dnsOfSrvUri) {
    return `Cannot reach the database${where}: ${firstLine}`;
  }
  // AuthenticationFailed, Unauthorized.
  if (e.name === 'MongoServerError' && (e.code === 18 || e.code === 13)) return `The database${where} refused this server: ${firstLine} (check the user and password).`;
  return null;
}

/** Prints why the server could not start (the stack trace only for a bug) and exits 1. */
export function exitOnStartupFailure(err: unknown, database?: { uri: string; external: boolean }): never {
  console.error(startupFailure(err, database) ?? err);
  process.exit(1);
}
