import { createHash } from 'node:crypto';
import type { ApolloServerPlugin } from '@apollo/server';
import { unwrapResolverError } from '@apollo/server/errors';
import { ApolloArmor } from '@escape.tech/graphql-armor';
import {
  GraphQLError,
  NoSchemaIntrospectionCustomRule,
  parse,
  specifiedRules,
  validate,
  type DocumentNode,
  type GraphQLFormattedError,
  type GraphQLSchema,
  type ParseOptions,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import type { Logger } from '../logger.js';
import { DATABASE_UNAVAILABLE_MESSAGE, isDatabaseUnreachable } from '../store/databaseErrors.js';

/** What one operation may ask for, on either transport. */
export const OPERATION_LIMITS = {
  /** Lexical tokens in a document: bounds the parser's work before anything else runs. */
  maxTokens: 1_000,
  maxDepth: 8,
  maxAliases: 15,
  maxDirectives: 50,
  /** graphql-armor's cost: 1 per object field, 5 per nesting level and list. */
  maxCost: 5_000,
};

/** Parsed and validated documents kept, by the SHA-256 of their text (as Apollo keys its document store). */
const DOCUMENT_CACHE_SIZE = 500;

const SUGGESTION = / ?Did you mean(.+?)\?$/;

/**
 * The cache of valid documents, shared by both transports. Only `prepare` fills it; Apollo reads it
 * as its `documentStore` (keys `<schema hash>:<query hash>`, both name a document by the SHA-256 of
 * its text) and its writes are ignored, since with validation left to the pipeline it would store
 * documents nobody validated. Least recently used entries go first.
 */
class DocumentCache {
  private readonly entries = new Map<string, DocumentNode>();

  constructor(private readonly capacity: number) {}

  private static hashOf(key: string): string {
    return key.slice(key.lastIndexOf(':') + 1);
  }

  lookup(hash: string): DocumentNode | undefined {
    const document = this.entries.get(hash);
    if (document) {
      this.entries.delete(hash);
      this.entries.set(hash, document);
    }
    return document;
  }

  store(hash: string, document: DocumentNode): void {
    this.entries.delete(hash);
    if (this.entries.size >= this.capacity) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(hash, document);
  }

  // Apollo's KeyValueCache interface.
  async get(key: string): Promise<DocumentNode | undefined> {
    return this.lookup(DocumentCache.hashOf(key));
  }

  async set(): Promise<void> {}

  async delete(key: string): Promise<boolean> {
    return this.entries.delete(DocumentCache.hashOf(key));
  }
}

/**
 * graphql-js 16 crashes executing a subscription whose root field is skipped, so a subscription's
 * root selections (through fragments too) may not carry @skip or @include.
 */
function NoConditionalSubscriptionRootRule(context: ValidationContext) {
  const check = (selectionSet: SelectionSetNode, seen: Set<string>): void => {
    for (const selection of selectionSet.selections) {
      if (selection.directives?.some((d) => d.name.value === 'skip' || d.name.value === 'include')) {
        context.reportError(new GraphQLError('The root field of a subscription may not be conditional (@skip or @include).', { nodes: selection }));
      }
      if (selection.kind === 'InlineFragment') check(selection.selectionSet, seen);
      if (selection.kind === 'FragmentSpread' && !seen.has(selection.name.value)) {
        seen.add(selection.name.value);
        const fragment = context.getFragment(selection.name.value);
        if (fragment) check(fragment.selectionSet, seen);
      }
    }
  };
  return {
    OperationDefinition(node: { operation: string; selectionSet: SelectionSetNode }) {
      if (node.operation === 'subscription') check(node.selectionSet, new Set());
    },
  };
}

export type Prepared = { document: DocumentNode; errors?: undefined } | { document?: undefined; errors: GraphQLError[] };

/** The messages of graphql-js's getArgumentValues, which it raises while executing. */
const ARGUMENT_REFUSED = /^Argument "[^"]+" (of (required|non-null) type|has invalid value)/;

/**
 * The one set of rules every GraphQL operation goes through, over HTTP (Apollo is configured from
 * it) and over graphql-ws (which calls `prepare` and `formatError` itself): the same parser limits,
 * validation rules, document cache, production masking and error formatting.
 */
export class OperationPipeline {
  readonly parseOptions: ParseOptions = { maxTokens: OPERATION_LIMITS.maxTokens };
  readonly documents = new DocumentCache(DOCUMENT_CACHE_SIZE);
  private readonly rules: ValidationRule[];
  private readonly production: boolean;

