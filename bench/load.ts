/**
 * The load, in its own process: opens one websocket per subscription speaking graphql-transport-ws
 * with plain `ws`, with the tokens (seeded sessions: bench/seed.ts) and deadlines it is given, and
 * records when each socket's `next` arrives. Kept light: the receive handler only stamps
 * Date.now() and keeps the raw frame; frames are parsed after the last event is in. A large
 * scenario runs several of these (one process holds at most ~20 000 sockets here), each to its
 * own address of the balancer (bench/balancer.ts).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { serve } from './ipc.js';

export type Target = 'api' | 'bare';

export interface PrepareArgs {
  /** What each socket sends in connection_init: a session token (API), or its deadline (bare server). */
  tokens: string[];
  /** Each socket's deadline, ms since the epoch: the `expiresAt` its event must carry. */
  deadlines: number[];
}

export interface Distribution {
  p50: number;
  p99: number;
  max: number;
  min: number;
}

/** What one load process saw, raw, so that several processes' parts can be merged (`mergeParts`). */
export interface LoadPart {
  n: number;
  received: number;
  early: number;
  /** Events that were not EXPIRED, or whose expiresAt was not the instant the session was given. */
  wrong: number;
  /** `next` frames after a socket's first one. */
  duplicate: number;
  /** Subscriptions that received `complete` after their event. */
  completed: number;
  /** Sockets the server closed with 4401 within 5 s of the last event. */
  closed4401: number;
  /** Per received event: received (load clock) − expiresAt, serverTime − expiresAt, received − serverTime. */
  latencies: number[];
  serverLags: number[];
  transits: number[];
}

export interface LoadResult extends Omit<LoadPart, 'serverLags' | 'transits'> {
  missing: number;
  /** Event received − expiresAt, over every socket: Infinity where the percentile falls among the missing events. */
  latency: Distribution;
  /** serverTime stamped in the event − expiresAt: timer, re-check and bookkeeping on the server. */
  serverLag: Distribution;
  /** Event received − serverTime: GraphQL execution of the event, the write, and the load reading it. */
  transit: Distribution;
}

const SUBSCRIBE = JSON.stringify({
  id: '1',
  type: 'subscribe',
  payload: { query: 'subscription { sessionEvents(expiringSoonLead: 0) { kind sessionId expiresAt serverTime } }' },
});
const NEXT = Buffer.from('"type":"next"');
/** A socket not acknowledged by then fails the set-up (a server waiting on a swamped database would keep it forever). */
const ACK_TIMEOUT_MS = 30_000;
const COMPLETE = Buffer.from('"type":"complete"');

let wsUrl = '';
let tokens: string[] = [];
let deadlines: Float64Array = new Float64Array(0);
let sockets: WebSocket[] = [];
let receivedAt: Float64Array = new Float64Array(0);
let frames: Buffer[] = [];
let closeCodes: Int32Array = new Int32Array(0);
let completed = 0;
let duplicate = 0;
let got = 0;
let opened = 0;
let refused = 0;
let allIn: (() => void) | null = null;

/** Runs fn(0..n-1) with at most `concurrency` calls in flight. */
async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
}

function prepare(args: PrepareArgs): void {
  const n = args.tokens.length;
  tokens = args.tokens;
  deadlines = Float64Array.from(args.deadlines);
  receivedAt = new Float64Array(n);
  closeCodes = new Int32Array(n);
  frames = new Array(n);
  sockets = new Array(n);
  got = completed = duplicate = opened = refused = 0;
}

/** Resolves once the socket has its connection_ack and the subscribe message has been sent. */
function openSocket(i: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, 'graphql-transport-ws', { perMessageDeflate: false });
    sockets[i] = ws;
    closeCodes[i] = 0;
    let acked = false;
    const timer = setTimeout(() => {
      reject(new Error(`socket ${i}: no connection_ack within ${ACK_TIMEOUT_MS / 1000} s`));
      ws.terminate();
    }, ACK_TIMEOUT_MS);
    const fail = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { token: tokens[i] } })));
    ws.on('message', (data: Buffer) => {
      if (acked && data.includes(NEXT)) {
        if (receivedAt[i] !== 0) return void duplicate++;
        receivedAt[i] = Date.now();
        frames[i] = data;
        if (++got === receivedAt.length) allIn?.();
      } else if (acked) {
        if (data.includes(COMPLETE)) completed++;
      } else {
        if (!data.includes('connection_ack')) return fail(new Error(`socket ${i}: expected connection_ack, got ${String(data)}`));
        acked = true;
        clearTimeout(timer);
        ws.send(SUBSCRIBE);
        resolve();
      }
    });
    ws.on('close', (code) => {
      closeCodes[i] = code;
      if (!acked) fail(new Error(`socket ${i} closed with ${code} before connection_ack`));
    });
    ws.on('error', (err) => {
      if (!acked) fail(err);
    });
  });
}

