/** What the commands that serve the API share: the lines they print when ready, and how signals stop them. */
import type { Settings } from '../src/config.js';
import type { Logger } from '../src/logger.js';

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
 * SIGTERM and SIGINT run `stop` once, then exit: 0 when it stopped, 1 when stopping failed (logged).
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
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  return shutdown;
}
