/**
 * The API server under test, alone in its process (so its RSS is its own). Configured by the
 * environment like `npm start`; BENCH_MONGODB_URI names the database.
 *
 * Instrumentation (read-only, nothing in src/ changes): the expiry re-check's database work is
 * timed by wrapping the session service's `expireDue` on this instance, subscriptions are counted as the
 * hub takes them (`hub.subscribe`), and the event loop's delay is
 * sampled, so the report can say where the time between a deadline and its event goes. Log
 * lines are counted by message rather than printed. With BENCH_DB_COMMANDS=1 the driver's command
 * monitoring tallies the database commands (count and time, by command and collection).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { Session as Inspector } from 'node:inspector/promises';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import mongoose from 'mongoose';
import { pino } from 'pino';
import { loadSettings } from '../src/config.js';
import { startServer } from '../src/server/app.js';
import { addCommands, countSubscriptions, serve, type CommandTally } from './ipc.js';

const settings = loadSettings(process.env);
/** The server's log lines, counted by message (and shown with BENCH_VERBOSE=1). */
let logCounts: Record<string, number> = {};
const sink = new Writable({
  write(chunk, _encoding, done) {
    const msg = /"msg":"([^"]*)"/.exec(String(chunk))?.[1] ?? String(chunk).slice(0, 80);
    logCounts[msg] = (logCounts[msg] ?? 0) + 1;
    if (process.env.BENCH_VERBOSE) process.stderr.write(chunk);
    done();
  },
});
const logger = pino({ level: settings.logLevel }, sink);
const monitorCommands = Boolean(process.env.BENCH_DB_COMMANDS);
const mongoUri = process.env.BENCH_MONGODB_URI!;
const server = await startServer({ settings, mongoUri: monitorCommands ? `${mongoUri}${mongoUri.includes('?') ? '&' : '?'}monitorCommands=true` : mongoUri, logger });

/** Database commands since resetStats, by "command collection": how many, and their time in ms. */
let commands: CommandTally = {};
if (monitorCommands) {
  const started = new Map<number, string>();
  for (const conn of mongoose.connections) {
    const client = conn.getClient() as ReturnType<typeof conn.getClient> | undefined; // none on the unused default connection
    if (!client) continue;
    client.on('commandStarted', (e) => started.set(e.requestId, `${e.commandName} ${String(e.command[e.commandName] ?? '')}`));
    client.on('commandSucceeded', (e) => {
      const key = started.get(e.requestId) ?? e.commandName;
      started.delete(e.requestId);
      addCommands(commands, key, 1, e.duration);
    });
    client.on('commandFailed', (e) => started.delete(e.requestId));
  }
}

/**
 * Expiry re-checks: how many were sent, and for each answer how long the database took and for how
 * many sessions. The re-check's database work is `expireDue` (the commit that ends the sessions
 * due, and the reads of those another writer got first).
 */
let rechecks = { sent: 0, answered: [] as Array<{ ms: number; sessions: number }> };
const expireDue = server.service.expireDue.bind(server.service);
server.service.expireDue = async (sessions) => {
  const at = Date.now();
  const into = rechecks;
  into.sent++;
  const found = await expireDue(sessions);
  into.answered.push({ ms: Date.now() - at, sessions: sessions.length });
  return found;
};

/** Subscriptions in place: the subscribe resolver has handed them to the hub, which follows them from then on. */
const subscribed = countSubscriptions(server.hub);

const loopDelay = monitorEventLoopDelay({ resolution: 5 });
loopDelay.enable();

/** With BENCH_CPU_PROF=dir: a V8 CPU profile from resetStats (just before the first deadline) to stats (after the last event). */
const profileDir = process.env.BENCH_CPU_PROF;
const inspector = profileDir ? new Inspector() : null;
async function startProfile() {
  if (!inspector) return;
  inspector.connect();
  await inspector.post('Profiler.enable');
  await inspector.post('Profiler.start');
}
async function writeProfile() {
  if (!inspector) return;
  const { profile } = await inspector.post('Profiler.stop');
  await mkdir(profileDir!, { recursive: true });
  await writeFile(path.join(profileDir!, `expiry-${Date.now()}-${process.pid}.cpuprofile`), JSON.stringify(profile));
  inspector.disconnect();
}

serve({
  url: () => server.url,
  subscribed,
  /** Collects garbage, then tells the memory in use. */
  gc: () => {
    globalThis.gc?.();
    return process.memoryUsage();
  },
  resetStats: async () => {
    rechecks = { sent: 0, answered: [] };
    logCounts = {};
    commands = {};
    loopDelay.reset();
    await startProfile();
  },
  stats: async () => (await writeProfile(), {
    rechecks,
    logCounts,
    commands,
    loopDelayMs: { p50: loopDelay.percentile(50) / 1e6, p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
  }),
  exit: () => server.stop(),
});
