import { z } from 'zod';
import { parseAllowedOrigins } from './server/origin.js';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const seconds = z.coerce.number().int().nonnegative();
const positiveSeconds = z.coerce.number().int().positive();
const positiveCount = positiveSeconds;

/** Environment variables, their defaults and what they mean (also listed in the README). */
const schema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(4000),
  MONGODB_URI: z.string().optional(),
  /** Express "trust proxy": which proxies may set X-Forwarded-For (the client address used for rate limits). */
  TRUST_PROXY: z.string().default('false'),
  /**
   * Origins besides the server's own whose pages may open a websocket authenticated by the session
   * cookie, comma-separated `scheme://host[:port]` (e.g. `https://app.example.com,http://localhost:5173`).
   */
  ALLOWED_ORIGINS: z
    .string()
    .default('')
    .transform((list, ctx) => {
      const parsed = parseAllowedOrigins(list);
      if ('origins' in parsed) return parsed.origins;
      ctx.addIssue({ code: 'custom', message: parsed.error });
      return z.NEVER;
    }),
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

  /**
   * Login limits (auth/attemptLimiter.ts): attempts that did not succeed, counted before the password
   * is checked, allowed per window of seconds. LOGIN_RATE_*: per username from one client address;
   * LOGIN_USER_RATE_*: per username from all addresses; LOGIN_ADDRESS_RATE_*: per client address
   * across usernames. An IPv6 address counts as its /64.
   */
  LOGIN_RATE_LIMIT: z.coerce.number().int().positive().default(5),
  LOGIN_RATE_WINDOW: positiveSeconds.default(900),
  LOGIN_USER_RATE_LIMIT: z.coerce.number().int().positive().default(50),
  LOGIN_USER_RATE_WINDOW: positiveSeconds.default(3600),
  LOGIN_ADDRESS_RATE_LIMIT: z.coerce.number().int().positive().default(50),
  LOGIN_ADDRESS_RATE_WINDOW: positiveSeconds.default(900),
  /** Registrations (each one expensive password hash, whatever its outcome) allowed per client address per window of seconds. */
  REGISTRATION_RATE_LIMIT: z.coerce.number().int().positive().default(10),
  REGISTRATION_RATE_WINDOW: positiveSeconds.default(3600),
  /** graphql-ws keep-alive ping interval, in seconds. */
  WS_PING_INTERVAL: positiveSeconds.default(20),
  /** Seconds a client has to send a whole HTTP request (its headers within at most 10 s of it). */
  HTTP_REQUEST_TIMEOUT: positiveSeconds.default(15),
  /** Operations (queries, mutations, subscriptions) that may run at once on one websocket. */
  WS_MAX_OPERATIONS_PER_SOCKET: positiveCount.default(20),
  /** Websockets one session may hold open in one process. */
  WS_MAX_SOCKETS_PER_SESSION: positiveCount.default(20),
  /** Websockets from one client address that may wait for connection_init at once. */
  WS_MAX_UNAUTHENTICATED_PER_ADDRESS: positiveCount.default(20),
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
  /** Canonical origins (ALLOWED_ORIGINS) allowed to use the session cookie on a websocket, besides the server's own. */
  allowedOrigins: string[];
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
  loginRateLimit: { perUserAndAddress: RateBudget; perUser: RateBudget; perAddress: RateBudget };
  registrationRateLimit: RateBudget;
  wsPingIntervalMs: number;
  httpRequestTimeoutMs: number;
  websocket: { operationsPerSocket: number; socketsPerSession: number; unauthenticatedPerAddress: number };
  changePollIntervalMs: number;
  passwordHashCost: number;
}

/** At most `limit` attempts per `windowSeconds` (auth/attemptLimiter.ts). */
export interface RateBudget {
  limit: number;
  windowSeconds: number;
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
    allowedOrigins: e.ALLOWED_ORIGINS,
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
    loginRateLimit: {
      perUserAndAddress: { limit: e.LOGIN_RATE_LIMIT, windowSeconds: e.LOGIN_RATE_WINDOW },
      perUser: { limit: e.LOGIN_USER_RATE_LIMIT, windowSeconds: e.LOGIN_USER_RATE_WINDOW },
      perAddress: { limit: e.LOGIN_ADDRESS_RATE_LIMIT, windowSeconds: e.LOGIN_ADDRESS_RATE_WINDOW },
    },
    registrationRateLimit: { limit: e.REGISTRATION_RATE_LIMIT, windowSeconds: e.REGISTRATION_RATE_WINDOW },
    wsPingIntervalMs: e.WS_PING_INTERVAL * 1000,
    httpRequestTimeoutMs: e.HTTP_REQUEST_TIMEOUT * 1000,
    websocket: {
      operationsPerSocket: e.WS_MAX_OPERATIONS_PER_SOCKET,
      socketsPerSession: e.WS_MAX_SOCKETS_PER_SESSION,
      unauthenticatedPerAddress: e.WS_MAX_UNAUTHENTICATED_PER_ADDRESS,
    },
    changePollIntervalMs: e.CHANGE_POLL_INTERVAL_MS,
    passwordHashCost: e.PASSWORD_HASH_COST,
  };
}
