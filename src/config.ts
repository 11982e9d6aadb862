import { distance } from 'fastest-levenshtein';
import { z } from 'zod';
import { trustProxy } from './server/clientAddress.js';
import { parseAllowedOrigins } from './server/origin.js';

/** A boolean, case-insensitive (Django's settings are written `True` / `False`). */
const bool = z
  .string()
  .trim()
  .toLowerCase()
  .pipe(z.enum(['true', 'false', '1', '0', 'yes', 'no']))
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
/** A number written in decimal: an empty value, `0x10` or `1e3` is refused, not read as 0, 16 or 1000. */
const decimal = z
  .string()
  .trim()
  .regex(/^-?\d+(\.\d+)?$/, 'expected a decimal number')
  .transform(Number);
const number = <T extends z.ZodType<unknown, number>>(rule: T) => decimal.pipe(rule);
const seconds = number(z.number().int().nonnegative());
const positiveCount = number(z.number().int().positive());
const positiveSeconds = positiveCount;
/** The longest wait Node's timers take (2^31 - 1 ms); a longer one fires at once, with a warning each time. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** A duration in seconds or ms that the server waits with a timer (`secondsWithinTimer`: seconds, by a rule of its own). */
const secondsWithinTimer = (rule: z.ZodNumber) => number(rule.max(Math.floor(MAX_TIMER_MS / 1000), 'at most 2147483 s (24.8 days), the longest timer Node runs'));
const timerSeconds = secondsWithinTimer(z.number().int().positive());
/** A timer's wait in ms, from `min`: below it, the value is taken for seconds written as ms (a heartbeat of 5 ms loads the database). */
const timerMs = (min: number, max = MAX_TIMER_MS) =>
  number(z.number().int().min(min, `at least ${min} (milliseconds, not seconds)`).max(max, `at most ${max} ms, the longest timer Node runs`));
/** Heartbeats a presence lease lasts: a process that misses two in a row still keeps it. */
const PRESENCE_LEASE_HEARTBEATS = 3;
/** Not empty (an empty value is not a way to ask for the default: leave the variable unset). */
const text = z.string().trim().min(1, 'empty: unset it for the default');

/** A cookie name: an RFC 6265 token, kept to letters, digits, `_` and `-`. */
const cookieName = z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, _ and - only');
/**
 * Django's SESSION_COOKIE_SAMESITE: 'Lax', 'Strict', 'None', or False (no SameSite attribute),
 * case-insensitive. Stored lower-cased, false for none.
 */
const sameSite = z
  .string()
  .trim()
  .toLowerCase()
  .pipe(z.enum(['lax', 'strict', 'none', 'false'], { message: "expected 'Lax', 'Strict', 'None' or 'False'" }))
  .transform((v) => (v === 'false' ? false : v));
