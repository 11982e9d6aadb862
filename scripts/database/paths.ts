import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CACHE = path.join(REPO, '.cache');

export function shortPath(p: string): string {
  const rel = path.relative(REPO, p);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
}
