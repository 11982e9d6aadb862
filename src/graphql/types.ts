import { GraphQLDateTimeISO } from 'graphql-scalars';
import { Field, ID, InputType, Int, ObjectType, registerEnumType } from 'type-graphql';
import { expiresAtBrowserClose, expiryAge, expiryPeriod, type ExpiryLimit, type ExpiryPolicy } from '../expiry/rules.js';
import type { Settings } from '../config.js';
import type { SessionEvent, SessionEventKind } from '../engine/events.js';
import type { EndReason, Session } from '../session.js';
import type { User } from '../store/userStore.js';

export const DateTime = GraphQLDateTimeISO;

export const ExpiryPolicyEnum = { SECONDS: 'SECONDS', BROWSER_CLOSE: 'BROWSER_CLOSE', DEFAULT: 'DEFAULT', DATE: 'DATE' } as const;
registerEnumType(ExpiryPolicyEnum, {
  name: 'ExpiryPolicy',
  description: 'What set the expiry, as in Django\'s `set_expiry(value)`.',
  valuesConfig: {
    SECONDS: { description: 'A positive number of seconds of inactivity: expires that long after the last save.' },
    BROWSER_CLOSE: {
      description:
        '`0`: expires when the browser closes (its cookie has no Max-Age), at the latest the browser-close age after the last save.',
    },
    DEFAULT: {
      description:
        '`null` or omitted: the global policy, SESSION_COOKIE_AGE after the last save. With SESSION_EXPIRE_AT_BROWSER_CLOSE it expires when the browser closes instead, exactly as BROWSER_CLOSE does; the policy stays DEFAULT and expireAtBrowserClose is true.',
    },
    DATE: { description: 'A fixed instant; renewal does not move it.' },
  },
});

export const ExpiryLimitEnum = { POLICY: 'POLICY', MAX_LIFETIME: 'MAX_LIFETIME' } as const;
registerEnumType(ExpiryLimitEnum, {
  name: 'ExpiryLimit',
  description: 'Which limit decides the effective expiry.',
  valuesConfig: {
    POLICY: { description: "The session's own policy (idle seconds, browser close, default, or date)." },
    MAX_LIFETIME: { description: 'The server-wide absolute cap SESSION_MAX_LIFETIME after login, which is earlier.' },
  },
});

@ObjectType('User', { description: 'A registered user.' })
export class UserType {
  @Field(() => ID)
  id!: string;

  @Field(() => String, { description: 'Lower-cased username.' })
  username!: string;

  @Field(() => DateTime)
  createdAt!: Date;
}

export function toUserType(user: User): UserType {
  return Object.assign(new UserType(), user);
}

@ObjectType('Session', { description: 'A login session and its expiry, as Django reports it. Reading it never moves the expiry (with SESSION_SAVE_EVERY_REQUEST, the request that reads it does).' })
export class SessionType {
  @Field(() => ID, { description: 'Public id of the session (not its token).' })
  id!: string;

  @Field(() => DateTime, { description: 'When the session was created by login.' })
  createdAt!: Date;

  @Field(() => DateTime, { description: 'The last save (login, setExpiry, touch, or a sliding request): the idle period counts from here.' })
  lastSavedAt!: Date;

  @Field(() => DateTime, {
    description:
      "Django's get_expiry_date: the instant the session stops being valid. Valid iff serverTime < expiryDate.",
  })
  expiryDate!: Date;

  @Field(() => Int, {
    description:
      "Seconds left at serverTime, rounded up (0 exactly when expired): what a countdown needs. Not Django's get_expiry_age, which is expiryPeriod.",
  })
  expiryAge!: number;

  @Field(() => Int, {
    description:
      "Django's get_expiry_age: the configured period, not the time left. N after setExpiry(seconds: N), however much time has passed; for the global policy SESSION_COOKIE_AGE (for a session that expires at browser close, the browser-close age, which is SESSION_COOKIE_AGE unless SESSION_BROWSER_CLOSE_AGE is set); for a fixed date, the whole seconds from serverTime to it (rounded down). Not shortened by SESSION_MAX_LIFETIME.",
  })
  expiryPeriod!: number;

