// `npm run start:cluster` (scripts/cluster.ts) that cannot start, or that another one would disturb:
// one clear line naming the cause and exit code 1, no stack trace (which is for bugs); and no
// HAProxy outliving the command. Needs HAProxy: skipped with a warning without it, except under CI=true.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findHaproxy } from '../../scripts/cluster/haproxy.js';
import { canConnect, freePort } from '../../scripts/database/process.js';
import { sleep, testDatabaseUri } from '../helpers/server.js';
import { SERVER_PROCESS_TEST_ENV } from '../helpers/serverProcess.js';

const haproxy = findHaproxy();
const ci = ['1', 'true'].includes(String(process.env.CI ?? '').toLowerCase());
if (!haproxy && !ci) console.warn('cluster start tests skipped: HAProxy is not installed (apt-get install haproxy)');
const runIf = haproxy || ci ? describe : describe.skip;

const STACK_FRAME = /^\s+at .+[(:]\d+/m;

interface Command {
  child: ChildProcess;
  output: () => string;
  /** Resolves with the exit code once the command has exited. */
  exited: Promise<number | null>;
  /** Resolves true once the command printed its URLs, false if it exited first. */
  ready: Promise<boolean>;
}

runIf('npm run start:cluster', { timeout: 90_000 }, () => {
  const dirs: string[] = [];
  const commands: Command[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cluster-start-test-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(async () => {
    for (const { child, exited } of commands) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    }
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  /** scripts/cluster.ts with one API process on a fresh test database, `env` on top. */
  function cluster(env: Record<string, string>): Command {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/cluster.ts'], {
      env: { PATH: process.env.PATH, ...SERVER_PROCESS_TEST_ENV, MONGODB_URI: testDatabaseUri(), WORKERS: '1', HOST: '127.0.0.1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (chunk) => (output += String(chunk)));
    child.stderr!.on('data', (chunk) => (output += String(chunk)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const ready = new Promise<boolean>((resolve) => {
      child.stdout!.on('data', () => /GraphQL API:/.test(output) && resolve(true));
      void exited.then(() => resolve(false));
    });
    const command = { child, output: () => output, exited, ready };
    commands.push(command);
    return command;
  }

  /** Exits 1 within `ms`, having printed lines that match `says` (and nothing else but the API processes' JSON logs). */
  async function expectRefusal(command: Command, says: RegExp | RegExp[], ms = 30_000): Promise<void> {
    const code = await Promise.race([command.exited, sleep(ms).then(() => 'still running')]);
    const lines = command.output().trim().split('\n').filter((line) => !line.startsWith('{'));
    expect(code, command.output()).toBe(1);
    expect(lines, command.output()).toEqual([says].flat().map((line) => expect.stringMatching(line)));
    expect(command.output(), 'no stack trace').not.toMatch(STACK_FRAME);
  }

  it('refuses a second cluster on the CLUSTER_DIR of one that runs, naming it, and leaves the first alone', async () => {
    // The second killed the first's HAProxy as a "leftover" and overwrote its config, which the first then ran on.
    const dir = tempDir();
    const port = await freePort();
    const first = cluster({ CLUSTER_DIR: dir, PORT: String(port) });
    expect(await first.ready, first.output()).toBe(true);
    const config = readFileSync(path.join(dir, 'haproxy.cfg'), 'utf8');

    const second = cluster({ CLUSTER_DIR: dir, PORT: String(await freePort()) });
    await expectRefusal(second, new RegExp(`^CLUSTER_DIR \\(${dir}\\) is in use by another cluster \\(pid ${first.child.pid}\\)`));
    expect(readFileSync(path.join(dir, 'haproxy.cfg'), 'utf8')).toBe(config);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    expect(first.output()).not.toMatch(/HAProxy .* restarting it/);
  });

  it('refuses a PORT another program holds, at once, before starting anything', async () => {
    // HAProxy could not bind and was restarted every 5 s for good, while the start-up check, asking
    // the port, took this program's answers for the cluster's and printed it ready.
    const other = http.createServer((_req, res) => res.end('{"ok":true,"database":"reachable"}'));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const { port } = other.address() as AddressInfo;
    try {
      const command = cluster({ CLUSTER_DIR: tempDir(), PORT: String(port) });
      await expectRefusal(command, new RegExp(`^Cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use`), 15_000);
      expect(command.output(), 'no API process started').not.toMatch(/^\{/m);
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });

  it('leaves no HAProxy behind when the command is killed by SIGKILL', async () => {
    // It kept the port, answering 503 for good, after the API processes and the database had gone.
    const port = await freePort();
    const command = cluster({ CLUSTER_DIR: tempDir(), PORT: String(port) });
    expect(await command.ready, command.output()).toBe(true);
    command.child.kill('SIGKILL');
    await command.exited;
    await expect.poll(() => canConnect(port), { timeout: 5_000 }).toBe(false);
  });

  it('refuses PORT=0, an empty CLUSTER_DIR and WORKERS not written in decimal, naming the variable', async () => {
    // HAProxy failed on "invalid port '0'" and mkdir on '', each followed by a stack trace.
    await expectRefusal(cluster({ CLUSTER_DIR: tempDir(), PORT: '0' }), /^PORT=0 .*set PORT to a port number/);
    await expectRefusal(cluster({ CLUSTER_DIR: '', PORT: String(await freePort()) }), /^CLUSTER_DIR is empty/);
    // Read as 2, where every other setting refuses 0x10.
    await expectRefusal(cluster({ CLUSTER_DIR: tempDir(), PORT: String(await freePort()), WORKERS: '0x2' }), /^WORKERS must be an integer from 1 to 64, got "0x2"/);
  });

  it('says which API process did not start, and why, without a stack trace', async () => {
    // As with too many WORKERS for the machine ("api1 did not start within 60 s"), it printed a stack.
    const command = cluster({ CLUSTER_DIR: tempDir(), PORT: String(await freePort()), MONGODB_URI: 'mongodb://127.0.0.1:1/x?serverSelectionTimeoutMS=500' });
    await expectRefusal(command, [/^Cannot reach the database at mongodb:\/\/127\.0\.0\.1:1\/x \(MONGODB_URI\)/, /^api1 exited \(exit code 1\) before it was ready$/]);
  });
});
