// Lines to chunked LogsResponses (LogsRequest.chunks): the output of
// consecutive lines of one stream as one run of text, each line with its
// "\n" (a piece of a line that goes on: without), optionally each line
// prefixed with its RFC 3339 time, up to CHUNK_BYTES a message. Encoded
// straight to protobuf (like batched entries in log-entries.ts): the line
// bytes are copied once into the message, and the whole chunk is checked for
// UTF-8 at once. A chunk that is not valid UTF-8 is split at its invalid
// lines, so only those go out as `data` and the text around them stays text.
import { isUtf8 } from 'node:buffer';
import { type LogChunk, LogsResponse, LogStream } from '../../gen/taskexecutor/v1/task_executor_service.js';
import type { StreamName } from '../logs/cri.js';
import type { LogLine } from '../logs/lines.js';
import { type LineRuns, STDOUT } from '../logs/record-table.js';
import { ENCODED, type PreEncoded } from './pre-encoded.js';
import { TAG_CHUNK, TAG_DATA, TAG_STREAM, TAG_TEXT, varintLength, writeVarint } from './protobuf-wire.js';

/** Output bytes after which a chunk is closed (a line piece is at most 64 KiB, so one chunk may hold that plus its time and "\n"). */
export const CHUNK_BYTES = 64 * 1024;

const WIRE_STREAM: Record<StreamName, LogStream> = { stdout: LogStream.LOG_STREAM_STDOUT, stderr: LogStream.LOG_STREAM_STDERR };

const NEWLINE = 0x0a;
/** "2026-12-03T13:37:00.123456789Z " */
const TIME_PREFIX = 31;

/**
 * Writes "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ " for the time at out[pos]. The
 * date and time of day are formatted once per second (lines come in time order).
 */
class TimeFormatter {
  private second = NaN;
  private readonly secondText = Buffer.alloc(19);

  write(out: Buffer, pos: number, timeMs: number, nanos: number): void {
    const second = Math.floor(timeMs / 1000);
    if (second !== this.second) {
      this.second = second;
      this.secondText.write(new Date(second * 1000).toISOString().slice(0, 19), 'latin1');
    }
    this.secondText.copy(out, pos);
    out[pos + 19] = 0x2e; // .
    let fraction = (timeMs - second * 1000) * 1_000_000 + nanos;
    for (let i = pos + 28; i > pos + 19; i--) {
      out[i] = 0x30 + (fraction % 10);
      fraction = Math.floor(fraction / 10);
    }
    out[pos + 29] = 0x5a; // Z
    out[pos + 30] = 0x20;
  }
}

/**
 * Turns the lines of one Logs call into chunked responses. Holds what must
 * carry over from one batch of lines to the next: which streams have a line
 * open (its next piece continues it, so gets no time of its own).
 */
export class ChunkEncoder {
  private readonly open: Record<StreamName, boolean> = { stdout: false, stderr: false };
  private readonly formatter: TimeFormatter | undefined;

  constructor(timestamps: boolean) {
    this.formatter = timestamps ? new TimeFormatter() : undefined;
  }

