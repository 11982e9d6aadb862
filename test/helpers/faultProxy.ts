/**
 * A TCP proxy in front of the test database that reads the command and collection of each message
 * a client sends, so that a test can hold one chosen command (never forward it, nor anything after
 * it on that connection) and so stop a server at an exact point of its write path, or delay the
 * answers to chosen commands:
 *
 *   const proxy = await FaultProxy.start(testDatabaseUri());
 *   proxy.holdWhen((c) => c.command === 'insert' && c.collection === 'session_changes');
 *   const server = await startServerProcess({ mongoUri: proxy.uri });
 */
import net from 'node:net';
import { unixSocketOf } from '../../scripts/database/uri.js';

export interface Command {
  command: string;
  collection: string | null;
}

/** The first element of an OP_MSG body (kind 0 section): the command's name and, where it is a string, its collection. */
function commandOf(message: Buffer): Command | null {
  const OP_MSG = 2013;
  if (message.readInt32LE(12) !== OP_MSG || message[20] !== 0) return null;
  const elementStart = 21 + 4; // flags (4 bytes) and section kind (1), then the document's length (4)
  const type = message[elementStart]!;
  const nameEnd = message.indexOf(0, elementStart + 1);
  const command = message.toString('utf8', elementStart + 1, nameEnd);
  const STRING = 0x02;
  if (type !== STRING) return { command, collection: null };
  const length = message.readInt32LE(nameEnd + 1);
  return { command, collection: message.toString('utf8', nameEnd + 5, nameEnd + 4 + length) };
}

/** Calls `each` with every whole wire-protocol message the socket delivers (each starts with its length). */
function eachMessage(socket: net.Socket, each: (message: Buffer) => void): void {
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 4 && pending.length >= pending.readInt32LE(0)) {
      const message = pending.subarray(0, pending.readInt32LE(0));
      pending = pending.subarray(message.length);
      each(message);
    }
  });
}

export class FaultProxy {
  private readonly sockets = new Set<net.Socket>();
  private hold: ((c: Command) => boolean) | null = null;
  /** Commands held so far. */
  held = 0;
  private slow: { when: (c: Command) => boolean; ms: number } | null = null;
  /** Nothing is forwarded either way (a network that drops packets). */
  private silent = false;
  /** New connections are reset at once. */
  private refusing = false;

  private readonly server = net.createServer((client) => this.accept(client));
  /** The database's URI with the proxy's address. */
  uri = '';

  private constructor(private readonly database: net.NetConnectOpts) {}

  static async start(databaseUri: string): Promise<FaultProxy> {
    const target = new URL(databaseUri);
    const socket = unixSocketOf(databaseUri);
    const proxy = new FaultProxy(socket ? { path: socket } : { port: Number(target.port), host: target.hostname });
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    target.host = `127.0.0.1:${(proxy.server.address() as net.AddressInfo).port}`;
    proxy.uri = target.toString();
    return proxy;
  }

  /** The next command for which `when` holds is held, with everything after it on its connection. */
  holdWhen(when: (c: Command) => boolean): void {
    this.hold = when;
  }

  /** The answers to the commands for which `when` holds reach their client `ms` later (a database slow to decide them). */
  delayAnswersTo(when: (c: Command) => boolean, ms: number): void {
    this.slow = { when, ms };
  }

  /** Forwards nothing either way, from now until `reset` (packets dropped). */
  silence(): void {
    this.silent = true;
  }

  /** Resets every connection and refuses new ones for `refuseMs` (then forwards as before). */
  reset(refuseMs: number): void {
    this.silent = false;
    this.refusing = true;
    for (const s of this.sockets) s.destroy();
    setTimeout(() => (this.refusing = false), refuseMs).unref();
  }

  private accept(client: net.Socket): void {
    if (this.refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.database);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(s);
      });
    }
    /** Request ids whose answers are to be delayed, and by how much. */
    const delayed = new Map<number, number>();
    const requestId = (message: Buffer) => message.readInt32LE(4);
    const respondingTo = (message: Buffer) => message.readInt32LE(8);
    eachMessage(upstream, (message) => {
      const ms = delayed.get(respondingTo(message));
      delayed.delete(respondingTo(message));
      if (this.silent) return;
      if (ms) setTimeout(() => client.write(message), ms);
      else client.write(message);
    });
    let holding = false;
    eachMessage(client, (message) => {
      if (holding || this.silent) return;
      const command = commandOf(message);
      if (this.hold && command && this.hold(command)) {
        this.hold = null;
        this.held++;
        holding = true;
        return;
      }
      if (this.slow && command && this.slow.when(command)) delayed.set(requestId(message), this.slow.ms);
      upstream.write(message);
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
