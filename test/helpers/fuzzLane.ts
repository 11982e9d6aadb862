/**
 * The fuzz test's lanes and checks. A lane is one user with one current session (and, for the
 * websocket cases, one graphql-ws socket authenticated with it) that runs one input at a time; the
 * test runs several lanes at once. After each input the lane checks, with what the server answered:
 *
 * - no HTTP status >= 500, and no INTERNAL_SERVER_ERROR (or, over graphql-ws, no field error without
 *   a code) in any answer;
 * - the server still answers (a `{ serverTime }` over HTTP, or on the same socket);
 * - every websocket stays usable or is closed by the server with a close code (not 1005/1006, not
 *   an internal-error code), within the timeout;
 * - the session's stored state is unchanged unless the input held a mutation that was accepted:
 *   every write to a session is seen where the store makes it (WriteLog), and the lane reads its
 *   session back from the store after each mutation that ran and failed and every 10 inputs;
 * - sessions of another user (the victim) are never written;
 * - one set of rules on both transports: a hostile query refused (or run) over one is refused (or
 *   run) over the other.
 *
 * A violation throws an Error whose message says which check failed and what the server sent.
 */
import { randomBytes } from 'node:crypto';
import type { Session } from '../../src/session.js';
import { login, newUserSession, type TestServer } from './server.js';
import { RawHttp, RawSocket, type HttpAnswer, type WsEnd, type WsMessage } from './fuzzClients.js';
import { fill, fillValue, type FillEnv } from './fuzzPlaceholders.js';
import { buildHostileDoc, subDocument, type HttpAuth, type HttpCase, type InitParams, type WsCase, type WsStep } from './fuzzHostile.js';
import type { FuzzOperation } from './fuzzSchema.js';

/** Outcome counts, printed by the test with FUZZ_STATS=1. */
export const stats = new Map<string, number>();
const bump = (key: string) => stats.set(key, (stats.get(key) ?? 0) + 1);

/** Before and after an input: the write counts of the lane's session and of the victim's. */
interface Mark {
  own: number;
  victim: number;
}

/** Every this many inputs a lane reads its session back from the store (besides the write log, which sees every write). */
const DIRECT_READ_EVERY = 10;
/** Every this many refused or hostile HTTP inputs a lane checks that `{ serverTime }` is still answered. */
const PROBE_EVERY = 4;
/** How long an answer may take before the server counts as hanging. */
export const ANSWER_TIMEOUT_MS = Number(process.env.FUZZ_TIMEOUT_MS ?? 10_000);
/** A session that expires sooner than this is replaced before the next input (so it cannot expire during a check). */
const MIN_SESSION_LEFT_MS = 30_000;
/** Close codes that mean the server failed rather than refused: no status, dropped connection, internal error. */
const BAD_CLOSE_CODES = new Set([1005, 1006, 1011, 4500]);
const COOKIE_NAME = 'sessionid';

/** A violated check; its stack is only its message (the stack of the test's own code says nothing). */
export class FuzzFailure extends Error {
  constructor(message: string) {
    super(message);
    this.stack = message;
  }
}
const fail = (message: string): never => {
  throw new FuzzFailure(message);
};
const excerpt = (text: string, n = 600) => (text.length > n ? `${text.slice(0, n)}… (${text.length} chars)` : text);

/** The parts of a stored session that any write changes, as canonical JSON (sorted keys, dates as ISO strings). */
function stateOf(s: Session | null): string {
  if (!s) return 'null';
  const canonical = (v: unknown): unknown =>
    v instanceof Date
      ? v.toISOString()
      : v && typeof v === 'object'
        ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])]))
        : (v ?? null);
  return JSON.stringify(canonical({ version: s.version, endedAt: s.endedAt, endReason: s.endReason, expiry: s.expiry }));
}

/**
 * Every session write this server makes, seen where it is made: SessionStore.commitMany, through
 * which every change of a session goes (sessions/service.ts `change`). A check costs no database
 * read; lanes still read the store itself now and then, and after every mutation that ran and failed.
 */
export class WriteLog {
  private readonly writes = new Map<string, { count: number; last: Session }>();

  constructor(server: TestServer) {
    const store = server.service.store as unknown as { commitMany(nexts: Session[]): Promise<boolean[]> };
    if (typeof store.commitMany !== 'function') {
      throw new Error('WriteLog: SessionStore has no commitMany any more; point test/helpers/fuzzLane.ts at the method every session write goes through');
    }
    const commitMany = store.commitMany.bind(store);
    store.commitMany = async (nexts: Session[]) => {
      const won = await commitMany(nexts);
      nexts.forEach((next, i) => {
        if (!won[i]) return;
        const seen = this.writes.get(next.id);
        this.writes.set(next.id, { count: (seen?.count ?? 0) + 1, last: next });
      });
      return won;
    };
  }

