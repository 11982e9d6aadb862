/** `npm start`: resolves the database (MONGODB_URI, else an embedded one that keeps its data) and serves the API. */
import { loadSettings } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { startServer } from '../src/server/app.js';
import { resolveDatabase } from './database.js';
import { exitOnStartupFailure, printUrls, stopOnSignals } from './serve.js';

/** The database being connected to, for the message when that fails. */
let connectingTo: { uri: string; external: boolean } | undefined;

async function main() {
  const settings = loadSettings();
  const logger = createLogger(settings.logLevel);
  const database = await resolveDatabase({ persistent: true, log: (line: string) => logger.info(line) });
  connectingTo = { uri: database.uri, external: database.kind === 'external' };
  const server = await startServer({ settings, mongoUri: database.uri, logger }).catch(async (err: unknown) => {
    await database.stop();
    throw err;
  });
  logger.info({ url: server.url, database: database.description }, 'sessions API ready');
  // Before the URLs are printed: whoever reads them may send a signal at once.
  stopOnSignals(logger, async () => {
    await server.stop();
    await database.stop();
  });
  printUrls(server.url, settings, database.description);
}

main().catch((err: unknown) => exitOnStartupFailure(err, connectingTo));
