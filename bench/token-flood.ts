/**
 * A flood of HTTP requests with a token that names no session, while subscribed sessions expire:
 * `npx tsx bench/token-flood.ts`. Such a token is never in the session cache, so each request reads
 * the database; MAX_CONCURRENT_TOKEN_READS bounds those reads per process. For each bound in
 * FLOOD_LIMITS (default "16,1000000": the default, and in effect none) it starts a server process
 * (bench/server-process.ts) on a fresh database, logs in FLOOD_SESSIONS (50) sessions of
 * FLOOD_LIFETIME_S (14) seconds and subscribes each over graphql-ws, then floods the API with
 * autocannon (FLOOD_CONNECTIONS connections, 300 by default, 0 for no flood; in its own process)
 * from 1 s after the logins until past the expiries, polling `/readyz` every 250 ms. It prints the
 * flood's rate, how `/readyz` answered, and how late each session's EXPIRED event arrived
 * (received − `expiresAt`).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createClient, type Client } from 'graphql-ws';
import { ObjectId } from 'mongodb';
import WebSocket from 'ws';
import { resolveDatabase } from '../scripts/database.js';
import { gql, LOGIN, REGISTER } from './graphql.js';
import { BENCH_SERVER_ENV, spawnChild } from './ipc.js';

const SESSIONS = Number(process.env.FLOOD_SESSIONS ?? 50);
const LIFETIME_S = Number(process.env.FLOOD_LIFETIME_S ?? 14);
const LIMITS = (process.env.FLOOD_LIMITS ?? '16,1000000').split(',');
const CONNECTIONS = Number(process.env.FLOOD_CONNECTIONS ?? 300);
const PASSWORD = 'benchmark-password';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Expired {
  sessionEvents?: { kind: string; expiresAt: string };
}

/** Logs in `SESSIONS` sessions of one user and subscribes each; `late` gets each EXPIRED's lateness in ms. */
async function subscribedSessions(url: string, username: string, late: number[]): Promise<Client[]> {
  await gql(url, REGISTER, { u: username, p: PASSWORD });
  const clients: Client[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const { login } = await gql<{ login: { token: string } }>(url, LOGIN, { u: username, p: PASSWORD });
    const client = createClient({ url: url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, connectionParams: { token: login.token }, retryAttempts: 0, lazy: false, onNonLazyError: () => {} });
    client.subscribe<Expired>({ query: 'subscription { sessionEvents(expiringSoonLead: 0) { kind expiresAt } }' }, {
      next: ({ data }) => {
        if (data?.sessionEvents?.kind === 'EXPIRED') late.push(Date.now() - Date.parse(data.sessionEvents.expiresAt));
      },
      error: () => {},
      complete: () => {},
    });
    clients.push(client);
  }
  return clients;
}

/** autocannon in a process of its own, so that the flood does not share this process's event loop with the subscribers. */
function flood(url: string, seconds: number): Promise<{ requests: { average: number }; latency: { p50: number; p99: number } }> {
  if (CONNECTIONS === 0) return sleep(seconds * 1000).then(() => ({ requests: { average: 0 }, latency: { p50: 0, p99: 0 } }));
  const token = `${new ObjectId().toHexString()}.${randomBytes(32).toString('base64url')}`;
  const cannon = spawn(
    process.execPath,
    [fileURLToPath(import.meta.resolve('autocannon/autocannon.js')), '-c', String(CONNECTIONS), '-d', String(seconds), '-m', 'POST', '-H', 'content-type=application/json',
      '-H', `authorization=Bearer ${token}`, '-b', '{"query":"{ session { id } }"}', '-j', url],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  let out = '';
  cannon.stdout.on('data', (chunk: Buffer) => (out += chunk));
  return new Promise((resolve, reject) => cannon.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`autocannon exited with ${code}`)))));
}

/** Polls `/readyz` until `until`: how often it answered 200, and its slowest answer. */
async function readiness(url: string, until: number) {
  const seen = { ready: 0, notReady: 0, slowestMs: 0 };
  while (Date.now() < until) {
    const start = Date.now();
    const status = await fetch(url.replace(/\/graphql$/, '/readyz'), { signal: AbortSignal.timeout(3000) }).then((r) => r.status, () => 0);
    seen.slowestMs = Math.max(seen.slowestMs, Date.now() - start);
    if (status === 200) seen.ready++;
    else seen.notReady++;
    await sleep(250);
  }
  return seen;
}

const db = await resolveDatabase({ persistent: false, log: () => {} });
try {
  for (const limit of LIMITS) {
    const uri = new URL(db.uri);
    uri.pathname = `/flood_${Date.now().toString(36)}`;
    const server = await spawnChild(fileURLToPath(new URL('./server-process.ts', import.meta.url)), {
      ...BENCH_SERVER_ENV,
      BENCH_MONGODB_URI: uri.toString(),
      MAX_CONCURRENT_TOKEN_READS: limit,
      SESSION_COOKIE_AGE: String(LIFETIME_S),
    });
    try {
      const url = new URL('/graphql', await server.call<string>('url')).toString();
      const late: number[] = [];
      const clients = await subscribedSessions(url, `flood${limit}`, late);
      await sleep(1000);
      const seconds = LIFETIME_S + 2;
      const [cannon, ready] = await Promise.all([flood(url, seconds), readiness(url, Date.now() + seconds * 1000)]);
      await sleep(3000);
      late.sort((a, b) => a - b);
      console.log(
        `MAX_CONCURRENT_TOKEN_READS=${limit}: flood ${Math.round(cannon.requests.average)} req/s, its latency p50 ${cannon.latency.p50} p99 ${cannon.latency.p99} ms; ` +
          `/readyz ${ready.ready} × 200, ${ready.notReady} × not (slowest ${ready.slowestMs} ms); ` +
          `EXPIRED ${late.length} of ${SESSIONS}, late p50 ${late[Math.floor(late.length / 2)] ?? '–'} / max ${late.at(-1) ?? '–'} ms`,
      );
      for (const client of clients) await client.dispose();
    } finally {
      await server.stop();
    }
  }
} finally {
  await db.stop();
}
