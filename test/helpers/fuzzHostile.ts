/**
 * Hostile inputs for the fuzz test, as small descriptors (so that a shrunk counterexample reads
 * `{ h: 'aliases', n: 3000, field: 'sessions { id }' }`, not 45 KB of text) and the builders that
 * turn them into what is sent: documents, HTTP requests and websocket message sequences.
 */
import fc from 'fast-check';
import { getIntrospectionQuery, getOperationAST, Kind, parse } from 'graphql';
import { big, PH } from './fuzzPlaceholders.js';
import { CROSS, type FuzzOperation } from './fuzzSchema.js';

// ---------------------------------------------------------------- documents

export type HostileDoc =
  | { h: 'aliases'; n: number; field: string }
  | { h: 'nestedFragments'; depth: number }
  | { h: 'nestedSelection'; depth: number }
  | { h: 'deepList'; depth: number }
  | { h: 'deepVariables'; depth: number }
  | { h: 'fragmentCycle'; len: number }
  | { h: 'fragmentBomb'; levels: number }
  | { h: 'introspection'; which: 'full' | 'type' | 'schema' | 'typename' }
  | { h: 'directives'; n: number }
  | { h: 'operations'; n: number }
  | { h: 'tokens'; n: number }
  | { h: 'variables'; n: number }
  | { h: 'bigLiteral'; n: number; unit: string }
  | { h: 'syntax'; text: string };

const SYNTAX = [
  '',
  ' ',
  '{',
  '}',
  '{ serverTime',
  '{ serverTime }}',
  'query',
  'query query { serverTime }',
  '{ serverTime \u0000 }',
  '{ __type(name: "a\u0000b") { name } }',
  '{ __type(name: "\\ud800") { name } }',
  '{ __type(name: "\\u{110000}") { name } }',
  '{ __type(name: "\\x41") { name } }',
  '{ serverTime\u00a0}',
  '\ufeff{ serverTime }',
  '{ __type(name: """unterminated) { name } }',
  '# only a comment',
  '{ serverTime } garbage',
  '{ ...on Session { id } }',
  'fragment F on Query { serverTime }',
  'subscription { serverTime }',
  'subscription { sessionEvents { kind } __typename }',
  'subscription A { sessionEvents { kind } } subscription B { sessionEvents { kind } }',
  'mutation { __typename }',
  '{ session { id } session { id: expiryAge } }',
  '{ serverTime(x: 1) }',
  '{ sessions(first: -1) { id } }',
  '{ __schema { queryType { name } } }',
  'query ($a: Int = "x") { serverTime }',
  'query ($a: Int, $a: Int) { serverTime }',
  '{ serverTime @include(if: $undefined) }',
  'mutation { setExpiry(seconds: 1e400) { id } }',
  'mutation { setExpiry(seconds: 99999999999999999999999999) { id } }',
  'mutation { setExpiry(seconds: 0x10) { id } }',
  'mutation { setExpiry(seconds: -0) { id } }',
  'mutation { setExpiry(at: 1700000000) { id } }',
  'mutation { setExpiry(seconds: 60, seconds: 120) { id } }',
  `mutation { revokeSession(id: "${PH.victim}") }`,
  'mutation { logoutAll(keepCurrent: "false") }',
  'mutation { login(username: null, password: null) { token } }',
];

/** Selections whose cost differs: a clock read, one session read, a read per alias. */
const ALIASED = ['serverTime', '__typename', 'session { id }', 'sessions { id }', 'me { username }', 'serverSettings { loginUrl }'];