  count(id: string): number {
    return this.writes.get(id)?.count ?? 0;
  }

  last(id: string): Session | undefined {
    return this.writes.get(id)?.last;
  }
}

export interface Victim {
  username: string;
  sessionId: string;
  state: string;
}

export async function makeVictim(server: TestServer): Promise<Victim> {
  const v = await newUserSession(server);
  return { username: v.username, sessionId: v.session.id as string, state: stateOf(await server.service.store.findById(v.session.id)) };
}

export async function checkVictim(server: TestServer, victim: Victim): Promise<void> {
  const now = stateOf(await server.service.store.findById(victim.sessionId));
  if (now !== victim.state) fail(`another user's session changed: was ${victim.state}, is ${now}`);
}

/** One GraphQL result as received: an HTTP body, a graphql-ws `next` payload or `error` payload. */
interface Received {
  data?: unknown;
  errors?: unknown;
}

/** Checks every error of a result: no INTERNAL_SERVER_ERROR; over graphql-ws also no field error without a code (an exception that leaked). */
function checkErrors(where: string, result: Received, transport: 'http' | 'ws', raw: string): void {
  const errors = result.errors;
  if (errors === undefined) return;
  if (!Array.isArray(errors)) fail(`${where}: "errors" is not a list: ${excerpt(raw)}`);
  for (const e of errors as Array<{ message?: unknown; path?: unknown; extensions?: { code?: unknown } }>) {
    const code = e?.extensions?.code;
    if (process.env.FUZZ_STATS) bump(`${transport} error ${String(code)}: ${String(e?.message).replace(/"[^"]*"/g, '"…"').slice(0, 60)}`);
    if (code === 'INTERNAL_SERVER_ERROR') fail(`${where}: INTERNAL_SERVER_ERROR: ${excerpt(raw)}`);
    if (transport === 'ws' && e?.path !== undefined && code === undefined) fail(`${where}: a field error without a code (an unexpected exception): ${excerpt(raw)}`);
  }
}

/**
 * Whether a session may have changed: only when the operation that ran is a mutation (or unknown)
 * and it ran. A single mutation field that errored (data null) changed nothing; with several, the
 * ones before the error ran.
 */
function mayHaveChanged(op: FuzzOperation, results: Received[], interrupted: boolean): boolean {
  if (op.opType === 'query' || op.opType === 'subscription') return false;
  if (interrupted) return true;
  return results.some((r) => {
    if (!('data' in r) || r.data === undefined) return false;
    if (op.rootFields > 1) return true;
    return r.data !== null && Object.values(r.data as object).some((v) => v !== null);
  });
}

/** JSON text of `fields` with `"variables": <variablesJson>` added (the variables may be too deep for JSON.stringify). */
function withVariables(fields: Record<string, unknown>, variablesJson: string | undefined): string {
  const text = JSON.stringify(fields);
  return variablesJson === undefined ? text : `${text.slice(0, -1)},"variables":${variablesJson}}`;
}

/** A graphql-ws subscribe message for `op`, placeholders filled in. */
function subscribeMessage(id: string, op: FuzzOperation, env: FillEnv): string {
  const variablesJson = op.variablesJson ?? (op.variables !== undefined ? JSON.stringify(fillValue(op.variables, env)) : undefined);
  const payload = withVariables({ query: fill(op.query, env), ...(op.operationName !== undefined ? { operationName: op.operationName } : {}) }, variablesJson);
  return `{"id":${JSON.stringify(id)},"type":"subscribe","payload":${payload}}`;
}

export class Lane {
  readonly username: string;
  readonly password: string;
  token = '';
  sessionId = '';
  private state = 'null';
  private expiresAt = 0;
  /** Inputs run, for the direct store reads every DIRECT_READ_EVERY inputs. */
  private inputs = 0;
  private endedToken = 'none.none';
  private socket: RawSocket | null = null;
  private seq = 0;
  readonly wsUrl: string;

  private constructor(
    readonly server: TestServer,
    readonly victim: Victim,
    readonly http: RawHttp,
    readonly writes: WriteLog,
    account: { username: string; password: string; token: string; sessionId: string },
  ) {
    this.username = account.username;
    this.password = account.password;
    this.token = account.token;
    this.sessionId = account.sessionId;
    this.wsUrl = server.url.replace(/^http/, 'ws');
  }

  static async create(server: TestServer, victim: Victim, http: RawHttp, writes: WriteLog): Promise<Lane> {
    const { username, password, token, session } = await newUserSession(server);
    const lane = new Lane(server, victim, http, writes, { username, password, token, sessionId: session.id as string });
    await lane.snapshot();
    return lane;
  }

  env(): FillEnv {
    return { own: this.sessionId, victim: this.victim.sessionId, user: this.username, pass: this.password, victimUser: this.victim.username };
  }

