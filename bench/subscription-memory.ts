/**
 * Memory per idle subscribed websocket: `npx tsx bench/subscription-memory.ts`.
 *
 * Starts the embedded database (scripts/database.ts), logs a few sessions in through one server
 * process, then serves N sockets from a fresh server process (alone in its process, run with
 * --expose-gc) and subscribes each to `sessionEvents` over graphql-transport-ws with plain `ws`
 * (many sockets share a session: token lookups are slow on FerretDB). It reads the server's heap
 * and VmRSS after a full GC with 10 % of the sockets subscribed and again with all of them after
 * 2 s idle, and divides the growth by the other 90 %. With SUBMEM_SNAPSHOT=1 it also takes a heap
 * snapshot at both points and prints which kinds of objects each further socket adds.
 *
 * With SUBMEM_PING_MS, it then measures the server's CPU over PING_WINDOW_MS with the sockets idle,
 * and again with every client sending a graphql-ws `ping` every SUBMEM_PING_MS (spread evenly, as
 * the README's client does with `keepAlive`), counting the pongs.
 *
 * Environment: SUBMEM_SOCKETS (default 2000), SUBMEM_SESSIONS (default 20), SUBMEM_SNAPSHOT
 * (SUBMEM_KEEP=1 keeps the snapshot files, in the temporary directory), SUBMEM_PING_MS,
 * SUBMEM_DEFLATE=1 (the client offers permessage-deflate, as browsers do), and what
 * scripts/database.ts reads.
 */
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import WebSocket from 'ws';
import { gql, LOGIN, REGISTER } from './graphql.js';
import { BENCH_SERVER_ENV, countSubscriptions, rssKiB, serve, spawnChild, type Child } from './ipc.js';

const here = fileURLToPath(import.meta.url);
const env = process.env;
const SOCKETS = Number(env.SUBMEM_SOCKETS ?? 2000);
const SESSIONS = Number(env.SUBMEM_SESSIONS ?? 20);
const SNAPSHOT = Boolean(env.SUBMEM_SNAPSHOT);
const DEFLATE = Boolean(env.SUBMEM_DEFLATE);
const SETTLE_MS = 2000;
const PING_MS = Number(env.SUBMEM_PING_MS ?? 0);
const PING_WINDOW_MS = 30_000;
/** graphql-ws pongs the clients received. */
let pongs = 0;
const SUBSCRIBE = JSON.stringify({
  id: '1',
  type: 'subscribe',
  payload: { query: 'subscription { sessionEvents(expiringSoonLead: 0) { kind sessionId expiresAt serverTime } }' },
});
const PASSWORD = 'benchmark-password';

if (env.SUBMEM_CHILD) {
  // The server process.
  const { pino } = await import('pino');
  const { loadSettings } = await import('../src/config.js');
  const { startServer } = await import('../src/server/app.js');
  const settings = loadSettings(env);
  const server = await startServer({ settings, mongoUri: env.SUBMEM_MONGODB_URI!, logger: pino({ level: settings.logLevel }) });
  const subscribed = countSubscriptions(server.hub);
  serve({
    url: () => server.url,
    subscribed,
    gc: () => {
      globalThis.gc!();
      globalThis.gc!();
      return process.memoryUsage();
    },
    snapshot: (file: string) => (globalThis.gc!(), v8.writeHeapSnapshot(file)),
    cpuMicros: () => {
      const { user, system } = process.cpuUsage();
      return user + system;
    },
    exit: () => server.stop(),
  });
} else {
  await main();
}

/** Opens a socket, authenticates it and subscribes; resolves once the server has acknowledged the connection. */
function openSocket(wsUrl: string, token: string, sockets: WebSocket[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, 'graphql-transport-ws', { perMessageDeflate: DEFLATE });
    sockets.push(ws);
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { token } })));
    ws.on('message', (data: Buffer) => {
      const msg = JSON.parse(String(data)) as { type: string };
      if (msg.type === 'connection_ack') {
        ws.send(SUBSCRIBE);
        resolve();
      } else if (msg.type === 'ping') ws.send('{"type":"pong"}');
      else if (msg.type === 'pong') pongs++;
      else reject(new Error(`unexpected ${String(data)}`));
    });
    ws.on('close', (code) => reject(new Error(`socket closed with ${code}`)));
    ws.on('error', reject);
  });
}

/** The server's CPU over PING_WINDOW_MS, idle and then with every socket pinging every PING_MS. */
async function measurePings(server: Child, sockets: WebSocket[]) {
  const cpuShare = async () => {
    const [cpu0, t0] = [await server.call<number>('cpuMicros'), performance.now()];
    await new Promise((r) => setTimeout(r, PING_WINDOW_MS));
    return ((await server.call<number>('cpuMicros')) - cpu0) / ((performance.now() - t0) * 1000);
  };
  const idle = await cpuShare();
  const timers = sockets.map((ws, i) =>
    setTimeout(() => {
      ws.send('{"type":"ping"}');
      timers[i] = setInterval(() => ws.send('{"type":"ping"}'), PING_MS);
    }, (i * PING_MS) / sockets.length),
  );
  await new Promise((r) => setTimeout(r, PING_MS)); // every socket pinging
  const pongsBefore = pongs;
  const pinging = await cpuShare();
  const pongsPerSecond = (pongs - pongsBefore) / (PING_WINDOW_MS / 1000);
  for (const t of timers) clearInterval(t);
  const pct = (share: number) => `${(share * 100).toFixed(1)} %`;
  console.log(
    `server CPU over ${PING_WINDOW_MS / 1000} s: idle ${pct(idle)} of a core; with a ping per socket every ${PING_MS / 1000} s ` +
      `(${pongsPerSecond.toFixed(0)} pongs/s received) ${pct(pinging)}: ${(((pinging - idle) * 1e6) / pongsPerSecond).toFixed(1)} µs per ping`,
  );
}

