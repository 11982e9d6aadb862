/**
 * `npm run bench`: expiry latency over real websockets (DESIGN.md section 6, issue 3 item 7, issue 11 item 3).
 *
 * For N = 1 000 and 10 000 subscribed sockets on one server process, expiring spread over 3 s and
 * all at one instant, and for N = 50 000 on 3 server processes behind HAProxy, expiring spread
 * over 10 s and all at one instant, it measures (event received − expiresAt) for the API and, in
 * the same run, for bare `ws` servers (the same number of processes, behind the same balancer)
 * that send one message per socket at the same deadlines (the machine's physical limit), and for
 * bare servers that also send graphql-ws's `complete` and close the socket with 4401 as the API
 * must (the protocol's share, reported beside the targets but not one). Each
 * server and each load runs in its own process; RSS is read from /proc. The sessions are seeded
 * straight into the database (bench/seed.ts): logins are not what is measured. The figures and
 * the machine go into BENCHMARKS.md, between the markers (text outside them is kept), and a
 * latency-distribution plot per scenario (API and bare) into docs/bench/*.svg next to it, embedded there.
 *
 * A run of the API whose setup (seed the sessions, open the sockets) is projected to take longer
 * than BENCH_SETUP_BUDGET_S is not started but reported with its projection, so the whole stays
 * bounded. For N > 1 000 on one process it also runs N sockets over BENCH_FANOUT_SESSIONS sessions
 * (several tabs per login).
 *
 * Failover (issue 11 item 2): for N = BENCH_FAILOVER_SIZES on the cluster, expiries spread over 10 s,
 * one API process is killed (SIGKILL) 3 s into the spread; its sockets reconnect through the
 * balancer with the README's client retry settings and subscribe again. Reported: missing,
 * duplicate, early and wrong events, reconnection time, lateness on time and, for sessions that
 * ended while their socket was away, from its reconnection. Written to its own section of the file.
 *
 * Environment: BENCH_SIZES (default "1000,10000"), BENCH_CLUSTER_SIZES (default "50000"; empty: no
 * cluster scenario), BENCH_FAILOVER_SIZES (default "20000"; empty: none), BENCH_CLUSTER_PROCESSES (default 3), BENCH_OUTPUT (default BENCHMARKS.md),
 * BENCH_SETUP_BUDGET_S (default 900), BENCH_FANOUT_SESSIONS (default 100; empty: none), BENCH_MODES (default
 * "spread,burst") and BENCH_TARGETS (default "bare,bare-closing,api") to run part of the latency scenarios, and what
 * scripts/database.ts reads (MONGODB_URI, SESSIONS_EMBEDDED_DB, SESSIONS_POSTGRESQL_URL). LOG_LEVEL,
 * CHANGE_POLL_INTERVAL_MS and WS_PING_INTERVAL pass through to the API server. BENCH_CPU_PROF=dir
 * writes a V8 CPU profile of the API server's expiry phase into dir (read it with profile-summary.ts);
 * BENCH_DB_COMMANDS=1 logs the server processes' database commands in that phase (count and time by
 * command and collection). BENCH_RAW_DIR=dir writes each load process's events into dir, one JSON
 * file per run and load process: [deadline (ms since the epoch), latency (null: missing), server lag] per socket.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { API_PROCESS_ENV, HEALTH_CHECK_TIMEOUT_S } from '../scripts/cluster/haproxy.js';
import { resolveDatabase, type ResolvedDatabase } from '../scripts/database.js';
import { HAPROXY_MAXCONN, haproxyInstances, startBalancer, type Balancer } from './balancer.js';
import { probeDatabase, type ProbeRow } from './db-probe.js';
import { addCommands, BENCH_SERVER_ENV, rssKiB, spawnChild, type Child, type CommandTally } from './ipc.js';
import { mergeParts, range, sumCounts, type Distribution, type LoadPart, type LoadResult, type PrepareArgs, type Target } from './load.js';
import { latencyCdfSvg } from './plot.js';
import { checkSeededShape, seedSessions } from './seed.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
function positiveInteger(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name}: "${text}" is not a positive whole number`);
  return n;
}
const sizes = (name: string, fallback: string) =>
  (env[name] ?? fallback)
    .split(',')
    .filter(Boolean)
    .map((size) => positiveInteger(name, size))
    .sort((a, b) => a - b);
/** Ascending: the smaller runs calibrate the projected setup time of the larger ones. */
const SIZES = sizes('BENCH_SIZES', '1000,10000');
const CLUSTER_SIZES = sizes('BENCH_CLUSTER_SIZES', '50000');
/**
 * 20 000 by default, not 50 000: on the embedded FerretDB/SQLite a cluster of 50 000 loses most
 * events without any kill (BENCHMARKS.md), which would hide what a kill costs; 20 000 it serves.
 */
const FAILOVER_SIZES = sizes('BENCH_FAILOVER_SIZES', '20000');
const CLUSTER_PROCESSES = positiveInteger('BENCH_CLUSTER_PROCESSES', env.BENCH_CLUSTER_PROCESSES ?? '3');
function choices<T extends string>(name: string, allowed: readonly T[]): T[] {
  const chosen = (env[name] ?? allowed.join(',')).split(',').filter(Boolean);
  const unknown = chosen.filter((c) => !(allowed as readonly string[]).includes(c));
  if (unknown.length) throw new Error(`${name}: unknown ${unknown.join(', ')} (choose from ${allowed.join(', ')})`);
  return chosen as T[];
}
const MODES = choices('BENCH_MODES', ['spread', 'burst'] as const);
const TARGET_NAMES = choices('BENCH_TARGETS', ['bare', 'bare-closing', 'api'] as const);
const OUTPUT = path.resolve(here, '..', env.BENCH_OUTPUT ?? 'BENCHMARKS.md');
const SETUP_BUDGET_MS = positiveInteger('BENCH_SETUP_BUDGET_S', env.BENCH_SETUP_BUDGET_S ?? '900') * 1000;
/** Empty: no scenario of many sockets per session. */
const FANOUT_SESSIONS = env.BENCH_FANOUT_SESSIONS === '' ? null : positiveInteger('BENCH_FANOUT_SESSIONS', env.BENCH_FANOUT_SESSIONS ?? '100');
const SPREAD_MS = 3000;
const CLUSTER_SPREAD_MS = 10_000;
/** Into the spread, when the failover scenario kills one API process. */
const KILL_AFTER_MS = 3000;
/** Sockets per load process: one process may open at most 20 000 files here. */
const SOCKETS_PER_LOAD = 12_500;
/** Idle time between the last subscription in place and the memory reading. */
const SETTLE_MS = 2000;
/** How long after the last deadline a missing event counts as missing. */
const GRACE_MS = 10_000;
/**
 * The same for the failover scenario: the clients of the killed process reconnect all at once, and
 * whether each still gets its one terminal event, however late, is what is asked.
 */
