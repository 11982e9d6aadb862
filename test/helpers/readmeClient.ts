/**
 * The README's graphql-ws client ("Subscribing to the end of a session"), run as written: its ts
 * code block is parsed with the TypeScript compiler, types stripped, and everything but the import
 * and the `client.subscribe` call evaluated with `token` in scope. Only `url` (the test's server)
 * and `webSocketImpl` (Node 20 has no global WebSocket) are replaced, and a test may adjust the
 * options before the client is made. The reference frontend's client (web/app/api.ts) is parsed the
 * same way, so a test can hold the two to the same options.
 */
import { readFileSync } from 'node:fs';
import { createClient, type Client, type ClientOptions } from 'graphql-ws';
import ts from 'typescript';
import WebSocket from 'ws';

/** The snippet's options that keep it retrying while the server is down. */
export const RETRY_OPTIONS = ['retryAttempts', 'shouldRetry', 'retryWait'] as const;
/** The snippet's options that make it leave a server that does not answer (and the function they use). */
export const SILENCE_OPTIONS = ['keepAlive', 'on'] as const;
export const SILENCE_FUNCTION = 'reconnectWhenSilent';

/** Client options without the named ones: what the snippet's client does without them. */
export const without =
  (names: readonly string[]) =>
  (options: ClientOptions): ClientOptions =>
    Object.fromEntries(Object.entries(options).filter(([name]) => !names.includes(name))) as ClientOptions;

const README = new URL('../../README.md', import.meta.url);
const FRONTEND_CLIENT = new URL('../../web/app/api.ts', import.meta.url);

/** Source texts of a file's createClient options and of its top-level functions. */
export interface ClientSource {
  /** Each property of the object literal passed to createClient. */
  optionTexts: Map<string, string>;
  functionTexts: Map<string, string>;
}

export interface ReadmeClient extends ClientSource {
  /** The query of the snippet's client.subscribe call. */
  query: string;
  /** The snippet's client for `token`, on `wsUrl`, with `adjust` applied to its options. */
  create(token: string, wsUrl: string, adjust?: (options: ClientOptions) => ClientOptions): Client;
}

function parse(code: string, fileName: string): ts.SourceFile {
  return ts.createSourceFile(fileName, code, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
}

function findCall(node: ts.Node, matches: (call: ts.CallExpression) => boolean): ts.CallExpression | undefined {
  if (ts.isCallExpression(node) && matches(node)) return node;
  return ts.forEachChild(node, (child) => findCall(child, matches));
}

function objectArgument(call: ts.CallExpression | undefined, what: string): ts.ObjectLiteralExpression {
  const arg = call?.arguments[0];
  if (!arg || !ts.isObjectLiteralExpression(arg)) throw new Error(`${what}: no object literal argument found`);
  return arg;
}

function clientSource(source: ts.SourceFile, what: string): ClientSource {
  const isCreateClient = (call: ts.CallExpression) => ts.isIdentifier(call.expression) && call.expression.text === 'createClient';
  const optionTexts = new Map<string, string>();
  for (const prop of objectArgument(findCall(source, isCreateClient), `${what} createClient`).properties) {
    if (ts.isPropertyAssignment(prop)) optionTexts.set(prop.name.getText(), prop.initializer.getText());
    else if (ts.isShorthandPropertyAssignment(prop)) optionTexts.set(prop.name.getText(), prop.name.getText());
    else throw new Error(`${what}: unexpected property in createClient options: ${prop.getText()}`);
  }
  const functionTexts = new Map<string, string>();
  for (const statement of source.statements) {
    if (ts.isFunctionDeclaration(statement) && statement.name) functionTexts.set(statement.name.text, statement.getText());
  }
  return { optionTexts, functionTexts };
}

export function frontendClient(): ClientSource {
  return clientSource(parse(readFileSync(FRONTEND_CLIENT, 'utf8'), 'api.ts'), 'web/app/api.ts');
}

export function readmeClient(): ReadmeClient {
  const readme = readFileSync(README, 'utf8');
  const section = readme.split('\n## Subscribing to the end of a session\n')[1]?.split('\n## ')[0];
  const block = section && /```ts\n([\s\S]*?)\n```/.exec(section)?.[1];
  if (!block) throw new Error('README: no ts code block in "Subscribing to the end of a session"');
  const source = parse(block, 'README.md.ts');

  const isSubscribe = (call: ts.CallExpression) => ts.isPropertyAccessExpression(call.expression) && call.expression.name.text === 'subscribe';
  const queryProp = objectArgument(findCall(source, isSubscribe), 'README client.subscribe').properties.find(
    (p): p is ts.PropertyAssignment => ts.isPropertyAssignment(p) && p.name.getText() === 'query',
  );
  if (!queryProp || !ts.isStringLiteralLike(queryProp.initializer)) throw new Error('README client.subscribe: no query string');

  // The snippet without its import and its subscribe call: `token` and `createClient` are its free variables.
  const kept = source.statements.filter(
    (s) => !ts.isImportDeclaration(s) && !(ts.isExpressionStatement(s) && ts.isCallExpression(s.expression) && isSubscribe(s.expression)),
  );
  const js = ts.transpileModule(`${kept.map((s) => s.getText()).join('\n')}\nreturn client;`, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.None },
  }).outputText;
  const run = new Function('token', 'createClient', js) as (token: string, make: (options: ClientOptions) => Client) => Client;

  return {
    ...clientSource(source, 'README'),
    query: queryProp.initializer.text,
    create: (token, wsUrl, adjust = (options) => options) =>
      run(token, (options) => createClient(adjust({ ...options, url: wsUrl, webSocketImpl: WebSocket }))),
  };
}
