/**
 * The checker of the randomized model-checking test (test/integration/model-check.test.ts): it
 * replays a recorded history of requests and subscription events and lists every place where the
 * server broke the session invariants of issue 8. Pure: no I/O, no clock of its own.
 *
 * All instants are milliseconds on the one machine clock that the test and the servers share
 * (Date.now()): `sentAt` is taken just before a request goes out, `answeredAt` just after its
 * answer was read, `receivedAt` when an event arrived. Whatever the server does for a request
 * therefore happens within [sentAt, answeredAt], and an event was decided before its receivedAt.
 *
 * The rules, for a session S (each violation names its rule):
 *
 * (a) end-known: once S's end has been answered or announced, S is never served again. The end
 *     is known at the earliest of: the answer of a successful `logout` by S or `logoutAll`
 *     (without keepCurrent) by S; the answer of `revokeSession(S)` = true; the answer of a
 *     successful `logoutAll` by another session of S's user sent after S's login was answered;
 *     an error answer SESSION_EXPIRED / SESSION_ENDED to a request of S; the arrival of a terminal
 *     event about S at any subscriber. A request of S sent after that instant must not be
 *     served, `revokeSession(S)` sent after it must not answer true, and a subscription of S
 *     opened after it must get the terminal event first.
 * (b) expiry: a served answer showing `serverTime` and `expiryDate` has serverTime < expiryDate
 *     (b-time). And (b-expiry): let E be the largest expiryDate among S's renewals (login, touch,
 *     setExpiry) answered before a request R of S was sent; if R was sent after E and served, some
 *     renewal sent before E must still have been in flight when R was sent (it may have been
 *     applied in time and moved the expiry). Without one, R was served after expiry: any write
 *     that could have moved the expiry past R's send time would itself have to be applied to a
 *     valid session, and following that chain back always ends at a renewal sent before E and
 *     answered after R was sent. (The largest E over-approximates the true expiry, whatever order
 *     concurrent renewals were applied in, so this never flags a legal history.)
 * (c) events: each subscriber of S gets events about S only, exactly one terminal event
 *     (EXPIRED, LOGGED_OUT, REVOKED) and nothing after it; a socket closed (4401 or otherwise)
 *     before the terminal event, or a subscription still open once every session has ended,
 *     is a subscriber without one. A LOGGED_OUT / REVOKED / BROWSER_CLOSED end needs a request
 *     that could cause it sent before the event arrived.
 * (c-early) none early: an EXPIRED/TIMEOUT whose serverTime is T is early when a renewal of S
 *     answered before the event arrived set an expiry after T (+ slack), unless another renewal
 *     that could have been applied after it and before T (answered after it was sent, sent by T)
 *     set an expiry at or before T, or has no known outcome.
 * (d) agreement: all subscribers of S report the same end, and at the end of the run (every
 *     session ended) S's token is refused with the error matching that end (SESSION_EXPIRED +
 *     reason TIMEOUT/BROWSER_CLOSED, SESSION_ENDED + reason LOGGED_OUT/REVOKED; a SESSION_EXPIRED
 *     without reason matches either expiry); the token still being served is a (d) violation too.
 * (d-answer) the answers agree with that stored end as well: every SESSION_EXPIRED /
 *     SESSION_ENDED error S got during the run names it, and `revokeSession(S)` answering true
 *     means REVOKED won (only the caller that ends a session gets true).
 * (x) unexpected: an error other than SESSION_EXPIRED / SESSION_ENDED (and EXPIRY_IN_PAST for
 *     setExpiry), any error to a login, or no answer at all.
 *
 * Server instants (serverTime, expiryDate) are compared with a few ms of slack (`slackMs`, 3);
 * send and answer instants need none, as both are read on the test's side of the wire.
 */

export type RequestOp = 'login' | 'touch' | 'setExpiry' | 'read' | 'logout' | 'revoke' | 'logoutAll';

export type Outcome =
  /** Answered without errors. */
  | { kind: 'served'; expiryDate?: number; serverTime?: number; result?: boolean | number }
  /** Answered with a GraphQL error: `code` is extensions.code, `reason` extensions.reason. */
  | { kind: 'refused'; code: string; reason?: string; message?: string }
  /** No usable answer (connection error, timeout, non-JSON): whether the server acted is unknown. */
  | { kind: 'failed'; message: string };

