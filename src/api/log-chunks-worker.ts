// The worker thread of log-chunks-offload.ts: runs a bulk chunked Logs read
// (streamLogs and ChunkEncoder, the same code as on the main thread) and
// posts the encoded LogsResponse messages, their buffers transferred, not
// copied. One read at a time; the main thread gives credit for how many
// batches may be under way, so a slow client holds the read back here too.
import { parentPort } from 'node:worker_threads';
import { errorMessage } from '../errors.js';
import { errnoOf } from '../util/errno.js';
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

/** Messages gathered for one post: the buffers they are in (transferred) and where each one is. */
class Batch {
  buffers: ArrayBuffer[] = [];
  messages: number[] = [];
  bytes = 0;
  private readonly index = new Map<ArrayBuffer, number>();

  add(message: Buffer): void {
    let { buffer } = message;
    let offset = message.byteOffset;
    if (!(buffer instanceof ArrayBuffer) || (message.length < Buffer.poolSize >>> 1 && buffer.byteLength > message.length)) {
      // A small message may share Node's pool of small buffers (Buffer.allocUnsafe and
      // Buffer.from take from it below half its size: 4 KiB on Node 20, 32 KiB on Node 26),
      // which must not be transferred (Node 26 refuses; Node 20 would detach the pool): copy it.
      const copy = new ArrayBuffer(message.length);
      new Uint8Array(copy).set(message);
      buffer = copy;
      offset = 0;
    }
    let at = this.index.get(buffer);
    if (at === undefined) {
      at = this.buffers.push(buffer) - 1;
      this.index.set(buffer, at);
    }
    this.messages.push(at, offset, message.length);
    this.bytes += message.length;
  }
}

async function run(query: Extract<ToWorker, { type: 'start' }>['query']): Promise<void> {
  const current: Job = { controller: new AbortController(), credit: READ_AHEAD_BATCHES, wake: undefined };
  job = current;
  const { signal } = current.controller;
  let outcome: StreamOutcome = 'cancelled';
  let failure: { message: string; code?: string } | undefined;
  const lines = streamLogs({ ...query, runs: true, follow: false, blocking: true }, ENDED, signal);
  const encoder = new ChunkEncoder(false);
  let batch = new Batch();
  const postBatch = async (): Promise<boolean> => {
    while (current.credit === 0 && !signal.aborted) await new Promise<void>((resolve) => (current.wake = resolve));
    current.wake = undefined;
    if (signal.aborted) return false;
    current.credit--;
    post({ type: 'batch', buffers: batch.buffers, messages: batch.messages }, batch.buffers);
    batch = new Batch();
    return true;
  };
  try {
    for (;;) {
      const next = await lines.next();
      if (next.done) {
        if (batch.messages.length > 0) await postBatch();
        outcome = next.value;
        break;
      }
      if (isLines(next.value)) {
        for (const response of encoder.responses(next.value)) {
          // ChunkEncoder makes EncodedChunkResponses; anything else is encoded here.
          batch.add(response instanceof EncodedChunkResponse ? response[ENCODED] : Buffer.from(LogsResponse.encode(response).finish()));
        }
      } else {
        // The reader is blocking, so each read buffer is ours: chunks are encoded in it, and it is handed over whole.
        for (const message of encoder.runMessages(next.value, true)) batch.add(message);
      }
      if (batch.bytes >= POST_BYTES && !(await postBatch())) break;
    }
  } catch (error) {
    failure = { message: errorMessage(error), code: errnoOf(error) };
  } finally {
    await lines.return('cancelled'); // files closed before the read is reported ended
  }
  job = undefined;
  post({ type: 'end', outcome: signal.aborted ? 'cancelled' : outcome, failure });
}

post({ type: 'ready' });
