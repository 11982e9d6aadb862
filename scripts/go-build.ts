// Binaries built once with Go into .cache/ (FerretDB, the compose file checker): the name of the
// binary says what it was built from, so a changed version or source builds a new one and an
// existing one is used as it is.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { REPO } from './database/paths.js';
import { run } from './database/process.js';

export interface GoBuild {
  /** Where the binary goes, e.g. .cache/ferretdb/bin/ferretdb-v1.24.2-p1; scratch directories go beside its directory. */
  bin: string;
  /** What is built, for the error when Go is missing ("FerretDB"). */
  name: string;
  /** The one line logged before a build. */
  announce: string;
  /** Builds in the scratch directory `work` with the Go command `go`, resolving with the built binary's path. */
  build: (go: string, work: string) => Promise<string>;
}

/** Returns `bin`, building it once with Go if it is missing. */
export async function buildOnceWithGo(b: GoBuild, log: (line: string) => void = console.log): Promise<string> {
  if (await fsp.access(b.bin, fs.constants.X_OK).then(() => true, () => false)) return b.bin;
  const go = await findGo(b.name);
  log(b.announce);
  await fsp.mkdir(path.dirname(b.bin), { recursive: true });
  const work = await fsp.mkdtemp(path.join(path.dirname(path.dirname(b.bin)), 'build-'));
  try {
    const built = await b.build(go, work);
    await fsp.rename(built, b.bin); // atomic: concurrent builds never expose a partial binary
    return b.bin;
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

async function findGo(name: string): Promise<string> {
  for (const go of ['go', '/usr/local/go/bin/go']) {
    if (await run(go, ['version'], REPO).then(() => true, () => false)) return go;
  }
  throw new Error(`Go is not installed (https://go.dev/dl/); it is needed once to build ${name}`);
}
