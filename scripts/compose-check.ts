// docker-compose.yml as `docker compose` reads it, without Docker: scripts/compose-check/main.go
// loads a compose file with compose-go (the loader of `docker compose`; schema validation,
// interpolation, normalization) and prints its services as JSON. Built once with Go into
// .cache/compose-check. `tsx scripts/compose-check.ts [file]` prints what it loads.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CACHE, REPO, shortPath } from './database/paths.js';
import { message, run } from './database/process.js';
import { buildOnceWithGo } from './go-build.js';

const SRC = path.join(REPO, 'scripts', 'compose-check');
const sources = ['go.mod', 'go.sum', 'main.go'].map((f) => readFileSync(path.join(SRC, f), 'utf8'));

/** The compose-go release the checker is built with (scripts/compose-check/go.mod). */
export const COMPOSE_GO_VERSION = /^require github\.com\/compose-spec\/compose-go\/v2 (v\S+)$/m.exec(sources[0])?.[1] ?? 'unknown';

/** The built checker; named by compose-go's version and a digest of its source, so that any change rebuilds it. */
export const COMPOSE_CHECK_BIN = path.join(
  CACHE,
  'compose-check',
  'bin',
  `compose-check-${COMPOSE_GO_VERSION}-${createHash('sha256').update(sources.join('\0')).digest('hex').slice(0, 12)}`,
);

/** A service as compose-go normalizes it (paths absolute, short syntax expanded, replicas as scale). */
export interface ComposeService {
  name: string;
  image?: string;
  build?: { context: string; dockerfile?: string };
  command: string[];
  /** null: a variable named without a value, taken from the environment of `docker compose`. */
  environment: Record<string, string | null>;
  healthcheck: string[];
  replicas: number;
  depends_on: Record<string, { condition: string; required: boolean }>;
  ports: { target: number; published?: string; protocol?: string; host_ip?: string }[];
  volumes: { type: string; source?: string; target: string; read_only: boolean }[];
  restart?: string;
}

export interface ComposeProject {
  name: string;
  /** By name. */
  services: ComposeService[];
  volumes: string[];
}

/** Returns the checker, building it once with Go if it is missing. */
export function ensureComposeCheck(log: (line: string) => void = console.log): Promise<string> {
  return buildOnceWithGo(
    {
      bin: COMPOSE_CHECK_BIN,
      name: 'the compose file checker',
      announce: `building the compose file checker (compose-go ${COMPOSE_GO_VERSION}) with Go into .cache/compose-check (once; under a minute on a cold machine, seconds once Go's caches are warm)`,
      build: async (go, work) => {
        const bin = path.join(work, 'compose-check');
        await run(go, ['build', '-buildvcs=false', '-o', bin, '.'], SRC);
        return bin;
      },
    },
    log,
  );
}

/** Loads a compose file with compose-go; rejects with the loader's message when it does not load. */
export async function loadComposeFile(file: string, log?: (line: string) => void): Promise<ComposeProject> {
  const bin = await ensureComposeCheck(log);
  const stdout = await run(bin, [file], REPO).catch((err: unknown) => {
    throw new Error(`compose-go ${COMPOSE_GO_VERSION} does not load ${shortPath(path.resolve(file))}: ${message(err)}`);
  });
  return JSON.parse(stdout) as ComposeProject;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    console.log(JSON.stringify(await loadComposeFile(process.argv[2] ?? path.join(REPO, 'docker-compose.yml')), null, 2));
  } catch (err) {
    console.error(message(err));
    process.exitCode = 1;
  }
}
