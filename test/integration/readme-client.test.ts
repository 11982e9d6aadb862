/**
 * The README's graphql-ws client ("Subscribing to the end of a session"), run as the README writes
 * it (test/helpers/readmeClient.ts), and held to the reference frontend's options.
 *
 * Through a server restart: a server process on the shared test database, a subscriber whose
 * session expires in a few seconds; the server stops (SIGTERM: close 1001; or SIGKILL: 1006) and
 * stays down past the expiry and past graphql-ws's first default retry (so at least one connection
 * is refused), then starts again on the same port. With the README's settings the client reconnects
 * and gets EXPIRED (TIMEOUT) once, soon after the restart; with graphql-ws's default retry settings
 * the subscription errors out with ECONNREFUSED and EXPIRED never comes.
 *
 * Against a server that has hung (a websocket server that answers nothing): with the README's
 * settings the client drops the socket after 10 s without an answer and connects again; without
 * them it waits for ever. What that means behind HAProxy is test/integration/cluster-failover.test.ts's.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { GRAPHQL_TRANSPORT_WS_PROTOCOL, type ClientOptions } from 'graphql-ws';
import { describe, expect, it, onTestFailed } from 'vitest';
import { WebSocketServer } from 'ws';
import { frontendClient, readmeClient, RETRY_OPTIONS, SILENCE_FUNCTION, SILENCE_OPTIONS, without } from '../helpers/readmeClient.js';
import { eventually, sleep, testDatabaseUri } from '../helpers/server.js';
import { startServerProcess, type ServerProcess } from '../helpers/serverProcess.js';
import { errorText, subscribe, type Subscriber } from '../helpers/subscriber.js';

const TERMINAL = ['EXPIRED', 'LOGGED_OUT', 'REVOKED'];

/** graphql-ws's first default retry comes 1.3–4 s after the close; the server stays down longer than that. */
const DOWN_MS = 6000;
/** The session's expiry, counted from when the subscription is known to be live. */
const EXPIRES_IN_S = 5;

// ---------------------------------------------------------------------------------------------
// A subscriber and a server that restarts

async function newSession(server: ServerProcess): Promise<string> {
  const username = `readme${process.pid}x${Math.random().toString(36).slice(2, 10)}`;
  const password = 'correct horse battery';
  const reg = await server.gql('mutation($u:String!,$p:String!){ register(username:$u,password:$p){ id } }', { u: username, p: password });
  if (reg.errors) throw new Error(JSON.stringify(reg.errors));
  const res = await server.gql('mutation($u:String!,$p:String!){ login(username:$u,password:$p,expiry:{seconds:600}){ token } }', {
    u: username,
    p: password,
  });
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return res.data.login.token as string;
}

interface RestartOutcome {
  sub: Subscriber;
  /** Events received before the server went down. */
  eventsBefore: number;
  expiresAt: number;
  /** When the restarted server was ready. */
  restartedAt: number;
  server: ServerProcess;
}

const SERVER_ENV = { LOGIN_URL: '/login' };
const snippet = readmeClient();

/**
 * Runs the scenario up to the restart and hands the live subscriber and the restarted server to
 * `check`; stops everything afterwards, and prints the servers' logs if the test failed.
 */