  @Field(() => Boolean, {
    description:
      "Django's get_expire_at_browser_close: true for expiry 0, and for the global policy (null) when SESSION_EXPIRE_AT_BROWSER_CLOSE is set; false for a number of seconds or a date. Such a session's cookie has no Max-Age or Expires, and it ends BROWSER_CLOSED once its last subscription has been gone for the grace period.",
  })
  expireAtBrowserClose!: boolean;

  @Field(() => ExpiryPolicyEnum, {
    description: 'The policy that produced the expiry (DEFAULT for the global policy, also when that is to expire at browser close: see expireAtBrowserClose).',
  })
  policy!: ExpiryPolicy;

  @Field(() => Int, { nullable: true, description: 'The idle seconds of a SECONDS policy; null otherwise.' })
  policySeconds!: number | null;

  @Field(() => ExpiryLimitEnum, { description: 'Whether the policy or the server-wide maximum lifetime decides expiryDate.' })
  limitedBy!: ExpiryLimit;

  @Field(() => DateTime, {
    nullable: true,
    description: 'The absolute end (createdAt + SESSION_MAX_LIFETIME) no renewal can pass; null when there is no cap.',
  })
  maxLifetimeDate!: Date | null;

  @Field(() => DateTime, { description: "The server's clock when this was read: count down from here, not from the client's clock." })
  serverTime!: Date;

  @Field(() => Boolean, { description: 'True for the session that made this request.' })
  current!: boolean;

  @Field(() => String, { nullable: true, description: 'User-Agent of the login request.' })
  userAgent!: string | null;

  @Field(() => String, { nullable: true, description: 'Client address of the login request.' })
  clientAddress!: string | null;
}

export function toSessionType(session: Session, now: Date, settings: Settings, currentId: string): SessionType {
  const { expiry } = session;
  const maxLifetime = settings.expiry.maxLifetime;
  return Object.assign(new SessionType(), {
    id: session.id,
    createdAt: session.createdAt,
    lastSavedAt: expiry.lastSavedAt,
    expiryDate: expiry.expiresAt,
    expiryAge: session.endedAt ? 0 : expiryAge(expiry.expiresAt, now),
    expiryPeriod: expiryPeriod(expiry.spec, now, settings.expiry),
    expireAtBrowserClose: expiresAtBrowserClose(expiry.spec, settings.expiry),
    policy: expiry.spec.policy,
    policySeconds: expiry.spec.seconds,
    limitedBy: expiry.limitedBy,
    maxLifetimeDate: maxLifetime === null ? null : new Date(session.createdAt.getTime() + maxLifetime * 1000),
    serverTime: now,
    current: session.id === currentId,
    userAgent: session.userAgent,
    clientAddress: session.clientAddress,
  });
}

@ObjectType({ description: 'A new session.' })
export class LoginResult {
  @Field(() => String, {
    description:
      'The session token: send it as `Authorization: Bearer <token>` or in graphql-ws connectionParams `{ token }`. Shown once; the server keeps only its hash.',
  })
  token!: string;

  @Field(() => SessionType)
  session!: SessionType;

  @Field(() => UserType)
  user!: UserType;
}

@InputType({ description: "The value of Django's set_expiry: give `seconds` or `at`, not both; neither means the global default." })
export class ExpiryInput {
  @Field(() => Int, {
    nullable: true,
    description: 'Seconds of inactivity after which the session expires; 0 expires it when the browser closes; null uses the global default.',
  })
  seconds?: number | null;

  @Field(() => DateTime, { nullable: true, description: 'A fixed instant at which the session expires: in the future, within the allowed maximum.' })
  at?: Date | null;
}

@ObjectType('ServerSettings', { description: 'The expiry policy of this server.' })
export class ServerSettingsType {
  @Field(() => Int, { description: 'SESSION_COOKIE_AGE: seconds a session lives after its last save when its expiry is null.' })
  cookieAge!: number;

