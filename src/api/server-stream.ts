// The one adapter between grpc-js server-streaming calls and handlers written
// as async generators (the style of nice-grpc): a handler takes the request
// and an AbortSignal and yields messages; it never sees the call.
//
// - Flow control: a message is written only when the handler yields it, and
//   the next one is asked for only once grpc-js has room (HTTP/2 flow control:
//   after 'drain' when write() returned false). A slow client slows the
//   handler down instead of growing buffers.
// - The signal aborts when the client cancels, the deadline passes or the
//   connection drops (grpc-js reports all three as 'cancelled'), and when the
//   call ends for any other reason.
// - Returning ends the call with OK; a throw ends it with the status that
//   src/api/status.ts maps the error to.
// - Shutdown: when `closing` aborts (the server is closing), the handler is
//   stopped like on a cancellation and the call ends UNAVAILABLE, so the
//   client calls again (another executor, or this one once it is back). A
//   stream never ends by itself (Watch, a follow), and without this the
//   server's close waited out its whole grace for them.
// - Cleanup: after a cancellation the generator is closed with return(), so
//   its finally blocks always run.
import type { handleServerStreamingCall, ServerWritableStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { TaskError } from '../errors.js';
import { toServiceError } from './status.js';

export type ServerStreamHandler<Req, Res> = (request: Req, signal: AbortSignal) => AsyncIterable<Res>;

export function serverStream<Req, Res>(handler: ServerStreamHandler<Req, Res>, log: Logger, closing?: AbortSignal): handleServerStreamingCall<Req, Res> {
  return (call) => void pump(call, handler, log, closing);
}

const SHUTTING_DOWN = 'the executor is shutting down; call again';

async function pump<Req, Res>(call: ServerWritableStream<Req, Res>, handler: ServerStreamHandler<Req, Res>, log: Logger, closing?: AbortSignal): Promise<void> {
  const closed = new AbortController();
  const abort = () => closed.abort();
  call.once('cancelled', abort);
  closing?.addEventListener('abort', abort);
  if (call.cancelled || closing?.aborted) abort();
  const { signal } = closed;
  let messages: AsyncIterator<Res> | undefined;
  try {
    messages = handler(call.request, signal)[Symbol.asyncIterator]();
    let finished = false;
    while (!signal.aborted) {
      const next = await messages.next();
      if (next.done) {
        finished = true;
        break;
      }
      if (signal.aborted) break;
      if (!call.write(next.value)) await drained(call, signal);
    }
    if (finished && !signal.aborted) call.end();
    else if (closing?.aborted && !call.cancelled) call.emit('error', toServiceError(new TaskError('Unavailable', SHUTTING_DOWN), log));
  } catch (error) {
    // After a cancellation nobody is listening, and the error is most likely the cancellation itself.
    if (closing?.aborted && !call.cancelled) call.emit('error', toServiceError(new TaskError('Unavailable', SHUTTING_DOWN), log));
    else if (signal.aborted) log.debug({ err: error, method: call.getPath() }, 'stream failed after it was cancelled');
    else call.emit('error', toServiceError(error, log));
  } finally {
    call.off('cancelled', abort);
    closing?.removeEventListener('abort', abort);
    closed.abort();
    // A generator stopped at a yield runs its finally blocks now; one that finished or threw has run them already.
    await messages?.return?.().catch((error: unknown) => log.warn({ err: error, method: call.getPath() }, 'stream cleanup failed'));
  }
}

/** Resolves once grpc-js can take more ('drain'), or when the call is cancelled (a cancelled call never drains). */
function drained(call: ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.on('drain', done);
    signal.addEventListener('abort', done);
  });
}
