import { Arg, Ctx, ID, Int, Mutation, Query, Resolver } from 'type-graphql';
import type { Session } from '../session.js';
import { clearedSessionCookie, currentSession, refreshCookie, servedSession, sessionCookie, type GraphQLContext } from './context.js';
import {
  DateTime,
  ExpiryInput,
  LoginResult,
  ServerSettingsType,
  SessionType,
  toSessionType,
  toUserType,
  UserType,
} from './types.js';

/** A session as of `at`: when the request's session was found valid, or when a write decided it. */
function describe(ctx: GraphQLContext, session: Session, current: Session, at: Date): SessionType {
  return toSessionType(session, at, ctx.settings, current.id);
}

/** The cookie is cleared only when it holds the session that ended: a request by Bearer token leaves another session's cookie alone. */
function clearCookie(ctx: GraphQLContext): void {
  if (ctx.cookies?.fromCookie) ctx.cookies.set(clearedSessionCookie(ctx.settings));
}

@Resolver()
export class SessionResolver {
  @Query(() => SessionType, { description: 'The session that makes this request. Reading it does not move its expiry (with SESSION_SAVE_EVERY_REQUEST, every request renews it, this one too).' })
  async session(@Ctx() ctx: GraphQLContext): Promise<SessionType> {
    const { session, at } = await servedSession(ctx);
    return describe(ctx, session, session, at);
  }

  @Query(() => [SessionType], { description: "All of this user's valid sessions, newest first." })
  async sessions(@Ctx() ctx: GraphQLContext): Promise<SessionType[]> {
    const { session: current, at } = await servedSession(ctx);
    ctx.listed ??= ctx.service.listSessions(current, at);
    return (await ctx.listed).map((s) => describe(ctx, s, current, at));
  }

  @Query(() => UserType, { description: 'The user of the session that makes this request.' })
  async me(@Ctx() ctx: GraphQLContext): Promise<UserType> {
    const session = await currentSession(ctx);
    const user = await ctx.service.findUser(session.userId);
    if (!user) throw new Error('session without user');
    return toUserType(user);
  }

  @Query(() => DateTime, { description: "The server's clock. Needs no session." })
  serverTime(@Ctx() ctx: GraphQLContext): Date {
    return ctx.service.clock();
  }

  @Query(() => ServerSettingsType, { description: 'The expiry policy of this server. Needs no session.' })
  serverSettings(@Ctx() ctx: GraphQLContext): ServerSettingsType {
    const { settings } = ctx;
    return Object.assign(new ServerSettingsType(), {
      cookieAge: settings.expiry.cookieAge,
      expireAtBrowserClose: settings.expiry.expireAtBrowserClose,
      browserCloseAge: settings.expiry.browserCloseAge,
      browserCloseGrace: Math.round(settings.browserCloseGraceMs / 1000),
      maxLifetime: settings.expiry.maxLifetime,
      maxExpiry: settings.expiry.maxExpiry,
      saveEveryRequest: settings.expiry.saveEveryRequest,
      loginUrl: settings.loginUrl,
      registrationEnabled: settings.registrationEnabled,
      serverTime: ctx.service.clock(),
    });
  }

  @Mutation(() => UserType, { description: 'Creates a user (unless registration is switched off). Does not log in. Registrations per client address are limited, as are logins and registrations of one address at once (RATE_LIMITED with retryAfter).' })
  async register(
    @Arg('username', () => String) username: string,
    @Arg('password', () => String, { description: '8 to 1 024 characters (UTF-16 code units; no lone surrogate).' }) password: string,
    @Ctx() ctx: GraphQLContext,
  ): Promise<UserType> {
    return toUserType(await ctx.service.register(username, password, ctx.clientAddress));
  }

