// A line-per-message Logs response is sized by logsResponseSize for the
// stream adapter's bound on unsent bytes (server-stream.ts): the bound holds
// only if the size is that of the bytes sent, whatever the text's script.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogsResponse, LogStream } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { logsResponseSize } from '../../src/api/logs-handler.js';

const line = (content: LogsResponse['content']): LogsResponse => ({ ...LogsResponse.fromPartial({ stream: LogStream.LOG_STREAM_STDOUT }), content });

test('a text line is sized by its UTF-8 bytes, not its UTF-16 length', () => {
  for (const text of ['plain ascii', '日本語のログ行'.repeat(100), 'emoji 🚀🚀🚀', 'é'.repeat(1000)]) {
    assert.equal(logsResponseSize(line({ $case: 'text', value: text })), Buffer.byteLength(text), text.slice(0, 20));
  }
});

test('a line of raw bytes is sized by its bytes', () => {
  assert.equal(logsResponseSize(line({ $case: 'data', value: Buffer.from([0xff, 0xfe, 0x00, 0x41]) })), 4);
});

test('a response without content counts nothing', () => {
  assert.equal(logsResponseSize(line(undefined)), 0);
});