  @Field(() => Boolean, {
    description: 'SESSION_EXPIRE_AT_BROWSER_CLOSE: a session with the global policy (expiry null) expires when the browser closes.',
  })
  expireAtBrowserClose!: boolean;

  @Field(() => Int, { description: 'Server-side lifetime of a session that expires at browser close, after its last save.' })
  browserCloseAge!: number;

  @Field(() => Int, {
    description: 'Seconds a browser-close session survives after its last subscription disconnects, unless one reconnects.',
  })
  browserCloseGrace!: number;

  @Field(() => Int, { nullable: true, description: 'SESSION_MAX_LIFETIME: absolute cap after login in seconds; null when none.' })
  maxLifetime!: number | null;

  @Field(() => Int, { description: 'The largest expiry a client may ask for, in seconds from now.' })
  maxExpiry!: number;

  @Field(() => Boolean, { description: 'SESSION_SAVE_EVERY_REQUEST: every authenticated request renews the expiry.' })
  saveEveryRequest!: boolean;

  @Field(() => String, { description: 'Where a client goes when its session has ended.' })
  loginUrl!: string;

  @Field(() => Boolean)
  registrationEnabled!: boolean;

  @Field(() => DateTime, { description: "The server's clock." })
  serverTime!: Date;
}

export const SessionEventKindEnum = {
  EXPIRING_SOON: 'EXPIRING_SOON',
  EXPIRY_CHANGED: 'EXPIRY_CHANGED',
  EXPIRED: 'EXPIRED',
  LOGGED_OUT: 'LOGGED_OUT',
  REVOKED: 'REVOKED',
} as const;
registerEnumType(SessionEventKindEnum, {
  name: 'SessionEventKind',
  description: 'What happened to a session. EXPIRED, LOGGED_OUT and REVOKED are terminal: the subscription completes after them.',
  valuesConfig: {
    EXPIRING_SOON: { description: 'The session expires within the lead time the subscriber asked for ("stay signed in?").' },
    EXPIRY_CHANGED: { description: 'The expiry moved (renewal, setExpiry, sliding request); expiresAt is the new one.' },
    EXPIRED: { description: 'Terminal: the session timed out (reason TIMEOUT) or its browser went away (reason BROWSER_CLOSED).' },
    LOGGED_OUT: { description: 'Terminal: the session was logged out.' },
    REVOKED: { description: 'Terminal: the session was ended from another session of the same user (logoutAll, revokeSession), or by a login of that user beyond MAX_SESSIONS_PER_USER (the oldest end first).' },
  },
});

export const EndReasonEnum = { TIMEOUT: 'TIMEOUT', BROWSER_CLOSED: 'BROWSER_CLOSED', LOGGED_OUT: 'LOGGED_OUT', REVOKED: 'REVOKED' } as const;
registerEnumType(EndReasonEnum, { name: 'EndReason', description: 'Why a session ended.' });

@ObjectType('SessionEvent', { description: 'Something that happened to a session, pushed the moment it happens.' })
export class SessionEventType {
  @Field(() => SessionEventKindEnum)
  kind!: SessionEventKind;

  @Field(() => ID, { description: 'The session it is about.' })
  sessionId!: string;

  @Field(() => DateTime, { description: 'The expiry of the session at this event (for an ended session: when it ended).' })
  expiresAt!: Date;

  @Field(() => DateTime, { description: "The server's clock when the event was sent." })
  serverTime!: Date;

  @Field(() => Int, { description: 'Seconds from serverTime to expiresAt, rounded up; 0 once expired.' })
  secondsLeft!: number;

  @Field(() => EndReasonEnum, { nullable: true, description: 'Terminal events: why the session ended.' })
  reason!: EndReason | null;

  @Field(() => String, { nullable: true, description: 'Terminal events: the login page to send the user to.' })
  redirectTo!: string | null;
}

export function toSessionEventType(event: SessionEvent): SessionEventType {
  return Object.assign(new SessionEventType(), event, { secondsLeft: expiryAge(event.expiresAt, event.serverTime) });
}