export type SameSite = 'lax' | 'strict' | 'none' | false;
/** SESSION_COOKIE_DOMAIN: a host name, optionally with a leading dot; empty means none (Django's None, a host-only cookie). */
const cookieDomain = z
  .string()
  .trim()
  .regex(/^(\.?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$|^$/i, 'not a domain name')
  .transform((v) => (v === '' ? null : v));
/** SESSION_COOKIE_PATH: an absolute path without spaces, `;` or control characters. */
const cookiePath = z.string().regex(/^\/[\x21-\x3A\x3C-\x7E]*$/, "an absolute path ('/...') without spaces or ';'");

/** Environment variables, their defaults and what they mean (also listed in the README). */
const schema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: text.default('127.0.0.1'),
  PORT: number(z.number().int().min(0).max(65535)).default(4000),
  MONGODB_URI: text.optional(),
  /** Express "trust proxy": which proxies may set X-Forwarded-For (the client address used for rate limits). */
  TRUST_PROXY: z
    .string()
    .trim()
    .default('false')
    .transform((value, ctx) => {
      if (/^(true|false)$/i.test(value)) return value.toLowerCase() === 'true';
      try {
        trustProxy(value);
        return value;
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        ctx.addIssue({ code: 'custom', message: `expected true, false, a number of hops, or comma-separated addresses, subnets, loopback, linklocal or uniquelocal (${reason})` });
        return z.NEVER;
      }
    }),
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
  /**
   * Django's SESSION_EXPIRE_AT_BROWSER_CLOSE: a session whose expiry is null (the global policy)
   * expires when the browser closes, as an expiry of 0 does.
   */
  SESSION_EXPIRE_AT_BROWSER_CLOSE: bool.default(false),
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
  PRESENCE_HEARTBEAT_MS: timerMs(100, Math.floor(MAX_TIMER_MS / PRESENCE_LEASE_HEARTBEATS)).default(5000),
  /** With sliding renewal, skip the write unless the expiry moves by more than this fraction of the idle period. */
  SESSION_TOUCH_FRACTION: number(z.number().min(0).lt(1, 'below 1: at 1 no renewal is written before the session expires')).default(0.05),
  /** How long an ended session's record is kept (so a returning client learns how it ended) before the TTL index removes it. */
  SESSION_RETENTION: seconds.default(86_400),
  /** Default lead time of EXPIRING_SOON events, in seconds. */
  SESSION_EXPIRING_SOON_LEAD: seconds.default(60),

  /** Where clients send a user whose session ended (the frontend's location.assign): a path of this site or an http(s) URL. */
  LOGIN_URL: text
    .regex(/^(\/(?![/\\])|https?:\/\/)[\x21-\x7E]*$/i, "a path ('/login') or an http(s) URL, without spaces")
    .default('/app/login'),
  REGISTRATION_ENABLED: bool.default(true),
  GRAPHIQL_ENABLED: bool.optional(),
  /** Django's session cookie settings. Unset: Django's defaults (ALIASES names the older names still read). */
  SESSION_COOKIE_NAME: cookieName.optional(),
  SESSION_COOKIE_DOMAIN: cookieDomain.optional(),
  SESSION_COOKIE_PATH: cookiePath.default('/'),
  SESSION_COOKIE_SECURE: bool.optional(),
  SESSION_COOKIE_HTTPONLY: bool.default(true),
  SESSION_COOKIE_SAMESITE: sameSite.optional(),
  /** Deprecated names of SESSION_COOKIE_NAME, SESSION_COOKIE_SECURE and SESSION_COOKIE_SAMESITE. */
  COOKIE_NAME: cookieName.optional(),
  COOKIE_SECURE: bool.optional(),
  COOKIE_SAMESITE: sameSite.optional(),

  /**
   * Login limits (auth/attemptLimiter.ts): attempts that did not succeed, counted before the password
   * is checked, allowed per window of seconds. LOGIN_RATE_*: per username from one client address;
   * LOGIN_USER_RATE_*: per username from all addresses; LOGIN_ADDRESS_RATE_*: per client address
   * across usernames. An IPv6 address counts as its /64.
   */
  LOGIN_RATE_LIMIT: positiveCount.default(5),
  LOGIN_RATE_WINDOW: positiveSeconds.default(900),
  LOGIN_USER_RATE_LIMIT: positiveCount.default(50),
  LOGIN_USER_RATE_WINDOW: positiveSeconds.default(3600),
  LOGIN_ADDRESS_RATE_LIMIT: positiveCount.default(50),
  LOGIN_ADDRESS_RATE_WINDOW: positiveSeconds.default(900),
  /**
   * Logins and registrations from one client address that one process handles at once; more are
   * refused (RATE_LIMITED, retryAfter 1) before they cost the database or a hash.
   */
  LOGIN_ADDRESS_CONCURRENCY: positiveCount.default(4),
  /**
   * Valid sessions one user may hold: a login beyond it ends the user's oldest others (REVOKED);
   * 0: no limit. Without it, logging in again and again grew the sessions without bound, and on
   * FerretDB every listing scans them all.
   */
  MAX_SESSIONS_PER_USER: number(z.number().int().nonnegative()).default(100),
  /** Registrations (each one expensive password hash, whatever its outcome) allowed per client address per window of seconds. */
  REGISTRATION_RATE_LIMIT: positiveCount.default(10),
  REGISTRATION_RATE_WINDOW: positiveSeconds.default(3600),
  /** graphql-ws keep-alive ping interval, in seconds. */
  WS_PING_INTERVAL: timerSeconds.default(20),
  /** Seconds a client has to send a whole HTTP request (its headers within at most 10 s of it). */
  HTTP_REQUEST_TIMEOUT: timerSeconds.default(15),
  /**
   * Seconds an idle keep-alive HTTP connection is kept open; 0: until the client closes it, for a
   * process that only a balancer reusing its connections reaches (scripts/cluster/haproxy.ts).
   */
  HTTP_KEEP_ALIVE_TIMEOUT: secondsWithinTimer(z.number().int().nonnegative()).default(5),
  /** Operations (queries, mutations, subscriptions) that may run at once on one websocket. */
  WS_MAX_OPERATIONS_PER_SOCKET: positiveCount.default(20),
  /** Websockets one session may hold open in one process. */
  WS_MAX_SOCKETS_PER_SESSION: positiveCount.default(20),
  /** Websockets one user may hold open in one process, over all of its sessions; and as many allSessions subscriptions. */
  WS_MAX_SOCKETS_PER_USER: positiveCount.default(100),
  /** Websockets from one client address that may wait for connection_init at once. */
  WS_MAX_UNAUTHENTICATED_PER_ADDRESS: positiveCount.default(20),
  /**
   * Sessions read from the database by token at once, per process, for HTTP requests and websocket
   * connection_init messages together; the others wait their turn (store/sessionStore.ts says why).
   */
  MAX_CONCURRENT_TOKEN_READS: positiveCount.optional(),
  /** Of those, reads one client address may have waiting or running at once; more are refused at once. */
  TOKEN_READ_ADDRESS_CONCURRENCY: positiveCount.default(256),
  /** Deprecated name of MAX_CONCURRENT_TOKEN_READS, from when it bounded connection_init alone. */
  WS_MAX_CONCURRENT_AUTHENTICATIONS: positiveCount.optional(),
  /**
   * Seconds the expiry re-check waits for a database that answers pings but has not committed the
   * ends due (a stuck write lock, a stalled disk) before they end on their last known expiry.
   */
  EXPIRY_RECHECK_MAX_WAIT: timerSeconds.default(10),
  /**
   * Seconds an operation waits for the database's answer to start (the driver's socketTimeoutMS)
   * before it fails with DATABASE_UNAVAILABLE. A database that hangs as a whole is noticed sooner,
   * by the driver's heartbeat; this bounds one operation it never answers while it answers the rest.
   */
  DATABASE_OPERATION_TIMEOUT: timerSeconds.default(30),
  /** Polling interval of the change feed when the database has no change streams, in ms. */
  CHANGE_POLL_INTERVAL_MS: timerMs(10).default(100),
  /**
   * With a polling change feed, requests are authenticated from memory while the feed has read the
   * change log within this many ms (store/sessionCache.ts): a logout or revocation answered by
   * another process is honoured here within this delay. 0: every request reads the database.
   */
  SESSION_CACHE_MAX_STALENESS_MS: number(z.number().int().min(0)).default(300),
  /** Sessions the cache above holds per process (least recently used dropped first). */
  SESSION_CACHE_SIZE: positiveCount.default(100_000),
  /** scrypt cost as log2(N): 15 is 32 MiB per hash. Lower it only for tests and benchmarks. */
  PASSWORD_HASH_COST: number(z.number().int().min(10).max(20)).default(15),
});

