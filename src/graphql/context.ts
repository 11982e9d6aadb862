import { serialize, type SerializeOptions } from 'cookie';
import { COOKIE_SENT_TWICE } from '../auth/credentials.js';
import type { CookieSettings, Settings } from '../config.js';
import type { EventHub } from '../engine/hub.js';
import { apiError } from '../errors.js';
import type { Decided, SessionService } from '../sessions/service.js';
import type { Session } from '../session.js';
import { expiresAtBrowserClose, expiryAge } from '../expiry/rules.js';

/** What the HTTP layer lets a resolver do with the session cookie. */
export interface CookieJar {
  /** True when this request was authenticated by the cookie rather than a bearer token. */
  readonly fromCookie: boolean;
  /** Sets the session cookie in the response (the Set-Cookie value); a later call in the same request replaces an earlier one. */
  set(value: string): void;
}

export interface GraphQLContext {
  service: SessionService;
  hub: EventHub;
  settings: Settings;
  token: string | null;
  /** No token, because the session cookie came more than once (auth/credentials.ts). */
  cookieSentTwice?: boolean;
  /** Over graphql-ws: the session the socket authenticated with (it may have ended since). */
  socketSessionId: string | null;
  clientAddress: string;
  userAgent: string | null;
  cookies: CookieJar | null;
  served?: Promise<Decided>;
  /** The user's valid sessions, listed once per request however many fields ask (aliases). */
  listed?: Promise<Session[]>;
}

/**
 * The session that authenticates this request, checked once per request, and when it was found
 * valid. When the check moved the expiry (SESSION_SAVE_EVERY_REQUEST), the cookie follows it.
 */
export function servedSession(ctx: GraphQLContext): Promise<Decided> {
  ctx.served ??= ctx.token
    ? ctx.service.authenticate(ctx.token, ctx.clientAddress).then((served) => {
        if (served.expiryMoved) refreshCookie(ctx, served);
        return served;
      })
    : Promise.reject(
        apiError('UNAUTHENTICATED', ctx.cookieSentTwice ? COOKIE_SENT_TWICE : 'Log in first: send the session token as a Bearer token or the session cookie.', {
          loginUrl: ctx.settings.loginUrl,
        }),
      );
  return ctx.served;
}

export async function currentSession(ctx: GraphQLContext): Promise<Session> {
  return (await servedSession(ctx)).session;
}

/** After a save over the cookie transport (a renewal, or a request that slid the expiry), the cookie follows the new expiry. */
export function refreshCookie(ctx: GraphQLContext, saved: Decided): void {
  if (ctx.cookies?.fromCookie && ctx.token) {
    ctx.cookies.set(sessionCookie(ctx.settings, ctx.token, saved.session, saved.at));
  }
}

/** The attributes Django's SessionMiddleware gives the cookie: SESSION_COOKIE_DOMAIN, _PATH, _SECURE, _HTTPONLY, _SAMESITE. */
function cookieAttributes(cookie: CookieSettings): SerializeOptions {
  return {
    ...(cookie.domain === null ? {} : { domain: cookie.domain }),
    path: cookie.path,
    httpOnly: cookie.httpOnly,
    secure: cookie.secure,
    sameSite: cookie.sameSite,
  };
}

/**
 * The Set-Cookie value for a session as of `now`, as Django's SessionMiddleware writes it:
 * Max-Age (here the seconds left) with the matching Expires, and neither for a session that
 * expires at browser close (an expiry of 0, or null with SESSION_EXPIRE_AT_BROWSER_CLOSE), so
 * that the browser drops it on exit.
 */
export function sessionCookie(settings: Settings, token: string, session: Session, now: Date): string {
  const atBrowserClose = expiresAtBrowserClose(session.expiry.spec, settings.expiry);
  const maxAge = expiryAge(session.expiry.expiresAt, now);
  return serialize(settings.cookie.name, token, {
    ...cookieAttributes(settings.cookie),
    ...(atBrowserClose ? {} : { maxAge, expires: new Date(now.getTime() + maxAge * 1000) }),
  });
}

/** Django's delete_cookie: the same name, path and domain, empty, Max-Age=0 and Expires in 1970. */
export function clearedSessionCookie(settings: Settings): string {
  return serialize(settings.cookie.name, '', { ...cookieAttributes(settings.cookie), maxAge: 0, expires: new Date(0) });
}