const FAILOVER_GRACE_MS = 60_000;
const graceMs = (s: Scenario) => (s.mode === 'failover' ? FAILOVER_GRACE_MS : GRACE_MS);
/**
 * Handshakes in flight per server process (shared by the load processes). More only queue in the
 * API processes, whose event loops then answer HAProxy's health checks later than its 1 s timeout.
 */
const HANDSHAKES_PER_SERVER: Record<Target, number> = { api: 10, bare: 50, 'bare-closing': 50 };
/** The whole run is aborted past this. */
const WATCHDOG_MS = 180 * 60_000;
const TARGETS = { spreadP99: 50, burstP99: 250, kibPerSession: 10 };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (line: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
const pct = (part: number, whole: number) => (whole > 0 ? (100 * part) / whole : 0);
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** Failover: spread, with one API process killed KILL_AFTER_MS into it (API only, on the cluster). */
type Mode = 'spread' | 'burst' | 'failover';
interface Scenario {
  n: number;
  sessions: number;
  mode: Mode;
  /** Server processes: 1, or more behind a tier of HAProxy processes (bench/balancer.ts). */
  processes: number;
}
const spreadMs = (s: Scenario) => (s.mode === 'burst' ? 0 : s.processes > 1 ? CLUSTER_SPREAD_MS : SPREAD_MS);
const loadProcesses = (s: Scenario) => Math.ceil(s.n / SOCKETS_PER_LOAD);
const scenarioName = (target: Target, s: Scenario) =>
  `${target} N=${s.n}${s.sessions < s.n ? ` over ${s.sessions} sessions` : ''}${s.processes > 1 ? ` on ${s.processes} processes` : ''} ${s.mode}`;

interface ServerStats {
  rechecks: { sent: number; answered: Array<{ ms: number; sessions: number }> };
  logCounts: Record<string, number>;
  /** With BENCH_DB_COMMANDS: the database commands, by command and collection. */
  commands: CommandTally;
  loopDelayMs: Distribution | null;
}

/** The server processes' stats of one run, together; the event-loop delay per process. */
interface ServersStats extends Omit<ServerStats, 'loopDelayMs'> {
  loopDelaysMs: Array<Distribution | null>;
}

interface Memory {
  beforeKiB: number;
  afterKiB: number;
  perSocketKiB: number;
}

interface RunResult extends Scenario {
  target: Target;
  load: LoadResult;
  setup: { seedMs: number; startMs: number; openMs: number; subscribeMs: number; totalMs: number; attempts: number; refused: number };
  /** VmRSS summed over the server processes; the JS heap's growth per socket, summed likewise. */
  rss: Memory & { heapPerSocketKiB: number };
  /** Percent of one core, while N sockets sat idle and from the first deadline to the last event (server processes summed). */
  cpu: { idleServer: number; idleDb: number; expiryServer: number; expiryDb: number; expiryBalancer: number };
  server: ServersStats;
  balancer: { instances: number; connections: number[]; rss: Memory; lines: string[] } | null;
}

interface Skipped extends Scenario {
  target: Target;
  skipped: string;
}

/** The set-up overran the first deadline, or a socket could not be opened: the run is tried again, with more margin. */
class SetupFailed extends Error {}

const TICKS_PER_S = 100; // USER_HZ
/** CPU time of a process in clock ticks (0 if there is none). */
async function cpuTicks(pid: number | null): Promise<number> {
  if (!pid) return 0;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  if (!stat) return 0;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** One process, or a group of them listed afresh at each reading (PostgreSQL backends come and go). */
type Processes = number | null | (() => Promise<number[]>);

/**
 * Measures the CPU used by some processes between start() and the returned function's call, in % of
 * one core. A group counts the processes it lists at the end (one started in between with all its
 * CPU time); one that ended in between is not counted.
 */
async function cpuMeter(groups: Processes[]) {
  const read = () =>
    Promise.all(
      groups.map(async (g) => {
        const pids = typeof g === 'function' ? await g() : g ? [g] : [];
        const ticks = await Promise.all(pids.map(async (pid) => [pid, await cpuTicks(pid)] as const));
        return new Map(ticks.filter(([, t]) => t > 0)); // 0: it has ended
      }),
    );
  const from = await read();
  const t0 = Date.now();
  return async () => {
    const to = await read();
    const seconds = (Date.now() - t0) / 1000;
    return to.map((ticks, i) => {
      let used = 0;
      for (const [pid, t] of ticks) used += t - (from[i]!.get(pid) ?? 0);
      return pct(used / TICKS_PER_S, seconds);
    });
  };
}

/**
 * The embedded database's processes: FerretDB or mongod, found by its data directory, and for
 * FerretDB on PostgreSQL the backends serving its PostgreSQL database, found by their process title
 * ("postgres: [cluster: ]user database client state"; only when PostgreSQL runs on this machine).
 */
async function databasePids(db: ResolvedDatabase): Promise<number[]> {
  const { dataDir, postgresDatabase } = db;
  if (!dataDir) return [];
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const argv0 = argv[0] ?? '';
    if (/^(ferretdb|mongod)/.test(path.basename(argv0)) && argv.some((a) => a.includes(dataDir))) pids.push(Number(entry));
    else if (postgresDatabase && argv0.startsWith('postgres: ') && argv0.split(' ').includes(postgresDatabase)) pids.push(Number(entry));
  }
  return pids;
}

/**
 * A database of its own for one API run: a fresh embedded one, so that nothing an earlier run left
 * weighs on it (its server processes are killed after a grace period, but the database would finish
 * their queries in flight, which on FerretDB with SQLite may take many minutes; a database filled by
 * the earlier runs would also slow the new server processes' start); on MONGODB_URI, a fresh database name.
 */
async function databaseForRun(name: string): Promise<RunDatabase> {
  const resolved = await resolveDatabase({ persistent: false, log: () => {} });
  try {
    const uri = new URL(resolved.uri);
    uri.pathname = `/${name}`;
    const db = { resolved, name, uri: uri.toString(), pids: () => databasePids(resolved) };
    if (!databaseDescription) log(`database: ${resolved.description}${resolved.kind === 'external' ? '' : ' (and a fresh one for each further API run)'}`);
    databaseDescription ??= resolved.kind === 'external' ? resolved.description : `a fresh one for each API run, e.g. ${resolved.description}`;
    return db;
  } catch (err) {
    await resolved.stop();
    throw err;
  }
}
let databaseDescription: string | undefined;

/**
 * Projected setup time, in ms, from what earlier runs on the same topology cost (before the first,
 * defaults measured on FerretDB, a little pessimistic): starting the processes is taken as
 * constant; seeding as constant per session; opening a socket as a constant plus a part
 * proportional to the number of sessions in the database (where authenticating a socket, which
 * reads the session by its id, is not an index lookup).
 */
interface Costs {
  startMs: number;
  seedMs: number;
  socketBaseMs: number;
  socketPerSessionMs: number;
}
/** Both bare targets are the same server (bare-server.ts), closing or not. */
const BARE_COSTS: Costs = { startMs: 5_000, seedMs: 0, socketBaseMs: 1, socketPerSessionMs: 0 };
const DEFAULT_COSTS: Record<Target, Costs> = {
  api: { startMs: 10_000, seedMs: 0.5, socketBaseMs: 4, socketPerSessionMs: 0 },
  bare: BARE_COSTS,
  'bare-closing': BARE_COSTS,
};
const observed = new Map<string, Costs>();
const costsOf = (target: Target, s: Scenario) => observed.get(`${target}/${s.processes}`) ?? DEFAULT_COSTS[target];
function projectedSetupMs(target: Target, s: Scenario): number {
  const o = costsOf(target, s);
  return o.startMs + o.seedMs * s.sessions + (o.socketBaseMs + o.socketPerSessionMs * s.sessions) * s.n;
}
function learn(target: Target, s: Scenario, setup: RunResult['setup']): void {
  const perSocket = setup.subscribeMs / s.n;
  const base = Math.min(perSocket, 5);
  observed.set(`${target}/${s.processes}`, {
    startMs: setup.startMs,
    seedMs: setup.seedMs / s.sessions,
    socketBaseMs: base,
    socketPerSessionMs: (perSocket - base) / s.sessions,
  });
}

interface RunDatabase {
  resolved: ResolvedDatabase;
  /** The database's name, and the URI naming it. */
  name: string;
  uri: string;
  pids: () => Promise<number[]>;
}

/** What each socket sends and the deadline its event must carry: socket i subscribes with session i % sessions. */
function sessionDeadlines(s: Scenario, first: number): number[] {
  return range(s.sessions).map((j) => first + Math.floor((j * spreadMs(s)) / s.sessions));
}

/** Load process k's share of the sockets: every k-th one, so that each process sees the whole spread of deadlines. */
function loadShare(k: number, loads: number, s: Scenario, tokens: string[], deadlines: number[]): PrepareArgs {
  const sockets = range(s.n).filter((i) => i % loads === k);
  return {
    tokens: sockets.map((i) => tokens[i % s.sessions]!),
    deadlines: sockets.map((i) => deadlines[i % s.sessions]!),
    reconnect: s.mode === 'failover',
  };
}

/** Memory growth from `before` to `after`, per socket of the `sockets` opened in between. */
const memory = (beforeKiB: number, afterKiB: number, sockets: number): Memory => ({ beforeKiB, afterKiB, perSocketKiB: (afterKiB - beforeKiB) / sockets });
const totalRssKiB = async (pids: number[]) => sum(await Promise.all(pids.map(rssKiB)));

function mergeServerStats(stats: ServerStats[]): ServersStats {
  const commands: ServerStats['commands'] = {};
  for (const st of stats) {
    for (const [key, c] of Object.entries(st.commands)) addCommands(commands, key, c.count, c.ms);
  }
  return {
    rechecks: { sent: sum(stats.map((st) => st.rechecks.sent)), answered: stats.flatMap((st) => st.rechecks.answered) },
    logCounts: sumCounts(stats.map((st) => st.logCounts)),
    commands,
    loopDelaysMs: stats.map((st) => st.loopDelayMs),
  };
}

/** The API server processes' environment on the run's database. */
function apiServerEnv(s: Scenario, db: RunDatabase): Record<string, string> {
  return {
    ...BENCH_SERVER_ENV,
    ...Object.fromEntries(['LOG_LEVEL', 'CHANGE_POLL_INTERVAL_MS', 'WS_PING_INTERVAL'].filter((k) => env[k]).map((k) => [k, env[k]!])),
    // Behind HAProxy: the per-address limits see the load's addresses (X-Forwarded-For).
    ...(s.processes > 1 ? { TRUST_PROXY: 'loopback', ...API_PROCESS_ENV } : {}),
    BENCH_MONGODB_URI: db.uri,
    ...(env.BENCH_CPU_PROF ? { BENCH_CPU_PROF: path.resolve(env.BENCH_CPU_PROF) } : {}),
  };
}

/** Starts the scenario's server processes (pushed onto `children` as they come up). */
async function startServers(target: Target, s: Scenario, serverEnv: Record<string, string>, children: Child[]): Promise<Child[]> {
  const file = path.join(here, target === 'api' ? 'server-process.ts' : 'bare-server.ts');
  const started = await Promise.allSettled(range(s.processes).map(() => spawnChild(file, serverEnv, ['--expose-gc'])));
  const servers = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  children.push(...servers);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) throw new SetupFailed(`a server process did not start: ${String(failed.reason).split('\n')[0]}`);
  return servers;
}

