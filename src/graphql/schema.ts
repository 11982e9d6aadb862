import 'reflect-metadata';
import { printSchema, type GraphQLSchema } from 'graphql';
import { buildSchema, type PubSub } from 'type-graphql';
import { SessionResolver } from './resolvers.js';
import { SessionEventsResolver } from './subscriptionResolver.js';

/** type-graphql insists on a PubSub, but every subscription here brings its own `subscribe` (the EventHub). */
const noPubSub: PubSub = {
  publish() {
    throw new Error('topics are not used: subscriptions read from the EventHub');
  },
  subscribe() {
    throw new Error('topics are not used: subscriptions read from the EventHub');
  },
};

/** The executable schema, built from the type-graphql classes (schema.graphql is printed from it). */
export function createSchema(): Promise<GraphQLSchema> {
  return buildSchema({ resolvers: [SessionResolver, SessionEventsResolver], validate: false, pubSub: noPubSub });
}

/** The text committed as schema.graphql. */
export async function printedSchema(): Promise<string> {
  return `${printSchema(await createSchema())}\n`;
}
