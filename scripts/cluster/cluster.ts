/**
 * N API processes behind HAProxy on one database: what `npm run start:cluster` runs
 * (scripts/cluster.ts) and what test/integration/cluster-failover.test.ts starts.
 *
 *   client ──► HAProxy (HOST:PORT) ──► API process 1..N (127.0.0.1, free ports) ──► database
 *
 * Each API process is forked (scripts/cluster/worker.ts) on a port chosen once, so a process that
 * dies is restarted on the same port (one log line, backoff 100 ms doubling to 5 s, as the embedded
 * database is) and HAProxy's health check on /readyz takes it back into rotation. HAProxy is
 * restarted the same way on the same config; its clients' connections are lost with it, and
 * graphql-ws clients that retry come back.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { claimDirectory } from '../database/owner.js';
import { shortPath } from '../database/paths.js';
import { exitOf, freePort, hasExited, runningPid, supervise, type RunningProcess, type Supervisor } from '../database/process.js';
import { API_PROCESS_ENV, findHaproxy, haproxyConfig } from './haproxy.js';

export interface ClusterOptions {
  mongoUri: string;
  /** How many API processes. */
  workers: number;
  /** Where HAProxy listens for clients. */
  host: string;
  port: number;
  /** Where the generated haproxy.cfg goes (created if missing). */
  runtimeDir: string;
  /** The API processes' environment on top of this process's (undefined removes a variable). */
  env?: Record<string, string | undefined>;
  log: (line: string) => void;
  /** The children's output lines (API processes' logs, HAProxy's warnings); default: this process's stdout/stderr. */
  output?: (source: string, line: string) => void;
  /** First restart delay of a dead API process, ms (default 100, doubling to 5 s). */
  restartDelayMs?: number;
}

/** A process the cluster restarts when it dies. */
export interface Supervised {
  /** The process running now, if any. */
  pid(): number | undefined;
  /** How many times it was restarted. */
  restarts(): number;
  /** Sends `signal` (default SIGKILL) to the running process, as a crash would; it is restarted. */
  kill(signal?: NodeJS.Signals): boolean;
}

export interface ClusterWorker extends Supervised {
  /** "api1" … */
  readonly name: string;
  readonly port: number;
}

export interface Cluster {
  /** http://HOST:PORT/graphql (through HAProxy) */
  readonly url: string;
  readonly workers: ClusterWorker[];
  /** Restarted on the same port and config when it dies, as the API processes are. */
  readonly haproxy: Supervised;
  readonly configPath: string;
  /** API processes first (graceful: sockets close with 1001), then HAProxy. Not the database. */
  stop(): Promise<void>;
}

/** The cluster cannot start for a reason outside the code (a setting, the machine): its message alone says why. */
export class ClusterStartError extends Error {}

const here = path.dirname(fileURLToPath(import.meta.url));
const WORKER_ENTRY = path.join(here, fileURLToPath(import.meta.url).endsWith('.ts') ? 'worker.ts' : 'worker.js');
const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const haproxyBin = findHaproxy();
  if (!haproxyBin) throw new ClusterStartError('HAProxy is not installed (Debian: `apt-get install haproxy`; or set HAPROXY_BIN)');
  if (!Number.isInteger(options.workers) || options.workers < 1) throw new Error(`WORKERS must be a positive integer, got ${options.workers}`);
  // Default: the API processes' JSON logs and HAProxy's warnings on this process's stdout, as `npm start` logs.
  const output = options.output ?? ((_source: string, line: string) => void process.stdout.write(`${line}\n`));

  mkdirSync(options.runtimeDir, { recursive: true });
  // Held until stop(): another cluster here would overwrite the config and stop this one's HAProxy.
  const claim = await claimDirectory(options.runtimeDir);
  if (!claim.ok) {
    throw new ClusterStartError(
      `CLUSTER_DIR (${shortPath(options.runtimeDir)}) is in use by another cluster${claim.owner ? ` (pid ${claim.owner})` : ''}: ` +
        'stop it, or set CLUSTER_DIR to a directory of this one\'s own.',
    );
  }
  try {
    await checkListenable(options.host, options.port);
  } catch (err) {
    await claim.release();
    throw err;
  }
  const configPath = path.join(options.runtimeDir, 'haproxy.cfg');

  const ports: number[] = [];
  for (let i = 0; i < options.workers; i++) ports.push(await freePort());
  const names = ports.map((_, i) => `api${i + 1}`);

  const startWorker = (i: number) =>
    startWorkerProcess(names[i]!, { ...options.env, ...API_PROCESS_ENV, MONGODB_URI: options.mongoUri, HOST: '127.0.0.1', PORT: String(ports[i]) }, output);
  const supervisors: Supervisor[] = [];
  const stopWorkers = () => Promise.all(supervisors.map((s) => s.stop()));
  let haproxy: Supervisor | null = null;
  try {
    const started = await Promise.allSettled(ports.map((_, i) => startWorker(i)));
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) {
      await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
      throw failed.reason;
    }
    const first = started.map((r) => (r as PromiseFulfilledResult<RunningProcess>).value);
    first.forEach((proc, i) => {
      supervisors.push(
        supervise(proc, () => startWorker(i), { name: `API process ${names[i]} (port ${ports[i]})`, log: options.log, minDelayMs: options.restartDelayMs }),
      );
    });

    writeFileSync(
      configPath,
      haproxyConfig({
        bind: { host: options.host, port: options.port },
        servers: names.map((name, i) => ({ name, host: '127.0.0.1', port: ports[i]! })),
      }),
    );
    const host = options.host.includes(':') ? `[${options.host}]` : options.host;
    const origin = `http://${host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host}:${options.port}`;
    const startHaproxy = () => startHaproxyProcess(haproxyBin, configPath, `${origin}/livez`, output);
    const firstHaproxy = await startHaproxy();
    haproxy = supervise(firstHaproxy, startHaproxy, { name: `HAProxy (port ${options.port})`, log: options.log, minDelayMs: options.restartDelayMs });
    await waitForAnswer(`${origin}/readyz`, (status) => status === 200, () => null); // at least one API process healthy behind it

    const supervised = (s: Supervisor): Supervised => ({ pid: () => s.pid(), restarts: () => s.restarts(), kill: (signal = 'SIGKILL') => s.kill(signal) });
    let stopped: Promise<void> | null = null;
    return {
      url: `http://${host}:${options.port}/graphql`,
      configPath,
      haproxy: supervised(haproxy),
      workers: names.map((name, i) => ({ name, port: ports[i]!, ...supervised(supervisors[i]!) })),
      stop: () =>
        (stopped ??= (async () => {
          await stopWorkers();
          await haproxy!.stop();
          await claim.release();
        })()),
    };
  } catch (err) {
    await haproxy?.stop();
    await stopWorkers();
    await claim.release();
    throw err;
  }
}

