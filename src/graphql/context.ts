import { serialize } from 'cookie';
import type { Settings } from '../config.js';
import type { EventHub } from '../engine/hub.js';
import { apiError } from '../errors.js';
import type { Decided, SessionService } from '../sessions/service.js';
import type { Session } from '../session.js';
import { expiryAge } from '../expiry/rules.js';

/** What the HTTP layer lets a resolver do with the session cookie. */
export interface CookieJar {
  /** True when this request was authenticated by the cookie rather than a bearer token. */
  readonly fromCookie: boolean;
  set(value: string): void;
}

export interface GraphQLContext {
  service: SessionService;
  hub: EventHub;
  settings: Settings;
  token: string | null;
  /** Over graphql-ws: the session the socket authenticated with (it may have ended since). */
  socketSessionId: string | null;
  clientAddress: string;
  userAgent: string | null;
  cookies: CookieJar | null;
  served?: Promise<Decided>;
}

/** The session that authenticates this request, checked once per request, and when it was found valid. */
export function servedSession(ctx: GraphQLContext): Promise<Decided> {
  ctx.served ??= ctx.token
    ? ctx.service.authenticate(ctx.token)
    : Promise.reject(
        apiError('UNAUTHENTICATED', 'Log in first: send the session token as a Bearer token or the session cookie.', {
          loginUrl: ctx.settings.loginUrl,
        }),
      );
  return ctx.served;
}

export async function currentSession(ctx: GraphQLContext): Promise<Session> {
  return (await servedSession(ctx)).session;
}

/**
 * The Set-Cookie value for a session, as Django writes it: HttpOnly, SameSite, Secure when
 * configured, and no Max-Age for a browser-close session so the browser drops it on exit.
 */
export function sessionCookie(settings: Settings, token: string, session: Session, now: Date): string {
  const { name, secure, sameSite } = settings.cookie;
  const browserClose = session.expiry.spec.policy === 'BROWSER_CLOSE';
  return serialize(name, token, {
    httpOnly: true,
    secure,
    sameSite,
    path: '/',
    ...(browserClose ? {} : { maxAge: expiryAge(session.expiry.expiresAt, now) }),
  });
}

export function clearedSessionCookie(settings: Settings): string {
  const { name, secure, sameSite } = settings.cookie;
  return serialize(name, '', { httpOnly: true, secure, sameSite, path: '/', maxAge: 0 });
}
