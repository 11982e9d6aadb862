import { DatabaseSetupError } from './setupError.js';

/** Adds /<dbName> to a mongodb:// URI that names no database. */
export function withDbName(uri: string, dbName: string): string {
  const m = /^(mongodb(?:\+srv)?:\/\/[^/?#]*)(\/[^?#]*)?(.*)$/.exec(uri);
  if (!m) throw new DatabaseSetupError('MONGODB_URI must start with mongodb:// or mongodb+srv://');
  const [, hosts, dbPath, rest] = m;
  return dbPath && dbPath !== '/' ? uri : `${hosts}/${dbName}${rest}`;
}

/** Drops user info and query options (which may hold secrets). */
export function redact(uri: string): string {
  return uri.replace(/\/\/[^/?#]*@/, '//').replace(/[?#].*$/, '');
}

/** The Unix socket a mongodb:// URI names as its host (the embedded FerretDB's), or null. */
export function unixSocketOf(uri: string): string | null {
  const host = decodeURIComponent(new URL(uri).host);
  return host.startsWith('/') ? host : null;
}
