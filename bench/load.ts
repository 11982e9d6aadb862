/**
 * The load, in its own process: logs sessions in (API target) with fixed expiry instants, opens
 * one websocket per session speaking graphql-transport-ws with plain `ws`, and records when each
 * socket's `next` arrives. Kept light: the receive handler only stamps Date.now() and keeps the
 * raw frame; frames are parsed after the last event is in.
 */
import WebSocket from 'ws';
import { serve } from './ipc.js';

export type Target = 'api' | 'bare';

export interface PrepareArgs {
  target: Target;
  url: string;
  /** Sockets, one subscription each. */
  n: number;
  /** Sessions behind them (≤ n): socket i subscribes with session i % sessions, like several tabs of one login. */
  sessions: number;
  /** Deadline of the first session (ms since the epoch); session j expires at first + floor(j * spreadMs / sessions). */
  first: number;
  spreadMs: number;
  users: number;
  concurrency: number;
}

export interface Distribution {
  p50: number;
  p99: number;
  max: number;
  min: number;
}

export interface LoadResult {
  n: number;
  received: number;
  missing: number;
  early: number;
  /** Events that were not EXPIRED, or whose expiresAt was not the instant the session was given. */
  wrong: number;
  /** Subscriptions that received `complete` after their event. */
  completed: number;
  /** Sockets the server closed with 4401 within 5 s of the last event. */
  closed4401: number;
  /** Event received (load clock) − expiresAt. */
  latency: Distribution;
  /** serverTime stamped in the event − expiresAt: timer, re-check and bookkeeping on the server. */
  serverLag: Distribution;
  /** Event received − serverTime: GraphQL execution of the event, the write, and the load reading it. */
  transit: Distribution;
  /** Each received event's latency (as `latency`), in socket order: for the plots. */
  latencies: number[];
}

const SUBSCRIBE = JSON.stringify({
  id: '1',
  type: 'subscribe',
  payload: { query: 'subscription { sessionEvents(expiringSoonLead: 0) { kind sessionId expiresAt serverTime } }' },
});
const NEXT = Buffer.from('"type":"next"');
const COMPLETE = Buffer.from('"type":"complete"');
const PASSWORD = 'benchmark-password';

let wsUrl = '';
let tokens: string[] = [];
let deadlines: Float64Array = new Float64Array(0);
let sockets: WebSocket[] = [];
let receivedAt: Float64Array = new Float64Array(0);
let frames: Buffer[] = [];
let closeCodes: Int32Array = new Int32Array(0);
let completed = 0;
let got = 0;
let allIn: (() => void) | null = null;

/** Runs fn(0..n-1) with at most `concurrency` calls in flight. */
async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
}

async function gql<T>(url: string, query: string, variables: Record<string, unknown>): Promise<T> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: T; errors?: Array<{ message: string }> };
  if (body.errors?.length || !body.data) throw new Error(`GraphQL error: ${JSON.stringify(body.errors)}`);
  return body.data;
}

async function prepare(args: PrepareArgs) {
  const { target, url, n, sessions, first, spreadMs, users, concurrency } = args;
  deadlines = new Float64Array(n);
  for (let i = 0; i < n; i++) deadlines[i] = first + Math.floor(((i % sessions) * spreadMs) / sessions);
  receivedAt = new Float64Array(n);
  closeCodes = new Int32Array(n);
  frames = new Array(n);
  sockets = new Array(n);
  got = 0;
  completed = 0;
  if (target === 'bare') {
    tokens = Array.from(deadlines, String);
    return { registerMs: 0, loginMs: 0 };
  }
  const tag = Math.random().toString(36).slice(2, 8);
  const username = (u: number) => `bench_${tag}_${u}`;
  const t0 = Date.now();
  await pool(users, concurrency, async (u) => {
    await gql(url, 'mutation($u: String!, $p: String!) { register(username: $u, password: $p) { id } }', {
      u: username(u),
      p: PASSWORD,
    });
  });
  const t1 = Date.now();
  const sessionTokens = new Array<string>(sessions);
  await pool(sessions, concurrency, async (i) => {
    if (deadlines[i]! < Date.now() + 2000) throw new Error('setup too slow: a login came within 2 s of its deadline');
    const at = new Date(deadlines[i]!).toISOString();
    const data = await gql<{ login: { token: string; session: { expiryDate: string } } }>(
      url,
      'mutation($u: String!, $p: String!, $at: DateTimeISO!) { login(username: $u, password: $p, expiry: { at: $at }) { token session { expiryDate } } }',
      { u: username(i % users), p: PASSWORD, at },
    );
    if (data.login.session.expiryDate !== at) throw new Error(`asked for expiry ${at}, got ${data.login.session.expiryDate}`);
    sessionTokens[i] = data.login.token;
  });
  tokens = Array.from({ length: n }, (_, i) => sessionTokens[i % sessions]!);
  return { registerMs: t1 - t0, loginMs: Date.now() - t1 };
}