  dispose(): void {
    this.socket?.close();
    this.socket = null;
  }

  // ------------------------------------------------------------ session state

  private adopt(s: Session | null): void {
    this.state = stateOf(s);
    this.expiresAt = s && !s.endedAt ? s.expiry.expiresAt.getTime() : 0;
  }

  private async snapshot(): Promise<void> {
    this.adopt(await this.server.service.store.findById(this.sessionId));
  }

  /** Before an input: a session that has ended or expires soon is replaced by a new one. Returns the write count to compare with after it. */
  async ready(): Promise<Mark> {
    if (this.expiresAt - Date.now() <= MIN_SESSION_LEFT_MS) {
      this.socket?.close();
      this.socket = null;
      // A session that is still valid (it expires soon) is ended first: inputs sent with the
      // `ended` token must not be able to act for this user (a logoutAll would revoke the next one).
      if (this.expiresAt > Date.now()) await this.server.gql('mutation { logout }', {}, { token: this.token }).catch(() => undefined);
      this.endedToken = this.token;
      bump('new session for the lane');
      const fresh = await login(this.server, this.username, this.password);
      this.token = fresh.token;
      this.sessionId = fresh.session.id as string;
      await this.snapshot();
    }
    return { own: this.writes.count(this.sessionId), victim: this.writes.count(this.victim.sessionId) };
  }

  /**
   * Runs one input; when a check fails, the lane takes the stored session as it is before the
   * error goes on (the failed input may have changed it), so that the inputs fast-check runs next
   * while shrinking are judged on their own.
   */
  private async resyncOnFailure(run: () => Promise<void>): Promise<void> {
    try {
      await run();
    } catch (err) {
      this.socket?.close();
      this.socket = null;
      await new Promise((r) => setTimeout(r, 50));
      await this.snapshot();
      throw err;
    }
  }

  /** The stored session, read from the store, is the one expected. */
  private async expectUnchanged(what: string): Promise<void> {
    const before = this.state;
    const s = await this.server.service.store.findById(this.sessionId);
    const after = stateOf(s);
    if (after !== before) {
      this.adopt(s);
      fail(`${what}\n  but the stored session changed:\n  before ${before}\n  after  ${after}\n${this.history()}`);
    }
  }

  /** This lane's last inputs, for a failure report: a write that lands late belongs to an earlier input. */
  private readonly recent: string[] = [];
  private history(): string {
    return `  this lane's inputs before it (newest last):\n${this.recent.map((r) => `    ${r}`).join('\n')}`;
  }

  /**
   * After an input: if it may have changed the session (an accepted mutation), what it wrote is
   * the new expected state; otherwise nothing may have been written, and the stored session is
   * read back after a mutation that ran and failed, and every DIRECT_READ_EVERY inputs.
   */
  private async settle(mark: Mark, what: string, outcome: { mayChange: boolean; ranAndFailed: boolean }): Promise<void> {
    this.recent.push(`${new Date().toISOString()} ${excerpt(what, 300)}`);
    if (this.recent.length > 4) this.recent.shift();
    const wrote = this.writes.count(this.sessionId) !== mark.own;
    if (this.writes.count(this.victim.sessionId) !== mark.victim) {
      fail(`${what}: another user's session was written: ${stateOf(this.writes.last(this.victim.sessionId) ?? null)}`);
    }
    bump(outcome.mayChange ? (wrote ? 'accepted, wrote the session' : 'accepted, no write to the session') : outcome.ranAndFailed ? 'mutation ran and failed' : 'refused or read-only');
    if (outcome.mayChange) {
      if (wrote) this.adopt(this.writes.last(this.sessionId)!);
      return;
    }
    if (wrote) {
      const before = this.state;
      this.adopt(this.writes.last(this.sessionId)!);
      fail(`${what}\n  but the session was written:\n  before ${before}\n  after  ${this.state}\n${this.history()}`);
    }
    if (outcome.ranAndFailed || ++this.inputs % DIRECT_READ_EVERY === 0) await this.expectUnchanged(what);
  }

  private async afterOperation(mark: Mark, op: FuzzOperation, results: Received[], interrupted: boolean, what: string): Promise<void> {
    const mayChange = mayHaveChanged(op, results, interrupted);
    const ran = results.some((r) => 'data' in r && r.data !== undefined);
    const ranAndFailed = ran && op.opType !== 'query' && op.opType !== 'subscription' && results.some((r) => r.errors !== undefined);
    await this.settle(mark, `${what} was refused or changes nothing (${excerpt(JSON.stringify(results), 400)})`, { mayChange, ranAndFailed });
    if (interrupted && mayChange) {
      // The socket closed under a mutation: it may still be running. Its outcome, whatever it
      // is, is the new expected state, taken once it has had time to land.
      await new Promise((r) => setTimeout(r, 200));
      await this.snapshot();
    }
  }

