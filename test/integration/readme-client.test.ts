/**
 * The README's graphql-ws client ("Subscribing to the end of a session") through a server restart.
 *
 * The client options are not copied here: they are read from the README's ts code block (the object
 * literal passed to `createClient`, types stripped by the TypeScript compiler, then evaluated with
 * `token` in scope), and so is the subscription query. Only `url` (this test's server) and
 * `webSocketImpl` (Node 20 has no global WebSocket) are replaced, and an `on` listener is added to
 * watch the socket.
 *
 * Scenario: a server process on the shared test database, a subscriber whose session expires in a
 * few seconds; the server stops (SIGTERM: close 1001; or SIGKILL: 1006) and stays down past the
 * expiry and past graphql-ws's first default retry (so at least one connection is refused), then
 * starts again on the same port. With the README's settings the client reconnects and gets EXPIRED
 * (TIMEOUT) once, soon after the restart; with graphql-ws's default retry settings the subscription
 * errors out with ECONNREFUSED and EXPIRED never comes.
 */
import { readFileSync } from 'node:fs';
import { createClient, type Client, type ClientOptions } from 'graphql-ws';
import ts from 'typescript';
import { describe, expect, it, onTestFailed } from 'vitest';
import WebSocket from 'ws';
import { sleep, testDatabaseUri } from '../helpers/server.js';
import { startServerProcess, type ServerProcess } from '../helpers/serverProcess.js';

const README = new URL('../../README.md', import.meta.url);
const FRONTEND_CLIENT = new URL('../../web/app/api.ts', import.meta.url);
const RETRY_OPTIONS = ['retryAttempts', 'shouldRetry', 'retryWait'] as const;
const TERMINAL = ['EXPIRED', 'LOGGED_OUT', 'REVOKED'];

/** graphql-ws's first default retry comes 1.3–4 s after the close; the server stays down longer than that. */
const DOWN_MS = 6000;
/** The session's expiry, counted from when the subscription is known to be live. */
const EXPIRES_IN_S = 5;

// ---------------------------------------------------------------------------------------------
// The README's snippet

interface ClientSnippet {
  /** Source text of each property of the object literal passed to createClient. */
  optionTexts: Map<string, string>;
  /** The createClient options, evaluated with `token` in scope. */
  options(token: string): Partial<ClientOptions>;
  /** The query of the snippet's client.subscribe call. */
  query: string;
}

function parse(code: string, fileName: string): ts.SourceFile {
  return ts.createSourceFile(fileName, code, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
}

function findCall(node: ts.Node, matches: (call: ts.CallExpression) => boolean): ts.CallExpression | undefined {
  if (ts.isCallExpression(node) && matches(node)) return node;
  return ts.forEachChild(node, (child) => findCall(child, matches));
}

function objectArgument(call: ts.CallExpression | undefined, what: string): ts.ObjectLiteralExpression {
  const arg = call?.arguments[0];
  if (!arg || !ts.isObjectLiteralExpression(arg)) throw new Error(`${what}: no object literal argument found`);
  return arg;
}

function propertyTexts(literal: ts.ObjectLiteralExpression): Map<string, string> {
  const texts = new Map<string, string>();
  for (const prop of literal.properties) {
    if (ts.isPropertyAssignment(prop)) texts.set(prop.name.getText(), prop.initializer.getText());
    else if (ts.isShorthandPropertyAssignment(prop)) texts.set(prop.name.getText(), prop.name.getText());
    else throw new Error(`unexpected property in createClient options: ${prop.getText()}`);
  }
  return texts;
}

const isCreateClient = (call: ts.CallExpression) => ts.isIdentifier(call.expression) && call.expression.text === 'createClient';

function readmeClientSnippet(): ClientSnippet {
  const readme = readFileSync(README, 'utf8');
  const section = readme.split('\n## Subscribing to the end of a session\n')[1]?.split('\n## ')[0];
  const block = section && /```ts\n([\s\S]*?)\n```/.exec(section)?.[1];
  if (!block) throw new Error('README: no ts code block in "Subscribing to the end of a session"');
  const source = parse(block, 'README.md.ts');
  const literal = objectArgument(findCall(source, isCreateClient), 'README createClient');
  const subscribe = findCall(
    source,
    (call) => ts.isPropertyAccessExpression(call.expression) && call.expression.name.text === 'subscribe',
  );
  const queryProp = objectArgument(subscribe, 'README client.subscribe').properties.find(
    (p): p is ts.PropertyAssignment => ts.isPropertyAssignment(p) && p.name.getText() === 'query',
  );
  if (!queryProp || !ts.isStringLiteralLike(queryProp.initializer)) throw new Error('README client.subscribe: no query string');

  // Types stripped, then evaluated as plain JavaScript with `token` as the only free variable.
  const js = ts.transpileModule(`const __options = (${literal.getText()});`, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.None },
  }).outputText;
  const evaluate = new Function('token', `${js}\nreturn __options;`) as (token: string) => Partial<ClientOptions>;
  return { optionTexts: propertyTexts(literal), options: evaluate, query: queryProp.initializer.text };
}

