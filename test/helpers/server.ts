import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { createClient, type Client } from 'graphql-ws';
import { pino } from 'pino';
import { inject } from 'vitest';
import WebSocket from 'ws';
import { loadSettings } from '../../src/config.js';
import { startServer, type RunningServer } from '../../src/server/app.js';

/** The database that test/global-setup.ts started, with a database name of the caller's own. */
export function testDatabaseUri(name = `t_${randomBytes(4).toString('hex')}`): string {
  const url = new URL(inject('mongoUri'));
  url.pathname = `/${name}`;
  return url.toString();
}

export interface TestServer extends RunningServer {
  /** Everything the server logged, as JSON lines. */
  logs: string[];
  gql<T = any>(query: string, variables?: Record<string, unknown>, options?: RequestOptions): Promise<GqlResponse<T>>;
  wsClient(token: string | null, options?: WsClientOptions): Client;
  mongoUri: string;
}

export interface RequestOptions {
  token?: string;
  headers?: Record<string, string>;
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
}

/** One GraphQL request over HTTP POST; an answer that is not JSON is an error naming `who`. */
export async function postGraphQL<T>(
  url: string,
  query: string,
  variables: Record<string, unknown>,
  options: RequestOptions,
  who = url,
): Promise<GqlResponse<T>> {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      ...options.headers,
    },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
  });
  const text = await res.text();
  let body: { data: T; errors?: GqlResponse<T>['errors'] };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new Error(`${who}: HTTP ${res.status} without a JSON body: ${text.slice(0, 200)}`);
  }
  return { status: res.status, data: body.data, errors: body.errors, headers: res.headers };
}

export interface WsClientOptions {
  /** Told how the socket closed. */
  onClosed?: (code: number, reason: string) => void;
  /** False: the socket never answers the server's keep-alive pings, as a browser whose machine went to sleep. */
  answerPings?: boolean;
}

/** A socket that reads every frame and answers no ping. */
class DeafToPings extends WebSocket {
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols, { autoPong: false });
  }
}

/** A graphql-ws client that connects at once and never retries. */
export function graphqlWsClient(wsUrl: string, token: string | null, { onClosed, answerPings = true }: WsClientOptions = {}): Client {
  return createClient({
    url: wsUrl,
    webSocketImpl: answerPings ? WebSocket : DeafToPings,
    connectionParams: token ? { token } : {},
    retryAttempts: 0,
    lazy: false,
    // The default prints every close it did not ask for (a 4401 after a terminal event is expected here).
    onNonLazyError: () => {},
    on: {
      closed: (event) => {
        const { code, reason } = event as { code: number; reason?: string };
        onClosed?.(code, String(reason ?? ''));
      },
    },
  });
}

export interface GqlResponse<T> {
  status: number;
  data: T;
  errors?: Array<{ message: string; extensions?: Record<string, any> }>;
  headers: Headers;
}

/** Fast password hashing, no login limit in practice, fast change polling; any variable can be overridden. */
export const TEST_ENV: Record<string, string> = {
  NODE_ENV: 'test',
  PORT: '0',
  LOG_LEVEL: 'debug',
  PASSWORD_HASH_COST: '10',
  LOGIN_RATE_LIMIT: '1000',
  LOGIN_USER_RATE_LIMIT: '1000000',
  LOGIN_ADDRESS_RATE_LIMIT: '1000000',
  REGISTRATION_RATE_LIMIT: '1000000',
  LOGIN_ADDRESS_CONCURRENCY: '1000000',
  TOKEN_READ_ADDRESS_CONCURRENCY: '1000000',
  CHANGE_POLL_INTERVAL_MS: '50',
};

/** `clock`: the server's wall clock (default the system's). */
export async function startTestServer(env: Record<string, string> = {}, mongoUri = testDatabaseUri(), clock?: () => Date): Promise<TestServer> {
  const settings = loadSettings({ ...TEST_ENV, ...env });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const server = await startServer({ settings, mongoUri, clock, logger: pino({ level: settings.logLevel }, sink) });
  const wsUrl = server.url.replace(/^http/, 'ws');
  return {
    ...server,
    logs,
    mongoUri,
    gql: (query, variables = {}, options = {}) => postGraphQL(server.url, query, variables, options),
    wsClient: (token, options) => graphqlWsClient(wsUrl, token, options),
  };
}

export function errorCode(res: GqlResponse<unknown>): string | undefined {
  return res.errors?.[0]?.extensions?.code;
}

let userCounter = 0;

/** Registers a fresh user and logs in; returns the token and the session. */
export async function newUserSession(server: TestServer, expiry?: { seconds?: number | null; at?: string }) {
  const username = `user${process.pid}x${++userCounter}x${randomBytes(3).toString('hex')}`;
  const password = 'correct horse battery';
  const reg = await server.gql('mutation($u:String!,$p:String!){ register(username:$u,password:$p){ id } }', { u: username, p: password });
  if (reg.errors) throw new Error(JSON.stringify(reg.errors));
  const session = await login(server, username, password, expiry);
  return { username, password, ...session };
}

export const SESSION_FIELDS = 'id expiryAge expiryDate expireAtBrowserClose policy policySeconds limitedBy lastSavedAt serverTime current';

export async function login(server: TestServer, username: string, password: string, expiry?: { seconds?: number | null; at?: string }) {
  const res = await server.gql(
    `mutation($u:String!,$p:String!,$e:ExpiryInput){ login(username:$u,password:$p,expiry:$e){ token session { ${SESSION_FIELDS} } } }`,
    { u: username, p: password, e: expiry ?? null },
  );
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return { token: res.data.login.token as string, session: res.data.login.session as Record<string, any> };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once `condition` holds, checked every 100 ms; throws after `ms`. */
export async function eventually(condition: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(100);
  }
}

export interface WsResult {
  data?: any;
  errors?: Array<{ message: string; extensions?: Record<string, any> }>;
}

/** One operation over graphql-ws: its first result, or the errors of an `error` message. */
export function overSocket(client: Client, query: string, variables: Record<string, unknown> = {}): Promise<WsResult> {
  return new Promise((resolve, reject) => {
    let first: WsResult | null = null;
    const dispose = client.subscribe(
      { query, variables },
      {
        next: (value) => {
          first ??= value as WsResult;
          dispose();
          resolve(first);
        },
        error: (err) => (Array.isArray(err) ? resolve({ errors: err }) : reject(err instanceof Error ? err : new Error(String((err as { code?: number }).code)))),
        complete: () => resolve(first ?? {}),
      },
    );
  });
}
