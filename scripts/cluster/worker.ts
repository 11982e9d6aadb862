/**
 * One API process of the cluster (scripts/cluster/cluster.ts forks it): the server on HOST:PORT
 * against MONGODB_URI (required), configured by the environment like `npm start`. Tells the parent
 * `{ ready: true, url }` over IPC once listening. SIGTERM/SIGINT stop it gracefully (sockets close
 * with 1001); losing the parent (even to SIGKILL) makes it exit, so none outlives the cluster.
 */
import { ConfigError, loadSettings } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startServer } from '../../src/server/app.js';
import { exitOnStartupFailure, stopOnSignals } from '../serve.js';

async function main() {
  const settings = loadSettings();
  if (!settings.mongodbUri) throw new ConfigError('cluster worker: MONGODB_URI must be set');
  const logger = createLogger(settings.logLevel);
  const server = await startServer({ settings, mongoUri: settings.mongodbUri, logger });
  process.send?.({ ready: true, url: server.url });

  stopOnSignals(logger, () => server.stop());
}

process.on('disconnect', () => process.exit(1));

main().catch((err: unknown) => exitOnStartupFailure(err, process.env.MONGODB_URI ? { uri: process.env.MONGODB_URI, external: true } : undefined));
