// The worker thread of log-chunks-offload.ts: runs a bulk chunked Logs read
// (streamLogs and ChunkEncoder, the same code as on the main thread) and
// posts the encoded LogsResponse messages, their buffers transferred, not
// copied. One read at a time; the main thread gives credit for how many
// batches may be under way, so a slow client holds the read back here too.
import { parentPort } from 'node:worker_threads';
import { isLines, type StreamOutcome, streamLogs, type TaskLiveness } from '../logs/stream-logs.js';
import { LogsResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { ChunkEncoder, EncodedChunkResponse } from './log-chunks.js';
import { type FromWorker, POST_BYTES, READ_AHEAD_BATCHES, type ToWorker } from './log-chunks-protocol.js';
import { ENCODED } from './pre-encoded.js';

const port = parentPort;
if (!port) throw new Error('log-chunks-worker.ts runs as a worker thread (see log-chunks-offload.ts)');

interface Job {
  readonly controller: AbortController;
  credit: number;
  /** Resolves the wait for credit (or a stop). */
  wake: (() => void) | undefined;
}

let job: Job | undefined;

/** A read without follow never asks whether the task still runs. */
const ENDED: TaskLiveness = { status: () => 'ended', onChange: () => () => {} };

const post = (message: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

port.on('message', (message: ToWorker) => {
  if (message.type === 'start') {
    void run(message.query);
    return;
  }
  if (!job) return; // a credit or stop for a read that has just ended
  if (message.type === 'credit') job.credit++;
  else job.controller.abort();
  job.wake?.();
});

/** The message's own ArrayBuffer when it holds exactly the message (so it can be transferred), else a copy that does. */
function transferable(message: Buffer): ArrayBuffer {
  const { buffer } = message;
  if (buffer instanceof ArrayBuffer && message.byteOffset === 0 && message.byteLength === buffer.byteLength) return buffer;
  const copy = new ArrayBuffer(message.byteLength);
  new Uint8Array(copy).set(message);
  return copy;
}

async function run(query: Extract<ToWorker, { type: 'start' }>['query']): Promise<void> {
  const current: Job = { controller: new AbortController(), credit: READ_AHEAD_BATCHES, wake: undefined };
  job = current;
  const { signal } = current.controller;
  let outcome: StreamOutcome = 'cancelled';
  let failure: { message: string; code?: string } | undefined;
  const lines = streamLogs({ ...query, runs: true, follow: false, blocking: true }, ENDED, signal);
  const encoder = new ChunkEncoder(false);
  /** Messages not posted yet, and their bytes: a post carries about POST_BYTES (several reads' worth), fewer hand-offs. */
  let buffers: ArrayBuffer[] = [];
  let bytes = 0;
  const postBatch = async (): Promise<boolean> => {
    while (current.credit === 0 && !signal.aborted) await new Promise<void>((resolve) => (current.wake = resolve));
    current.wake = undefined;
    if (signal.aborted) return false;
    current.credit--;
    post({ type: 'batch', buffers }, buffers);
    buffers = [];
    bytes = 0;
    return true;
  };
  try {
    for (;;) {
      const next = await lines.next();
      if (next.done) {
        if (buffers.length > 0) await postBatch();
        outcome = next.value;
        break;
      }
      for (const response of isLines(next.value) ? encoder.responses(next.value) : encoder.runResponses(next.value)) {
        // ChunkEncoder makes EncodedChunkResponses; anything else is encoded here.
        const encoded = response instanceof EncodedChunkResponse ? response[ENCODED] : Buffer.from(LogsResponse.encode(response).finish());
        buffers.push(transferable(encoded));
        bytes += encoded.length;
      }
      if (bytes >= POST_BYTES && !(await postBatch())) break;
    }
  } catch (error) {
    const { message, code } = error instanceof Error ? (error as NodeJS.ErrnoException) : { message: String(error), code: undefined };
    failure = { message, code };
  } finally {
    await lines.return('cancelled'); // files closed before the read is reported ended
  }
  job = undefined;
  post({ type: 'end', outcome: signal.aborted ? 'cancelled' : outcome, failure });
}

post({ type: 'ready' });
