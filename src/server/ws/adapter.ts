import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import { CloseCode, DEPRECATED_GRAPHQL_WS_PROTOCOL, GRAPHQL_TRANSPORT_WS_PROTOCOL, handleProtocols } from 'graphql-ws';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { Logger } from '../../logger.js';
import { inSlices } from '../../slices.js';
import { DATABASE_UNAVAILABLE_MESSAGE, isDatabaseUnreachable } from '../../store/databaseErrors.js';
import { graphqlWsProtocol, type ProtocolHooks } from './protocol.js';

/** A message could not be handled because the database is out of reach. */
export const DATABASE_UNAVAILABLE_CLOSE = 1013;

/**
 * One socket, kept small since an idle subscribed socket is mostly this: it holds the protocol's
 * state (./protocol.ts: what graphql-ws keeps in its context) and is what the protocol's hooks are
 * given. Whoever uses the adapter subclasses it with its own state.
 */
export class Connection {
  /** connection_init has come. */
  initReceived = false;
  /** connection_init has been acknowledged. */
  acknowledged = false;
  /** A keep-alive ping went out and no pong has come back yet. */
  awaitingPong = false;
  /**
   * The operations by id (graphql-ws's context's `subscriptions`), each an entry that its operation
   * recognises as its own (./protocol.ts). Almost always one: held in two fields, any others in a Map.
   */
  private opId: string | null = null;
  private opEntry: object | null = null;
  private moreOps: Map<string, object> | null = null;
  initTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly socket: WebSocket,
    /** The TCP socket under it (the upgrade request's), whose writes `send` corks. */
    private readonly raw: Socket,
  ) {}

  get protocol(): string {
    return this.socket.protocol;
  }

  /**
   * Hands the message to the socket without waiting for it to be flushed, so that a terminal event
   * and its completion are both queued before the socket closes; a socket that fails to write
   * closes anyway. A client that does not read its answers is not read from until they have gone
   * (as Node's HTTP server stops reading pipelined requests): its pings and queries would otherwise
   * pile answers up in this process's memory. Events go on being pushed to it; once they have
   * piled up another MAX_UNSENT_BYTES, it is dropped (its client reconnects, and learns the state
   * of its session afresh, when it reads again).
   */
  send(data: string): Promise<void> {
    if (this.socket.readyState === WebSocket.OPEN) {
      writeWithinTurn(this.raw);
      this.socket.send(data);
      const unsent = this.raw.writableLength;
      if (unsent > 2 * MAX_UNSENT_BYTES) {
        this.socket.terminate();
      } else if (unsent > MAX_UNSENT_BYTES && !this.socket.isPaused) {
        this.socket.pause();
        this.raw.once('drain', () => this.socket.resume());
      }
    }
    return Promise.resolve();
  }

  close(code?: number, reason?: string): void {
    this.socket.close(code, reason === undefined ? undefined : closeReason(reason));
  }

  operation(id: string): object | undefined {
    return this.opId === id ? this.opEntry! : this.moreOps?.get(id);
  }

  setOperation(id: string, entry: object): void {
    if (this.opId === id || (this.opId === null && !this.moreOps?.has(id))) {
      this.opId = id;
      this.opEntry = entry;
    } else {
      (this.moreOps ??= new Map()).set(id, entry);
    }
  }

  /** Forgets the operation under `id` if `entry` is still its entry. */
  deleteOperation(id: string, entry: object): void {
    if (this.opId === id) {
      if (this.opEntry !== entry) return;
      this.opId = null;
      this.opEntry = null;
    } else if (this.moreOps?.get(id) === entry) {
      this.moreOps.delete(id);
      if (this.moreOps.size === 0) this.moreOps = null;
    }
  }

  /** Forgets every operation; their entries. */
  takeOperations(): object[] {
    const entries = this.opId === null ? [] : [this.opEntry!];
    if (this.moreOps) entries.push(...this.moreOps.values());
    this.opId = null;
    this.opEntry = null;
    this.moreOps = null;
    return entries;
  }
}