  // ------------------------------------------------------------ HTTP

  private authHeaders(auth: HttpAuth): Record<string, string> {
    switch (auth) {
      case 'lane':
        return { authorization: `Bearer ${this.token}` };
      case 'none':
        return {};
      case 'garbage':
        return { authorization: `Bearer ${randomBytes(8).toString('hex')}` };
      case 'wrongSecret':
        return { authorization: `Bearer ${this.sessionId}.${randomBytes(32).toString('base64url')}` };
      case 'lowerBearer':
        return { authorization: `bearer ${this.token}` };
      case 'cookie':
        return { cookie: `${COOKIE_NAME}=${this.token}` };
      case 'cookieAndGarbageBearer':
        return { cookie: `${COOKIE_NAME}=${this.token}`, authorization: 'Bearer nope.nope' };
      case 'basic':
        return { authorization: `Basic ${Buffer.from(`${this.username}:${this.password}`).toString('base64')}` };
      case 'ended':
        return { authorization: `Bearer ${this.endedToken}` };
    }
  }

  private async send(what: string, req: Parameters<RawHttp['request']>[0]): Promise<HttpAnswer> {
    try {
      return await this.http.request(req, ANSWER_TIMEOUT_MS);
    } catch (err) {
      return fail(`${what}: no HTTP answer (${(err as Error).message})`);
    }
  }

  private checkHttp(what: string, ans: HttpAnswer, expect: { jsonBody?: boolean; status?: number[] } = {}): Received | null {
    bump(`HTTP ${ans.status}`);
    if (ans.status >= 500) fail(`${what}: HTTP ${ans.status}: ${excerpt(ans.text)}`);
    if (expect.status && !expect.status.includes(ans.status)) fail(`${what}: HTTP ${ans.status}, expected ${expect.status.join(' or ')}: ${excerpt(ans.text)}`);
    // 431 (headers too large) comes from Node's HTTP parser before the application sees the request.
    if (expect.jsonBody !== false && ans.json === undefined && ans.status !== 431) {
      fail(`${what}: HTTP ${ans.status} with a body that is not JSON (${ans.contentType || 'no content-type'}): ${excerpt(ans.text)}`);
    }
    if (ans.json && typeof ans.json === 'object' && !Array.isArray(ans.json)) {
      const result = ans.json as Received;
      checkErrors(what, result, 'http', ans.text);
      return result;
    }
    return null;
  }

  private refusals = 0;
  /**
   * The server still answers a trivial query: after every PROBE_EVERY-th refused or hostile input
   * (the next input of the lane would show it too, one input late). A crash of the in-process
   * server ends the whole test anyway; this is for a server that stops answering.
   */
  async probeHttp(after: string): Promise<void> {
    if (++this.refusals % PROBE_EVERY !== 0) return;
    const ans = await this.send(`{ serverTime } after ${after}`, {
      headers: { 'content-type': 'application/json' },
      body: '{"query":"{ serverTime }"}',
    });
    if (ans.status !== 200 || typeof ans.json?.data?.serverTime !== 'string') {
      fail(`the server no longer answers { serverTime } after ${after}: HTTP ${ans.status} ${excerpt(ans.text)}`);
    }
  }

  /** A generated (or hostile) operation over HTTP: POST JSON, or GET with the query in the URL. */
  async httpOperation(op: FuzzOperation, auth: HttpAuth, via: 'post' | 'get' | 'getPreflight'): Promise<void> {
    return this.resyncOnFailure(() => this.httpOperationUnchecked(op, auth, via));
  }

  private async httpOperationUnchecked(op: FuzzOperation, auth: HttpAuth, via: 'post' | 'get' | 'getPreflight'): Promise<void> {
    const mark = await this.ready();
    const env = this.env();
    const query = fill(op.query, env);
    const variables = fillValue(op.variables, env);
    const variablesJson = op.variablesJson ?? (op.variables !== undefined ? JSON.stringify(variables) : undefined);
    const headers = this.authHeaders(auth);
    let ans: HttpAnswer;
    const what = `${via === 'post' ? 'POST' : 'GET'} ${op.opType} (${auth})`;
    if (via === 'post') {
      const body = withVariables({ query, ...(op.operationName !== undefined ? { operationName: op.operationName } : {}) }, variablesJson);
      ans = await this.send(what, { headers: { ...headers, 'content-type': 'application/json' }, body });
    } else {
      const params = new URLSearchParams({ query });
      if (variablesJson !== undefined) params.set('variables', variablesJson);
      if (typeof op.operationName === 'string') params.set('operationName', op.operationName);
      ans = await this.send(what, {
        method: 'GET',
        path: `${this.http.origin.pathname}?${params}`,
        headers: { ...headers, ...(via === 'getPreflight' ? { 'apollo-require-preflight': 'true' } : {}) },
      });
    }
    const result = this.checkHttp(what, ans);
    if (result && Array.isArray(result.errors) && !('data' in result) && ans.status !== 400) {
      // A document that does not parse or validate is the client's mistake: 400.
      const codes = (result.errors as Array<{ extensions?: { code?: string } }>).map((e) => e?.extensions?.code);
      if (codes.includes('GRAPHQL_PARSE_FAILED') || codes.includes('GRAPHQL_VALIDATION_FAILED')) fail(`${what}: HTTP ${ans.status} for an invalid document, expected 400: ${excerpt(ans.text)}`);
    }
    await this.afterOperation(mark, op, result ? [result] : [], false, what);
    if (ans.status !== 200) await this.probeHttp(what);
  }

