import {
  execute,
  getOperationAST,
  GraphQLError,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLFormattedError,
} from 'graphql';
import { areGraphQLErrors, CloseCode, MessageType, parseMessage, stringifyMessage, type FormattedExecutionResult, type SubscribePayload } from 'graphql-ws';
import type { Connection } from './adapter.js';

type Stream = AsyncIterable<unknown>;
type Awaitable<T> = T | Promise<T>;

/** What the protocol asks of its user, as graphql-ws's server options of the same names (the socket's Connection in place of graphql-ws's context). */
export interface ProtocolHooks<C extends Connection> {
  /** connection_init: false refuses it with 4403 (after any close of the hook's own), an object is the acknowledgement's payload. */
  onConnect(conn: C, connectionParams: Record<string, unknown> | undefined): Awaitable<Record<string, unknown> | boolean | void>;
  /** The operation's execution arguments, or the errors that refuse it (an `error` message). */
  onSubscribe(conn: C, id: string, payload: SubscribePayload): Awaitable<ExecutionArgs | readonly GraphQLError[]>;
  /** Runs a subscription operation of the socket (graphql-ws's `subscribe` option, given the socket too). */
  subscribe(conn: C, args: ExecutionArgs): Awaitable<AsyncGenerator<ExecutionResult> | ExecutionResult>;
  /** A result's payload in place of the result as it is, if it returns one. */
  onNext(conn: C, id: string, result: ExecutionResult): Awaitable<FormattedExecutionResult | ExecutionResult | void>;
  /** The errors' payload in place of the errors as they are, if it returns one. */
  onError(conn: C, id: string, errors: readonly GraphQLError[]): Awaitable<readonly GraphQLFormattedError[] | void>;
  /** Called once for every operation that got through onSubscribe, when it has finished, however it ends (also when the client completed it, or the socket closed under it). */
  onComplete(conn: C, id: string): Awaitable<void>;
}

const isObject = (val: unknown): val is Record<string, unknown> => typeof val === 'object' && val !== null && !Array.isArray(val);
const isAsyncIterable = (val: unknown): val is Stream => typeof (Object(val) as Partial<Stream>)[Symbol.asyncIterator] === 'function';
const isAsyncGenerator = (val: unknown): val is AsyncGenerator =>
  isObject(val) && typeof (val as Partial<Stream>)[Symbol.asyncIterator] === 'function' && typeof val.return === 'function';
const hasReturn = (entry: object): entry is Required<Pick<AsyncIterator<unknown>, 'return'>> => typeof (entry as AsyncIterator<unknown>).return === 'function';

/**
 * The server side of graphql-transport-ws, as graphql-ws's `makeServer` (6.x) runs it, message for
 * message, close code for close code and hook for hook (those this server uses; no JSON reviver or
 * replacer), with its state held by the socket's Connection instead of a context object, closures
 * and a suspended async function per socket and per running subscription: an idle subscription
 * waits on its stream's `next` with a single pair of callbacks.
 *
 * One difference: an operation acts only while the socket's map holds its own entry under its id (an
 * object of its own while it is set up, then its stream's iterator). graphql-ws looks the id up, so
 * an operation the client has completed, and whose id it has used again, would send its `complete`
 * (or its last results) under the new operation's id and take that one out of the map.
 *
 * `failed` is called with what a message's handling threw, as graphql-ws's message handler would
 * have rejected with (also when it comes from a subscription's results, long after the message).
 */
