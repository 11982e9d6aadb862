import fsp from 'node:fs/promises';
import path from 'node:path';
import type { MongoMemoryServer } from 'mongodb-memory-server';
import type { ResolvedDatabase, StartOptions } from './index.js';
import { CACHE, shortPath } from './paths.js';
import { exitOf, freePort, hasExited, message, once, runningPid, supervise, type RunningProcess } from './process.js';
import { DatabaseSetupError } from './setupError.js';
import { redact, withDbName } from './uri.js';

const MONGOD_UNAVAILABLE = path.join(CACHE, 'mongod-unavailable');
const MONGOD_RETRY_MS = 24 * 3600_000;

/** Finds or downloads mongod; a failed download is remembered for 24 h so later starts skip the ~6 s it costs. */
export async function mongodBinary(log: (line: string) => void): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (!process.env.MONGOMS_SYSTEM_BINARY) {
    const known = await fsp.readFile(MONGOD_UNAVAILABLE, 'utf8').then(JSON.parse, () => undefined);
    if (known && Date.now() - Date.parse(known.date) < MONGOD_RETRY_MS) {
      return { ok: false, reason: `unavailable since ${known.date} (${known.error}); retried after 24 h or with MONGOMS_SYSTEM_BINARY` };
    }
  }
  try {
    const { MongoBinary } = await import('mongodb-memory-server');
    await MongoBinary.getPath();
    await fsp.rm(MONGOD_UNAVAILABLE, { force: true });
    return { ok: true };
  } catch (err) {
    const error = message(err).replace(/\s+/g, ' ');
    const reason = `no mongod binary: ${error}`;
    if (!process.env.MONGOMS_SYSTEM_BINARY) {
      await fsp.mkdir(CACHE, { recursive: true });
      await fsp.writeFile(MONGOD_UNAVAILABLE, JSON.stringify({ date: new Date().toISOString(), error }) + '\n');
      log(`embedded mongod unavailable (${error}); remembered in .cache/mongod-unavailable for 24 h`);
    }
    return { ok: false, reason };
  }
}

export async function startMongod(o: StartOptions): Promise<ResolvedDatabase> {
  const { MongoBinary, MongoMemoryReplSet } = await import('mongodb-memory-server');
  // Fail with one clear line rather than the stack trace mongodb-memory-server prints when the download fails.
  await MongoBinary.getPath().catch((err) => {
    throw new DatabaseSetupError(`no mongod binary (${message(err).replace(/\s+/g, ' ')}); set MONGOMS_SYSTEM_BINARY to a local mongod`);
  });
  const dbPath = o.persistent ? path.join(o.dataRoot, 'mongod') : undefined;
  let port: number | undefined;
  if (dbPath) {
    await fsp.mkdir(dbPath, { recursive: true });
    // The replica set config stored in dbPath names host:port, so a persistent set must keep its port.
    const portFile = path.join(o.dataRoot, 'mongod.port');
    port = Number(await fsp.readFile(portFile, 'utf8').catch(() => '')) || (await freePort());
    await fsp.writeFile(portFile, `${port}\n`);
  }
  const rs = await MongoMemoryReplSet.create({
    replSet: { count: 1, name: 'rs0', storageEngine: 'wiredTiger' },
    instanceOpts: [{ dbPath, port, storageEngine: 'wiredTiger' }],
  });
  const uri = withDbName(rs.getUri(), o.dbName);
  const where = dbPath ? `data in ${shortPath(dbPath)}` : 'temporary data';
  const dataDir = rs.servers[0]?.instanceInfo?.dbPath ?? dbPath;
  const member = rs.servers[0]!;
  // Restarted on the same port and dbPath (which holds the replica set's config) when mongod dies.
  const supervisor = supervise(
    mongodProcess(member),
    async () => {
      await member.stop({ doCleanup: false, force: false }); // resets what is left of the dead process (its killer)
      await member.start(true);
      return mongodProcess(member);
    },
    { name: `embedded mongod on port ${member.instanceInfo?.port}`, log: o.log, minDelayMs: o.restartDelayMs },
  );
  return {
    kind: 'mongod',
    uri,
    description: `mongod single-node replica set (${where}) at ${redact(uri)}`,
    dataDir,
    supervisor,
    stop: once(async () => {
      await supervisor.stop();
      await rs.stop({ doCleanup: !o.persistent, force: !o.persistent });
    }),
  };
}

/** The mongod that `member` runs now, for supervise(); stopping it is rs.stop()'s job. */
function mongodProcess(member: MongoMemoryServer): RunningProcess {
  const instance = member.instanceInfo!.instance;
  const child = instance.mongodProcess!;
  const exited = hasExited(child) ? Promise.resolve(`exit code ${child.exitCode ?? child.signalCode}`) : exitOf(child);
  return {
    pid: () => runningPid(child),
    exited,
    stop: async () => {},
  };
}