// ---------------------------------------------------------------------------------------------
// A subscriber and a server that restarts

interface Subscriber {
  client: Client;
  events: Array<{ kind: string; reason: string | null; receivedAt: number }>;
  /** What reached the sink's `error`. */
  errors: unknown[];
  completed: boolean;
  /** Close codes of the client's sockets, in order. */
  closes: number[];
  /** Connection attempts that failed with ECONNREFUSED. */
  refused: number;
  /** Successful connections (connection_ack) after the first. */
  reconnects: number;
  until(predicate: () => boolean, timeoutMs: number, what: string): Promise<void>;
}

function subscribe(options: Partial<ClientOptions>, wsUrl: string, query: string): Subscriber {
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((w) => w());
  const sub: Subscriber = {
    client: undefined as unknown as Client,
    events: [],
    errors: [],
    completed: false,
    closes: [],
    refused: 0,
    reconnects: 0,
    async until(predicate, timeoutMs, what) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate()) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${describeSubscriber(sub)}`);
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
  };
  sub.client = createClient({
    ...options,
    url: wsUrl,
    webSocketImpl: WebSocket,
    on: {
      connected: (_socket, _payload, wasRetry) => {
        if (wasRetry) sub.reconnects++;
        notify();
      },
      closed: (event) => {
        sub.closes.push((event as { code: number }).code);
        notify();
      },
      error: (event) => {
        if (/ECONNREFUSED/.test(errorText(event))) sub.refused++;
        notify();
      },
    },
  });
  sub.client.subscribe<{ sessionEvents: { kind: string; reason: string | null } }>(
    { query },
    {
      next: (result) => {
        if (result.data) sub.events.push({ ...result.data.sessionEvents, receivedAt: Date.now() });
        else sub.errors.push(result.errors);
        notify();
      },
      error: (err) => {
        sub.errors.push(err);
        notify();
      },
      complete: () => {
        sub.completed = true;
        notify();
      },
    },
  );
  return sub;
}

/** ws's ErrorEvent (message "connect ECONNREFUSED …", error.code), an Error, or anything else. */
function errorText(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { message?: unknown; error?: { code?: unknown; message?: unknown }; code?: unknown };
    return [...new Set([e.message, e.code, e.error?.code, e.error?.message].filter((x) => x !== undefined).map(String))].join(' ');
  }
  return String(err);
}

function describeSubscriber(sub: Subscriber): string {
  return JSON.stringify({
    kinds: sub.events.map((e) => e.kind),
    errors: sub.errors.map(errorText),
    completed: sub.completed,
    closes: sub.closes,
    refused: sub.refused,
    reconnects: sub.reconnects,
  });
}

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

/**
 * Runs the scenario up to the restart and hands the live subscriber and the restarted server to
 * `check`; stops everything afterwards, and prints the servers' logs if the test failed.
 */
async function restartScenario(
  clientOptions: (token: string) => Partial<ClientOptions>,
  query: string,
  stopWith: 'SIGTERM' | 'SIGKILL',
  onFailed: typeof onTestFailed,
  check: (outcome: RestartOutcome) => Promise<void>,
): Promise<void> {
  const mongoUri = testDatabaseUri();
  const servers: ServerProcess[] = [];
  let sub: Subscriber | undefined;
  onFailed(() => {
    for (const s of servers) s.printLogs(60);
    if (sub) process.stderr.write(`subscriber: ${describeSubscriber(sub)}\n`);
  });
  try {
    const first = await startServerProcess({ mongoUri, env: SERVER_ENV });
    servers.push(first);
    const port = new URL(first.url).port;
    const token = await newSession(first);
    sub = subscribe(clientOptions(token), first.wsUrl, query);
    const live = sub;
    // Poll until a renewal shows up as EXPIRY_CHANGED: the subscription is live, and the session now
    // ends EXPIRES_IN_S from here.
    let expiresAt = 0;
    const deadline = Date.now() + 20_000;
    while (!live.events.some((e) => e.kind === 'EXPIRY_CHANGED')) {
      if (Date.now() > deadline) throw new Error(`subscription not live; ${describeSubscriber(live)}`);
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
    expect(live.closes[0]).toBe(stopWith === 'SIGTERM' ? 1001 : 1006);
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
    await sub?.client.dispose();
    await Promise.all(servers.map((s) => s.stop()));
  }
}

// ---------------------------------------------------------------------------------------------

describe("the README's graphql-ws client", () => {
  const snippet = readmeClientSnippet();

  it('passes retry settings, the same as the reference frontend', () => {
    for (const name of RETRY_OPTIONS) expect(snippet.optionTexts.has(name), `README createClient option ${name}`).toBe(true);
    const frontend = propertyTexts(objectArgument(findCall(parse(readFileSync(FRONTEND_CLIENT, 'utf8'), 'api.ts'), isCreateClient), 'web createClient'));
    const normalise = (text: string | undefined) => text?.replace(/\s+/g, ' ');
    for (const name of RETRY_OPTIONS) expect(normalise(snippet.optionTexts.get(name)), name).toBe(normalise(frontend.get(name)));
  });

  describe.concurrent('through a server restart', () => {
    for (const stopWith of ['SIGTERM', 'SIGKILL'] as const) {
      it(`with the README's settings, a session that expired while the server was down (${stopWith}) gets EXPIRED once, soon after the restart`, async ({ onTestFailed }) => {
        await restartScenario(snippet.options, snippet.query, stopWith, onTestFailed, async ({ sub, eventsBefore, restartedAt }) => {
          await sub.until(() => sub.completed, 20_000, 'EXPIRED and completion');
          await sleep(300); // anything after the terminal event would show now
          const terminal = sub.events.filter((e) => TERMINAL.includes(e.kind));
          expect(terminal.map((e) => [e.kind, e.reason])).toEqual([['EXPIRED', 'TIMEOUT']]);
          expect(sub.events.indexOf(terminal[0]!)).toBeGreaterThanOrEqual(eventsBefore);
          expect(sub.events.at(-1)).toBe(terminal[0]);
          // The README's retryWait is at most 4 s; allow for a loaded machine.
          expect(terminal[0]!.receivedAt - restartedAt).toBeLessThan(7000);
          expect(sub.errors).toEqual([]);
          expect(sub.refused).toBeGreaterThanOrEqual(1);
          expect(sub.reconnects).toBeGreaterThanOrEqual(1);
        });
      }, 60_000);
    }

    it("with graphql-ws's default retry settings, the same subscription errors out with ECONNREFUSED and never gets EXPIRED", async ({ onTestFailed }) => {
      const withoutRetrySettings = (token: string) => {
        const options: Record<string, unknown> = { ...snippet.options(token) };
        for (const name of RETRY_OPTIONS) delete options[name];
        return options as Partial<ClientOptions>;
      };
      await restartScenario(withoutRetrySettings, snippet.query, 'SIGTERM', onTestFailed, async ({ sub, eventsBefore }) => {
        // It failed while the server was down, at its first retry.
        expect(sub.errors).toHaveLength(1);
        expect(errorText(sub.errors[0])).toMatch(/ECONNREFUSED/);
        expect(sub.refused).toBe(1);
        // And it stays dead: nothing arrives from the restarted server.
        await sleep(3000);
        expect(sub.events.slice(eventsBefore)).toEqual([]);
        expect(sub.reconnects).toBe(0);
        expect(sub.completed).toBe(false);
      });
    }, 60_000);
  });
});
