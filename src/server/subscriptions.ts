import type { IncomingMessage, Server } from 'node:http';
import { parse as parseCookies } from 'cookie';
import {
  createSourceEventStream,
  execute,
  parse,
  validate,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLSchema,
} from 'graphql';
import { CloseCode, DEPRECATED_GRAPHQL_WS_PROTOCOL, GRAPHQL_TRANSPORT_WS_PROTOCOL, handleProtocols, makeServer } from 'graphql-ws';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { Settings } from '../config.js';
import type { EventHub } from '../engine/hub.js';
import type { GraphQLContext } from '../graphql/context.js';
import type { Logger } from '../logger.js';
import type { SessionService } from '../sessions/service.js';

/** The graphql-ws close code for "your session is over": the graphql-ws client does not retry it. */
export const SESSION_ENDED_CLOSE = CloseCode.Unauthorized;

/** graphql-ws's default: a socket that has not sent connection_init by then is closed with 4408. */
const CONNECTION_INIT_WAIT_MS = 3_000;
/**
 * When a session ends, how long a socket of it that has not subscribed yet stays open: a subscription
 * on its way still gets the terminal event (then the socket closes at once).
 */
const UNSUBSCRIBED_CLOSE_DELAY_MS = 1_000;
/** Parsed and validated documents kept, by query text (most subscriptions send the same few). */
const DOCUMENT_CACHE_SIZE = 100;

function connectionToken(params: Record<string, unknown> | undefined, request: IncomingMessage, cookieName: string) {
  const fromParams = params?.token ?? params?.authToken;
  if (typeof fromParams === 'string' && fromParams) return fromParams;
  const authorization = params?.Authorization ?? params?.authorization;
  if (typeof authorization === 'string' && authorization.startsWith('Bearer ')) return authorization.slice(7).trim();
  const cookie = request.headers.cookie ? parseCookies(request.headers.cookie)[cookieName] : undefined;
  return cookie || null;
}

/**
 * One socket, kept small since an idle subscribed socket is mostly this: graphql-ws talks through
 * it (its `WebSocket` interface, with methods on the prototype rather than closures per socket)
 * and gets it back as `ctx.extra`.
 */
class Connection {
  /** The upgrade request, only until connection_init: the cookie is read from it, then it is let go (it is large). */
  request: IncomingMessage | null;
  readonly clientAddress: string;
  readonly userAgent: string | null;
  token: string | null = null;
  sessionId: string | null = null;
  /** graphql-ws's message handler, and what it wants called once the socket has closed. */
  receive: ((data: string) => Promise<void>) | null = null;
  closed: ((code?: number, reason?: string) => Promise<void>) | null = null;
  initTimer: NodeJS.Timeout | null = null;
  /** A keep-alive ping went out and no pong has come back yet. */
  awaitingPong = false;
  /** Subscriptions between subscribe and their first result: the socket is not closed under them. */
  settingUp = 0;
  /** A subscription has been set up on this socket. */
  subscribed = false;
  /** The session has ended: the socket closes once no subscription of it is being set up. */
  sessionOver = false;

  constructor(
    readonly socket: WebSocket,
    request: IncomingMessage,
  ) {
    this.request = request;
    this.clientAddress = request.socket.remoteAddress ?? 'unknown';
    this.userAgent = request.headers['user-agent'] ?? null;
  }

  get protocol(): string {
    return this.socket.protocol;
  }

  /**
   * Hands the message to the socket without waiting for it to be flushed, so that a session's
   * terminal event and its completion are both queued before its sockets close; a socket that
   * fails to write closes anyway.
   */
  send(data: string): Promise<void> {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(data);
    return Promise.resolve();
  }

  close(code?: number, reason?: string): void {
    this.socket.close(code, reason);
  }

  onMessage(cb: (data: string) => Promise<void>): void {
    this.receive = cb;
  }
}

function clearInitTimer(conn: Connection) {
  if (conn.initTimer) clearTimeout(conn.initTimer);
  conn.initTimer = null;
}

