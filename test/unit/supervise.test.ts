import { describe, expect, it } from 'vitest';
import { supervise, type RunningProcess } from '../../scripts/database/process.js';

/** A stand-in for a database process: `die()` ends it as a crash would. */
function fakeProcess(pid: number) {
  let die!: (how: string) => void;
  const exited = new Promise<string>((resolve) => (die = resolve));
  let stopped = false;
  const proc: RunningProcess & { die: typeof die; stopped: () => boolean } = {
    pid: () => pid,
    exited,
    stop: async () => {
      stopped = true;
      die('exit code 0');
    },
    die,
    stopped: () => stopped,
  };
  return proc;
}

const until = async (predicate: () => boolean, ms = 2000) => {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 2));
  }
};

describe('supervise (embedded database processes)', () => {
  it('restarts a process that dies, with a delay that doubles up to the maximum, one log line each', async () => {
    const lines: string[] = [];
    const started: Array<{ at: number; proc: ReturnType<typeof fakeProcess> }> = [];
    let attempts = 0;
    const first = fakeProcess(1);
    const supervisor = supervise(
      first,
      async () => {
        attempts++;
        if (attempts === 2) throw new Error('port\nin use'); // a restart that fails is retried after the next delay
        const proc = fakeProcess(100 + attempts);
        started.push({ at: Date.now(), proc });
        return proc;
      },
      { name: 'db', log: (line) => lines.push(line), minDelayMs: 20, maxDelayMs: 80 },
    );
    expect(supervisor.pid()).toBe(1);
    let diedAt = Date.now();
    first.die('signal SIGKILL');
    await until(() => started.length === 1);
    expect(started[0]!.at - diedAt).toBeGreaterThanOrEqual(19);
    expect(supervisor.pid()).toBe(101);

    // Dies young: 40 ms, then the failed attempt, then 80 (the maximum), then 80 again.
    diedAt = Date.now();
    started[0]!.proc.die('exit code 2');
    await until(() => started.length === 2);
    expect(started[1]!.at - diedAt).toBeGreaterThanOrEqual(40 + 80 - 2);
    diedAt = Date.now();
    started[1]!.proc.die('signal SIGSEGV');
    await until(() => started.length === 3);
    expect(started[2]!.at - diedAt).toBeGreaterThanOrEqual(79);
    expect(lines).toEqual([
      'db exited unexpectedly (signal SIGKILL); restarting it in 20 ms (restart 1)',
      'db exited unexpectedly (exit code 2); restarting it in 40 ms (restart 2)',
      'db did not restart (port in use); restarting it in 80 ms (restart 3)',
      'db exited unexpectedly (signal SIGSEGV); restarting it in 80 ms (restart 4)',
    ]);
    expect(supervisor.restarts()).toBe(4);

    await supervisor.stop();
    expect(started[2]!.proc.stopped()).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(started).toHaveLength(3); // a stopped process is not restarted
    expect(lines).toHaveLength(4);
  });

  it('stop() during the delay before a restart restarts nothing', async () => {
    const first = fakeProcess(1);
    let restarts = 0;
    const supervisor = supervise(first, async () => (restarts++, fakeProcess(2)), { name: 'db', log: () => {}, minDelayMs: 50 });
    first.die('signal SIGKILL');
    await new Promise((r) => setTimeout(r, 10));
    expect(supervisor.pid()).toBeUndefined();
    expect(supervisor.kill()).toBe(false);
    await supervisor.stop();
    await new Promise((r) => setTimeout(r, 80));
    expect(restarts).toBe(0);
  });
});
