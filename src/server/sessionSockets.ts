import type { IncomingMessage, Server } from 'node:http';
import { CloseCode } from 'graphql-ws';
import { getOperationAST, getVariableValues, GraphQLError, type GraphQLSchema } from 'graphql';
import { WebSocket } from 'ws';
import { addressBucket } from '../auth/attemptLimiter.js';
import { readCredentials } from '../auth/credentials.js';
import type { Settings } from '../config.js';
import { CountsByKey } from '../countsByKey.js';
import type { EventHub } from '../engine/hub.js';
import { apiError } from '../errors.js';
import type { GraphQLContext } from '../graphql/context.js';
import type { OperationPipeline } from '../graphql/operations.js';
import { subscribe } from '../graphql/subscribe.js';
import type { Logger } from '../logger.js';
import type { Session } from '../session.js';
import type { SessionService } from '../sessions/service.js';
import { TooManyTokenReads } from '../store/sessionStore.js';
import { clientAddress, type TrustProxy } from './clientAddress.js';
import { cookieOriginAllowed, upgradeRequestOrigin } from './origin.js';
import { countOf, itemsOf, withItem, withoutItem, type OneOrMore } from '../oneOrMore.js';
import { Connection, DATABASE_UNAVAILABLE_CLOSE, serveGraphQLWs } from './ws/adapter.js';

/** The graphql-ws close code for "your session is over": the graphql-ws client does not retry it. */
export const SESSION_ENDED_CLOSE = CloseCode.Unauthorized;
/** A socket over the per-session or per-user limit: the graphql-ws client does not retry it either. */
export const TOO_MANY_SOCKETS_CLOSE = CloseCode.TooManyInitialisationRequests;

/** graphql-ws's default: a socket that has not sent connection_init by then is closed with 4408. */
const CONNECTION_INIT_WAIT_MS = 3_000;
/**
 * When a session ends, how long a socket of it that has not subscribed yet stays open: a subscription
 * on its way still gets the terminal event (then the socket closes at once).
 */
const UNSUBSCRIBED_CLOSE_DELAY_MS = 1_000;

/** A socket of this API: the protocol's connection plus the session it authenticated with. */
class SessionSocket extends Connection {
  /** The upgrade request, only until connection_init: the cookie and Origin are read from it, then it is let go (it is large). */
  request: IncomingMessage | null;
  userAgent: string | null = null;
  token: string | null = null;
  sessionId: string | null = null;
  /** Its session's user, once counted among the user's sockets. */
  userId: string | null = null;
  /** Counted among its address's unauthenticated sockets until its connection_init is acknowledged or it closes. */
  unauthenticated = true;
  /** Subscriptions between subscribe and their first result: the socket is not closed under them. */
  settingUp = 0;
  /** A subscription has been set up on this socket. */
  subscribed = false;
  /** The session has ended: the socket closes once no subscription of it is being set up. */
  sessionOver = false;
  /** Operations accepted and not yet finished (a client's `complete` does not finish them at once). */
  running = 0;

  constructor(
    socket: WebSocket,
    request: IncomingMessage,
    readonly clientAddress: string,
  ) {
    super(socket, request.socket);
    this.request = request;
  }
}

const closeEnded = (socket: SessionSocket) => socket.close(SESSION_ENDED_CLOSE, 'Session ended');

/**
 * The API's websockets: graphql-transport-ws on the HTTP server's port and path (./ws/adapter.ts), where each
 * socket belongs to the session it authenticated with in connection_init (a token in
 * connectionParams, or the session cookie of the upgrade request from an allowed Origin). Operations
 * go through the same pipeline as over HTTP. Once the session ends (and its subscribers have had
 * the terminal event) its sockets close with 4401, which the graphql-ws client does not retry.
 */