  @Mutation(() => LoginResult, {
    description:
      'Logs in and creates a session with the given expiry (default: the global policy); beyond MAX_SESSIONS_PER_USER valid sessions of the user, the oldest others end REVOKED. Unknown user and wrong password give the same INVALID_CREDENTIALS error; repeated failures, or too many logins and registrations of one client address at once, give RATE_LIMITED (with retryAfter).',
  })
  async login(
    @Arg('username', () => String) username: string,
    @Arg('password', () => String) password: string,
    @Arg('expiry', () => ExpiryInput, { nullable: true }) expiry: ExpiryInput | null,
    @Arg('cookie', () => Boolean, {
      defaultValue: false,
      description:
        'Also set the session as a cookie (HttpOnly unless SESSION_COOKIE_HTTPONLY=false), with Max-Age and Expires, or neither for a session that expires at browser close.',
    })
    cookie: boolean,
    @Ctx() ctx: GraphQLContext,
  ): Promise<LoginResult> {
    const { token, session } = await ctx.service.login({
      username,
      password,
      expiry: expiry ? { seconds: expiry.seconds, date: expiry.at } : null,
      userAgent: ctx.userAgent,
      clientAddress: ctx.clientAddress,
    });
    if (cookie && ctx.cookies) ctx.cookies.set(sessionCookie(ctx.settings, token, session, session.updatedAt));
    const user = await ctx.service.findUser(session.userId);
    return Object.assign(new LoginResult(), {
      token,
      session: describe(ctx, session, session, session.updatedAt),
      user: toUserType(user!),
    });
  }

  @Mutation(() => SessionType, {
    description:
      "Django's set_expiry: saves the session now with a new expiry. `seconds` > 0: that many seconds of inactivity; 0: at browser close; `at`: a fixed instant; neither (or null): the global default. Errors: INVALID_EXPIRY, EXPIRY_IN_PAST, EXPIRY_TOO_LONG (nothing changes).",
  })
  async setExpiry(
    @Arg('seconds', () => Int, { nullable: true, description: 'Idle seconds; 0 means at browser close.' })
    seconds: number | null,
    @Arg('at', () => DateTime, { nullable: true, description: 'A fixed expiry instant.' }) at: Date | null,
    @Ctx() ctx: GraphQLContext,
  ): Promise<SessionType> {
    const saved = await ctx.service.setExpiry(await currentSession(ctx), { seconds, date: at });
    refreshCookie(ctx, saved);
    return describe(ctx, saved.session, saved.session, saved.at);
  }

  @Mutation(() => SessionType, { description: 'Renews the session: saves it now with the expiry policy it has (a fixed date does not move).' })
  async touch(@Ctx() ctx: GraphQLContext): Promise<SessionType> {
    const saved = await ctx.service.touch(await currentSession(ctx));
    refreshCookie(ctx, saved);
    return describe(ctx, saved.session, saved.session, saved.at);
  }

  @Mutation(() => Boolean, { description: 'Ends this session (LOGGED_OUT) and clears its cookie. A session that another end reached first (its expiry, a revocation) is refused as any request would be then: SESSION_EXPIRED or SESSION_ENDED.' })
  async logout(@Ctx() ctx: GraphQLContext): Promise<boolean> {
    await ctx.service.logout(await currentSession(ctx));
    clearCookie(ctx);
    return true;
  }

  @Mutation(() => Int, {
    description:
      "Ends all of the user's sessions: the others with REVOKED, this one with LOGGED_OUT unless keepCurrent. Returns how many ended. When one of the others cannot be ended (the database is out), the call fails and this session is left as it was: retry it. Once this session has ended (a logout earlier in the same mutation, a revocation answered meanwhile), it ends no more and fails with SESSION_ENDED.",
  })
  async logoutAll(
    @Arg('keepCurrent', () => Boolean, { defaultValue: false }) keepCurrent: boolean,
    @Ctx() ctx: GraphQLContext,
  ): Promise<number> {
    const count = await ctx.service.logoutAll(await currentSession(ctx), keepCurrent);
    if (!keepCurrent) clearCookie(ctx);
    return count;
  }

  @Mutation(() => Boolean, { description: "Ends one of the user's other sessions (REVOKED). False when there is no such open session. Fails with SESSION_ENDED once this session has ended, also earlier in the same request (a logout before it in the mutation, a revocation answered meanwhile)." })
  async revokeSession(@Arg('id', () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<boolean> {
    return ctx.service.revoke(await currentSession(ctx), id);
  }
}