/** Starts the scenario's load processes (pushed onto `children`), each prepared with its share of the sockets. */
async function startLoads(s: Scenario, tokens: string[], deadlines: number[], children: Child[]) {
  const loads = await Promise.all(range(loadProcesses(s)).map(() => spawnChild(path.join(here, 'load.ts'))));
  children.push(...loads);
  const shares = loads.map((_, k) => loadShare(k, loads.length, s, tokens, deadlines));
  await Promise.all(loads.map((load, k) => load.call('prepare', shares[k])));
  return { loads, shares };
}

async function runOnce(target: Target, s: Scenario, attempt: number): Promise<RunResult> {
  const { n, sessions, mode } = s;
  const name = scenarioName(target, s);
  const children: Child[] = [];
  let db: RunDatabase | null = null;
  let balancer: Balancer | null = null;
  try {
    const t0 = Date.now();
    const first = t0 + 5000 + SETTLE_MS + Math.ceil(1.5 * 2 ** (attempt - 1) * projectedSetupMs(target, s));
    log(`  ${name}: first deadline in ${((first - t0) / 1000).toFixed(0)} s`);
    const deadlines = sessionDeadlines(s, first);
    let tokens = deadlines.map(String); // the bare server's "token" is the deadline
    if (target === 'api') {
      db = await databaseForRun(`bench_${n}_${sessions}_${s.processes}_${mode}`);
      // Before any server process starts: their change feeds do not see the seeded sessions as changes.
      tokens = await seedSessions(db.uri, deadlines);
    }
    const seeded = Date.now();
    const servers = await startServers(target, s, db ? apiServerEnv(s, db) : { BARE_CLOSING: target === 'bare-closing' ? '1' : '0' }, children);
    const urls = await Promise.all(servers.map((server) => server.call<string>('url')));
    if (db) await checkSeededShape(db.uri, urls[0]!, tokens[0]!);
    if (s.processes > 1) {
      balancer = await startBalancer(urls, haproxyInstances(n), loadProcesses(s), log);
      log(`  ${name}: ${balancer.pids.length} HAProxy processes on ${balancer.urls.map((u) => new URL(u).host).join(', ')}`);
    }
    // Load process k connects to the balancer's k-th address (or to the one server).
    const urlOf = (k: number) => balancer?.urls[k] ?? urls[0]!;
    const { loads, shares } = await startLoads(s, tokens, deadlines, children);

    const serverPids = servers.map((c) => c.pid);
    const dbPids = async () => (db ? db.pids() : []);
    const subscribed = async () => sum(await Promise.all(servers.map((c) => c.call<number>('subscribed'))));
    const gc = async () => sum((await Promise.all(servers.map((c) => c.call<NodeJS.MemoryUsage>('gc')))).map((m) => m.heapUsed));
    const concurrency = Math.ceil((HANDSHAKES_PER_SERVER[target] * s.processes) / loads.length);
    // Memory is read as the growth from 10 % to 100 % of the sockets, so that what any first socket
    // warms up (code, pools, caches) is not counted as the cost of each.
    const lastChance = first - SETTLE_MS - 1000;
    const open = async (fraction: number) => {
      const opening = Date.now();
      const upTo = (k: number) => Math.ceil(fraction * shares[k]!.tokens.length);
      const opens = Promise.all(loads.map((load, k) => load.call<{ refused: number }>('open', { url: urlOf(k), concurrency, to: upTo(k) })));
      const overrun = sleep(lastChance - Date.now()).then(() => {
        throw new SetupFailed(`the sockets were still opening ${SETTLE_MS + 1000} ms before the first deadline`);
      });
      overrun.catch(() => {}); // when the sockets are open first
      const opened = await Promise.race([
        opens.catch((err: Error) => {
          throw new SetupFailed(`opening the sockets failed: ${err.message.split('\n')[0]}`);
        }),
        overrun,
      ]);
      const expected = sum(loads.map((_, k) => upTo(k)));
      while ((await subscribed()) < expected) {
        if (Date.now() > lastChance) throw new SetupFailed(`subscriptions not in place ${first - Date.now()} ms before the first deadline`);
        await sleep(50);
      }
      return { openMs: Date.now() - opening, opened: expected, refused: sum(opened.map((o) => o.refused)) };
    };
    const opening = Date.now();
    const warm = await open(0.1);
    const heapBefore = await gc();
    const beforeKiB = await totalRssKiB(serverPids);
    const balancerBeforeKiB = balancer ? await totalRssKiB(balancer.pids) : 0;
    const setupCpu = await cpuMeter([async () => serverPids, dbPids]);
    const rest = await open(1);
    const [setupServer, setupDb] = await setupCpu();
    const subscribedAt = Date.now();
    const setup = {
      seedMs: seeded - t0,
      startMs: opening - seeded,
      openMs: warm.openMs + rest.openMs,
      subscribeMs: subscribedAt - opening,
      totalMs: subscribedAt - t0,
      attempts: attempt,
      refused: rest.refused,
    };
    learn(target, s, setup);
    log(
      `  ${name}: seeded in ${(setup.seedMs / 1000).toFixed(1)} s, processes started in ${(setup.startMs / 1000).toFixed(1)} s, ` +
        `subscribed in ${(setup.subscribeMs / 1000).toFixed(1)} s (CPU server ${setupServer!.toFixed(0)} %, DB ${setupDb!.toFixed(0)} %)`,
    );
    const connections = balancer?.connections() ?? [];
    if (balancer) log(`  ${name}: connections per HAProxy process ${connections.join(', ')} (maxconn ${HAPROXY_MAXCONN})`);

    const balancerPids = async () => balancer?.pids ?? [];
    const idle = await cpuMeter([async () => serverPids, dbPids]);
    await sleep(SETTLE_MS);
    const [idleServer, idleDb] = await idle();
    const heapAfter = await gc();
    const afterKiB = await totalRssKiB(serverPids);
    const balancerAfterKiB = balancer ? await totalRssKiB(balancer.pids) : 0;
    if (Date.now() > first - 200) throw new SetupFailed('the memory reading ran into the first deadline');
    await sleep(Math.max(0, first - 100 - Date.now()));
    await Promise.all(servers.map((c) => c.call('resetStats')));
    const expiry = await cpuMeter([async () => serverPids, dbPids, balancerPids]);
    const killed = s.mode === 'failover' ? servers[1]! : null;
    if (killed) void sleep(first + KILL_AFTER_MS - Date.now()).then(() => process.kill(killed.pid, 'SIGKILL'));
    const rawFile = (k: number) => env.BENCH_RAW_DIR && path.resolve(env.BENCH_RAW_DIR, `${target}-${path.basename(plotPath(s), '.svg')}-${k + 1}.json`);
    const parts = await Promise.all(loads.map((load, k) => load.call<LoadPart>('collect', { graceMs: graceMs(s), rawFile: rawFile(k) })));
    const [expiryServer, expiryDb, expiryBalancer] = await expiry();
    const survivors = servers.filter((c) => c !== killed);
    const stats = mergeServerStats(await Promise.all(survivors.map((c) => c.call<ServerStats>('stats'))));
    const sockets = rest.opened - warm.opened;
    return {
      ...s,
      target,
      load: mergeParts(parts),
      setup,
      rss: { ...memory(beforeKiB, afterKiB, sockets), heapPerSocketKiB: (heapAfter - heapBefore) / 1024 / sockets },
      cpu: { idleServer, idleDb, expiryServer, expiryDb, expiryBalancer },
      server: stats,
      balancer: balancer && { instances: balancer.pids.length, connections, rss: memory(balancerBeforeKiB, balancerAfterKiB, sockets), lines: balancer.output },
    };
  } finally {
    await balancer?.stop();
    await Promise.all(children.map((child) => child.stop()));
    await db?.resolved.stop();
  }
}

