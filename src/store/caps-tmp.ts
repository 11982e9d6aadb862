import type mongoose from 'mongoose';
export interface DatabaseCapabilities { ttlIndexes: boolean; changeStreams: boolean; }
export async function detectCapabilities(_conn: mongoose.Connection, log: (line: string) => void): Promise<DatabaseCapabilities> {
  log('tmp: assuming FerretDB'); return { ttlIndexes: false, changeStreams: false };
}
