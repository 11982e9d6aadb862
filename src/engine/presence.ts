import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '../logger.js';
import { loggable } from '../store/databaseErrors.js';
import type { Holder, PresenceStore } from '../store/presenceStore.js';
import { steppedBetween, wallLead } from './clockSteps.js';
import type { Scheduler } from './scheduler.js';

/** Ends a browser-close session whose browser has gone (SessionService). True for the one caller that ended it. */
export interface BrowserCloseEnder {
  endBrowserClosed(sessionId: string): Promise<boolean>;
}

export interface PresenceDeps {
  store: PresenceStore;
  ender: BrowserCloseEnder;
  scheduler: Scheduler;
  /** How long a session survives with no live subscription anywhere. */
  graceMs: number;
  /** How often this process renews its lease and sweeps. */
  heartbeatMs: number;
  /** How long a lease lasts without renewal: a process silent that long is taken for dead. */
  leaseMs: number;
  clock: { now(): number };
  logger: Logger;
}

/** This process's holding of one session, as stored in its presence document; or the session's presence to be deleted, everywhere. */
type Holding = { forget?: false; live: boolean; releasedAt: Date | null } | { forget: true };

/**
 * "Until the browser closes", seen from the servers. Each process stores, per browser-close
 * session it has had subscriptions of, whether it still has live ones (and since when it has none),
 * and holds a lease that its heartbeat renews. A session ends with BROWSER_CLOSED once no process
 * whose lease runs holds it, and the last holder let go (released it, or its lease ran out) at
 * least the grace period ago. Every process sweeps for such sessions at each heartbeat; the
 * process that released a session also arms a timer at the end of its grace.
 *
 * Each presence document is written by its own process only, so no write can be lost to another.
 */
export class Presence {
  readonly processId = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  /** Live subscriptions of each browser-close session in this process. */
  private readonly counts = new Map<string, number>();
  /** This process's holding of a session, from the moment it changes until it is stored. */
  private readonly unsaved = new Map<string, Holding>();
  /** Per session, the write loop storing its holding, so that writes of one session never swap places. */
  private readonly writing = new Map<string, Promise<void>>();
  private heartbeat: NodeJS.Timeout | null = null;
  private renewing: Promise<void> | null = null;
  private sweeping: Promise<void> | null = null;
  /** Until when this process's lease runs, as last stored. */
  private leaseUntil = 0;
  /**
   * Since when this process's lease renewals have succeeded without a break; null after a failure.
   * A renewal answered after this process's own lease had run out is a break too: the database was
   * as slow for the others, whose leases ran out the same way while they lived.
   */
  private healthySince: number | null = null;
  private renewalFailed = false;
  /**
   * The wall clock's lead over the monotonic one when the last renewal that answered began. Leases
   * are instants of the wall clock: after a step of it, until a renewal begun after the step has
   * answered, the leases read are as of before it, and this process's health too, so nothing is
   * judged (an hour forward, every lease looks long run out).
   */
  private renewedAtLead: number | null = null;

  constructor(private readonly deps: PresenceDeps) {}

  /** Takes this process's lease and starts the heartbeat. */
  async start(): Promise<void> {
    await this.deps.store.init();
    await this.renewLease();
    this.heartbeat = setInterval(() => void this.beat(), this.deps.heartbeatMs);
    this.heartbeat.unref();
  }

  attach(sessionId: string): void {
    const count = (this.counts.get(sessionId) ?? 0) + 1;
    this.counts.set(sessionId, count);
    if (count > 1) return;
    this.deps.scheduler.cancel(graceKey(sessionId));
    this.save(sessionId, { live: true, releasedAt: null });
  }

  detach(sessionId: string): void {
    const count = (this.counts.get(sessionId) ?? 0) - 1;
    if (count > 0) {
      this.counts.set(sessionId, count);
      return;
    }
    this.counts.delete(sessionId);
    this.save(sessionId, { live: false, releasedAt: new Date(this.deps.clock.now()) });
  }

  /**
   * The session no longer expires at browser close: whatever any process stored of its browser
   * (a tab released within the grace would end it once it is one again) goes, and so do this
   * process's count and timer. Made one again, its presence starts afresh, as at login.
   */
  forget(sessionId: string): void {
    this.counts.delete(sessionId);
    this.deps.scheduler.cancel(graceKey(sessionId));
    this.save(sessionId, { forget: true });
  }

  /** Waits for the writes in flight. */
  private async drain(): Promise<void> {
    while (this.writing.size > 0) await Promise.all(this.writing.values());
  }

  /**
   * A graceful stop, once the subscriptions are closed: releases whatever this process still holds
   * (the grace starts now rather than when the lease runs out) and gives up the lease.
   */
  async stop(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    await Promise.all([this.renewing, this.sweeping]);
    await this.drain();
    try {
      await this.deps.store.releaseAll(this.processId, new Date(this.deps.clock.now()));
      await this.deps.store.removeProcess(this.processId);
    } catch (err) {
      this.deps.logger.warn({ err: loggable(err) }, 'could not release the browser-close sessions of this process: they are released when its lease runs out');
    }
  }

  private save(sessionId: string, holding: Holding): void {
    this.unsaved.set(sessionId, holding);
    this.flush(sessionId);
  }

  private flush(sessionId: string): void {
    if (!this.writing.has(sessionId)) this.writing.set(sessionId, this.write(sessionId));
  }

