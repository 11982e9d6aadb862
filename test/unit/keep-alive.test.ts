import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { Connection, keepAliveSweep } from '../../src/server/ws/adapter.js';

/** A socket as the sweep sees it: open, counting its pings, terminated on request. */
class FakeSocket {
  readyState: number = WebSocket.OPEN;
  pings = 0;
  terminated = false;
  ping() {
    this.pings++;
  }
  terminate() {
    this.terminated = true;
  }
}

function sockets(count: number): Map<WebSocket, Connection> {
  const map = new Map<WebSocket, Connection>();
  for (let i = 0; i < count; i++) {
    const socket = new FakeSocket() as unknown as WebSocket;
    map.set(socket, new Connection(socket, new Socket()));
  }
  return map;
}

const fakes = (map: Map<WebSocket, Connection>) => [...map.keys()] as unknown as FakeSocket[];

describe('the keep-alive sweep', () => {
  it('pings thousands of sockets a slice per turn of the event loop, each once', async () => {
    const connections = sockets(1_200);
    let pingedAtNextTurn: number | null = null;
    setImmediate(() => (pingedAtNextTurn = fakes(connections).filter((s) => s.pings > 0).length));
    await keepAliveSweep(connections, 500);

    expect(pingedAtNextTurn).toBeGreaterThan(0);
    expect(pingedAtNextTurn).toBeLessThan(1_200);
    expect(fakes(connections).every((s) => s.pings === 1 && !s.terminated)).toBe(true);
    expect([...connections.values()].every((c) => c.awaitingPong)).toBe(true);
  });

  it('terminates the sockets that did not answer the last ping, and passes over those that closed during the sweep', async () => {
    const connections = sockets(1_200);
    const [silent, answered] = [...connections.values()];
    silent!.awaitingPong = true;
    const closedMeanwhile = [...connections.keys()].at(-1)!;
    setImmediate(() => connections.delete(closedMeanwhile));
    await keepAliveSweep(connections, 500);

    expect((silent!.socket as unknown as FakeSocket).terminated).toBe(true);
    expect((silent!.socket as unknown as FakeSocket).pings).toBe(0);
    expect((answered!.socket as unknown as FakeSocket).pings).toBe(1);
    expect((closedMeanwhile as unknown as FakeSocket).pings).toBe(0);
  });
});
