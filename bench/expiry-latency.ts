/**
 * `npm run bench`: expiry latency over real websockets (DESIGN.md section 6, issue 3 item 7).
 *
 * For N = 1 000 and 10 000 subscribed sockets, expiring spread over 3 s and all at one instant,
 * it measures (event received − expiresAt) for the API server and, in the same run, for a bare
 * `ws` server that sends one message per socket at the same deadlines (the machine's physical
 * limit). Each server and each load runs in its own process; RSS is read from /proc. The figures
 * and the machine go into BENCHMARKS.md, between the markers (text outside them is kept), and a
 * latency-distribution plot per scenario (API and bare) into docs/bench/*.svg next to it, embedded there.
 *
 * A run of the API whose setup (log in, open the sockets) is projected to take longer than
 * BENCH_SETUP_BUDGET_S is not started but reported with its projection, so the whole stays
 * bounded. For N > 1 000 it also runs N sockets over BENCH_FANOUT_SESSIONS sessions (several
 * tabs per login), which sets up fast on any database.
 *
 * Environment: BENCH_SIZES (default "1000,10000"), BENCH_OUTPUT (default BENCHMARKS.md),
 * BENCH_SETUP_BUDGET_S (default 600), BENCH_FANOUT_SESSIONS (default 100), and what
 * scripts/database.ts reads (MONGODB_URI, SESSIONS_EMBEDDED_DB, SESSIONS_POSTGRESQL_URL). LOG_LEVEL,
 * CHANGE_POLL_INTERVAL_MS and WS_PING_INTERVAL pass through to the API server. BENCH_CPU_PROF=dir
 * writes a V8 CPU profile of the API server's expiry phase into dir (read it with profile-summary.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveDatabase, type ResolvedDatabase } from '../scripts/database.js';
import { probeDatabase, type ProbeRow } from './db-probe.js';
import { BENCH_SERVER_ENV, rssKiB, spawnChild, type Child } from './ipc.js';
import type { Distribution, LoadResult, PrepareArgs, Target } from './load.js';
import { latencyCdfSvg } from './plot.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
/** Ascending: the smaller runs calibrate the projected setup time of the larger ones. */
const SIZES = (env.BENCH_SIZES ?? '1000,10000').split(',').map(Number).sort((a, b) => a - b);
const OUTPUT = path.resolve(here, '..', env.BENCH_OUTPUT ?? 'BENCHMARKS.md');
const SETUP_BUDGET_MS = Number(env.BENCH_SETUP_BUDGET_S ?? 600) * 1000;
const FANOUT_SESSIONS = Number(env.BENCH_FANOUT_SESSIONS ?? 100);
const SPREAD_MS = 3000;
/** Idle time between the last subscription in place and the memory reading. */
const SETTLE_MS = 2000;
/** How long after the last deadline a missing event counts as missing. */
const GRACE_MS = 10_000;
const LOGIN_CONCURRENCY = 32;
const SOCKET_CONCURRENCY = 200;
/** Before each run, wait (at most this long) for the database to finish what the previous run left it. */
const QUIET_WAIT_MS = 180_000;
/** The whole run is aborted past this. */
const WATCHDOG_MS = 75 * 60_000;
const TARGETS = { spreadP99: 50, burstP99: 250, kibPerSession: 10 };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (line: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
const pct = (part: number, whole: number) => (whole > 0 ? (100 * part) / whole : 0);

type Mode = 'spread' | 'burst';
interface Scenario {
  n: number;
  sessions: number;
  mode: Mode;
}

interface ServerStats {
  rechecks: { sent: number; answered: Array<{ ms: number; sessions: number }> };
  logCounts: Record<string, number>;
  loopDelayMs: Distribution | null;
}

interface RunResult extends Scenario {
  target: Target;
  load: LoadResult;
  setup: { loginMs: number; openMs: number; subscribeMs: number; totalMs: number; attempts: number; quietWaitMs: number };
  rss: { beforeKiB: number; afterKiB: number; perSocketKiB: number; heapPerSocketKiB: number };
  /** Percent of one core, while N sockets sat idle and from the first deadline to the last event. */
  cpu: { idleServer: number; idleDb: number; expiryServer: number; expiryDb: number };
  server: ServerStats;
}

interface Skipped extends Scenario {
  target: Target;
  skipped: string;
}

class SetupTooSlow extends Error {}

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
        return new Map(await Promise.all(pids.map(async (pid) => [pid, await cpuTicks(pid)] as const)));
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

/** Waits until the database processes use under 10 % of a core, so one run's leftovers do not weigh on the next. */
async function waitForQuietDatabase(db: Database): Promise<number> {
  const t0 = Date.now();
  while (db.embedded && Date.now() - t0 < QUIET_WAIT_MS) {
    const stop = await cpuMeter([db.pids]);
    await sleep(1000);
    if ((await stop())[0]! < 10) break;
  }
  return Date.now() - t0;
}

/**
 * Projected setup time, in ms, from what earlier runs of the same target cost (before the first,
 * defaults measured on FerretDB, so a lone large size is projected pessimistically): logging in is
 * taken as constant per session; opening a socket as a constant plus a part proportional to the
 * number of sessions in the database (authenticating a socket reads the session by its id, which
 * FerretDB on SQLite answers with a scan of the table, if a cheap one: about 0.01 ms per session).
 */
const observed: Record<Target, { loginMs: number; socketBaseMs: number; socketPerSessionMs: number }> = {
  api: { loginMs: 20, socketBaseMs: 5, socketPerSessionMs: 0.01 },
  bare: { loginMs: 0, socketBaseMs: 0.5, socketPerSessionMs: 0 },
};
function projectedSetupMs(target: Target, s: Scenario): number {
  const o = observed[target];
  return o.loginMs * s.sessions + (o.socketBaseMs + o.socketPerSessionMs * s.sessions) * s.n;
}
function learn(target: Target, s: Scenario, loginMs: number, socketsMs: number): void {
  const perSocket = socketsMs / s.n;
  const base = Math.min(perSocket, 5);
  observed[target] = { loginMs: loginMs / s.sessions, socketBaseMs: base, socketPerSessionMs: (perSocket - base) / s.sessions };
}

interface Database {
  uri: string;
  /** Not MONGODB_URI: its processes can be found on this machine. */
  embedded: boolean;
  pids: () => Promise<number[]>;
}

async function runOnce(target: Target, s: Scenario, db: Database, attempt: number, quietWaitMs: number): Promise<RunResult> {
  const { n, sessions, mode } = s;
  const name = `${target} N=${n}${sessions < n ? ` over ${sessions} sessions` : ''} ${mode}`;
  const serverEnv: Record<string, string> = {};
  if (target === 'api') {
    const uri = new URL(db.uri);
    uri.pathname = `/bench_${n}_${sessions}_${mode}_${Date.now().toString(36)}`;
    Object.assign(serverEnv, {
      ...BENCH_SERVER_ENV,
      ...Object.fromEntries(['LOG_LEVEL', 'CHANGE_POLL_INTERVAL_MS', 'WS_PING_INTERVAL'].filter((k) => env[k]).map((k) => [k, env[k]!])),
      BENCH_MONGODB_URI: uri.toString(),
      ...(env.BENCH_CPU_PROF ? { BENCH_CPU_PROF: path.resolve(env.BENCH_CPU_PROF) } : {}),
    });
  }
  const children: Child[] = [];
  const serverFile = path.join(here, target === 'api' ? 'server-process.ts' : 'bare-server.ts');
  const startServer = async () => {
    const child = await spawnChild(serverFile, serverEnv, ['--expose-gc']);
    children.push(child);
    return { child, url: await child.call<string>('url') };
  };
  try {
    const load = await spawnChild(path.join(here, 'load.ts'));
    children.push(load);
    // The API logs the sessions in on one server process, and the sockets are served by a fresh one
    // on the same database: what the logins left in the heap and the allocator does not blur its RSS.
    let server = await startServer();
    const loginServer = server;

    const t0 = Date.now();
    const first = t0 + 5000 + SETTLE_MS + Math.ceil(1.5 * 2 ** (attempt - 1) * projectedSetupMs(target, s));
    const args: PrepareArgs = {
      target,
      url: server.url,
      n,
      sessions,
      first,
      spreadMs: mode === 'spread' ? SPREAD_MS : 0,
      users: Math.min(100, sessions),
      concurrency: LOGIN_CONCURRENCY,
    };
    log(`  ${name}: first deadline in ${((first - t0) / 1000).toFixed(0)} s`);
    const { registerMs, loginMs } = await load.call<{ registerMs: number; loginMs: number }>('prepare', args).catch((err: Error) => {
      throw err.message.includes('setup too slow') ? new SetupTooSlow('logins ran into the first deadline') : err;
    });
    if (target === 'api') {
      await loginServer.child.stop();
      server = await startServer();
    }
    // Memory is read as the growth from 10 % to 100 % of the sockets, so that what any first socket
    // warms up (code, pools, caches) is not counted as the cost of each.
    const open = async (from: number, to: number) => {
      const { openMs } = await load.call<{ openMs: number }>('open', { url: server.url, concurrency: SOCKET_CONCURRENCY, from, to });
      while ((await server.child.call<number>('subscribed')) < to) {
        if (Date.now() > first - SETTLE_MS - 1000) throw new SetupTooSlow(`subscriptions not in place ${first - Date.now()} ms before the first deadline`);
        await sleep(50);
      }
      return openMs;
    };
    const warm = Math.ceil(n / 10);
    const opening = Date.now();
    let openMs = await open(0, warm);
    const heapBefore = (await server.child.call<NodeJS.MemoryUsage>('gc')).heapUsed;
    const beforeKiB = await rssKiB(server.child.pid);
    openMs += await open(warm, n);
    const subscribed = Date.now();
    learn(target, s, registerMs + loginMs, subscribed - opening);
    log(`  ${name}: logged in in ${((registerMs + loginMs) / 1000).toFixed(1)} s, subscribed in ${((subscribed - opening) / 1000).toFixed(1)} s`);

    const idle = await cpuMeter([server.child.pid, db.pids]);
    await sleep(SETTLE_MS);
    const [idleServer, idleDb] = await idle();
    const heapAfter = (await server.child.call<NodeJS.MemoryUsage>('gc')).heapUsed;
    const afterKiB = await rssKiB(server.child.pid);
    if (Date.now() > first - 200) throw new SetupTooSlow('the memory reading ran into the first deadline');
    await sleep(Math.max(0, first - 100 - Date.now()));
    await server.child.call('resetStats');
    const expiry = await cpuMeter([server.child.pid, db.pids]);
    const result = await load.call<LoadResult>('collect', { graceMs: GRACE_MS });
    const [expiryServer, expiryDb] = await expiry();
    const stats = await server.child.call<ServerStats>('stats');
    return {
      ...s,
      target,
      load: result,
      setup: { loginMs: registerMs + loginMs, openMs, subscribeMs: subscribed - opening, totalMs: subscribed - t0, attempts: attempt, quietWaitMs },
      rss: { beforeKiB, afterKiB, perSocketKiB: (afterKiB - beforeKiB) / (n - warm), heapPerSocketKiB: (heapAfter - heapBefore) / 1024 / (n - warm) },
      cpu: { idleServer, idleDb, expiryServer, expiryDb },
      server: stats,
    };
  } finally {
    for (const child of children.reverse()) await child.stop();
  }
}

/** One scenario for one target: skipped if its setup would not fit the budget; retried with more margin if it overran. */
async function run(target: Target, s: Scenario, db: Database): Promise<RunResult | Skipped> {
  const name = `${target} N=${s.n}${s.sessions < s.n ? ` over ${s.sessions} sessions` : ''} ${s.mode}`;
  const projected = projectedSetupMs(target, s);
  if (projected > SETUP_BUDGET_MS) {
    const skipped =
      `setup projected at ${(projected / 60_000).toFixed(0)} min from the earlier runs ` +
      `(${observed[target].loginMs.toFixed(0)} ms per login, ${(observed[target].socketBaseMs + observed[target].socketPerSessionMs * s.sessions).toFixed(0)} ms per socket ` +
      `with ${s.sessions.toLocaleString('en')} sessions in the database), over the ${SETUP_BUDGET_MS / 60_000} min budget`;
    log(`${name}: not run: ${skipped}`);
    return { ...s, target, skipped };
  }
  for (let attempt = 1; ; attempt++) {
    const quietWaitMs = await waitForQuietDatabase(db);
    try {
      const r = await runOnce(target, s, db, attempt, quietWaitMs);
      const l = r.load;
      log(
        `${name}: p50 ${l.latency.p50} p99 ${l.latency.p99} max ${l.latency.max} ms, missing ${l.missing}, early ${l.early}, wrong ${l.wrong}; ` +
          `RSS ${r.rss.perSocketKiB.toFixed(1)} KiB per socket`,
      );
      const lines = Object.entries(r.server.logCounts).map(([msg, count]) => `${count} × "${msg}"`);
      if (lines.length) log(`  server log from the first deadline on: ${lines.join(', ')}`);
      return r;
    } catch (err) {
      if (!(err instanceof SetupTooSlow) || attempt >= 3) throw err;
      log(`${name}: ${err.message}; again with twice the margin`);
    }
  }
}

function machine(database: string) {
  const read = (file: string) => execFileSync('cat', [file], { encoding: 'utf8' });
  const memKiB = Number(/^MemTotal:\s+(\d+)/m.exec(read('/proc/meminfo'))?.[1]);
  return {
    date: new Date().toISOString(),
    nproc: execFileSync('nproc', { encoding: 'utf8' }).trim(),
    cpu: /^model name\s*:\s*(.*)$/m.exec(read('/proc/cpuinfo'))?.[1] ?? 'unknown',
    memory: `${(memKiB / 1024 / 1024).toFixed(1)} GiB`,
    node: process.version,
    os: `${/^PRETTY_NAME="?([^"\n]*)/m.exec(read('/etc/os-release'))?.[1] ?? os.type()} (${os.type()} ${os.release()})`,
    database,
    code: gitState(),
  };
}

/** The commit measured, and whether src/ differed from it (other work in progress in the same tree). */
function gitState(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: path.join(here, '..'), encoding: 'utf8' });
    const dirty = git('status', '--porcelain', '--', 'src', 'scripts').split('\n').filter(Boolean).map((l) => l.slice(3));
    return `commit ${git('rev-parse', '--short', 'HEAD').trim()}${dirty.length ? ` with uncommitted changes to ${dirty.join(', ')}` : ''}`;
  } catch {
    return 'not a git checkout';
  }
}

