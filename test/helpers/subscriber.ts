import type { Client } from 'graphql-ws';

/** A sessionEvents subscription on a graphql-ws client, and what its client went through, with times. */
export interface Subscriber {
  client: Client;
  events: Array<{ kind: string; reason: string | null; expiresAt: number; receivedAt: number }>;
  /** What reached the sink's `error`, and results that carried errors. */
  errors: unknown[];
  completed: boolean;
  /** The client's sockets' closes, in order (4499: the client terminated one). */
  closes: Array<{ code: number; at: number }>;
  /** Acknowledged connections, in order. */
  connects: Array<{ at: number; wasRetry: boolean }>;
  /** Connection attempts that failed with ECONNREFUSED. */
  refused: number;
  until(predicate: () => boolean, timeoutMs: number, what: string): Promise<void>;
  describe(): string;
  /** Closes the socket at once and disposes of the client (dispose alone waits for an acknowledgement that may never come). */
  stop(): Promise<void>;
}

/** Subscribes `client` to `query` and records everything (the client's own listeners stay as they are). */
export function subscribe(client: Client, query: string, variables?: Record<string, unknown>): Subscriber {
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((w) => w());
  const sub: Subscriber = {
    client,
    events: [],
    errors: [],
    completed: false,
    closes: [],
    connects: [],
    refused: 0,
    async until(predicate, timeoutMs, what) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate()) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${sub.describe()}`);
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            waiters.delete(done);
            resolve();
          };
          const timer = setTimeout(done, left);
          waiters.add(done);
        });
      }
    },
    describe: () =>
      JSON.stringify({
        kinds: sub.events.map((e) => e.kind),
        errors: sub.errors.map(errorText),
        completed: sub.completed,
        closes: sub.closes.map((c) => c.code),
        refused: sub.refused,
        reconnects: sub.connects.filter((c) => c.wasRetry).length,
      }),
    stop: async () => {
      client.terminate();
      await client.dispose();
    },
  };
  const record = <A extends unknown[]>(fn: (...args: A) => void) => (...args: A) => {
    fn(...args);
    notify();
  };
  client.on('connected', record((_socket, _payload, wasRetry) => sub.connects.push({ at: Date.now(), wasRetry })));
  client.on('closed', record((event) => sub.closes.push({ code: (event as { code: number }).code, at: Date.now() })));
  client.on(
    'error',
    record((event) => {
      if (/ECONNREFUSED/.test(errorText(event))) sub.refused++;
    }),
  );
  client.subscribe<{ sessionEvents: { kind: string; reason: string | null; expiresAt: string } }>(
    { query, variables },
    {
      next: record((result) => {
        if (result.data) {
          const { kind, reason, expiresAt } = result.data.sessionEvents;
          sub.events.push({ kind, reason, expiresAt: Date.parse(expiresAt), receivedAt: Date.now() });
        } else sub.errors.push(result.errors);
      }),
      error: record((err) => {
        sub.errors.push(err);
      }),
      complete: record(() => {
        sub.completed = true;
      }),
    },
  );
  return sub;
}

/** ws's ErrorEvent (message "connect ECONNREFUSED …", error.code), an Error, or anything else. */
export function errorText(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { message?: unknown; error?: { code?: unknown; message?: unknown }; code?: unknown };
    return [...new Set([e.message, e.code, e.error?.code, e.error?.message].filter((x) => x !== undefined).map(String))].join(' ');
  }
  return String(err);
}
