import { createHash } from 'node:crypto';
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
 * The cache of valid documents, shared by both transports: Apollo uses it as its `documentStore`
 * (keys `<schema hash>:<query hash>`) and graphql-ws through `prepare` (keys `<query hash>`);
 * both name the same document by its query hash. Least recently used entries go first.
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

  async set(key: string, document: DocumentNode): Promise<void> {
    this.store(DocumentCache.hashOf(key), document);
  }

  async delete(key: string): Promise<boolean> {
    return this.entries.delete(DocumentCache.hashOf(key));
  }
}

export type Prepared = { document: DocumentNode; errors?: undefined } | { document?: undefined; errors: GraphQLError[] };

/**
 * The one set of rules every GraphQL operation goes through, over HTTP (Apollo is configured from
 * it) and over graphql-ws (which calls `prepare` and `formatError` itself): the same parser limits,
 * validation rules, document cache, production masking and error formatting.
 */
export class OperationPipeline {
  readonly parseOptions: ParseOptions = { maxTokens: OPERATION_LIMITS.maxTokens };
  /** Added to graphql-js's specified rules. */
  readonly validationRules: ValidationRule[];
  readonly documents = new DocumentCache(DOCUMENT_CACHE_SIZE);
  private readonly allRules: ValidationRule[];
  private readonly production: boolean;

  constructor(
    private readonly schema: GraphQLSchema,
    private readonly options: { env: 'development' | 'production' | 'test'; logger: Logger },
  ) {
    this.production = options.env === 'production';
    const armor = new ApolloArmor({
      maxDepth: { n: OPERATION_LIMITS.maxDepth },
      costLimit: { maxCost: OPERATION_LIMITS.maxCost },
      maxAliases: { n: OPERATION_LIMITS.maxAliases },
      maxDirectives: { n: OPERATION_LIMITS.maxDirectives },
      // Enforced by the parser (parseOptions) and by formatError, the same way on both transports.
      maxTokens: { enabled: false },
      blockFieldSuggestion: { enabled: false },
    });
    this.validationRules = [...armor.protect().validationRules, ...(this.production ? [NoSchemaIntrospectionCustomRule] : [])];
    this.allRules = [...specifiedRules, ...this.validationRules];
  }

  /** A valid document for `query`, or the errors that refuse it (codes as Apollo gives them over HTTP). */
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
    const errors = validate(this.schema, document, this.allRules);
    if (errors.length > 0) {
      return {
        errors: errors.map((e) => new GraphQLError(e.message, { nodes: e.nodes, extensions: { ...e.extensions, code: 'GRAPHQL_VALIDATION_FAILED' } })),
      };
    }
    this.documents.store(hash, document);
    return { document };
  }

  /**
   * Apollo's formatError, and graphql-ws's through `formatErrors`. An unreachable database is said
   * so; other errors the server did not mean to raise are logged and reach clients without details
   * outside development; in production no error names a field the client did not ask for.
   */
  readonly formatError = (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = unwrapResolverError(error);
    if (isDatabaseUnreachable(original)) {
      return { message: DATABASE_UNAVAILABLE_MESSAGE, locations: formatted.locations, path: formatted.path, extensions: { code: 'DATABASE_UNAVAILABLE' } };
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
