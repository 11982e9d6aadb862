import { createClient, type Client, type ClientOptions } from 'graphql-ws';
import { pageConfig, websocketUrl } from '../config.js';

export const config = pageConfig();

export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly extensions: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/**
 * One GraphQL request over HTTP. The session travels in the HttpOnly cookie that
 * `login(cookie: true)` set, so this page never sees the token.
 */
export async function gql<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const res = await fetch(config.graphqlPath, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: T; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
  const error = body.errors?.[0];
  if (error) throw new ApiError(error.message, error.extensions?.code as string | undefined, error.extensions);
  return body.data as T;
}

/**
 * A graphql-ws client authenticated by the same cookie (the browser sends it with the upgrade
 * request). It keeps reconnecting after a restart or deploy (close 1001, then no server at all for a
 * while), and when a server process hangs (no acknowledgement or pong within 10 s); it gives up on
 * 4401, which the server sends once the session is over. The README's client has the same options.
 */
export function eventsClient(on: { connected(wasRetry: boolean): void; closed(): void }): Client {
  const client: Client = createClient({
    url: websocketUrl(config.graphqlPath),
    retryAttempts: Infinity,
    // A refused connection (server still down) surfaces as an error event, not a close event, which
    // graphql-ws does not retry by default. Fatal close codes such as 4401 are never retried anyway.
    shouldRetry: () => true,
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** retries, 4000) * (0.5 + Math.random() / 2))),
    keepAlive: 10_000,
    on: reconnectWhenSilent(() => client, 10_000),
  });
  client.on('connected', (_socket, _payload, wasRetry) => on.connected(wasRetry));
  client.on('closed', () => on.closed());
  return client;
}

/** Terminates the client's socket when the server has not acknowledged it, or answered a ping, within `ms`. */
function reconnectWhenSilent(client: () => Client, ms: number): ClientOptions['on'] {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const awaitAnswer = () => {
    clearTimeout(timer);
    timer = setTimeout(() => client().terminate(), ms);
  };
  const answered = () => clearTimeout(timer);
  return {
    opened: awaitAnswer,
    connected: answered,
    ping: (received) => {
      if (!received) awaitAnswer();
    },
    pong: (received) => {
      if (received) answered();
    },
    closed: answered,
  };
}

/** The page that tells the user why they are there. */
export function loginPageUrl(reason: string | null, loginUrl = config.loginUrl): string {
  const url = new URL(loginUrl, location.href);
  if (reason) url.searchParams.set('reason', reason);
  return url.toString();
}
