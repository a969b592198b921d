// The Logs RPC: checks the request, finds where the task's output lives and
// streams it with src/logs, translating lines to LogsResponse messages and
// grpc-js flow control ('drain', 'cancelled') to the sink the reader waits on.
import type { handleServerStreamingCall, ServerWritableStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { LogStream, type LogsRequest, type LogsResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { invalidArgument, notFound } from '../errors.js';
import type { StreamName } from '../logs/cri.js';
import type { LogLine } from '../logs/lines.js';
import { type LogsQuery, streamLogs, type TaskLiveness } from '../logs/stream-logs.js';
import { decodeUtf8 } from '../logs/utf8.js';
import type { TaskManager } from '../manager/task-manager.js';
import { toServiceError } from './status.js';
import { writeOrWait } from './backpressure.js';

type LogsCall = ServerWritableStream<LogsRequest, LogsResponse>;

export function logsHandler(manager: TaskManager, log: Logger): handleServerStreamingCall<LogsRequest, LogsResponse> {
  return (call) => void serveLogs(call, manager, log);
}

async function serveLogs(call: LogsCall, manager: TaskManager, log: Logger): Promise<void> {
  const cancel = new AbortController();
  const onCancel = () => cancel.abort();
  call.on('cancelled', onCancel);
  if (call.cancelled) cancel.abort();
  try {
    const { request } = call;
    const query = parseRequest(request);
    const { runtime, handle } = manager.attachment(request.name);
    const location = handle && runtime?.logs?.(handle);
    if (!location) {
      call.end(); // never started: no output
      return;
    }
    const outcome = await streamLogs(
      { ...query, directory: location.directory },
      sinkFor(call, request.timestamps, cancel.signal),
      livenessOf(manager, request.name),
      cancel.signal,
    );
    log.debug({ task: request.name, outcome }, 'logs stream ended');
    if (outcome === 'cancelled') return;
    if (outcome === 'gone') {
      call.emit('error', toServiceError(notFound(`task "${request.name}" was deleted while its logs were followed`), log));
    } else {
      call.end();
    }
  } catch (error) {
    if (!cancel.signal.aborted) call.emit('error', toServiceError(error, log));
  } finally {
    call.off('cancelled', onCancel);
  }
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

function sinkFor(call: LogsCall, timestamps: boolean, cancelled: AbortSignal) {
  return {
    send(line: LogLine): void | Promise<void> {
      return writeOrWait(call, toLogsResponse(line, timestamps), cancelled);
    },
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
