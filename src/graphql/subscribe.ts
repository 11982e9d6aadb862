import { createSourceEventStream, execute, type ExecutionArgs, type ExecutionResult } from 'graphql';

/**
 * graphql-js's `subscribe`, with its per-event mapping held by one small object instead of
 * mapAsyncIterator's closures (same behaviour: each source event is executed with the
 * subscription's arguments and the event as root value).
 */
export async function subscribe(args: ExecutionArgs): Promise<AsyncGenerator<ExecutionResult> | ExecutionResult> {
  const resultOrStream = await createSourceEventStream(args);
  if (typeof (resultOrStream as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] !== 'function') return resultOrStream as ExecutionResult;
  return new ExecutedEvents((resultOrStream as AsyncIterable<unknown>)[Symbol.asyncIterator](), args);
}

class ExecutedEvents implements AsyncGenerator<ExecutionResult> {
  constructor(
    private readonly source: AsyncIterator<unknown>,
    private readonly args: ExecutionArgs,
  ) {}

  /** Not an async function: an idle subscription waits here, and a pending `.then` is smaller than a suspended frame. */
  next(): Promise<IteratorResult<ExecutionResult>> {
    try {
      return this.source.next().then((result) => this.map(result));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async return(): Promise<IteratorResult<ExecutionResult>> {
    return typeof this.source.return === 'function' ? this.map(await this.source.return()) : { value: undefined, done: true };
  }

  async throw(error: unknown): Promise<IteratorResult<ExecutionResult>> {
    if (typeof this.source.throw === 'function') return this.map(await this.source.throw(error));
    await this.returnIgnoringErrors();
    throw error;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private async map(result: IteratorResult<unknown>): Promise<IteratorResult<ExecutionResult>> {
    if (result.done) return result;
    try {
      return { value: await execute({ ...this.args, rootValue: result.value }), done: false };
    } catch (error) {
      await this.returnIgnoringErrors();
      throw error;
    }
  }

  private async returnIgnoringErrors(): Promise<void> {
    if (typeof this.source.return === 'function') {
      try {
        await this.source.return();
      } catch {
        // Keep the original error when closing the source also fails.
      }
    }
  }
}