/** Resolves once the socket has its connection_ack and the subscribe message has been sent. */
function openSocket(i: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, 'graphql-transport-ws', { perMessageDeflate: false });
    sockets[i] = ws;
    let acked = false;
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { token: tokens[i] } })));
    ws.on('message', (data: Buffer) => {
      if (receivedAt[i] === 0 && acked && data.includes(NEXT)) {
        receivedAt[i] = Date.now();
        frames[i] = data;
        if (++got === receivedAt.length) allIn?.();
      } else if (acked) {
        if (data.includes(COMPLETE)) completed++;
      } else {
        if (!data.includes('connection_ack')) return reject(new Error(`socket ${i}: expected connection_ack, got ${String(data)}`));
        acked = true;
        ws.send(SUBSCRIBE);
        resolve();
      }
    });
    ws.on('close', (code) => {
      closeCodes[i] = code;
      if (!acked) reject(new Error(`socket ${i} closed with ${code} before connection_ack`));
    });
    ws.on('error', (err) => {
      if (!acked) reject(err);
    });
  });
}

/** Opens sockets [from, to) against `url` (the server that logged the sessions in, or another one on the same database). */
async function open({ url, concurrency, from = 0, to = tokens.length }: { url: string; concurrency: number; from?: number; to?: number }) {
  wsUrl = url.replace(/^http/, 'ws');
  const t0 = Date.now();
  await pool(to - from, concurrency, (i) => openSocket(from + i));
  return { openMs: Date.now() - t0 };
}

function distribution(values: number[]): Distribution {
  if (values.length === 0) return { p50: NaN, p99: NaN, max: NaN, min: NaN };
  const sorted = Float64Array.from(values).sort();
  const rank = (p: number) => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
  return { p50: rank(0.5), p99: rank(0.99), max: sorted[sorted.length - 1]!, min: sorted[0]! };
}

/** Waits for every event (or until `graceMs` past the last deadline), then (at most 5 s) for the closes, then summarises. */
async function collect({ graceMs }: { graceMs: number }): Promise<LoadResult> {
  const n = receivedAt.length;
  const last = deadlines[n - 1]!;
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

  const latency: number[] = [];
  const serverLag: number[] = [];
  const transit: number[] = [];
  let early = 0;
  let wrong = 0;
  for (let i = 0; i < n; i++) {
    if (receivedAt[i] === 0) continue;
    const msg = JSON.parse(frames[i]!.toString()) as {
      payload: { data?: { sessionEvents: { kind: string; expiresAt: string; serverTime: string } } };
    };
    const event = msg.payload.data?.sessionEvents;
    const expiresAt = event ? Date.parse(event.expiresAt) : NaN;
    if (!event || event.kind !== 'EXPIRED' || expiresAt !== deadlines[i]) wrong++;
    const serverTime = event ? Date.parse(event.serverTime) : NaN;
    const late = receivedAt[i]! - deadlines[i]!;
    if (late < 0) early++;
    latency.push(late);
    serverLag.push(serverTime - deadlines[i]!);
    transit.push(receivedAt[i]! - serverTime);
  }
  for (const ws of sockets) ws?.terminate();
  return {
    n,
    received: got,
    missing: n - got,
    early,
    wrong,
    completed,
    closed4401: closeCodes.filter((c) => c === 4401).length,
    latency: distribution(latency),
    serverLag: distribution(serverLag),
    transit: distribution(transit),
    latencies: latency,
  };
}

serve({ prepare, open, collect });
