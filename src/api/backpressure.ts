import type { ServerWritableStream } from '@grpc/grpc-js';

/**
 * Writes one message; when grpc-js reports its buffer full (HTTP/2 flow
 * control), resolves only on 'drain' or cancellation, so streams never buffer
 * more than a message ahead of a slow client.
 */
export function writeOrWait<Res>(call: ServerWritableStream<unknown, Res>, message: Res, cancelled: AbortSignal): void | Promise<void> {
  if (call.write(message)) return;
  return new Promise<void>((resolve) => {
    const done = () => {
      call.off('drain', done);
      cancelled.removeEventListener('abort', done);
      resolve();
    };
    call.on('drain', done);
    cancelled.addEventListener('abort', done);
    if (cancelled.aborted) done();
  });
}