/**
 * Why a socket could not be set up that is worth another try: an upgrade refused with 503 (HAProxy
 * with every server marked down for a moment, their health checks having timed out on a busy
 * machine), or the server's close with 4408 (its event loop did not get to our connection_init
 * within 3 s).
 */
const TRANSIENT = /^Unexpected server response: 503$|closed with 4408 before connection_ack$/;

/** Opens socket i, trying a transient failure again (at most 20 times, half a second apart). */
async function openWithRetries(i: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await openSocket(i);
    } catch (err) {
      if (!TRANSIENT.test((err as Error).message) || attempt === 20) throw err;
      refused++;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** Opens this process's next sockets against `url`, until `to` of them are open; tells how many upgrades were refused so far. */
async function open({ url, concurrency, to = tokens.length }: { url: string; concurrency: number; to?: number }) {
  wsUrl = url.replace(/^http/, 'ws');
  const t0 = Date.now();
  const from = opened;
  opened = Math.max(opened, to);
  await pool(opened - from, concurrency, (i) => openWithRetries(from + i));
  return { openMs: Date.now() - t0, refused };
}

/** Waits for every event (or until `graceMs` past the last deadline), then (at most 5 s) for the closes, then reports. */
async function collect({ graceMs }: { graceMs: number }): Promise<LoadPart> {
  const n = receivedAt.length;
  const last = deadlines.reduce((a, b) => Math.max(a, b), 0);
  if (got < n) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, last + graceMs - Date.now()));
      allIn = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  allIn = null;
  const closeBy = Date.now() + 5000;
  while (closeCodes.some((c) => c === 0) && Date.now() < closeBy) await new Promise((r) => setTimeout(r, 50));

  const part: LoadPart = { n, received: got, early: 0, wrong: 0, duplicate, completed, closed4401: 0, latencies: [], serverLags: [], transits: [] };
  for (let i = 0; i < n; i++) {
    if (closeCodes[i] === 4401) part.closed4401++;
    if (receivedAt[i] === 0) continue;
    const msg = JSON.parse(frames[i]!.toString()) as {
      payload: { data?: { sessionEvents: { kind: string; expiresAt: string; serverTime: string } } };
    };
    const event = msg.payload.data?.sessionEvents;
    const expiresAt = event ? Date.parse(event.expiresAt) : NaN;
    if (!event || event.kind !== 'EXPIRED' || expiresAt !== deadlines[i]) part.wrong++;
    const serverTime = event ? Date.parse(event.serverTime) : NaN;
    const late = receivedAt[i]! - deadlines[i]!;
    if (late < 0) part.early++;
    part.latencies.push(late);
    part.serverLags.push(serverTime - deadlines[i]!);
    part.transits.push(receivedAt[i]! - serverTime);
  }
  for (const ws of sockets) ws?.terminate();
  return part;
}

/** Percentiles of `n` values of which these are known: the others (missing events) count as later than any, Infinity. */
function distribution(values: number[], n = values.length): Distribution {
  if (n === 0) return { p50: NaN, p99: NaN, max: NaN, min: NaN };
  const sorted = Float64Array.from(values).sort();
  const rank = (p: number) => sorted[Math.max(0, Math.ceil(p * n) - 1)] ?? Infinity;
  return { p50: rank(0.5), p99: rank(0.99), max: rank(1), min: sorted[0] ?? Infinity };
}

/** The load processes' parts of one run as one result. */
export function mergeParts(parts: LoadPart[]): LoadResult {
  const sum = (key: 'n' | 'received' | 'early' | 'wrong' | 'duplicate' | 'completed' | 'closed4401') => parts.reduce((t, p) => t + p[key], 0);
  const all = (key: 'latencies' | 'serverLags' | 'transits') => parts.flatMap((p) => p[key]);
  const latencies = all('latencies');
  return {
    n: sum('n'),
    received: sum('received'),
    missing: sum('n') - sum('received'),
    early: sum('early'),
    wrong: sum('wrong'),
    duplicate: sum('duplicate'),
    completed: sum('completed'),
    closed4401: sum('closed4401'),
    latencies,
    latency: distribution(latencies, sum('n')),
    serverLag: distribution(all('serverLags')),
    transit: distribution(all('transits')),
  };
}

// Only when run (forked) as the load process: the orchestrator imports mergeParts from here too.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) serve({ prepare, open, collect });
