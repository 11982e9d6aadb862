import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config.js';
import { EventHub, type HubDeps } from '../../src/engine/hub.js';
import { Scheduler } from '../../src/engine/scheduler.js';
import { ended } from '../../src/sessions/transitions.js';
import type { Session } from '../../src/session.js';
import { ManualClock } from '../helpers/manualClock.js';

function session(i: number, expiresAt: number): Session {
  const created = new Date(expiresAt - 60_000);
  return {
    id: `s${i}`,
    userId: `u${i}`,
    createdAt: created,
    expiry: { spec: { policy: 'SECONDS', seconds: 60, date: null }, createdAt: created, lastSavedAt: created, expiresAt: new Date(expiresAt), limitedBy: 'POLICY' },
    endedAt: null,
    endReason: null,
    version: 1,
    updatedAt: created,
    userAgent: null,
    clientAddress: null,
  } as Session;
}

function hubOnManualClock(overrides: Partial<HubDeps> = {}) {
  const clock = new ManualClock();
  clock.time = 1_000_000;
  const settings = loadSettings({});
  const hub = new EventHub({
    sessions: {
      expireDue: async (due) => due.map((s) => ended(s, 'TIMEOUT', new Date(clock.time))),
      endAfterAnnouncedTimeout: async () => {},
    },
    database: { reachable: true, answers: async () => true },
    presence: { attach() {}, detach() {}, forget() {} },
    scheduler: new Scheduler(clock),
    now: clock.now,
    expiry: settings.expiry,
    loginUrl: '/login',
    logger: pino({ level: 'silent' }),
    recheckTimeoutMs: 1_000,
    recheckMaxWaitMs: 10_000,
    ...overrides,
  });
  return { clock, hub };
}