const limitCloseReason = (reason: string, whenTooLong: string) => (reason.length < 124 ? reason : whenTooLong);

/**
 * graphql-js's `subscribe`, with its per-event mapping held by one small object instead of
 * mapAsyncIterator's closures (same behaviour: each source event is executed with the
 * subscription's arguments and the event as root value).
 */
async function subscribe(args: ExecutionArgs): Promise<AsyncGenerator<ExecutionResult> | ExecutionResult> {
  const resultOrStream = await createSourceEventStream(args);
  if (typeof (resultOrStream as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] !== 'function') return resultOrStream as ExecutionResult;
  return new ExecutedEvents((resultOrStream as AsyncIterable<unknown>)[Symbol.asyncIterator](), args);
}

class ExecutedEvents implements AsyncGenerator<ExecutionResult> {
  constructor(
    private readonly source: AsyncIterator<unknown>,
    private readonly args: ExecutionArgs,
  ) {}

  /** Not an async function: an idle subscription waits here, and a pending `.then` is smaller than a suspended frame. */
  next(): Promise<IteratorResult<ExecutionResult>> {
    try {
      return this.source.next().then((result) => this.map(result));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async return(): Promise<IteratorResult<ExecutionResult>> {
    return typeof this.source.return === 'function' ? this.map(await this.source.return()) : { value: undefined, done: true };
  }

  async throw(error: unknown): Promise<IteratorResult<ExecutionResult>> {
    if (typeof this.source.throw === 'function') return this.map(await this.source.throw(error));
    await this.returnIgnoringErrors();
    throw error;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private async map(result: IteratorResult<unknown>): Promise<IteratorResult<ExecutionResult>> {
    if (result.done) return result;
    try {
      return { value: await execute({ ...this.args, rootValue: result.value }), done: false };
    } catch (error) {
      await this.returnIgnoringErrors();
      throw error;
    }
  }

  private async returnIgnoringErrors(): Promise<void> {
    if (typeof this.source.return === 'function') {
      try {
        await this.source.return();
      } catch {
        // Keep the original error when closing the source also fails.
      }
    }
  }
}

/**
 * graphql-ws on the HTTP server's port and path. A socket belongs to the session it authenticated
 * with in connection_init (token in connectionParams, or the session cookie of the upgrade
 * request). Once that session ends and its subscribers have had the terminal event, its sockets
 * close with 4401, which the graphql-ws client does not retry.
 *
 * This is graphql-ws's `useServer` for `ws`, adjusted (as its docs invite) to hold less per idle
 * socket: one keep-alive timer for all sockets instead of one per socket, shared event listeners,
 * the upgrade request let go after connection_init, and one parsed and validated document per
 * query text instead of one per subscription.
 */
export function attachSubscriptions(options: {
  httpServer: Server;
  schema: GraphQLSchema;
  service: SessionService;
  hub: EventHub;
  settings: Settings;
  /** Larger messages close the socket with 1009. */
  maxMessageBytes: number;
  logger: Logger;
}) {
  const { httpServer, schema, service, hub, settings, maxMessageBytes, logger } = options;
  const isProd = settings.env === 'production';
  const keepAliveMs = settings.wsPingIntervalMs;
  // No permessage-deflate: it would cost a zlib context per socket, for messages of a few hundred bytes.
  const wss = new WebSocketServer({
    server: httpServer,
    path: '/graphql',
    perMessageDeflate: false,
    maxPayload: maxMessageBytes,
    handleProtocols,
  });
  const connections = new Map<WebSocket, Connection>();
  /** A session's sockets: the socket itself while it has one (the usual case), a Set from the second on. */
  const socketsBySession = new Map<string, WebSocket | Set<WebSocket>>();
  /** Query text -> its validated document, least recently used first. */
  const documents = new Map<string, { query: string; document: DocumentNode }>();

  const remember = (sessionId: string, socket: WebSocket) => {
    const sockets = socketsBySession.get(sessionId);
    if (!sockets) socketsBySession.set(sessionId, socket);
    else if (sockets instanceof Set) sockets.add(socket);
    else if (sockets !== socket) socketsBySession.set(sessionId, new Set([sockets, socket]));
  };
  const forget = (sessionId: string, socket: WebSocket) => {
    const sockets = socketsBySession.get(sessionId);
    if (sockets === socket) socketsBySession.delete(sessionId);
    else if (sockets instanceof Set) {
      sockets.delete(socket);
      if (sockets.size === 0) socketsBySession.delete(sessionId);
    }
  };

  /** The socket each subscription's context came from, while it is being set up. */
  const settingUpOn = new WeakMap<object, Connection>();
  const closeEnded = (conn: Connection) => conn.close(SESSION_ENDED_CLOSE, 'Session ended');

  const server = makeServer<Record<string, unknown>, Connection>({
    schema,
    // A subscription set up while its session ends still gets the terminal event before the socket closes.
    subscribe: async (args) => {
      const conn = settingUpOn.get(args.contextValue as object);
      if (conn) {
        conn.settingUp++;
        conn.subscribed = true;
      }
      try {
        return await subscribe(args);
      } finally {
        if (conn && --conn.settingUp === 0 && conn.sessionOver) setImmediate(closeEnded, conn);
      }
    },
    // Timed here instead, so that no timer stays referenced for the socket's life.
    connectionInitWaitTimeout: 0,
    onSubscribe: (ctx, _id, payload) => {
      // Parsed and validated once per query text: a parse error throws (as graphql-ws's own parse
      // does), validation errors go to the client; neither is cached.
      let cached = documents.get(payload.query);
      if (cached) {
        documents.delete(payload.query);
      } else {
        const document = parse(payload.query);
        const errors = validate(schema, document);
        if (errors.length > 0) return errors;
        cached = { query: payload.query, document };
        if (documents.size >= DOCUMENT_CACHE_SIZE) documents.delete(documents.keys().next().value!);
      }
      documents.set(payload.query, cached);
      // graphql-ws keeps the message for the subscription's life: let it hold the shared text.
      (payload as { query: string }).query = cached.query;
      const conn = ctx.extra;
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
      settingUpOn.set(contextValue, conn);
      return {
        schema,
        document: cached.document,
        operationName: payload.operationName,
        variableValues: payload.variables,
        rootValue: undefined,
        contextValue,
      };
    },
    onConnect: async (ctx) => {
      const conn = ctx.extra;
      clearInitTimer(conn);
      const request = conn.request!;
      conn.request = null;
      const token = connectionToken(ctx.connectionParams, request, settings.cookie.name);
      const session = token ? await service.store.findByToken(token) : null;
      if (!token || !session) {
        conn.socket.close(CloseCode.Unauthorized, token ? 'Unknown session' : 'Missing session token');
        return false;
      }
      // An ended session is let in: its subscription yields the terminal event, then the socket closes.
      conn.token = token;
      conn.sessionId = session.id;
      remember(session.id, conn.socket);
      return { sessionId: session.id };
    },
    onClose: (ctx) => {
      if (ctx.extra.sessionId) forget(ctx.extra.sessionId, ctx.extra.socket);
    },
  });

  // The listeners are shared by all sockets (`this` is the socket); the socket's state is its Connection.
  function onMessage(this: WebSocket, data: RawData) {
    const conn = connections.get(this);
    conn?.receive?.(String(data)).catch((err: unknown) => {
      logger.error({ err }, 'handling a websocket message failed');
      this.close(CloseCode.InternalServerError, internalReason(err));
    });
  }
  function onPong(this: WebSocket) {
    const conn = connections.get(this);
    if (conn) conn.awaitingPong = false;
  }
  /**
   * Mostly a client breaking the websocket protocol (a bad frame, a message over the size limit):
   * ws is then already closing the socket with the fitting code (1002, 1009) and this close does
   * nothing; any other error closes it with 1011.
   */
  function onError(this: WebSocket, err: Error) {
    logger.debug({ err }, 'websocket protocol error');
    this.close(CloseCode.InternalServerError, internalReason(err));
  }
  function onClose(this: WebSocket, code: number, reason: Buffer) {
    const conn = connections.get(this);
    if (!conn) return;
    connections.delete(this);
    clearInitTimer(conn);
    if (!isProd && code === CloseCode.SubprotocolNotAcceptable && this.protocol === DEPRECATED_GRAPHQL_WS_PROTOCOL) {
      logger.warn(
        `Client provided the unsupported and deprecated subprotocol "${this.protocol}" used by subscriptions-transport-ws.` +
          'Please see https://www.apollographql.com/docs/apollo-server/data/subscriptions/#switching-from-subscriptions-transport-ws.',
      );
    }
    void conn.closed?.(code, String(reason));
  }
  function initTimeout(conn: Connection) {
    conn.initTimer = null;
    conn.socket.close(CloseCode.ConnectionInitialisationTimeout, 'Connection initialisation timeout');
  }
  const internalReason = (err: unknown) =>
    isProd ? 'Internal server error' : limitCloseReason(err instanceof Error ? err.message : String(err), 'Internal server error');

  wss.once('error', (err) => {
    logger.error({ err }, 'the websocket server failed: closing every socket');
    let firstErr: unknown = null;
    for (const client of wss.clients) {
      try {
        client.close(CloseCode.InternalServerError, internalReason(err));
      } catch (err2) {
        firstErr = firstErr ?? err2;
      }
    }
    if (firstErr) throw firstErr;
  });

  wss.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    const conn = new Connection(socket, request);
    connections.set(socket, conn);
    socket.on('error', onError);
    socket.on('pong', onPong);
    socket.on('message', onMessage);
    socket.on('close', onClose);
    if (socket.protocol === GRAPHQL_TRANSPORT_WS_PROTOCOL) conn.initTimer = setTimeout(initTimeout, CONNECTION_INIT_WAIT_MS, conn);
    conn.closed = server.opened(conn, conn);
  });

  // Keep-alive: every interval each open socket gets a ping, and one that has not answered the
  // previous ping by then is terminated (as graphql-ws does, with one timer for all sockets).
  const heartbeat =
    keepAliveMs > 0 && Number.isFinite(keepAliveMs)
      ? setInterval(() => {
          for (const [socket, conn] of connections) {
            if (conn.awaitingPong) {
              socket.terminate();
            } else if (socket.readyState === WebSocket.OPEN) {
              conn.awaitingPong = true;
              socket.ping();
            }
          }
        }, keepAliveMs)
      : null;
  heartbeat?.unref();

  const socketsOf = (sessionId: string): Iterable<WebSocket> => {
    const sockets = socketsBySession.get(sessionId);
    return sockets instanceof Set ? sockets : sockets ? [sockets] : [];
  };

  return {
    /** Closes the sockets of a session that has ended (after its terminal event went out). */
    sessionEnded(sessionId: string) {
      for (const socket of socketsOf(sessionId)) {
        const conn = connections.get(socket);
        if (!conn) continue;
        conn.sessionOver = true;
        if (!conn.subscribed) setTimeout(closeEnded, UNSUBSCRIBED_CLOSE_DELAY_MS, conn).unref();
        else if (conn.settingUp === 0) closeEnded(conn);
      }
      socketsBySession.delete(sessionId);
    },
    /** Closes every socket with 1001 (clients reconnect, to another process if there is one) and stops listening. */
    async dispose() {
      if (heartbeat) clearInterval(heartbeat);
      for (const client of wss.clients) client.close(1001, 'Going away');
      wss.removeAllListeners();
      await new Promise<void>((resolve, reject) => wss.close((err) => (err ? reject(err) : resolve())));
    },
  };
}