const ms = (v: number) => (Number.isFinite(v) ? String(Math.round(v)) : '–');
const yes = (ok: boolean) => (ok ? '**yes**' : '**no**');
const count = (v: number) => v.toLocaleString('en');
/** A scenario's plot, relative to the output file's folder. */
const plotPath = (s: Scenario) => `docs/bench/expiry-${s.n}${s.sessions < s.n ? `-over-${s.sessions}` : ''}-${s.mode}.svg`;
const describe = (s: Scenario) =>
  `${count(s.n)}${s.sessions < s.n ? ` (over ${count(s.sessions)} sessions)` : ''} | ${s.mode === 'spread' ? `spread over ${SPREAD_MS / 1000} s` : 'all at one instant'}`;

/**
 * Writes one SVG per scenario with a finished run (the API's and the bare server's latency CDFs),
 * next to the output file; returns the scenarios plotted.
 */
async function writePlots(date: string, all: Array<RunResult | Skipped>): Promise<Scenario[]> {
  const done = all.filter((r): r is RunResult => !('skipped' in r));
  const same = (a: Scenario, b: Scenario) => a.n === b.n && a.sessions === b.sessions && a.mode === b.mode;
  const scenarios = done.filter((r, i) => done.findIndex((o) => same(o, r)) === i);
  for (const s of scenarios) {
    const series = (['api', 'bare'] as const).flatMap((target) => {
      const r = done.find((o) => o.target === target && same(o, s));
      return r ? [{ label: target === 'api' ? 'API' : 'bare ws', color: target === 'api' ? '#d62728' : '#1f77b4', latencies: r.load.latencies, n: r.load.n }] : [];
    });
    const title = `${count(s.n)} sockets${s.sessions < s.n ? ` over ${count(s.sessions)} sessions` : ''}, ${s.mode === 'spread' ? `expiring over ${SPREAD_MS / 1000} s` : 'expiring at one instant'}: N = ${count(s.n)}, ${date.slice(0, 16).replace('T', ' ')} UTC`;
    const file = path.join(path.dirname(OUTPUT), plotPath(s));
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, latencyCdfSvg(title, series));
  }
  return scenarios;
}

