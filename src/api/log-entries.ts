// Lines to LogEntry messages: as objects (the generated types), and straight
// to the protobuf encoding of a batched LogsResponse. The direct encoding is
// what makes bulk reads fast: a line's bytes are checked for UTF-8 and copied
// into the message as they are, where the generic path would decode them to a
// string and encode that back (most of the cost of a batched read). Both give
// the same message; test/integration/logs.test.ts checks that they agree.
import { isUtf8 } from 'node:buffer';
import { LogsResponse, type LogEntry, LogStream } from '../../gen/taskexecutor/v1/task_executor_service.js';
import type { StreamName } from '../logs/cri.js';
import type { LogLine } from '../logs/lines.js';
import { decodeUtf8 } from '../logs/utf8.js';
import { ENCODED, type PreEncoded } from './pre-encoded.js';
import {
  TAG_DATA,
  TAG_ENTRIES,
  TAG_NANOS,
  TAG_PARTIAL,
  TAG_SECONDS,
  TAG_STREAM,
  TAG_TEXT,
  TAG_TIME,
  varintLength,
  writeVarint,
} from './protobuf-wire.js';

const WIRE_STREAM: Record<StreamName, LogStream> = { stdout: LogStream.LOG_STREAM_STDOUT, stderr: LogStream.LOG_STREAM_STDERR };

export function toLogEntry(line: LogLine, timestamps: boolean): LogEntry {
  const text = decodeUtf8(line.bytes);
  return {
    stream: WIRE_STREAM[line.stream],
    // Raw bytes are copied: the line may be a view of a larger read buffer.
    content: text !== undefined ? { $case: 'text', value: text } : { $case: 'data', value: Buffer.from(line.bytes) },
    partial: line.partial,
    time: timestamps ? new Date(line.timeMs) : undefined,
  };
}

/** A Timestamp's seconds and nanos (nanos never negative, as the type requires). */
const splitTime = (timeMs: number) => ({
  seconds: Math.floor(timeMs / 1000),
  nanos: (timeMs - Math.floor(timeMs / 1000) * 1000) * 1_000_000,
});

function timestampLength(timeMs: number): number {
  const { seconds, nanos } = splitTime(timeMs);
  return (seconds !== 0 ? 1 + varintLength(seconds) : 0) + (nanos !== 0 ? 1 + varintLength(nanos) : 0);
}

function entryLength(line: LogLine, timestamps: boolean): number {
  const size = line.bytes.length;
  let length = 2 + 1 + varintLength(size) + size + (line.partial ? 2 : 0);
  if (timestamps) {
    const time = timestampLength(line.timeMs);
    length += 1 + varintLength(time) + time;
  }
  return length;
}

/** The protobuf encoding of a LogsResponse whose `entries` are these lines (and no other field set). */
export function encodeBatch(lines: readonly LogLine[], timestamps: boolean): Buffer {
  const lengths = lines.map((line) => entryLength(line, timestamps));
  let total = 0;
  for (const length of lengths) total += 1 + varintLength(length) + length;
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (let i = 0; i < lines.length; i++) {
    const { stream, bytes, partial, timeMs } = lines[i]!;
    out[pos++] = TAG_ENTRIES;
    pos = writeVarint(out, pos, lengths[i]!);
    out[pos++] = TAG_STREAM;
    out[pos++] = WIRE_STREAM[stream];
    // Text and data have the same encoding; only the field differs.
    out[pos++] = isUtf8(bytes) ? TAG_TEXT : TAG_DATA;
    pos = writeVarint(out, pos, bytes.length);
    out.set(bytes, pos);
    pos += bytes.length;
    if (partial) {
      out[pos++] = TAG_PARTIAL;
      out[pos++] = 1;
    }
    if (timestamps) {
      const { seconds, nanos } = splitTime(timeMs);
      out[pos++] = TAG_TIME;
      pos = writeVarint(out, pos, timestampLength(timeMs));
      if (seconds !== 0) {
        out[pos++] = TAG_SECONDS;
        pos = writeVarint(out, pos, seconds);
      }
      if (nanos !== 0) {
        out[pos++] = TAG_NANOS;
        pos = writeVarint(out, pos, nanos);
      }
    }
  }
  if (pos !== total) throw new Error(`encodeBatch: wrote ${pos} bytes of ${total}`);
  return out;
}

/**
 * A batched LogsResponse that is sent as `encodeBatch` wrote it (see
 * pre-encoded.ts); its entries are decoded only if some code reads them.
 */
export class EncodedLogsResponse implements LogsResponse, PreEncoded {
  readonly [ENCODED]: Buffer;
  stream = LogStream.LOG_STREAM_UNSPECIFIED;
  content = undefined;
  partial = false;
  time = undefined;
  private decoded: LogEntry[] | undefined;

  constructor(lines: readonly LogLine[], timestamps: boolean) {
    this[ENCODED] = encodeBatch(lines, timestamps);
  }

  get entries(): LogEntry[] {
    this.decoded ??= LogsResponse.decode(this[ENCODED]).entries;
    return this.decoded;
  }
}