export interface AdapterOptions<C extends Connection> {
  httpServer: Server;
  path: string;
  /** Larger messages close the socket with 1009. */
  maxPayload: number;
  /** Keep-alive ping interval; a socket that has not answered the previous ping by the next is terminated. */
  keepAliveMs: number;
  /** A socket that has not sent connection_init by then is closed with 4408. */
  connectionInitWaitMs: number;
  production: boolean;
  logger: Logger;
  /** Refuses an upgrade before the handshake with an HTTP status, or lets it through (null). */
  admit(request: IncomingMessage): { status: number; message: string } | null;
  /** The Connection of a new socket. */
  opened(socket: WebSocket, request: IncomingMessage): C;
  /** A socket closed, whatever its state. */
  closed(conn: C): void;
  /** What graphql-transport-ws asks of its user (./protocol.ts). */
  graphql: ProtocolHooks<C>;
}

const CLIENT_MESSAGE_TYPES = new Set(['connection_init', 'ping', 'pong', 'subscribe', 'complete']);

function isClientMessage(text: string): boolean {
  try {
    return CLIENT_MESSAGE_TYPES.has((JSON.parse(text) as { type?: unknown }).type as string);
  } catch {
    return false;
  }
}

/** Unsent bytes a socket may hold before its client is no longer read from. */
const MAX_UNSENT_BYTES = 1024 * 1024;

const limitCloseReason = (reason: string, whenTooLong: string) => (reason.length < 124 ? reason : whenTooLong);

/**
 * graphql-transport-ws (./protocol.ts) over `ws` on the HTTP server's port and path, as graphql-ws's
 * own `use/ws` adapter serves it, holding less per idle socket: one keep-alive timer for all
 * sockets, listeners shared by all sockets (`this` is the socket), no permessage-deflate (a zlib
 * context per socket for messages of a few hundred bytes). It knows nothing of sessions.
 */