  /** A hostile HTTP request. A few of the bodies hold a mutation that may run: the answer decides, as for operations. */
  async httpCase(c: HttpCase): Promise<void> {
    return this.resyncOnFailure(() => this.httpCaseUnchecked(c));
  }

  private async httpCaseUnchecked(c: HttpCase): Promise<void> {
    if (c.k === 'doc') {
      await this.httpOperation(buildHostileDoc(c.doc), c.auth, 'post');
      await this.probeHttp(`hostile document ${c.doc.h}`);
      return;
    }
    const mark = await this.ready();
    const env = this.env();
    const auth = { authorization: `Bearer ${this.token}` };
    const json = { 'content-type': 'application/json' };
    const ping = '{"query":"{ session { id } }"}';
    let ans: HttpAnswer;
    let what: string;
    /** What the server answered as a GraphQL result, when it did (some of these bodies hold a mutation that may run). */
    let result: Received | null = null;
    switch (c.k) {
      case 'body': {
        const body = fill(c.body, env);
        what = `POST body ${JSON.stringify(excerpt(c.body, 80))} as ${c.contentType}`;
        ans = await this.send(what, { headers: { ...auth, 'content-type': c.contentType }, body });
        let parses = true;
        try {
          JSON.parse(body.replace(/^\ufeff/, '')); // body-parser skips a byte order mark
        } catch {
          parses = false;
        }
        // Brief: a body that is not JSON is answered 400 (and, as every answer, in JSON).
        result = this.checkHttp(what, ans, !parses && c.contentType === 'application/json' && body.trim() !== '' ? { status: [400] } : {});
        break;
      }
      case 'bytes':
        what = `POST bytes ${c.hex} as application/json`;
        ans = await this.send(what, { headers: { ...auth, ...json }, body: Buffer.from(c.hex, 'hex') });
        result = this.checkHttp(what, ans);
        break;
      case 'contentType': {
        what = `POST { session { id } } with content-type ${c.contentType ?? '(none)'}`;
        ans = await this.send(what, { headers: { ...auth, ...(c.contentType !== null ? { 'content-type': c.contentType } : {}) }, body: ping });
        result = this.checkHttp(what, ans);
        break;
      }
      case 'method': {
        const query = c.query === null ? null : fill(c.query, env);
        const path = query === null ? this.http.origin.pathname : `${this.http.origin.pathname}?${new URLSearchParams({ query })}`;
        what = `${c.method} ${excerpt(path, 100)}${c.preflight ? ' with apollo-require-preflight' : ''}`;
        ans = await this.send(what, { method: c.method, path, headers: { ...auth, ...(c.preflight ? { 'apollo-require-preflight': 'true' } : {}) } });
        // HEAD has no body; anything else answers JSON.
        result = this.checkHttp(what, ans, { jsonBody: c.method !== 'HEAD' });
        if (c.query && /^(mutation|subscription)/.test(c.query) && result && 'data' in result && result.data) {
          fail(`${what}: a ${c.query.split(' ')[0]} ran over ${c.method}: ${excerpt(ans.text)}`);
        }
        break;
      }
      case 'batch': {
        const ops = Array.from({ length: c.n }, (_, i) => (i % 2 ? { query: '{ session { id } }' } : { query: 'mutation { touch { id } }' }));
        what = `a batch of ${c.n} operations`;
        ans = await this.send(what, { headers: { ...auth, ...json }, body: JSON.stringify(ops) });
        result = this.checkHttp(what, ans);
        // Batching is off: none of the touches may have run.
        if (Array.isArray(ans.json)) fail(`${what}: answered as a batch: ${excerpt(ans.text)}`);
        break;
      }
      case 'oversize': {
        const pad = Math.max(0, c.bytes - 60);
        const body = `{"query":"{ session { id } }","variables":{"pad":"${'x'.repeat(pad)}"}}`;
        what = `a ${body.length}-byte body${c.chunked ? ' (chunked)' : ''}`;
        ans = await this.send(what, { headers: { ...auth, ...json }, body, chunked: c.chunked });
        result = this.checkHttp(what, ans, body.length > 65_536 ? { status: [413] } : {});
        break;
      }
      case 'deepJson': {
        const [open, close] = c.shape === 'array' ? ['[', ']'] : ['{"a":', '}'];
        const body = `{"query":"{ session { id } }","variables":{"v":${open.repeat(c.depth)}1${close.repeat(c.depth)}}}`;
        what = `variables nested ${c.depth} deep (${c.shape}s, ${body.length} bytes)`;
        ans = await this.send(what, { headers: { ...auth, ...json }, body });
        result = this.checkHttp(what, ans);
        break;
      }
      case 'headers': {
        const value = fill(c.value, env);
        what = `POST { session { id } } with ${c.name}: ${excerpt(c.value, 60)}`;
        const headers: Record<string, string> = { ...auth, ...json, [c.name]: value };
        ans = await this.send(what, { headers, body: ping });
        result = this.checkHttp(what, ans);
        break;
      }
      case 'path':
        what = `POST ${c.path}`;
        ans = await this.send(what, { path: c.path, headers: { ...auth, ...json }, body: ping });
        // Outside /graphql, Express's own 404 page is fine.
        result = this.checkHttp(what, ans, { jsonBody: false });
        break;
    }
    const raw: FuzzOperation = { query: '', opType: 'unknown', rootFields: 1 };
    await this.afterOperation(mark, raw, result ? [result] : [], false, `${what!} (HTTP ${ans!.status})`);
    await this.probeHttp(what!);
  }

