// Calls the Logs RPC of a test executor and turns what it sends back into lines.
import assert from 'node:assert/strict';
import type { ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import { LogsRequest, type LogsResponse, type LogStream } from '../../gen/taskexecutor/v1/task_executor_service.js';
import type { TestExecutor } from './executor.js';

export interface Result {
  messages: LogsResponse[];
  error?: ServiceError;
}

/** Starts a Logs call and collects every message until the stream ends (OK or not). */
export function openLogs(te: Pick<TestExecutor, 'client'>, request: Partial<LogsRequest>, onData?: (m: LogsResponse, call: ClientReadableStream<LogsResponse>) => void) {
  const call = te.client.logs(LogsRequest.fromPartial(request));
  const messages: LogsResponse[] = [];
  const done = new Promise<Result>((resolve) => {
    call.on('data', (message: LogsResponse) => {
      messages.push(message);
      onData?.(message, call);
    });
    call.on('error', (error: ServiceError) => resolve({ messages, error }));
    call.on('end', () => resolve({ messages }));
  });
  return { call, messages, done };
}

export async function readLogs(te: Pick<TestExecutor, 'client'>, request: Partial<LogsRequest>): Promise<LogsResponse[]> {
  const { messages, error } = await openLogs(te, request).done;
  assert.equal(error, undefined, `stream failed: ${error?.details}`);
  return messages;
}

export const bytesOf = (m: LogsResponse): Buffer =>
  m.content?.$case === 'text' ? Buffer.from(m.content.value, 'utf8') : m.content?.$case === 'data' ? m.content.value : Buffer.alloc(0);

/** Joins partial pieces: one entry per line, labelled by stream, in the order lines were completed. */
export function linesOf(messages: LogsResponse[]): { stream: LogStream; text: string }[] {
  const open = new Map<LogStream, Buffer[]>();
  const lines: { stream: LogStream; text: string }[] = [];
  for (const m of messages) {
    const parts = [...(open.get(m.stream) ?? []), bytesOf(m)];
    if (m.partial) open.set(m.stream, parts);
    else {
      open.delete(m.stream);
      lines.push({ stream: m.stream, text: Buffer.concat(parts).toString('utf8') });
    }
  }
  for (const [stream, parts] of open) lines.push({ stream, text: Buffer.concat(parts).toString('utf8') });
  return lines;
}

export const texts = (messages: LogsResponse[]) => linesOf(messages).map((l) => l.text);
