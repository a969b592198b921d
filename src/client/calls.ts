// Promise and AsyncIterable forms of grpc-js calls, with AbortSignal and deadlines.
// grpc-js speaks callbacks and event emitters; an application wants `await` and
// `for await`, and one way to stop a call (an AbortSignal) that also ends a stream
// the application stopped reading.
import type { CallOptions as GrpcCallOptions, ClientReadableStream, ClientUnaryCall, Metadata, ServiceError } from '@grpc/grpc-js';

export interface CallOptions {
  /** Cancels the call; the promise (or the iteration) then rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** The call fails with DEADLINE_EXCEEDED after this many milliseconds. Overrides the client's default. */
  timeoutMs?: number;
  /** The call fails with DEADLINE_EXCEEDED at this time. Wins over timeoutMs. */
  deadline?: Date;
}

/** What every call of one client shares: its metadata (the token) and its default deadline. */
export interface CallDefaults {
  metadata: () => Metadata;
  /** Default timeout of unary calls; streams have none unless asked (Watch and a follow run for as long as wanted). */
  unaryTimeoutMs?: number;
}

type UnaryInvoke<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<GrpcCallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

type StreamInvoke<Req, Res> = (request: Req, metadata: Metadata, options: Partial<GrpcCallOptions>) => ClientReadableStream<Res>;

function grpcOptions(options: CallOptions, defaultTimeoutMs: number | undefined): Partial<GrpcCallOptions> {
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  const deadline = options.deadline ?? (timeoutMs === undefined ? undefined : new Date(Date.now() + timeoutMs));
  return deadline ? { deadline } : {};
}

export function unaryCall<Req, Res>(invoke: UnaryInvoke<Req, Res>, request: Req, defaults: CallDefaults, options: CallOptions = {}): Promise<Res> {
  const { signal } = options;
  return new Promise<Res>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => call.cancel();
    const call = invoke(request, defaults.metadata(), grpcOptions(options, defaults.unaryTimeoutMs), (error, response) => {
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(signal?.aborted ? signal.reason : error);
      else resolve(response);
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A server stream as an async iterable. Leaving the `for await` early (break,
 * return, throw) cancels the call, so the server stops sending; aborting the
 * signal does the same and makes the iteration throw `signal.reason`.
 */
export async function* streamCall<Req, Res>(
  invoke: StreamInvoke<Req, Res>,
  request: Req,
  defaults: CallDefaults,
  options: CallOptions = {},
): AsyncGenerator<Res, void, undefined> {
  const { signal } = options;
  signal?.throwIfAborted();
  const call = invoke(request, defaults.metadata(), grpcOptions(options, undefined));
  const onAbort = () => call.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  let ended = false;
  call.once('end', () => (ended = true));
  try {
    for await (const message of call as AsyncIterable<Res>) yield message;
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!ended) {
      // The consumer stopped early: the CANCELLED status this causes is expected, not an error to report.
      call.on('error', () => {});
      call.cancel();
    }
  }
}