export type Env = z.infer<typeof schema>;

/** Older names, still read (deprecated) as the ones they stand for: the cookie variables before their Django names, and one renamed setting. */
const ALIASES = [
  ['SESSION_COOKIE_NAME', 'COOKIE_NAME'],
  ['SESSION_COOKIE_SECURE', 'COOKIE_SECURE'],
  ['SESSION_COOKIE_SAMESITE', 'COOKIE_SAMESITE'],
  ['MAX_CONCURRENT_TOKEN_READS', 'WS_MAX_CONCURRENT_AUTHENTICATIONS'],
] as const;

const DEFAULT_MAX_CONCURRENT_TOKEN_READS = 16;

/** Waits written in seconds where the other waits are in ms: 1 000 or more may well be ms written as seconds. */
const WAITS_IN_SECONDS = ['WS_PING_INTERVAL', 'HTTP_REQUEST_TIMEOUT', 'HTTP_KEEP_ALIVE_TIMEOUT', 'EXPIRY_RECHECK_MAX_WAIT', 'DATABASE_OPERATION_TIMEOUT'] as const;

/** Where the API is served: the session cookie must reach it (and the websocket upgrade, on the same path). */
const API_PATH = '/graphql';

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
  cookie: CookieSettings;
  loginRateLimit: { perUserAndAddress: RateBudget; perUser: RateBudget; perAddress: RateBudget };
  registrationRateLimit: RateBudget;
  /** Logins and registrations of one client address handled at once by one process (LOGIN_ADDRESS_CONCURRENCY). */
  loginAddressConcurrency: number;
  /** Valid sessions one user may hold (MAX_SESSIONS_PER_USER); null: no limit. */
  maxSessionsPerUser: number | null;
  wsPingIntervalMs: number;
  httpRequestTimeoutMs: number;
  /** 0: no timeout. */
  httpKeepAliveTimeoutMs: number;
  websocket: { operationsPerSocket: number; socketsPerSession: number; socketsPerUser: number; unauthenticatedPerAddress: number };
  /** Sessions read from the database by token at once, over both transports (MAX_CONCURRENT_TOKEN_READS). */
  maxConcurrentTokenReads: number;
  /** Of those, how many one client address may have in hand (TOKEN_READ_ADDRESS_CONCURRENCY). */
  tokenReadAddressConcurrency: number;
  changePollIntervalMs: number;
  /** How long the expiry re-check waits for a database that answers pings but has not decided (EXPIRY_RECHECK_MAX_WAIT). */
  recheckMaxWaitMs: number;
  /** How long an operation waits for the database's answer to start (DATABASE_OPERATION_TIMEOUT). */
  databaseOperationTimeoutMs: number;
  sessionCache: { maxStalenessMs: number; size: number };
  passwordHashCost: number;
  /**
   * What loading the environment found worth a warning but not a refusal: unknown SESSION_*
   * variables, deprecated names. startServer logs each once at start-up.
   */
  warnings: string[];
}