/** One scenario for one target: skipped if its setup would not fit the budget; retried with more margin if it overran. */
async function run(target: Target, s: Scenario): Promise<RunResult | Skipped> {
  const name = scenarioName(target, s);
  const projected = projectedSetupMs(target, s);
  if (projected > SETUP_BUDGET_MS) {
    const o = costsOf(target, s);
    const skipped =
      `setup projected at ${(projected / 60_000).toFixed(0)} min from the earlier runs ` +
      `(${o.seedMs.toFixed(1)} ms per seeded session, ${(o.socketBaseMs + o.socketPerSessionMs * s.sessions).toFixed(0)} ms per socket ` +
      `with ${s.sessions.toLocaleString('en')} sessions in the database), over the ${SETUP_BUDGET_MS / 60_000} min budget`;
    log(`${name}: not run: ${skipped}`);
    return { ...s, target, skipped };
  }
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await runOnce(target, s, attempt);
      const l = r.load;
      log(
        `${name}: p50 ${l.latency.p50} p99 ${l.latency.p99} max ${l.latency.max} ms, missing ${l.missing}, early ${l.early}, wrong ${l.wrong}, ` +
          `duplicate ${l.duplicate}; RSS ${r.rss.perSocketKiB.toFixed(1)} KiB per socket` +
          (s.mode === 'failover' ? `; ${l.reconnected} reconnected, p50 ${l.reconnect.p50} p99 ${l.reconnect.p99} ms; ${l.endedAway} ended while away; ${l.stillAway} still reconnecting; ` +
              `failed attempts: ${Object.entries(l.reconnectFailures).map(([why, n]) => `${n} × ${why}`).join(', ') || 'none'}` : ''),
      );
      const lines = Object.entries(r.server.logCounts).map(([msg, count]) => `${count} × "${msg}"`);
      if (lines.length) log(`  server log from the first deadline on: ${lines.join(', ')}`);
      const commands = Object.entries(r.server.commands).sort((a, b) => b[1].ms - a[1].ms);
      if (commands.length) log(`  database commands from the first deadline on, by time: ${commands.slice(0, 10).map(([k, c]) => `${k} ${c.count}× ${Math.round(c.ms)} ms`).join(', ')}`);
      return r;
    } catch (err) {
      if (!(err instanceof SetupFailed)) throw err;
      if (attempt >= 3) {
        const skipped = `the set-up failed 3 times (the last with 4 times the projected time): ${err.message}`;
        log(`${name}: given up: ${skipped}`);
        return { ...s, target, skipped };
      }
      log(`${name}: ${err.message}; again with twice the margin`);
    }
  }
}