async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, async () => {
    while (next < n) await fn(next++);
  }));
}

async function until(what: string, ok: () => Promise<boolean>, timeoutMs = 300_000) {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

type Usage = NodeJS.MemoryUsage & { rss: number };

/** self size and count per object kind in a heap snapshot. */
async function summarise(file: string): Promise<Map<string, { size: number; count: number }>> {
  const snap = JSON.parse(await readFile(file, 'utf8'));
  const { node_fields: fields, node_types: [types] } = snap.snapshot.meta;
  const width = fields.length;
  const [iType, iName, iSize] = ['type', 'name', 'self_size'].map((f: string) => fields.indexOf(f));
  const nodes: number[] = snap.nodes;
  const strings: string[] = snap.strings;
  const out = new Map<string, { size: number; count: number }>();
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + iType]!] as string;
    let name = strings[nodes[i + iName]!]!;
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') name = '';
    else if (type === 'number' || type === 'code') name = '';
    else if (name.length > 60) name = `${name.slice(0, 57)}...`;
    const key = `${type} ${name}`;
    const row = out.get(key) ?? { size: 0, count: 0 };
    row.size += nodes[i + iSize]!;
    row.count++;
    out.set(key, row);
  }
  return out;
}

async function main() {
  const { resolveDatabase } = await import('../scripts/database.js');
  const db = await resolveDatabase({ persistent: false, log: (l) => console.log(l) });
  const uri = new URL(db.uri);
  uri.pathname = `/submem_${Date.now().toString(36)}`;
  const serverEnv = {
    SUBMEM_CHILD: '1',
    SUBMEM_MONGODB_URI: uri.toString(),
    ...BENCH_SERVER_ENV,
  };
  const children: Child[] = [];
  const sockets: WebSocket[] = [];
  const snapshots: string[] = [];
  try {
    // Log in through one server process…
    const login = await spawnChild(here, serverEnv, ['--expose-gc']);
    children.push(login);
    const loginUrl = await login.call<string>('url');
    const users = Math.min(SESSIONS, 5);
    const tag = Math.random().toString(36).slice(2, 8);
    for (let u = 0; u < users; u++) {
      await gql(loginUrl, REGISTER, { u: `m_${tag}_${u}`, p: PASSWORD });
    }
    const tokens: string[] = [];
    for (let i = 0; i < SESSIONS; i++) {
      const data = await gql<{ login: { token: string } }>(
        loginUrl,
        LOGIN,
        { u: `m_${tag}_${i % users}`, p: PASSWORD },
      );
      tokens.push(data.login.token);
    }
    await login.stop();
    children.pop();

    // …and serve the sockets from a fresh one.
    const server = await spawnChild(here, serverEnv, ['--expose-gc']);
    children.push(server);
    const wsUrl = (await server.call<string>('url')).replace(/^http/, 'ws');
    const measure = async () => {
      const usage = await server.call<Usage>('gc');
      return { ...usage, vmRss: (await rssKiB(server.pid)) * 1024 };
    };
    const open = async (from: number, to: number) => {
      await pool(to - from, 50, (i) => openSocket(wsUrl, tokens[(from + i) % tokens.length]!, sockets));
      await until('the subscriptions', async () => (await server.call<number>('subscribed')) >= to);
    };
    const warm = Math.ceil(SOCKETS / 10);
    const t0 = Date.now();
    await open(0, warm);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const before = await measure();
    if (SNAPSHOT) snapshots.push(await server.call<string>('snapshot', path.join(os.tmpdir(), `submem-a-${process.pid}.heapsnapshot`)));
    await open(warm, SOCKETS);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const after = await measure();
    if (SNAPSHOT) snapshots.push(await server.call<string>('snapshot', path.join(os.tmpdir(), `submem-b-${process.pid}.heapsnapshot`)));
    const n = SOCKETS - warm;
    const per = (k: keyof typeof after) => ((after[k] - before[k]) / n / 1024).toFixed(2);
    console.log(`${SOCKETS} sockets over ${SESSIONS} sessions (client deflate ${DEFLATE ? 'offered' : 'off'}), set up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    console.log(`per socket, KiB: VmRSS ${per('vmRss')}, heapUsed ${per('heapUsed')}, external ${per('external')}, arrayBuffers ${per('arrayBuffers')}`);
    console.log(`server with ${SOCKETS} sockets: VmRSS ${(after.vmRss / 2 ** 20).toFixed(1)} MiB, heapUsed ${(after.heapUsed / 2 ** 20).toFixed(1)} MiB`);

    if (PING_MS > 0) await measurePings(server, sockets);

    if (SNAPSHOT) {
      const [a, b] = await Promise.all(snapshots.map(summarise));
      const rows = [...b!].map(([key, r]) => {
        const old = a!.get(key) ?? { size: 0, count: 0 };
        return { key, bytes: (r.size - old.size) / n, count: (r.count - old.count) / n };
      });
      rows.sort((x, y) => y.bytes - x.bytes);
      const total = rows.reduce((s, r) => s + r.bytes, 0);
      console.log(`\nheap snapshot: ${total.toFixed(0)} bytes per further socket; largest kinds (bytes / objects per socket):`);
      for (const r of rows.slice(0, 40)) console.log(`${r.bytes.toFixed(0).padStart(7)} ${r.count.toFixed(2).padStart(6)}  ${r.key}`);
    }
  } finally {
    for (const ws of sockets) ws.terminate();
    for (const c of children) await c.stop();
    await db.stop();
    if (!env.SUBMEM_KEEP) for (const f of snapshots) await rm(f, { force: true });
    else console.log(`snapshots kept: ${snapshots.join(' ')}`);
  }
}
