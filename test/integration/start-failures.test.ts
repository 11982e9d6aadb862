// `npm start` that cannot start for a reason outside the code (a setting, the port, the database):
// it says what is wrong in a few lines, naming the variable, and exits 1; no stack trace, which is
// for bugs. Before, most of these printed one or two stack traces (and 36 lines of driver state).
// And `npm start` stopped by a signal sent to npm alone (as a process manager sends it).
import { spawn } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { FaultProxy } from '../helpers/faultProxy.js';
import { sleep, testDatabaseUri } from '../helpers/server.js';

interface Outcome {
  code: number | null;
  output: string;
}

/** `scripts/start.ts` with `env` on top of a quiet test environment; its exit code and everything it printed. */
function start(env: Record<string, string | undefined>): Promise<Outcome> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
    env: { PATH: process.env.PATH, NODE_ENV: 'test', LOG_LEVEL: 'warn', PASSWORD_HASH_COST: '10', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += String(chunk)));
  child.stderr.on('data', (chunk) => (output += String(chunk)));
  const killer = setTimeout(() => child.kill('SIGKILL'), 40_000);
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, output });
    }),
  );
}

const STACK_FRAME = /^\s+at .+[(:]\d+/m;
/** A stack inside a JSON log line, its newlines escaped. */
const LOGGED_STACK_FRAME = /\\n\s+at .+[(:]\d+/;

function expectClearFailure({ code, output }: Outcome, says: RegExp): void {
  expect(code, output).toBe(1);
  expect(output).toMatch(says);
  expect(output, 'no stack trace').not.toMatch(STACK_FRAME);
  expect(output, 'no stack trace in the log').not.toMatch(LOGGED_STACK_FRAME);
  expect(output.trim().split('\n').length, output).toBeLessThanOrEqual(6);
}

describe('npm start that cannot start', { timeout: 60_000 }, () => {
  let taken: net.Server;
  let takenPort: number;
  beforeAll(async () => {
    taken = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    takenPort = (taken.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => taken.close(() => resolve())));

  it('names a setting it refuses', async () => {
    expectClearFailure(await start({ MONGODB_URI: testDatabaseUri(), PORT: 'abc' }), /PORT: expected a decimal number/);
  });

  it('says that its port is in use', async () => {
    expectClearFailure(await start({ MONGODB_URI: testDatabaseUri(), HOST: '127.0.0.1', PORT: String(takenPort) }), new RegExp(`127\\.0\\.0\\.1:${takenPort}.*in use.*PORT`));
  });

  it('refuses an empty MONGODB_URI or SESSIONS_EMBEDDED_DB rather than taking it for unset (a missing variable in a compose file)', async () => {
    expectClearFailure(await start({ MONGODB_URI: '' }), /MONGODB_URI: empty/);
    expectClearFailure(await start({ MONGODB_URI: ' ' }), /MONGODB_URI: empty/);
    expectClearFailure(await start({ SESSIONS_EMBEDDED_DB: '' }), /SESSIONS_EMBEDDED_DB is empty/);
  });

  it('says that HOST is not an address of this machine', async () => {
    expectClearFailure(await start({ MONGODB_URI: testDatabaseUri(), HOST: 'no-such-host.invalid' }), /HOST=no-such-host\.invalid/);
  });

  it('says that MONGODB_URI is not a MongoDB URI, or names no server that answers', async () => {
    expectClearFailure(await start({ MONGODB_URI: 'not-a-uri' }), /MONGODB_URI must start with mongodb:\/\//);
    expectClearFailure(await start({ MONGODB_URI: 'mongodb://127.0.0.1:1/x?serverSelectionTimeoutMS=2000' }), /Cannot reach the database at mongodb:\/\/127\.0\.0\.1:1\/x \(MONGODB_URI\)/);
  });

  it('says that a mongodb+srv:// MONGODB_URI names no host that resolves', async () => {
    // It printed the resolver's querySrv ENOTFOUND error with its stack, and no "Cannot reach" line.
    expectClearFailure(await start({ MONGODB_URI: 'mongodb+srv://nonexistent.invalid/x' }), /^Cannot reach the database at mongodb\+srv:\/\/nonexistent\.invalid\/x \(MONGODB_URI\): querySrv ENOTFOUND/m);
  });

  it('says that SESSIONS_EMBEDDED_DB=mongod has no mongod binary', async () => {
    expectClearFailure(await start({ SESSIONS_EMBEDDED_DB: 'mongod', MONGOMS_SYSTEM_BINARY: '/nonexistent/mongod' }), /no mongod binary .*set MONGOMS_SYSTEM_BINARY/);
  });

  it('names SESSIONS_EMBEDDED_DB when it is not a kind it knows', async () => {
    expectClearFailure(await start({ SESSIONS_EMBEDDED_DB: 'bogus' }), /SESSIONS_EMBEDDED_DB must be one of/);
  });
});

/** `command` started with `env`, once it has printed its API's URL; `output()`: what it printed so far. */
async function serving(command: string, args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stderr.on('data', (chunk) => (output += String(chunk)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      output += String(chunk);
      const found = /GraphQL API: +(http:\S+)/.exec(output);
      if (found) resolve(found[1]!);
    });
    child.on('exit', () => reject(new Error(`${command} exited before it was ready:\n${output}`)));
  });
  return { child, url, output: () => output };
}

const SERVING_ENV = { NODE_ENV: 'test', LOG_LEVEL: 'warn', PASSWORD_HASH_COST: '10', HOST: '127.0.0.1', PORT: '0' };

describe('npm start told its terminal has closed (SIGHUP)', { timeout: 60_000 }, () => {
  it('stops gracefully, as on SIGTERM: its websockets close with 1001, not 1006', async () => {
    const { child: server, url, output } = await serving(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
      PATH: process.env.PATH,
      ...SERVING_ENV,
      MONGODB_URI: testDatabaseUri(),
    });
    const ws = new WebSocket(url.replace(/^http/, 'ws'), 'graphql-transport-ws');
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    const closed = new Promise<number>((resolve) => ws.once('close', resolve));
    const exited = new Promise<number | null>((resolve) => server.on('exit', resolve));
    server.kill('SIGHUP');
    expect(await closed).toBe(1001);
    expect(await exited, output()).toBe(0);
  });
});

describe('npm start told twice to stop', { timeout: 60_000 }, () => {
  it('stops at once on the second signal while a database that does not answer holds up its graceful stop', async () => {
    const proxy = await FaultProxy.start(testDatabaseUri());
    try {
      const { child: server, output } = await serving(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
        PATH: process.env.PATH,
        ...SERVING_ENV,
        MONGODB_URI: proxy.uri,
      });
      const exited = new Promise<number | null>((resolve) => server.on('exit', resolve));
      proxy.silence();
      server.kill('SIGTERM');
      expect(await Promise.race([exited, sleep(1_000).then(() => 'stopping')]), output()).toBe('stopping');
      server.kill('SIGTERM');
      expect(await Promise.race([exited, sleep(2_000).then(() => 'still stopping')]), output()).toBe(1);
    } finally {
      await proxy.close();
    }
  });
});

describe('npm start stopped with SIGTERM sent to npm alone', { timeout: 90_000 }, () => {
  it('stops the server too, instead of leaving it serving under init', async () => {
    // npm ran `sh -c "tsx scripts/start.ts"`: the shell died of the signal and passed it to nobody.
    const { child: npm, url } = await serving('npm', ['start'], { ...process.env, ...SERVING_ENV, MONGODB_URI: testDatabaseUri() });
    const livez = url.replace(/\/graphql$/, '/livez');
    expect((await fetch(livez)).status).toBe(200);
    const exited = new Promise((resolve) => npm.on('exit', resolve));
    npm.kill('SIGTERM');
    await exited;
    await expect.poll(() => fetch(livez).then(() => 'serving', () => 'gone'), { timeout: 10_000 }).toBe('gone');
  });
});
