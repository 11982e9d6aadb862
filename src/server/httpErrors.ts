import type { ApolloServerPlugin } from '@apollo/server';
import type { NextFunction, Request, Response } from 'express';
import { GraphQLError } from 'graphql';
import type { Logger } from '../logger.js';
import { isDatabaseUnreachable } from '../store/databaseErrors.js';

/** Subscriptions need a socket: over HTTP they are refused with a 400 that says where to send them. */
export const refuseSubscriptionsOverHttp: ApolloServerPlugin = {
  async requestDidStart() {
    return {
      async didResolveOperation({ operation }) {
        if (operation?.operation !== 'subscription') return;
        throw new GraphQLError('Subscriptions are served over graphql-ws (a websocket to this same URL), not over HTTP.', {
          extensions: { code: 'BAD_REQUEST', http: { status: 400 } },
        });
      },
    };
  },
};

/**
 * A request body that is not JSON, too large or of the wrong encoding gets a JSON error with its
 * 4xx status (not Express's HTML page); anything else is a 500 that is logged.
 */
export function jsonErrors(logger: Logger) {
  return (err: { status?: number; type?: string; message?: string }, _req: Request, res: Response, _next: NextFunction) => {
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) logger.error({ err }, 'unexpected error in an HTTP request');
    else logger.info({ type: err.type, status }, 'refused an HTTP request body');
    const message =
      status === 500 ? 'Internal server error' : err.type === 'entity.parse.failed' ? 'The request body is not valid JSON.' : (err.message ?? 'Bad request');
    res.status(status).json({ errors: [{ message, extensions: { code: status === 500 ? 'INTERNAL_SERVER_ERROR' : 'BAD_REQUEST' } }] });
  };
}

/** An answer that failed because the database is out of reach is a 503 with Retry-After, so that clients and balancers can tell. */
export const databaseUnavailableIs503: ApolloServerPlugin = {
  async requestDidStart() {
    return {
      async didEncounterErrors({ errors, response }) {
        if (!errors.some((error) => isDatabaseUnreachable(error))) return;
        response.http.status = 503;
        response.http.headers.set('retry-after', '1');
      },
    };
  },
};
