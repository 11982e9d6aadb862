// vitest globalSetup: one database for the whole run, handed to the test files as inject('mongoUri').
import type { TestProject } from 'vitest/node';
import { resolveDatabase } from '../scripts/database.js';

declare module 'vitest' {
  export interface ProvidedContext {
    mongoUri: string;
    dbKind: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Throws when no database can be started: CI must fail then, not skip.
  const db = await resolveDatabase({
    persistent: false,
    dbName: 'sessions_test', // with MONGODB_URI naming no database, never touch the real 'sessions'
    log: (line) => console.log(`[database] ${line}`),
  });
  console.log(`[database] ${db.description}`);
  project.provide('mongoUri', db.uri);
  project.provide('dbKind', db.kind);
  return () => db.stop();
}