export interface RequestRecord {
  id: number;
  /** The wave it was sent in; -1 for the final phase. */
  wave: number;
  op: RequestOp;
  /** The session whose token made the request; for a login, the session it created (null if it failed). */
  session: string | null;
  user: number;
  /** revoke: the session to revoke. */
  target?: string;
  keepCurrent?: boolean;
  /** What was asked, for messages: e.g. `seconds: 3`. */
  args?: string;
  /** Whether the request asked for a browser-close expiry (seconds: 0). */
  browserClose?: boolean;
  /** Which server process it went to. */
  proc: number;
  sentAt: number;
  answeredAt: number;
  outcome: Outcome;
}

export interface ReceivedEventRecord {
  kind: string;
  sessionId: string;
  expiresAt: number;
  serverTime: number;
  reason: string | null;
  receivedAt: number;
}

export interface SubscriberRecord {
  id: number;
  session: string;
  proc: number;
  openedAt: number;
  events: ReceivedEventRecord[];
  completed: boolean;
  closeCode: number | null;
  closedAt: number | null;
  error: string | null;
}

export interface SessionInfo {
  id: string;
  user: number;
  /** The login request that created it. */
  loginRequest: number;
}

/** What the token got at the end of the run, once every session had been ended. */
export type FinalState = { served: true; requestId: number } | { served: false; code: string; reason?: string; requestId: number };

export interface History {
  t0: number;
  requests: RequestRecord[];
  subscribers: SubscriberRecord[];
  sessions: SessionInfo[];
  finalStates: Map<string, FinalState>;
}

export type Rule = 'a' | 'b-time' | 'b-expiry' | 'c' | 'c-early' | 'd' | 'd-answer' | 'x';

export interface Violation {
  rule: Rule;
  session: string | null;
  /** When it happened (local ms), for the history excerpt. */
  at: number;
  message: string;
}

export const TERMINAL_KINDS = new Set(['EXPIRED', 'LOGGED_OUT', 'REVOKED']);
const RENEWALS = new Set<RequestOp>(['login', 'touch', 'setExpiry']);
/** Refusals that say the session is over. */
const END_CODES = new Set(['SESSION_EXPIRED', 'SESSION_ENDED']);

export interface CheckOptions {
  /** Clock granularity allowed where server instants are compared with expiries. */
  slackMs?: number;
  /**
   * How long after one process answered a change (an end, a renewal) another process may still
   * authenticate requests with the version before it: the servers' SESSION_CACHE_MAX_STALENESS_MS.
   * The process that answered it, and revokeSession (which reads the database), get no such delay.
   */
  crossProcessDelayMs?: number;
}

/** The end a terminal observation stands for: TIMEOUT, BROWSER_CLOSED, LOGGED_OUT or REVOKED. */
export function endOfEvent(e: { kind: string; reason: string | null }): string {
  if (e.kind === 'EXPIRED') return e.reason ?? 'TIMEOUT';
  return e.kind; // LOGGED_OUT, REVOKED
}
/** A SESSION_EXPIRED without a reason stands for either expiry: `EXPIRED(any)`. */
export function endOfError(code: string, reason?: string): string {
  return code === 'SESSION_EXPIRED' ? (reason ?? 'EXPIRED(any)') : (reason ?? 'SESSION_ENDED(no reason)');
}
function sameEnd(a: string, b: string): boolean {
  if (a === b) return true;
  const expiry = (x: string) => x === 'TIMEOUT' || x === 'BROWSER_CLOSED';
  return (a === 'EXPIRED(any)' && expiry(b)) || (b === 'EXPIRED(any)' && expiry(a));
}

interface EndKnown {
  at: number;
  how: string;
  /** The process that answered or announced it. */
  proc: number;
}

