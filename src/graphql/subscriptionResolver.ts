import { Arg, Int, Resolver, Root, Subscription, type SubscribeResolverData } from 'type-graphql';
import { apiError } from '../errors.js';
import type { SessionEvent } from '../engine/events.js';
import type { GraphQLContext } from './context.js';
import { SessionEventType, toSessionEventType } from './types.js';

interface SessionEventsArgs {
  expiringSoonLead: number | null;
  allSessions: boolean;
}

/** Opens the event stream of the socket's session (and, on request, of the user's other sessions). */
async function subscribeToSessionEvents({ args, context }: SubscribeResolverData<unknown, SessionEventsArgs, GraphQLContext>) {
  const { service, hub, settings } = context;
  if (!context.socketSessionId) {
    throw apiError('UNAUTHENTICATED', 'Subscribe over graphql-ws with the session token in connectionParams.', {
      loginUrl: settings.loginUrl,
    });
  }
  const lead = args.expiringSoonLead ?? settings.expiringSoonLeadSeconds;
  // No upper bound: a lead longer than the time left sends EXPIRING_SOON at once.
  if (!Number.isInteger(lead) || lead < 0) throw apiError('INVALID_ARGUMENT', 'expiringSoonLead must be 0 or more seconds.');
  // The hub has followed the socket's session since connection_init read it: reading it again would
  // only load the database, which counts when a process dies and its clients all reconnect at once.
  const own = hub.known(context.socketSessionId) ?? (await service.current(context.socketSessionId));
  if (!own) {
    throw apiError('UNAUTHENTICATED', 'Unknown session: log in again.', { loginUrl: settings.loginUrl });
  }
  const listedAt = service.clock().getTime();
  const others = args.allSessions && !own.endedAt ? ((await hub.unlessEnded(own.id, service.listSessions(own))) ?? []) : [];
  // Every event of the user reaches each of its feeds: as many as it may hold sockets.
  const { socketsPerUser } = settings.websocket;
  if (args.allSessions && hub.feedCount(own.userId) >= socketsPerUser) {
    throw apiError('TOO_MANY_OPERATIONS', `At most ${socketsPerUser} subscriptions with allSessions may be open at once for one user (WS_MAX_SOCKETS_PER_USER).`);
  }
  return hub.subscribe(own, { leadSeconds: lead, allSessions: args.allSessions }, others, listedAt);
}

@Resolver()
export class SessionEventsResolver {
  @Subscription(() => SessionEventType, {
    subscribe: subscribeToSessionEvents,
    description:
      'Events about the session this socket authenticated with (graphql-ws connectionParams `{ token }` or the session cookie), pushed as they happen. After a terminal event (EXPIRED, LOGGED_OUT, REVOKED) the subscription completes and the socket closes with 4401. Subscribing with a session that has already ended yields its terminal event at once.',
  })
  sessionEvents(
    @Root() event: SessionEvent,
    @Arg('expiringSoonLead', () => Int, {
      nullable: true,
      description: 'Seconds before expiry at which EXPIRING_SOON is sent (default: the server setting, 60 s); 0 for none. One longer than the time left sends it at once.',
    })
    _expiringSoonLead: number | null,
    @Arg('allSessions', () => Boolean, {
      defaultValue: false,
      description: "Also report the events of the user's other sessions (a per-user feed); it still completes when this session ends.",
    })
    _allSessions: boolean,
  ): SessionEventType {
    return toSessionEventType(event);
  }
}
