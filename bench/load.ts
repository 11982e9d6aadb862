/**
 * The load, in its own process: opens one websocket per subscription speaking graphql-transport-ws
 * with plain `ws`, with the tokens (seeded sessions: bench/seed.ts) and deadlines it is given, and
 * records when each socket's `next` arrives. Kept light: the receive handler only stamps
 * Date.now() and keeps the raw frame; frames are parsed after the last event is in. A large
 * scenario runs several of these (one process holds at most ~20 000 sockets here), each to its
 * own address of the balancer (bench/balancer.ts). With `reconnect`, a socket closed before its
 * event comes back as the README's graphql-ws client brings it back (retries without end, 250 ms
 * doubling up to 4 s, jittered; a new socket not acknowledged within 10 s of opening is dropped and
 * tried again), and subscribes again: the failover scenario. (The README's client also pings every
 * 10 s; these sockets do not.)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { serve } from './ipc.js';

/** bare-closing: the bare server also doing the protocol's end of a session (complete, then close 4401), as the API must. */
export type Target = 'api' | 'bare' | 'bare-closing';

export interface PrepareArgs {
  /** What each socket sends in connection_init: a session token (API), or its deadline (bare server). */
  tokens: string[];
  /** Each socket's deadline, ms since the epoch: the `expiresAt` its event must carry. */
  deadlines: number[];
  /** Reconnect a socket closed before its event, as a client does when its server process dies. */
  reconnect?: boolean;
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
  /** With `reconnect`: per reconnection, close → the new socket's connection_ack. */
  reconnectMs: number[];
  /** Sockets that reconnected at least once before their event. */
  reconnected: number;
  /** Sockets without their event that were still trying to reconnect at the end. */
  stillAway: number;
  /** Reconnection attempts that failed, by why. */
  reconnectFailures: Record<string, number>;
  /** Events of sessions that ended while their socket was away: received − the new socket's connection_ack. */
  awayLatencies: number[];
  /** The other events: received − expiresAt. */
  onTimeLatencies: number[];
}

export interface LoadResult extends Omit<LoadPart, 'serverLags' | 'transits' | 'reconnectMs' | 'awayLatencies' | 'onTimeLatencies'> {
  missing: number;
  /** Event received − expiresAt, over every socket: Infinity where the percentile falls among the missing events. */
  latency: Distribution;
  /** serverTime stamped in the event − expiresAt: timer, re-check and bookkeeping on the server. */
  serverLag: Distribution;
  /** Event received − serverTime: GraphQL execution of the event, the write, and the load reading it. */
  transit: Distribution;
  reconnect: Distribution;
  /** Received − expiresAt of the events whose session did not end while its socket was away. */
  onTime: Distribution;
  /** Events of sessions that ended while their socket was away, and how late they came after the reconnection. */
  endedAway: number;
  away: Distribution;
}

const SUBSCRIBE = JSON.stringify({
  id: '1',
  type: 'subscribe',
  payload: { query: 'subscription { sessionEvents(expiringSoonLead: 0) { kind sessionId expiresAt serverTime } }' },
});
const NEXT = Buffer.from('"type":"next"');
/**
 * A socket not acknowledged by then fails the set-up (a server waiting on a swamped database would
 * keep it forever). A reconnecting socket has README_ACK_TIMEOUT_MS from its upgrade instead.
 */
const ACK_TIMEOUT_MS = 30_000;
/** The README's client (`reconnectWhenSilent`): a socket not acknowledged within this of opening is dropped. */
const README_ACK_TIMEOUT_MS = 10_000;
const COMPLETE = Buffer.from('"type":"complete"');

let wsUrl = '';
let tokens: string[] = [];
let deadlines: Float64Array = new Float64Array(0);
let sockets: WebSocket[] = [];
let receivedAt: Float64Array = new Float64Array(0);
let frames: Buffer[] = [];
let closeCodes: Int32Array = new Int32Array(0);
let reconnecting = false;
/** Per socket: its last close before its event, and the connection_ack after it (0: none). */
let lastClose: Float64Array = new Float64Array(0);
let lastBack: Float64Array = new Float64Array(0);
let reconnectMs: number[] = [];
let reconnectFailures: Record<string, number> = {};
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
  reconnecting = args.reconnect === true;
  lastClose = new Float64Array(n);
  lastBack = new Float64Array(n);
  reconnectMs = [];
  reconnectFailures = {};
  got = completed = duplicate = opened = refused = 0;
}

/**
 * Resolves once the socket has its connection_ack and the subscribe message has been sent; fails
 * when that takes over `ackTimeoutMs`, counted from the start or, with `fromOpen`, from the upgrade.
 */
function openSocket(i: number, { ackTimeoutMs = ACK_TIMEOUT_MS, fromOpen = false } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, 'graphql-transport-ws', { perMessageDeflate: false });
    sockets[i] = ws;
    closeCodes[i] = 0;
    let acked = false;
    let timer: NodeJS.Timeout | undefined;
    const startTimer = () => {
      timer = setTimeout(() => {
        reject(new Error(`socket ${i}: no connection_ack within ${ackTimeoutMs / 1000} s`));
        ws.terminate();
      }, ackTimeoutMs);
    };
    if (!fromOpen) startTimer();
    const fail = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    ws.on('open', () => {
      if (fromOpen) startTimer();
      ws.send(JSON.stringify({ type: 'connection_init', payload: { token: tokens[i] } }));
    });
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
      else if (reconnecting && receivedAt[i] === 0) void reconnect(i);
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

