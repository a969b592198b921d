// The one adapter between grpc-js server-streaming calls and handlers written
// as async generators (the style of nice-grpc): a handler takes the request
// and an AbortSignal and yields messages; it never sees the call.
//
// - Flow control: a message is written only when the handler yields it, and
//   the next one is asked for only once grpc-js has room (HTTP/2 flow control:
//   after 'drain' when write() returned false). A slow client slows the
//   handler down instead of growing buffers.
// - grpc-js's own queue counts messages (16 before write() says wait), not
//   bytes: sixteen 64 KiB Logs batches would be 1 MiB per stream held for a
//   client that stopped reading. So the pump also waits while more than
//   MAX_UNSENT_BYTES of messages are not yet on the socket: pre-encoded ones
//   by their encoding, others by the handler's estimate (`sizeOf`; none: 0).
// - A wait for room longer than STALL_MS is a stall: the handler's
//   StreamFlow.onStall listeners run, so it can give back buffers it holds
//   only for speed (the Logs reader's read-ahead).
// - A cap (StreamSlots) on how many such streams are open at once: one more
//   is RESOURCE_EXHAUSTED; the slot is freed however the stream ends.
// - The signal aborts when the client cancels, the deadline passes or the
//   connection drops (grpc-js reports all three as 'cancelled'), and when the
//   call ends for any other reason.
// - Shutdown: when `closing` aborts (the server is closing), the handler is
//   stopped like on a cancellation and the call ends UNAVAILABLE, so the
//   client calls again (another executor, or this one once it is back). A
//   stream never ends by itself (Watch, a follow), and without this the
//   server's close waited out its whole grace for them.
// - Returning ends the call with OK; a throw ends it with the status that
//   src/api/status.ts maps the error to.
// - Cleanup: after a cancellation the generator is closed with return(), so
//   its finally blocks always run.
import type { handleServerStreamingCall, ServerWritableStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { TaskError } from '../errors.js';
import { ENCODED, type PreEncoded } from './pre-encoded.js';
import { toServiceError } from './status.js';
import type { StreamSlots } from './stream-slots.js';

/** Pre-encoded bytes written but not yet on the socket beyond which the next message waits: two 64 KiB Logs messages. */
export const MAX_UNSENT_BYTES = 128 * 1024;
/** A wait for room this long is a stall (see StreamFlow.onStall). */
export const STALL_MS = 500;

/** What the handler learns about its client's pace. */
export interface StreamFlow {
  /** `listener` runs whenever the client has taken nothing for STALL_MS while a message waits. */
  onStall(listener: () => void): void;
}

export type ServerStreamHandler<Req, Res> = (request: Req, signal: AbortSignal, flow: StreamFlow) => AsyncIterable<Res>;

/** Roughly how many bytes a message that is not pre-encoded takes on the wire (for MAX_UNSENT_BYTES). */
export type SizeOf<Res> = (message: Res) => number;

export interface StreamOptions<Res> {
  /** A cap on this method's open streams (RESOURCE_EXHAUSTED beyond it). */
  slots?: StreamSlots;
  /** For messages that may be large without being pre-encoded. */
  sizeOf?: SizeOf<Res>;
  /** Aborted when the server closes: the stream then ends UNAVAILABLE. */
  closing?: AbortSignal;
}

export function serverStream<Req, Res>(handler: ServerStreamHandler<Req, Res>, log: Logger, options: StreamOptions<Res> = {}): handleServerStreamingCall<Req, Res> {
  return (call) => void pump(call, handler, log, options);
}

/** Why a stream ends at shutdown (UNAVAILABLE). */
export const SHUTTING_DOWN = 'the executor is shutting down; call again';

const isPreEncoded = (message: unknown): message is PreEncoded => typeof message === 'object' && message !== null && ENCODED in message;

async function pump<Req, Res>(
  call: ServerWritableStream<Req, Res>,
  handler: ServerStreamHandler<Req, Res>,
  log: Logger,
  { slots, sizeOf, closing }: StreamOptions<Res>,
): Promise<void> {
  const closed = new AbortController();
  const abort = () => closed.abort();
  call.once('cancelled', abort);
  closing?.addEventListener('abort', abort);
  if (call.cancelled || closing?.aborted) abort();
  const shuttingDown = () => closing?.aborted === true && !call.cancelled;
  const { signal } = closed;
  let messages: AsyncIterator<Res> | undefined;
  let release: (() => void) | undefined;
  const stallListeners: (() => void)[] = [];
  const flow: StreamFlow = { onStall: (listener) => void stallListeners.push(listener) };
  const size = (message: Res) => (isPreEncoded(message) ? message[ENCODED].length : (sizeOf?.(message) ?? 0));
  const room = new Room<Res>(call, signal, size, () => {
    for (const listener of stallListeners) listener();
  });
  try {
    release = slots?.acquire();
    messages = handler(call.request, signal, flow)[Symbol.asyncIterator]();
    let finished = false;
    while (!signal.aborted) {
      const next = await messages.next();
      if (next.done) {
        finished = true;
        break;
      }
      if (signal.aborted) break;
      await room.write(next.value);
    }
    if (finished && !signal.aborted) call.end();
    else if (shuttingDown()) call.emit('error', toServiceError(new TaskError('Unavailable', SHUTTING_DOWN), log));
  } catch (error) {
    // After a cancellation nobody is listening, and the error is most likely the cancellation itself.
    if (shuttingDown()) call.emit('error', toServiceError(new TaskError('Unavailable', SHUTTING_DOWN), log));
    else if (signal.aborted) log.debug({ err: error, method: call.getPath() }, 'stream failed after it was cancelled');
    else call.emit('error', toServiceError(error, log));
  } finally {
    release?.();
    call.off('cancelled', abort);
    closing?.removeEventListener('abort', abort);
    closed.abort();
    // A generator stopped at a yield runs its finally blocks now; one that finished or threw has run them already.
    await messages?.return?.().catch((error: unknown) => log.warn({ err: error, method: call.getPath() }, 'stream cleanup failed'));
  }
}

/**
 * Writes messages to the call, waiting while grpc-js has no room (its queue
 * is full: 'drain') or while more than MAX_UNSENT_BYTES are not yet on the
 * socket; a wait ends early when the call is cancelled (a cancelled call never
 * drains). A wait of STALL_MS calls `stalled` (once per wait).
 */
class Room<Res> {
  private unsent = 0;
  private wake: (() => void) | undefined;

  constructor(
    private readonly call: ServerWritableStream<unknown, Res>,
    private readonly signal: AbortSignal,
    private readonly sizeOf: (message: Res) => number,
    private readonly stalled: () => void,
  ) {}

  async write(message: Res): Promise<void> {
    const size = this.sizeOf(message);
    this.unsent += size;
    const roomy = this.call.write(message, () => {
      this.unsent -= size;
      if (this.unsent <= MAX_UNSENT_BYTES) this.wake?.();
    });
    if (roomy && this.unsent <= MAX_UNSENT_BYTES) return;
    await this.wait(() => !this.call.writableNeedDrain && this.unsent <= MAX_UNSENT_BYTES);
  }

  private wait(ready: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const stall = setTimeout(this.stalled, STALL_MS);
      const check = () => {
        if (!ready() && !this.signal.aborted) return;
        clearTimeout(stall);
        this.call.off('drain', check);
        this.signal.removeEventListener('abort', check);
        this.wake = undefined;
        resolve();
      };
      this.wake = check;
      this.call.on('drain', check);
      this.signal.addEventListener('abort', check);
    });
  }
}
