import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

/** The child has exited, with a code or by a signal. */
export const hasExited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null;

/** The child's pid while it runs; undefined once it has exited. */
export const runningPid = (child: ChildProcess): number | undefined => (hasExited(child) ? undefined : child.pid);

/** How the child will exit: "signal SIGKILL" or "exit code 1" (taken before it can have exited). */
export const exitOf = (child: ChildProcess): Promise<string> =>
  new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal ? `signal ${signal}` : `exit code ${code}`)));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** A TCP port on 127.0.0.1, or a Unix socket's path, accepts connections. */
export function canConnect(portOrPath: number | string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = typeof portOrPath === 'number' ? net.connect(portOrPath, '127.0.0.1') : net.connect(portOrPath);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/** Runs a command, resolving with its stdout; rejects with the tail of its output. */
export function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GOWORK: 'off', ...env } });
    let out = '';
    let all = '';
    child.stdout.on('data', (b) => ((out += b), (all += b)));
    child.stderr.on('data', (b) => (all += b));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`\`${cmd} ${args.join(' ')}\` failed (exit ${code}):\n${all.trimEnd().split('\n').slice(-40).join('\n')}`));
    });
  });
}

export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** One run of a supervised database server process. */
export interface RunningProcess {
  /** The server process itself (not a wrapper), while it runs. */
  pid(): number | undefined;
  /** Settles when the process has exited, with how (e.g. "signal SIGKILL", "exit code 1"). */
  exited: Promise<string>;
  /** Stops it gracefully (a no-op once it has exited). */
  stop(): Promise<void>;
}

export interface Supervisor {
  /** The server process running now, if any. */
  pid(): number | undefined;
  /** Sends `signal` to the server process, as a crash or an operator would; supervision goes on. False when none runs. */
  kill(signal?: NodeJS.Signals): boolean;
  /** How many times it was restarted. */
  restarts(): number;
  /** Stops supervising, then the process (waiting for a restart in progress first). */
  stop(): Promise<void>;
}

export interface SuperviseOptions {
  /** Names the server in log lines, e.g. "FerretDB on 127.0.0.1:27017". */
  name: string;
  log: (line: string) => void;
  /** The first delay before a restart; it doubles with every restart that follows within `stableMs`, up to `maxDelayMs`. */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** A process that ran this long resets the delay to `minDelayMs`. */
  stableMs?: number;
}

/**
 * Keeps a database server running: when the process exits without `stop()` having been called, it
 * is started again by `restart` (same port, same data) after a delay that doubles from 100 ms to
 * 5 s while restarts keep failing or the process keeps dying young. One log line per restart.
 */
export function supervise(first: RunningProcess, restart: () => Promise<RunningProcess>, options: SuperviseOptions): Supervisor {
  const { name, log, minDelayMs = 100, maxDelayMs = 5_000, stableMs = 10_000 } = options;
  let current: RunningProcess | null = first;
  let restarting: Promise<RunningProcess> | null = null;
  let stopped = false;
  let count = 0;
  let wake = () => {};
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      timer.unref(); // supervision never keeps the process alive by itself
      wake = () => (clearTimeout(timer), resolve());
    });

  void (async () => {
    let delay = minDelayMs;
    let startedAt = Date.now();
    let why = `exited unexpectedly (${await first.exited})`;
    while (!stopped) {
      if (Date.now() - startedAt >= stableMs) delay = minDelayMs;
      count++;
      current = null;
      log(`${name} ${why}; restarting it in ${delay} ms (restart ${count})`);
      await pause(delay);
      delay = Math.min(delay * 2, maxDelayMs);
      if (stopped) return;
      startedAt = Date.now();
      try {
        current = await (restarting = restart());
      } catch (err) {
        why = `did not restart (${message(err).replace(/\s+/g, ' ').slice(0, 300)})`;
        continue;
      } finally {
        restarting = null;
      }
      if (stopped) return; // stop() stops it
      why = `exited unexpectedly (${await current.exited})`;
    }
  })();

  return {
    pid: () => current?.pid(),
    kill: (signal = 'SIGKILL') => {
      const pid = current?.pid();
      if (pid === undefined) return false;
      try {
        process.kill(pid, signal);
        return true;
      } catch {
        return false;
      }
    },
    restarts: () => count,
    stop: async () => {
      stopped = true;
      wake();
      await restarting?.catch(() => {}); // a restart in progress finishes, then is stopped
      await current?.stop();
    },
  };
}
