import 'reflect-metadata';
import { printSchema, type GraphQLSchema } from 'graphql';
import { buildSchema } from 'type-graphql';
import { SessionResolver } from './resolvers.js';
import { SessionEventsResolver } from './subscriptionResolver.js';

/** The executable schema, built from the type-graphql classes (schema.graphql is printed from it). */
export function createSchema(): Promise<GraphQLSchema> {
  return buildSchema({ resolvers: [SessionResolver, SessionEventsResolver], validate: false });
}

/** The text committed as schema.graphql. */
export async function printedSchema(): Promise<string> {
  return `${printSchema(await createSchema())}\n`;
}
