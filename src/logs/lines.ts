// Turns records into output lines, per stream: P records are joined up to and
// including the stream's next F. A line longer than `maxPiece` bytes is handed
// out in pieces marked partial (the next piece of the same stream continues
// it), so no more than about `maxPiece` bytes of one line are ever held.
// Pieces are cut between UTF-8 characters, so a valid line stays valid text.
import type { StreamName } from './cri.js';
import type { LogRecord } from './reader.js';
import { incompleteTail, utf8Cut } from './utf8.js';

export interface LogLine {
  stream: StreamName;
  bytes: Buffer;
  /** The line goes on in the next line of the same stream. */
  partial: boolean;
  /** When the first byte of this piece was written (epoch ms, floored); NaN when the reader parsed no times. */
  timeMs: number;
  /** Nanoseconds past timeMs (0 to 999999); absent means 0. */
  nanos?: number;
}

interface Pending {
  chunks: Buffer[];
  length: number;
  timeMs: number;
  nanos: number;
}

export class LineAssembler {
  private readonly pending = new Map<StreamName, Pending>();
  /** Per stream: the last line handed out was partial, so a receiver holds the start of a line. (Fields, not a Set: this changes for every line.) */
  private readonly open: Record<StreamName, boolean> = { stdout: false, stderr: false };

  constructor(private readonly maxPiece = 64 * 1024) {}

  /** Adds one record; complete lines and full pieces go to `out`. */
  push(record: LogRecord, out: LogLine[]): void {
    const { stream, payload, tag, timeMs, nanos } = record;
    let pending = this.pending.get(stream);
    if (!pending) {
      if (tag === 'F' && payload.length <= this.maxPiece) {
        this.emit(out, { stream, bytes: payload, partial: false, timeMs, nanos });
        return;
      }
      pending = { chunks: [], length: 0, timeMs, nanos };
      this.pending.set(stream, pending);
    }
    // Copied: the payload may share a large read buffer we must not keep alive.
    if (payload.length > 0) {
      pending.chunks.push(Buffer.from(payload));
      pending.length += payload.length;
    }
    while (pending.length > this.maxPiece || (tag === 'P' && pending.length === this.maxPiece)) {
      this.emitPiece(stream, pending, this.maxPiece, out, timeMs, nanos);
    }
    if (tag === 'F') {
      this.pending.delete(stream);
      this.emit(out, { stream, bytes: join(pending), partial: false, timeMs: pending.timeMs, nanos: pending.nanos });
    }
  }

  /** No piece of a line is held. */
  idle(): boolean {
    return this.pending.size === 0;
  }

  /**
   * Whole lines of the stream were handed out without push() (a bulk read
   * of F records, see stream-logs.ts): no line of it is open any more.
   */
  wholeLinesOut(stream: StreamName): void {
    this.open[stream] = false;
  }

  /**
   * Hands out what is held of unfinished lines, marked partial. Unless `final`,
   * an incomplete UTF-8 character at the end is kept back for the next piece.
   */
  flush(out: LogLine[], final: boolean): void {
    for (const [stream, pending] of this.pending) {
      const bytes = join(pending);
      const keep = final ? 0 : incompleteTail(bytes);
      if (bytes.length > keep) this.emit(out, { stream, bytes: bytes.subarray(0, bytes.length - keep), partial: true, timeMs: pending.timeMs, nanos: pending.nanos });
      if (keep === 0) {
        this.pending.delete(stream);
      } else {
        pending.chunks = [Buffer.from(bytes.subarray(bytes.length - keep))];
        pending.length = keep;
      }
    }
  }

  /**
   * Output was lost (deleted by rotation before it was read): ends every open
   * line where it stands, so what follows the gap is never glued to it. What is
   * held goes out as a complete line; a line already partly handed out is
   * closed with an empty final piece.
   */
  breakLines(out: LogLine[], timeMs: number): void {
    for (const [stream, pending] of this.pending) this.emit(out, { stream, bytes: join(pending), partial: false, timeMs: pending.timeMs, nanos: pending.nanos });
    this.pending.clear();
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.open[stream]) this.emit(out, { stream, bytes: Buffer.alloc(0), partial: false, timeMs, nanos: 0 });
    }
  }

  private emit(out: LogLine[], line: LogLine): void {
    this.open[line.stream] = line.partial;
    out.push(line);
  }

  private emitPiece(stream: StreamName, pending: Pending, limit: number, out: LogLine[], nextTimeMs: number, nextNanos: number): void {
    const bytes = join(pending);
    const cut = utf8Cut(bytes, limit) || limit;
    this.emit(out, { stream, bytes: bytes.subarray(0, cut), partial: true, timeMs: pending.timeMs, nanos: pending.nanos });
    pending.chunks = [bytes.subarray(cut)];
    pending.length = bytes.length - cut;
    pending.timeMs = nextTimeMs;
    pending.nanos = nextNanos;
  }
}

function join(pending: Pending): Buffer {
  if (pending.chunks.length !== 1) pending.chunks = [Buffer.concat(pending.chunks, pending.length)];
  return pending.chunks[0]!;
}
