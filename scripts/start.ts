/** `npm start`: resolves the database (MONGODB_URI, else an embedded one that keeps its data) and serves the API. */
import { ConfigError, loadSettings } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { startServer } from '../src/server/app.js';
import { resolveDatabase } from './database.js';
import { printUrls, stopOnSignals } from './serve.js';

async function main() {
  const settings = loadSettings();
  const logger = createLogger(settings.logLevel);
  const database = await resolveDatabase({ persistent: true, log: (line: string) => logger.info(line) });
  const server = await startServer({ settings, mongoUri: database.uri, logger });
  logger.info({ url: server.url, database: database.description }, 'sessions API ready');
  printUrls(server.url, settings, database.description);
  stopOnSignals(logger, async () => {
    await server.stop();
    await database.stop();
  });
}

main().catch((err: unknown) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
