import type { Server } from 'node:http';
import { parse as parseCookies } from 'cookie';
import type { GraphQLSchema } from 'graphql';
import { CloseCode } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer, type WebSocket } from 'ws';
import type { IncomingMessage } from 'node:http';
import type { Settings } from '../config.js';
import type { EventHub } from '../engine/hub.js';
import type { GraphQLContext } from '../graphql/context.js';
import type { SessionService } from '../sessions/service.js';

type SocketExtra = {
  socket: WebSocket;
  request: IncomingMessage;
  token?: string;
  sessionId?: string;
};

/** The graphql-ws close code for "your session is over": the graphql-ws client does not retry it. */
export const SESSION_ENDED_CLOSE = CloseCode.Unauthorized;

function connectionToken(params: Record<string, unknown> | undefined, request: IncomingMessage, cookieName: string) {
  const fromParams = params?.token ?? params?.authToken;
  if (typeof fromParams === 'string' && fromParams) return fromParams;
  const authorization = params?.Authorization ?? params?.authorization;
  if (typeof authorization === 'string' && authorization.startsWith('Bearer ')) return authorization.slice(7).trim();
  const cookie = request.headers.cookie ? parseCookies(request.headers.cookie)[cookieName] : undefined;
  return cookie || null;
}

/**
 * graphql-ws on the HTTP server's port and path. A socket belongs to the session it authenticated
 * with in connection_init (token in connectionParams, or the session cookie of the upgrade
 * request). Once that session ends and its subscribers have had the terminal event, its sockets
 * close with 4401, which the graphql-ws client does not retry.
 */
export function attachSubscriptions(options: {
  httpServer: Server;
  schema: GraphQLSchema;
  service: SessionService;
  hub: EventHub;
  settings: Settings;
}) {
  const { httpServer, schema, service, hub, settings } = options;
  const wss = new WebSocketServer({ server: httpServer, path: '/graphql' });
  const socketsBySession = new Map<string, Set<WebSocket>>();

  const forget = (sessionId: string, socket: WebSocket) => {
    const sockets = socketsBySession.get(sessionId);
    sockets?.delete(socket);
    if (sockets?.size === 0) socketsBySession.delete(sessionId);
  };

  const server = useServer<Record<string, unknown>, SocketExtra>(
    {
      schema,
      context: (ctx): GraphQLContext => ({
        service,
        hub,
        settings,
        token: ctx.extra.token ?? null,
        socketSessionId: ctx.extra.sessionId ?? null,
        clientAddress: ctx.extra.request.socket.remoteAddress ?? 'unknown',
        userAgent: ctx.extra.request.headers['user-agent'] ?? null,
        cookies: null,
      }),
      onConnect: async (ctx) => {
        const token = connectionToken(ctx.connectionParams, ctx.extra.request, settings.cookie.name);
        const session = token ? await service.store.findByToken(token) : null;
        if (!token || !session) {
          ctx.extra.socket.close(CloseCode.Unauthorized, token ? 'Unknown session' : 'Missing session token');
          return false;
        }
        // An ended session is let in: its subscription yields the terminal event, then the socket closes.
        ctx.extra.token = token;
        ctx.extra.sessionId = session.id;
        const sockets = socketsBySession.get(session.id) ?? new Set();
        sockets.add(ctx.extra.socket);
        socketsBySession.set(session.id, sockets);
        return { sessionId: session.id };
      },
      onClose: (ctx) => {
        if (ctx.extra.sessionId) forget(ctx.extra.sessionId, ctx.extra.socket);
      },
    },
    wss,
    settings.wsPingIntervalMs,
  );

  return {
    /** Closes the sockets of a session that has ended (after its terminal event went out). */
    sessionEnded(sessionId: string) {
      for (const socket of socketsBySession.get(sessionId) ?? []) socket.close(SESSION_ENDED_CLOSE, 'Session ended');
      socketsBySession.delete(sessionId);
    },
    /** Closes every socket with 1001 (clients reconnect, to another process if there is one) and stops listening. */
    dispose: () => server.dispose(),
  };
}
