import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import net from 'node:net';

export type Claim = { ok: true; release(): Promise<void> } | { ok: false; owner: number | undefined };

/**
 * Makes this process the owner of `dir` (which must exist) until `release()` or until it ends in
 * any way, SIGKILL included: it listens on a Linux abstract Unix socket named after the directory,
 * which the kernel frees with the process, so no stale mark is left and no reused pid is mistaken
 * for the owner. The socket answers a connection with the owner's pid, so that a process refused
 * can name it. Elsewhere than Linux nothing is held.
 */
export async function claimDirectory(dir: string): Promise<Claim> {
  if (process.platform !== 'linux') return { ok: true, release: async () => {} };
  const name = `\0graphql-expiring-sessions-${createHash('sha256').update(realpathSync(dir)).digest('hex').slice(0, 32)}`;
  const server = net.createServer((socket) => socket.end(String(process.pid)));
  const listening = await new Promise<boolean>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(false) : reject(err)));
    server.listen(name, () => resolve(true));
  });
  if (!listening) return { ok: false, owner: await ownerOf(name) };
  server.unref();
  return { ok: true, release: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** The pid the owner's socket answers with; undefined when it does not answer within 2 s (stopped, say). */
function ownerOf(name: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = net.connect(name);
    socket.setTimeout(2_000, () => socket.destroy());
    socket.on('data', (chunk) => (answer += String(chunk)));
    socket.on('error', () => {});
    socket.on('close', () => resolve(Number(answer) || undefined));
  });
}
