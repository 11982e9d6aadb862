/**
 * Randomized model check (issue 8): two server processes on one database, seeded random waves of
 * concurrent requests and subscriptions, several aimed at the same session at once, each sent to
 * a random process; then a checker (test/helpers/historyChecker.ts, where the rules are written
 * down) replays what was observed and lists every violation of the session invariants.
 *
 *   npx vitest run test/integration/model-check.test.ts                    # 2 000 operations, random seed
 *   STRESS_OPS=300 STRESS_SEED=42 npx vitest run test/integration/model-check.test.ts
 *   STRESS_OPS=100000 npx vitest run test/integration/model-check.test.ts  # the long run (BENCHMARKS.md)
 *
 * The operations run in rounds of STRESS_ROUND_OPS (1 000), each on two fresh processes and a
 * fresh database; the test stops at the first round with a violation (STRESS_KEEP_GOING=1: runs
 * them all, and the summary says how many failed).
 *
 * A seed fixes the random choices; which sessions they land on also depends on the answers (and
 * so on timing), so a failing run replays only approximately.
 * With STRESS_OPS set, one summary line is printed; a failure lists the first STRESS_SHOW (10)
 * violations with the history around each; STRESS_HISTORY=file.json writes the whole history
 * (of the first round with violations, else of round 1); TEST_SERVER_LOGS=1 streams the
 * servers' logs.
 */
import { randomInt } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type { Client } from 'graphql-ws';
import { afterAll, expect, it, onTestFailed } from 'vitest';
import {
  checkHistory,
  countConcurrentPairs,
  historyExcerpt,
  short,
  TERMINAL_KINDS,
  type FinalState,
  type History,
  type Outcome,
  type RequestOp,
  type RequestRecord,
  type SessionInfo,
  type SubscriberRecord,
  type Violation,
} from '../helpers/historyChecker.js';
import { testDatabaseUri } from '../helpers/server.js';
import { startServerProcess, type ServerProcess } from '../helpers/serverProcess.js';

const OPS = Number(process.env.STRESS_OPS ?? 2000);
const SEED = process.env.STRESS_SEED ? Number(process.env.STRESS_SEED) : randomInt(2 ** 31);
const PRINT_SUMMARY = process.env.STRESS_OPS !== undefined;
/** How many violations a failure lists, with their history (default 10). */
const SHOW = Number(process.env.STRESS_SHOW ?? 10);
/** A file to write the whole history to (JSON), for a closer look at a failure. */
const HISTORY_FILE = process.env.STRESS_HISTORY;

/**
 * Tuned for a 2-core machine that also runs the database and both servers: the default 2 000
 * operations (two rounds) take about 60-80 s there, most of it FerretDB's CPU.
 */
const USERS = 4;
/** Sessions kept alive (not known to have ended or expired) at any time; logins refill the pool. */
const LIVE_SESSIONS = 10;
const WAVE_SIZE = [8, 16] as const;
/** Waves in flight at once (each lane sends its next wave when its last one has been answered). */
const LANES = 2;
/** Operations per round: each round has fresh processes and a fresh database. */
const ROUND_OPS = Number(process.env.STRESS_ROUND_OPS ?? 1000);
/** Go on after a round with violations (to count them over a long run) instead of stopping there. */
const KEEP_GOING = ['1', 'true', 'yes'].includes(String(process.env.STRESS_KEEP_GOING ?? '').toLowerCase());
/** Sends within a wave are spread over this long, so that some go out after others were answered. */
const WAVE_SPREAD_MS = 40;
const MAX_OPEN_SUBSCRIBERS = 40;
/** After the last wave: how long every subscriber may take to get its terminal event. */
const FINAL_EVENT_WAIT_MS = 10_000;
const PASSWORD = 'correct horse battery';

/** Each process authenticates from its session cache, which may lag the other process's answers by this much. */
const CACHE_STALENESS_MS = 300;
const SERVER_ENV = { SESSION_BROWSER_CLOSE_GRACE: '2', SESSION_CACHE_MAX_STALENESS_MS: String(CACHE_STALENESS_MS) };

