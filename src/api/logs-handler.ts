// The Logs RPC: checks the request, asks the manager where the task's output
// lives and streams it with src/logs, translating lines to LogsResponse
// messages. Flow control and cancellation come from server-stream.ts.
import type { Logger } from 'pino';
import { LogStream, type LogsRequest, type LogsResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { invalidArgument, notFound } from '../errors.js';
import type { StreamName } from '../logs/cri.js';
import type { LogLine } from '../logs/lines.js';
import { type LogsQuery, streamLogs, type StreamOutcome, type TaskLiveness } from '../logs/stream-logs.js';
import { decodeUtf8 } from '../logs/utf8.js';
import type { TaskManager } from '../manager/task-manager.js';
import type { ServerStreamHandler } from './server-stream.js';

export function logsHandler(manager: TaskManager, log: Logger): ServerStreamHandler<LogsRequest, LogsResponse> {
  return async function* logs(request, signal) {
    const query = parseRequest(request);
    const location = manager.logLocation(request.name); // INVALID_ARGUMENT for a bad name, NOT_FOUND for an unknown one
    if (!location) return; // never started: no output
    const lines = streamLogs({ ...query, directory: location.directory }, livenessOf(manager, request.name), signal);
    try {
      let next: IteratorResult<LogLine, StreamOutcome>;
      while (!(next = await lines.next()).done) yield toLogsResponse(next.value, request.timestamps);
      const outcome = next.value;
      log.debug({ task: request.name, outcome }, 'logs stream ended');
      if (outcome === 'gone') throw notFound(`task "${request.name}" was deleted while its logs were followed`);
    } finally {
      await lines.return('cancelled'); // stopped at a yield (cancelled): release its files and watches
    }
  };
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
  if (request.sinceTime !== undefined && Number.isNaN(request.sinceTime.getTime())) {
    throw invalidArgument('sinceTime is not a valid time');
  }
  const sinceMs =
    request.sinceTime !== undefined
      ? request.sinceTime.getTime()
      : request.sinceSeconds !== undefined
        ? Date.now() - request.sinceSeconds * 1000
        : undefined;
  return { streams: selected, tailLines: request.tailLines, limitBytes: request.limitBytes, sinceMs, follow: request.follow };
}

const WIRE_STREAM: Record<StreamName, LogStream> = { stdout: LogStream.LOG_STREAM_STDOUT, stderr: LogStream.LOG_STREAM_STDERR };

export function toLogsResponse(line: LogLine, timestamps: boolean): LogsResponse {
  const text = decodeUtf8(line.bytes);
  return {
    stream: WIRE_STREAM[line.stream],
    // Raw bytes are copied: the line may be a view of a larger read buffer.
    content: text !== undefined ? { $case: 'text', value: text } : { $case: 'data', value: Buffer.from(line.bytes) },
    partial: line.partial,
    time: timestamps ? new Date(line.timeMs) : undefined,
  };
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
