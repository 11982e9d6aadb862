import { createSourceEventStream, execute, type ExecutionArgs, type ExecutionResult } from 'graphql';

/** Holds the event streams it is given until each finishes (a socket, which ends those still running when it closes). */
export interface StreamOwner {
  started(stream: AsyncGenerator<ExecutionResult>): void;
  finished(stream: AsyncGenerator<ExecutionResult>): void;
}

/**
 * graphql-js's `subscribe`, with its per-event mapping held by one small object instead of
 * mapAsyncIterator's closures (same behaviour: each source event is executed with the
 * subscription's arguments and the event as root value). The stream is handed to `owner`, if any,
 * until it finishes.
 */
export async function subscribe(args: ExecutionArgs, owner: StreamOwner | null = null): Promise<AsyncGenerator<ExecutionResult> | ExecutionResult> {
  const resultOrStream = await createSourceEventStream(args);
  if (typeof (resultOrStream as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] !== 'function') return resultOrStream as ExecutionResult;
  const stream = new ExecutedEvents((resultOrStream as AsyncIterable<unknown>)[Symbol.asyncIterator](), args, owner);
  owner?.started(stream);
  return stream;
}

class ExecutedEvents implements AsyncGenerator<ExecutionResult> {
  constructor(
    private readonly source: AsyncIterator<unknown>,
    private readonly args: ExecutionArgs,
    private owner: StreamOwner | null,
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
    this.finished();
    return typeof this.source.return === 'function' ? this.map(await this.source.return()) : { value: undefined, done: true };
  }

  async throw(error: unknown): Promise<IteratorResult<ExecutionResult>> {
    this.finished();
    if (typeof this.source.throw === 'function') return this.map(await this.source.throw(error));
    await this.returnIgnoringErrors();
    throw error;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private finished(): void {
    this.owner?.finished(this);
    this.owner = null;
  }

  private async map(result: IteratorResult<unknown>): Promise<IteratorResult<ExecutionResult>> {
    if (result.done) {
      this.finished();
      return result;
    }
    try {
      return { value: await execute({ ...this.args, rootValue: result.value }), done: false };
    } catch (error) {
      this.finished();
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
