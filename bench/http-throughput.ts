/**
 * `npm run bench:http`: authenticated query throughput (issue 11 item 4). `{ session { expiryAge } }`
 * over HTTP with a Bearer token, the API (NODE_ENV=production, bench/server-process.ts) on the
 * embedded database with HTTP_SESSIONS (10 000) sessions stored, against a bare Apollo Server 5 on
 * Express 5 answering the same shape with a constant (bench/bare-apollo.ts), same run, same load
 * generator: autocannon, 32 connections, a warm-up, then HTTP_DURATION_S (10) seconds each. The
 * requests cycle over 100 tokens of 100 sessions. Writes its section of BENCHMARKS.md (between
 * its markers; HTTP_OUTPUT=file writes elsewhere). HTTP_CPU_PROF=dir adds a profiled API run
 * (a V8 CPU profile of the server process; `npx tsx bench/profile-summary.ts dir/*.cpuprofile`).
 *
 * 100 sessions are logged in through the API; the rest of the HTTP_SESSIONS are copies of one of
 * them (new _id and secret) inserted straight into the sessions collection, which takes seconds
 * where 10 000 logins take minutes. Only the token lookup reads them.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { MongoClient, ObjectId } from 'mongodb';
import { resolveDatabase } from '../scripts/database.js';
import { REGISTER } from './graphql.js';
import { BENCH_SERVER_ENV, spawnChild, type Child } from './ipc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const SESSIONS = Number(env.HTTP_SESSIONS ?? 10_000);
const TOKENS = 100;
const CONNECTIONS = 32;
const DURATION_S = Number(env.HTTP_DURATION_S ?? 10);
const WARMUP_S = 3;
const QUERY = JSON.stringify({ query: '{ session { expiryAge } }' });
const OUTPUT = env.HTTP_OUTPUT ?? path.join(here, '..', 'BENCHMARKS.md');
const [BEGIN, END] = ['<!-- http-throughput:start -->', '<!-- http-throughput:end -->'];

/** CPU seconds (user + system) a process has used, from /proc. */
async function cpuSeconds(pid: number | undefined): Promise<number> {
  if (!pid) return NaN;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function post(url: string, token: string): Promise<{ session?: { expiryAge: number } }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: QUERY });
  return ((await res.json()) as { data?: { session?: { expiryAge: number } } }).data ?? {};
}

interface Measured {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** % of one core over the measurement: the server process, the database process, the load generator. */
  cpu: { server: number; db: number; load: number };
}

/** Warm-up, then one measurement: 32 connections, each request with the next of the tokens. */
async function measure(url: string, tokens: string[], pids: { server: number; db?: number }): Promise<Measured> {
  let next = 0;
  const run = (duration: number) =>
    autocannon({
      url,
      connections: CONNECTIONS,
      duration,
      requests: [
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: QUERY,
          setupRequest: (req) => ({ ...req, headers: { ...req.headers, authorization: `Bearer ${tokens[next++ % tokens.length]}` } }),
        },
      ],
    });
  await run(WARMUP_S);
  const before = { server: await cpuSeconds(pids.server), db: await cpuSeconds(pids.db), load: process.cpuUsage(), at: Date.now() };
  const r = await run(DURATION_S);
  const seconds = (Date.now() - before.at) / 1000;
  const pct = (s: number) => Math.round((100 * s) / seconds);
  const load = process.cpuUsage(before.load);
  return {
    rps: r.requests.total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts + r.non2xx,
    cpu: {
      server: pct((await cpuSeconds(pids.server)) - before.server),
      db: pct((await cpuSeconds(pids.db)) - before.db),
      load: pct((load.user + load.system) / 1e6),
    },
  };
}

/** Registers 10 users, logs 100 sessions in through the API, and fills the collection up to SESSIONS with copies. */
async function prepareSessions(url: string, uri: string): Promise<string[]> {
  const gql = async (query: string, variables: object) => {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) });
    const body = (await res.json()) as { data?: any; errors?: unknown };
    if (!body.data) throw new Error(`GraphQL error: ${JSON.stringify(body.errors)}`);
    return body.data;
  };
  const user = (u: number) => `http_bench_${u}`;
  const p = 'benchmark-password';
  for (let u = 0; u < 10; u++) await gql(REGISTER, { u: user(u), p });
  const at = new Date(Date.now() + 3 * 3600_000).toISOString();
  const tokens: string[] = [];
  for (let i = 0; i < TOKENS; i++) {
    const data = await gql('mutation($u: String!, $p: String!, $at: DateTimeISO!) { login(username: $u, password: $p, expiry: { at: $at }) { token } }', { u: user(i % 10), p, at });
    tokens.push(data.login.token);
  }
  const client = await MongoClient.connect(uri);
  try {
    const sessions = client.db().collection('sessions');
    const model = await sessions.findOne({});
    for (let left = SESSIONS - (await sessions.countDocuments()); left > 0; left -= 1000) {
      const batch = Array.from({ length: Math.min(1000, left) }, () => ({ ...model, _id: new ObjectId(), secretHash: randomBytes(32).toString('hex') }));
      await sessions.insertMany(batch, { ordered: false });
    }
    const stored = await sessions.countDocuments();
    if (stored < SESSIONS) throw new Error(`only ${stored} sessions stored`);
  } finally {
    await client.close();
  }
  return tokens;
}