function report(
  m: ReturnType<typeof machine>,
  all: Array<RunResult | Skipped>,
  probe: ProbeRow[],
  totalS: number,
  loadavg: string,
  plotted: Scenario[],
): string {
  const done = all.filter((r): r is RunResult => !('skipped' in r));
  const bareOf = (s: Scenario) => done.find((r) => r.target === 'bare' && r.n === s.n && r.sessions === s.sessions && r.mode === s.mode);
  const api = all.filter((r) => r.target === 'api');
  const apiDone = done.filter((r) => r.target === 'api');
  const lines: string[] = [
    `Run of ${m.date}: ${Math.round(totalS)} s in all. Machine: ${m.nproc} CPUs (nproc), ${m.cpu}, ${m.memory} RAM, ${m.os}, ` +
      `Node ${m.node}; load average ${loadavg}. Database: ${m.database}. Code: ${m.code}.`,
    '',
    '#### Expiry latency: event received − `expiresAt`, ms',
    '',
    '| sockets | expiries | p50 | p99 | max | missing | early | bare p50 | bare p99 | p99 ÷ bare p99 | target p99 | met |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of api) {
    const bare = bareOf(r);
    const bareCells = bare ? `${ms(bare.load.latency.p50)} | ${ms(bare.load.latency.p99)}` : '– | –';
    const target = r.mode === 'spread' ? TARGETS.spreadP99 : TARGETS.burstP99;
    if ('skipped' in r) {
      lines.push(`| ${describe(r)} | not run¹ | | | | | ${bareCells} | | ≤ ${target} | not measured |`);
      continue;
    }
    const l = r.load;
    const ok = l.latency.p99 <= target && l.missing === 0 && l.early === 0 && l.wrong === 0;
    const ratio = bare ? `${(l.latency.p99 / Math.max(1, bare.load.latency.p99)).toFixed(1)}×` : '–';
    lines.push(
      `| ${describe(r)} | ${ms(l.latency.p50)} | ${ms(l.latency.p99)} | ${ms(l.latency.max)} | ${l.missing} | ${l.early} | ${bareCells} | ${ratio} | ≤ ${target} | ${yes(ok)} |`,
    );
  }
  const notes = [...new Set(api.filter((x): x is Skipped => 'skipped' in x).map((r) => `${count(r.n)} sockets: ${r.skipped}`))];
  for (const note of notes) lines.push('', `¹ ${note}.`);
  if (plotted.length) {
    lines.push(
      '',
      'The distribution of each scenario: the share of events received by a given lateness (log scale), API in red, bare ' +
        'server in blue, p50 and p99 dashed.',
      ...plotted.flatMap((s) => ['', `![Expiry latency CDF, ${describe(s).replace(' | ', ' sockets, ')}: API and bare](${plotPath(s)})`]),
    );
  }
  lines.push(
    '',
    'The bare server ran the same sockets with the same deadlines in the same run; a bare p99 under 1 ms counts as 1 ms in the ratio. ' +
      `Missing: no event within ${GRACE_MS / 1000} s of the last deadline. Early: received before \`expiresAt\`. Every event was checked ` +
      'to be EXPIRED with the `expiresAt` its session was given.',
    '',
    '#### Where the time goes (API server)',
    '',
    '| sockets | expiries | server lag p50 / p99 / max | transit p50 / p99 / max | re-check reads sent / answered | answered in p50 / max (largest batch) | re-checks timed out | event-loop delay max | CPU server / DB | wrong | completed / closed 4401 |',
    '|---|---|---|---|---:|---|---:|---:|---|---:|---:|',
  );
  const dist = (d: Distribution) => `${ms(d.p50)} / ${ms(d.p99)} / ${ms(d.max)}`;
  for (const r of apiDone) {
    const rc = r.server.rechecks;
    const reads = rc.answered.map((x) => x.ms).sort((a, b) => a - b);
    const largest = Math.max(0, ...rc.answered.map((x) => x.sessions));
    const timedOut = Object.entries(r.server.logCounts).find(([msg]) => msg.startsWith('expiry re-check failed'))?.[1] ?? 0;
    lines.push(
      `| ${describe(r)} | ${dist(r.load.serverLag)} | ${dist(r.load.transit)} | ${rc.sent} / ${rc.answered.length} | ` +
        `${reads.length ? `${ms(reads[Math.floor((reads.length - 1) / 2)]!)} / ${ms(reads[reads.length - 1]!)} (${count(largest)})` : '–'} | ` +
        `${timedOut} | ${r.server.loopDelayMs ? ms(r.server.loopDelayMs.max) : '–'} | ${r.cpu.expiryServer.toFixed(0)} % / ${r.cpu.expiryDb.toFixed(0)} % | ` +
        `${r.load.wrong} | ${r.load.completed} / ${r.load.closed4401} |`,
    );
  }
  lines.push(
    '',
    'Server lag: `serverTime` in the event − `expiresAt` (timer, re-check read, bookkeeping). Transit: received − `serverTime` ' +
      '(executing the event, writing it, the load reading it). Re-check reads: the expiry re-check\'s database reads (`feed.catchUp`: the change log without change streams, the sessions due with them), timed in ' +
      'the server process; those not answered within 1 s time out and the sessions end on their last known expiry. CPU: % of one ' +
      'core from the first deadline to the last event, for the server process and the database process (for FerretDB on ' +
      'PostgreSQL: FerretDB and the PostgreSQL backends serving its database). Completed / closed: ' +
      'subscriptions that got `complete` after their event, and sockets the server closed with 4401 within 5 s of the last event.',
    '',
    '#### Memory: server VmRSS (after a GC), KiB',
    '',
    '| sockets | expiries | before the sockets | with N idle subscribed sockets | per socket | of which JS heap | bare server per socket | target | met | idle CPU server / DB |',
    '|---|---|---:|---:|---:|---:|---:|---:|---|---|',
  );
  for (const r of apiDone) {
    const bare = bareOf(r);
    lines.push(
      `| ${describe(r)} | ${count(r.rss.beforeKiB)} | ${count(r.rss.afterKiB)} | ${r.rss.perSocketKiB.toFixed(1)} | ${r.rss.heapPerSocketKiB.toFixed(1)} | ` +
        `${bare ? bare.rss.perSocketKiB.toFixed(1) : '–'} | ≤ ${TARGETS.kibPerSession} | ${yes(r.rss.perSocketKiB <= TARGETS.kibPerSession)} | ` +
        `${r.cpu.idleServer.toFixed(0)} % / ${r.cpu.idleDb.toFixed(0)} % |`,
    );
  }
  lines.push(
    '',
    'Before: the server process that will serve the sockets, started after the logins (made through another server process on ' +
      `the same database), before the first socket opens. With: every subscription in place and ${SETTLE_MS / 1000} s idle. ` +
      'Both read after a full GC. Idle CPU: % of one core over those idle seconds.',
    '',
    '#### Setup',
    '',
    '| server | sockets | expiries | log in | sockets acknowledged | all subscriptions in place | total | attempts | waited for a quiet DB |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|',
  );
  const sec = (v: number) => `${(v / 1000).toFixed(1)} s`;
  for (const r of done) {
    const s = r.setup;
    lines.push(
      `| ${r.target} | ${describe(r)} | ${sec(s.loginMs)} | ${sec(s.openMs)} | ${sec(s.subscribeMs)} | ${sec(s.totalMs)} | ${s.attempts} | ${sec(s.quietWaitMs)} |`,
    );
  }
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

const BEGIN = '<!-- bench:begin (written by npm run bench) -->';
const END = '<!-- bench:end -->';

async function write(section: string): Promise<void> {
  let text = await readFile(OUTPUT, 'utf8').catch(() => '');
  if (!text.includes(BEGIN)) text = `# Benchmarks\n\nRun with \`npm run bench\`.\n\n${BEGIN}\n${END}\n`;
  const head = text.slice(0, text.indexOf(BEGIN) + BEGIN.length);
  const tail = text.slice(text.indexOf(END));
  await writeFile(OUTPUT, `${head}\n${section}\n${tail}`);
}

async function main() {
  const started = Date.now();
  setTimeout(() => {
    console.error(`bench: aborted after ${WATCHDOG_MS / 60_000} min`);
    process.exit(2);
  }, WATCHDOG_MS).unref();

  const resolved = await resolveDatabase({ persistent: false, log });
  const db: Database = { uri: resolved.uri, embedded: resolved.kind !== 'external', pids: () => databasePids(resolved) };
  const pids = await db.pids();
  log(`database: ${resolved.description}${pids.length ? ` (pid ${pids.join(', ')})` : ''}`);
  const info = machine(resolved.description);
  const loadBefore = os.loadavg()[0]!.toFixed(1);
  const scenarios: Scenario[] = SIZES.flatMap((n) => [
    { n, sessions: n, mode: 'spread' as const },
    { n, sessions: n, mode: 'burst' as const },
    ...(n > 1000 && FANOUT_SESSIONS < n
      ? [
          { n, sessions: FANOUT_SESSIONS, mode: 'spread' as const },
          { n, sessions: FANOUT_SESSIONS, mode: 'burst' as const },
        ]
      : []),
  ]);
  const results: Array<RunResult | Skipped> = [];
  let probe: ProbeRow[] = [];
  try {
    for (const s of scenarios) for (const target of ['bare', 'api'] as const) results.push(await run(target, s, db));
    await waitForQuietDatabase(db);
    const uri = new URL(db.uri);
    uri.pathname = `/bench_probe_${Date.now().toString(36)}`;
    log('timing the database on the hot-path queries');
    probe = await probeDatabase(uri.toString());
  } finally {
    await resolved.stop();
  }
  const totalS = (Date.now() - started) / 1000;
  const codeAtEnd = gitState();
  // Children load src/ when they start: if the tree changed meanwhile, later runs measured other code.
  if (codeAtEnd !== info.code) info.code = `${info.code} at the start, ${codeAtEnd} at the end (src/ changed during the run)`;
  const plotted = await writePlots(info.date, results);
  await write(report(info, results, probe, totalS, `${loadBefore} at the start, ${os.loadavg()[0]!.toFixed(1)} at the end`, plotted));
  log(`done in ${Math.round(totalS)} s; figures written to ${path.relative(process.cwd(), OUTPUT)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
