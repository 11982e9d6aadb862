/**
 * Schema-driven GraphQL operations for the fuzz test (test/integration/fuzz.test.ts), as fast-check
 * arbitraries: schema.graphql is read with graphql-js's buildSchema, and the Query, Mutation and
 * Subscription fields, their arguments and their return types are walked to build documents.
 *
 * Arguments get values of their own type (with boundaries and hostile strings), values of another
 * type, or a variable whose declared type and value may each be right or wrong. Selections are
 * random subsets of the return type's fields, with aliases, fragments, directives, unknown fields
 * and missing or extra sub-selections now and then. About two documents in three are valid; the
 * others are mostly invalid in one way, and fast-check's shrinking (with cross-shrinking towards
 * the plain alternative of each choice) leaves the one thing that matters in a counterexample.
 *
 * Values that depend on the run (the lane's own session id, its username, "now + 90 s", a 70 000
 * character string) are placeholders `⟪…⟫` in the generated text, filled in just before sending
 * (fuzzPlaceholders.ts): a counterexample stays short and readable.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import {
  buildSchema,
  getNamedType,
  isEnumType,
  isInputObjectType,
  isLeafType,
  isListType,
  isNonNullType,
  isObjectType,
  isRequiredArgument,
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLObjectType,
  type GraphQLOutputType,
  type GraphQLSchema,
} from 'graphql';
import { big, date, PH, setOwn } from './fuzzPlaceholders.js';

/** For fc.oneof: a shrunk counterexample may also move to an earlier alternative (listed first: the plain one). */
export const CROSS = { withCrossShrink: true } as const;