function machine() {
  const read = (file: string) => execFileSync('cat', [file], { encoding: 'utf8' });
  const memKiB = Number(/^MemTotal:\s+(\d+)/m.exec(read('/proc/meminfo'))?.[1]);
  return {
    date: new Date().toISOString(),
    nproc: execFileSync('nproc', { encoding: 'utf8' }).trim(),
    cpu: /^model name\s*:\s*(.*)$/m.exec(read('/proc/cpuinfo'))?.[1] ?? 'unknown',
    memory: `${(memKiB / 1024 / 1024).toFixed(1)} GiB`,
    node: process.version,
    os: `${/^PRETTY_NAME="?([^"\n]*)/m.exec(read('/etc/os-release'))?.[1] ?? os.type()} (${os.type()} ${os.release()})`,
    database: '',
    code: gitState(),
  };
}

const git = (...args: string[]) => execFileSync('git', args, { cwd: path.join(here, '..'), encoding: 'utf8' });
const uncommittedCode = () => git('status', '--porcelain', '--', 'src', 'scripts').split('\n').filter(Boolean).map((l) => l.slice(3));

/** The commit measured, and whether src/ differed from it (other work in progress in the same tree). */
function gitState(): string {
  try {
    const dirty = uncommittedCode();
    return `commit ${git('rev-parse', '--short', 'HEAD').trim()}${dirty.length ? ` with uncommitted changes to ${dirty.join(', ')}` : ''}`;
  } catch {
    return 'not a git checkout';
  }
}

/** What the processes of a run load: src/ and scripts/ as committed, and what is changed in them. */
function codeTree(): string {
  try {
    return `${git('rev-parse', 'HEAD:src', 'HEAD:scripts').trim()} ${uncommittedCode().join(',')}`;
  } catch {
    return '';
  }
}

const ms = (v: number) => (Number.isFinite(v) ? String(Math.round(v)) : v === Infinity ? 'missing' : '–');
const yes = (ok: boolean) => (ok ? '**yes**' : '**no**');
const count = (v: number) => v.toLocaleString('en');
/** A scenario's plot, relative to the output file's folder. */
const plotPath = (s: Scenario) =>
  `docs/bench/expiry-${s.processes > 1 ? `cluster${s.processes}-` : ''}${s.n}${s.sessions < s.n ? `-over-${s.sessions}` : ''}-${s.mode}.svg`;
/** The sockets of a scenario, for a table cell ("10,000 (over 100 sessions)") or, with `unit`, a title ("10,000 sockets (over …)"). */
const sockets = (s: Scenario, unit = '') =>
  `${count(s.n)}${unit}${s.sessions < s.n ? ` (over ${count(s.sessions)} sessions)` : ''}${s.processes > 1 ? ` on ${s.processes} processes behind HAProxy` : ''}`;
const expiries = (s: Scenario) =>
  s.mode === 'burst' ? 'all at one instant' : `spread over ${spreadMs(s) / 1000} s${s.mode === 'failover' ? `, one process killed ${KILL_AFTER_MS / 1000} s in` : ''}`;
const describe = (s: Scenario) => `${sockets(s)} | ${expiries(s)}`;
/** The scenario in words: "1,000 sockets, spread over 3 s". */
const phrase = (s: Scenario) => `${sockets(s, ' sockets')}, ${expiries(s)}`;
const TARGET_LABELS: Record<Target, string> = { api: 'API', bare: 'bare ws', 'bare-closing': 'bare ws, closing' };
const TARGET_COLORS: Record<Target, string> = { api: '#d62728', bare: '#1f77b4', 'bare-closing': '#2ca02c' };
const same = (a: Scenario, b: Scenario) => a.n === b.n && a.sessions === b.sessions && a.mode === b.mode && a.processes === b.processes;

/**
 * Writes one SVG per scenario with a finished run (the API's and the bare server's latency CDFs),
 * next to the output file; returns the scenarios plotted.
 */
async function writePlots(date: string, all: Array<RunResult | Skipped>): Promise<Scenario[]> {
  const done = all.filter((r): r is RunResult => !('skipped' in r));
  const scenarios = done.filter((r, i) => done.findIndex((o) => same(o, r)) === i);
  for (const s of scenarios) {
    const series = (['api', 'bare', 'bare-closing'] as const).flatMap((target) => {
      const r = done.find((o) => o.target === target && same(o, s));
      return r ? [{ label: TARGET_LABELS[target], color: TARGET_COLORS[target], latencies: r.load.latencies, n: r.load.n }] : [];
    });
    const title = `${phrase(s)}: ${date.slice(0, 16).replace('T', ' ')} UTC`;
    const file = path.join(path.dirname(OUTPUT), plotPath(s));
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, latencyCdfSvg(title, series));
  }
  return scenarios;
}