export const hostileDocArb: fc.Arbitrary<HostileDoc> = fc.oneof(
  CROSS,
  { weight: 3, arbitrary: fc.record({ h: fc.constant('aliases' as const), n: fc.integer({ min: 2, max: 3000 }), field: fc.constantFrom(...ALIASED) }) },
  { weight: 1, arbitrary: fc.record({ h: fc.constant('nestedFragments' as const), depth: fc.integer({ min: 1, max: 4000 }) }) },
  { weight: 1, arbitrary: fc.record({ h: fc.constant('nestedSelection' as const), depth: fc.integer({ min: 1, max: 3000 }) }) },
  { weight: 1, arbitrary: fc.record({ h: fc.constant('deepList' as const), depth: fc.integer({ min: 1, max: 20_000 }) }) },
  { weight: 1, arbitrary: fc.record({ h: fc.constant('deepVariables' as const), depth: fc.integer({ min: 1, max: 20_000 }) }) },
  { weight: 1, arbitrary: fc.record({ h: fc.constant('fragmentCycle' as const), len: fc.integer({ min: 1, max: 500 }) }) },
  { weight: 1, arbitrary: fc.record({ h: fc.constant('fragmentBomb' as const), levels: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ h: fc.constant('introspection' as const), which: fc.constantFrom('full' as const, 'type' as const, 'schema' as const, 'typename' as const) }) },
  { weight: 1, arbitrary: fc.record({ h: fc.constant('directives' as const), n: fc.integer({ min: 1, max: 3000 }) }) },
  { weight: 1, arbitrary: fc.record({ h: fc.constant('operations' as const), n: fc.integer({ min: 1, max: 2000 }) }) },
  { weight: 1, arbitrary: fc.record({ h: fc.constant('tokens' as const), n: fc.integer({ min: 1, max: 6000 }) }) },
  { weight: 1, arbitrary: fc.record({ h: fc.constant('variables' as const), n: fc.integer({ min: 1, max: 3000 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({ h: fc.constant('bigLiteral' as const), n: fc.integer({ min: 1, max: 90_000 }), unit: fc.constantFrom('a', '😀', '\\u0000', '\\ud800') }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      h: fc.constant('syntax' as const),
      text: fc.oneof(CROSS, { weight: 5, arbitrary: fc.constantFrom(...SYNTAX) }, { weight: 1, arbitrary: fc.string({ maxLength: 30 }) }),
    }),
  },
);

const times = (n: number, f: (i: number) => string, sep = ' ') => Array.from({ length: n }, (_, i) => f(i)).join(sep);

export function buildHostileDoc(d: HostileDoc): FuzzOperation {
  const query = (q: string, extra: Partial<FuzzOperation> = {}): FuzzOperation => ({ query: q, opType: 'query', rootFields: 1, ...extra });
  switch (d.h) {
    case 'aliases':
      return query(`{ ${times(d.n, (i) => `a${i}: ${d.field}`)} }`, { rootFields: d.n });
    case 'nestedFragments':
      return query(`{ ${'... on Query { '.repeat(d.depth)}serverTime${' }'.repeat(d.depth)} }`);
    case 'nestedSelection':
      return query(`{ __schema { types { ${'ofType { '.repeat(d.depth)}name${' }'.repeat(d.depth)} } } }`);
    case 'deepList':
      return query(`{ __type(name: ${'['.repeat(d.depth)}"Session"${']'.repeat(d.depth)}) { name } }`);
    case 'deepVariables':
      return query('query ($n: String!) { __type(name: $n) { name } }', { variablesJson: `{"n":${'['.repeat(d.depth)}"Session"${']'.repeat(d.depth)}}` });
    case 'fragmentCycle':
      return query(`{ ...F0 } ${times(d.len, (i) => `fragment F${i} on Query { serverTime ...F${(i + 1) % d.len} }`)}`);
    case 'fragmentBomb':
      // Each fragment spreads the next one twice: 2^levels copies of `serverTime` once expanded.
      return query(`{ ...F0 } ${times(d.levels, (i) => `fragment F${i} on Query { ${i + 1 < d.levels ? `...F${i + 1} ...F${i + 1}` : 'serverTime'} }`)}`);
    case 'introspection':
      return query(
        d.which === 'full'
          ? getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, inputValueDeprecation: true })
          : d.which === 'type'
            ? '{ __type(name: "Session") { name fields { name type { name kind ofType { name kind ofType { name } } } } } }'
            : d.which === 'schema'
              ? '{ __schema { types { name fields { name args { name type { name } } } } } }'
              : '{ __typename }',
      );
    case 'directives':
      return query(`{ serverTime ${times(d.n, () => '@include(if: true)')} }`);
    case 'operations':
      return query(times(d.n, (i) => `query Q${i} { serverTime }`), { operationName: `Q${d.n - 1}` });
    case 'tokens':
      return query(`{ serverTime ${times(d.n, () => '__typename')} }`, { rootFields: d.n + 1 });
    case 'variables':
      return query(`query (${times(d.n, (i) => `$v${i}: Int`, ', ')}) { serverTime }`, { variables: Object.fromEntries(times(d.n, (i) => `v${i}`).split(' ').map((k) => [k, 1])) });
    case 'bigLiteral':
      return query(`{ __type(name: "${big(d.unit, d.n)}") { name } }`);
    case 'syntax':
      return { query: d.text, ...classify(d.text) };
  }
}

/**
 * What a hand-written document runs, as graphql-js sees it: its operation's type and root
 * selections (a fragment spread counts as many), or 'unknown' when it does not parse (then nothing runs).
 */
export function classify(query: string, operationName?: string): Pick<FuzzOperation, 'opType' | 'rootFields'> {
  try {
    const op = getOperationAST(parse(query), operationName);
    if (!op) return { opType: 'unknown', rootFields: 0 };
    const spreads = op.selectionSet.selections.some((s) => s.kind !== Kind.FIELD);
    return { opType: op.operation, rootFields: spreads ? Infinity : op.selectionSet.selections.length };
  } catch {
    return { opType: 'unknown', rootFields: 0 };
  }
}

// ---------------------------------------------------------------- HTTP requests

export type HttpAuth = 'lane' | 'none' | 'garbage' | 'wrongSecret' | 'lowerBearer' | 'cookie' | 'cookieAndGarbageBearer' | 'basic' | 'ended';
export const httpAuthArb: fc.Arbitrary<HttpAuth> = fc.oneof(
  CROSS,
  { weight: 24, arbitrary: fc.constant('lane' as const) },
  { weight: 1, arbitrary: fc.constantFrom('none' as const, 'garbage' as const, 'wrongSecret' as const, 'lowerBearer' as const) },
  { weight: 1, arbitrary: fc.constantFrom('cookie' as const, 'cookieAndGarbageBearer' as const, 'basic' as const, 'ended' as const) },
);

export type HttpCase =
  | { k: 'doc'; doc: HostileDoc; auth: HttpAuth }
  | { k: 'body'; body: string; contentType: string }
  | { k: 'bytes'; hex: string }
  | { k: 'contentType'; contentType: string | null }
  | { k: 'method'; method: string; query: string | null; preflight: boolean }
  | { k: 'batch'; n: number }
  | { k: 'oversize'; bytes: number; chunked: boolean }
  | { k: 'deepJson'; depth: number; shape: 'array' | 'object' }
  | { k: 'headers'; name: string; value: string }
  | { k: 'path'; path: string };

const BODIES = [
  '',
  '{',
  '{"query":',
  '{"query":"{ serverTime }"',
  '{"query":"{ serverTime }"} trailing',
  "{'query':'{ serverTime }'}",
  '{"query":"{ serverTime }",}',
  'null',
  'true',
  '0',
  '"{ serverTime }"',
  '[]',
  '{}',
  '{"query":null}',
  '{"query":1}',
  '{"query":["{ serverTime }"]}',
  '{"query":{"kind":"Document"}}',
  '{"query":"{ serverTime }","variables":"x"}',
  '{"query":"{ serverTime }","variables":[1]}',
  '{"query":"{ serverTime }","variables":null}',
  '{"query":"{ serverTime }","operationName":5}',
  '{"query":"{ serverTime }","operationName":{}}',
  '{"query":"{ serverTime }","extensions":"x"}',
  '{"query":"{ serverTime }","extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}',
  '{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"0000000000000000000000000000000000000000000000000000000000000000"}}}',
  '{"extensions":{"persistedQuery":{"version":2,"sha256Hash":1}}}',
  '{"query":"{ serverTime }","query":"{ nope }"}',
  '{"__proto__":{"query":"{ serverTime }"}}',
  '{"constructor":{"prototype":{"query":"x"}}}',
  '{"query":"{ serverTime }","variables":{"__proto__":{"x":1}}}',
  '{"query":"mutation { setExpiry(seconds: $s) { id } }","variables":{"s":1e400}}',
  '{"query":"mutation ($s: Int) { setExpiry(seconds: $s) { id } }","variables":{"s":1e400}}',
  '{"query":"mutation ($s: Int) { setExpiry(seconds: $s) { id } }","variables":{"s":-0}}',
  '{"query":"mutation ($s: Int) { setExpiry(seconds: $s) { id } }","variables":{"s":12345678901234567890}}',
  '{"query":"{ __type(name: \\"\\ud800\\") { name } }"}',
  '{"query":"{ __type(name: \\"\\u0000\\") { name } }"}',
  '{"query":"\\u0000"}',
  '\ufeff{"query":"{ serverTime }"}',
  ' \n\t{"query":"{ serverTime }"}',
  '{"query":"{ serverTime }"}\u0000',
];
const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'application/json; charset=bogus',
  'APPLICATION/JSON',
  'application/graphql',
  'application/graphql-response+json',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'text/plain',
  'text/html',
  'application/xml',
  'application/octet-stream',
  '*/*',
  'application/json, text/plain',
  'bogus',
  '',
];

