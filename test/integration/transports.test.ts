// One set of rules for HTTP and graphql-ws: the same limits, masking, credentials and clear errors on
// both, and the websocket caps (operations per socket, sockets per session, unauthenticated sockets
// per address).
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import mongoose from 'mongoose';
import type { Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { errorCode, eventually, login, newUserSession, overSocket, sleep, startTestServer, testDatabaseUri, type GqlResponse, type TestServer, type WsResult } from '../helpers/server.js';

const wsCode = (res: WsResult) => res.errors?.[0]?.extensions?.code;

/** A raw websocket's close code, once it closes (or 'open' after `ms`). */
function closeOf(ws: WebSocket, ms = 5000): Promise<number | 'open'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('open'), ms);
    ws.on('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

function rawSocket(server: TestServer, headers: Record<string, string> = {}): WebSocket {
  const ws = new WebSocket(server.url.replace(/^http/, 'ws'), 'graphql-transport-ws', { headers });
  ws.on('error', () => {});
  return ws;
}

const opened = (ws: WebSocket) => new Promise<void>((resolve, reject) => {
  ws.once('open', () => resolve());
  ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
});

/** Sends connection_init (with `payload`, if any) on an open socket; its answer: the first message's type, or the close code if it closes first. */
function initAnswer(ws: WebSocket, payload?: unknown): Promise<string | number> {
  const first = new Promise<string>((resolve) => ws.once('message', (data) => resolve(JSON.parse(String(data)).type)));
  ws.send(JSON.stringify(payload === undefined ? { type: 'connection_init' } : { type: 'connection_init', payload }));
  return Promise.race([first, closeOf(ws)]);
}

/** 16 aliases: one over the limit of 15. */
const ALIASES = `{ ${Array.from({ length: 16 }, (_, i) => `a${i}: serverTime`).join(' ')} }`;
/** Over the 1 000-token limit, and still valid GraphQL. */
const TOKENS = `{ ${Array.from({ length: 1_100 }, () => '__typename').join(' ')} }`;
/** 51 directives: one over the limit of 50. */
const DIRECTIVES = `{ serverTime ${'@include(if: true) '.repeat(51)}}`;

describe.each([
  ['development', 'test'],
  ['production', 'production'],
])('the same rules on both transports (%s)', (_label, env) => {
  let server: TestServer;
  let token: string;
  let client: Client;
  beforeAll(async () => {
    server = await startTestServer({ NODE_ENV: env });
    ({ token } = await newUserSession(server));
    client = server.wsClient(token);
  });
  afterAll(async () => {
    await client?.dispose();
    await server?.stop();
  });

  const both = async (query: string) => ({ http: await server.gql(query, {}, { token }), ws: await overSocket(client, query) });

  it('refuses too many aliases with GRAPHQL_VALIDATION_FAILED (HTTP 400) on both', async () => {
    const { http, ws } = await both(ALIASES);
    expect([http.status, errorCode(http), wsCode(ws)]).toEqual([400, 'GRAPHQL_VALIDATION_FAILED', 'GRAPHQL_VALIDATION_FAILED']);
  });

  it('refuses a document over the token limit with GRAPHQL_PARSE_FAILED (HTTP 400) on both', async () => {
    const { http, ws } = await both(TOKENS);
    expect([http.status, errorCode(http), wsCode(ws)]).toEqual([400, 'GRAPHQL_PARSE_FAILED', 'GRAPHQL_PARSE_FAILED']);
  });

  it('answers a syntax error with GRAPHQL_PARSE_FAILED (HTTP 400) on both, and the socket stays usable', async () => {
    const { http, ws } = await both('{ session { id ');
    expect([http.status, errorCode(http), wsCode(ws)]).toEqual([400, 'GRAPHQL_PARSE_FAILED', 'GRAPHQL_PARSE_FAILED']);
    expect((await overSocket(client, '{ session { id } }')).data.session.id).toBeTruthy();
  });

  it('refuses too many directives with GRAPHQL_VALIDATION_FAILED (HTTP 400) on both', async () => {
    const { http, ws } = await both(DIRECTIVES);
    expect([http.status, errorCode(http), wsCode(ws)]).toEqual([400, 'GRAPHQL_VALIDATION_FAILED', 'GRAPHQL_VALIDATION_FAILED']);
  });

  it('refuses a subscription whose root field is conditional (graphql-js would crash on it) on both', async () => {
    const { http, ws } = await both('subscription { sessionEvents @skip(if: true) { kind } }');
    expect([http.status, errorCode(http), wsCode(ws)]).toEqual([400, 'GRAPHQL_VALIDATION_FAILED', 'GRAPHQL_VALIDATION_FAILED']);
    expect((await overSocket(client, '{ serverTime }')).data.serverTime).toBeTruthy();
  });

  it('answers an unknown operation name and bad variables over graphql-ws as HTTP does', async () => {
    const unknown = await overSocket(client, 'query A { serverTime }', {});
    expect(unknown.data.serverTime).toBeTruthy();
    const TWO = 'query A { serverTime } query B { serverTime }';
    for (const operationName of ['C', undefined]) {
      const named = await new Promise<WsResult>((resolve) => {
        client.subscribe({ query: TWO, operationName }, { next: (value) => resolve(value as WsResult), error: (errors) => resolve({ errors: errors as WsResult['errors'] }), complete() {} });
      });
      const http = await fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query: TWO, operationName }) });
      const httpCode = ((await http.json()) as { errors: Array<{ extensions: { code: string } }> }).errors[0]!.extensions.code;
      expect([http.status, httpCode, wsCode(named)]).toEqual([400, 'OPERATION_RESOLUTION_FAILURE', 'OPERATION_RESOLUTION_FAILURE']);
    }
    const badVariable = await overSocket(client, 'mutation($s: Int) { setExpiry(seconds: $s) { id } }', { s: 'ten' });
    expect(wsCode(badVariable)).toBe('BAD_USER_INPUT');
  });

  it('answers BAD_USER_INPUT, on both, to a null given for a required argument through a variable with a default', async () => {
    // Valid GraphQL (a variable with a default may stand where a value is required), refused by
    // graphql-js only as it executes: it answered INTERNAL_SERVER_ERROR (found by the fuzz test).
    const query = 'mutation($p: String = "correct horse battery") { register(password: $p, username: "nullpassword") { id } }';
    const http = await server.gql(query, { p: null });
    const ws = await overSocket(client, query, { p: null });
    expect([errorCode(http), wsCode(ws)]).toEqual(['BAD_USER_INPUT', 'BAD_USER_INPUT']);
    expect(ws.errors![0]!.message).toBe(http.errors![0]!.message);
    expect(http.errors![0]!.message).toBe('Argument "password" of non-null type "String!" must not be null.');
  });

  it(env === 'production' ? 'refuses introspection and names no field in errors, on both' : 'allows introspection and suggests fields, on both', async () => {
    const introspection = await both('{ __schema { queryType { name } } }');
    const typo = await both('{ sesion { id } }');
    if (env === 'production') {
      expect([errorCode(introspection.http), wsCode(introspection.ws)]).toEqual(['GRAPHQL_VALIDATION_FAILED', 'GRAPHQL_VALIDATION_FAILED']);
      expect(typo.http.errors![0]!.message).not.toMatch(/Did you mean/);
      expect(typo.ws.errors![0]!.message).not.toMatch(/Did you mean/);
    } else {
      expect(introspection.http.data.__schema.queryType.name).toBe('Query');
      expect(introspection.ws.data.__schema.queryType.name).toBe('Query');
      expect(typo.http.errors![0]!.message).toMatch(/Did you mean "session"/);
      expect(typo.ws.errors![0]!.message).toMatch(/Did you mean "session"/);
    }
    expect(typo.ws.errors![0]!.message).toBe(typo.http.errors![0]!.message);
  });
});

