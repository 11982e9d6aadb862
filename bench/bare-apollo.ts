/**
 * The HTTP baseline: a bare Apollo Server 5 on Express 5 (the same packages and integration the API
 * uses, NODE_ENV=production from the parent) answering `{ session { expiryAge } }` with a constant.
 * No authentication, no database, no plugins: what Apollo and Express alone cost per request.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer } from '@apollo/server';
import { expressMiddleware } from '@as-integrations/express5';
import express from 'express';
import { serve } from './ipc.js';

const apollo = new ApolloServer({
  typeDefs: 'type Session { expiryAge: Int! } type Query { session: Session! }',
  resolvers: { Query: { session: () => ({ expiryAge: 1209600 }) } },
});
await apollo.start();
const app = express();
app.use('/graphql', express.json(), expressMiddleware(apollo));
const httpServer = createServer(app);
await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
const { port } = httpServer.address() as AddressInfo;

serve({
  url: () => `http://127.0.0.1:${port}/graphql`,
  exit: async () => {
    httpServer.closeAllConnections();
    await apollo.stop();
    httpServer.close();
  },
});