  // ------------------------------------------------------------ websockets

  private initPayload(params: InitParams): string {
    const t = this.token;
    const payload = (p: unknown) => JSON.stringify({ type: 'connection_init', payload: p });
    switch (params) {
      case 'token':
        return payload({ token: t });
      case 'authToken':
        return payload({ authToken: t });
      case 'authorization':
        return payload({ Authorization: `Bearer ${t}` });
      case 'lowerBearer':
        return payload({ authorization: `bearer ${t}` });
      case 'none':
        return payload({});
      case 'garbage':
        return payload({ token: 'garbage' });
      case 'wrongSecret':
        return payload({ token: `${this.sessionId}.${randomBytes(32).toString('base64url')}` });
      case 'numberToken':
        return payload({ token: 12345 });
      case 'arrayPayload':
        return payload([t]);
      case 'stringPayload':
        return payload(t);
      case 'nullPayload':
        return payload(null);
      case 'hugeToken':
        return payload({ token: `${t}${'x'.repeat(100_000)}` });
      case 'protoToken':
        return `{"type":"connection_init","payload":{"__proto__":{"token":"${t}"}}}`;
      case 'ended':
        return payload({ token: this.endedToken });
    }
  }

  private checkEnd(what: string, end: WsEnd): void {
    bump(end.clientAbort ? 'websocket refused by the client' : end.httpStatus ? `websocket upgrade HTTP ${end.httpStatus}` : `websocket closed ${end.code}`);
    if (end.clientAbort) return;
    if (end.httpStatus !== undefined) {
      if (end.httpStatus >= 500) fail(`${what}: the upgrade was answered HTTP ${end.httpStatus}`);
      return;
    }
    if (BAD_CLOSE_CODES.has(end.code)) fail(`${what}: the server closed the socket with ${end.code} ${JSON.stringify(end.reason)}`);
  }

  private checkMessages(what: string, sock: RawSocket): void {
    if (sock.garbage.length) fail(`${what}: the server sent a message that is not a JSON object: ${excerpt(sock.garbage[0]!)}`);
    for (const m of sock.all()) {
      if (m.type === 'next') checkErrors(what, (m.payload ?? {}) as Received, 'ws', JSON.stringify(m));
      if (m.type === 'error') checkErrors(what, { errors: m.payload }, 'ws', JSON.stringify(m));
    }
  }

  /** Sends connection_init and waits for the ack; false when the server closed the socket instead. */
  private async init(sock: RawSocket, what: string, text: string): Promise<boolean> {
    sock.send(text);
    const answered = await sock.until(() => sock.ended !== null || sock.acked, ANSWER_TIMEOUT_MS);
    if (!answered) fail(`${what}: connection_init neither acknowledged nor refused within ${ANSWER_TIMEOUT_MS} ms (a half-open socket)`);
    return sock.ended === null;
  }

  private async openSocket(what: string, url: string, options: ConstructorParameters<typeof RawSocket>[1]): Promise<RawSocket> {
    const sock = new RawSocket(url, options);
    const opened = await sock.opening(ANSWER_TIMEOUT_MS);
    if (!opened && !sock.ended) {
      sock.terminate();
      fail(`${what}: the websocket upgrade was neither accepted nor refused within ${ANSWER_TIMEOUT_MS} ms`);
    }
    if (sock.ended) this.checkEnd(what, sock.ended);
    return sock;
  }