/** The README's graphql-ws client settings: retries without end, 250 ms doubling up to 4 s, jittered. */
const retryWait = (retries: number) => Math.min(250 * 2 ** retries, 4000) * (0.5 + Math.random() / 2);

/** Brings socket i back after a close before its event, trying until it is acknowledged (or the run is collected). */
async function reconnect(i: number): Promise<void> {
  const closedAt = Date.now();
  lastClose[i] = closedAt;
  lastBack[i] = 0;
  for (let retries = 0; reconnecting; retries++) {
    await new Promise((r) => setTimeout(r, retryWait(retries)));
    if (!reconnecting) return;
    try {
      await openSocket(i, { ackTimeoutMs: README_ACK_TIMEOUT_MS, fromOpen: true });
      lastBack[i] = Date.now();
      reconnectMs.push(lastBack[i]! - closedAt);
      return;
    } catch (err) {
      // Refused, reset or not acknowledged: the next try, as the client's retry would.
      const why = (err as Error).message.replace(/^socket \d+:? ?/, '');
      reconnectFailures[why] = (reconnectFailures[why] ?? 0) + 1;
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

/**
 * Waits for every event (or until `graceMs` past the last deadline), then (at most 5 s) for the
 * closes, then reports; with `rawFile`, also writes every socket's figures there (BENCH_RAW_DIR).
 */
async function collect({ graceMs, rawFile }: { graceMs: number; rawFile?: string }): Promise<LoadPart> {
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
  reconnecting = false;
  const closeBy = Date.now() + 5000;
  while (closeCodes.some((c) => c === 0) && Date.now() < closeBy) await new Promise((r) => setTimeout(r, 50));

  const part: LoadPart = {
    n,
    received: got,
    early: 0,
    wrong: 0,
    duplicate,
    completed,
    closed4401: 0,
    latencies: [],
    serverLags: [],
    transits: [],
    reconnectMs,
    reconnected: lastClose.filter((t) => t > 0).length,
    reconnectFailures,
    stillAway: range(n).filter((i) => receivedAt[i] === 0 && lastClose[i]! > 0 && lastBack[i] === 0).length,
    awayLatencies: [],
    onTimeLatencies: [],
  };
  const raw: Array<[number, number | null, number | null]> = [];
  for (let i = 0; i < n; i++) {
    if (closeCodes[i] === 4401) part.closed4401++;
    if (receivedAt[i] === 0) {
      raw.push([deadlines[i]!, null, null]);
      continue;
    }
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
    // Ended while its socket was away: told at once on reconnect is on time.
    if (lastClose[i]! > 0 && deadlines[i]! >= lastClose[i]! && lastBack[i]! > deadlines[i]!) part.awayLatencies.push(receivedAt[i]! - lastBack[i]!);
    else part.onTimeLatencies.push(late);
    part.serverLags.push(serverTime - deadlines[i]!);
    part.transits.push(receivedAt[i]! - serverTime);
    raw.push([deadlines[i]!, late, serverTime - deadlines[i]!]);
  }
  if (rawFile) {
    mkdirSync(path.dirname(rawFile), { recursive: true });
    writeFileSync(rawFile, JSON.stringify(raw));
  }
  for (const ws of sockets) ws?.terminate();
  return part;
}

export const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Percentiles of `n` values of which these are known: the others (missing events) count as later than any, Infinity. */
function distribution(values: number[], n = values.length): Distribution {
  if (n === 0) return { p50: NaN, p99: NaN, max: NaN, min: NaN };
  const sorted = Float64Array.from(values).sort();
  const rank = (p: number) => sorted[Math.max(0, Math.ceil(p * n) - 1)] ?? Infinity;
  return { p50: rank(0.5), p99: rank(0.99), max: rank(1), min: sorted[0] ?? Infinity };
}

/** Counts by name, added up over several processes' tallies. */
export function sumCounts(tallies: Array<Record<string, number>>): Record<string, number> {
  const total: Record<string, number> = {};
  for (const tally of tallies) for (const [name, n] of Object.entries(tally)) total[name] = (total[name] ?? 0) + n;
  return total;
}

/** The load processes' parts of one run as one result. */
export function mergeParts(parts: LoadPart[]): LoadResult {
  const sum = (key: 'n' | 'received' | 'early' | 'wrong' | 'duplicate' | 'completed' | 'closed4401' | 'reconnected' | 'stillAway') => parts.reduce((t, p) => t + p[key], 0);
  const all = (key: 'latencies' | 'serverLags' | 'transits' | 'reconnectMs' | 'awayLatencies' | 'onTimeLatencies') => parts.flatMap((p) => p[key]);
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
    reconnected: sum('reconnected'),
    stillAway: sum('stillAway'),
    reconnectFailures: sumCounts(parts.map((p) => p.reconnectFailures)),
    latencies,
    latency: distribution(latencies, sum('n')),
    serverLag: distribution(all('serverLags')),
    transit: distribution(all('transits')),
    reconnect: distribution(all('reconnectMs')),
    onTime: distribution(all('onTimeLatencies')),
    endedAway: all('awayLatencies').length,
    away: distribution(all('awayLatencies')),
  };
}

// Only when run (forked) as the load process: the orchestrator imports mergeParts from here too.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) serve({ prepare, open, collect });