export function graphqlWsProtocol<C extends Connection>(hooks: ProtocolHooks<C>, failed: (conn: C, err: unknown) => void) {
  async function emitNext(conn: C, id: string, entry: object, result: ExecutionResult): Promise<void> {
    if (conn.operation(id) !== entry) return;
    const { errors, ...resultWithoutErrors } = result;
    const maybeResult = await hooks.onNext(conn, id, result);
    await conn.send(
      stringifyMessage({
        id,
        type: MessageType.Next,
        payload: maybeResult || { ...resultWithoutErrors, ...(errors ? { errors: errors.map((e) => e.toJSON()) } : {}) },
      }),
    );
  }

  async function emitError(conn: C, id: string, entry: object, errors: readonly GraphQLError[]): Promise<void> {
    if (conn.operation(id) !== entry) return;
    const maybeErrors = await hooks.onError(conn, id, errors);
    await conn.send(stringifyMessage({ id, type: MessageType.Error, payload: maybeErrors || errors.map((e) => e.toJSON()) }));
  }

  async function emitComplete(conn: C, id: string, notifyClient: boolean): Promise<void> {
    await hooks.onComplete(conn, id);
    if (notifyClient) await conn.send(stringifyMessage({ id, type: MessageType.Complete }));
  }

  /**
   * graphql-ws's `for await (const result of stream) await emit.next(…)`, its `catch` (an `error`
   * message) and what follows it (`complete`), one result at a time. Not a closure: while the
   * subscription is idle, only the two callbacks of the pending `next` hold its state.
   */
  function relay(conn: C, id: string, iterator: AsyncIterator<unknown>): void {
    let next: Promise<IteratorResult<unknown>>;
    try {
      next = Promise.resolve(iterator.next());
    } catch (error) {
      return ended(conn, id, iterator, { error });
    }
    next.then(
      (result) => {
        if (!((typeof result === 'object' && result !== null) || typeof result === 'function')) {
          return ended(conn, id, iterator, { error: new TypeError(`Iterator result ${String(result)} is not an object`) });
        }
        if (result.done) return ended(conn, id, iterator, null);
        emitNext(conn, id, iterator, result.value as ExecutionResult).then(
          () => relay(conn, id, iterator),
          // As a for-await loop left by an exception of its body: the stream is closed first (whatever that throws).
          (error: unknown) => closeIgnoringErrors(iterator).then(() => ended(conn, id, iterator, { error })),
        );
      },
      (error: unknown) => ended(conn, id, iterator, { error }),
    );
  }

  /** The stream has ended, or `thrown` ended it. */
  function ended(conn: C, id: string, iterator: AsyncIterator<unknown>, thrown: { error: unknown } | null): void {
    settle(conn, id, iterator, thrown).catch((err: unknown) => failed(conn, err));
  }

  async function settle(conn: C, id: string, iterator: AsyncIterator<unknown>, thrown: { error: unknown } | null): Promise<void> {
    try {
      if (thrown) {
        const originalError = thrown.error instanceof Error ? thrown.error : new Error(String(thrown.error));
        await emitError(conn, id, iterator, [new GraphQLError(originalError.message, { originalError })]);
        conn.deleteOperation(id, iterator);
      }
      await emitComplete(conn, id, conn.operation(id) === iterator);
    } finally {
      conn.deleteOperation(id, iterator);
    }
  }

  async function subscribe(conn: C, id: string, payload: SubscribePayload): Promise<void> {
    const settingUp = {};
    conn.setOperation(id, settingUp);
    try {
      const argsOrErrors = await hooks.onSubscribe(conn, id, payload);
      if (areGraphQLErrors(argsOrErrors)) return await emitError(conn, id, settingUp, argsOrErrors);
      if (Array.isArray(argsOrErrors)) throw new Error('Invalid return value from onSubscribe hook, expected an array of GraphQLError objects');
      const args = argsOrErrors as ExecutionArgs;
      const operation = getOperationAST(args.document, args.operationName);
      if (!operation) return await emitError(conn, id, settingUp, [new GraphQLError('Unable to identify operation')]);
      if (!('rootValue' in args)) args.rootValue = undefined;
      if (!('contextValue' in args)) args.contextValue = undefined;
      const result = operation.operation === 'subscription' ? await hooks.subscribe(conn, args) : await execute(args);
      if (isAsyncIterable(result)) {
        if (conn.operation(id) === settingUp) {
          const iterator = result[Symbol.asyncIterator]();
          conn.setOperation(id, iterator);
          return relay(conn, id, iterator);
        }
        if (isAsyncGenerator(result)) void result.return(undefined);
      } else {
        await emitNext(conn, id, settingUp, result);
      }
      await emitComplete(conn, id, conn.operation(id) === settingUp);
    } finally {
      conn.deleteOperation(id, settingUp);
    }
  }

  return {
    /** A text message from a socket speaking graphql-transport-ws (graphql-ws's `onMessage`). */
    async received(conn: C, data: string): Promise<void> {
      let message;
      try {
        message = parseMessage(data);
      } catch {
        return conn.close(CloseCode.BadRequest, 'Invalid message received');
      }
      switch (message.type) {
        case MessageType.ConnectionInit: {
          if (conn.initReceived) return conn.close(CloseCode.TooManyInitialisationRequests, 'Too many initialisation requests');
          conn.initReceived = true;
          const permittedOrPayload = await hooks.onConnect(conn, isObject(message.payload) ? message.payload : undefined);
          if (permittedOrPayload === false) return conn.close(CloseCode.Forbidden, 'Forbidden');
          conn.acknowledged = true;
          await conn.send(
            stringifyMessage(
              isObject(permittedOrPayload) ? { type: MessageType.ConnectionAck, payload: permittedOrPayload } : { type: MessageType.ConnectionAck },
            ),
          );
          return;
        }
        case MessageType.Ping:
          await conn.send(stringifyMessage(message.payload ? { type: MessageType.Pong, payload: message.payload } : { type: MessageType.Pong }));
          return;
        case MessageType.Pong:
          return;
        case MessageType.Subscribe: {
          if (!conn.acknowledged) return conn.close(CloseCode.Unauthorized, 'Unauthorized');
          const { id, payload } = message;
          if (conn.operation(id) !== undefined) return conn.close(CloseCode.SubscriberAlreadyExists, `Subscriber for ${id} already exists`);
          return subscribe(conn, id, payload);
        }
        case MessageType.Complete: {
          const entry = conn.operation(message.id);
          if (entry === undefined) return;
          conn.deleteOperation(message.id, entry);
          if (hasReturn(entry)) await entry.return(undefined);
          return;
        }
        default:
          throw new Error(`Unexpected message of type ${message.type} received`);
      }
    },

    /** The socket closed: its operations' streams are ended (graphql-ws's closed handler). */
    async closed(conn: C): Promise<void> {
      await Promise.all(conn.takeOperations().filter(hasReturn).map((iterator) => iterator.return(undefined)));
    },
  };
}

/** Calls the iterator's `return`, if it has one, and waits for it, ignoring whatever it throws. */
async function closeIgnoringErrors(iterator: AsyncIterator<unknown>): Promise<void> {
  try {
    if (typeof iterator.return === 'function') await iterator.return();
  } catch {
    // The loop's own exception is the one that counts.
  }
}