export function attachSessionSockets(options: {
  httpServer: Server;
  schema: GraphQLSchema;
  pipeline: OperationPipeline;
  service: SessionService;
  hub: EventHub;
  settings: Settings;
  trust: TrustProxy;
  maxMessageBytes: number;
  logger: Logger;
}) {
  const { schema, pipeline, service, hub, settings, trust } = options;
  const limits = settings.websocket;
  const socketsBySession = new Map<string, OneOrMore<SessionSocket>>();
  const socketsByUser = new CountsByKey();
  const unauthenticated = new CountsByKey();

  /** Adds the socket to its session's; true when it is the session's first in this process. */
  const remember = (socket: SessionSocket) => {
    const sockets = socketsBySession.get(socket.sessionId!) ?? null;
    socketsBySession.set(socket.sessionId!, withItem(sockets, socket));
    return sockets === null;
  };
  const forget = (socket: SessionSocket) => {
    const id = socket.sessionId!;
    const left = withoutItem(socketsBySession.get(id) ?? null, socket);
    if (left !== null) {
      socketsBySession.set(id, left);
    } else if (socketsBySession.delete(id)) {
      hub.socketsClosed(id);
    }
  };
  const authenticated = (socket: SessionSocket) => {
    if (!socket.unauthenticated) return;
    socket.unauthenticated = false;
    unauthenticated.remove(addressBucket(socket.clientAddress));
  };

  const adapter = serveGraphQLWs<SessionSocket>({
    httpServer: options.httpServer,
    path: '/graphql',
    maxPayload: options.maxMessageBytes,
    keepAliveMs: settings.wsPingIntervalMs,
    connectionInitWaitMs: CONNECTION_INIT_WAIT_MS,
    production: settings.env === 'production',
    logger: options.logger,
    admit(request) {
      return unauthenticated.of(addressBucket(clientAddress(request, trust))) >= limits.unauthenticatedPerAddress
        ? { status: 429, message: 'Too many websockets from this address not yet authenticated' }
        : null;
    },
    opened(socket, request) {
      const conn = new SessionSocket(socket, request, clientAddress(request, trust));
      unauthenticated.add(addressBucket(conn.clientAddress));
      return conn;
    },
    graphql: {
      // A subscription set up while its session ends still gets the terminal event before the socket closes.
      subscribe: async (conn, args) => {
        conn.settingUp++;
        conn.subscribed = true;
        try {
          return await subscribe(args);
        } finally {
          if (--conn.settingUp === 0 && conn.sessionOver) setImmediate(closeEnded, conn);
        }
      },
      onSubscribe: (conn, id, payload) => {
        if (conn.running >= limits.operationsPerSocket) {
          return [apiError('TOO_MANY_OPERATIONS', `At most ${limits.operationsPerSocket} operations may run at once on one socket.`)];
        }
        const prepared = pipeline.prepare(payload.query);
        if (prepared.errors) return prepared.errors;
        // Refused here as Apollo refuses them over HTTP, rather than as internal errors of graphql-ws or execution.
        const operation = getOperationAST(prepared.document, payload.operationName);
        if (!operation) {
          const message = payload.operationName ? `Unknown operation named "${payload.operationName}".` : 'Must provide operation name if query contains multiple operations.';
          return [new GraphQLError(message, { extensions: { code: 'OPERATION_RESOLUTION_FAILURE' } })];
        }
        const variables = getVariableValues(schema, operation.variableDefinitions ?? [], payload.variables ?? {});
        if (variables.errors) return variables.errors.map((e) => new GraphQLError(e.message, { nodes: e.nodes, extensions: { code: 'BAD_USER_INPUT' } }));
        const contextValue: GraphQLContext = {
          service,
          hub,
          settings,
          token: conn.token,
          socketSessionId: conn.sessionId,
          clientAddress: conn.clientAddress,
          userAgent: conn.userAgent,
          cookies: null,
        };
        conn.running++;
        return {
          schema,
          document: prepared.document,
          operationName: payload.operationName,
          variableValues: payload.variables,
          rootValue: undefined,
          contextValue,
        };
      },
      onNext: (_conn, _id, result) =>
        result.errors ? { ...result, errors: pipeline.formatErrors(result.errors) } : undefined,
      onError: (_conn, _id, errors) => pipeline.formatErrors(errors),
      // Called once for every operation onSubscribe let through, however it ends (or the socket closes on an internal error).
      onComplete: (conn) => void conn.running--,
      onConnect: async (conn, connectionParams) => {
        const request = conn.request!;
        conn.userAgent = request.headers['user-agent'] ?? null;
        conn.request = null;
        const { token, fromCookie, cookieSentTwice } = readCredentials(
          { cookieHeader: request.headers.cookie, connectionParams },
          settings.cookie.name,
        );
        if (cookieSentTwice) {
          conn.close(CloseCode.Unauthorized, 'The session cookie was sent more than once');
          return false;
        }
        if (fromCookie && !cookieOriginAllowed(upgradeRequestOrigin(request, trust), settings.allowedOrigins)) {
          conn.close(CloseCode.Forbidden, 'The session cookie may not be used from this Origin');
          return false;
        }
        let session: Session | null = null;
        try {
          session = token ? await service.store.findByToken(token, conn.clientAddress) : null;
        } catch (err) {
          if (!(err instanceof TooManyTokenReads)) throw err;
          // 1013 (Try Again Later): graphql-ws's client retries it.
          conn.close(DATABASE_UNAVAILABLE_CLOSE, `${err.message}: try again`);
          return false;
        }
        // Gone during the read: `closed` has passed it by, so it must not be counted or kept now.
        if (conn.socket.readyState !== WebSocket.OPEN) return false;
        if (!token || !session) {
          conn.close(CloseCode.Unauthorized, token ? 'Unknown session' : 'Missing session token');
          return false;
        }
        if (countOf(socketsBySession.get(session.id) ?? null) >= limits.socketsPerSession) {
          conn.close(TOO_MANY_SOCKETS_CLOSE, `Too many sockets for this session (at most ${limits.socketsPerSession})`);
          return false;
        }
        if (socketsByUser.of(session.userId) >= limits.socketsPerUser) {
          conn.close(TOO_MANY_SOCKETS_CLOSE, `Too many sockets for this user (at most ${limits.socketsPerUser})`);
          return false;
        }
        conn.userId = session.userId;
        socketsByUser.add(session.userId);
        // An ended session is let in: a subscription yields the terminal event, then the socket closes.
        conn.token = token;
        conn.sessionId = session.id;
        if (remember(conn)) hub.socketsOpened(session);
        // A refused socket counts until it has closed: a client that ignores the close keeps it open for ws's close timeout.
        authenticated(conn);
        return { sessionId: session.id };
      },
    },
    closed(conn) {
      authenticated(conn);
      if (conn.sessionId) forget(conn);
      if (conn.userId) socketsByUser.remove(conn.userId);
      conn.userId = null;
    },
  });

  return {
    /** Closes the sockets of a session that has ended (after its terminal event went out). */
    sessionEnded(sessionId: string) {
      for (const conn of itemsOf(socketsBySession.get(sessionId) ?? null)) {
        conn.sessionOver = true;
        if (!conn.subscribed) setTimeout(closeEnded, UNSUBSCRIBED_CLOSE_DELAY_MS, conn).unref();
        else if (conn.settingUp === 0) closeEnded(conn);
      }
      socketsBySession.delete(sessionId);
    },
    dispose: adapter.dispose,
  };
}
