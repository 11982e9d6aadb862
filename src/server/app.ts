import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { expressMiddleware } from '@as-integrations/express5';
import express, { type Request, type Response } from 'express';
import mongoose from 'mongoose';
import { readCredentials } from '../auth/credentials.js';
import type { Settings } from '../config.js';
import { ChangeStreamFeed, PollingFeed } from '../engine/changeFeed.js';
import type { ChangeFeed } from '../session.js';
import { EventHub } from '../engine/hub.js';
import { Presence } from '../engine/presence.js';
import { watchClockSteps } from '../engine/clockSteps.js';
import { Scheduler, systemClock } from '../engine/scheduler.js';
import type { GraphQLContext } from '../graphql/context.js';
import { OperationPipeline } from '../graphql/operations.js';
import { createSchema } from '../graphql/schema.js';
import type { Logger } from '../logger.js';
import { SessionService, type Clock } from '../sessions/service.js';
import { detectCapabilities, type DatabaseCapabilities } from '../store/capabilities.js';
import { createModels, ensureTtlIndex } from '../store/models.js';
import { loggable } from '../store/databaseErrors.js';
import { connectDatabase, DatabaseHealth, reconnectWhenMonitorHangs } from '../store/databaseHealth.js';
import { SessionCache } from '../store/sessionCache.js';
import { SessionStore } from '../store/sessionStore.js';
import { UserStore } from '../store/userStore.js';
import { MongoAttemptStore } from '../store/attemptStore.js';
import { chooseVersionWriter } from '../store/versionWriters.js';
import { PresenceStore } from '../store/presenceStore.js';
import { clientAddress, trustProxy } from './clientAddress.js';
import { mountHealth } from './health.js';
import { databaseUnavailableIs503, jsonErrors, refuseSubscriptionsOverHttp } from './httpErrors.js';
import { mountPages } from './pages.js';
import { repeatPurge } from './purging.js';
import { attachSessionSockets } from './sessionSockets.js';

const PURGE_INTERVAL_MS = 60_000;
/** At most this share of the time goes to purging (a slow purge is run less often). */
const PURGE_MAX_SHARE = 0.01;
/** The largest HTTP body or websocket message accepted. */
const MAX_REQUEST_BYTES = 64 * 1024;
/** How long the expiry re-check waits for the database before ending sessions on what it knows. */
const RECHECK_TIMEOUT_MS = 1_000;
/** A client must have sent its headers within this, and its whole request within HTTP_REQUEST_TIMEOUT (Node's defaults: 60 s, 300 s). */
const HEADERS_TIMEOUT_MS = 10_000;
/**
 * Connections the kernel holds for the server before it accepts them (Linux caps it at
 * net.core.somaxconn, 4096 by default). Node's default, 511, overflowed when a process died and its
 * clients all reconnected to the others: a connection beyond it is dropped and its client's SYN
 * retried after 1, 3, 7… s, which put seconds on top of every queued reconnection.
 */
const LISTEN_BACKLOG = 4096;

export interface RunningServer {
  url: string;
  httpServer: Server;
  service: SessionService;
  hub: EventHub;
  feed: ChangeFeed;
  capabilities: DatabaseCapabilities;
  stop(): Promise<void>;
}

export interface StartOptions {
  settings: Settings;
  mongoUri: string;
  logger: Logger;
  clock?: Clock;
}

async function prepareStorage(conn: mongoose.Connection, settings: Settings, logger: Logger) {
  const models = createModels(conn);
  await Promise.all([models.User.init(), models.Session.init()]);
  const capabilities = await detectCapabilities(conn, (line: string) => logger.warn(line));
  if (capabilities.ttlIndexes) await ensureTtlIndex(models, settings.retentionSeconds);
  const writer = await chooseVersionWriter(models, capabilities, (line: string) => logger.info(line));
  return { models, capabilities, writer };
}

/** Removes expired sessions and login attempts where the database has no TTL index to do it. */
function startPurging(service: SessionService, attempts: MongoAttemptStore, settings: Settings, logger: Logger): () => void {
  const purge = async () => {
    await service.store.purgeExpired(service.clock(), settings.retentionSeconds);
    await attempts.purgeExpired(service.clock());
  };
  return repeatPurge(purge, {
    intervalMs: PURGE_INTERVAL_MS,
    maxShare: PURGE_MAX_SHARE,
    onError: (err) => logger.error({ err: loggable(err) }, 'purging expired sessions and login attempts failed'),
  });
}