const SESSION_FIELDS = 'id expiryDate serverTime';
const Q = {
  login: `mutation($u: String!, $p: String!, $e: ExpiryInput) { login(username: $u, password: $p, expiry: $e) { token session { ${SESSION_FIELDS} } } }`,
  touch: `mutation { touch { ${SESSION_FIELDS} } }`,
  setExpiry: `mutation($s: Int, $at: DateTimeISO) { setExpiry(seconds: $s, at: $at) { ${SESSION_FIELDS} } }`,
  read: `{ session { ${SESSION_FIELDS} } }`,
  logout: 'mutation { logout }',
  revoke: 'mutation($id: ID!) { revokeSession(id: $id) }',
  logoutAll: 'mutation($k: Boolean!) { logoutAll(keepCurrent: $k) }',
  events: `subscription($lead: Int) { sessionEvents(expiringSoonLead: $lead) { kind sessionId expiresAt serverTime reason } }`,
};

/** mulberry32: small, seedable, good enough to pick operations. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p: number) => next() < p,
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!,
    weighted: <T extends string>(weights: Record<T, number>): T => {
      const entries = Object.entries(weights) as Array<[T, number]>;
      let r = next() * entries.reduce((sum, [, w]) => sum + w, 0);
      for (const [k, w] of entries) if ((r -= w) < 0) return k;
      return entries[entries.length - 1]![0];
    },
  };
}

interface DriverSession {
  id: string;
  token: string;
  user: number;
  /** The driver's belief, for choosing targets only (the checker never uses it). */
  knownEnded: boolean;
  lastExpiry: number;
  lastAnswerAt: number;
  openSubscribers: number;
}

/** The server processes of the round under way, and those of the first round that failed (their logs are printed then). */
let procs: ServerProcess[] = [];
let failedProcs: ServerProcess[] | null = null;

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()));
});

