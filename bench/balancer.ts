/**
 * The balancer tier of the cluster scenarios: K HAProxy processes on one port, each with the config
 * `npm run start:cluster` generates (scripts/cluster/haproxy.ts) over the same server processes.
 *
 * Why several: a proxied websocket holds two file descriptors in HAProxy, and no process may open
 * more than 20 000 here (a hard limit even root cannot raise), so one HAProxy holds under 10 000
 * websockets. HAProxy binds with SO_REUSEPORT on Linux, so K of them can listen on one port and
 * the kernel spreads incoming connections over them (by a hash of the addresses and ports, so
 * unevenly by a few percent: each gets a `maxconn` with room above its share).
 *
 * The tier listens on one loopback address per load process (127.0.0.2, 127.0.0.3, …): the
 * connections from one source address to one destination can use only ~28 000 source ports
 * (ip_local_port_range). The load processes must not bind source addresses of their own instead:
 * the kernel does not hand a port bound explicitly to a `connect`, so HAProxy's own connections to
 * the servers would run out of ports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findHaproxy, haproxyConfig } from '../scripts/cluster/haproxy.js';
import { freePort, hasExited } from '../scripts/database/process.js';

/** Connections one HAProxy process accepts: 2 fds each, plus a margin for listeners, checks and logs, under the 20 000-fd limit. */
export const HAPROXY_MAXCONN = 9000;
/** Instances enough that each one's share of `sockets` stays at 5/6 of its maxconn at most. */
export const haproxyInstances = (sockets: number) => Math.max(2, Math.ceil((1.2 * sockets) / HAPROXY_MAXCONN));

export interface Balancer {
  /** http://127.0.0.K:PORT/graphql, one for each address it listens on. */
  urls: string[];
  pids: number[];
  /** The connections each instance proxies now: the file descriptors it opened since it started, 2 per connection. */
  connections(): number[];
  /** What the instances printed (warnings, alerts), each line prefixed with its instance. */
  output: string[];
  stop(): Promise<void>;
}

/** Starts `instances` HAProxy processes in front of the `servers` (their URLs), listening on `addresses` loopback addresses. */
export async function startBalancer(servers: string[], instances: number, addresses: number, log: (line: string) => void): Promise<Balancer> {
  const bin = findHaproxy();
  if (!bin) throw new Error('HAProxy is not installed (Debian: `apt-get install haproxy`; or set HAPROXY_BIN)');
  const port = await freePort();
  const hosts = Array.from({ length: addresses }, (_, k) => `127.0.0.${2 + k}`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-haproxy-'));
  const config = path.join(dir, 'haproxy.cfg');
  writeFileSync(
    config,
    haproxyConfig({
      bind: hosts.map((host) => ({ host, port })),
      servers: servers.map((url, i) => ({ name: `s${i + 1}`, host: new URL(url).hostname, port: Number(new URL(url).port) })),
      maxconn: HAPROXY_MAXCONN,
    }),
  );
  const output: string[] = [];
  const procs: ChildProcess[] = [];
  const killAll = () => procs.forEach((p) => p.kill('SIGKILL'));
  process.once('exit', killAll);
  const exits = Array.from({ length: instances }, (_, i) => {
    const proc = spawn(bin, ['-db', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    procs.push(proc);
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      for (const line of chunk.split('\n').filter(Boolean)) {
        output.push(`haproxy ${i + 1}: ${line}`);
        // Servers marked down and up (busy servers miss health checks) are counted in the report, not logged one by one.
        if (!/Server \S+ is (UP|DOWN)|has no server available/.test(line)) log(`  haproxy ${i + 1}: ${line}`);
      }
    });
    return new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  });
  const stop = async () => {
    for (const p of procs) if (!hasExited(p)) p.kill('SIGTERM');
    await Promise.all(exits);
    process.removeListener('exit', killAll);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await untilAllListen(procs, port);
  } catch (err) {
    await stop();
    throw err;
  }
  const openFds = () => procs.map((p) => readdirSync(`/proc/${p.pid}/fd`).length);
  const atStart = openFds();
  return {
    urls: hosts.map((host) => `http://${host}:${port}/graphql`),
    pids: procs.map((p) => p.pid!),
    connections: () => openFds().map((fds, i) => Math.max(0, Math.round((fds - atStart[i]!) / 2))),
    output,
    stop,
  };
}

/** Resolves once every instance has bound the port (a listening socket among its fds' inodes; the same for each address). */
async function untilAllListen(procs: ChildProcess[], port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const exited = procs.findIndex(hasExited);
    if (exited >= 0) throw new Error(`HAProxy instance ${exited + 1} exited at start; see its output above`);
    const listening = listeningInodes(port);
    if (procs.every((p) => socketInodes(p.pid!).some((inode) => listening.has(inode)))) return;
    if (Date.now() > deadline) throw new Error(`not every HAProxy instance listens on port ${port} after 10 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Inodes of the sockets listening on `port` (state 0A in /proc/net/tcp). */
function listeningInodes(port: number): Set<string> {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const rows = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/));
  return new Set(rows.filter((f) => f[1]?.endsWith(hexPort) && f[3] === '0A').map((f) => f[9]!));
}

function socketInodes(pid: number): string[] {
  const fdDir = `/proc/${pid}/fd`;
  return readdirSync(fdDir).flatMap((fd) => {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(path.join(fdDir, fd)))?.[1];
      return inode ? [inode] : [];
    } catch {
      return []; // closed meanwhile
    }
  });
}
