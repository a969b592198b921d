// The records of one read as places in the read buffer, in typed arrays (one
// set per reader, reused): what a bulk read that needs neither times nor
// line reassembly works with, instead of an object per record. The same
// records as LogRecord objects on demand (toRecords), for the general path.
import type { RecordTag, StreamName } from './cri.js';
import type { LogRecord } from './reader.js';

/** Numbers for the streams in RecordTable.streams. */
export const STDOUT = 0;
export const STDERR = 1;
const STREAM_NAMES: readonly StreamName[] = ['stdout', 'stderr'];
const NONE = -1;

/**
 * Whole lines as places in one buffer: line i is bytes[starts[i], ends[i])
 * of stream streams[i] (STDOUT or STDERR), and bytes[ends[i]] is its '\n'.
 * Valid until the next read.
 */
export interface LineRuns {
  readonly bytes: Buffer;
  readonly count: number;
  readonly starts: Int32Array;
  readonly ends: Int32Array;
  readonly streams: Uint8Array;
}

export class RecordTable implements LineRuns {
  bytes: Buffer = Buffer.alloc(0);
  count = 0;
  /** The file index and the file offset of bytes[0]. */
  index = 0;
  offset = 0;
  /**
   * The records make whole lines as a LineAssembler would hand them out:
   * each F record, with the P records of its stream right before it, is one
   * line of at most maxPayload bytes (no record of the other stream between
   * the pieces of a line, no piece that would be handed out on its own).
   * Only the last line may still be open (see wholeLines).
   */
  private plain = true;
  /** The stream of the P records at the end so far (NONE: none) and their length. */
  private openStream = NONE;
  private openLength = 0;
  /** The index of the first P record; -1 when there is none. */
  private firstPiece = NONE;
  /** Bit 1 << STDOUT / 1 << STDERR: a record of that stream is in the table. */
  private seen = 0;
  /** Record i starts at bytes[recordStarts[i]]; its payload is bytes[starts[i], ends[i]). */
  recordStarts = new Int32Array(1024);
  starts = new Int32Array(1024);
  ends = new Int32Array(1024);
  streams = new Uint8Array(1024);
  /** 1 for a P record. */
  pieces = new Uint8Array(1024);

  reset(bytes: Buffer, index: number, offset: number): void {
    this.bytes = bytes;
    this.index = index;
    this.offset = offset;
    this.count = 0;
    this.plain = true;
    this.openStream = NONE;
    this.firstPiece = NONE;
    this.seen = 0;
  }

  /** Whether a record of the stream (STDOUT or STDERR) is in the table. */
  has(stream: number): boolean {
    return (this.seen & (1 << stream)) !== 0;
  }

  /** Whether the records are whole lines (each F with its P records), so that joinPieces() may make lines of them. */
  wholeLines(): boolean {
    return this.plain && this.openStream === NONE;
  }

  add(recordStart: number, payloadStart: number, end: number, stream: StreamName, tag: RecordTag, maxPayload: number): void {
    const i = this.count++;
    if (i === this.starts.length) this.grow();
    this.recordStarts[i] = recordStart;
    this.starts[i] = payloadStart;
    this.ends[i] = end;
    const number = stream === 'stdout' ? STDOUT : STDERR;
    this.streams[i] = number;
    this.seen |= 1 << number;
    const piece = tag === 'P';
    this.pieces[i] = piece ? 1 : 0;
    if (piece && this.firstPiece === NONE) this.firstPiece = i;
    const length = end - payloadStart;
    if (this.openStream === NONE) {
      this.openLength = length;
    } else {
      if (this.openStream !== number) this.plain = false;
      this.openLength += length;
    }
    // As LineAssembler.push: a line of more than maxPayload bytes, or pieces of exactly that many, go out in pieces.
    if (this.openLength > maxPayload || (piece && this.openLength === maxPayload)) this.plain = false;
    this.openStream = piece ? number : NONE;
  }

