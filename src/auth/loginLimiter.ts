import { RateLimiterMemory } from 'rate-limiter-flexible';

/**
 * Counts failed logins per username and per client address. Once either has used up its budget
 * within the window, further attempts are refused until the window passes.
 */
export class LoginLimiter {
  private readonly failures: RateLimiterMemory;

  constructor(points: number, windowSeconds: number) {
    this.failures = new RateLimiterMemory({ points, duration: windowSeconds, keyPrefix: 'login-fail' });
  }

  private keys(username: string, address: string): string[] {
    return [`user:${username}`, `addr:${address}`];
  }

  /** Seconds until another attempt is allowed, or 0 when it is allowed now. */
  async retryAfter(username: string, address: string): Promise<number> {
    let wait = 0;
    for (const key of this.keys(username, address)) {
      const res = await this.failures.get(key);
      if (res && res.remainingPoints <= 0) wait = Math.max(wait, Math.ceil(res.msBeforeNext / 1000));
    }
    return wait;
  }

  async recordFailure(username: string, address: string): Promise<void> {
    for (const key of this.keys(username, address)) {
      await this.failures.penalty(key, 1);
    }
  }

  async recordSuccess(username: string): Promise<void> {
    await this.failures.delete(`user:${username}`);
  }
}