export const httpCaseArb: fc.Arbitrary<HttpCase> = fc.oneof(
  CROSS,
  { weight: 8, arbitrary: fc.record({ k: fc.constant('doc' as const), doc: hostileDocArb, auth: httpAuthArb }) },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('body' as const),
      body: fc.oneof(CROSS, { weight: 6, arbitrary: fc.constantFrom(...BODIES) }, { weight: 1, arbitrary: fc.string({ maxLength: 40 }) }, { weight: 1, arbitrary: fc.json() }),
      contentType: fc.constantFrom('application/json', 'application/json', 'application/json', 'text/plain', 'application/graphql'),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('bytes' as const), hex: fc.constantFrom('ff', 'c3', 'fffe7b7d', 'efbbbf7b7d', '7b2271756572' + '79223a22ff227d', 'feff007b007d', 'c0af', 'eda080') }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('contentType' as const), contentType: fc.option(fc.constantFrom(...CONTENT_TYPES), { nil: null, freq: 10 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('method' as const),
      method: fc.constantFrom('GET', 'GET', 'GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND'),
      query: fc.option(
        fc.constantFrom('{ serverTime }', '{ session { id } }', 'mutation { touch { id } }', 'mutation { logout }', 'subscription { sessionEvents { kind } }', '{', big('x', 20_000)),
        { nil: null, freq: 6 },
      ),
      preflight: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('batch' as const), n: fc.integer({ min: 0, max: 50 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('oversize' as const), bytes: fc.integer({ min: 60_000, max: 400_000 }), chunked: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('deepJson' as const), depth: fc.integer({ min: 1, max: 30_000 }), shape: fc.constantFrom('array' as const, 'object' as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('headers' as const),
      name: fc.constantFrom('authorization', 'cookie', 'x-forwarded-for', 'origin', 'accept', 'content-encoding', 'apollo-require-preflight', 'user-agent'),
      value: fc.constantFrom(
        'Bearer',
        'Bearer ',
        'Bearer a.b.c',
        `Bearer ${PH.own}.`,
        'Bearer \u00ff\u00fe',
        'bearer',
        'Basic YTpi',
        'sessionid=; sessionid=x',
        'sessionid=%E0%A4%A',
        `sessionid=${big('a', 8000)}`,
        '127.0.0.1, 10.0.0.1, ::1, garbage',
        'https://evil.example',
        'null',
        'text/html',
        'application/graphql-response+json;q=0, */*;q=0',
        'gzip',
        'br',
        big('x', 20_000),
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('path' as const), path: fc.constantFrom('/graphql/', '/graphql?', '/graphql?query=%7B', '/GRAPHQL', '/graphql/../graphql', '/graphql;x', '/graphql%00', '//graphql') }) },
);

// ---------------------------------------------------------------- websocket message sequences

export type InitParams =
  | 'token'
  | 'authToken'
  | 'authorization'
  | 'lowerBearer'
  | 'none'
  | 'garbage'
  | 'wrongSecret'
  | 'numberToken'
  | 'arrayPayload'
  | 'stringPayload'
  | 'nullPayload'
  | 'hugeToken'
  | 'protoToken'
  | 'ended';

export type SubDoc = 'ping' | 'events' | 'eventsHugeLead' | 'eventsBadLead' | 'session' | 'syntax' | 'invalid' | 'subscriptionTwoFields' | HostileDoc;

export type WsStep =
  | { s: 'init'; params: InitParams }
  | { s: 'raw'; text: string }
  | { s: 'sub'; id: string; doc: SubDoc }
  | { s: 'complete'; id: string }
  | { s: 'ping' }
  | { s: 'pong' }
  | { s: 'big'; bytes: number }
  | { s: 'binary'; text: string }
  | { s: 'pause'; ms: number };

export interface WsCase {
  protocol: 'graphql-transport-ws' | 'graphql-ws' | 'none' | 'both' | 'bogus';
  path: string;
  cookie: boolean;
  origin: null | 'evil' | 'null';
  steps: WsStep[];
}

export const RAW_MESSAGES = [
  '',
  'not json',
  '{',
  '[]',
  'null',
  '1',
  '""',
  '{}',
  '{"type":"nope"}',
  '{"type":1}',
  '{"type":"__proto__"}',
  '{"type":"toString"}',
  '{"type":"connection_ack"}',
  '{"type":"connection_init","payload":[]}',
  '{"type":"connection_init","payload":"x"}',
  '{"type":"subscribe"}',
  '{"type":"subscribe","id":1,"payload":{"query":"{ serverTime }"}}',
  '{"type":"subscribe","id":"r","payload":null}',
  '{"type":"subscribe","id":"r","payload":{"query":1}}',
  '{"type":"subscribe","id":"r","payload":{"query":"{ serverTime }","variables":"x"}}',
  '{"type":"subscribe","id":"r","payload":{"query":"{ serverTime }","variables":[1]}}',
  '{"type":"subscribe","id":"r","payload":{"query":"{ serverTime }","operationName":5}}',
  '{"type":"subscribe","id":"r","payload":{"query":"{ serverTime }","extensions":[]}}',
  '{"type":"subscribe","id":"r","payload":{"query":"{ __type(name: \\"\\ud800\\") { name } }"}}',
  '{"type":"subscribe","id":"\\u0000","payload":{"query":"{ serverTime }"}}',
  '{"type":"complete"}',
  '{"type":"complete","id":"never"}',
  '{"type":"next","id":"1","payload":{"data":{}}}',
  '{"type":"error","id":"1","payload":[]}',
  '{"type":"ping","payload":"x"}',
  '{"type":"ping","payload":{"a":"\\ud800"}}',
  '{"type":"pong","payload":[1]}',
  '{"type":"ka"}',
  '{"type":"start","id":"1","payload":{"query":"{ serverTime }"}}',
  '{"type":"connection_terminate"}',
  '\u0000',
  '{"type":"ping"}\n{"type":"ping"}',
];

const SUB_IDS = ['1', '1', '2', 'dup', '', '__proto__', 'constructor', 'hasOwnProperty', 'x'.repeat(1000), '😀'];

const subDocArb: fc.Arbitrary<SubDoc> = fc.oneof(
  CROSS,
  { weight: 6, arbitrary: fc.constantFrom<SubDoc>('ping', 'events', 'events', 'eventsHugeLead', 'eventsBadLead', 'session', 'syntax', 'invalid', 'subscriptionTwoFields') },
  // The hand-written hostile documents include mutations that run (setExpiry(seconds: -0) is 0):
  // left out here, since a protocol case never changes a session; the operations family sends them.
  { weight: 1, arbitrary: hostileDocArb.filter((d) => d.h !== 'syntax' || classify(d.text).opType !== 'mutation') },
);

const stepArb: fc.Arbitrary<WsStep> = fc.oneof(
  CROSS,
  {
    weight: 4,
    arbitrary: fc.record({
      s: fc.constant('init' as const),
      params: fc.oneof(
        CROSS,
        { weight: 10, arbitrary: fc.constant('token' as const) },
        {
          weight: 1,
          arbitrary: fc.constantFrom<InitParams>('authToken', 'authorization', 'lowerBearer', 'none', 'garbage', 'wrongSecret', 'numberToken', 'arrayPayload', 'stringPayload', 'nullPayload', 'hugeToken', 'protoToken', 'ended'),
        },
      ),
    }),
  },
  { weight: 3, arbitrary: fc.record({ s: fc.constant('raw' as const), text: fc.oneof(CROSS, { weight: 6, arbitrary: fc.constantFrom(...RAW_MESSAGES) }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }) }) }) },
  { weight: 4, arbitrary: fc.record({ s: fc.constant('sub' as const), id: fc.constantFrom(...SUB_IDS), doc: subDocArb }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('complete' as const), id: fc.constantFrom(...SUB_IDS) }) },
  { weight: 1, arbitrary: fc.constantFrom<WsStep>({ s: 'ping' }, { s: 'pong' }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('big' as const), bytes: fc.integer({ min: 1_000, max: 300_000 }) }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('binary' as const), text: fc.constantFrom('{"type":"ping"}', '\u0000\u00ff', '{"type":"connection_init"}') }) },
  { weight: 1, arbitrary: fc.record({ s: fc.constant('pause' as const), ms: fc.integer({ min: 0, max: 50 }) }) },
);

