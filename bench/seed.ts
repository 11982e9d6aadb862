/**
 * The benchmark's sessions, written straight into the database before the API processes start:
 * logging 50 000 sessions in through the API (a password hash and the login limits' writes each)
 * would take longer than the whole measurement, and logins are not what is measured. Each session
 * document is the one a login writes (src/sessions/service.ts `login`, src/store/sessionStore.ts
 * `create`): an id and token from auth/tokens.ts, an expiry `{ at }` made by the login's own
 * parseExpiry and computeExpiry, version 1. `checkSeededShape` compares one with a session logged
 * in through the API, so a change of that shape in src/ fails the bench instead of skewing it.
 */
import mongoose from 'mongoose';
import { newSessionToken } from '../src/auth/tokens.js';
import { PasswordHasher } from '../src/auth/passwords.js';
import { loadSettings } from '../src/config.js';
import { computeExpiry, parseExpiry } from '../src/expiry/rules.js';
import { createModels } from '../src/store/models.js';
import { UserStore } from '../src/store/userStore.js';
import { gql, REGISTER } from './graphql.js';
import { BENCH_SERVER_ENV } from './ipc.js';

const BATCH = 1000;
const PASSWORD = 'benchmark-password';
const USER_AGENT = 'expiry-latency bench';

/** Writes one user and a session expiring at each of `deadlines` into the database at `uri`; returns their tokens. */
export async function seedSessions(uri: string, deadlines: number[]): Promise<string[]> {
  const conn = await mongoose.createConnection(uri).asPromise();
  try {
    const models = createModels(conn);
    // The indexes the server would build at start-up, built on an empty collection instead.
    await Promise.all([models.User.init(), models.Session.init()]);
    const { expiry, passwordHashCost } = loadSettings({ ...process.env, ...BENCH_SERVER_ENV });
    const now = new Date();
    const user = await new UserStore(models).create(`bench_${now.getTime().toString(36)}`, await new PasswordHasher(passwordHashCost).hash(PASSWORD), now);
    const userId = new mongoose.Types.ObjectId(user!.id);
    const tokens: string[] = [];
    for (let from = 0; from < deadlines.length; from += BATCH) {
      const docs = deadlines.slice(from, from + BATCH).map((deadline) => {
        const id = new mongoose.Types.ObjectId();
        const { token, secretHash } = newSessionToken(id.toHexString());
        tokens.push(token);
        const e = computeExpiry(parseExpiry({ date: new Date(deadline) }, now, expiry), now, now, expiry);
        return {
          _id: id,
          userId,
          secretHash,
          createdAt: e.createdAt,
          lastSavedAt: e.lastSavedAt,
          expiresAt: e.expiresAt,
          policy: e.spec.policy,
          policySeconds: e.spec.seconds,
          policyDate: e.spec.date,
          limitedBy: e.limitedBy,
          endedAt: null,
          endReason: null,
          version: 1,
          updatedAt: now,
          userAgent: USER_AGENT,
          clientAddress: '127.0.0.1',
        };
      });
      await models.Session.insertMany(docs, { lean: true });
    }
    return tokens;
  } finally {
    await conn.close();
  }
}

/** Each field of a stored document with its BSON type (as the driver reads it back). */
const fieldTypes = (doc: Record<string, unknown>) =>
  Object.entries(doc)
    .map(([k, v]) => `${k}:${v === null ? 'null' : v instanceof Date ? 'date' : v instanceof mongoose.mongo.ObjectId ? 'objectId' : typeof v}`)
    .sort()
    .join(', ');

/**
 * Registers a user and logs one session in through the API at `url`, then checks that its stored
 * document has the same fields, of the same types, as the seeded session `token` names.
 */
export async function checkSeededShape(uri: string, url: string, token: string): Promise<void> {
  const username = `bench_check_${Date.now().toString(36)}`;
  const headers = { 'user-agent': USER_AGENT };
  await gql(url, REGISTER, { u: username, p: PASSWORD }, headers);
  const at = new Date(Date.now() + 3600_000).toISOString();
  const { login } = await gql<{ login: { session: { id: string } } }>(
    url,
    'mutation($u: String!, $p: String!, $at: DateTimeISO!) { login(username: $u, password: $p, expiry: { at: $at }) { session { id } } }',
    { u: username, p: PASSWORD, at },
    headers,
  );
  const conn = await mongoose.createConnection(uri).asPromise();
  try {
    const sessions = conn.db!.collection('sessions');
    const byId = (id: string) => sessions.findOne({ _id: new mongoose.Types.ObjectId(id) });
    const [loggedIn, seeded] = await Promise.all([byId(login.session.id), byId(token.slice(0, token.indexOf('.')))]);
    if (!loggedIn || !seeded) throw new Error('checkSeededShape: session document not found');
    const [want, got] = [fieldTypes(loggedIn), fieldTypes(seeded)];
    if (want !== got) throw new Error(`seeded sessions are not shaped like the API's:\n  login: ${want}\n  seed:  ${got}`);
  } finally {
    await conn.close();
  }
}