export function checkHistory(history: History, options: CheckOptions = {}): Violation[] {
  const slack = options.slackMs ?? 3;
  const delay = options.crossProcessDelayMs ?? 0;
  /** When what `proc` answered at `at` binds a request authenticated by `on` (null: one that reads the database). */
  const bindsFrom = (at: number, proc: number, on: number | null) => (on === null || on === proc ? at : at + delay);
  const rel = (t: number) => `+${t - history.t0}ms`;
  const violations: Violation[] = [];
  const add = (rule: Rule, session: string | null, at: number, message: string) => violations.push({ rule, session, at, message });

  const info = new Map(history.sessions.map((s) => [s.id, s]));
  const byId = new Map(history.requests.map((r) => [r.id, r]));
  const loginOf = (s: string) => byId.get(info.get(s)!.loginRequest)!;
  /** Requests made with each session's token (its login included). */
  const own = new Map<string, RequestRecord[]>();
  /** revokeSession requests aimed at each session. */
  const aimedAt = new Map<string, RequestRecord[]>();
  for (const r of history.requests) {
    if (r.session) (own.get(r.session) ?? own.set(r.session, []).get(r.session)!).push(r);
    if (r.op === 'revoke' && r.target) (aimedAt.get(r.target) ?? aimedAt.set(r.target, []).get(r.target)!).push(r);
  }
  const sessionsOfUser = new Map<number, string[]>();
  for (const s of history.sessions) (sessionsOfUser.get(s.user) ?? sessionsOfUser.set(s.user, []).get(s.user)!).push(s.id);
  const subsOf = new Map<string, SubscriberRecord[]>();
  for (const sub of history.subscribers) (subsOf.get(sub.session) ?? subsOf.set(sub.session, []).get(sub.session)!).push(sub);

  const describe = (r: RequestRecord) =>
    `${r.op}${r.args ? `(${r.args})` : ''} #${r.id} on P${r.proc} sent ${rel(r.sentAt)} answered ${rel(r.answeredAt)}`;

  // (x) unexpected answers.
  for (const r of history.requests) {
    if (r.outcome.kind === 'failed') add('x', r.session, r.sentAt, `${describe(r)}: no answer (${r.outcome.message})`);
    else if (r.outcome.kind === 'refused') {
      const allowed =
        r.op !== 'login' && (END_CODES.has(r.outcome.code) || (r.op === 'setExpiry' && r.outcome.code === 'EXPIRY_IN_PAST'));
      if (!allowed) add('x', r.session, r.sentAt, `${describe(r)}: unexpected error ${r.outcome.code}: ${r.outcome.message ?? ''}`);
    }
  }

  // When each session's end became known to some client.
  const endKnown = new Map<string, EndKnown[]>();
  const known = (s: string, at: number, how: string, proc: number) => {
    endKnown.set(s, [...(endKnown.get(s) ?? []), { at, how, proc }]);
  };
  /** The earliest of S's known ends that binds a request authenticated by `on`, and when it binds it. */
  const bindingEnd = (ends: EndKnown[], on: number | null) => {
    let first: (EndKnown & { from: number }) | null = null;
    for (const e of ends) {
      const from = bindsFrom(e.at, e.proc, on);
      if (!first || from < first.from) first = { ...e, from };
    }
    return first!;
  };
  for (const r of history.requests) {
    if (r.outcome.kind === 'refused' && r.session && r.op !== 'login' && END_CODES.has(r.outcome.code)) {
      known(r.session, r.answeredAt, `${describe(r)} refused ${r.outcome.code}`, r.proc);
    }
    if (r.outcome.kind !== 'served' || !r.session) continue;
    if (r.op === 'logout') known(r.session, r.answeredAt, `${describe(r)} answered true`, r.proc);
    if (r.op === 'revoke' && r.target && r.outcome.result === true) known(r.target, r.answeredAt, `${describe(r)} by ${short(r.session)} answered true`, r.proc);
    if (r.op === 'logoutAll') {
      for (const s of sessionsOfUser.get(r.user) ?? []) {
        if (s === r.session ? r.keepCurrent : loginOf(s).answeredAt >= r.sentAt) continue;
        known(s, r.answeredAt, `${describe(r)} by ${short(r.session)} (keepCurrent: ${Boolean(r.keepCurrent)}) answered ${String(r.outcome.result)}`, r.proc);
      }
    }
  }
  for (const sub of history.subscribers) {
    const terminal = sub.events.find((e) => TERMINAL_KINDS.has(e.kind) && e.sessionId === sub.session);
    if (terminal) known(sub.session, terminal.receivedAt, `subscriber ${sub.id} on P${sub.proc} received ${terminal.kind}/${terminal.reason}`, sub.proc);
  }

  for (const { id: s } of history.sessions) {
    const requests = own.get(s) ?? [];
    const renewals = requests.filter((r) => RENEWALS.has(r.op));
    const ends = endKnown.get(s);

    // (a) nothing served after the end was known (to the process serving it, see crossProcessDelayMs).
    if (ends) {
      for (const r of requests) {
        const end = bindingEnd(ends, r.proc);
        if (r.op === 'login' || r.outcome.kind !== 'served' || r.sentAt <= end.from) continue;
        add('a', s, r.sentAt, `${describe(r)} was SERVED although the end of ${short(s)} was known at ${rel(end.at)} on P${end.proc}: ${end.how}`);
      }
      for (const r of aimedAt.get(s) ?? []) {
        const end = bindingEnd(ends, null);
        if (r.outcome.kind !== 'served' || r.outcome.result !== true || r.sentAt <= end.from) continue;
        add('a', s, r.sentAt, `${describe(r)} revoked ${short(s)} (answered true) although its end was known at ${rel(end.at)}: ${end.how}`);
      }
      for (const sub of subsOf.get(s) ?? []) {
        const end = bindingEnd(ends, sub.proc);
        if (sub.openedAt <= end.from) continue;
        const first = sub.events[0];
        if (first && !TERMINAL_KINDS.has(first.kind)) {
          add('a', s, first.receivedAt, `subscriber ${sub.id} on P${sub.proc}, opened ${rel(sub.openedAt)} after the end was known (${rel(end.at)}: ${end.how}), got ${first.kind} first`);
        }
      }
    }

    // (b-time) a served session never shows itself expired.
    for (const r of requests) {
      if (r.outcome.kind !== 'served' || r.outcome.expiryDate === undefined || r.outcome.serverTime === undefined) continue;
      if (!(r.outcome.serverTime < r.outcome.expiryDate)) {
        add('b-time', s, r.sentAt, `${describe(r)} was served with serverTime ${rel(r.outcome.serverTime)} >= expiryDate ${rel(r.outcome.expiryDate)}`);
      }
    }

    // (b-expiry) nothing served after the latest expiry known when it was sent, unless a renewal could still move it.
    // A renewal binds a claim from when the claim's process can know of it (see crossProcessDelayMs).
    const claims: Array<{ r: RequestRecord; what: string; on: number | null }> = [];
    for (const r of requests) if (r.op !== 'login' && r.outcome.kind === 'served') claims.push({ r, what: 'was SERVED', on: r.proc });
    for (const r of aimedAt.get(s) ?? []) {
      if (r.outcome.kind === 'served' && r.outcome.result === true) claims.push({ r, what: `revoked ${short(s)} (answered true)`, on: null });
    }
    for (const { r, what, on } of claims) {
      const sent = r.sentAt;
      const binds = (w: RequestRecord) => bindsFrom(w.answeredAt, w.proc, on);
      if (renewals.some((w) => w.outcome.kind === 'failed' && w.sentAt < sent)) continue;
      const answered = renewals.filter((w) => w.outcome.kind === 'served' && binds(w) < sent);
      if (answered.length === 0) continue;
      let latest = answered[0]!;
      for (const w of answered) if (expiryOf(w) > expiryOf(latest)) latest = w;
      const expiry = expiryOf(latest);
      if (sent <= expiry + slack) continue;
      const rescuer = renewals.find((w) => w !== r && w.outcome.kind !== 'refused' && w.sentAt < expiry + slack && binds(w) >= sent);
      if (rescuer) continue;
      add(
        'b-expiry',
        s,
        sent,
        `${describe(r)} ${what} although it was sent ${sent - expiry} ms after the latest expiry known then (${rel(expiry)}, from ${describe(latest)}) and no renewal sent before that expiry was still in flight`,
      );
    }

    // (c) events.
    const subs = subsOf.get(s) ?? [];
    for (const sub of subs) {
      const label = `subscriber ${sub.id} on P${sub.proc} (opened ${rel(sub.openedAt)})`;
      for (const e of sub.events) {
        if (e.sessionId !== s) add('c', s, e.receivedAt, `${label} got ${e.kind} about another session ${short(e.sessionId)}`);
      }
      const terminals = sub.events.filter((e) => TERMINAL_KINDS.has(e.kind));
      if (terminals.length === 0) {
        const how = sub.error ? `error ${sub.error}` : sub.closeCode !== null ? `socket closed ${sub.closeCode} at ${rel(sub.closedAt!)}` : 'still open';
        add('c', s, sub.closedAt ?? (ends ? Math.min(...ends.map((e) => e.at)) : sub.openedAt), `${label} got no terminal event (${how}; events: ${sub.events.map((e) => e.kind).join(',') || 'none'})`);
        continue;
      }
      if (terminals.length > 1) {
        add('c', s, terminals[1]!.receivedAt, `${label} got ${terminals.length} terminal events: ${terminals.map((e) => `${e.kind}/${e.reason} at ${rel(e.receivedAt)}`).join(', ')}`);
      }
      const first = terminals[0]!;
      const after = sub.events.slice(sub.events.indexOf(first) + 1).filter((e) => !TERMINAL_KINDS.has(e.kind));
      if (after.length > 0) add('c', s, after[0]!.receivedAt, `${label} got ${after.map((e) => e.kind).join(',')} after its terminal ${first.kind}`);

      const endName = endOfEvent(first);
      if (endName === 'TIMEOUT') {
        const T = first.serverTime;
        for (const w of renewals) {
          if (w.outcome.kind !== 'served' || w.answeredAt >= first.receivedAt || expiryOf(w) <= T + slack) continue;
          const excuse = renewals.find(
            (v) =>
              v !== w &&
              v.answeredAt > w.sentAt &&
              v.sentAt <= T + slack &&
              (v.outcome.kind === 'failed' || (v.outcome.kind === 'served' && expiryOf(v) <= T + slack)),
          );
          if (excuse) continue;
          add(
            'c-early',
            s,
            first.receivedAt,
            `${label} got EXPIRED/TIMEOUT with serverTime ${rel(T)} (received ${rel(first.receivedAt)}), but ${describe(w)} had set the expiry to ${rel(expiryOf(w))} and no later renewal could have shortened it`,
          );
          break;
        }
      } else {
        const cause = causeOf(endName, s);
        if (cause && !cause.some((r) => r.sentAt <= first.receivedAt)) {
          add('c', s, first.receivedAt, `${label} got ${first.kind}/${first.reason} at ${rel(first.receivedAt)} but no request that could cause it had been sent`);
        }
      }
    }

    // (d) one end, the same for everybody, and it is the stored one.
    const observed: Array<{ end: string; from: string; at: number; bySubscriber?: boolean }> = [];
    for (const sub of subs) {
      const t = sub.events.find((e) => TERMINAL_KINDS.has(e.kind) && e.sessionId === s);
      if (t) observed.push({ end: endOfEvent(t), from: `subscriber ${sub.id} on P${sub.proc} (${t.kind}/${t.reason} at ${rel(t.receivedAt)})`, at: t.receivedAt, bySubscriber: true });
    }
    const subscriberEnds = new Set(observed.map((o) => o.end));
    if (subscriberEnds.size > 1) {
      add('d', s, Math.min(...observed.map((o) => o.at)), `subscribers disagree on how ${short(s)} ended: ${observed.map((o) => `${o.end} from ${o.from}`).join('; ')}`);
    }
    for (const r of requests) {
      if (r.op !== 'login' && r.outcome.kind === 'refused' && END_CODES.has(r.outcome.code)) {
        observed.push({ end: endOfError(r.outcome.code, r.outcome.reason), from: `${describe(r)} refused ${r.outcome.code}/${r.outcome.reason}`, at: r.answeredAt });
      }
    }
    for (const r of aimedAt.get(s) ?? []) {
      if (r.outcome.kind === 'served' && r.outcome.result === true) observed.push({ end: 'REVOKED', from: `${describe(r)} answered true`, at: r.answeredAt });
    }
    const final = history.finalStates.get(s);
    if (!final) continue;
    if (final.served) {
      add('d', s, byId.get(final.requestId)?.sentAt ?? 0, `${short(s)} was still SERVED at the end of the run, after every session had been ended (final request #${final.requestId})`);
      continue;
    }
    const finalEnd = END_CODES.has(final.code) ? endOfError(final.code, final.reason) : `${final.code}`;
    for (const [rule, group] of [
      ['d', observed.filter((o) => o.bySubscriber)],
      ['d-answer', observed.filter((o) => !o.bySubscriber)],
    ] as const) {
      const disagreeing = group.filter((o) => !sameEnd(o.end, finalEnd));
      if (disagreeing.length === 0) continue;
      add(
        rule,
        s,
        disagreeing[0]!.at,
        `${short(s)} ended ${finalEnd} as stored (final query #${final.requestId}: ${final.code}/${final.reason}), but ${disagreeing
          .slice(0, 4)
          .map((o) => `${o.from} said ${o.end}`)
          .join('; ')}${disagreeing.length > 4 ? ` (+${disagreeing.length - 4} more)` : ''}`,
      );
    }
  }
  return violations.sort((x, y) => x.at - y.at);

  /** Requests that could end `s` with `end`; null when anything could (no check). */
  function causeOf(end: string, s: string): RequestRecord[] | null {
    const user = info.get(s)!.user;
    if (end === 'LOGGED_OUT') return (own.get(s) ?? []).filter((r) => r.op === 'logout' || (r.op === 'logoutAll' && !r.keepCurrent));
    if (end === 'REVOKED') {
      return [
        ...(aimedAt.get(s) ?? []),
        ...history.requests.filter((r) => r.op === 'logoutAll' && r.user === user && r.session !== s),
      ];
    }
    if (end === 'BROWSER_CLOSED') return (own.get(s) ?? []).filter((r) => r.browserClose);
    return null;
  }
}

