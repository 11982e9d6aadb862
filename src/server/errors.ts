import { unwrapResolverError } from '@apollo/server/errors';
import type { GraphQLFormattedError } from 'graphql';
import type { Settings } from '../config.js';
import type { Logger } from '../logger.js';

/** Errors the server did not mean to raise are logged and, outside development, reach clients without their details. */
export function formatError(settings: Settings, logger: Logger) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    if (formatted.extensions?.code !== 'INTERNAL_SERVER_ERROR') return formatted;
    logger.error({ err: unwrapResolverError(error) }, 'unexpected error in a GraphQL operation');
    if (settings.env === 'development') return formatted;
    return { message: 'Internal server error', locations: formatted.locations, path: formatted.path, extensions: { code: 'INTERNAL_SERVER_ERROR' } };
  };
}