/** `arb` one time in `n`, else `none` (fc.option's `freq` is the other way round: the chance of nil). */
function rarely<T, N>(arb: fc.Arbitrary<T>, n: number, none: N): fc.Arbitrary<T | N> {
  return fc.oneof(CROSS, { weight: n - 1, arbitrary: fc.constant(none) }, { weight: 1, arbitrary: arb });
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export function loadSchema(): GraphQLSchema {
  return buildSchema(readFileSync(path.join(repoRoot, 'schema.graphql'), 'utf8'));
}

export type OpType = 'query' | 'mutation' | 'subscription';

/** A document with what the checks need to know about it. */
export interface FuzzOperation {
  query: string;
  /** Sent as the request's `variables` (undefined: none sent). */
  variables?: unknown;
  /** The `variables` as JSON text, for values too deep to build as objects (takes precedence over `variables`). */
  variablesJson?: string;
  /** Sent as the request's `operationName` (undefined: none sent). */
  operationName?: unknown;
  /** The type of the operation that runs if one does ('unknown': a hand-written document that does not parse). */
  opType: OpType | 'unknown';
  /** Root fields of the operation that runs (mutations run one after another; an error stops the rest). */
  rootFields: number;
}

// ---------------------------------------------------------------- values

/** A GraphQL value: printed as a literal in the document or sent as JSON in `variables`. */
type Value = null | boolean | number | string | Value[] | { [k: string]: Value } | EnumValue;
class EnumValue {
  constructor(readonly name: string) {}
  toJSON() {
    return this.name;
  }
}

function printLiteral(v: Value, blockStrings = false): string {
  if (v === null) return 'null';
  if (v instanceof EnumValue) return v.name;
  if (typeof v === 'number') return String(v); // NaN and Infinity print as names: invalid values
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return blockStrings && !v.includes('"""') && !v.includes('\\') ? `"""${v}"""` : JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map((x) => printLiteral(x, blockStrings)).join(', ')}]`;
  return `{${Object.entries(v)
    .map(([k, x]) => `${k}: ${printLiteral(x, blockStrings)}`)
    .join(', ')}}`;
}

const INT_EDGES = [
  0, 1, -1, 2, 30, 59, 60, 61, 119, 120, 121, 300, 3600, 86_400, 31_622_399, 31_622_400, 31_622_401, 2_147_483_647, -2_147_483_648,
  2_147_483_648, -2_147_483_649, 4_294_967_296, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 2, 1e21, -1e21, 1e308, 0.5, -0.5,
  1.0000001, Number.MIN_VALUE,
];
const intArb: fc.Arbitrary<Value> = fc.oneof(
  CROSS,
  { weight: 3, arbitrary: fc.integer({ min: -3, max: 3 }) },
  { weight: 4, arbitrary: fc.integer({ min: 120, max: 31_622_400 }) },
  { weight: 1, arbitrary: fc.integer({ min: 31_622_401, max: 2_147_483_647 }) },
  { weight: 2, arbitrary: fc.constantFrom(...INT_EDGES) },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.double() },
);

const HOSTILE_STRINGS = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\ud800',
  '\udfff',
  'x\udbff',
  '\ufffe\uffff',
  '\u202e\u200b',
  '😀',
  'é'.normalize('NFD'),
  '{"$gt":""}',
  '$where',
  '__proto__',
  'constructor',
  "' OR 1=1 --",
  '<script>alert(1)</script>',
  '../../../etc/passwd',
  '%00%ff',
  '\\u0000',
  'null',
  'undefined',
  'NaN',
  '1e400',
  '\r\n\t',
];
const bigStringArb = fc
  .record({ n: fc.integer({ min: 1_000, max: 90_000 }), unit: fc.constantFrom('a', 'é', '😀', '\u0000', ' ', '\\', '"') })
  .map(({ n, unit }) => big(unit, n));
const stringArb: fc.Arbitrary<string> = fc.oneof(
  CROSS,
  { weight: 3, arbitrary: fc.string({ maxLength: 16 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
  { weight: 1, arbitrary: bigStringArb },
);

const hex = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
const idArb: fc.Arbitrary<Value> = fc.oneof(
  CROSS,
  { weight: 2, arbitrary: fc.constant(PH.own) },
  { weight: 2, arbitrary: fc.constant(PH.victim) },
  { weight: 2, arbitrary: hex(24) },
  { weight: 1, arbitrary: fc.constantFrom('000000000000000000000000', 'ffffffffffffffffffffffff', `${PH.own}:2`, `${PH.own}.x`) },
  { weight: 1, arbitrary: stringArb },
  { weight: 1, arbitrary: fc.integer() },
);

/** Seconds from now; the lane keeps sessions that expire within 30 s out of the state checks. */
const dateOffsets = [-1e10, -86_400, -1, 0, 1, 45, 90, 3_600, 86_400, 31_622_390, 31_622_400, 31_622_410, 1e10];
const DATE_STRINGS = [
  '0001-01-01T00:00:00Z',
  '1970-01-01T00:00:00Z',
  '9999-12-31T23:59:59.999Z',
  '+275760-09-13T00:00:00.000Z',
  '-271821-04-20T00:00:00.000Z',
  '+999999-01-01T00:00:00Z',
  '2024-02-30T00:00:00Z',
  '2024-13-01T00:00:00Z',
  '2024-01-01T24:00:00Z',
  '2016-12-31T23:59:60Z',
  '2030-01-01',
  '2030-01-01T00:00:00',
  '2030-01-01T00:00:00+14:00',
  '2030-01-01T00:00:00.123456789Z',
  '2030-01-01t00:00:00z',
  'now',
  'tomorrow',
  '',
  '1700000000000',
  'Infinity',
];
const dateArb: fc.Arbitrary<Value> = fc.oneof(
  CROSS,
  { weight: 4, arbitrary: fc.constantFrom(...dateOffsets).map(date) },
  { weight: 2, arbitrary: fc.integer({ min: -100_000, max: 40_000_000 }).map(date) },
  { weight: 3, arbitrary: fc.constantFrom(...DATE_STRINGS) },
  { weight: 1, arbitrary: fc.constantFrom(0, -1, 1_700_000_000_000, 8.64e15, 8.64e15 + 1, 1e300) },
  { weight: 1, arbitrary: stringArb },
);

/** Any value of any shape: the wrong type for wherever it goes. */
const anyValueArb: fc.Arbitrary<Value> = fc.letrec<{ v: Value }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    intArb,
    stringArb,
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom('seconds', 'at', 'a', '__proto__', 'constructor', '$gt'), tie('v'), { maxKeys: 3 }),
  ),
})).v;

/** Values known to matter for particular arguments (fields are still found by walking the schema). */
function hintFor(field: string, arg: string): fc.Arbitrary<Value> | null {
  if (arg === 'username') {
    return fc.oneof(
      CROSS,
      { weight: 3, arbitrary: fc.constant(PH.user) },
      { weight: 2, arbitrary: fc.constant(PH.victimUser) },
      { weight: 3, arbitrary: hex(10).map((h) => `fz_${h}`) },
      { weight: 1, arbitrary: fc.constantFrom('AB', 'a b', 'x'.repeat(65), `  ${PH.user.toUpperCase()}  `) },
      { weight: 2, arbitrary: stringArb },
    );
  }
  if (arg === 'password') {
    return fc.oneof(
      CROSS,
      { weight: field === 'login' ? 3 : 1, arbitrary: fc.constant(PH.pass) },
      { weight: 2, arbitrary: fc.constantFrom('wrong password', 'short', 'x'.repeat(1024), 'x'.repeat(1025), big('p', 5000)) },
      { weight: 2, arbitrary: stringArb },
    );
  }
  return null;
}

export interface ValueContext {
  field: string;
  arg: string;
}

/** A value of type `type` (now and then one of another type, or null where null is not allowed). */
export function valueArb(type: GraphQLInputType, ctx: ValueContext, depth = 0): fc.Arbitrary<Value> {
  if (isNonNullType(type)) {
    return fc.oneof(CROSS, { weight: 19, arbitrary: valueArb(type.ofType, ctx, depth) }, { weight: 1, arbitrary: fc.constant(null) });
  }
  const right = rightValueArb(type, ctx, depth);
  return fc.oneof(
    CROSS,
    { weight: 16, arbitrary: right },
    { weight: 2, arbitrary: fc.constant(null) },
    { weight: 2, arbitrary: depth > 1 ? fc.constant(null) : anyValueArb },
  );
}

function rightValueArb(type: GraphQLInputType, ctx: ValueContext, depth: number): fc.Arbitrary<Value> {
  if (isNonNullType(type)) return rightValueArb(type.ofType, ctx, depth);
  if (isListType(type)) return fc.array(valueArb(type.ofType, ctx, depth + 1), { maxLength: 3 });
  if (isEnumType(type)) {
    return fc.oneof(
      CROSS,
      { weight: 4, arbitrary: fc.constantFrom(...type.getValues().map((v) => new EnumValue(v.name))) },
      { weight: 1, arbitrary: fc.constantFrom(new EnumValue('NOPE'), new EnumValue('seconds')) },
    );
  }
  if (isInputObjectType(type)) {
    const fields = Object.values(type.getFields());
    const entries = fields.map((f) =>
      fc.option(valueArb(f.type, { field: ctx.field, arg: f.name }, depth + 1), { nil: undefined, freq: 2 }).map((v) => [f.name, v] as const),
    );
    return fc
      .tuple(fc.tuple(...entries), rarely(fc.tuple(fc.constantFrom('bogus', 'Seconds', '__proto__'), anyValueArb), 12, undefined))
      .map(([pairs, extra]) => {
        const obj: Record<string, Value> = {};
        for (const [k, v] of pairs) if (v !== undefined) setOwn(obj, k, v);
        if (extra) setOwn(obj, extra[0], extra[1]);
        return obj;
      });
  }
  const hinted = hintFor(ctx.field, ctx.arg);
  if (hinted) return hinted;
  switch (getNamedType(type).name) {
    case 'Int':
      return intArb;
    case 'Float':
      return fc.double();
    case 'Boolean':
      return fc.boolean();
    case 'ID':
      return idArb;
    case 'DateTimeISO':
      return dateArb;
    default:
      return stringArb;
  }
}

// ---------------------------------------------------------------- variables

const WRONG_VARIABLE_TYPES = ['Int', 'Int!', 'String', 'Boolean!', 'ID', 'Float', 'DateTimeISO', 'ExpiryInput', '[Int]', '[String!]!', 'Session', 'Nope'];

interface Piece {
  /** Text of the argument list or selection. */
  text: string;
  varDefs: string[];
  vars: Record<string, Value | undefined>;
}

/** One argument, `name: value`, with the value inline or in a variable. */
function argumentArb(field: string, arg: GraphQLArgument, varName: string): fc.Arbitrary<Piece> {
  const ctx = { field, arg: arg.name };
  const typeName = String(arg.type);
  const literal = fc
    .tuple(valueArb(arg.type, ctx), fc.constantFrom(false, false, false, false, false, true))
    .map(([v, blockStrings]) => ({ text: `${arg.name}: ${printLiteral(v, blockStrings)}`, varDefs: [], vars: {} }));
  const variable = fc
    .record({
      declared: fc.oneof(CROSS, { weight: 8, arbitrary: fc.constant(typeName) }, { weight: 1, arbitrary: fc.constantFrom(...WRONG_VARIABLE_TYPES) }),
      value: fc.oneof(CROSS, { weight: 12, arbitrary: valueArb(arg.type, ctx) }, { weight: 1, arbitrary: fc.constant(undefined) }),
      defaultValue: rarely(valueArb(arg.type, ctx), 10, undefined),
    })
    .map(({ declared, value, defaultValue }) => ({
      text: `${arg.name}: $${varName}`,
      varDefs: [`$${varName}: ${declared}${defaultValue !== undefined ? ` = ${printLiteral(defaultValue)}` : ''}`],
      vars: { [varName]: value },
    }));
  return fc.oneof(CROSS, { weight: 3, arbitrary: literal }, { weight: 2, arbitrary: variable });
}

function argumentsArb(field: GraphQLField<unknown, unknown>, prefix: string): fc.Arbitrary<Piece> {
  const perArg = field.args.map((arg, i) =>
    fc.oneof(
      CROSS,
      // Leaving out a required argument is a validation error: rarely.
      { weight: isRequiredArgument(arg) ? 1 : 6, arbitrary: fc.constant(null) },
      { weight: isRequiredArgument(arg) ? 24 : 10, arbitrary: argumentArb(field.name, arg, `${prefix}${i}`) },
    ),
  );
  const unknownArg = rarely(
    fc.constantFrom('bogus: 1', 'seconds: 1', 'keepCurrent: true', `id: "${PH.victim}"`).map((text) => ({ text, varDefs: [], vars: {} })),
    40,
    null,
  );
  return fc.tuple(fc.tuple(...perArg), unknownArg).map(([args, extra]) => {
    const present = [...args, extra].filter((a): a is Piece => a !== null);
    return {
      text: present.length ? `(${present.map((a) => a.text).join(', ')})` : '',
      varDefs: present.flatMap((a) => a.varDefs),
      vars: Object.assign({}, ...present.map((a) => a.vars)),
    };
  });
}

// ---------------------------------------------------------------- selections

const DIRECTIVES = ['@include(if: true)', '@skip(if: false)', '@include(if: false)', '@skip(if: true)', '@deprecated', '@bogus', '@include', '@skip(if: "yes")'];
const alias = rarely(fc.constantFrom('a', 'b', 'x1', 'session', 'id', '__typename'), 5, null);
const directive = rarely(fc.constantFrom(...DIRECTIVES), 40, null);

/** The sub-selection of a field of type `type`: '' for a leaf, `{ … }` for an object. */
function subSelectionArb(type: GraphQLOutputType, depth: number): fc.Arbitrary<string> {
  const named = getNamedType(type);
  if (isLeafType(named)) {
    // A sub-selection on a leaf is a validation error.
    return fc.oneof(CROSS, { weight: 150, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constant(' { id }') });
  }
  if (!isObjectType(named)) return fc.constant(' { __typename }');
  return fc.oneof(
    CROSS,
    { weight: 100, arbitrary: objectSelectionArb(named, depth + 1).map((s) => ` ${s}`) },
    // An object without a sub-selection is a validation error.
    { weight: 1, arbitrary: fc.constant('') },
  );
}

function objectSelectionArb(type: GraphQLObjectType, depth: number): fc.Arbitrary<string> {
  const fields = Object.values(type.getFields()).filter((f) => depth < 4 || isLeafType(getNamedType(f.type)));
  // Aliases get the field's position, so that two of them never clash.
  const fieldSel = (f: GraphQLField<unknown, unknown>, i: number) =>
    fc
      .tuple(alias, subSelectionArb(f.type, depth), directive)
      .map(([a, sub, d]) => `${a ? `${a}${i}: ` : ''}${f.name}${d ? ` ${d}` : ''}${sub}`);
  const extras = rarely(
    fc.constantFrom('__typename', '__typename', `... on ${type.name} { __typename }`, 'bogusField', '... on Query { serverTime }', '...Missing', 'id(arg: 1)'),
    15,
    null,
  );
  if (fields.length === 0) return fc.constant('{ __typename }');
  return fc
    .tuple(fc.subarray(fields, { minLength: 1, maxLength: Math.min(5, fields.length) }).chain((fs) => fc.tuple(...fs.map((f, i) => fieldSel(f, i)))), extras)
    .map(([sels, extra]) => `{ ${[...sels, ...(extra ? [extra] : [])].join(' ')} }`);
}

// ---------------------------------------------------------------- operations

/** One of the keys of `weights`, each as often as its weight. */
export function weighted<K extends string>(weights: Record<K, number>): fc.Arbitrary<K> {
  return fc.oneof(CROSS, ...(Object.entries(weights) as Array<[K, number]>).map(([k, weight]) => ({ weight, arbitrary: fc.constant(k) })));
}

/** Mutations that end the lane's session (it then needs a new one) are drawn less often. */
const FIELD_WEIGHTS: Record<string, number> = { setExpiry: 10, revokeSession: 3, login: 3, logout: 1, logoutAll: 1, register: 2, touch: 4 };

function rootFieldArb(field: GraphQLField<unknown, unknown>, index: number): fc.Arbitrary<Piece> {
  return fc
    .tuple(argumentsArb(field, `v${index}_`), subSelectionArb(field.type, 0), alias, directive)
    .map(([args, sub, a, d]) => ({
      text: `${a ? `${a}${index}: ` : ''}${field.name}${args.text}${d ? ` ${d}` : ''}${sub}`,
      varDefs: args.varDefs,
      vars: args.vars,
    }));
}

/** An operation of `opType` built from the schema, valid most of the time. */
export function operationArb(schema: GraphQLSchema, opType: OpType): fc.Arbitrary<FuzzOperation> {
  const root = opType === 'query' ? schema.getQueryType() : opType === 'mutation' ? schema.getMutationType() : schema.getSubscriptionType();
  if (!root) throw new Error(`schema.graphql has no ${opType} type`);
  const fields = Object.values(root.getFields());
  const oneField = (i: number) =>
    fc.oneof(CROSS, ...fields.map((f) => ({ weight: FIELD_WEIGHTS[f.name] ?? 1, arbitrary: rootFieldArb(f, i) })));
  // Several root fields: mutations run one after another; a subscription may have only one.
  const several = opType === 'subscription' ? 1 : 5;
  const rootFields = fc.oneof(
    CROSS,
    { weight: 50, arbitrary: oneField(0).map((p) => [p]) },
    { weight: several, arbitrary: fc.tuple(oneField(0), oneField(1)) },
    { weight: several, arbitrary: fc.tuple(oneField(0), oneField(1), oneField(2)) },
  );
  return fc
    .record({
      fields: rootFields,
      named: fc.option(fc.constantFrom('Op', 'op', 'Q'), { nil: null, freq: 2 }),
      // How the root selections are written: inline, in a named fragment, in an inline fragment.
      wrap: weighted({ none: 24, fragment: 4, inline: 4, cycle: 1 }),
      other: rarely(fc.constantFrom('query Other { serverTime }', 'mutation Other { touch { id } }', 'subscription Other { sessionEvents { kind } }'), 12, null),
      opName: weighted({ match: 12, none: 4, mismatch: 1, number: 1, null: 1, Other: 1 }),
      varStyle: weighted({ object: 20, none: 2, string: 1, array: 1, extra: 1 }),
      opDirective: rarely(fc.constantFrom('@include(if: true)', '@bogus', '@skip(if: true)'), 30, null),
      unusedVar: rarely(fc.constantFrom('$unused: Int', '$v0_0: String'), 30, null),
    })
    .map(({ fields: pieces, named, wrap, other, opName, varStyle, opDirective, unusedVar }) => {
      const rootName = root.name;
      const varDefs = [...pieces.flatMap((p) => p.varDefs), ...(unusedVar ? [unusedVar] : [])];
      const vars: Record<string, Value | undefined> = Object.assign({}, ...pieces.map((p) => p.vars));
      const body = pieces.map((p) => p.text).join(' ');
      let selection = `{ ${body} }`;
      let fragments = '';
      if (wrap === 'fragment') {
        selection = '{ ...F }';
        fragments = ` fragment F on ${rootName} { ${body} }`;
      } else if (wrap === 'inline') {
        selection = `{ ... on ${rootName} { ${body} } }`;
      } else if (wrap === 'cycle') {
        selection = '{ ...F }';
        fragments = ` fragment F on ${rootName} { ${body} ...G } fragment G on ${rootName} { ...F }`;
      }
      const name = named;
      const header = `${opType}${name ? ` ${name}` : ''}${varDefs.length ? `(${varDefs.join(', ')})` : ''}${opDirective ? ` ${opDirective}` : ''}`;
      const query = `${header} ${selection}${fragments}${other ? ` ${other}` : ''}`;
      const operationName =
        opName === 'match' ? (name ?? undefined) : opName === 'mismatch' ? 'Nope' : opName === 'number' ? 5 : opName === 'null' ? null : opName === 'Other' ? 'Other' : undefined;
      const sentVars = Object.fromEntries(Object.entries(vars).filter(([, v]) => v !== undefined));
      const variables =
        varStyle === 'none' ? undefined : varStyle === 'string' ? JSON.stringify(sentVars) : varStyle === 'array' ? [sentVars] : varStyle === 'extra' ? { ...sentVars, notDeclared: 1 } : sentVars;
      // Which operation runs: with another one in the document only the named one does.
      const runsOther = other !== null && operationName === 'Other';
      const otherType = other?.split(' ')[0] as OpType | undefined;
      return {
        query,
        ...(variables !== undefined ? { variables } : {}),
        ...(operationName !== undefined ? { operationName } : {}),
        opType: runsOther ? otherType! : opType,
        rootFields: runsOther ? 1 : pieces.length,
      };
    });
}

/** Operations of all three kinds, mutations most often (they are the ones that can change state). */
export function anyOperationArb(schema: GraphQLSchema): fc.Arbitrary<FuzzOperation> {
  return fc.oneof(
    CROSS,
    { weight: 4, arbitrary: operationArb(schema, 'query') },
    { weight: 5, arbitrary: operationArb(schema, 'mutation') },
    { weight: 2, arbitrary: operationArb(schema, 'subscription') },
  );
}
