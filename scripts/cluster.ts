/**
 * `npm run start:cluster`: WORKERS API processes (default 3) behind HAProxy on HOST:PORT (default
 * 127.0.0.1:4000), on one database resolved once as `npm start` does (MONGODB_URI, else the
 * embedded one in .data/). The generated HAProxy config goes to CLUSTER_DIR (default .data/cluster/).
 * A dead API process or HAProxy is restarted; SIGINT/SIGTERM/SIGHUP stop the API processes (gracefully), HAProxy and
 * the database.
 */
import path from 'node:path';
import { ConfigError, loadSettings } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { startCluster } from './cluster/cluster.js';
import { REPO } from './database/paths.js';
import { resolveDatabase } from './database.js';
import { exitOnStartupFailure, printUrls, stopOnSignals } from './serve.js';

async function main() {
  const settings = loadSettings(); // validated once here, so a bad setting does not crash-loop the workers
  const written = process.env.WORKERS ?? '3';
  const workers = /^\d+$/.test(written) ? Number(written) : NaN; // decimal only, as every setting: not 0x2
  if (!(workers >= 1 && workers <= 64)) throw new ConfigError(`WORKERS must be an integer from 1 to 64, got "${written}"`);
  if (settings.port === 0) throw new ConfigError('PORT=0 (any free port) does not suit the cluster, whose HAProxy is restarted on the same port: set PORT to a port number');
  const runtimeDir = process.env.CLUSTER_DIR ?? path.join(REPO, '.data', 'cluster');
  if (!runtimeDir) throw new ConfigError('CLUSTER_DIR is empty: unset it for the default (.data/cluster), or name a directory');
  const logger = createLogger(settings.logLevel);
  const log = (line: string) => logger.info(line);
  const database = await resolveDatabase({ persistent: true, log });
  let cluster;
  try {
    cluster = await startCluster({
      mongoUri: database.uri,
      workers,
      host: settings.host,
      port: settings.port,
      runtimeDir,
      log: (line) => logger.warn(line), // a dead API process or HAProxy, restarted
    });
  } catch (err) {
    await database.stop();
    throw err;
  }
  logger.info({ url: cluster.url, workers, database: database.description }, 'sessions API cluster ready');
  // Before the URLs are printed: whoever reads them may send a signal at once.
  stopOnSignals(logger, async () => {
    await cluster.stop();
    await database.stop();
  });
  printUrls(cluster.url, settings, database.description, [
    `  Balancer:     HAProxy (${cluster.configPath}), ${workers} API processes on ports ${cluster.workers.map((w) => w.port).join(', ')}`,
  ]);
}

main().catch((err: unknown) => exitOnStartupFailure(err));