  /**
   * Only when wholeLines(): makes each F record with the P records before it
   * one line, by moving the pieces' payloads up to the F record's payload
   * (over the headers between them) in the buffer.
   */
  joinPieces(): void {
    if (this.firstPiece === NONE) return; // every record is a line already
    const { bytes, starts, ends, pieces } = this;
    // The records before the first P record are lines as they stand.
    let lines = this.firstPiece;
    let open = false;
    let lineStart = 0;
    let lineEnd = 0;
    for (let i = this.firstPiece; i < this.count; i++) {
      const start = starts[i]!;
      if (open) {
        const held = lineEnd - lineStart;
        bytes.copyWithin(start - held, lineStart, lineEnd);
        lineStart = start - held;
      } else {
        lineStart = start;
      }
      lineEnd = ends[i]!;
      open = pieces[i] === 1;
      if (open) continue;
      starts[lines] = lineStart;
      ends[lines] = lineEnd;
      this.streams[lines] = this.streams[i]!;
      lines++;
    }
    this.count = lines;
  }

  /** Keeps only the records of the streams marked true (in order). */
  keepStreams(keep: readonly [boolean, boolean]): void {
    if (!keep[STDOUT]) this.seen &= ~(1 << STDOUT);
    if (!keep[STDERR]) this.seen &= ~(1 << STDERR);
    let n = 0;
    this.firstPiece = NONE;
    for (let i = 0; i < this.count; i++) {
      if (!keep[this.streams[i]!]) continue;
      if (this.pieces[i] === 1 && this.firstPiece === NONE) this.firstPiece = n;
      if (n !== i) {
        this.recordStarts[n] = this.recordStarts[i]!;
        this.starts[n] = this.starts[i]!;
        this.ends[n] = this.ends[i]!;
        this.streams[n] = this.streams[i]!;
        this.pieces[n] = this.pieces[i]!;
      }
      n++;
    }
    this.count = n;
  }

  /** The records as LogRecord objects (no times), a payload longer than maxPayload split into P records first. */
  toRecords(maxPayload: number): LogRecord[] {
    const records: LogRecord[] = [];
    for (let i = 0; i < this.count; i++) {
      const stream = STREAM_NAMES[this.streams[i]!]!;
      const tag: RecordTag = this.pieces[i] ? 'P' : 'F';
      pushRecord(records, this.index, this.offset + this.recordStarts[i]!, NaN, 0, stream, tag, this.bytes.subarray(this.starts[i]!, this.ends[i]!), maxPayload);
    }
    return records;
  }

  private grow(): void {
    const size = this.starts.length * 2;
    const grown = <T extends Int32Array | Uint8Array>(from: T, make: (n: number) => T): T => {
      const to = make(size);
      to.set(from);
      return to;
    };
    this.recordStarts = grown(this.recordStarts, (n) => new Int32Array(n));
    this.starts = grown(this.starts, (n) => new Int32Array(n));
    this.ends = grown(this.ends, (n) => new Int32Array(n));
    this.streams = grown(this.streams, (n) => new Uint8Array(n));
    this.pieces = grown(this.pieces, (n) => new Uint8Array(n));
  }
}

/** Appends one record; a payload longer than maxPayload as P records of maxPayload bytes and the rest. */
export function pushRecord(
  records: LogRecord[],
  index: number,
  offset: number,
  timeMs: number,
  nanos: number,
  stream: StreamName,
  tag: RecordTag,
  payload: Buffer,
  maxPayload: number,
): void {
  let at = 0;
  while (payload.length - at > maxPayload) {
    records.push({ index, offset, timeMs, nanos, stream, tag: 'P', payload: payload.subarray(at, at + maxPayload) });
    at += maxPayload;
  }
  records.push({ index, offset, timeMs, nanos, stream, tag, payload: at === 0 ? payload : payload.subarray(at) });
}