  constructor(
    private readonly schema: GraphQLSchema,
    private readonly options: {
      env: 'development' | 'production' | 'test';
      logger: Logger;
      /** Told of each error answered as DATABASE_UNAVAILABLE (DatabaseHealth.refused). */
      databaseRefused?: (err: unknown) => void;
    },
  ) {
    this.production = options.env === 'production';
    const armor = new ApolloArmor({
      maxDepth: { n: OPERATION_LIMITS.maxDepth },
      costLimit: { maxCost: OPERATION_LIMITS.maxCost },
      maxAliases: { n: OPERATION_LIMITS.maxAliases },
      maxDirectives: { n: OPERATION_LIMITS.maxDirectives },
      // The token limit is the parser's (parseOptions) and suggestions are masked by formatError, on both transports alike.
      maxTokens: { enabled: false },
      blockFieldSuggestion: { enabled: false },
    });
    this.rules = [...specifiedRules, NoConditionalSubscriptionRootRule, ...armor.protect().validationRules, ...(this.production ? [NoSchemaIntrospectionCustomRule] : [])];
  }

  /** A valid document for `query`, or the errors that refuse it (GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED). */
  prepare(query: unknown): Prepared {
    if (typeof query !== 'string' || query.length === 0) {
      return { errors: [new GraphQLError('The operation has no query.', { extensions: { code: 'BAD_REQUEST' } })] };
    }
    const hash = createHash('sha256').update(query).digest('hex');
    const cached = this.documents.lookup(hash);
    if (cached) return { document: cached };
    let document: DocumentNode;
    try {
      document = parse(query, this.parseOptions);
    } catch (err) {
      const message = err instanceof GraphQLError ? err.message : 'Syntax Error';
      return { errors: [new GraphQLError(message, { extensions: { code: 'GRAPHQL_PARSE_FAILED' } })] };
    }
    let errors: readonly GraphQLError[];
    try {
      errors = validate(this.schema, document, this.rules);
    } catch (err) {
      // graphql-js's SingleFieldSubscriptionsRule evaluates @skip/@include and throws on a malformed one.
      errors = [err instanceof GraphQLError ? err : new GraphQLError('The document could not be validated.')];
    }
    if (errors.length > 0) {
      return {
        errors: errors.map((e) => new GraphQLError(e.message, { nodes: e.nodes, extensions: { ...e.extensions, code: 'GRAPHQL_VALIDATION_FAILED' } })),
      };
    }
    this.documents.store(hash, document);
    return { document };
  }

  /**
   * Apollo's side of `prepare` (with `dangerouslyDisableValidation`, so that validation happens here
   * only): a document `prepare` accepts is in the shared cache, where Apollo finds it and neither
   * parses nor validates it again; one it refuses is answered with its first error and HTTP 400
   * (a syntax error is found by Apollo's own parse, with the same parser options, first).
   */
  apolloPlugin(): ApolloServerPlugin {
    return {
      requestDidStart: async () => {
        let refused: GraphQLError | undefined;
        return {
          didResolveSource: async ({ source }) => {
            refused = this.prepare(source).errors?.[0];
          },
          didResolveOperation: async () => {
            if (!refused) return;
            throw new GraphQLError(refused.message, { nodes: refused.nodes, extensions: { ...refused.extensions, http: { status: 400 } } });
          },
        };
      },
    };
  }

  /**
   * Apollo's formatError, and graphql-ws's through `formatErrors`. An unreachable database is said
   * so; other errors the server did not mean to raise are logged and reach clients without details
   * outside development; in production no error names a field the client did not ask for.
   */
  readonly formatError = (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = unwrapResolverError(error);
    if (isDatabaseUnreachable(original)) {
      this.options.databaseRefused?.(original);
      return { message: DATABASE_UNAVAILABLE_MESSAGE, locations: formatted.locations, path: formatted.path, extensions: { code: 'DATABASE_UNAVAILABLE' } };
    }
    // graphql-js refuses some arguments only as it executes (a null given through a variable with a
    // default where a value is required): the client's input, not the server's fault.
    if (original instanceof GraphQLError && !original.extensions.code && ARGUMENT_REFUSED.test(original.message)) {
      return { ...formatted, extensions: { ...formatted.extensions, code: 'BAD_USER_INPUT' } };
    }
    if (formatted.extensions?.code === 'INTERNAL_SERVER_ERROR') {
      this.options.logger.error({ err: original }, 'unexpected error in a GraphQL operation');
      if (this.options.env === 'development') return formatted;
      return { message: 'Internal server error', locations: formatted.locations, path: formatted.path, extensions: { code: 'INTERNAL_SERVER_ERROR' } };
    }
    if (this.production && SUGGESTION.test(formatted.message)) return { ...formatted, message: formatted.message.replace(SUGGESTION, '') };
    return formatted;
  };

  /** graphql-ws's side of formatError: errors without a code are internal, as Apollo takes them. */
  formatErrors(errors: readonly GraphQLError[]): GraphQLFormattedError[] {
    return errors.map((error) => {
      const json = error.toJSON();
      const code = json.extensions?.code ?? 'INTERNAL_SERVER_ERROR';
      return this.formatError({ ...json, extensions: { ...json.extensions, code } }, error);
    });
  }
}
