import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs on stdout. Tokens, passwords and their hashes are never passed to it. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    redact: { paths: ['token', 'password', '*.token', '*.password', 'req.headers.authorization', 'req.headers.cookie'], censor: '[redacted]' },
  });
}