function expiryOf(r: RequestRecord): number {
  return r.outcome.kind === 'served' && r.outcome.expiryDate !== undefined ? r.outcome.expiryDate : Number.POSITIVE_INFINITY;
}

export function short(id: string | null): string {
  return id ? `S…${id.slice(-6)}` : 'S?';
}

/** Requests and events about `session` around `at`, one line each, for a failure message. */
export function historyExcerpt(history: History, session: string | null, at: number, maxLines = 14): string[] {
  const rel = (t: number) => `+${t - history.t0}`;
  const entries: Array<{ t: number; line: string }> = [];
  const user = history.sessions.find((s) => s.id === session)?.user;
  for (const r of history.requests) {
    if (!session) continue;
    // Its own requests, revocations aimed at it, and its user's logoutAll from other sessions.
    if (r.session !== session && r.target !== session && !(r.op === 'logoutAll' && r.user === user)) continue;
    const o = r.outcome;
    const result =
      o.kind === 'served'
        ? `served${o.result !== undefined ? ` ${String(o.result)}` : ''}${o.expiryDate !== undefined ? ` exp=${rel(o.expiryDate)}` : ''}${o.serverTime !== undefined ? ` st=${rel(o.serverTime)}` : ''}`
        : o.kind === 'refused'
          ? `refused ${o.code}${o.reason ? `/${o.reason}` : ''}`
          : `failed (${o.message})`;
    const who = r.session === session ? '' : ` by ${short(r.session)}`;
    entries.push({
      t: r.sentAt,
      line: `${rel(r.sentAt)}..${rel(r.answeredAt)} P${r.proc} #${r.id} w${r.wave} ${r.op}${r.args ? `(${r.args})` : ''}${r.target && r.target !== session ? ` -> ${short(r.target)}` : ''}${who}: ${result}`,
    });
  }
  for (const sub of history.subscribers) {
    if (sub.session !== session) continue;
    entries.push({ t: sub.openedAt, line: `${rel(sub.openedAt)} P${sub.proc} subscriber ${sub.id} opened` });
    for (const e of sub.events) {
      entries.push({
        t: e.receivedAt,
        line: `${rel(e.receivedAt)} P${sub.proc} subscriber ${sub.id} got ${e.kind}${e.reason ? `/${e.reason}` : ''} (serverTime ${rel(e.serverTime)}, expiresAt ${rel(e.expiresAt)})`,
      });
    }
    if (sub.closedAt !== null) entries.push({ t: sub.closedAt, line: `${rel(sub.closedAt)} P${sub.proc} subscriber ${sub.id} socket closed ${sub.closeCode}` });
  }
  entries.sort((x, y) => x.t - y.t);
  // The entries nearest to `at`, in time order.
  let i = entries.findIndex((e) => e.t > at);
  if (i < 0) i = entries.length;
  const from = Math.max(0, Math.min(i - Math.ceil(maxLines * 0.7), entries.length - maxLines));
  return entries.slice(from, from + maxLines).map((e) => e.line);
}

/**
 * Pairs of requests on one session (as its token or as the revoked target) whose flights overlapped,
 * at least one of them a write: a measure of how much real concurrency a run produced.
 */
export function countConcurrentPairs(history: History): number {
  const WRITES = new Set<RequestOp>(['touch', 'setExpiry', 'logout', 'revoke', 'logoutAll']);
  const bySession = new Map<string, RequestRecord[]>();
  for (const r of history.requests) {
    for (const s of new Set([r.session, r.target])) {
      if (s && r.op !== 'login') (bySession.get(s) ?? bySession.set(s, []).get(s)!).push(r);
    }
  }
  let pairs = 0;
  for (const list of bySession.values()) {
    list.sort((x, y) => x.sentAt - y.sentAt);
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length && list[j]!.sentAt < list[i]!.answeredAt; j++) {
        if (WRITES.has(list[i]!.op) || WRITES.has(list[j]!.op)) pairs++;
      }
    }
  }
  return pairs;
}