  /** Stores the session's latest holding until none is left unsaved; after a failure, the next heartbeat retries. */
  private async write(sessionId: string): Promise<void> {
    try {
      for (let holding = this.unsaved.get(sessionId); holding; holding = this.unsaved.get(sessionId)) {
        if (holding.forget) await this.deps.store.forgetSession(sessionId);
        else await this.deps.store.saveHolder(sessionId, this.processId, holding.live, holding.releasedAt);
        if (this.unsaved.get(sessionId) === holding) this.unsaved.delete(sessionId);
        if (!holding.forget && holding.releasedAt && !this.counts.has(sessionId)) this.armGrace(sessionId, holding.releasedAt);
      }
    } catch (err) {
      this.deps.logger.warn({ err: loggable(err), sessionId }, 'could not store the presence of a browser-close session: retried at the next heartbeat');
    } finally {
      this.writing.delete(sessionId);
    }
  }

  private armGrace(sessionId: string, releasedAt: Date): void {
    this.deps.scheduler.schedule(graceKey(sessionId), releasedAt.getTime() + this.deps.graceMs, () => {
      this.endIfGone([sessionId]).catch((err: unknown) => this.deps.logger.warn({ err: loggable(err), sessionId }, 'could not check a browser-close session'));
    });
  }

  /**
   * The renewal and the sweep, each one at a time (a slow database makes heartbeats wait, not pile
   * up), and apart: a sweep that the database is slow to answer must not hold up the lease, or the
   * other processes take this one for dead.
   */
  private beat(): void {
    this.renewing ??= this.renew().finally(() => (this.renewing = null));
    this.sweeping ??= this.sweepWhileHealthy().finally(() => (this.sweeping = null));
  }

  private async renew(): Promise<void> {
    try {
      await this.renewLease();
    } catch (err) {
      // Once per run of failures: an outage fails every heartbeat.
      if (!this.renewalFailed) this.deps.logger.warn({ err: loggable(err) }, 'could not renew the presence lease of this process');
      this.healthySince = null;
      this.renewalFailed = true;
      return;
    }
    this.renewalFailed = false;
    for (const sessionId of this.unsaved.keys()) this.flush(sessionId);
  }

  private async renewLease(): Promise<void> {
    const lead = this.clockLead();
    const leaseUntil = this.deps.clock.now() + this.deps.leaseMs;
    await this.deps.store.renewLease(this.processId, new Date(leaseUntil));
    const answeredAt = this.deps.clock.now();
    if (this.healthySince === null || answeredAt > this.leaseUntil) this.healthySince = answeredAt;
    this.leaseUntil = leaseUntil;
    this.renewedAtLead = lead;
  }

  /** The wall clock's lead over the monotonic one now (clockSteps.ts). */
  private clockLead(): number {
    return wallLead(() => this.deps.clock.now());
  }

  private async sweepWhileHealthy(): Promise<void> {
    if (this.healthySince === null) return;
    try {
      await this.sweep();
    } catch (err) {
      this.deps.logger.warn({ err: loggable(err) }, 'could not sweep browser-close sessions');
    }
  }

  /** Ends the browser-close sessions that every holder has let go of at least the grace period ago. */
  private async sweep(): Promise<void> {
    // Each check is made as of before its reads: a lease seen in an answer that came late may have been renewed since.
    const now = this.deps.clock.now();
    const leases = await this.deps.store.leases();
    const alive = [...leases].filter(([, leaseUntil]) => leaseUntil > now).map(([processId]) => processId);
    const letGo = (await this.deps.store.sessionsLetGo(alive)).filter((id) => !this.counts.has(id));
    if (letGo.length > 0) await this.endIfGone(letGo);
    // Once its lease has been out for over a grace, a process's live holders need it no more (see letGoAt).
    await this.deps.store.forgetProcessesGoneBefore(new Date(now - this.deps.leaseMs - this.deps.graceMs));
  }

  private async endIfGone(sessionIds: string[]): Promise<void> {
    const lead = this.clockLead();
    if (steppedBetween(this.renewedAtLead, lead)) return;
    const now = this.deps.clock.now();
    const holders = await this.deps.store.holdersOf(sessionIds);
    // Read after the holders: a process stores its lease before its first holder, so none is missed.
    const leases = await this.deps.store.leases();
    if (steppedBetween(lead, this.clockLead())) return;
    const bySession = new Map<string, Holder[]>();
    for (const h of holders) bySession.set(h.sessionId, [...(bySession.get(h.sessionId) ?? []), h]);
    await Promise.all(
      [...bySession].map(async ([sessionId, sessionHolders]) => {
        if (this.counts.has(sessionId)) return;
        const letGoAt = this.letGoAt(sessionHolders, leases, now);
        if (letGoAt === null || letGoAt + this.deps.graceMs > now) return;
        try {
          if (await this.deps.ender.endBrowserClosed(sessionId)) {
            this.deps.logger.info({ sessionId }, 'browser-close session ended: no live subscription for the grace period');
          }
          // Ended now or before (or no longer a browser-close session): its presence is over.
          await this.deps.store.forgetSession(sessionId);
        } catch (err) {
          this.deps.logger.warn({ err: loggable(err), sessionId }, 'could not end a browser-close session');
        }
      }),
    );
  }

  /** When the last holder of a session let go of it; null while a holder whose lease runs still holds it. */
  private letGoAt(holders: Holder[], leases: Map<string, number>, now: number): number | null {
    let at = -Infinity;
    for (const h of holders) {
      if (!h.live) {
        at = Math.max(at, h.releasedAt!.getTime());
        continue;
      }
      const leaseUntil = leases.get(h.processId) ?? -Infinity; // a process forgotten long after its lease ran out
      if (leaseUntil > now || this.healthySince === null) return null;
      // A lease that ran out while this process could not renew its own proves nothing (the database
      // may have been out of reach for everybody): count from when this process could again.
      at = Math.max(at, leaseUntil, this.healthySince);
    }
    return at;
  }
}

const graceKey = (sessionId: string) => `presence:${sessionId}`;
