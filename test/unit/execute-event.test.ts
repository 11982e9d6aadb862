import { GraphQLObjectType, GraphQLSchema, GraphQLString, parse, type ExecutionArgs } from 'graphql';
import { describe, expect, it } from 'vitest';
import { executeEvent } from '../../src/graphql/subscribe.js';

/** A schema whose subscription field counts how often it is resolved. */
function setup() {
  let resolved = 0;
  const Event = new GraphQLObjectType({ name: 'Event', fields: { kind: { type: GraphQLString } } });
  const schema = new GraphQLSchema({
    query: new GraphQLObjectType({ name: 'Query', fields: { ok: { type: GraphQLString } } }),
    subscription: new GraphQLObjectType({
      name: 'Subscription',
      fields: {
        events: {
          type: Event,
          resolve: (event: unknown) => {
            resolved++;
            return event;
          },
        },
      },
    }),
  });
  const document = parse('subscription($with: Boolean = true) { events { kind @include(if: $with) } }');
  const args = (variableValues?: Record<string, unknown>, contextValue: unknown = {}): ExecutionArgs => ({ schema, document, variableValues, contextValue });
  return { args, resolved: () => resolved };
}

describe('executeEvent', () => {
  it('executes an event once for every subscription with the same document and variables, whatever their context', async () => {
    const { args, resolved } = setup();
    const event = { kind: 'EXPIRED' };
    const results = await Promise.all([1, 2, 3].map((socket) => executeEvent(args(undefined, { socket }), event)));
    expect(resolved()).toBe(1);
    for (const result of results) expect(result).toEqual({ data: { events: { kind: 'EXPIRED' } } });
  });

  it('executes again for other variables, another document or another event', async () => {
    const { args, resolved } = setup();
    const event = { kind: 'EXPIRED' };
    expect(await executeEvent(args({ with: false }), event)).toEqual({ data: { events: {} } });
    expect(await executeEvent(args({ with: true }), event)).toEqual({ data: { events: { kind: 'EXPIRED' } } });
    expect(await executeEvent({ ...args(), document: parse('subscription { events { kind } }') }, event)).toEqual({ data: { events: { kind: 'EXPIRED' } } });
    expect(await executeEvent(args({ with: true }), { kind: 'REVOKED' })).toEqual({ data: { events: { kind: 'REVOKED' } } });
    expect(resolved()).toBe(4);
  });
});