  /** The lane's own graphql-ws socket, authenticated with its session (opened again when the server closed it). */
  private async laneSocket(): Promise<RawSocket> {
    if (this.socket?.isOpen) return this.socket;
    this.socket?.close();
    const what = 'opening the lane socket with a valid token';
    const sock = await this.openSocket(what, this.wsUrl, { protocols: 'graphql-transport-ws' });
    if (!sock.ended && !(await this.init(sock, what, this.initPayload('token')))) {
      fail(`${what}: refused with ${sock.ended!.code} ${sock.ended!.reason}`);
    }
    if (sock.ended) fail(`${what}: refused (${JSON.stringify(sock.ended)})`);
    this.socket = sock;
    return sock;
  }

  /**
   * Runs `op` on `sock` followed by a `{ serverTime }` on the same socket: waits until both have
   * answered or the socket was closed, and fails when neither happens in time.
   */
  private async runOnSocket(sock: RawSocket, op: FuzzOperation, what: string): Promise<{ results: Received[]; interrupted: boolean }> {
    const env = this.env();
    const id = `op${++this.seq}`;
    const probe = `probe${this.seq}`;
    sock.send(subscribeMessage(id, op, env));
    sock.json({ id: probe, type: 'subscribe', payload: { query: '{ serverTime }' } });
    // A subscription that is accepted answers nothing until an event: only its refusal is waited for.
    const longLived = op.opType === 'subscription';
    const answered = await sock.until(() => sock.ended !== null || (sock.finished(probe) && (longLived || sock.finished(id))), ANSWER_TIMEOUT_MS);
    if (!answered) {
      const seen = JSON.stringify(sock.messages.slice(-4));
      sock.terminate();
      fail(`${what}: neither an answer nor a close within ${ANSWER_TIMEOUT_MS} ms (a half-open socket); last messages ${excerpt(seen, 300)}`);
    }
    if (!sock.ended && longLived && !sock.finished(id)) {
      // A subscription that was accepted stays open: give a refusal a moment to arrive, then stop it.
      await sock.until(() => sock.ended !== null || sock.finished(id), 25);
      if (!sock.ended && !sock.finished(id)) sock.json({ id, type: 'complete' });
    }
    this.checkMessages(what, sock);
    if (sock.ended) this.checkEnd(what, sock.ended);
    else {
      const pong = sock.about(probe).find((m) => m.type === 'next');
      if (typeof pong?.payload?.data?.serverTime !== 'string') fail(`${what}: the socket no longer answers { serverTime }: ${excerpt(JSON.stringify(sock.about(probe)))}`);
    }
    const results: Received[] = sock
      .about(id)
      .flatMap((m: WsMessage) => (m.type === 'next' ? [m.payload as Received] : m.type === 'error' ? [{ errors: m.payload }] : []));
    const interrupted = sock.ended !== null && !sock.finished(id);
    sock.forget(id);
    sock.forget(probe);
    return { results, interrupted };
  }

  /** A generated (or hostile) operation over graphql-ws: on the lane's socket, or on a new one authenticated some other way. */
  async wsOperation(op: FuzzOperation, params: InitParams | 'lane', sameVerdictOverHttp = false): Promise<void> {
    return this.resyncOnFailure(() => this.wsOperationUnchecked(op, params, sameVerdictOverHttp));
  }

  private async wsOperationUnchecked(op: FuzzOperation, params: InitParams | 'lane', sameVerdictOverHttp = false): Promise<void> {
    const mark = await this.ready();
    const what = `graphql-ws ${op.opType} (${params})`;
    let sock: RawSocket;
    if (params === 'lane') sock = await this.laneSocket();
    else {
      sock = await this.openSocket(what, this.wsUrl, { protocols: 'graphql-transport-ws' });
      if (!sock.ended) await this.init(sock, what, this.initPayload(params));
    }
    try {
      let outcome: { results: Received[]; interrupted: boolean } = { results: [], interrupted: false };
      if (!sock.ended) outcome = await this.runOnSocket(sock, op, what);
      else this.checkEnd(what, sock.ended);
      await this.afterOperation(mark, op, outcome.results, outcome.interrupted, what);
      const size = fill(op.query, this.env()).length + (op.variablesJson?.length ?? 0);
      // Near the 64 KiB message limit the two transports' envelopes differ by a few bytes: not compared there.
      if (sameVerdictOverHttp && params === 'lane' && op.opType === 'query' && (size < 60_000 || size > 70_000)) {
        // One set of rules on both transports (issue 9, item 1): a query refused before it runs over
        // one transport (limits, validation, size) is refused over the other, and one that runs, runs.
        const overWs = outcome.results.some((r) => 'data' in r && r.data !== undefined) ? 'runs' : 'is refused';
        const env = this.env();
        const ans = await this.send(`${what}, then over HTTP`, {
          headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
          body: withVariables({ query: fill(op.query, env), ...(op.operationName !== undefined ? { operationName: op.operationName } : {}) }, op.variablesJson ?? (op.variables !== undefined ? JSON.stringify(fillValue(op.variables, env)) : undefined)),
        });
        const overHttp = ans.json && typeof ans.json === 'object' && 'data' in ans.json ? 'runs' : 'is refused';
        if (overWs !== overHttp) {
          const wsSaw = sock.ended && !outcome.results.length ? `closed ${sock.ended.code} ${sock.ended.reason}` : JSON.stringify(outcome.results);
          fail(`the transports disagree: the query ${overWs} over graphql-ws (${excerpt(wsSaw, 300)}) but ${overHttp} over HTTP (HTTP ${ans.status} ${excerpt(ans.text, 300)})`);
        }
      }
    } finally {
      if (params !== 'lane') sock.close();
      else if (sock.ended) this.socket = null;
    }
  }

