/**
 * The benchmark's processes talk over Node's IPC channel: the parent calls a named command in a
 * child and awaits its answer. Children run TypeScript through `node --import tsx` (no wrapper
 * process), so a child's pid is the process whose memory is measured.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { hasExited } from '../scripts/database/process.js';

interface Request {
  id: number;
  cmd: string;
  arg: unknown;
}
type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export interface Child {
  pid: number;
  call<T = unknown>(cmd: string, arg?: unknown): Promise<T>;
  /** Asks the child to stop, and kills it if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** Forks `file` (a .ts module that calls `serve`) and resolves once it has reported ready. */
export function spawnChild(file: string, env: Record<string, string> = {}, execArgv: string[] = [], startTimeoutMs = 60_000): Promise<Child> {
  const proc: ChildProcess = fork(file, [], {
    execArgv: ['--import', 'tsx', ...execArgv],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.once('exit', (code, signal) => {
    for (const p of pending.values()) p.reject(new Error(`${file} exited (${code ?? signal})`));
    pending.clear();
  });
  proc.on('message', (msg: Reply | { ready: true }) => {
    if ('ready' in msg) return;
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.result);
    else p.reject(new Error(`${file}: ${msg.error}`));
  });
  const child: Child = {
    pid: proc.pid!,
    call: <T>(cmd: string, arg?: unknown) =>
      new Promise<T>((resolve, reject) => {
        if (!proc.connected) return reject(new Error(`${file} is not running`));
        const id = nextId++;
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        proc.send({ id, cmd, arg } satisfies Request);
      }),
    async stop(graceMs = 15_000) {
      if (hasExited(proc)) return;
      child.call('exit').catch(() => {});
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${file} did not start within ${startTimeoutMs} ms`));
    }, startTimeoutMs);
    proc.on('message', (msg: { ready?: true }) => {
      if (msg.ready) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${file} exited with ${code} before it was ready`));
    });
  });
}

/**
 * In a child: answers the parent's commands, then reports ready. `exit` runs the handler of that
 * name (if any) and exits; losing the parent exits too, so no child outlives an aborted run.
 */
export function serve(handlers: Record<string, (arg: any) => unknown>): void {
  process.on('disconnect', () => process.exit(1));
  process.on('message', async ({ id, cmd, arg }: Request) => {
    try {
      const handler = handlers[cmd];
      if (!handler && cmd !== 'exit') throw new Error(`unknown command ${cmd}`);
      const result = handler ? await handler(arg) : undefined;
      process.send!({ id, ok: true, result } satisfies Reply);
      if (cmd === 'exit') setImmediate(() => process.exit(0));
    } catch (err) {
      process.send!({ id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies Reply);
    }
  });
  process.send!({ ready: true });
}

/** VmRSS of a process, in KiB, from /proc. */
export async function rssKiB(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

/** The API server's settings in every benchmark: production mode, a cheap password hash, no login limit. */
export const BENCH_SERVER_ENV = {
  NODE_ENV: 'production',
  HOST: '127.0.0.1',
  PORT: '0',
  LOG_LEVEL: 'warn',
  PASSWORD_HASH_COST: '10',
  LOGIN_RATE_LIMIT: '1000000',
  LOGIN_USER_RATE_LIMIT: '1000000',
  LOGIN_ADDRESS_RATE_LIMIT: '1000000',
  REGISTRATION_RATE_LIMIT: '1000000',
  LOGIN_ADDRESS_CONCURRENCY: '1000000',
  // The sessions are seeded: a login would count every one of them (on FerretDB a scan of 50 000).
  MAX_SESSIONS_PER_USER: '0',
  TOKEN_READ_ADDRESS_CONCURRENCY: '1000000',
  // The scenarios open up to 100 sockets per session, thousands at once from one address.
  WS_MAX_SOCKETS_PER_SESSION: '1000000',
  WS_MAX_SOCKETS_PER_USER: '1000000',
  WS_MAX_UNAUTHENTICATED_PER_ADDRESS: '1000000',
};

/** Counts the subscriptions the server's hub takes (they are in place from then on), by wrapping its `subscribe`. */
export function countSubscriptions(hub: { subscribe: (...args: never[]) => unknown }): () => number {
  let subscribed = 0;
  const subscribe = hub.subscribe.bind(hub);
  hub.subscribe = (...args: never[]) => {
    const queue = subscribe(...args);
    subscribed++;
    return queue;
  };
  return () => subscribed;
}

/** Database commands by "command collection": how many, and their time in ms. */
export type CommandTally = Record<string, { count: number; ms: number }>;

/** Adds `count` commands of `key` that took `ms` in all. */
export function addCommands(tally: CommandTally, key: string, count: number, ms: number): void {
  const entry = (tally[key] ??= { count: 0, ms: 0 });
  entry.count += count;
  entry.ms += ms;
}