describe('errors that say what happened', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ HTTP_REQUEST_TIMEOUT: '1' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a subscription sent over HTTP is a 400 that says to use the websocket, and logs nothing at error level', async () => {
    const { token } = await newUserSession(server);
    const res = await server.gql('subscription { sessionEvents { kind } }', {}, { token });
    expect(res.status).toBe(400);
    expect(errorCode(res)).toBe('BAD_REQUEST');
    expect(res.errors![0]!.message).toMatch(/graphql-ws/);
    expect(server.logs.filter((line) => JSON.parse(line).level >= 50)).toEqual([]);
  });

  it('a malformed JSON body is a 400 with a JSON error, no stack, no HTML', async () => {
    const res = await fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query": "{ serverTime }"' });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    const body = (await res.json()) as GqlResponse<unknown>;
    expect(body.errors![0]!.extensions!.code).toBe('BAD_REQUEST');
    expect(JSON.stringify(body)).not.toMatch(/at .*\.js|<html/i);
    const logged = server.logs.filter((line) => line.includes('refused an HTTP request body'));
    expect(logged).toHaveLength(1);
    expect(logged[0]).not.toMatch(/stack/);
  });

  it('reads the Bearer scheme case-insensitively', async () => {
    const { token } = await newUserSession(server);
    for (const scheme of ['bearer', 'BEARER', 'Bearer']) {
      const res = await server.gql('{ session { id } }', {}, { headers: { authorization: `${scheme} ${token}` } });
      expect(res.errors).toBeUndefined();
    }
  });

  it('a logout by Bearer token leaves the cookie of another session alone; by cookie it clears it', async () => {
    const a = await newUserSession(server);
    const b = await newUserSession(server);
    const byBearer = await server.gql('mutation { logout }', {}, { token: a.token, headers: { cookie: `sessionid=${b.token}` } });
    expect(byBearer.data).toEqual({ logout: true });
    expect(byBearer.headers.get('set-cookie')).toBeNull();
    expect((await server.gql('{ session { id } }', {}, { token: b.token })).errors).toBeUndefined();
    const byCookie = await server.gql('mutation { logout }', {}, { headers: { cookie: `sessionid=${b.token}` } });
    expect(byCookie.headers.get('set-cookie')).toMatch(/^sessionid=;.*Max-Age=0/);
  });

  it('a socket that holds no subscription closes with 4401 when its session is logged out or expires', async () => {
    for (const end of ['logout', 'expiry'] as const) {
      const { token } = await newUserSession(server, { seconds: end === 'expiry' ? 1 : 300 });
      const closed = new Promise<number>((resolve) => {
        // A query that has completed: the socket is open and holds no subscription.
        server.wsClient(token, { onClosed: resolve }).subscribe({ query: '{ serverTime }' }, { next() {}, error() {}, complete() {} });
      });
      await sleep(200);
      if (end === 'logout') await server.gql('mutation { logout }', {}, { token });
      expect(await Promise.race([closed, sleep(4000).then(() => 'still open')])).toBe(4401);
    }
  });

  it('a request body sent too slowly is cut off at HTTP_REQUEST_TIMEOUT', async () => {
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => (answer += String(chunk)));
    const ended = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
    const start = Date.now();
    socket.write('POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"query":');
    const at = await Promise.race([ended, sleep(6000).then(() => null)]);
    socket.destroy();
    expect(at).not.toBeNull();
    expect(at! - start).toBeLessThan(4000);
    expect(answer).toMatch(/^HTTP\/1.1 408/);
  });
});

