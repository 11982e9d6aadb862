/**
 * The baseline: a bare `ws` server that does nothing but what the physical limit of the machine
 * allows. It speaks just enough graphql-transport-ws for the same load code: the "token" in
 * connection_init is the deadline (ms since the epoch); on subscribe it arms one setTimeout for
 * it, then sends an EXPIRED `next` shaped like the API's. One message per socket and nothing
 * else (no `complete`, no close): the least any server has to do at a deadline.
 */
import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { serve } from './ipc.js';

// Plain HTTP answers only HAProxy's health check (bench/balancer.ts), as the API's /readyz does.
const httpServer = createServer((req, res) => res.writeHead(req.url === '/readyz' ? 200 : 404).end());
const wss = new WebSocketServer({ server: httpServer, path: '/graphql' });
await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
let subscribed = 0;
/** BARE_CLOSING=1: the event is followed by graphql-ws's complete and the socket's close with 4401, the API's protocol. */
const closing = process.env.BARE_CLOSING === '1';

function expire(socket: WebSocket, id: string, deadline: number): void {
  const left = deadline - Date.now();
  if (left > 0) {
    // setTimeout runs on the monotonic clock and may wake a millisecond before the wall clock says so.
    setTimeout(() => expire(socket, id, deadline), left);
    return;
  }
  const expiresAt = new Date(deadline).toISOString();
  const event = { kind: 'EXPIRED', sessionId: String(deadline), expiresAt, serverTime: new Date().toISOString() };
  if (!closing) {
    socket.send(JSON.stringify({ id, type: 'next', payload: { data: { sessionEvents: event } } }));
    return;
  }
  // The event and `complete` leave in one write, as the API's do (src/server/ws/adapter.ts).
  const raw = (socket as unknown as { _socket: Socket })._socket;
  raw.cork();
  socket.send(JSON.stringify({ id, type: 'next', payload: { data: { sessionEvents: event } } }));
  socket.send(JSON.stringify({ id, type: 'complete' }));
  raw.uncork();
  // After the other events due in this turn, as the API closes a burst's sockets after its events.
  setImmediate(() => socket.close(4401, 'Session ended'));
}

wss.on('connection', (socket) => {
  let deadline = 0;
  socket.on('message', (data) => {
    const msg = JSON.parse(String(data)) as { type: string; id?: string; payload?: { token?: string } };
    if (msg.type === 'connection_init') {
      deadline = Number(msg.payload?.token);
      socket.send('{"type":"connection_ack"}');
    } else if (msg.type === 'subscribe') {
      subscribed++;
      expire(socket, msg.id!, deadline);
    }
  });
});

const { port } = httpServer.address() as { port: number };
serve({
  url: () => `http://127.0.0.1:${port}/graphql`,
  subscribed: () => subscribed,
  /** Collects garbage, then tells the memory in use. */
  gc: () => {
    globalThis.gc?.();
    return process.memoryUsage();
  },
  resetStats: () => {},
  stats: () => ({ rechecks: { sent: 0, answered: [] }, logCounts: {}, commands: {}, loopDelayMs: null }),
  // The process exits right after: nothing to wait for.
  exit: () => {
    wss.close();
    httpServer.close();
  },
});