async function restartScenario(
  adjust: ((options: ClientOptions) => ClientOptions) | undefined,
  stopWith: 'SIGTERM' | 'SIGKILL',
  onFailed: typeof onTestFailed,
  check: (outcome: RestartOutcome) => Promise<void>,
): Promise<void> {
  const mongoUri = testDatabaseUri();
  const servers: ServerProcess[] = [];
  let sub: Subscriber | undefined;
  onFailed(() => {
    for (const s of servers) s.printLogs(60);
    if (sub) process.stderr.write(`subscriber: ${sub.describe()}\n`);
  });
  try {
    const first = await startServerProcess({ mongoUri, env: SERVER_ENV });
    servers.push(first);
    const port = new URL(first.url).port;
    const token = await newSession(first);
    sub = subscribe(snippet.create(token, first.wsUrl, adjust), snippet.query);
    const live = sub;
    // Poll until a renewal shows up as EXPIRY_CHANGED: the subscription is live, and the session now
    // ends EXPIRES_IN_S from here.
    let expiresAt = 0;
    const deadline = Date.now() + 20_000;
    while (!live.events.some((e) => e.kind === 'EXPIRY_CHANGED')) {
      if (Date.now() > deadline) throw new Error(`subscription not live; ${live.describe()}`);
      const res = await first.gql(`mutation { setExpiry(seconds: ${EXPIRES_IN_S}) { expiryDate } }`, {}, { token });
      if (res.errors) throw new Error(JSON.stringify(res.errors));
      expiresAt = Date.parse(res.data.setExpiry.expiryDate);
      await live.until(() => live.events.some((e) => e.kind === 'EXPIRY_CHANGED'), 1000, 'EXPIRY_CHANGED').catch(() => {});
    }

    if (stopWith === 'SIGTERM') await first.stop();
    else await first.kill('SIGKILL');
    await live.until(() => live.closes.length > 0, 10_000, 'the close');
    const closedAt = Date.now();
    if (closedAt >= expiresAt - 300) throw new Error('the server went down too late: the session had (nearly) expired before');
    expect(live.closes[0]!.code).toBe(stopWith === 'SIGTERM' ? 1001 : 1006);
    const eventsBefore = live.events.length;
    expect(live.events.map((e) => e.kind)).not.toContain('EXPIRED');

    // Down past the expiry, and past graphql-ws's first default retry.
    await sleep(Math.max(closedAt + DOWN_MS, expiresAt + 1000) - Date.now());
    const second = await startServerProcess({ mongoUri, env: { ...SERVER_ENV, PORT: port } });
    servers.push(second);
    const restartedAt = Date.now();
    expect(second.url).toBe(first.url);
    await check({ sub: live, eventsBefore, expiresAt, restartedAt, server: second });
  } finally {
    await sub?.stop();
    await Promise.all(servers.map((s) => s.stop()));
  }
}

/**
 * A server that has hung: it accepts websockets and then answers nothing, not the connection_init
 * ('no-ack'), or nothing after the connection_ack ('no-pong'). It records when each socket opened
 * and when a ping came.
 */