/** The kinds of HAProxy lines counted under one name, first match first: servers marked down (and why) or up. */
const HAPROXY_LINE_KINDS: Array<[RegExp, (match: RegExpExecArray) => string]> = [
  [/ is DOWN, reason: Layer7 timeout/, () => 'server marked down (health check timed out)'],
  [/ is DOWN, reason: Layer7 wrong status, code: (\d+)/, (m) => `server marked down (health check answered ${m[1]})`],
  [/ is DOWN, reason: ([^,]+)/, (m) => `server marked down (${m[1]!.toLowerCase()})`],
  [/ is DOWN/, () => 'server marked down (other)'],
  [/ is UP/, () => 'server up again'],
];

/** A line's kind: one of HAPROXY_LINE_KINDS, or the line itself (alerts, anything else), made fit for a table cell. */
function haproxyLineKind(line: string): string {
  for (const [pattern, kind] of HAPROXY_LINE_KINDS) {
    const match = pattern.exec(line);
    if (match) return kind(match);
  }
  return line.replace(/^haproxy \d+: /, '').replace(/\(\d+\)/, '').replace(/\s+/g, ' ').replace(/\|/g, '\\|').slice(0, 120);
}

/** HAProxy's stderr lines, counted by kind. */
function summarizeHaproxyLog(lines: string[]): string {
  const counts = new Map<string, number>();
  for (const line of lines) {
    const kind = haproxyLineKind(line);
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return [...counts].map(([kind, n]) => `${n} × ${kind}`).join('; ') || 'nothing';
}

/** The run and the machine, the first line of each section written. */
interface RunInfo {
  machine: ReturnType<typeof machine>;
  totalS: number;
  loadavg: string;
}
const runLine = ({ machine: m, totalS, loadavg }: RunInfo) =>
  `Run of ${m.date}: ${Math.round(totalS)} s in all. Machine: ${m.nproc} CPUs (nproc), ${m.cpu}, ${m.memory} RAM, ${m.os}, ` +
  `Node ${m.node}; load average ${loadavg}. Database: ${m.database}. Code: ${m.code}.`;
const pctCell = (v: number) => `${v.toFixed(0)} %`;
const dist = (d: Distribution) => `${ms(d.p50)} / ${ms(d.p99)} / ${ms(d.max)}`;
const plotLine = (s: Scenario) => `![Expiry latency CDF, ${phrase(s)}](${plotPath(s)})`;

function report(info: RunInfo, all: Array<RunResult | Skipped>, probe: ProbeRow[], plotted: Scenario[]): string {
  const done = all.filter((r): r is RunResult => !('skipped' in r));
  const bareOf = (s: Scenario, target: Target = 'bare') => done.find((r) => r.target === target && same(r, s));
  const api = all.filter((r) => r.target === 'api');
  const apiDone = done.filter((r) => r.target === 'api');
  const lines: string[] = [
    runLine(info),
    '',
    '#### Expiry latency: event received − `expiresAt`, ms',
    '',
    '| sockets | expiries | p50 | p99 | max | missing | early | wrong | duplicate | bare p50 | bare p99 | p99 ÷ bare p99 | target p99 | met | bare, closing: p50 / p99 |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|',
  ];
  for (const r of api) {
    const bare = bareOf(r);
    const bareCells = bare ? `${ms(bare.load.latency.p50)} | ${ms(bare.load.latency.p99)}` : '– | –';
    const closing = bareOf(r, 'bare-closing');
    const closingCell = closing ? `${ms(closing.load.latency.p50)} / ${ms(closing.load.latency.p99)}` : '–';
    const target = r.mode === 'spread' ? TARGETS.spreadP99 : TARGETS.burstP99;
    if ('skipped' in r) {
      lines.push(`| ${describe(r)} | not run¹ | | | | | | | ${bareCells} | | ≤ ${target} | not measured | ${closingCell} |`);
      continue;
    }
    const l = r.load;
    const ok = l.latency.p99 <= target && l.missing + l.early + l.wrong + l.duplicate === 0;
    const ratio = bare && Number.isFinite(l.latency.p99) ? `${(l.latency.p99 / Math.max(1, bare.load.latency.p99)).toFixed(1)}×` : '–';
    lines.push(
      `| ${describe(r)} | ${ms(l.latency.p50)} | ${ms(l.latency.p99)} | ${ms(l.latency.max)} | ${l.missing} | ${l.early} | ${l.wrong} | ${l.duplicate} | ` +
        `${bareCells} | ${ratio} | ≤ ${target} | ${yes(ok)} | ${closingCell} |`,
    );
  }
  const notes = [...new Set(all.filter((x): x is Skipped => 'skipped' in x).map((r) => `${TARGET_LABELS[r.target]}, ${phrase(r)}: ${r.skipped}`))];
  for (const note of notes) lines.push('', `¹ ${note}.`);
  const bareFaults = done
    .filter((r) => r.target !== 'api' && r.load.missing + r.load.early + r.load.wrong + r.load.duplicate > 0)
    .map((r) => `${TARGET_LABELS[r.target]}, ${phrase(r)}: ${r.load.missing} missing, ${r.load.early} early, ${r.load.wrong} wrong, ${r.load.duplicate} duplicate`);
  if (plotted.length) {
    lines.push(
      '',
      'The distribution of each scenario: the share of events received by a given lateness (log scale), API in red, bare ' +
        'server in blue, bare server closing in green, p50 and p99 dashed.',
      ...plotted.flatMap((s) => ['', plotLine(s)]),
    );
  }
  lines.push(
    '',
    'The bare servers ran the same sockets with the same deadlines in the same run (as many processes, behind the same balancer); ' +
      'a bare p99 under 1 ms counts as 1 ms in the ratio. Bare, closing: the same bare server also doing what the protocol asks of ' +
      'the API when a session ends, graphql-ws\'s `complete` after the event and the socket closed with 4401 after the other events due in ' +
      'that turn, the event and `complete` in one write as the API sends them: what the target ratios leave out (not a target). ' +
      `Missing: no event within ${GRACE_MS / 1000} s of the last deadline; the percentiles are over every socket, a missing event ` +
      `counting as later than any ("missing" where the percentile falls among them). Early: received before \`expiresAt\`. Wrong: not EXPIRED, ` +
      'or not with the `expiresAt` its session was given. Duplicate: a second event on a socket. ' +
      (bareFaults.length ? `Bare servers: ${bareFaults.join('; ')}.` : 'The bare servers\' events: none missing, early, wrong or duplicate.'),
    '',
    '#### Where the time goes (API server)',
    '',
    '| sockets | expiries | server lag p50 / p99 / max | transit p50 / p99 / max | re-check commits sent / answered | answered in p50 / max (largest batch) | re-checks timed out | event-loop delay max (per process) | CPU server / DB / balancer | completed / closed 4401 |',
    '|---|---|---|---|---:|---|---:|---:|---|---:|',
  );
  for (const r of apiDone) {
    const rc = r.server.rechecks;
    const reads = rc.answered.map((x) => x.ms).sort((a, b) => a - b);
    const largest = Math.max(0, ...rc.answered.map((x) => x.sessions));
    const timedOut = Object.entries(r.server.logCounts).find(([msg]) => msg.startsWith('expiry re-check failed'))?.[1] ?? 0;
    lines.push(
      `| ${describe(r)} | ${dist(r.load.serverLag)} | ${dist(r.load.transit)} | ${rc.sent} / ${rc.answered.length} | ` +
        `${reads.length ? `${ms(reads[Math.floor((reads.length - 1) / 2)]!)} / ${ms(reads[reads.length - 1]!)} (${count(largest)})` : '–'} | ` +
        `${timedOut} | ${r.server.loopDelaysMs.map((d) => (d ? ms(d.max) : '–')).join(' / ')} | ` +
        `${pctCell(r.cpu.expiryServer)} / ${pctCell(r.cpu.expiryDb)} / ${r.balancer ? pctCell(r.cpu.expiryBalancer) : '–'} | ${r.load.completed} / ${r.load.closed4401} |`,
    );
  }
  lines.push(
    '',
    'Server lag: `serverTime` in the event − `expiresAt` (timer, the re-check\'s commit, bookkeeping). Transit: received − `serverTime` ' +
      '(executing the event, writing it, through the balancer if any, the load reading it). Re-check commits: the expiry re-check\'s database work (`expireDue`: the insert that ends the sessions due, and the reads of ' +
      'those another writer got first), timed in the server processes; a re-check not answered within 1 s (and a ping then not ' +
      'within 0.5 s), or not within `EXPIRY_RECHECK_MAX_WAIT` (10 s) in all, times out and the sessions end on their last known expiry. CPU: % of one ' +
      'core from the first deadline to the last event, for the server processes together, the database process (for FerretDB on ' +
      'PostgreSQL: FerretDB and the PostgreSQL backends serving its database) and the HAProxy processes together. Completed / closed: ' +
      'subscriptions that got `complete` after their event, and sockets the server closed with 4401 within 5 s of the last event.',
    '',
    '#### Memory: server VmRSS (after a GC), KiB',
    '',
    '| sockets | expiries | with 10 % of the sockets | with N idle subscribed sockets | per socket | of which JS heap | bare server per socket | balancer with N sockets (per socket) | target | met | idle CPU server / DB |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|',
  );
  for (const r of apiDone) {
    const bare = bareOf(r);
    const b = r.balancer?.rss;
    lines.push(
      `| ${describe(r)} | ${count(r.rss.beforeKiB)} | ${count(r.rss.afterKiB)} | ${r.rss.perSocketKiB.toFixed(1)} | ${r.rss.heapPerSocketKiB.toFixed(1)} | ` +
        `${bare ? bare.rss.perSocketKiB.toFixed(1) : '–'} | ${b ? `${count(b.afterKiB)} (${b.perSocketKiB.toFixed(1)})` : '–'} | ` +
        `≤ ${TARGETS.kibPerSession} | ${yes(r.rss.perSocketKiB <= TARGETS.kibPerSession)} | ${pctCell(r.cpu.idleServer)} / ${pctCell(r.cpu.idleDb)} |`,
    );
  }
  lines.push(
    '',
    'Read after a full GC, with 10 % of the sockets subscribed and again with all of them after ' +
      `${SETTLE_MS / 1000} s idle; per socket: the growth divided by the other 90 %, so that what the first sockets warm up is not ` +
      'charged to each. With several server processes, summed over them (the sessions were seeded before they started). ' +
      'Balancer: the HAProxy processes\' VmRSS summed, and its growth per socket likewise. Idle CPU: % of one core over the idle seconds.',
  );
  const clustered = done.filter((r) => r.balancer);
  if (clustered.length) {
    lines.push(
      '',
      '#### The balancer tier',
      '',
      '| server | sockets | expiries | HAProxy processes | connections per process | what they logged |',
      '|---|---|---|---:|---|---|',
      ...clustered.map((r) => {
        const b = r.balancer!;
        return `| ${r.target} | ${describe(r)} | ${b.instances} | ${b.connections.map(count).join(', ')} | ${summarizeHaproxyLog(b.lines)} |`;
      }),
      '',
      `Connections per process: counted from its open file descriptors (2 per proxied connection) with every socket open; each ` +
        `process has \`maxconn ${HAPROXY_MAXCONN}\`. What they logged: on stderr, from their start to the end of the run; a server ` +
        `is marked down after 2 failed health checks (\`GET /readyz\` not answered within ${HEALTH_CHECK_TIMEOUT_S} s, or answered 503; one a second) and up again after 2 passed.`,
    );
  }
  lines.push(
    '',
    '#### Setup',
    '',
    '| server | sockets | expiries | seed the sessions | start the processes | sockets acknowledged | all subscriptions in place | total | attempts | sockets refused, tried again |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|',
  );
  const sec = (v: number) => `${(v / 1000).toFixed(1)} s`;
  for (const r of done) {
    const s = r.setup;
    lines.push(
      `| ${r.target} | ${describe(r)} | ${r.target === 'api' ? sec(s.seedMs) : '–'} | ${sec(s.startMs)} | ${sec(s.openMs)} | ${sec(s.subscribeMs)} | ${sec(s.totalMs)} | ${s.attempts} | ${s.refused} |`,
    );
  }
  lines.push(
    '',
    'Seed: the sessions written straight into the database, in the shape a login writes, before the server processes start ' +
      '(bench/seed.ts; a login through the API checks that shape). Start: the server processes, the balancer and the load ' +
      'processes. Sockets refused: upgrades HAProxy answered with 503 (every server marked down for a moment), and sockets a server ' +
      'closed with 4408 (its event loop did not get to their `connection_init` within 3 s), each tried again.',
  );
  if (probe.length) {
    const sizes = Object.keys(probe[0]!.ms).map(Number);
    lines.push(
      '',
      '#### The database on the hot-path queries',
      '',
      `| query (server's schema and indexes) | issued by | ${sizes.map((n) => `ms with ${count(n)} sessions`).join(' | ')} | plan |`,
      `|---|---|${sizes.map(() => '---:').join('|')}|---|`,
      ...probe.map((p) => `| \`${p.query}\` | ${p.where} | ${sizes.map((n) => (p.ms[n]! < 10 ? p.ms[n]!.toFixed(1) : ms(p.ms[n]!))).join(' | ')} | ${p.indexed} |`),
      '',
      'One query at a time on an otherwise idle database (median of up to 5 runs); plan as the database explains it.',
    );
  }
  return lines.join('\n');
}

function failoverReport(info: RunInfo, all: Array<RunResult | Skipped>, plotted: Scenario[]): string {
  const lines = [
    runLine(info),
    '',
    '| sockets | expiries | sockets reconnected | reconnection p50 / p99 / max | lateness, on time: p50 / p99 / max | ended while away: events, from reconnection p50 / p99 / max | missing (of which still reconnecting) | early | wrong | duplicate | event-loop delay max (survivors) | CPU survivors / DB / balancer | survivors logged | HAProxy logged |',
    '|---|---|---:|---|---|---|---:|---:|---:|---:|---|---|---|---|',
  ];
  for (const r of all) {
    if ('skipped' in r) {
      lines.push(`| ${describe(r)} | not run: ${r.skipped} | | | | | | | | | | | |`);
      continue;
    }
    const l = r.load;
    const logged = Object.entries(r.server.logCounts).map(([msg, n]) => `${n} × ${msg.replace(/\|/g, '\\|')}`).join('; ') || 'nothing';
    lines.push(
      `| ${describe(r)} | ${count(l.reconnected)} | ${dist(l.reconnect)} | ${dist(l.onTime)} | ${count(l.endedAway)}: ${dist(l.away)} | ` +
        `${l.missing} (${l.stillAway}) | ${l.early} | ${l.wrong} | ${l.duplicate} | ${r.server.loopDelaysMs.map((d) => (d ? ms(d.max) : '–')).join(' / ')} | ` +
        `${pctCell(r.cpu.expiryServer)} / ${pctCell(r.cpu.expiryDb)} / ${pctCell(r.cpu.expiryBalancer)} | ${logged} | ${r.balancer ? summarizeHaproxyLog(r.balancer.lines) : '–'} |`,
    );
  }
  lines.push(...plotted.flatMap((s) => ['', plotLine(s)]));
  lines.push(
    '',
    `One API process of ${CLUSTER_PROCESSES} killed with SIGKILL ${KILL_AFTER_MS / 1000} s into the spread; nothing restarts it during the run. ` +
      "Each socket of the load that closes before its event reconnects through the balancer as the README's graphql-ws client " +
      'does (retries without end, 250 ms doubling up to 4 s, jittered; a socket not acknowledged within 10 s of its upgrade is ' +
      'dropped and tried again) and subscribes again with the same token. Reconnection: ' +
      'from the close to the new socket\'s `connection_ack`. On time: received − `expiresAt`, for every event but those of sessions ' +
      'that ended while their socket was away, which the server sends at once on the new subscription: for them, received − the ' +
      `reconnection. Missing: no event within ${FAILOVER_GRACE_MS / 1000} s of the last deadline. Duplicate: a second event for a socket, ` +
      'across its reconnections.',
  );
  return lines.join('\n');
}

/** The sections this file writes into the output, each between its markers (text outside them is kept). */
const SECTIONS = {
  latency: ['<!-- bench:begin (written by npm run bench) -->', '<!-- bench:end -->'],
  failover: ['<!-- bench:failover:begin (written by npm run bench) -->', '<!-- bench:failover:end -->'],
} as const;

async function write(which: keyof typeof SECTIONS, section: string): Promise<void> {
  const [begin, end] = SECTIONS[which];
  let text = await readFile(OUTPUT, 'utf8').catch(() => '# Benchmarks\n\nRun with `npm run bench`.\n');
  if (!text.includes(begin)) text = `${text.trimEnd()}\n\n${begin}\n${end}\n`;
  const head = text.slice(0, text.indexOf(begin) + begin.length);
  const tail = text.slice(text.indexOf(end));
  await writeFile(OUTPUT, `${head}\n${section}\n${tail}`);
}

async function main() {
  const started = Date.now();
  const codeAtStart = codeTree();
  setTimeout(() => {
    console.error(`bench: aborted after ${WATCHDOG_MS / 60_000} min`);
    process.exit(2);
  }, WATCHDOG_MS).unref();

  const info = machine();
  const loadBefore = os.loadavg()[0]!.toFixed(1);
  const both = (n: number, sessions: number, processes: number): Scenario[] => MODES.map((mode) => ({ n, sessions, mode, processes }));
  const scenarios: Scenario[] = [
    ...SIZES.flatMap((n) => [...both(n, n, 1), ...(n > 1000 && FANOUT_SESSIONS !== null && FANOUT_SESSIONS < n ? both(n, FANOUT_SESSIONS, 1) : [])]),
    ...CLUSTER_SIZES.flatMap((n) => both(n, n, CLUSTER_PROCESSES)),
  ];
  const results: Array<RunResult | Skipped> = [];
  let probe: ProbeRow[] = [];
  for (const s of scenarios) for (const target of TARGET_NAMES) results.push(await run(target, s));
  const failovers: Array<RunResult | Skipped> = [];
  for (const n of FAILOVER_SIZES) failovers.push(await run('api', { n, sessions: n, mode: 'failover', processes: CLUSTER_PROCESSES }));
  if (results.length) {
    const db = await databaseForRun('bench_probe');
    try {
      log(`timing the database on the hot-path queries: ${db.resolved.description}`);
      probe = await probeDatabase(db.uri);
    } finally {
      await db.resolved.stop();
    }
  }
  info.database = databaseDescription ?? '';
  const totalS = (Date.now() - started) / 1000;
  // Children load src/ when they start: if it changed meanwhile, later runs measured other code.
  if (codeTree() !== codeAtStart) info.code = `${info.code} at the start, ${gitState()} at the end (src/ changed during the run)`;
  const runInfo: RunInfo = { machine: info, totalS, loadavg: `${loadBefore} at the start, ${os.loadavg()[0]!.toFixed(1)} at the end` };
  if (results.length) await write('latency', report(runInfo, results, probe, await writePlots(info.date, results)));
  if (failovers.length) await write('failover', failoverReport(runInfo, failovers, await writePlots(info.date, failovers)));
  log(`done in ${Math.round(totalS)} s; figures written to ${path.relative(process.cwd(), OUTPUT)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