function machine(): string {
  const cpu = /^model name\s*:\s*(.*)$/m.exec(execFileSync('cat', ['/proc/cpuinfo'], { encoding: 'utf8' }))?.[1] ?? os.cpus()[0]?.model;
  const commit = (() => {
    try {
      return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  })();
  return `${os.availableParallelism()} CPUs (nproc), ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Node ${process.version}, commit ${commit}, load average ${os.loadavg()[0]!.toFixed(1)} at the start`;
}

const started = new Date();
const machineLine = machine();
const db = await resolveDatabase({ persistent: false, log: (line) => console.log(`[db] ${line}`) });
const children: Child[] = [];
const spawn = async (file: string, extra: Record<string, string> = {}) => {
  const child = await spawnChild(path.join(here, file), { ...BENCH_SERVER_ENV, SESSION_SAVE_EVERY_REQUEST: 'false', BENCH_MONGODB_URI: db.uri, ...extra });
  children.push(child);
  return { child, url: await child.call<string>('url') };
};
try {
  console.log(`Database: ${db.description}`);
  const bare = await spawn('bare-apollo.ts');
  const api = await spawn('server-process.ts', env.HTTP_CPU_PROF ? { BENCH_CPU_PROF: path.resolve(env.HTTP_CPU_PROF) } : {});
  const t0 = Date.now();
  const tokens = await prepareSessions(api.url, db.uri);
  const setupS = (Date.now() - t0) / 1000;
  console.log(`${SESSIONS} sessions stored in ${setupS.toFixed(1)} s`);
  for (const token of tokens) {
    const answer = await post(api.url, token);
    if (typeof answer.session?.expiryAge !== 'number') throw new Error(`the API did not answer the query for a token: ${JSON.stringify(answer)}`);
  }
  if ((await post(bare.url, tokens[0]!)).session?.expiryAge !== 1209600) throw new Error('the bare server did not answer the query');

  const dbPid = db.supervisor?.pid();
  const bareM = await measure(bare.url, tokens, { server: bare.child.pid });
  console.log('bare', bareM);
  const apiM = await measure(api.url, tokens, { server: api.child.pid, db: dbPid });
  console.log('api', apiM);
  if (env.HTTP_CPU_PROF) {
    await api.child.call('resetStats');
    const profiled = await measure(api.url, tokens, { server: api.child.pid, db: dbPid });
    await api.child.call('stats');
    console.log(`profiled API run (profiler overhead included): ${profiled.rps.toFixed(0)} req/s; profile in ${env.HTTP_CPU_PROF}`);
  }

  const row = (name: string, m: Measured) =>
    `| ${name} | ${Math.round(m.rps).toLocaleString('en')} | ${m.p50} | ${m.p99} | ${(m.rps / bareM.rps).toFixed(2)} | ${m.errors} | ${m.cpu.server} % / ${Number.isNaN(m.cpu.db) ? '–' : `${m.cpu.db} %`} / ${m.cpu.load} % |`;
  const section = [
    BEGIN,
    `## Authenticated query throughput over HTTP (issue 11 item 4)`,
    '',
    `\`npm run bench:http\` (\`bench/http-throughput.ts\`): \`{ session { expiryAge } }\` by POST with \`Authorization: Bearer\`, ` +
      `autocannon ${CONNECTIONS} connections, ${WARMUP_S} s warm-up then ${DURATION_S} s per server, the requests cycling over ${TOKENS} tokens of ${TOKENS} sessions. ` +
      `The API: \`NODE_ENV=production\`, \`SESSION_SAVE_EVERY_REQUEST=false\`, \`LOG_LEVEL=warn\`, ${SESSIONS.toLocaleString('en')} sessions in the database ` +
      `(${TOKENS} logged in, the rest copies inserted directly; set up in ${setupS.toFixed(0)} s). Bare: Apollo Server 5 on Express 5 answering the same shape with a constant.`,
    '',
    `Run of ${started.toISOString()}. Machine: ${machineLine}. Database: ${db.description}.`,
    '',
    '| server | req/s | latency p50 ms | p99 ms | ÷ bare | errors | CPU server / DB / load generator |',
    '|---|---:|---:|---:|---:|---:|---|',
    row('bare Apollo (constant)', bareM),
    row('API', apiM),
    '',
    `Target: API ≥ 0.6 × bare: **${apiM.rps / bareM.rps >= 0.6 ? 'met' : 'not met'}**. CPU: % of one core during the measurement (the database: its own process only). ` +
      'Server, database and load generator share the machine.',
    END,
  ].join('\n');
  const old = await readFile(OUTPUT, 'utf8').catch(() => '');
  const [b, e] = [old.indexOf(BEGIN), old.indexOf(END)];
  await writeFile(OUTPUT, b >= 0 && e > b ? old.slice(0, b) + section + old.slice(e + END.length) : `${old.trimEnd()}\n\n${section}\n`);
  console.log(`\n${section}\n\nwritten to ${OUTPUT}`);
} finally {
  for (const child of children) await child.stop();
  await db.stop();
}
