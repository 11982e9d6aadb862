/**
 * The API server as a real child process (`node --import tsx test/helpers/server-entry.ts`), for
 * tests that need several processes on one database or that kill one (SIGKILL). Unlike
 * startTestServer (server.ts) nothing of the server runs in the test's own process: the test only
 * talks to it over HTTP and graphql-ws.
 *
 *   const a = await startServerProcess({ mongoUri: testDatabaseUri(), env: { SESSION_BROWSER_CLOSE_GRACE: '2' } });
 *   const res = await a.gql('{ serverTime }');
 *   await a.kill('SIGKILL');   // or: await a.stop() (SIGTERM, graceful)
 *
 * The server's output (pino JSON on stderr, anything on stdout) is kept in `logs`, not printed;
 * `TEST_SERVER_LOGS=1` streams it to the test's stderr as it comes, and `printLogs()` (for example
 * from vitest's `onTestFailed`) prints what was kept.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from 'graphql-ws';
import { graphqlWsClient, postGraphQL, TEST_ENV, type GqlResponse, type RequestOptions, type WsClientOptions } from './server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
export const SERVER_ENTRY = path.join(here, 'server-entry.ts');

/** The child's settings in tests: those of an in-process test server, on loopback, with quiet logs. */
export const SERVER_PROCESS_TEST_ENV: Record<string, string> = { ...TEST_ENV, HOST: '127.0.0.1', LOG_LEVEL: 'warn' };

export interface ServerProcessOptions {
  /** The database (MONGODB_URI of the child); several processes may share one. */
  mongoUri: string;
  /** Overrides of SERVER_PROCESS_TEST_ENV and the inherited environment; `undefined` removes a variable. */
  env?: Record<string, string | undefined>;
  /** A label for log lines and error messages (default `server-<pid>`). */
  name?: string;
  /** Another entry file that speaks the same protocol (one `{"serverReady":true,"url":…}` line on stdout). */
  entry?: string;
  /** Extra node flags, e.g. `--expose-gc`. */
  execArgv?: string[];
  startTimeoutMs?: number;
  /** Log lines kept (oldest dropped first). Default 20 000. */
  maxLogLines?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServerProcess {
  readonly name: string;
  readonly pid: number;
  /** http://127.0.0.1:<port>/graphql */
  readonly url: string;
  /** ws://127.0.0.1:<port>/graphql */
  readonly wsUrl: string;
  readonly mongoUri: string;
  /** The child's output lines (stderr and stdout), oldest first, at most maxLogLines. */
  readonly logs: string[];
  /** Resolves when the child has exited, however. */
  readonly exited: Promise<ExitStatus>;
  /** False once the child has exited. */
  readonly running: boolean;
  /** A GraphQL request over HTTP. Throws only when there is no HTTP answer with a JSON body (connection refused, timeout). */
  gql<T = any>(query: string, variables?: Record<string, unknown>, options?: RequestOptions): Promise<GqlResponse<T>>;
  /** A graphql-ws client on this process (not lazy, no retries); token null for none. */
  wsClient(token: string | null, options?: WsClientOptions): Client;
  /** Sends `signal` (default SIGKILL) and resolves once the child has exited. */
  kill(signal?: NodeJS.Signals): Promise<ExitStatus>;
  /** SIGTERM (graceful stop: sockets close with 1001, writes land), SIGKILL after `graceMs`; resolves once exited. */
  stop(graceMs?: number): Promise<ExitStatus>;
  /** Prints the kept log lines to stderr, prefixed with the name (the last `lastLines` of them). */
  printLogs(lastLines?: number): void;
}

const liveChildren = new Set<ChildProcess>();
// Belt and braces next to the child's own stdin watch: a test process that exits takes its servers along.
process.once('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

export async function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...SERVER_PROCESS_TEST_ENV, MONGODB_URI: options.mongoUri, ...options.env })) {
    if (v !== undefined) env[k] = v;
  }
  const entry = options.entry ?? SERVER_ENTRY;
  const maxLogLines = options.maxLogLines ?? 20_000;
  const streamLogs = ['1', 'true', 'yes'].includes(String(process.env.TEST_SERVER_LOGS ?? '').toLowerCase());
  const child = spawn(process.execPath, ['--import', 'tsx', ...(options.execArgv ?? []), entry], {
    cwd: repoRoot,
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  liveChildren.add(child);
  let name = options.name ?? `server-${child.pid}`;
  const logs: string[] = [];
  const keep = (line: string) => {
    if (!line) return;
    logs.push(line);
    if (logs.length > maxLogLines) logs.splice(0, logs.length - maxLogLines);
    if (streamLogs) process.stderr.write(`[${name}] ${line}\n`);
  };
  let exitStatus: ExitStatus | null = null;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => {
      exitStatus = { code, signal };
      liveChildren.delete(child);
      resolve(exitStatus);
    });
  });

  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not start within ${options.startTimeoutMs ?? 60_000} ms:\n${logs.slice(-30).join('\n')}`));
    }, options.startTimeoutMs ?? 60_000);
    let stdoutRest = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      const lines = (stdoutRest + chunk).split('\n');
      stdoutRest = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('{"serverReady":true')) {
          clearTimeout(timer);
          resolve((JSON.parse(line) as { url: string }).url);
        } else keep(line);
      }
    });
    let stderrRest = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      const lines = (stderrRest + chunk).split('\n');
      stderrRest = lines.pop()!;
      for (const line of lines) keep(line);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      keep(stdoutRest);
      keep(stderrRest);
      reject(new Error(`${name} exited (${signal ?? `code ${code}`}) before it was ready:\n${logs.slice(-30).join('\n')}`));
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  // The child's stdin is its lifeline; an EPIPE on it after the child died is expected.
  child.stdin!.on('error', () => {});

  const url = await ready;
  if (!options.name) name = `server-${child.pid}`;
  const wsUrl = url.replace(/^http/, 'ws');

  const signalAndWait = async (signal: NodeJS.Signals): Promise<ExitStatus> => {
    if (exitStatus) return exitStatus;
    child.kill(signal);
    return exited;
  };

  return {
    name,
    pid: child.pid!,
    url,
    wsUrl,
    mongoUri: options.mongoUri,
    logs,
    exited,
    get running() {
      return exitStatus === null;
    },
    gql: (query, variables = {}, requestOptions = {}) => postGraphQL(url, query, variables, requestOptions, name),
    wsClient: (token, clientOptions) => graphqlWsClient(wsUrl, token, clientOptions),
    kill: (signal = 'SIGKILL') => signalAndWait(signal),
    async stop(graceMs = 10_000) {
      if (exitStatus) return exitStatus;
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try {
        return await signalAndWait('SIGTERM');
      } finally {
        clearTimeout(timer);
      }
    },
    printLogs(lastLines = 200) {
      const shown = logs.slice(-lastLines);
      process.stderr.write(
        `----- ${name} (pid ${child.pid}): last ${shown.length} of ${logs.length} log lines -----\n${shown.map((l) => `[${name}] ${l}`).join('\n')}\n`,
      );
    },
  };
}