export const wsCaseArb: fc.Arbitrary<WsCase> = fc.record({
  protocol: fc.oneof(
    CROSS,
    { weight: 20, arbitrary: fc.constant('graphql-transport-ws' as const) },
    { weight: 1, arbitrary: fc.constantFrom('graphql-ws' as const, 'none' as const, 'both' as const, 'bogus' as const) },
  ),
  path: fc.oneof(CROSS, { weight: 30, arbitrary: fc.constant('/graphql') }, { weight: 1, arbitrary: fc.constantFrom('/graphql?x=1', '/graphql/', '/other', '/', '/graphiql') }),
  cookie: fc.boolean(),
  origin: fc.constantFrom(null, null, null, 'evil' as const, 'null' as const),
  steps: fc.array(stepArb, { minLength: 1, maxLength: 6 }),
});

/** The documents of `sub` steps (none of them a mutation: a protocol case never changes a session). */
export function subDocument(doc: SubDoc): FuzzOperation {
  const q = (query: string, variables?: unknown): FuzzOperation => ({ query, opType: 'query', rootFields: 1, ...(variables ? { variables } : {}) });
  if (typeof doc !== 'string') return buildHostileDoc(doc);
  switch (doc) {
    case 'ping':
      return q('{ serverTime }');
    case 'events':
      return { ...q('subscription { sessionEvents(expiringSoonLead: 0) { kind sessionId } }'), opType: 'subscription' };
    case 'eventsHugeLead':
      return { ...q('subscription ($l: Int) { sessionEvents(expiringSoonLead: $l, allSessions: true) { kind secondsLeft } }', { l: 2_147_483_647 }), opType: 'subscription' };
    case 'eventsBadLead':
      return { ...q('subscription { sessionEvents(expiringSoonLead: -5) { kind } }'), opType: 'subscription' };
    case 'session':
      return q('{ session { id expiryDate } me { username } }');
    case 'syntax':
      return q('subscription { sessionEvents { kind }');
    case 'invalid':
      return q('{ nope }');
    case 'subscriptionTwoFields':
      return { ...q('subscription { sessionEvents { kind } again: sessionEvents { kind } }'), opType: 'subscription' };
  }
}