  /** The lines in order, in as few messages as CHUNK_BYTES and the stream changes allow; never an empty one. */
  *responses(lines: readonly LogLine[]): Generator<LogsResponse> {
    let first = 0;
    let bytes = 0;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      const next = lines[i + 1];
      bytes += line.bytes.length + 1 + (this.formatter ? TIME_PREFIX : 0);
      if (next === undefined || next.stream !== line.stream || bytes + next.bytes.length >= CHUNK_BYTES) {
        yield* this.run(lines, first, i + 1);
        first = i + 1;
        bytes = 0;
      }
    }
  }

  /**
   * The same responses as responses() would make of the same lines as
   * LogLines, from whole lines in a read buffer: the lines of a chunk are
   * moved together in that buffer (over the record headers between them)
   * and copied into the message at once. Rewrites runs (bytes, starts, ends).
   */
  *runResponses(runs: LineRuns): Generator<LogsResponse> {
    for (const message of this.runMessages(runs, false)) yield new EncodedChunkResponse(message);
  }

  /**
   * runResponses' messages as their encodings. `inPlace`: a message whose
   * chunk is one run of text or data is the read buffer's own bytes, its
   * LogsResponse header written over the record header in front of its
   * first line (a record header, 29 bytes at least, has room for it), so
   * the chunk is not copied: only for a caller that owns runs.bytes (the
   * messages share it, and are valid while it is not reused).
   */
  *runMessages(runs: LineRuns, inPlace: boolean): Generator<Buffer> {
    if (this.formatter) throw new Error('chunk encoding: line runs carry no times, so they cannot have timestamps');
    const { bytes, starts, ends, streams, count } = runs;
    let first = 0;
    /** Where the chunk's text (the lines first..i moved together) ends in bytes; it begins at starts[first]. */
    let end = 0;
    let size = 0;
    /** Where the last chunk's text ended: the next chunk's header may be written from here on. */
    let free = 0;
    for (let i = 0; i < count; i++) {
      const length = ends[i]! - starts[i]!;
      if (i === first) {
        end = ends[i]! + 1;
      } else {
        bytes.copyWithin(end, starts[i]!, ends[i]! + 1); // the line with its '\n'
        starts[i] = end;
        ends[i] = end + length;
        end += length + 1;
      }
      size += length + 1;
      const next = i + 1;
      if (next === count || streams[next] !== streams[i] || size + ends[next]! - starts[next]! >= CHUNK_BYTES) {
        yield* this.runOfRuns(runs, first, next, end, inPlace ? free : -1);
        free = end; // this chunk's messages end here at most
        first = next;
        size = 0;
      }
    }
  }

  /**
   * Lines [from, to) of runs, moved together to end at `end`: one stream,
   * whole lines. As run() does: one chunk when it is valid UTF-8, else runs
   * of valid and invalid lines. `free` >= 0: a single chunk is encoded in
   * place when its header fits between `free` and the chunk (see runMessages).
   */
  private *runOfRuns(runs: LineRuns, from: number, to: number, end: number, free: number): Generator<Buffer> {
    const { bytes, starts, ends } = runs;
    const stream: StreamName = runs.streams[from] === STDOUT ? 'stdout' : 'stderr';
    this.open[stream] = false;
    const content = bytes.subarray(starts[from]!, end);
    const whole = isUtf8(content);
    if (whole || to - from === 1) {
      yield (free >= 0 && chunkInPlace(stream, bytes, starts[from]!, end, whole, free)) || chunkOf(stream, content, whole);
      return;
    }
    let start = from;
    let valid = isUtf8(bytes.subarray(starts[from]!, ends[from]!));
    for (let i = from + 1; i <= to; i++) {
      const lineValid = i < to && isUtf8(bytes.subarray(starts[i]!, ends[i]!));
      if (i < to && lineValid === valid) continue;
      yield chunkOf(stream, bytes.subarray(starts[start]!, ends[i - 1]! + 1), valid);
      start = i;
      valid = lineValid;
    }
  }

  /** lines[from, to): one stream. One chunk when it is valid UTF-8, else runs of valid and invalid lines. */
  private *run(lines: readonly LogLine[], from: number, to: number): Generator<LogsResponse> {
    const stream = lines[from]!.stream;
    const openBefore = this.open[stream];
    this.open[stream] = lines[to - 1]!.partial;
    const whole = this.encode(lines, from, to, openBefore, undefined);
    if (whole || to - from === 1) {
      yield new EncodedChunkResponse(whole ?? this.encode(lines, from, to, openBefore, false)!);
      return;
    }
    let start = from;
    let valid = isUtf8(lines[from]!.bytes);
    for (let i = from + 1; i <= to; i++) {
      const lineValid = i < to && isUtf8(lines[i]!.bytes);
      if (i < to && lineValid === valid) continue;
      yield new EncodedChunkResponse(this.encode(lines, start, i, start === from ? openBefore : lines[start - 1]!.partial, valid)!);
      start = i;
      valid = lineValid;
    }
  }

  /**
   * The LogsResponse encoding of lines[from, to) as one chunk; `startsOpen`:
   * the first line continues one handed out before. `text`: undefined to
   * decide by checking the bytes (undefined comes back when they are not
   * UTF-8), else whether to send them as text.
   */
  private encode(lines: readonly LogLine[], from: number, to: number, startsOpen: boolean, text: boolean | undefined): Buffer | undefined {
    const formatter = this.formatter;
    let size = 0;
    for (let i = from; i < to; i++) {
      const line = lines[i]!;
      const opensLine = i === from ? !startsOpen : !lines[i - 1]!.partial;
      size += line.bytes.length + (line.partial ? 0 : 1) + (formatter && opensLine ? TIME_PREFIX : 0);
    }
    const { out, tagAt, contentStart } = startChunk(lines[from]!.stream, size);
    let pos = contentStart;
    for (let i = from; i < to; i++) {
      const line = lines[i]!;
      const opensLine = i === from ? !startsOpen : !lines[i - 1]!.partial;
      if (formatter && opensLine) {
        formatter.write(out, pos, line.timeMs, line.nanos ?? 0);
        pos += TIME_PREFIX;
      }
      out.set(line.bytes, pos);
      pos += line.bytes.length;
      if (!line.partial) out[pos++] = NEWLINE;
    }
    if (pos !== out.length) throw new Error(`chunk encoding: wrote ${pos} bytes of ${out.length}`);
    const valid = text ?? isUtf8(out.subarray(contentStart));
    if (text === undefined && !valid) return undefined;
    out[tagAt] = valid ? TAG_TEXT : TAG_DATA;
    return out;
  }
}

