/**
 * The API server alone in a child process, for tests that need real processes (several on one
 * database, SIGKILL). Started by test/helpers/serverProcess.ts as `node --import tsx` on this file;
 * configured by the environment like `npm start`, except that MONGODB_URI is required (no
 * embedded database here: the test run's own is passed in).
 *
 * Protocol with the parent: once listening, one JSON line on stdout, `{"serverReady":true,"url":…}`.
 * Logs (pino JSON) go to stderr. SIGTERM/SIGINT stop the server gracefully; stdin closing (the parent
 * died) exits at once, so that no server outlives an aborted test run.
 */
import { pino } from 'pino';
import { ConfigError, loadSettings } from '../../src/config.js';
import { startServer } from '../../src/server/app.js';
import { stopOnSignals } from '../../scripts/serve.js';

async function main() {
  const settings = loadSettings(process.env);
  if (!settings.mongodbUri) throw new ConfigError('server-entry: MONGODB_URI must be set');
  const logger = pino({ level: settings.logLevel }, pino.destination({ fd: 2, sync: true }));
  const server = await startServer({ settings, mongoUri: settings.mongodbUri, logger });
  process.stdout.write(`${JSON.stringify({ serverReady: true, url: server.url, pid: process.pid })}\n`);

  stopOnSignals(logger, () => server.stop());
}

// The parent holds our stdin: when it goes away (even by SIGKILL), so do we.
process.stdin.on('end', () => process.exit(1));
process.stdin.on('error', () => process.exit(1));
process.stdin.resume();

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof ConfigError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
