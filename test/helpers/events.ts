import type { Client } from 'graphql-ws';
import type { TestServer } from './server.js';

export interface ReceivedEvent {
  kind: string;
  sessionId: string;
  expiresAt: string;
  serverTime: string;
  secondsLeft: number;
  reason: string | null;
  redirectTo: string | null;
  /** Local clock when the event arrived. */
  receivedAt: number;
}

export const EVENTS_QUERY = `subscription($lead: Int, $all: Boolean) {
  sessionEvents(expiringSoonLead: $lead, allSessions: $all) { kind sessionId expiresAt serverTime secondsLeft reason redirectTo }
}`;

/** A live sessionEvents subscription that records what arrives, how it ends, and the socket's close code. */
export class EventRecorder {
  readonly events: ReceivedEvent[] = [];
  completed = false;
  error: unknown = null;
  closeCode: number | null = null;
  private readonly client: Client;
  private readonly waiters: Array<() => void> = [];

  constructor(server: TestServer, token: string | null, variables: { lead?: number; all?: boolean } = {}, { answerPings = true } = {}) {
    this.client = server.wsClient(token, {
      answerPings,
      onClosed: (code) => {
        this.closeCode = code;
        this.notify();
      },
    });
    this.client.subscribe<{ sessionEvents: Omit<ReceivedEvent, 'receivedAt'> }>(
      { query: EVENTS_QUERY, variables: { lead: variables.lead ?? 0, all: variables.all ?? false } },
      {
        next: (result) => {
          if (result.data) this.events.push({ ...result.data.sessionEvents, receivedAt: Date.now() });
          else this.error = result.errors;
          this.notify();
        },
        error: (err) => {
          this.error = err;
          this.notify();
        },
        complete: () => {
          this.completed = true;
          this.notify();
        },
      },
    );
  }

  kinds(): string[] {
    return this.events.map((e) => e.kind);
  }

  /** Resolves once `predicate` holds, or rejects after `timeoutMs`. */
  async until(predicate: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(this.kinds())}, error: ${String(this.error)}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  untilEvent(kind: string, timeoutMs?: number): Promise<ReceivedEvent> {
    return this.until(() => this.events.some((e) => e.kind === kind), timeoutMs, kind).then(
      () => this.events.find((e) => e.kind === kind)!,
    );
  }

  /** Resolves once the server follows `sessionId` for a subscriber (the subscription is in place). */
  async ready(server: TestServer, sessionId: string): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!server.hub.hasSubscribers(sessionId)) {
      if (Date.now() > deadline || this.closeCode !== null) throw new Error(`subscription not in place (close code ${this.closeCode})`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  dispose(): Promise<void> {
    return this.client.dispose() as Promise<void>;
  }

  private notify() {
    for (const w of this.waiters.splice(0)) w();
  }
}
