// The client's fast decoder of Logs responses (src/client/logs-decoding.ts)
// gives exactly what the generated decoder gives, for any message.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { LogsResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { decodeLogsResponse } from '../../src/client/logs-decoding.js';
import { varintLength, writeVarint } from '../../src/api/protobuf-wire.js';

/** A length-delimited field with raw bytes, for strings that are not valid UTF-8 (the encoder cannot make those). */
function rawField(tag: number, bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(1 + varintLength(bytes.length) + bytes.length);
  out[0] = tag;
  out.set(bytes, writeVarint(out, 1, bytes.length));
  return out;
}

const entry = fc.record({
  stream: fc.integer({ min: 0, max: 3 }),
  content: fc.option(
    fc.oneof(
      fc.record({ $case: fc.constant('text' as const), value: fc.string({ unit: 'binary', maxLength: 300 }) }),
      fc.record({ $case: fc.constant('data' as const), value: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)) }),
    ),
    { nil: undefined },
  ),
  partial: fc.boolean(),
  time: fc.option(fc.date({ min: new Date(0), max: new Date(Date.UTC(2200, 0)), noInvalidDate: true }), { nil: undefined }),
});

describe('client decoding of Logs responses', () => {
  test('a batch of any entries decodes to the same objects as with the generated decoder', () => {
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 30 }), (entries) => {
        const bytes = Buffer.from(LogsResponse.encode(LogsResponse.fromPartial({ entries })).finish());
        assert.deepEqual(decodeLogsResponse(bytes), LogsResponse.decode(bytes));
      }),
    );
  });

  test('text that is not valid UTF-8, and fields or messages the fast path does not expect, decode as the generated decoder has them', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (raw) => {
        const text = rawField(0x12, raw);
        const bytes = rawField(0x32, Buffer.concat([Buffer.from([0x08, 0x01]), text]));
        assert.deepEqual(decodeLogsResponse(bytes), LogsResponse.decode(bytes), JSON.stringify([...raw]));
      }),
    );
    const others = [
      LogsResponse.fromPartial({ stream: 1, content: { $case: 'text', value: 'one line' }, partial: true }),
      LogsResponse.fromPartial({ chunk: { stream: 2, content: { $case: 'text', value: 'a\nb\n' } } }),
      LogsResponse.fromPartial({ entries: [{ stream: -1 }] }),
      LogsResponse.fromPartial({ entries: [{ time: new Date(-5000) }] }),
      LogsResponse.fromPartial({}),
    ];
    for (const message of others) {
      const bytes = Buffer.from(LogsResponse.encode(message).finish());
      assert.deepEqual(decodeLogsResponse(bytes), LogsResponse.decode(bytes));
    }
    const unknownField = rawField(0x32, Buffer.from([0x08, 0x01, 0x30, 0x07]));
    assert.deepEqual(decodeLogsResponse(unknownField), LogsResponse.decode(unknownField));
  });
});
