import { z } from 'zod';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const seconds = z.coerce.number().int().nonnegative();
const positiveSeconds = z.coerce.number().int().positive();

/** Environment variables, their defaults and what they mean (also listed in the README). */
const schema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(4000),
  MONGODB_URI: z.string().optional(),
  /** Express "trust proxy": which proxies may set X-Forwarded-For (the client address used for rate limits). */
  TRUST_PROXY: z.string().default('false'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  /** Django's SESSION_COOKIE_AGE: the global policy, used when the expiry is null. */
  SESSION_COOKIE_AGE: positiveSeconds.default(1_209_600),
  /** Django's SESSION_SAVE_EVERY_REQUEST: every authenticated request slides the expiry. */
  SESSION_SAVE_EVERY_REQUEST: bool.default(false),
  /** Absolute cap on any session: createdAt + this, whatever renewals ask for. Unset: no cap. */
  SESSION_MAX_LIFETIME: positiveSeconds.optional(),
  /** Largest expiry a client may ask for, in seconds from now (also bounds DateTime expiries). */
  SESSION_MAX_EXPIRY: positiveSeconds.default(366 * 24 * 3600),
  /** Server-side lifetime of a browser-close session (expiry 0) if the browser never closes. */
  SESSION_BROWSER_CLOSE_AGE: positiveSeconds.optional(),
  /** How long a browser-close session survives with no live subscription before it ends. */
  SESSION_BROWSER_CLOSE_GRACE: seconds.default(30),
  /** How often each process renews its browser-close presence lease, in ms; a lease lasts three of these. */
  PRESENCE_HEARTBEAT_MS: positiveSeconds.default(5000),
  /** With sliding renewal, skip the write unless the expiry moves by more than this fraction of the idle period. */
  SESSION_TOUCH_FRACTION: z.coerce.number().min(0).max(1).default(0.05),
  /** How long an ended session's record is kept (so a returning client learns how it ended) before the TTL index removes it. */
  SESSION_RETENTION: seconds.default(86_400),
  /** Default lead time of EXPIRING_SOON events, in seconds. */
  SESSION_EXPIRING_SOON_LEAD: seconds.default(60),

  LOGIN_URL: z.string().default('/app/login'),
  REGISTRATION_ENABLED: bool.default(true),
  GRAPHIQL_ENABLED: bool.optional(),
  COOKIE_NAME: z.string().regex(/^[A-Za-z0-9_-]+$/).default('sessionid'),
  COOKIE_SECURE: bool.default(false),
  COOKIE_SAMESITE: z.enum(['lax', 'strict', 'none']).default('lax'),

  /** Failed logins allowed per username and per client address within LOGIN_RATE_WINDOW seconds. */
  LOGIN_RATE_LIMIT: positiveSeconds.default(5),
  LOGIN_RATE_WINDOW: positiveSeconds.default(300),
  /** graphql-ws keep-alive ping interval, in seconds. */
  WS_PING_INTERVAL: positiveSeconds.default(20),
  /** Polling interval of the change feed when the database has no change streams, in ms. */
  CHANGE_POLL_INTERVAL_MS: positiveSeconds.default(100),
  /** scrypt cost as log2(N): 15 is 32 MiB per hash. Lower it only for tests and benchmarks. */
  PASSWORD_HASH_COST: z.coerce.number().int().min(10).max(20).default(15),
});

/** Heartbeats a presence lease lasts: a process that misses two in a row still keeps it. */
const PRESENCE_LEASE_HEARTBEATS = 3;

export type Env = z.infer<typeof schema>;

export interface Settings {
  env: Env['NODE_ENV'];
  host: string;
  port: number;
  mongodbUri: string | undefined;
  trustProxy: boolean | string;
  logLevel: Env['LOG_LEVEL'];
  expiry: ExpirySettings;
  browserCloseGraceMs: number;
  presenceHeartbeatMs: number;
  /** A process that has not renewed its lease for this long is taken for dead. */
  presenceLeaseMs: number;
  expiringSoonLeadSeconds: number;
  retentionSeconds: number;
  loginUrl: string;
  registrationEnabled: boolean;
  graphiqlEnabled: boolean;
  cookie: { name: string; secure: boolean; sameSite: 'lax' | 'strict' | 'none' };
  loginRateLimit: { points: number; windowSeconds: number };
  wsPingIntervalMs: number;
  changePollIntervalMs: number;
  passwordHashCost: number;
}

/** The inputs of the pure expiry rules (src/expiry). All durations in seconds. */
export interface ExpirySettings {
  cookieAge: number;
  browserCloseAge: number;
  maxLifetime: number | null;
  maxExpiry: number;
  saveEveryRequest: boolean;
  touchFraction: number;
}

export class ConfigError extends Error {}

export function loadSettings(source: NodeJS.ProcessEnv = process.env): Settings {
  const parsed = schema.safeParse(source);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  if (e.COOKIE_SAMESITE === 'none' && !e.COOKIE_SECURE) {
    throw new ConfigError('Invalid configuration:\n  COOKIE_SAMESITE: "none" requires COOKIE_SECURE=true');
  }
  return {
    env: e.NODE_ENV,
    host: e.HOST,
    port: e.PORT,
    mongodbUri: e.MONGODB_URI,
    trustProxy: e.TRUST_PROXY === 'true' ? true : e.TRUST_PROXY === 'false' ? false : e.TRUST_PROXY,
    logLevel: e.LOG_LEVEL,
    expiry: {
      cookieAge: e.SESSION_COOKIE_AGE,
      browserCloseAge: e.SESSION_BROWSER_CLOSE_AGE ?? e.SESSION_COOKIE_AGE,
      maxLifetime: e.SESSION_MAX_LIFETIME ?? null,
      maxExpiry: e.SESSION_MAX_EXPIRY,
      saveEveryRequest: e.SESSION_SAVE_EVERY_REQUEST,
      touchFraction: e.SESSION_TOUCH_FRACTION,
    },
    browserCloseGraceMs: e.SESSION_BROWSER_CLOSE_GRACE * 1000,
    presenceHeartbeatMs: e.PRESENCE_HEARTBEAT_MS,
    presenceLeaseMs: e.PRESENCE_HEARTBEAT_MS * PRESENCE_LEASE_HEARTBEATS,
    expiringSoonLeadSeconds: e.SESSION_EXPIRING_SOON_LEAD,
    retentionSeconds: e.SESSION_RETENTION,
    loginUrl: e.LOGIN_URL,
    registrationEnabled: e.REGISTRATION_ENABLED,
    graphiqlEnabled: e.GRAPHIQL_ENABLED ?? e.NODE_ENV !== 'production',
    cookie: { name: e.COOKIE_NAME, secure: e.COOKIE_SECURE, sameSite: e.COOKIE_SAMESITE },
    loginRateLimit: { points: e.LOGIN_RATE_LIMIT, windowSeconds: e.LOGIN_RATE_WINDOW },
    wsPingIntervalMs: e.WS_PING_INTERVAL * 1000,
    changePollIntervalMs: e.CHANGE_POLL_INTERVAL_MS,
    passwordHashCost: e.PASSWORD_HASH_COST,
  };
}