/** The session cookie's attributes, as Django's SESSION_COOKIE_* settings give them. */
export interface CookieSettings {
  name: string;
  /** The Domain attribute; null for a host-only cookie (Django's None). */
  domain: string | null;
  path: string;
  secure: boolean;
  httpOnly: boolean;
  /** The SameSite attribute; false for none. */
  sameSite: SameSite;
}

/** At most `limit` attempts per `windowSeconds` (auth/attemptLimiter.ts). */
export interface RateBudget {
  limit: number;
  windowSeconds: number;
}

/** The inputs of the pure expiry rules (src/expiry). All durations in seconds. */
export interface ExpirySettings {
  cookieAge: number;
  /** SESSION_EXPIRE_AT_BROWSER_CLOSE: the global policy (a null expiry) expires at browser close. */
  expireAtBrowserClose: boolean;
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
  const warnings: string[] = [];
  const unknown = unknownSessionVariables(source);
  if (unknown.length > 0) {
    warnings.push(
      `Unknown SESSION_* environment variables, ignored: ${unknown.join(', ')}. ` +
        `This server reads: ${KNOWN_SESSION_VARIABLES.join(', ')}.`,
    );
  }
  for (const name of WAITS_IN_SECONDS) {
    const value = e[name];
    if (value >= 1000) warnings.push(`${name}=${value} is in seconds (${(value / 3600).toFixed(1)} h): if milliseconds were meant, write ${Math.max(1, Math.round(value / 1000))}.`);
  }
  const misspelt = misspeltSettings(source);
  if (misspelt.length > 0) {
    warnings.push(`Environment variables that look like misspelt settings, ignored: ${misspelt.map(([name, setting]) => `${name} (${setting}?)`).join(', ')}.`);
  }
  // What the schema alone cannot refuse (an alias that contradicts its name, SameSite=None without
  // Secure): every such issue named in one error.
  const issues: string[] = [];
  const cookie = cookieSettings(e, issues, warnings);
  const maxConcurrentTokenReads = fromNameOrAlias(e, 'MAX_CONCURRENT_TOKEN_READS', issues, warnings) ?? DEFAULT_MAX_CONCURRENT_TOKEN_READS;
  if (issues.length > 0) throw new ConfigError(`Invalid configuration:\n${issues.join('\n')}`);
  const staleness = e.SESSION_CACHE_MAX_STALENESS_MS;
  if (staleness > 0 && staleness <= e.CHANGE_POLL_INTERVAL_MS) {
    warnings.push(
      `SESSION_CACHE_MAX_STALENESS_MS=${staleness} is not above CHANGE_POLL_INTERVAL_MS=${e.CHANGE_POLL_INTERVAL_MS}: ` +
        'the session cache will seldom be fresh enough to answer (set it to 0 to switch it off, or to about 3 poll intervals).',
    );
  }
  return {
    env: e.NODE_ENV,
    host: e.HOST,
    port: e.PORT,
    mongodbUri: e.MONGODB_URI,
    trustProxy: e.TRUST_PROXY,
    allowedOrigins: e.ALLOWED_ORIGINS,
    logLevel: e.LOG_LEVEL,
    expiry: {
      cookieAge: e.SESSION_COOKIE_AGE,
      expireAtBrowserClose: e.SESSION_EXPIRE_AT_BROWSER_CLOSE,
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
    cookie,
    loginRateLimit: {
      perUserAndAddress: { limit: e.LOGIN_RATE_LIMIT, windowSeconds: e.LOGIN_RATE_WINDOW },
      perUser: { limit: e.LOGIN_USER_RATE_LIMIT, windowSeconds: e.LOGIN_USER_RATE_WINDOW },
      perAddress: { limit: e.LOGIN_ADDRESS_RATE_LIMIT, windowSeconds: e.LOGIN_ADDRESS_RATE_WINDOW },
    },
    registrationRateLimit: { limit: e.REGISTRATION_RATE_LIMIT, windowSeconds: e.REGISTRATION_RATE_WINDOW },
    loginAddressConcurrency: e.LOGIN_ADDRESS_CONCURRENCY,
    maxSessionsPerUser: e.MAX_SESSIONS_PER_USER || null,
    wsPingIntervalMs: e.WS_PING_INTERVAL * 1000,
    httpRequestTimeoutMs: e.HTTP_REQUEST_TIMEOUT * 1000,
    httpKeepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT * 1000,
    websocket: {
      operationsPerSocket: e.WS_MAX_OPERATIONS_PER_SOCKET,
      socketsPerSession: e.WS_MAX_SOCKETS_PER_SESSION,
      socketsPerUser: e.WS_MAX_SOCKETS_PER_USER,
      unauthenticatedPerAddress: e.WS_MAX_UNAUTHENTICATED_PER_ADDRESS,
    },
    maxConcurrentTokenReads,
    tokenReadAddressConcurrency: e.TOKEN_READ_ADDRESS_CONCURRENCY,
    changePollIntervalMs: e.CHANGE_POLL_INTERVAL_MS,
    recheckMaxWaitMs: e.EXPIRY_RECHECK_MAX_WAIT * 1000,
    databaseOperationTimeoutMs: e.DATABASE_OPERATION_TIMEOUT * 1000,
    sessionCache: { maxStalenessMs: e.SESSION_CACHE_MAX_STALENESS_MS, size: e.SESSION_CACHE_SIZE },
    passwordHashCost: e.PASSWORD_HASH_COST,
    warnings,
  };
}

const SETTINGS = Object.keys(schema.shape);
const KNOWN_SESSION_VARIABLES = SETTINGS.filter((name) => name.startsWith('SESSION_'));

/** SESSION_* variables this server does not read: a misspelt or unsupported Django setting is named, never silently ignored. */
function unknownSessionVariables(source: NodeJS.ProcessEnv): string[] {
  const known = new Set<string>(KNOWN_SESSION_VARIABLES);
  return Object.keys(source)
    .filter((name) => name.startsWith('SESSION_') && !known.has(name))
    .sort();
}

/**
 * Other variables (SESSION_* ones are named above) within a few typing slips of a setting, each with
 * that setting: `LOGIN_RATE_LIMT=3` would otherwise leave the limit at its default without a word.
 * Settings of under 8 characters are left out, lest every short variable of the environment match.
 */
function misspeltSettings(source: NodeJS.ProcessEnv): Array<[string, string]> {
  const found: Array<[string, string]> = [];
  for (const name of Object.keys(source).sort()) {
    if (SETTINGS.includes(name) || name.startsWith('SESSION_') || !/^[A-Z0-9_]+$/.test(name)) continue;
    const setting = SETTINGS.find((s) => s.length >= 8 && distance(name, s) <= (s.length >= 16 ? 3 : 2));
    if (setting) found.push([name, setting]);
  }
  return found;
}

/**
 * The cookie settings, each from its Django name or else from its deprecated alias (with a
 * warning); both set to different values, or SameSite=None without Secure, is an issue.
 */
function cookieSettings(e: Env, issues: string[], warnings: string[]): CookieSettings {
  const pick = <K extends AliasedName>(name: K) => fromNameOrAlias(e, name, issues, warnings);
  const name = pick('SESSION_COOKIE_NAME') ?? 'sessionid';
  const secure = pick('SESSION_COOKIE_SECURE') ?? false;
  const sameSite = pick('SESSION_COOKIE_SAMESITE') ?? 'lax';
  if (sameSite === 'none' && !secure) {
    issues.push('  SESSION_COOKIE_SAMESITE: "None" requires SESSION_COOKIE_SECURE=true (browsers refuse the cookie otherwise)');
  }
  const path = e.SESSION_COOKIE_PATH;
  if (!pathMatches(API_PATH, path)) {
    warnings.push(`SESSION_COOKIE_PATH=${path} does not cover ${API_PATH}: browsers will not send the session cookie to the API.`);
  }
  const domain = e.SESSION_COOKIE_DOMAIN ?? null;
  // The cookie name prefixes (RFC 6265bis 4.1.3), matched case-insensitively as browsers do; browsers drop a cookie that breaks them.
  const prefix = /^__(host|secure)-/i.exec(name)?.[1]?.toLowerCase();
  const breaks = (requirement: string) => issues.push(`  SESSION_COOKIE_NAME: "${name}" requires ${requirement} (browsers refuse the cookie otherwise)`);
  if (prefix && !secure) breaks('SESSION_COOKIE_SECURE=true');
  if (prefix === 'host' && path !== '/') breaks('SESSION_COOKIE_PATH=/');
  if (prefix === 'host' && domain !== null) breaks('no SESSION_COOKIE_DOMAIN');
  return { name, domain, path, secure, httpOnly: e.SESSION_COOKIE_HTTPONLY, sameSite };
}

type AliasedName = (typeof ALIASES)[number][0];

/** A setting from its name, or else from its deprecated alias (with a warning); both set to different values is an issue. */
function fromNameOrAlias<K extends AliasedName>(e: Env, name: K, issues: string[], warnings: string[]): Env[K] {
  const alias = ALIASES.find(([current]) => current === name)![1];
  const value = e[name];
  const old = e[alias] as Env[K];
  if (old === undefined) return value;
  if (value !== undefined && value !== old) {
    issues.push(`  ${name}: set to ${String(value)}, but its deprecated alias ${alias} to ${String(old)}: remove ${alias}`);
  } else {
    warnings.push(`${alias} is deprecated: use ${name}${value === undefined ? '' : ` (both are set: remove ${alias})`}.`);
  }
  return value ?? old;
}

/** RFC 6265, section 5.1.4: whether a cookie with path `cookiePath` is sent with requests for `requestPath`. */
function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}
