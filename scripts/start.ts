/** `npm start`: resolves the database (MONGODB_URI, else an embedded one that keeps its data) and serves the API. */
import { ConfigError, loadSettings } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { startServer } from '../src/server/app.js';
import { resolveDatabase } from './database.js';

async function main() {
  const settings = loadSettings();
  const logger = createLogger(settings.logLevel);
  const database = await resolveDatabase({ persistent: true, log: (line: string) => logger.info(line) });
  const server = await startServer({ settings, mongoUri: database.uri, logger });
  logger.info({ url: server.url, database: database.description }, 'sessions API ready');
  const origin = new URL(server.url).origin;
  console.log(
    [
      '',
      `  GraphQL API:  ${server.url} (subscriptions: ${server.url.replace(/^http/, 'ws')})`,
      settings.graphiqlEnabled ? `  GraphiQL:     ${origin}/graphiql` : null,
      `  App:          ${origin}/app`,
      `  Database:     ${database.description}`,
      '',
    ]
      .filter((line) => line !== null)
      .join('\n'),
  );

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    await server.stop();
    await database.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

main().catch((err: unknown) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