/**
 * A LogsResponse buffer for a chunk with `size` bytes of content, all but the
 * content and the tag that says text or data (at tagAt) written.
 */
function startChunk(stream: StreamName, size: number): { out: Buffer; tagAt: number; contentStart: number } {
  const chunkLength = 2 + 1 + varintLength(size) + size;
  const out = Buffer.allocUnsafe(1 + varintLength(chunkLength) + chunkLength);
  out[0] = TAG_CHUNK;
  let pos = writeVarint(out, 1, chunkLength);
  out[pos++] = TAG_STREAM;
  out[pos++] = WIRE_STREAM[stream];
  const tagAt = pos++;
  return { out, tagAt, contentStart: writeVarint(out, pos, size) };
}

/** The LogsResponse of the chunk of `content` as text or data. */
function chunkOf(stream: StreamName, content: Uint8Array, text: boolean): Buffer {
  const { out, tagAt, contentStart } = startChunk(stream, content.length);
  out[tagAt] = text ? TAG_TEXT : TAG_DATA;
  out.set(content, contentStart);
  return out;
}

/**
 * The LogsResponse of the chunk bytes[start, end) as text or data, its
 * header written in bytes right before `start`; undefined when the header
 * would reach below `free`.
 */
function chunkInPlace(stream: StreamName, bytes: Buffer, start: number, end: number, text: boolean, free: number): Buffer | undefined {
  const size = end - start;
  const chunkLength = 2 + 1 + varintLength(size) + size;
  const at = start - (1 + varintLength(chunkLength) + 2 + 1 + varintLength(size));
  if (at < free) return undefined;
  bytes[at] = TAG_CHUNK;
  let pos = writeVarint(bytes, at + 1, chunkLength);
  bytes[pos++] = TAG_STREAM;
  bytes[pos++] = WIRE_STREAM[stream];
  bytes[pos++] = text ? TAG_TEXT : TAG_DATA;
  if (writeVarint(bytes, pos, size) !== start) throw new Error('chunk encoding: the header in place does not end where the chunk begins');
  return bytes.subarray(at, end);
}

/**
 * A chunked LogsResponse that is sent as ChunkEncoder wrote it (see
 * pre-encoded.ts); its chunk is decoded only if some code reads it.
 */
export class EncodedChunkResponse implements LogsResponse, PreEncoded {
  readonly [ENCODED]: Buffer;
  stream = LogStream.LOG_STREAM_UNSPECIFIED;
  content = undefined;
  partial = false;
  time = undefined;
  entries = [];
  private decoded: LogChunk | undefined;

  constructor(encoded: Buffer) {
    this[ENCODED] = encoded;
  }

  get chunk(): LogChunk | undefined {
    this.decoded ??= LogsResponse.decode(this[ENCODED]).chunk;
    return this.decoded;
  }
}
