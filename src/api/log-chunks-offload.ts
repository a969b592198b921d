// Bulk chunked Logs reads on worker threads. Reading 50 MB of log as chunks
// is per-line work (find each '\n', check each header, move each line up to
// the one before it) that would otherwise share the main thread with
// grpc-js's writes and every other call; a worker (log-chunks-worker.ts)
// does it with the same code (streamLogs, ChunkEncoder) and hands over the
// encoded messages, their buffers transferred. The main thread only writes.
//
// - Only a read without follow, times, sinceTime or limitBytes, of a log of
//   at least minBytes, goes to a worker; small reads are faster in place, and
//   a follow stays on the main thread (its latency is a hand-off shorter).
// - Off unless --logs-read-workers is set (src/api/server.ts owns the pool).
// - A few workers, started on demand: while none is ready (the first big
//   read, or all busy), the read is done in place and a worker is started
//   for the next one. A worker idle for idleMs ends.
// - Flow control: the worker posts at most READ_AHEAD_BATCHES batches ahead
//   of what the main thread has taken; the main thread takes one only when
//   the call asks for the next message (server-stream.ts).
// - Cancellation: when the call ends early the worker is told to stop; it
//   stops after the read under way, closes its files and is free again.
import { stat } from 'node:fs/promises';
import type { Worker } from 'node:worker_threads';
import type { LogsResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { isMissing, listLogFiles, logFilePath } from '../logs/files.js';
import type { StreamOutcome } from '../logs/stream-logs.js';
import { EncodedChunkResponse } from './log-chunks.js';
import type { FromWorker, OffloadedQuery, ToWorker } from './log-chunks-protocol.js';
import { siblingModuleUrl, startModuleWorker } from '../util/module-worker.js';

/** The worker's module, next to this one (a .ts file when run from source). */
const WORKER_URL = siblingModuleUrl(import.meta.url, 'log-chunks-worker');

export interface ChunkWorkersOptions {
  /** Workers at most (reads beyond are done in place). */
  maxWorkers: number;
  /** A log smaller than this (all its files) is read in place. */
  minBytes: number;
  /** A worker with no read for this long ends. */
  idleMs: number;
}

export const DEFAULT_CHUNK_WORKERS: ChunkWorkersOptions = { maxWorkers: 2, minBytes: 1 << 20, idleMs: 30_000 };

interface Slot {
  readonly worker: Worker;
  ready: boolean;
  /** The read under way gets the worker's messages; undefined while the worker is free. */
  receive: ((message: FromWorker) => void) | undefined;
  idle: NodeJS.Timeout | undefined;
}

export class ChunkWorkers {
  private readonly slots = new Set<Slot>();
  private closed = false;
  /** Reads handed to workers so far. */
  reads = 0;

  constructor(private readonly options: ChunkWorkersOptions = DEFAULT_CHUNK_WORKERS) {}

  /** Worker threads alive (for tests and metrics). */
  get workers(): number {
    return this.slots.size;
  }

  /** Reads going on in workers. */
  get busy(): number {
    let n = 0;
    for (const slot of this.slots) if (slot.receive) n++;
    return n;
  }

  /**
   * The chunked LogsResponses of the read, made by a worker; undefined when
   * the log is too small or no worker is free (read it in place then). The
   * generator must be iterated (and returned, if left early): that releases
   * the worker.
   */
  async offload(query: OffloadedQuery, signal: AbortSignal): Promise<AsyncGenerator<LogsResponse, StreamOutcome, undefined> | undefined> {
    if (this.closed || (await logBytes(query.directory, this.options.minBytes)) < this.options.minBytes) return undefined;
    const slot = this.acquire();
    if (!slot) return undefined;
    this.reads++;
    return read(slot, query, signal);
  }

  /** Ends every worker (reads under way in them fail). */
  async close(): Promise<void> {
    this.closed = true;
    const slots = [...this.slots];
    this.slots.clear();
    await Promise.all(slots.map((slot) => this.end(slot)));
  }

  /** A ready, free worker, now busy; else undefined, and a worker is started if there is room. */
  private acquire(): Slot | undefined {
    for (const slot of this.slots) {
      if (!slot.ready || slot.receive) continue;
      clearTimeout(slot.idle);
      slot.idle = undefined;
      slot.receive = () => {}; // busy; read() sets the real receiver at once
      return slot;
    }
    if (this.slots.size < this.options.maxWorkers) this.start();
    return undefined;
  }

  private start(): void {
    const worker = startModuleWorker(WORKER_URL);
    worker.unref(); // never what keeps the process alive
    const slot: Slot = { worker, ready: false, receive: undefined, idle: undefined };
    this.slots.add(slot);
    worker.on('message', (message: FromWorker) => {
      if (message.type === 'ready') {
        slot.ready = true;
        this.idle(slot);
        return;
      }
      const receive = slot.receive;
      if (message.type === 'end') {
        slot.receive = undefined;
        this.idle(slot);
      }
      receive?.(message);
    });
    const lost = (error: Error) => {
      if (!this.slots.delete(slot)) return;
      clearTimeout(slot.idle);
      slot.receive?.({ type: 'end', outcome: 'complete', failure: { message: `log reader thread failed: ${error.message}` } });
      slot.receive = undefined;
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`exited with code ${code}`)));
  }

  private idle(slot: Slot): void {
    clearTimeout(slot.idle);
    if (this.closed) return;
    slot.idle = setTimeout(() => {
      if (slot.receive || !this.slots.delete(slot)) return;
      void this.end(slot);
    }, this.options.idleMs);
    slot.idle.unref();
  }

  private async end(slot: Slot): Promise<void> {
    clearTimeout(slot.idle);
    slot.idle = undefined;
    await slot.worker.terminate();
  }
}

/** The bytes of the log's files, counted until `enough`. */
async function logBytes(directory: string, enough: number): Promise<number> {
  let bytes = 0;
  for (const index of await listLogFiles(directory)) {
    try {
      bytes += (await stat(logFilePath(directory, index))).size;
    } catch (error) {
      if (!isMissing(error)) throw error; // rotated away meanwhile
    }
    if (bytes >= enough) break;
  }
  return bytes;
}

/** Runs the read in the slot's worker and yields its messages; the worker is told to stop if the caller leaves early. */
async function* read(slot: Slot, query: OffloadedQuery, signal: AbortSignal): AsyncGenerator<LogsResponse, StreamOutcome, undefined> {
  const queue: FromWorker[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  slot.receive = (message) => {
    queue.push(message);
    wake?.();
  };
  const onAbort = () => wake?.();
  signal.addEventListener('abort', onAbort);
  const post = (message: ToWorker) => slot.worker.postMessage(message);
  post({ type: 'start', query });
  try {
    for (;;) {
      if (signal.aborted) return 'cancelled';
      const message = queue.shift();
      if (message === undefined) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      if (message.type === 'end') {
        ended = true;
        if (message.failure) throw Object.assign(new Error(message.failure.message), { code: message.failure.code });
        return message.outcome;
      }
      if (message.type !== 'batch') continue;
      const { buffers, messages } = message;
      for (let i = 0; i < messages.length; i += 3) {
        if (signal.aborted) return 'cancelled';
        yield new EncodedChunkResponse(Buffer.from(buffers[messages[i]!]!, messages[i + 1], messages[i + 2]));
      }
      post({ type: 'credit' });
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    // The worker stops after the read under way and closes its files; it is free again when its `end` comes.
    if (!ended) post({ type: 'stop' });
  }
}
