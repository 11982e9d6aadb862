/**
 * Clients for the fuzz test that send exactly what they are given: a raw HTTP client (node:http on
 * a keep-alive agent: any method, header, body or path) and a raw websocket (the `ws` package: any
 * subprotocol, message or frame), each with timeouts, so that a server that does not answer is seen
 * as such instead of hanging the test.
 */
import http from 'node:http';
import { WebSocket } from 'ws';

export interface HttpAnswer {
  status: number;
  contentType: string;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

export class RawHttp {
  private readonly agent: http.Agent;
  readonly origin: URL;

  /** `keepAlive: false`: a new connection for every request; `maxSockets`: connections at most. */
  constructor(url: string, { keepAlive = true, maxSockets = 64 } = {}) {
    this.origin = new URL(url);
    this.agent = new http.Agent({ keepAlive, maxSockets });
  }

  /** One request; rejects when no answer comes within `timeoutMs` or the connection fails. */
  request(
    req: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer; chunked?: boolean },
    timeoutMs: number,
  ): Promise<HttpAnswer> {
    return new Promise((resolve, reject) => {
      const body = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body, 'utf8');
      const headers: Record<string, string | number> = { ...req.headers };
      if (body && !req.chunked) headers['content-length'] = body.length;
      const r = http.request(
        {
          agent: this.agent,
          host: this.origin.hostname,
          port: this.origin.port,
          method: req.method ?? 'POST',
          path: req.path ?? this.origin.pathname,
          headers,
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            clearTimeout(timer);
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = text ? JSON.parse(text) : undefined;
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), text, json });
          });
          res.on('error', fail);
        },
      );
      const timer = setTimeout(() => {
        r.destroy(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      function fail(err: Error) {
        clearTimeout(timer);
        reject(err);
      }
      r.on('error', fail);
      r.on('timeout', () => r.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      if (body && req.chunked) {
        // Several chunks, so that a server that decides on the length as it reads gets to do so.
        for (let i = 0; i < body.length; i += 16_384) r.write(body.subarray(i, i + 16_384));
        r.end();
      } else r.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

export type WsMessage = { type?: string; id?: string; payload?: any; [k: string]: unknown };

/** How a socket ended: a close frame's code (1005 when it had none, 1006 when the connection just dropped), or an HTTP answer to the upgrade. */
export interface WsEnd {
  code: number;
  reason: string;
  /** The HTTP status when the upgrade was answered with one instead of 101. */
  httpStatus?: number;
  /** The client failed the handshake itself (the server chose no subprotocol of those asked for, as RFC 6455 allows). */
  clientAbort?: string;
}

export class RawSocket {
  /** Messages without an id (connection_ack, pong), and the last few with one (for failure reports). */
  readonly messages: WsMessage[] = [];
  /** Messages by subscription id: a lane's socket lives for thousands of operations. */
  private readonly byId = new Map<string, WsMessage[]>();
  /** Messages that were not JSON (the server should never send one). */
  readonly garbage: string[] = [];
  ended: WsEnd | null = null;
  opened = false;
  acked = false;
  /** The first error the client saw (a handshake it failed, a connection that dropped). */
  clientError: string | null = null;
  private waiters: Array<() => void> = [];
  private readonly ws: WebSocket;

  constructor(url: string, options: { protocols?: string | string[]; headers?: Record<string, string> } = {}) {
    this.ws = new WebSocket(url, options.protocols ?? [], { headers: options.headers, handshakeTimeout: 10_000, perMessageDeflate: false });
    this.ws.on('open', () => {
      this.opened = true;
      this.notify();
    });
    this.ws.on('message', (data, isBinary) => {
      const text = String(data);
      try {
        const msg = JSON.parse(text) as WsMessage;
        if (msg && typeof msg === 'object' && !Array.isArray(msg)) {
          if (typeof msg.id === 'string') {
            const list = this.byId.get(msg.id);
            if (list) list.push(msg);
            else this.byId.set(msg.id, [msg]);
          }
          this.messages.push(msg);
          if (this.messages.length > 50) this.messages.splice(0, this.messages.length - 20);
          if (msg.type === 'connection_ack') this.acked = true;
        } else this.garbage.push(text);
      } catch {
        this.garbage.push(isBinary ? `<binary ${text.length}>` : text);
      }
      this.notify();
    });
    this.ws.on('unexpected-response', (req, res) => {
      this.ended ??= { code: 0, reason: `upgrade answered with HTTP ${res.statusCode}`, httpStatus: res.statusCode };
      res.resume();
      req.destroy();
      this.notify();
    });
    this.ws.on('close', (code, reason) => {
      const abort = this.clientError && /subprotocol/i.test(this.clientError) ? this.clientError : undefined;
      this.ended ??= { code, reason: String(reason), ...(abort ? { clientAbort: abort } : {}) };
      this.notify();
    });
    this.ws.on('error', (err) => {
      // 'close' follows (or 'unexpected-response' came first).
      this.clientError ??= err.message;
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN && !this.ended;
  }

  send(data: string | Buffer, binary = false): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data, { binary });
  }

  json(msg: unknown): void {
    this.send(JSON.stringify(msg));
  }

  /** Resolves true once `predicate` holds, false after `timeoutMs`. */
  async until(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return true;
  }

  /** Resolves once open (true) or ended (false); false also after `timeoutMs`. */
  async opening(timeoutMs: number): Promise<boolean> {
    await this.until(() => this.opened || this.ended !== null, timeoutMs);
    return this.opened && !this.ended;
  }

  /** Messages about subscription `id`. */
  about(id: string): WsMessage[] {
    return this.byId.get(id) ?? [];
  }

  /** Whether subscription `id` has finished: complete or error (a `next` alone does not finish it). */
  finished(id: string): boolean {
    return this.about(id).some((m) => m.type === 'complete' || m.type === 'error');
  }

  /** Forgets the messages about `id` (once they have been checked). */
  forget(id: string): void {
    this.byId.delete(id);
  }

  /** Every message received and still kept, for the checks. */
  all(): WsMessage[] {
    return [...this.messages.filter((m) => typeof m.id !== 'string'), ...[...this.byId.values()].flat()];
  }

  close(): void {
    if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
    else this.ws.close(1000);
  }

  terminate(): void {
    this.ws.terminate();
  }

  private notify() {
    for (const w of this.waiters.splice(0)) w();
  }
}
