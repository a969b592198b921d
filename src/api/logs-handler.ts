// The Logs RPC: checks the request, asks the manager where the task's output
// lives and streams it with src/logs, translating lines to LogsResponse
// messages: one line per message, with `batch` the lines that are ready
// packed into messages of up to about BATCH_BYTES of output, or with `chunks`
// their text concatenated into chunks (log-chunks.ts). Flow control and
// cancellation come from server-stream.ts.
import type { Logger } from 'pino';
import { LogStream, type LogsRequest, type LogsResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { invalidArgument, notFound } from '../errors.js';
import type { StreamName } from '../logs/cri.js';
import type { LogLine } from '../logs/lines.js';
import { isLines, type LogBatch, type LogsQuery, streamLogs, type StreamOutcome, type TaskLiveness } from '../logs/stream-logs.js';
import type { TaskManager } from '../manager/task-manager.js';
import { ChunkEncoder } from './log-chunks.js';
import type { ChunkWorkers } from './log-chunks-offload.js';
import { EncodedLogsResponse, toLogEntry } from './log-entries.js';
import type { ServerStreamHandler } from './server-stream.js';

/** `chunkWorkers`: worker threads for bulk chunked reads (log-chunks-offload.ts); without, every read is done on the main thread. */
export function logsHandler(manager: TaskManager, log: Logger, chunkWorkers?: ChunkWorkers): ServerStreamHandler<LogsRequest, LogsResponse> {
  return async function* logs(request, signal, flow) {
    const query = parseRequest(request);
    const location = manager.logLocation(request.name); // INVALID_ARGUMENT for a bad name, NOT_FOUND for an unknown one
    if (!location) return; // never started: no output
    // A bulk read of chunks goes to a worker thread when the log is big and one is free (the same messages).
    const bulk = chunkWorkers && request.chunks && !query.follow && !query.times && query.sinceMs === undefined && query.limitBytes === undefined;
    const offloaded = bulk ? await chunkWorkers.offload({ directory: location.directory, streams: query.streams, tailLines: query.tailLines }, signal) : undefined;
    if (offloaded) {
      const outcome = yield* offloaded;
      log.debug({ task: request.name, outcome, worker: true }, 'logs stream ended');
      return;
    }
    // Chunks take whole lines as places in the read buffer too (LineRuns: a bulk read without a LogLine per line).
    // Lines as objects come at most MAX_LINES_PER_BATCH at a time: what a stalled stream holds (chunks keep whole
    // reads, so their messages are as big as CHUNK_BYTES allows; their bulk path makes no objects per line).
    const lines = streamLogs(
      { ...query, directory: location.directory, runs: request.chunks, onStall: flow.onStall, maxRecords: request.chunks ? undefined : MAX_LINES_PER_BATCH },
      livenessOf(manager, request.name),
      signal,
    );
    const chunks = request.chunks ? new ChunkEncoder(request.timestamps) : undefined;
    const messages = chunks
      ? (batch: LogBatch) => (isLines(batch) ? chunks.responses(batch) : chunks.runResponses(batch))
      : request.batch
        ? (batch: LogBatch) => batchedResponses(asLines(batch), request.timestamps)
        : (batch: LogBatch) => singleLineResponses(asLines(batch), request.timestamps);
    try {
      let next: IteratorResult<LogBatch, StreamOutcome>;
      while (!(next = await lines.next()).done) yield* messages(next.value);
      const outcome = next.value;
      log.debug({ task: request.name, outcome }, 'logs stream ended');
      if (outcome === 'gone') throw notFound(`task "${request.name}" was deleted while its logs were followed`);
    } finally {
      await lines.return('cancelled'); // stopped at a yield (cancelled): release its files and watches
    }
  };
}

/** Lines only come as LineRuns when asked for (LogsQuery.runs): for the other response forms, never. */
function asLines(batch: LogBatch): readonly LogLine[] {
  if (!isLines(batch)) throw new Error('Logs: line runs for a request that did not ask for them');
  return batch;
}

/** Checks the request; INVALID_ARGUMENT names the field and the rule. */
export function parseRequest(request: LogsRequest): Omit<LogsQuery, 'directory'> {
  const streams: Record<number, StreamName[]> = {
    [LogStream.LOG_STREAM_UNSPECIFIED]: ['stdout', 'stderr'],
    [LogStream.LOG_STREAM_STDOUT]: ['stdout'],
    [LogStream.LOG_STREAM_STDERR]: ['stderr'],
  };
  const selected = streams[request.stream];
  if (!selected) {
    throw invalidArgument(`stream ${request.stream} is not a LogStream: use LOG_STREAM_UNSPECIFIED (both), LOG_STREAM_STDOUT or LOG_STREAM_STDERR`);
  }
  const nonNegative = (value: number | undefined, field: string, meaning: string) => {
    if (value !== undefined && value < 0) throw invalidArgument(`${field} must not be negative (${meaning}), got ${value}`);
  };
  nonNegative(request.tailLines, 'tailLines', 'the number of last lines to send; 0 sends none');
  nonNegative(request.limitBytes, 'limitBytes', 'the number of output bytes after which to stop');
  nonNegative(request.sinceSeconds, 'sinceSeconds', 'how many seconds back to start');
  if (request.sinceTime !== undefined && request.sinceSeconds !== undefined) {
    throw invalidArgument('sinceTime and sinceSeconds are mutually exclusive: set at most one of them');
  }
  if (request.batch && request.chunks) {
    throw invalidArgument('batch and chunks are mutually exclusive: chunks sends the output as text runs, batch as LogEntry lines; set at most one of them');
  }
  if (request.sinceTime !== undefined && Number.isNaN(request.sinceTime.getTime())) {
    throw invalidArgument('sinceTime is not a valid time');
  }
  const sinceMs =
    request.sinceTime !== undefined
      ? request.sinceTime.getTime()
      : request.sinceSeconds !== undefined
        ? Date.now() - request.sinceSeconds * 1000
        : undefined;
  return { streams: selected, tailLines: request.tailLines, limitBytes: request.limitBytes, sinceMs, follow: request.follow, times: request.timestamps };
}

/**
 * Most records read into objects at a time for line-per-message and batched
 * responses: about 120 KiB of heap for short lines, held while the client
 * does not read (a whole 256 KiB read of 100-byte lines was 0.6 MiB).
 */
export const MAX_LINES_PER_BATCH = 512;

/** Output bytes after which a batched message is closed (a line piece is at most 64 KiB on top). */
export const BATCH_BYTES = 64 * 1024;

/**
 * A line-per-message response's size on the wire, about: its content's bytes
 * (a string's length would count a CJK line a third of what is sent).
 * Batches and chunks are pre-encoded: sized by their encoding.
 */
export function logsResponseSize(response: LogsResponse): number {
  const content = response.content;
  if (!content) return 0;
  return content.$case === 'text' ? Buffer.byteLength(content.value, 'utf8') : content.value.length;
}

function* singleLineResponses(lines: readonly LogLine[], timestamps: boolean): Generator<LogsResponse> {
  for (const line of lines) yield { ...toLogEntry(line, timestamps), entries: [] };
}

/** The lines in order, in as few messages as BATCH_BYTES allows; never an empty one. */
function* batchedResponses(lines: readonly LogLine[], timestamps: boolean): Generator<LogsResponse> {
  let first = 0;
  let bytes = 0;
  for (let i = 0; i < lines.length; i++) {
    bytes += lines[i]!.bytes.length;
    if (bytes >= BATCH_BYTES || i === lines.length - 1) {
      yield new EncodedLogsResponse(lines.slice(first, i + 1), timestamps);
      first = i + 1;
      bytes = 0;
    }
  }
}

/** Ended = terminated; a task being deleted counts as running until it is gone, so its followers learn of the deletion. */
function livenessOf(manager: TaskManager, name: string): TaskLiveness {
  return {
    status() {
      const task = manager.find(name);
      if (!task) return 'gone';
      if (task.deletionRequestedAt) return 'active';
      return task.state.phase === 'terminated' ? 'ended' : 'active';
    },
    onChange(listener) {
      return manager.subscribe((event) => {
        if (event.task.name === name) listener();
      });
    },
  };
}