describe('the event hub', () => {
  it("waits for a setup's read unless the session ends first; then it answers at once, and the read's failure is nobody's", async () => {
    const { clock, hub } = hubOnManualClock();
    const s = session(1, clock.time + 60_000);
    expect(await hub.unlessEnded(s.id, Promise.resolve('listed'))).toBe('listed');

    let fail!: (err: Error) => void;
    const slowRead = new Promise<string>((_resolve, reject) => (fail = reject));
    const waiting = hub.unlessEnded(s.id, slowRead);
    hub.sessionChanged(ended(s, 'LOGGED_OUT', new Date(clock.time)));
    expect(await waiting).toBeNull();
    fail(new Error('the database went away')); // an unhandled rejection would fail the run
    // Known to have ended: not waited for at all.
    expect(await hub.unlessEnded(s.id, Promise.reject(new Error('the database went away')))).toBeNull();
  });

  it('delivers a burst of expiries a slice at a time, letting the event loop turn in between, and each subscriber gets its one EXPIRED', async () => {
    const { clock, hub } = hubOnManualClock();
    const received: string[] = [];
    /** How many events had arrived at the event loop's next turn after the first one. */
    let receivedAtNextTurn: number | null = null;
    /** Sessions whose sockets were told to close before their event had arrived. */
    const closedEarly: string[] = [];
    const closed = new Set<string>();
    hub.closeSocketsWith({
      sessionEnded: (id) => {
        if (!received.includes(id)) closedEarly.push(id);
        closed.add(id);
      },
    });

    const BURST = 1_200;
    const expiresAt = clock.time + 5_000;
    const consumers = Array.from({ length: BURST }, async (_, i) => {
      const kinds: string[] = [];
      for await (const event of hub.subscribe(session(i, expiresAt), { leadSeconds: 0, allSessions: false })) {
        kinds.push(`${event.kind}/${event.reason}`);
        if (received.push(event.sessionId) === 1) setImmediate(() => (receivedAtNextTurn = received.length));
      }
      return kinds;
    });
    clock.advanceTo(expiresAt);

    expect(new Set(await Promise.all(consumers.map((c) => c.then((kinds) => kinds.join(',')))))).toEqual(new Set(['EXPIRED/TIMEOUT']));
    expect(received).toHaveLength(BURST);
    // Not all 1 200 in one turn of the event loop.
    expect(receivedAtNextTurn).toBeGreaterThan(0);
    expect(receivedAtNextTurn).toBeLessThan(BURST);
    // Every session's sockets are closed, each after its event.
    for (let turn = 0; turn < 20 && closed.size < BURST; turn++) await new Promise(setImmediate);
    expect(closed.size).toBe(BURST);
    expect(closedEarly).toEqual([]);
  });

  it('slices a burst by subscribers, not by sessions: a few sessions with many sockets each are not told all in one turn', async () => {
    const { clock, hub } = hubOnManualClock();
    const SESSIONS = 8;
    const SOCKETS = 200;
    const expiresAt = clock.time + 5_000;
    let received = 0;
    let receivedAtNextTurn: number | null = null;
    const consumers: Array<Promise<void>> = [];
    for (let i = 0; i < SESSIONS; i++) {
      const s = session(i, expiresAt);
      for (let j = 0; j < SOCKETS; j++) {
        consumers.push(
          (async () => {
            for await (const event of hub.subscribe(s, { leadSeconds: 0, allSessions: false })) {
              expect(event.kind).toBe('EXPIRED');
              if (++received === 1) setImmediate(() => (receivedAtNextTurn = received));
            }
          })(),
        );
      }
    }
    clock.advanceTo(expiresAt);
    await Promise.all(consumers);
    await new Promise(setImmediate);

    expect(received).toBe(SESSIONS * SOCKETS);
    expect(receivedAtNextTurn).toBeGreaterThan(0);
    expect(receivedAtNextTurn).toBeLessThan(SESSIONS * SOCKETS);
  });

  it('sends EXPIRING_SOON within the lead time, and not for a session whose expiry has passed (a client reconnecting after it): that one gets EXPIRED alone', async () => {
    const { clock, hub } = hubOnManualClock();
    const kindsOf = async (s: Session) => {
      const kinds: string[] = [];
      for await (const event of hub.subscribe(s, { leadSeconds: 60, allSessions: false })) kinds.push(event.kind);
      return kinds;
    };
    const expiring = kindsOf(session(1, clock.time + 5_000));
    const passed = kindsOf(session(2, clock.time - 1_000));
    clock.advanceTo(clock.time + 5_000);
    expect(await expiring).toEqual(['EXPIRING_SOON', 'EXPIRED']);
    expect(await passed).toEqual(['EXPIRED']);
  });

  it('closes at once the sockets of a session it has seen end, opened with a version read before that end', async () => {
    const { clock, hub } = hubOnManualClock();
    const closed: string[] = [];
    hub.closeSocketsWith({ sessionEnded: (id) => void closed.push(id) });
    const live = session(1, clock.time + 3_600_000);
    hub.sessionChanged(ended(live, 'LOGGED_OUT', new Date(clock.time)));
    hub.socketsOpened(live);
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toEqual(['s1']);
    expect(hub.known('s1')?.endReason).toBe('LOGGED_OUT');
  });

  it('after the feed missed changes, names the sessions it follows; one the database no longer has ends for its subscribers: REVOKED, or EXPIRED once past its expiry', async () => {
    const { clock, hub } = hubOnManualClock();
    const closed: string[] = [];
    hub.closeSocketsWith({ sessionEnded: (id) => void closed.push(id) });
    const live = session(1, clock.time + 3_600_000);
    const past = session(2, clock.time + 1_000);
    const streams = [live, past].map((s) => hub.subscribe(s, { leadSeconds: 0, allSessions: false })[Symbol.asyncIterator]());
    hub.socketsOpened(live);
    expect([...hub.missedChanges()].sort()).toEqual(['s1', 's2']);
    clock.time += 2_000; // past the expiry of s2, its deadline not yet run
    hub.sessionGone('s1');
    hub.sessionGone('s2');
    const first = await Promise.all(streams.map((stream) => stream.next()));
    expect(first.map(({ value }) => `${value.kind}/${value.reason}`)).toEqual(['REVOKED/REVOKED', 'EXPIRED/TIMEOUT']);
    expect((await Promise.all(streams.map((stream) => stream.next()))).map(({ done }) => done)).toEqual([true, true]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed.sort()).toEqual(['s1', 's2']);
    expect([...hub.missedChanges()]).toEqual([]);
  });

  describe('per-user feeds (allSessions)', () => {
    async function feedOf(hub: EventHub, own: Session, listedAt: number) {
      const kinds: string[] = [];
      const feed = hub.subscribe(own, { leadSeconds: 0, allSessions: true }, [], listedAt);
      const reading = (async () => {
        for await (const event of feed) kinds.push(`${event.sessionId}:${event.kind}`);
      })();
      return { kinds, stop: async () => (await feed.return?.(), await reading) };
    }

    it("follow a session of the user that this process already followed for its sockets", async () => {
      const { clock, hub } = hubOnManualClock();
      const own = session(1, clock.time + 3_600_000);
      const { kinds, stop } = await feedOf(hub, own, clock.time);
      // Another tab logs in; its socket reaches this process before the change feed brings the login.
      const other = { ...session(2, clock.time + 3_600_000), userId: own.userId, updatedAt: new Date(clock.time + 10) };
      hub.socketsOpened(other);
      hub.sessionChanged(other);
      hub.sessionChanged(ended(other, 'REVOKED', new Date(clock.time + 20)));
      await new Promise((resolve) => setImmediate(resolve));
      expect(kinds).toEqual(['s2:REVOKED']);
      await stop();
    });

    it('follow a session stamped just before the listing that the listing did not see (its insert was not visible yet)', async () => {
      const { clock, hub } = hubOnManualClock();
      const own = session(1, clock.time + 3_600_000);
      const { kinds, stop } = await feedOf(hub, own, clock.time);
      const other = { ...session(2, clock.time + 3_600_000), userId: own.userId, updatedAt: new Date(clock.time - 200) };
      hub.sessionChanged(other);
      hub.sessionChanged(ended(other, 'REVOKED', new Date(clock.time + 20)));
      await new Promise((resolve) => setImmediate(resolve));
      expect(kinds).toEqual(['s2:REVOKED']);
      await stop();
    });
  });

  function presenceLog() {
    const calls: string[] = [];
    const presence = {
      attach: (id: string) => void calls.push(`attach ${id}`),
      detach: (id: string) => void calls.push(`detach ${id}`),
      forget: (id: string) => void calls.push(`forget ${id}`),
    };
    return { calls, presence };
  }
  const atBrowserClose = (s: Session, version: number) =>
    ({ ...s, version, expiry: { ...s.expiry, spec: { policy: 'BROWSER_CLOSE', seconds: null, date: null } } }) as Session;

  it('counts a subscription as browser presence from the moment its session is set to expire at browser close, and forgets it once it is not', async () => {
    const { calls, presence } = presenceLog();
    const { clock, hub } = hubOnManualClock({ presence });
    const s = session(1, clock.time + 300_000);
    const feed = hub.subscribe(s, { leadSeconds: 0, allSessions: false });
    expect(calls).toEqual([]);
    hub.sessionChanged(atBrowserClose(s, 2));
    expect(calls).toEqual(['attach s1']);
    hub.sessionChanged({ ...s, version: 3 });
    hub.sessionChanged(atBrowserClose(s, 4));
    await feed.return?.();
    expect(calls).toEqual(['attach s1', 'forget s1', 'attach s1', 'detach s1']);
  });

  it("forgets the presence of a session that this process's own write took off browser close, followed here or not", () => {
    const { calls, presence } = presenceLog();
    const { clock, hub } = hubOnManualClock({ presence });
    const s = session(1, clock.time + 300_000);
    hub.sessionChanged({ ...s, version: 3 }, atBrowserClose(s, 2));
    expect(calls).toEqual(['forget s1']);
    // Heard from the change feed (another process wrote it, and forgot), ended, or not a browser-close session before: nothing.
    hub.sessionChanged({ ...s, version: 4 });
    hub.sessionChanged({ ...s, version: 5, endedAt: new Date(clock.time), endReason: 'LOGGED_OUT' }, atBrowserClose(s, 4));
    hub.sessionChanged({ ...s, version: 6 }, { ...s, version: 5 });
    expect(calls).toEqual(['forget s1']);
  });

  describe('a database that answers pings but is slow to decide', () => {
    const RECHECK_TIMEOUT_MS = 20;
    const MAX_WAIT_MS = 300;

    async function firstEventAfterExpiry(expireDue: HubDeps['sessions']['expireDue']) {
      const announced: string[] = [];
      const { clock, hub } = hubOnManualClock({
        sessions: { expireDue, endAfterAnnouncedTimeout: async (id) => void announced.push(id) },
        recheckTimeoutMs: RECHECK_TIMEOUT_MS,
        recheckMaxWaitMs: MAX_WAIT_MS,
      });
      const s = session(1, clock.time + 5_000);
      const next = hub.subscribe(s, { leadSeconds: 0, allSessions: false })[Symbol.asyncIterator]().next();
      clock.advanceTo(s.expiry.expiresAt.getTime());
      const startedAt = Date.now();
      const { value } = await next;
      return { event: `${value.kind}/${value.reason}`, waitedMs: Date.now() - startedAt, announced, s };
    }

    it('is waited for while it decides within EXPIRY_RECHECK_MAX_WAIT: a renewal it finds applies', async () => {
      const { event, waitedMs, announced } = await firstEventAfterExpiry(async ([due]) => {
        await new Promise((resolve) => setTimeout(resolve, MAX_WAIT_MS / 2));
        return [{ ...due!, version: 2, expiry: { ...due!.expiry, expiresAt: new Date(due!.expiry.expiresAt.getTime() + 60_000) } }];
      });
      expect(event).toBe('EXPIRY_CHANGED/null');
      expect(waitedMs).toBeGreaterThanOrEqual(MAX_WAIT_MS / 2 - 5);
      expect(announced).toEqual([]);
    });

    it('once it has not decided within EXPIRY_RECHECK_MAX_WAIT, the session ends on its last known expiry and that end is made to stick', async () => {
      const { event, waitedMs, announced, s } = await firstEventAfterExpiry(() => new Promise(() => {}));
      expect(event).toBe('EXPIRED/TIMEOUT');
      expect(waitedMs).toBeGreaterThanOrEqual(MAX_WAIT_MS - 5);
      expect(waitedMs).toBeLessThan(MAX_WAIT_MS + 500);
      await expect.poll(() => announced).toEqual([s.id]);
    });

    it('when stopping, waits a while for announced ends to be written, then says which were not', async () => {
      const lines: Array<{ msg: string; sessions?: string[] }> = [];
      let writes = 0;
      let write!: () => void;
      const { clock, hub } = hubOnManualClock({
        sessions: {
          expireDue: () => new Promise(() => {}),
          // The first end is written once the test says so; the second never is.
          endAfterAnnouncedTimeout: () => (++writes === 1 ? new Promise<void>((resolve) => (write = resolve)) : new Promise<void>(() => {})),
        },
        logger: pino({ level: 'error' }, { write: (line: string) => void lines.push(JSON.parse(line)) }),
        recheckTimeoutMs: RECHECK_TIMEOUT_MS,
        recheckMaxWaitMs: MAX_WAIT_MS,
      });
      const announce = async (s: Session) => {
        const next = hub.subscribe(s, { leadSeconds: 0, allSessions: false })[Symbol.asyncIterator]().next();
        clock.advanceTo(s.expiry.expiresAt.getTime());
        await next;
      };
      await announce(session(1, clock.time + 5_000));
      setTimeout(() => write(), 50);
      await hub.stop(2_000);
      expect(lines).toEqual([]);

      await announce(session(2, clock.time + 5_000));
      await hub.stop(100);
      expect(lines.map(({ msg, sessions }) => ({ msg: msg.split(':')[0], sessions }))).toEqual([
        { msg: 'stopping with announced ends the database has not taken', sessions: ['s2'] },
      ]);
    });

    it('remembers an announced end for as long as it is not written, then for the usual minute', async () => {
      let write!: () => void;
      const { clock, hub } = hubOnManualClock({
        sessions: { expireDue: () => new Promise(() => {}), endAfterAnnouncedTimeout: () => new Promise<void>((resolve) => (write = resolve)) },
        recheckTimeoutMs: RECHECK_TIMEOUT_MS,
        recheckMaxWaitMs: MAX_WAIT_MS,
      });
      const s = session(1, clock.time + 5_000);
      const next = hub.subscribe(s, { leadSeconds: 0, allSessions: false })[Symbol.asyncIterator]().next();
      clock.advanceTo(s.expiry.expiresAt.getTime());
      await next;
      await expect.poll(() => write).toBeTypeOf('function');
      // Ends seen later are what make the hub forget old ones.
      const forgetNow = (i: number) => hub.sessionChanged(ended(session(i, clock.time), 'LOGGED_OUT', new Date(clock.time)));
      clock.advanceTo(clock.time + 10 * 60_000);
      forgetNow(2);
      expect(hub.known(s.id)?.endReason).toBe('TIMEOUT');
      write();
      await expect.poll(() => {
        clock.advanceTo(clock.time + 61_000);
        forgetNow(3);
        return hub.known(s.id);
      }).toBeNull();
    });
  });
});
