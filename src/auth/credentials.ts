import { parse as parseCookies } from 'cookie';

/** The session token a request or socket presents, and whether it came from the (ambient) session cookie. */
export interface Credentials {
  token: string | null;
  fromCookie: boolean;
  /**
   * The session cookie came more than once, so no token was taken from it: a page of another site
   * on this host (another port, a sibling subdomain) can add one of the same name with a narrower
   * path, which the browser sends first, and the user would act in that site's session (cookie
   * tossing). The `__Host-` prefix (README) prevents it.
   */
  cookieSentTwice: boolean;
}

export const COOKIE_SENT_TWICE =
  "The session cookie was sent more than once (a page of another site on this host may have set one): clear this site's cookies and log in again.";

/** How many cookies named `name` a Cookie header carries (the `cookie` library keeps the first). */
function cookiesNamed(header: string, name: string): number {
  return header.split(';').filter((pair) => {
    const eq = pair.indexOf('=');
    return eq > 0 && pair.slice(0, eq).trim() === name;
  }).length;
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
  if (explicit) return { token: explicit, fromCookie: false, cookieSentTwice: false };
  const header = sources.cookieHeader ?? '';
  if (cookiesNamed(header, cookieName) > 1) return { token: null, fromCookie: false, cookieSentTwice: true };
  const cookie = header ? parseCookies(header)[cookieName] : undefined;
  return { token: cookie || null, fromCookie: Boolean(cookie), cookieSentTwice: false };
}

const nonEmpty = (value: unknown): string | null => (typeof value === 'string' && value.length > 0 ? value : null);