/** A test server whose reads of the sessions collection are watched as its driver sends and answers them. */
async function serverWatchingSessionReads(env: Record<string, string>) {
  const uri = new URL(testDatabaseUri());
  uri.searchParams.set('monitorCommands', 'true');
  const server = await startTestServer(env, uri.toString());
  /** Reads in flight, the most at once, and how many started. */
  const reads = { inFlight: new Set<number>(), most: 0, started: 0 };
  const client = mongoose.connections.find((c) => c.name === uri.pathname.slice(1))!.getClient();
  client.on('commandStarted', (e) => {
    if (e.commandName !== 'find' || e.command.find !== 'sessions') return;
    reads.started++;
    reads.inFlight.add(e.requestId);
    reads.most = Math.max(reads.most, reads.inFlight.size);
  });
  const done = (e: { requestId: number }) => reads.inFlight.delete(e.requestId);
  client.on('commandSucceeded', done);
  client.on('commandFailed', done);
  return { server, reads };
}

describe('a wave of token reads over both transports', () => {
  let server: TestServer;
  let reads: Awaited<ReturnType<typeof serverWatchingSessionReads>>['reads'];
  beforeAll(async () => {
    // No session cache: every token is read from the database.
    ({ server, reads } = await serverWatchingSessionReads({ MAX_CONCURRENT_TOKEN_READS: '2', SESSION_CACHE_MAX_STALENESS_MS: '0' }));
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('reads at most MAX_CONCURRENT_TOKEN_READS sessions at once for HTTP requests and connection_init together; the others wait their turn and are answered', async () => {
    const { token } = await newUserSession(server);
    reads.most = 0;
    // Tokens shaped like ours that name no session, as a client guessing them sends: each one is a read.
    const unknown = Array.from({ length: 40 }, () => `${new mongoose.Types.ObjectId().toHexString()}.${randomBytes(32).toString('base64url')}`);
    const sockets = Array.from({ length: 12 }, () => rawSocket(server));
    await Promise.all(sockets.map(opened));
    const [answers, inits] = await Promise.all([
      Promise.all(unknown.map((t) => server.gql('{ session { id } }', {}, { token: t }))),
      Promise.all(sockets.map((ws) => initAnswer(ws, { token }))),
    ]);
    expect(answers.map(errorCode)).toEqual(Array(40).fill('UNAUTHENTICATED'));
    expect(inits).toEqual(Array(12).fill('connection_ack'));
    expect(reads.most).toBe(2);
    for (const ws of sockets) ws.close();
  });
});

describe('a wave of sockets with a token this process has not read yet', () => {
  let server: TestServer;
  let other: TestServer;
  let reads: Awaited<ReturnType<typeof serverWatchingSessionReads>>['reads'];
  beforeAll(async () => {
    ({ server, reads } = await serverWatchingSessionReads({ MAX_CONCURRENT_TOKEN_READS: '2' }));
    // Another process on the same database, where the session is logged in: this one hears of it on
    // its change feed, which does not carry the secret's hash, so its first request reads the session.
    other = await startTestServer({}, server.mongoUri);
  });
  afterAll(async () => {
    await other?.stop();
    await server?.stop();
  });

  it('reads the session once per read in flight, not once per socket: those waiting their turn find it in the cache', async () => {
    const { token } = await newUserSession(other);
    // The sockets of one session coming back together (their process died): open first, so that
    // their connection_init messages arrive at once.
    const sockets = Array.from({ length: 20 }, () => rawSocket(server));
    await Promise.all(sockets.map(opened));
    reads.started = 0;
    expect(await Promise.all(sockets.map((ws) => initAnswer(ws, { token })))).toEqual(Array(20).fill('connection_ack'));
    expect(reads.started).toBeLessThanOrEqual(2);
    for (const ws of sockets) ws.close();
  });
});

describe('websocket caps', () => {
  let server: TestServer;
  beforeAll(async () => {
    // Behind a proxy on loopback (as `npm run start:cluster` runs it), so that tests can name the client's address.
    server = await startTestServer({
      WS_MAX_OPERATIONS_PER_SOCKET: '3',
      WS_MAX_SOCKETS_PER_SESSION: '2',
      WS_MAX_SOCKETS_PER_USER: '3',
      WS_MAX_UNAUTHENTICATED_PER_ADDRESS: '3',
      TRUST_PROXY: 'loopback',
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('refuses operations beyond the per-socket limit with TOO_MANY_OPERATIONS, and the socket stays usable', async () => {
    const { token } = await newUserSession(server);
    const client = server.wsClient(token);
    const running = Array.from({ length: 3 }, () => client.subscribe({ query: 'subscription { sessionEvents(expiringSoonLead: 0) { kind } }' }, { next() {}, error() {}, complete() {} }));
    await sleep(300);
    const refused = await overSocket(client, '{ serverTime }');
    expect(wsCode(refused)).toBe('TOO_MANY_OPERATIONS');
    running[0]!();
    await sleep(100);
    expect((await overSocket(client, '{ serverTime }')).data.serverTime).toBeTruthy();
    await client.dispose();
  });

  it('counts an operation until it has finished, even when the client sends its complete at once', async () => {
    const { token } = await newUserSession(server);
    const ws = rawSocket(server);
    await opened(ws);
    expect(await initAnswer(ws, { token })).toBe('connection_ack');
    const prefix = `ops${randomBytes(3).toString('hex')}`;
    // Each register followed at once by its complete: all 24 messages reach the server together.
    const register = 'mutation($u: String!) { register(username: $u, password: "correct horse battery") { id } }';
    for (let i = 0; i < 12; i++) {
      ws.send(JSON.stringify({ type: 'subscribe', id: `r${i}`, payload: { query: register, variables: { u: `${prefix}${i}` } } }));
      ws.send(JSON.stringify({ type: 'complete', id: `r${i}` }));
    }
    const users = mongoose.connections.find((c) => c.name === new URL(server.mongoUri).pathname.slice(1))!.collection('users');
    const registered = () => users.countDocuments({ username: { $regex: `^${prefix}` } });
    await sleep(1_000);
    expect(await registered()).toBe(3);
    // Those three have finished: the socket runs operations again.
    const answer = new Promise((resolve) => ws.on('message', (data) => JSON.parse(String(data)).id === 'q' && resolve(JSON.parse(String(data)).type)));
    ws.send(JSON.stringify({ type: 'subscribe', id: 'q', payload: { query: '{ serverTime }' } }));
    expect(await answer).toBe('next');
    await closeAll([ws]);
  });

  it('closes with 4409 a socket that subscribes with the id of an operation it has not completed', async () => {
    const { token } = await newUserSession(server);
    const ws = rawSocket(server);
    await opened(ws);
    expect(await initAnswer(ws, { token })).toBe('connection_ack');
    const closed = closeOf(ws);
    const events = 'subscription { sessionEvents(expiringSoonLead: 0) { kind } }';
    ws.send(JSON.stringify({ type: 'subscribe', id: 'x', payload: { query: events } }));
    ws.send(JSON.stringify({ type: 'subscribe', id: 'x', payload: { query: events } }));
    expect(await closed).toBe(4409);
  });

  it('lets a client reuse an id right after its complete: the new operation gets its results, the old one sends nothing more under it', async () => {
    const { token, session } = await newUserSession(server);
    const ws = rawSocket(server);
    await opened(ws);
    expect(await initAnswer(ws, { token })).toBe('connection_ack');
    const closed = closeOf(ws);
    const received: Array<{ type: string; id?: string; payload?: any }> = [];
    ws.on('message', (data) => received.push(JSON.parse(String(data))));
    const answers = async () => {
      await sleep(300);
      return received.splice(0).map((m) => `${m.id}:${m.type}`);
    };
    const subscribe = (query: string) => ws.send(JSON.stringify({ type: 'subscribe', id: 'x', payload: { query } }));
    const complete = () => ws.send(JSON.stringify({ type: 'complete', id: 'x' }));
    const events = 'subscription { sessionEvents(expiringSoonLead: 0) { kind } }';

    // Completed while still being set up, and the id reused at once.
    subscribe(events);
    complete();
    subscribe('{ session { id } }');
    expect(await answers()).toEqual(['x:next', 'x:complete']);
    // Completed while it runs, and the id reused at once.
    subscribe(events);
    await eventually(async () => server.hub.hasSubscribers(session.id), 2_000, 'the subscription is set up');
    complete();
    subscribe('{ session { id } }');
    expect(await answers()).toEqual(['x:next', 'x:complete']);
    // Both ways once more, this time reused by a subscription: only its own events come under the id.
    subscribe(events);
    complete();
    subscribe(events);
    await sleep(100);
    complete();
    subscribe(events);
    expect(await answers()).toEqual([]);
    expect((await server.gql('mutation { logout }', {}, { token })).data).toEqual({ logout: true });
    expect(await closed).toBe(4401);
    expect(received.map((m) => `${m.id}:${m.type}:${m.payload?.data?.sessionEvents?.kind ?? ''}`)).toEqual(['x:next:LOGGED_OUT', 'x:complete:']);
    await eventually(async () => !server.hub.hasSubscribers(session.id), 2_000, 'nothing of the socket runs on');
    expect(server.logs.filter((line) => line.includes(session.id) || /"level":50/.test(line))).toEqual([]);
  });

  it('ends every subscription of a socket when it closes, also one whose id was reused after its complete', async () => {
    const { token, session } = await newUserSession(server);
    const ws = rawSocket(server);
    await opened(ws);
    expect(await initAnswer(ws, { token })).toBe('connection_ack');
    const events = 'subscription { sessionEvents(expiringSoonLead: 0) { kind } }';
    for (let i = 0; i < 5 && ws.readyState === WebSocket.OPEN; i++) {
      // graphql-ws forgets an id on its complete while the first subscription is still being set up.
      ws.send(JSON.stringify({ type: 'subscribe', id: 'x', payload: { query: events } }));
      ws.send(JSON.stringify({ type: 'complete', id: 'x' }));
      ws.send(JSON.stringify({ type: 'subscribe', id: 'x', payload: { query: events } }));
      await sleep(50);
      ws.send(JSON.stringify({ type: 'complete', id: 'x' }));
      await sleep(50);
    }
    await closeAll([ws]);
    await eventually(async () => !server.hub.hasSubscribers(session.id), 2_000, 'the subscriptions of the closed socket end');
  });

  it('closes a socket beyond the per-session limit with 4429', async () => {
    const { token } = await newUserSession(server);
    // Raw sockets that stay open (a graphql-ws client closes its socket once its last operation completes).
    const sockets = Array.from({ length: 3 }, () => rawSocket(server));
    await Promise.all(sockets.map(opened));
    const answers = await Promise.all(sockets.map((ws) => initAnswer(ws, { token })));
    expect(answers.sort()).toEqual([4429, 'connection_ack', 'connection_ack'].sort());
    for (const ws of sockets) ws.close();
  });

  it('closes a socket beyond the per-user limit with 4429, whatever session it comes with; a closed one frees a place', async () => {
    // A user may log in any number of times: with only the per-session limit, one user from one
    // address held 892 authenticated idle sockets, every file the process could open.
    const user = await newUserSession(server);
    const more = [await login(server, user.username, user.password), await login(server, user.username, user.password)];
    const tokens = [user.token, user.token, more[0]!.token, more[1]!.token];
    const sockets: WebSocket[] = [];
    const answers: Array<string | number> = [];
    for (const token of tokens) {
      const ws = rawSocket(server);
      sockets.push(ws);
      await opened(ws);
      answers.push(await initAnswer(ws, { token }));
    }
    expect(answers).toEqual(['connection_ack', 'connection_ack', 'connection_ack', 4429]);
    // Another user is not affected, and a socket of this one that closes makes room.
    const other = await newUserSession(server);
    const others = rawSocket(server);
    await opened(others);
    expect(await initAnswer(others, { token: other.token })).toBe('connection_ack');
    await closeAll([sockets[0]!]);
    const again = rawSocket(server);
    await opened(again);
    expect(await initAnswer(again, { token: more[1]!.token })).toBe('connection_ack');
    await closeAll([...sockets, others, again]);
  });

  it('refuses the upgrade of unauthenticated sockets beyond the per-address limit with HTTP 429; connection_init frees a place', async () => {
    const waiting = Array.from({ length: 3 }, () => rawSocket(server));
    await Promise.all(waiting.map(opened));
    await expect(opened(rawSocket(server))).rejects.toThrow('HTTP 429');
    const { token } = await newUserSession(server);
    const acked = new Promise((resolve) => waiting[0]!.once('message', resolve));
    waiting[0]!.send(JSON.stringify({ type: 'connection_init', payload: { token } }));
    await acked;
    const next = rawSocket(server);
    await opened(next);
    await closeAll([...waiting, next]);
  });

  it('counts the sockets of one IPv6 /64 together, as the login limits do', async () => {
    const from = (i: number) => rawSocket(server, { 'x-forwarded-for': `2001:db8:1:2::${i}` });
    const waiting = [from(1), from(2), from(3)];
    await Promise.all(waiting.map(opened));
    await expect(opened(from(4))).rejects.toThrow('HTTP 429');
    const otherNetwork = rawSocket(server, { 'x-forwarded-for': '2001:db8:1:3::1' });
    await opened(otherNetwork);
    await closeAll([...waiting, otherNetwork]);
  });

  it('counts a socket whose connection_init is refused until it has closed, however long its client takes to answer the close', async () => {
    const refused = Array.from({ length: 3 }, () => rawSocket(server));
    await Promise.all(refused.map(opened));
    for (const ws of refused) {
      ws.send(JSON.stringify({ type: 'connection_init', payload: { token: 'not-a-token' } }));
      ws.pause(); // reads nothing more: the server's close frame goes unanswered
    }
    await sleep(300);
    await expect(opened(rawSocket(server))).rejects.toThrow('HTTP 429');
    for (const ws of refused) ws.terminate();
    const admitted = async () => {
      const ws = rawSocket(server);
      const open = await opened(ws).then(() => true, () => false);
      await closeAll([ws]);
      return open;
    };
    await eventually(admitted, 2_000, 'a place is free once they have closed');
  });

  it('lets no more than the limit through when the upgrades arrive all at once', async () => {
    const burst = Array.from({ length: 30 }, () => rawSocket(server));
    const outcomes = await Promise.all(burst.map((ws) => opened(ws).then(() => 'open', (err: Error) => err.message)));
    expect(outcomes.filter((o) => o === 'open')).toHaveLength(3);
    expect(outcomes.filter((o) => o !== 'open').every((o) => o.includes('HTTP 429'))).toBe(true);
    await closeAll(burst);
  });
});

describe('sockets that leave while their connection_init is answered', () => {
  let server: TestServer;
  beforeAll(async () => {
    // No session cache: each connection_init reads the session, so the socket can go during the read.
    server = await startTestServer({ WS_MAX_SOCKETS_PER_SESSION: '2', SESSION_CACHE_MAX_STALENESS_MS: '0' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('are not counted against the per-session limit, nor kept', async () => {
    const { token, session } = await newUserSession(server);
    for (let i = 0; i < 3; i++) {
      const ws = rawSocket(server);
      await opened(ws);
      const gone = closeOf(ws);
      ws.send(JSON.stringify({ type: 'connection_init', payload: { token } }));
      ws.terminate();
      await gone;
    }
    // Let the reads those sockets started be answered.
    await sleep(500);
    expect(server.hub.known(session.id), 'the hub follows the session of sockets that are gone').toBeNull();
    const sockets = Array.from({ length: 2 }, () => rawSocket(server));
    await Promise.all(sockets.map(opened));
    expect(await Promise.all(sockets.map((ws) => initAnswer(ws, { token })))).toEqual(['connection_ack', 'connection_ack']);
    await closeAll(sockets);
  });
});

describe('a client that does not read its answers', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server?.stop();
  });
  /** A new user's socket, acknowledged, and the server's end of its TCP connection (whose writableLength is what it has not sent yet). */
  const acknowledgedSocket = async () => {
    const { token } = await newUserSession(server);
    const serverSide = new Promise<Socket>((resolve) => server.httpServer.once('connection', resolve));
    const ws = rawSocket(server);
    await opened(ws);
    const unsent = await serverSide;
    expect(await initAnswer(ws, { token })).toBe('connection_ack');
    return { token, ws, unsent };
  };
  const bigPing = JSON.stringify({ type: 'ping', payload: { padding: 'p'.repeat(60_000) } });

  it('is not read from while its unsent answers exceed 1 MiB, as an HTTP client is not; once it reads, every answer comes', async () => {
    const { ws, unsent } = await acknowledgedSocket();
    let pongs = 0;
    ws.on('message', (data) => void (JSON.parse(String(data)).type === 'pong' && pongs++));
    ws.pause();
    // graphql-ws answers a ping with a pong of the same payload: 300 of 60 KB is 18 MB of answers.
    for (let i = 0; i < 300; i++) ws.send(bigPing);
    await sleep(1_000);
    expect(unsent.writableLength).toBeLessThan(2 * 1024 * 1024);
    ws.resume();
    await eventually(async () => pongs === 300, 10_000, 'every pong arrives once the client reads');
    await closeAll([ws]);
  });

  it('is dropped once the events pushed to it on top of that pass 2 MiB unsent, rather than held in memory until its pings time out', async () => {
    const { token, ws, unsent } = await acknowledgedSocket();
    for (let id = 0; id < 20; id++) ws.send(JSON.stringify({ id: String(id), type: 'subscribe', payload: { query: 'subscription { sessionEvents(expiringSoonLead: 0) { kind expiresAt } }' } }));
    await sleep(300);
    ws.pause();
    // Answers fill the buffers between the two ends (up to tens of MB on loopback) until this process stops reading the client.
    for (let i = 0; i < 1_000 && unsent.writableLength <= 1024 * 1024; i++) {
      ws.send(bigPing);
      if (i % 50 === 49) await sleep(50);
    }
    expect(unsent.writableLength, 'the client is no longer read from').toBeGreaterThan(1024 * 1024);
    // Each renewal pushes an EXPIRY_CHANGED to each of the 20 subscriptions, whether the client reads or not.
    let most = 0;
    for (let i = 0; i < 1_000 && !unsent.destroyed; i++) {
      await server.gql('mutation { touch { id } }', {}, { token });
      most = Math.max(most, unsent.writableLength);
    }
    expect(unsent.destroyed, `dropped (at most ${most} bytes unsent)`).toBe(true);
    expect(most).toBeLessThan(2 * 1024 * 1024 + 20_000);
  });
});

/** Closes the sockets and waits until they have closed (and no longer count against a limit). */
async function closeAll(sockets: WebSocket[]): Promise<void> {
  await Promise.all(
    sockets.map((ws) => (ws.readyState === WebSocket.CLOSED ? undefined : new Promise((resolve) => (ws.once('close', resolve), ws.close())))),
  );
}

describe('cross-site websocket hijacking', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ ALLOWED_ORIGINS: 'https://app.example.com' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  const initWithCookie = async (token: string, origin?: string) => {
    const ws = rawSocket(server, { cookie: `sessionid=${token}`, ...(origin ? { origin } : {}) });
    await opened(ws);
    const result = await initAnswer(ws);
    ws.close();
    return { result };
  };

  it('refuses a cookie-authenticated socket from a foreign or null Origin with 4403, and accepts its own, a listed and a missing one', async () => {
    const { token } = await newUserSession(server);
    const { host } = new URL(server.url);
    expect((await initWithCookie(token, 'https://evil.example')).result).toBe(4403);
    expect((await initWithCookie(token, 'null')).result).toBe(4403);
    expect((await initWithCookie(token, `http://${host}`)).result).toBe('connection_ack');
    expect((await initWithCookie(token, 'https://app.example.com')).result).toBe('connection_ack');
    expect((await initWithCookie(token)).result).toBe('connection_ack');
  });

  // A page on another port of this host (or a sibling subdomain) may add a cookie of the same name
  // with a narrower path, which the browser sends first: that session must not be taken for the user's.
  it('refuses the session cookie sent more than once (cookie tossing), on both transports; an explicit token still wins', async () => {
    const user = await newUserSession(server);
    const attacker = await newUserSession(server);
    const tossed = `sessionid=${attacker.token}; sessionid=${user.token}`;
    const http = await server.gql('{ session { id } }', {}, { headers: { cookie: tossed } });
    expect(http.errors?.[0]).toMatchObject({
      message: 'The session cookie was sent more than once (a page of another site on this host may have set one): clear this site\'s cookies and log in again.',
      extensions: { code: 'UNAUTHENTICATED' },
    });
    const ws = rawSocket(server, { cookie: tossed });
    await opened(ws);
    expect(await initAnswer(ws)).toBe(4401);
    const withToken = await server.gql('{ session { id } }', {}, { token: user.token, headers: { cookie: tossed } });
    expect(withToken.data.session.id).toBe(user.session.id);
    // One cookie, among others of other names, is fine.
    expect((await server.gql('{ session { id } }', {}, { headers: { cookie: `theme=dark; sessionid=${user.token}; lang=en` } })).data.session.id).toBe(user.session.id);
  });

  it('accepts a token in connectionParams from any Origin', async () => {
    const { token } = await newUserSession(server);
    const ws = rawSocket(server, { origin: 'https://evil.example' });
    await opened(ws);
    expect(await initAnswer(ws, { token })).toBe('connection_ack');
    ws.close();
  });
});