it(`keeps the session invariants under random concurrent operations on two processes (${OPS} operations, seed ${SEED})`, async () => {
  onTestFailed(() => {
    for (const p of failedProcs ?? procs) p.printLogs(150);
  });
  const started = Date.now();
  const totals = { ops: 0, requests: 0, subscriptions: 0, sessions: 0, waves: 0, pairs: 0, violations: 0 };
  const failed: RoundResult[] = [];
  const rounds = Math.ceil(OPS / ROUND_OPS);
  let round = 0;
  while (round < rounds && (failed.length === 0 || KEEP_GOING)) {
    round++;
    const ops = Math.min(ROUND_OPS, OPS - (round - 1) * ROUND_OPS);
    // Round 1 runs on SEED itself, so that STRESS_SEED=<a round's seed> STRESS_OPS=<its ops> replays one round.
    const seed = round === 1 ? SEED : (SEED + Math.imul(round - 1, 0x9e3779b9)) >>> 0;
    const mongoUri = testDatabaseUri();
    procs = await Promise.all([0, 1].map((i) => startServerProcess({ mongoUri, name: `P${i}`, env: SERVER_ENV })));
    const result = await runRound(round, ops, seed, procs);
    await Promise.all(procs.map((p) => p.stop()));
    // The history of round 1, replaced by that of the first round with violations.
    if (HISTORY_FILE && (round === 1 || (result.violations.length > 0 && failed.length === 0))) {
      const { seed: s, history: h, violations: v } = result;
      await writeFile(HISTORY_FILE, JSON.stringify({ seed: s, round, ...h, finalStates: Object.fromEntries(h.finalStates), violations: v }, null, 1));
    }
    if (result.violations.length > 0) {
      failed.push(result);
      failedProcs ??= procs;
    }
    totals.ops += result.ops;
    totals.requests += result.history.requests.length;
    totals.subscriptions += result.history.subscribers.length;
    totals.sessions += result.history.sessions.length;
    totals.waves += result.waves;
    totals.pairs += countConcurrentPairs(result.history);
    totals.violations += result.violations.length;
    if (result.violations.length === 0) result.history = EMPTY_HISTORY; // only a failed round's history is reported
  }
  if (PRINT_SUMMARY) {
    const where = failed.length === 0 ? '' : ` in ${failed.length} of ${round} rounds (${failed.map((f) => `round ${f.round}: ${f.violations.length}`).join(', ')})`;
    console.log(
      `model-check: seed ${SEED}, ${totals.ops} operations (${totals.requests} requests, ${totals.subscriptions} subscriptions) on ${totals.sessions} sessions, ` +
        `${totals.waves} waves in ${round === 1 ? '1 round' : `${round} rounds`}, ${totals.pairs} concurrent same-session pairs, ` +
        `violations: ${totals.violations}${where}, ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  }
  if (failed.length > 0) throw new Error(report(failed[0]!));
}, 120_000 + OPS * 90);

const EMPTY_HISTORY: History = { t0: 0, requests: [], subscribers: [], sessions: [], finalStates: new Map() };

interface RoundResult {
  round: number;
  seed: number;
  /** Operations asked for, and sent (a wave in flight may add a few). */
  target: number;
  ops: number;
  waves: number;
  history: History;
  violations: Violation[];
}

/**
 * One round: users, waves of operations until `ops` have been sent, the end (every session
 * ended), then the check. Two fresh processes on a fresh database per round keep the database
 * small (FerretDB on SQLite slows down as its collections grow), so that long runs stay comparable.
 */
async function runRound(round: number, ops: number, seed: number, procs: ServerProcess[]): Promise<RoundResult> {
  const rng = prng(seed);
  const t0 = Date.now();
  const requests: RequestRecord[] = [];
  const subscribers: SubscriberRecord[] = [];
  const sessionInfos: SessionInfo[] = [];
  const sessions: DriverSession[] = [];
  const byId = new Map<string, DriverSession>();
  const clients: Client[] = [];
  let opsSent = 0;
  let wave = 0; // waves started so far
  let nextRequestId = 1;
  let nextSubscriberId = 1;
  let openSubscribers = 0;

  // Users, registered up front (not counted as operations).
  const usernames = Array.from({ length: USERS }, (_, i) => `mc${seed.toString(36)}r${round}u${i}x${randomInt(1e9).toString(36)}`);
  for (const u of usernames) {
    const res = await procs[0]!.gql('mutation($u: String!, $p: String!) { register(username: $u, password: $p) { id } }', { u, p: PASSWORD });
    expect(res.errors, 'register').toBeUndefined();
  }

  async function send(
    op: RequestOp,
    proc: number,
    token: string | null,
    query: string,
    variables: Record<string, unknown>,
    meta: Partial<RequestRecord> & { wave: number; session: string | null; user: number },
  ): Promise<{ record: RequestRecord; data: any }> {
    const record: RequestRecord = { id: nextRequestId++, op, proc, sentAt: 0, answeredAt: 0, outcome: { kind: 'failed', message: 'not sent' }, ...meta };
    requests.push(record);
    let data: any = null;
    record.sentAt = Date.now();
    try {
      const res = await procs[proc]!.gql(query, variables, token ? { token } : {});
      record.answeredAt = Date.now();
      if (res.errors?.length) {
        const ext = res.errors[0]!.extensions ?? {};
        record.outcome = { kind: 'refused', code: String(ext.code ?? `HTTP_${res.status}`), reason: ext.reason as string | undefined, message: res.errors[0]!.message };
      } else {
        data = res.data;
        record.outcome = servedOutcome(data);
      }
    } catch (err) {
      record.answeredAt = Date.now();
      record.outcome = { kind: 'failed', message: err instanceof Error ? err.message : String(err) };
    }
    learn(record);
    return { record, data };
  }

  function servedOutcome(data: any): Outcome {
    const value = Object.values(data ?? {})[0] as any;
    const session = value?.session ?? value;
    if (session && typeof session === 'object' && 'expiryDate' in session) {
      return { kind: 'served', expiryDate: Date.parse(session.expiryDate), serverTime: Date.parse(session.serverTime) };
    }
    return { kind: 'served', result: value as boolean | number };
  }

  /** Updates the driver's belief about which sessions live (only to choose what to send next). */
  function learn(r: RequestRecord) {
    const s = r.session ? byId.get(r.session) : undefined;
    const o = r.outcome;
    if (o.kind === 'refused' && s && (o.code === 'SESSION_EXPIRED' || o.code === 'SESSION_ENDED')) s.knownEnded = true;
    if (o.kind !== 'served' || !s) return;
    if (o.expiryDate !== undefined && r.answeredAt >= s.lastAnswerAt) {
      s.lastExpiry = o.expiryDate;
      s.lastAnswerAt = r.answeredAt;
    }
    if (r.op === 'logout') s.knownEnded = true;
    if (r.op === 'revoke' && o.result === true && r.target) byId.get(r.target)!.knownEnded = true;
    if (r.op === 'logoutAll') for (const x of sessions) if (x.user === s.user && (x !== s || !r.keepCurrent)) x.knownEnded = true;
  }

  const isActive = (s: DriverSession) => !s.knownEnded && s.lastExpiry > Date.now() + 50;

  async function login(waveNo: number, proc: number, user: number, expiry: { seconds?: number | null; at?: string } | null, args: string) {
    opsSent++;
    const { record, data } = await send('login', proc, null, Q.login, { u: usernames[user], p: PASSWORD, e: expiry }, {
      wave: waveNo,
      session: null,
      user,
      args,
      browserClose: expiry?.seconds === 0,
    });
    if (record.outcome.kind !== 'served') return null;
    const id = data.login.session.id as string;
    record.session = id;
    sessionInfos.push({ id, user, loginRequest: record.id });
    const s: DriverSession = {
      id,
      token: data.login.token,
      user,
      knownEnded: false,
      lastExpiry: Date.parse(data.login.session.expiryDate),
      lastAnswerAt: record.answeredAt,
      openSubscribers: 0,
    };
    sessions.push(s);
    byId.set(id, s);
    return s;
  }

  /** `lead`: EXPIRING_SOON lead in seconds (0: none). */
  function subscribe(s: DriverSession, proc: number, lead: number) {
    opsSent++;
    const rec: SubscriberRecord = {
      id: nextSubscriberId++,
      session: s.id,
      proc,
      openedAt: Date.now(),
      events: [],
      completed: false,
      closeCode: null,
      closedAt: null,
      error: null,
    };
    subscribers.push(rec);
    s.openSubscribers++;
    openSubscribers++;
    let open = true;
    const done = () => {
      if (!open) return;
      open = false;
      s.openSubscribers--;
      openSubscribers--;
    };
    const client = procs[proc]!.wsClient(s.token, {
      onClosed: (code) => {
        rec.closeCode ??= code;
        rec.closedAt ??= Date.now();
        done();
      },
    });
    clients.push(client);
    client.subscribe<{ sessionEvents: { kind: string; sessionId: string; expiresAt: string; serverTime: string; reason: string | null } }>(
      { query: Q.events, variables: { lead } },
      {
        next: (result) => {
          const receivedAt = Date.now();
          if (!result.data) {
            rec.error = JSON.stringify(result.errors);
            return;
          }
          const e = result.data.sessionEvents;
          rec.events.push({ kind: e.kind, sessionId: e.sessionId, expiresAt: Date.parse(e.expiresAt), serverTime: Date.parse(e.serverTime), reason: e.reason, receivedAt });
          if (TERMINAL_KINDS.has(e.kind) && e.sessionId === s.id) s.knownEnded = true;
        },
        error: (err) => {
          rec.error ??= describeError(err);
          done();
        },
        complete: () => {
          rec.completed = true;
          done();
        },
      },
    );
  }

  /** EXPIRING_SOON lead in seconds, 0 for none (two draws either way, so later choices do not shift). */
  const leadArgument = () => (rng.chance(0.3) ? rng.int(1, 3) : rng.int(0, 0));

  function expiryArgument(forLogin: boolean): { value: { seconds?: number | null; at?: string }; args: string } {
    const kind = rng.weighted(forLogin ? { seconds: 70, zero: 10, none: 10, at: 10 } : { seconds: 60, zero: 8, none: 10, at: 22 });
    if (kind === 'seconds') {
      const seconds = forLogin ? rng.int(2, 6) : rng.int(1, 6);
      return { value: { seconds }, args: `seconds: ${seconds}` };
    }
    if (kind === 'zero') return { value: { seconds: 0 }, args: 'seconds: 0' };
    if (kind === 'none') return { value: { seconds: null }, args: 'seconds: null' };
    const ms = rng.int(2000, 6000);
    return { value: { at: new Date(Date.now() + ms).toISOString() }, args: `at: +${ms}ms` };
  }

  /** One operation by `s` (a request or a subscription), `delay` ms into the wave. */
  async function operate(waveNo: number, s: DriverSession, delay: number) {
    const op = rng.weighted({ touch: 22, setExpiry: 20, read: 20, logout: 6, revoke: 7, logoutAll: 2, subscribe: 9 });
    const proc = rng.int(0, 1);
    const lead = leadArgument();
    const base = { wave: waveNo, session: s.id, user: s.user };
    // Every random choice is drawn before the first await, so that concurrent operations do not reorder the draws.
    const expiry = expiryArgument(false);
    const keepCurrent = rng.chance(0.3);
    const others = sessions.filter((x) => x.user === s.user && x !== s);
    const activeOthers = others.filter(isActive);
    const preferActive = rng.chance(0.85);
    const pick = rng.next();
    const pool = preferActive && activeOthers.length > 0 ? activeOthers : others;
    const target = pool.length > 0 ? pool[Math.floor(pick * pool.length)]! : null;
    const chaseProc = rng.int(0, 1);
    const chase = rng.chance(0.7);
    await sleep(delay);
    switch (op) {
      case 'subscribe':
        if (openSubscribers < MAX_OPEN_SUBSCRIBERS && s.openSubscribers < 3) subscribe(s, proc, lead);
        else await plain('read');
        return;
      case 'touch':
      case 'read':
      case 'logout':
        await plain(op);
        break;
      case 'setExpiry':
        opsSent++;
        await send('setExpiry', proc, s.token, Q.setExpiry, { s: expiry.value.seconds ?? null, at: expiry.value.at ?? null }, {
          ...base,
          args: expiry.args,
          browserClose: expiry.value.seconds === 0,
        });
        return;
      case 'revoke': {
        if (!target) return plain('touch');
        opsSent++;
        const { record } = await send('revoke', proc, s.token, Q.revoke, { id: target.id }, { ...base, target: target.id });
        if (chase && record.outcome.kind === 'served' && record.outcome.result === true) await chaseAfter(waveNo, [target], chaseProc);
        return;
      }
      case 'logoutAll': {
        opsSent++;
        const { record } = await send('logoutAll', proc, s.token, Q.logoutAll, { k: keepCurrent }, { ...base, keepCurrent });
        if (chase && record.outcome.kind === 'served') await chaseAfter(waveNo, keepCurrent ? others : [s, ...others], chaseProc);
        return;
      }
    }
    async function plain(kind: 'touch' | 'read' | 'logout') {
      opsSent++;
      const { record } = await send(kind, proc, s.token, Q[kind], {}, base);
      if (kind === 'logout' && chase && record.outcome.kind === 'served') await chaseAfter(waveNo, [s], chaseProc);
    }
  }

  /** Right after an end was answered: the ended sessions try again (what an attacker holding the token would do). */
  async function chaseAfter(waveNo: number, ended: DriverSession[], proc: number) {
    const victims = ended.slice(0, 2);
    await Promise.all(
      victims.map((v, i) => {
        opsSent++;
        const op = i % 2 === 0 ? 'touch' : 'read';
        return send(op, (proc + i) % 2, v.token, Q[op], {}, { wave: waveNo, session: v.id, user: v.user, args: 'chase' });
      }),
    );
  }

  const recentlyEnded = () => sessions.filter((s) => !isActive(s)).slice(-30);

  /** One lane: waves one after the other. LANES of them run side by side, so one wave's stragglers do not leave the CPU idle. */
  async function lane() {
    while (opsSent < ops) {
      const waveNo = ++wave;
      const tasks: Array<Promise<unknown>> = [];
      const active = sessions.filter(isActive);
      const missing = Math.min(3, LIVE_SESSIONS - active.length);
      for (let i = 0; i < missing; i++) {
        const user = rng.int(0, USERS - 1);
        const expiry = expiryArgument(true);
        const proc = rng.int(0, 1);
        const withSubscriber = rng.chance(0.4);
        const subscriberProc = rng.int(0, 1);
        const lead = leadArgument();
        tasks.push(
          login(waveNo, proc, user, expiry.value, expiry.args).then((s) => {
            if (s && withSubscriber && openSubscribers < MAX_OPEN_SUBSCRIBERS) subscribe(s, subscriberProc, lead);
          }),
        );
      }
      if (active.length > 0) {
        const hot = Array.from({ length: rng.int(1, Math.min(3, active.length)) }, () => rng.pick(active));
        const size = rng.int(WAVE_SIZE[0], WAVE_SIZE[1]);
        for (let i = 0; i < size && opsSent + tasks.length < ops; i++) {
          const r = rng.next();
          const which = rng.next();
          const ended = recentlyEnded();
          const from = r < 0.72 ? hot : r < 0.92 || ended.length === 0 ? active : ended;
          const actor = from[Math.floor(which * from.length)]!;
          const delay = rng.chance(0.4) ? 0 : rng.int(0, WAVE_SPREAD_MS);
          tasks.push(operate(waveNo, actor, delay));
        }
      }
      await Promise.all(tasks);
    }
  }
  await Promise.all(Array.from({ length: LANES }, () => lane()));
  const waves = wave;

  // The end of the run: every user logs in once more and ends all of its sessions; then every
  // subscriber should get its terminal event, and every token should be refused.
  await Promise.all(
    usernames.map(async (_, user) => {
      const [loginProc, logoutProc] = [user % 2, (user + 1) % 2];
      const s = await login(-1, loginProc, user, null, 'final');
      if (!s) return;
      opsSent++;
      await send('logoutAll', logoutProc, s.token, Q.logoutAll, { k: false }, { wave: -1, session: s.id, user, keepCurrent: false, args: 'final' });
    }),
  );
  const waitUntil = Date.now() + FINAL_EVENT_WAIT_MS;
  const settled = (sub: SubscriberRecord) => sub.closedAt !== null || sub.error !== null || sub.events.some((e) => TERMINAL_KINDS.has(e.kind));
  while (Date.now() < waitUntil && !subscribers.every(settled)) await sleep(50);
  await sleep(200); // a second terminal event, if any, arrives right behind the first
  const finalStates = new Map<string, FinalState>();
  const queue = [...sessions];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let s = queue.shift(); s; s = queue.shift()) {
        const { record } = await send('read', queue.length % 2, s.token, Q.read, {}, { wave: -1, session: s.id, user: s.user, args: 'final' });
        finalStates.set(
          s.id,
          record.outcome.kind === 'refused'
            ? { served: false, code: record.outcome.code, reason: record.outcome.reason, requestId: record.id }
            : record.outcome.kind === 'served'
              ? { served: true, requestId: record.id }
              : { served: false, code: 'NO_ANSWER', requestId: record.id },
        );
      }
    }),
  );
  await Promise.all(clients.map((c) => Promise.resolve(c.dispose()).catch(() => {})));

  const history: History = { t0, requests, subscribers, sessions: sessionInfos, finalStates };
  return { round, seed, target: ops, ops: opsSent, waves, history, violations: checkHistory(history, { crossProcessDelayMs: CACHE_STALENESS_MS }) };
}

function report({ round, seed, target, ops, history, violations }: RoundResult): string {
  const byRule = new Map<string, number>();
  for (const v of violations) byRule.set(v.rule, (byRule.get(v.rule) ?? 0) + 1);
  const lines = [
    `model check: ${violations.length} violation(s) in round ${round} (${ops} operations, seed ${seed}${seed === SEED ? '' : `; run seed ${SEED}`}) ` +
      `(again: STRESS_SEED=${seed} STRESS_OPS=${target} npx vitest run test/integration/model-check.test.ts; replays approximately)`,
    `by rule: ${[...byRule].map(([r, n]) => `${r}: ${n}`).join(', ')} (rules: test/helpers/historyChecker.ts; times are ms since the round started)`,
  ];
  violations.slice(0, SHOW).forEach((v, i) => {
    lines.push(`${i + 1}. [${v.rule}] ${short(v.session)}: ${v.message}`);
    for (const line of historyExcerpt(history, v.session, v.at, 12)) lines.push(`      ${line}`);
  });
  if (violations.length > SHOW) lines.push(`… and ${violations.length - SHOW} more (STRESS_SHOW=${violations.length} lists them all)`);
  return lines.join('\n');
}

function describeError(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err) return `socket closed ${(err as { code: number }).code} ${(err as { reason?: string }).reason ?? ''}`.trim();
  if (err instanceof Error) return err.message;
  return JSON.stringify(err);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
