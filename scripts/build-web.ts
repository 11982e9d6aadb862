/**
 * Bundles the browser pages (web/) into dist/web/ with esbuild: the frontend (app.js, app.css) and
 * GraphiQL with React and CodeMirror (graphiql.js, graphiql.css). Nothing is loaded from a CDN, so
 * both pages work on an offline machine. Runs before `npm start` and `npm test`: a second or two,
 * nothing at all when the bundles are newer than their sources.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const WEB_OUT_DIR = path.join(root, 'dist', 'web');

const OUTPUTS = ['app.js', 'app.css', 'graphiql.js', 'graphiql.css'].map((f) => path.join(WEB_OUT_DIR, f));

function newestInput(): number {
  const files = [path.join(root, 'package-lock.json'), fileURLToPath(import.meta.url)];
  for (const entry of readdirSync(path.join(root, 'web'), { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) files.push(path.join(entry.parentPath, entry.name));
  }
  return Math.max(...files.map((f) => statSync(f).mtimeMs));
}

export function webBuildIsFresh(): boolean {
  if (!OUTPUTS.every((f) => existsSync(f))) return false;
  return Math.min(...OUTPUTS.map((f) => statSync(f).mtimeMs)) > newestInput();
}

export async function buildWeb({ quiet = false, force = false } = {}): Promise<void> {
  if (!force && webBuildIsFresh()) {
    if (!quiet) console.log('web pages in dist/web are up to date');
    return;
  }
  const started = Date.now();
  await build({
    entryPoints: {
      app: path.join(root, 'web/app/main.ts'),
      graphiql: path.join(root, 'web/graphiql/main.tsx'),
    },
    outdir: WEB_OUT_DIR,
    bundle: true,
    format: 'esm',
    splitting: false,
    minify: true,
    sourcemap: 'linked',
    target: ['chrome111', 'firefox111', 'safari16'],
    jsx: 'automatic',
    // React and graphql-js pick their production builds from this.
    define: { 'process.env.NODE_ENV': '"production"' },
    loader: { '.woff': 'file', '.woff2': 'file', '.ttf': 'file', '.svg': 'dataurl', '.png': 'dataurl' },
    logLevel: 'warning',
  });
  if (!quiet) console.log(`web pages built into ${path.relative(process.cwd(), WEB_OUT_DIR) || '.'} in ${Date.now() - started} ms`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  buildWeb({ force: process.argv.includes('--force') }).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