export function serveGraphQLWs<C extends Connection>(options: AdapterOptions<C>) {
  const { logger, production } = options;
  const wss = new WebSocketServer({
    server: options.httpServer,
    path: options.path,
    perMessageDeflate: false,
    // The sockets are tracked in `connections` instead: ws's own set adds a closure per socket.
    clientTracking: false,
    maxPayload: options.maxPayload,
    handleProtocols,
    verifyClient: ({ req }, done) => {
      const refusal = options.admit(req);
      if (refusal) done(false, refusal.status, refusal.message);
      else done(true);
    },
  });
  const protocol = graphqlWsProtocol<C>(
    {
      ...options.graphql,
      onConnect: (conn, connectionParams) => {
        clearInitTimer(conn);
        return options.graphql.onConnect(conn, connectionParams);
      },
    },
    (conn, err) => failed(conn.socket, err),
  );
  const connections = new Map<WebSocket, C>();
  /** While disposing: called once the last socket has closed. */
  let allClosed: (() => void) | null = null;

  const internalReason = (err: unknown) =>
    production ? 'Internal server error' : limitCloseReason(err instanceof Error ? err.message : String(err), 'Internal server error');

  /** Handling a message from the client threw (maybe long after it came, in a subscription's results). */
  function failed(socket: WebSocket, err: unknown) {
    if (isDatabaseUnreachable(err)) {
      // 1013 (Try Again Later), which clients retry: graphql-ws's client gives up for good on 4500.
      socket.close(DATABASE_UNAVAILABLE_CLOSE, DATABASE_UNAVAILABLE_MESSAGE);
      return;
    }
    logger.error({ err }, 'handling a websocket message failed');
    socket.close(CloseCode.InternalServerError, internalReason(err));
  }
  function onMessage(this: WebSocket, data: RawData) {
    const text = String(data);
    const conn = connections.get(this);
    // A socket of another subprotocol was closed on opening (4406): what it sends is not read.
    if (!conn || this.protocol !== GRAPHQL_TRANSPORT_WS_PROTOCOL) return;
    protocol.received(conn, text).catch((err: unknown) => {
      if (!isClientMessage(text)) {
        // A message only a server sends (graphql-ws throws on it): the client broke the protocol.
        logger.debug({ err }, 'websocket message of a type clients do not send');
        this.close(CloseCode.BadRequest, 'Invalid message received');
        return;
      }
      failed(this, err);
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
  function onClose(this: WebSocket, code: number) {
    const conn = connections.get(this);
    if (!conn) return;
    connections.delete(this);
    clearInitTimer(conn);
    if (!production && code === CloseCode.SubprotocolNotAcceptable && this.protocol === DEPRECATED_GRAPHQL_WS_PROTOCOL) {
      logger.warn(`Client provided the unsupported and deprecated subprotocol "${this.protocol}" used by subscriptions-transport-ws.`);
    }
    options.closed(conn);
    void protocol.closed(conn);
    if (allClosed && connections.size === 0) process.nextTick(allClosed);
  }
  function initTimeout(conn: C) {
    conn.initTimer = null;
    conn.socket.close(CloseCode.ConnectionInitialisationTimeout, 'Connection initialisation timeout');
  }

  wss.on('error', (err) => {
    // ws re-emits the HTTP server's errors; one of its listen (a port in use) is startServer's to report.
    if (!options.httpServer.listening) return;
    logger.error({ err }, 'the websocket server failed: closing every socket');
    for (const client of connections.keys()) client.close(CloseCode.InternalServerError, internalReason(err));
  });

  wss.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    const conn = options.opened(socket, request);
    connections.set(socket, conn);
    socket.on('error', onError);
    socket.on('pong', onPong);
    socket.on('message', onMessage);
    socket.on('close', onClose);
    if (socket.protocol === GRAPHQL_TRANSPORT_WS_PROTOCOL) conn.initTimer = setTimeout(initTimeout, options.connectionInitWaitMs, conn);
    else conn.close(CloseCode.SubprotocolNotAcceptable, 'Subprotocol not acceptable');
  });

  let sweeping: Promise<void> | null = null;
  const heartbeat =
    options.keepAliveMs > 0 && Number.isFinite(options.keepAliveMs)
      ? setInterval(() => {
          // A process too busy to finish a sweep within the interval skips a beat rather than piling sweeps up.
          sweeping ??= keepAliveSweep(connections).finally(() => (sweeping = null));
        }, options.keepAliveMs)
      : null;
  heartbeat?.unref();

  return {
    /** The Connection of an open socket. */
    connectionOf: (socket: WebSocket): C | undefined => connections.get(socket),
    /** Closes every socket with 1001 (clients reconnect, to another process if there is one) and stops listening. */
    async dispose() {
      if (heartbeat) clearInterval(heartbeat);
      for (const client of connections.keys()) client.close(1001, 'Going away');
      wss.removeAllListeners();
      await new Promise<void>((resolve, reject) => wss.close((err) => (err ? reject(err) : resolve())));
      // As ws's close does when it tracks its clients: done once every socket has closed.
      if (connections.size > 0) await new Promise<void>((resolve) => (allClosed = resolve));
    },
  };
}

/** Sockets pinged per turn of the event loop by the keep-alive sweep. */
const PING_SLICE = 500;

/**
 * One keep-alive round: a socket that has not answered the previous ping is terminated, every other
 * open one is pinged. A ping is a system call per socket, so the sockets are taken PING_SLICE per
 * turn of the event loop (20 000 at once held a loaded process for seconds); one that closed
 * meanwhile is passed over.
 */
export function keepAliveSweep(connections: Map<WebSocket, Connection>, perTurn = PING_SLICE): Promise<void> {
  return inSlices([...connections], perTurn, () => 1, ([socket, conn]) => {
    if (!connections.has(socket)) return;
    if (conn.awaitingPong) {
      socket.terminate();
    } else if (socket.readyState === WebSocket.OPEN) {
      conn.awaitingPong = true;
      socket.ping();
    }
  });
}

/** The raw sockets corked in this turn of the event loop, uncorked together at its end. */
let corked: Socket[] | null = null;

/**
 * Holds the socket's writes until the end of this turn of the event loop, so that the frames a
 * socket gets in one turn (an event, graphql-ws's `complete` after it) leave in one system call
 * rather than one each: in a profile of a burst of expiries, those calls were the largest single
 * item.
 */
function writeWithinTurn(raw: Socket): void {
  if (raw.writableCorked > 0) return;
  raw.cork();
  if (!corked) {
    corked = [];
    setImmediate(uncorkAll);
  }
  corked.push(raw);
}

function uncorkAll(): void {
  const sockets = corked ?? [];
  corked = null;
  for (const socket of sockets) socket.uncork();
}

/** connection_init arrived (or the socket closed): the initialisation timeout no longer applies. */
function clearInitTimer(conn: Connection): void {
  if (conn.initTimer) clearTimeout(conn.initTimer);
  conn.initTimer = null;
}

/** A close frame's reason may hold 123 bytes of UTF-8 (ws throws on more): graphql-ws puts client-chosen ids into some. */
export function closeReason(reason: string): string {
  const bytes = Buffer.from(reason);
  if (bytes.length <= 123) return reason;
  // Cut on a character boundary: drop a partial sequence left at the end.
  return new TextDecoder().decode(bytes.subarray(0, 123)).replace(/\uFFFD+$/, '');
}