async function silentServer(mode: 'no-ack' | 'no-pong') {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => GRAPHQL_TRANSPORT_WS_PROTOCOL });
  await once(wss, 'listening');
  const opened: number[] = [];
  const pings: number[] = [];
  wss.on('connection', (socket) => {
    opened.push(Date.now());
    socket.on('message', (data) => {
      const { type } = JSON.parse(String(data)) as { type: string };
      if (type === 'connection_init' && mode === 'no-pong') socket.send(JSON.stringify({ type: 'connection_ack' }));
      if (type === 'ping') pings.push(Date.now());
    });
  });
  return {
    wsUrl: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/graphql`,
    opened,
    pings,
    close: () => {
      for (const socket of wss.clients) socket.terminate();
      return new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------------------------------------

describe("the README's graphql-ws client", () => {
  it('passes retry settings and leaves a silent server, the same as the reference frontend', () => {
    const frontend = frontendClient();
    const normalise = (text: string | undefined) => text?.replace(/\s+/g, ' ');
    for (const name of [...RETRY_OPTIONS, ...SILENCE_OPTIONS]) {
      expect(snippet.optionTexts.has(name), `README createClient option ${name}`).toBe(true);
      expect(normalise(snippet.optionTexts.get(name)), name).toBe(normalise(frontend.optionTexts.get(name)));
    }
    expect(snippet.functionTexts.has(SILENCE_FUNCTION), `README function ${SILENCE_FUNCTION}`).toBe(true);
    expect(normalise(snippet.functionTexts.get(SILENCE_FUNCTION))).toBe(normalise(frontend.functionTexts.get(SILENCE_FUNCTION)));
  });

  describe.concurrent('through a server restart', () => {
    for (const stopWith of ['SIGTERM', 'SIGKILL'] as const) {
      it(`with the README's settings, a session that expired while the server was down (${stopWith}) gets EXPIRED once, soon after the restart`, async ({ onTestFailed }) => {
        await restartScenario(undefined, stopWith, onTestFailed, async ({ sub, eventsBefore, restartedAt }) => {
          await sub.until(() => sub.completed, 20_000, 'EXPIRED and completion');
          await sleep(300); // anything after the terminal event would show now
          const terminal = sub.events.filter((e) => TERMINAL.includes(e.kind));
          expect(terminal.map((e) => [e.kind, e.reason])).toEqual([['EXPIRED', 'TIMEOUT']]);
          // After the reconnection, only that (no EXPIRING_SOON for a session already over).
          expect(sub.events.slice(eventsBefore).map((e) => e.kind)).toEqual(['EXPIRED']);
          // The README's retryWait is at most 4 s; allow for a loaded machine.
          expect(terminal[0]!.receivedAt - restartedAt).toBeLessThan(7000);
          expect(sub.errors).toEqual([]);
          expect(sub.refused).toBeGreaterThanOrEqual(1);
          expect(sub.connects.filter((c) => c.wasRetry).length).toBeGreaterThanOrEqual(1);
        });
      }, 60_000);
    }

    it("with graphql-ws's default retry settings, the same subscription errors out with ECONNREFUSED and never gets EXPIRED", async ({ onTestFailed }) => {
      await restartScenario(without(RETRY_OPTIONS), 'SIGTERM', onTestFailed, async ({ sub, eventsBefore }) => {
        // It failed while the server was down, at its first retry.
        expect(sub.errors).toHaveLength(1);
        expect(errorText(sub.errors[0])).toMatch(/ECONNREFUSED/);
        expect(sub.refused).toBe(1);
        // And it stays dead: nothing arrives from the restarted server.
        await sleep(3000);
        expect(sub.events.slice(eventsBefore)).toEqual([]);
        expect(sub.connects.filter((c) => c.wasRetry)).toEqual([]);
        expect(sub.completed).toBe(false);
      });
    }, 60_000);
  });

  describe.concurrent('against a server that has hung', () => {
    // The snippet's figures: a ping 10 s after the socket opened (or after the last pong), and 10 s for an answer.
    const KEEP_ALIVE_MS = 10_000;
    const ANSWER_MS = 10_000;
    /** The first retry waits 125-250 ms; and room for a loaded machine. */
    const RETRY_SLACK_MS = 2_500;
    const cases = [
      { mode: 'no-ack', silentFor: ANSWER_MS, what: 'no connection_ack' },
      { mode: 'no-pong', silentFor: KEEP_ALIVE_MS + ANSWER_MS, what: 'no pong' },
    ] as const;

    for (const { mode, silentFor, what } of cases) {
      it(`with the README's settings, the client drops a socket that gets ${what} within 10 s and connects again`, async () => {
        const server = await silentServer(mode);
        const sub = subscribe(snippet.create('a token', server.wsUrl), snippet.query);
        try {
          await eventually(async () => server.opened.length >= 2, silentFor + RETRY_SLACK_MS + 5_000, `a second connection; ${sub.describe()}`);
          const [first, second] = server.opened as [number, number];
          expect(second - first).toBeGreaterThanOrEqual(silentFor - 50);
          expect(second - first).toBeLessThan(silentFor + RETRY_SLACK_MS);
          expect(sub.closes.map((c) => c.code)).toEqual([4499]);
          if (mode === 'no-pong') expect(server.pings[0]! - first).toBeGreaterThanOrEqual(KEEP_ALIVE_MS - 50);
          expect(sub.errors).toEqual([]);
        } finally {
          await sub.stop();
          await server.close();
        }
      }, 60_000);

      it(`without its keepAlive and on options, a socket that gets ${what} stays, and the client with it`, async () => {
        const server = await silentServer(mode);
        const sub = subscribe(snippet.create('a token', server.wsUrl, without(SILENCE_OPTIONS)), snippet.query);
        try {
          await sleep(silentFor + RETRY_SLACK_MS);
          expect(server.opened).toHaveLength(1);
          expect(sub.closes).toEqual([]);
          expect(server.pings).toEqual([]);
        } finally {
          await sub.stop();
          await server.close();
        }
      }, 60_000);
    }
  });
});