// HAProxy never reads its stdin: a reader in the background waits for this process's end of the pipe
// to close (stop(), or this process dying in any way, even SIGKILL) and then stops HAProxy, which
// `exec` has given the shell's pid ($$). As the embedded FerretDB's watchdog (scripts/database/ferretdb.ts),
// it reads a copy of stdin: a background job's own stdin is /dev/null.
const HAPROXY_WATCHDOG = 'exec 3<&0; (read _ <&3; kill $$ 2>/dev/null) & exec "$@" </dev/null 3<&-';

/**
 * HAProxy on the generated config, resolved once it accepts connections (`GET /livez` through it
 * gets any HTTP answer: a 503 while no API process is up counts). -db: foreground, no daemon;
 * HAProxy stops at once on SIGTERM. In a process group of its own, so that a Ctrl-C in the terminal
 * reaches it only through stop(), after the API processes have closed their sockets with 1001
 * (through it).
 */
async function startHaproxyProcess(
  bin: string,
  configPath: string,
  livez: string,
  output: (source: string, line: string) => void,
): Promise<RunningProcess> {
  const proc = spawn('/bin/sh', ['-c', HAPROXY_WATCHDOG, 'haproxy-watchdog', bin, '-db', '-f', configPath], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  pipeLines(proc, 'haproxy', output);
  let exitedHow: string | null = null;
  const exited = exitOf(proc);
  void exited.then(() => proc.stdin!.destroy()); // the watchdog's reader ends; HAProxy's pid is not signalled again
  void exited.then((how) => (exitedHow = how));
  await waitForAnswer(livez, () => true, () => exitedHow && `HAProxy exited (${exitedHow}) at start; see its output above`).catch((err: unknown) => {
    proc.kill('SIGKILL');
    throw err;
  });
  return {
    pid: () => runningPid(proc),
    exited,
    stop: async () => {
      if (!hasExited(proc)) proc.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * Throws the error of listening on HOST:PORT (EADDRINUSE: another program holds the port), before
 * anything starts: HAProxy would fail to bind, and be restarted for good, while the check of the
 * port took the other program's answers for the cluster's.
 */
function checkListenable(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()));
  });
}

/** Resolves once `url` answers with a status that `accept`s; throws with what `failure()` says, or after START_TIMEOUT_MS. */
async function waitForAnswer(url: string, accept: (status: number) => boolean, failure: () => string | null): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const why = failure();
    if (why) throw new ClusterStartError(why);
    const status = await fetch(url, { signal: AbortSignal.timeout(2000) }).then((res) => res.status, () => 0); // 0: not listening yet
    if (status && accept(status)) return;
    if (Date.now() > deadline) throw new ClusterStartError(`${url} did not answer ${status ? 'as expected' : 'at all'} within ${START_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function pipeLines(child: ChildProcess, source: string, output: (source: string, line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop()!;
      for (const line of lines) if (line) output(source, line);
    });
    stream.on('end', () => rest && output(source, rest));
  }
}

/** Forks one API process and resolves once it listens. */
function startWorkerProcess(
  name: string,
  envOverrides: Record<string, string | undefined>,
  output: (source: string, line: string) => void,
): Promise<RunningProcess> {
  const env: Record<string, string> = {};
  // TRUST_PROXY=loopback (unless set): X-Forwarded-For from HAProxy on this machine is believed.
  for (const [k, v] of Object.entries({ ...process.env, TRUST_PROXY: process.env.TRUST_PROXY ?? 'loopback', ...envOverrides })) {
    if (v !== undefined) env[k] = v;
  }
  const child = fork(WORKER_ENTRY, [], {
    env,
    execArgv: WORKER_ENTRY.endsWith('.ts') ? ['--import', 'tsx'] : [],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  pipeLines(child, name, output);
  const exited = exitOf(child);
  return new Promise<RunningProcess>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new ClusterStartError(`${name} did not start within ${START_TIMEOUT_MS / 1000} s`));
    }, START_TIMEOUT_MS);
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    void exited.then((how) => (clearTimeout(timer), reject(new ClusterStartError(`${name} exited (${how}) before it was ready`))));
    child.on('message', (msg: { ready?: boolean }) => {
      if (!msg?.ready) return;
      clearTimeout(timer);
      resolve({
        pid: () => runningPid(child),
        exited,
        stop: async () => {
          if (hasExited(child)) return;
          const kill = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
          child.kill('SIGTERM');
          await exited;
          clearTimeout(kill);
        },
      });
    });
  });
}
