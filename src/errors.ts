import { GraphQLError } from 'graphql';

/** Every error code a client can get from this API, in `extensions.code`. */
export type ErrorCode =
  | 'UNAUTHENTICATED'
  | 'SESSION_EXPIRED'
  | 'SESSION_ENDED'
  | 'SESSION_NOT_FOUND'
  | 'SESSION_BUSY'
  | 'INVALID_EXPIRY'
  | 'EXPIRY_IN_PAST'
  | 'EXPIRY_TOO_LONG'
  | 'INVALID_CREDENTIALS'
  | 'RATE_LIMITED'
  | 'REGISTRATION_DISABLED'
  | 'USERNAME_TAKEN'
  | 'INVALID_USERNAME'
  | 'INVALID_PASSWORD'
  | 'INVALID_ARGUMENT'
  | 'DATABASE_UNAVAILABLE'
  | 'TOO_MANY_OPERATIONS';

export function apiError(code: ErrorCode, message: string, extensions: Record<string, unknown> = {}): GraphQLError {
  return new GraphQLError(message, { extensions: { code, ...extensions } });
}