  /** A hostile message sequence on a new socket, then the check that it is usable or closed with a code. */
  async wsCase(c: WsCase): Promise<void> {
    return this.resyncOnFailure(() => this.wsCaseUnchecked(c));
  }

  private async wsCaseUnchecked(c: WsCase): Promise<void> {
    const mark = await this.ready();
    const protocols =
      c.protocol === 'none' ? [] : c.protocol === 'both' ? ['graphql-ws', 'graphql-transport-ws'] : c.protocol === 'bogus' ? ['bogus', 'graphql'] : c.protocol;
    const headers: Record<string, string> = {};
    if (c.cookie) headers.cookie = `${COOKIE_NAME}=${this.token}`;
    if (c.origin) headers.origin = c.origin === 'evil' ? 'https://evil.example' : 'null';
    const base = this.wsUrl.replace(/\/graphql$/, '');
    const what = `websocket ${c.path} (${c.protocol}${c.cookie ? ', cookie' : ''}${c.origin ? `, origin ${c.origin}` : ''})`;
    const sock = await this.openSocket(what, base + c.path, { protocols, headers });
    try {
      let initSent = false;
      for (const step of c.steps) {
        if (sock.ended) break;
        if (step.s === 'init') initSent = true;
        await this.step(sock, step, what);
      }
      if (!sock.ended) {
        // Usable or closed: a `{ serverTime }` (after connection_init, if none was sent) must be answered or the socket closed.
        if (!initSent) await this.init(sock, what, this.initPayload('token'));
        if (!sock.ended) {
          const probe = `probe${++this.seq}`;
          sock.json({ id: probe, type: 'subscribe', payload: { query: '{ serverTime }' } });
          const answered = await sock.until(() => sock.ended !== null || sock.finished(probe), ANSWER_TIMEOUT_MS);
          if (!answered) fail(`${what}: after ${c.steps.length} messages neither answers { serverTime } nor is closed within ${ANSWER_TIMEOUT_MS} ms (a half-open socket)`);
          if (!sock.ended) {
            const pong = sock.about(probe).find((m) => m.type === 'next');
            if (typeof pong?.payload?.data?.serverTime !== 'string') fail(`${what}: { serverTime } on a usable socket answered ${excerpt(JSON.stringify(sock.about(probe)))}`);
          }
        }
      }
      this.checkMessages(what, sock);
      if (sock.ended) this.checkEnd(what, sock.ended);
    } finally {
      sock.close();
    }
    await this.settle(mark, `${what}: a message sequence without mutations (${sock.ended ? `closed ${sock.ended.code} ${sock.ended.reason}` : 'socket usable'})`, {
      mayChange: false,
      ranAndFailed: false,
    });
  }

  private async step(sock: RawSocket, step: WsStep, what: string): Promise<void> {
    const env = this.env();
    switch (step.s) {
      case 'init':
        await this.init(sock, what, this.initPayload(step.params));
        return;
      case 'raw':
        sock.send(step.text);
        return;
      case 'sub': {
        sock.send(subscribeMessage(step.id, subDocument(step.doc), env));
        return;
      }
      case 'complete':
        sock.json({ id: step.id, type: 'complete' });
        return;
      case 'ping':
        sock.json({ type: 'ping' });
        return;
      case 'pong':
        sock.json({ type: 'pong' });
        return;
      case 'big':
        sock.json({ id: `big${++this.seq}`, type: 'subscribe', payload: { query: `{ serverTime }${' '.repeat(step.bytes)}` } });
        return;
      case 'binary':
        sock.send(Buffer.from(step.text, 'utf8'), true);
        return;
      case 'pause':
        await new Promise((r) => setTimeout(r, step.ms));
        return;
    }
  }
}

