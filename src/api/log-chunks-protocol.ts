// The messages between log-chunks-offload.ts (main thread) and
// log-chunks-worker.ts (the worker thread that reads and encodes).
import type { LogsQuery, StreamOutcome } from '../logs/stream-logs.js';

/** Bytes of messages the worker gathers into one batch (a post; each read adds up to a read buffer's worth). */
export const POST_BYTES = 512 * 1024;

/** Batches the worker may post before the main thread has taken them: a read holds at most 4 MiB of messages in flight. */
export const READ_AHEAD_BATCHES = 8;

/** What the worker reads: a bulk read (no follow, times or byte limit) as chunks. */
export type OffloadedQuery = Pick<LogsQuery, 'directory' | 'streams' | 'tailLines'>;

export type ToWorker =
  | { type: 'start'; query: OffloadedQuery }
  /** The main thread has taken one batch: one more may come. */
  | { type: 'credit' }
  /** Stop the read now (the client went away); the worker answers with `end`. */
  | { type: 'stop' };

export type FromWorker =
  /** Loaded and waiting for reads. */
  | { type: 'ready' }
  /**
   * Encoded LogsResponse messages, in order: message i is buffers[messages[3i]]
   * from byte messages[3i+1], messages[3i+2] bytes long (several may share a
   * buffer: a read buffer with its chunks encoded in place).
   */
  | { type: 'batch'; buffers: ArrayBuffer[]; messages: number[] }
  /** The read is over and its files are closed: how it ended, or why it failed. */
  | { type: 'end'; outcome: StreamOutcome; failure?: { message: string; code?: string } };