export async function startServer({ settings, mongoUri, logger, clock = () => new Date() }: StartOptions): Promise<RunningServer> {
  // Unknown SESSION_* variables and deprecated names: said once, before anything else.
  for (const warning of settings.warnings) logger.warn(warning);
  const conn = await connectDatabase(mongoUri, { operationTimeoutMs: settings.databaseOperationTimeoutMs });
  const stopWatchingDriver = reconnectWhenMonitorHangs(conn, logger);
  const { models, capabilities, writer } = await prepareStorage(conn, settings, logger).catch(async (err: unknown) => {
    stopWatchingDriver();
    await conn.close();
    throw err;
  });
  const now = () => clock().getTime();

  const scheduler = new Scheduler({ ...systemClock, now });
  const stopWatchingClock = watchClockSteps(now, (stepMs) => {
    logger.info({ stepMs }, 'the wall clock was stepped: deadlines taken as it now reads');
    scheduler.clockStepped();
  });
  // Only with the polling feed, which can tell how fresh it is; change streams cannot.
  const cache =
    !capabilities.changeStreams && settings.sessionCache.maxStalenessMs > 0
      ? new SessionCache(settings.sessionCache.maxStalenessMs, settings.sessionCache.size)
      : null;
  const store = new SessionStore(models, writer, {
    recordChanges: !capabilities.changeStreams,
    maxLifetime: settings.expiry.maxLifetime,
    now,
    cache,
    maxConcurrentTokenReads: settings.maxConcurrentTokenReads,
    tokenReadsPerAddress: settings.tokenReadAddressConcurrency,
  });
  const attempts = await MongoAttemptStore.open(conn, capabilities);
  const service = new SessionService(new UserStore(models), store, settings, logger, clock, attempts);
  const feed: ChangeFeed = capabilities.changeStreams
    ? new ChangeStreamFeed(store, logger)
    : new PollingFeed(store, settings.changePollIntervalMs, logger, { now });
  const presence = new Presence({
    store: new PresenceStore(conn),
    ender: service,
    scheduler,
    graceMs: settings.browserCloseGraceMs,
    heartbeatMs: settings.presenceHeartbeatMs,
    leaseMs: settings.presenceLeaseMs,
    clock: { now },
    logger,
  });
  const health = DatabaseHealth.monitor({ database: store, connection: conn, logger });
  const hub = new EventHub({
    sessions: service,
    database: health,
    presence,
    scheduler,
    now,
    expiry: settings.expiry,
    loginUrl: settings.loginUrl,
    logger,
    recheckTimeoutMs: RECHECK_TIMEOUT_MS,
    recheckMaxWaitMs: settings.recheckMaxWaitMs,
  });
  service.listen(hub);
  await feed.start(
    cache
      ? {
          sessionChanged: (session) => (cache.sessionChanged(session), hub.sessionChanged(session)),
          caughtUp: (startedAt) => cache.feedCaughtUp(startedAt),
          missedChanges: () => (cache.clear(), hub.missedChanges()),
          sessionGone: (id) => hub.sessionGone(id),
        }
      : hub,
  );
  await presence.start();
  const stopPurging = capabilities.ttlIndexes ? () => {} : startPurging(service, attempts, settings, logger);

  const app = express();
  app.disable('x-powered-by');
  // Every answer, pages, assets and API alike: a browser must not guess a type other than the one sent.
  app.use((_req: Request, res: Response, next: () => void) => {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    next();
  });
  const trust = trustProxy(settings.trustProxy);
  app.set('trust proxy', trust);
  mountPages(app, settings);
  const httpServer = createServer(
    {
      requestTimeout: settings.httpRequestTimeoutMs,
      keepAliveTimeout: settings.httpKeepAliveTimeoutMs,
      headersTimeout: Math.min(HEADERS_TIMEOUT_MS, settings.httpRequestTimeoutMs),
      // How often Node checks those timeouts (default 30 s, which would let a slow request run well past them).
      connectionsCheckingInterval: 1_000,
    },
    app,
  );
  const schema = await createSchema();
  const pipeline = new OperationPipeline(schema, { env: settings.env, logger, databaseRefused: (err) => health.refused(err) });
  const sockets = attachSessionSockets({
    httpServer,
    schema,
    pipeline,
    service,
    hub,
    settings,
    trust,
    maxMessageBytes: MAX_REQUEST_BYTES,
    logger,
  });
  hub.closeSocketsWith(sockets);
  const apollo = new ApolloServer<GraphQLContext>({
    schema,
    csrfPrevention: true,
    // scripts/start.ts owns the signals: it stops the whole server, not only Apollo.
    stopOnTerminationSignals: false,
    includeStacktraceInErrorResponses: settings.env === 'development',
    // Parsing limits, validation and the document cache are the pipeline's, as over graphql-ws
    // (its rules refuse introspection in production). No persisted queries: one way in.
    parseOptions: pipeline.parseOptions,
    dangerouslyDisableValidation: true,
    documentStore: pipeline.documents,
    introspection: true,
    persistedQueries: false,
    formatError: pipeline.formatError,
    plugins: [
      pipeline.apolloPlugin(),
      refuseSubscriptionsOverHttp,
      databaseUnavailableIs503,
      ApolloServerPluginDrainHttpServer({ httpServer }),
      { serverWillStart: async () => ({ drainServer: async () => void (await sockets.dispose()) }) },
    ],
  });
  await apollo.start();

  mountHealth(app, health);
  app.use(
    '/graphql',
    express.json({ limit: MAX_REQUEST_BYTES }),
    expressMiddleware(apollo, {
      context: async ({ req, res }: { req: Request; res: Response }): Promise<GraphQLContext> => {
        const { token, fromCookie, cookieSentTwice } = readCredentials({ authorization: req.headers.authorization, cookieHeader: req.headers.cookie }, settings.cookie.name);
        return {
          service,
          hub,
          settings,
          token,
          cookieSentTwice,
          socketSessionId: null,
          clientAddress: clientAddress(req, trust),
          userAgent: req.headers['user-agent'] ?? null,
          // The session cookie is the only cookie this API sets: a later value (a logout after a renewal) replaces an earlier one.
          cookies: { fromCookie, set: (value) => res.setHeader('Set-Cookie', value) },
        };
      },
    }),
  );
  app.use(jsonErrors(logger));

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen({ port: settings.port, host: settings.host, backlog: LISTEN_BACKLOG }, () => resolve());
  });
  const { port } = httpServer.address() as AddressInfo;
  const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;

  return {
    url: `http://${host}:${port}/graphql`,
    httpServer,
    service,
    hub,
    feed,
    capabilities,
    /** Graceful: sockets close with 1001, HTTP requests in flight finish, pending writes land, then the connection closes. */
    async stop() {
      stopPurging();
      await apollo.stop();
      await presence.stop();
      await hub.stop();
      await feed.stop();
      await store.drain();
      scheduler.stop();
      stopWatchingClock();
      stopWatchingDriver();
      await conn.close();
    },
  };
}
