/**
 * The baseline: a bare `ws` server that does nothing but what the physical limit of the machine
 * allows. It speaks just enough graphql-transport-ws for the same load code: the "token" in
 * connection_init is the deadline (ms since the epoch); on subscribe it arms one setTimeout for
 * it, then sends an EXPIRED `next` shaped like the API's. One message per socket and nothing
 * else (no `complete`, no close): the least any server has to do at a deadline.
 */
import { WebSocketServer, type WebSocket } from 'ws';
import { serve } from './ipc.js';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/graphql' });
await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
let subscribed = 0;

function expire(socket: WebSocket, id: string, deadline: number): void {
  const left = deadline - Date.now();
  if (left > 0) {
    // setTimeout runs on the monotonic clock and may wake a millisecond before the wall clock says so.
    setTimeout(() => expire(socket, id, deadline), left);
    return;
  }
  const expiresAt = new Date(deadline).toISOString();
  const event = { kind: 'EXPIRED', sessionId: String(deadline), expiresAt, serverTime: new Date().toISOString() };
  socket.send(JSON.stringify({ id, type: 'next', payload: { data: { sessionEvents: event } } }));
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

const { port } = wss.address() as { port: number };
serve({
  url: () => `http://127.0.0.1:${port}/graphql`,
  subscribed: () => subscribed,
  /** Collects garbage, then tells the memory in use. */
  gc: () => {
    globalThis.gc?.();
    return process.memoryUsage();
  },
  resetStats: () => {},
  stats: () => ({ rechecks: { sent: 0, answered: [] }, logCounts: {}, loopDelayMs: null }),
  exit: () => new Promise<void>((resolve) => wss.close(() => resolve())),
});
