import { parse as parseCookies } from 'cookie';

/** The session token a request or socket presents, and whether it came from the (ambient) session cookie. */
export interface Credentials {
  token: string | null;
  fromCookie: boolean;
}

/** The token of an `Authorization` value: the Bearer scheme, case-insensitive (RFC 9110, section 11.1). */
function bearerToken(authorization: unknown): string | null {
  if (typeof authorization !== 'string') return null;
  const match = /^bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
  return match ? match[1]! : null;
}

/**
 * The one place credentials are read, for HTTP requests and websockets alike: an explicit token
 * (an `Authorization: Bearer` header; over graphql-ws also connectionParams `token`, `authToken`
 * or `Authorization`) wins over the session cookie.
 */
export function readCredentials(
  sources: { authorization?: unknown; cookieHeader?: string | undefined; connectionParams?: Record<string, unknown> | undefined },
  cookieName: string,
): Credentials {
  const params = sources.connectionParams;
  const explicit =
    bearerToken(sources.authorization) ??
    nonEmpty(params?.token) ??
    nonEmpty(params?.authToken) ??
    bearerToken(params?.Authorization ?? params?.authorization);
  if (explicit) return { token: explicit, fromCookie: false };
  const cookie = sources.cookieHeader ? parseCookies(sources.cookieHeader)[cookieName] : undefined;
  return cookie ? { token: cookie, fromCookie: true } : { token: null, fromCookie: false };
}

const nonEmpty = (value: unknown): string | null => (typeof value === 'string' && value.length > 0 ? value : null);
