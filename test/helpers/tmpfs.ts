import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A small file system of its own, to fill. */
export interface Tmpfs {
  dir: string;
  /** Takes every byte left, with one file of zeros. */
  fill(): Promise<void>;
  /** Deletes that file. */
  free(): Promise<void>;
  unmount(): Promise<void>;
}

/** A tmpfs of `size` (mount's notation: '8m') on a fresh directory, or why none can be mounted here (mount needs root). */
export async function mountTmpfs(size: string): Promise<Tmpfs | string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'sessions-tmpfs-'));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  } catch (err) {
    await fsp.rmdir(dir);
    const { stderr, message } = err as { stderr?: string; message: string };
    return `no tmpfs can be mounted here (needs root): ${(stderr || message).trim().split('\n')[0]}`;
  }
  const filler = path.join(dir, 'filler');
  return {
    dir,
    async fill() {
      const file = await fsp.open(filler, 'a');
      const chunk = Buffer.alloc(64 * 1024);
      try {
        for (;;) await file.write(chunk);
      } catch (err) {
        if ((err as { code?: string }).code !== 'ENOSPC') throw err;
      } finally {
        await file.close();
      }
    },
    free: () => fsp.rm(filler, { force: true }),
    async unmount() {
      await run('umount', [dir]);
      await fsp.rmdir(dir);
    },
  };
}
