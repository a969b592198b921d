// Reads the records of a rotated log file set forward, in order, from a start
// position: complete records only (a record still being written is left until
// its '\n' is there), then the next file once the writer has moved on to it.
//
// - An open file keeps working after rotation deletes it; a file is known to be
//   complete once a higher-numbered one exists, so it is read to its end first.
// - A reader that fell so far behind that the next file is already gone goes on
//   with the lowest existing file and reports `gap` (nothing is invented).
// - A file removed and created again under the same name (not done by
//   task-shim, but possible for other writers) is followed to the new file.
// - Memory is bounded: one buffer per read; a record longer than the buffer is
//   found by scanning ahead for its '\n' and then handed out in pieces (split
//   into P records, which means the same thing).
import type { FileHandle } from 'node:fs/promises';
import { open, stat } from 'node:fs/promises';
import { parseHeader, type RecordHeader, type RecordTag, type StreamName } from './cri.js';
import { isMissing, listLogFiles, type LogPosition, logFilePath } from './files.js';

export interface LogRecord {
  /** Where the record starts (all pieces of a split record share it). */
  position: LogPosition;
  timeMs: number;
  stream: StreamName;
  tag: RecordTag;
  /** Valid until the next read (it may share the read buffer). */
  payload: Buffer;
}

export interface ReadBatch {
  records: LogRecord[];
  /** Output was lost before these records (deleted by rotation before it was read). */
  gap: boolean;
}

export interface ReaderOptions {
  /** Bytes read at once; also the longest record handed out whole. */
  bufferSize?: number;
  /** Longest payload of one returned record; longer ones are split. */
  maxPayload?: number;
}

interface LongRecord {
  header: RecordHeader;
  start: number;
  next: number;
  /** Offset of the record's '\n'. */
  end: number;
}

export class LogReader {
  private index: number;
  private offset: number;
  private file: FileHandle | undefined;
  /** A newer file exists, so the current one will not grow any more. */
  private final = false;
  private gap = false;
  private long: LongRecord | undefined;
  /** How far the search for the end of an over-long record got. */
  private longScan: number | undefined;
  private closed = false;
  private readonly bufferSize: number;
  private readonly maxPayload: number;

  constructor(
    private readonly dir: string,
    start: LogPosition,
    options: ReaderOptions = {},
  ) {
    this.index = start.index;
    this.offset = start.offset;
    this.bufferSize = options.bufferSize ?? 256 * 1024;
    this.maxPayload = options.maxPayload ?? 64 * 1024;
  }

  /** The position of the next record to be read. */
  get position(): LogPosition {
    return { index: this.index, offset: this.offset };
  }

  /** The next records, or undefined when everything written so far (and complete) has been read. */
  async read(): Promise<ReadBatch | undefined> {
    for (;;) {
      if (this.closed) return undefined;
      if (!this.file && !(await this.openCurrent())) return undefined;
      if (this.long) return this.batch([await this.readLongPiece()]);

      const { records, consumed, stuck } = await this.readRecords();
      if (records.length > 0) return this.batch(records);
      if (consumed > 0) continue; // only unparseable records: skipped
      if (stuck && (await this.findLongRecordEnd())) continue;
      if (!this.final) {
        // Caught up with this file. If the writer has moved on, read it once
        // more (it may have grown meanwhile), then go to the next file.
        if ((await this.successor()) === undefined) return undefined;
        this.final = true;
        continue;
      }
      // Complete and fully read; what remains (if anything) is a record cut
      // off for good, e.g. by a full disk.
      const next = await this.successor();
      await this.closeFile();
      if (next === undefined) return undefined; // cannot happen: files are only ever added
      if (next > this.index + 1) this.gap = true;
      this.index = next;
      this.offset = 0;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.closeFile();
  }

  private batch(records: LogRecord[]): ReadBatch {
    const gap = this.gap;
    this.gap = false;
    return { records, gap };
  }

  private async closeFile(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    this.final = false;
    this.long = undefined;
    this.longScan = undefined;
    await file?.close();
  }

  /** Opens the file at the position, or the lowest existing one above it; false when there is none. */
  private async openCurrent(): Promise<boolean> {
    for (;;) {
      const files = await listLogFiles(this.dir);
      const index = files.find((i) => i >= this.index);
      if (index === undefined) return false;
      if (index !== this.index) {
        if (this.index >= 0) this.gap = true; // our file was deleted before we got to it
        this.index = index;
        this.offset = 0;
      }
      try {
        this.file = await open(logFilePath(this.dir, index), 'r');
      } catch (error) {
        if (!isMissing(error)) throw error;
        continue; // deleted just now: look again
      }
      if (this.closed) {
        await this.closeFile();
        return false;
      }
      return true;
    }
  }

  /**
   * The file the writer went on with: the lowest one above ours, or ours again
   * when its name now belongs to a new file (a writer that removes and
   * recreates its log, as a restarted container's may). Undefined if none.
   */
  private async successor(): Promise<number | undefined> {
    const next = (await listLogFiles(this.dir)).find((i) => i > this.index);
    if (next !== undefined) return next;
    try {
      const [current, named] = await Promise.all([this.file!.stat(), stat(logFilePath(this.dir, this.index))]);
      return current.ino !== named.ino || current.dev !== named.dev ? this.index : undefined;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  private async readRecords(): Promise<{ records: LogRecord[]; consumed: number; stuck: boolean }> {
    // Sized to what is there, so an idle follower allocates nothing.
    const available = Math.min(this.bufferSize, (await this.file!.stat()).size - this.offset);
    if (available <= 0) return { records: [], consumed: 0, stuck: false };
    const buffer = Buffer.allocUnsafe(available);
    const { bytesRead } = await this.file!.read(buffer, 0, available, this.offset);
    const bytes = buffer.subarray(0, bytesRead);
    const records: LogRecord[] = [];
    let pos = 0;
    for (;;) {
      const nl = bytes.indexOf(10, pos);
      if (nl < 0) break;
      const header = parseHeader(bytes, pos, nl);
      if (header) {
        const position = { index: this.index, offset: this.offset + pos };
        this.pushPieces(records, position, header, bytes.subarray(pos + header.headerLength, nl));
      }
      pos = nl + 1;
    }
    this.offset += pos;
    return { records, consumed: pos, stuck: pos === 0 && bytesRead === this.bufferSize };
  }

  private pushPieces(records: LogRecord[], position: LogPosition, header: RecordHeader, payload: Buffer): void {
    const { timeMs, stream, tag } = header;
    let at = 0;
    while (payload.length - at > this.maxPayload) {
      records.push({ position, timeMs, stream, tag: 'P', payload: payload.subarray(at, at + this.maxPayload) });
      at += this.maxPayload;
    }
    records.push({ position, timeMs, stream, tag, payload: at === 0 ? payload : payload.subarray(at) });
  }

  /**
   * The record at the offset is longer than the buffer: looks for its '\n'
   * without keeping what lies between. True once found (the record is then
   * handed out piecewise, or skipped if it is not a record), false if the
   * '\n' is not written yet.
   */
  private async findLongRecordEnd(): Promise<boolean> {
    const chunk = Buffer.allocUnsafe(this.bufferSize);
    let scan = this.longScan ?? this.offset + this.bufferSize;
    let end: number | undefined;
    while (end === undefined) {
      const { bytesRead } = await this.file!.read(chunk, 0, this.bufferSize, scan);
      if (bytesRead === 0) break;
      const nl = chunk.subarray(0, bytesRead).indexOf(10);
      if (nl >= 0) end = scan + nl;
      else scan += bytesRead;
    }
    if (end === undefined) {
      this.longScan = scan;
      return false;
    }
    this.longScan = undefined;
    const { bytesRead } = await this.file!.read(chunk, 0, Math.min(this.bufferSize, 256), this.offset);
    const header = parseHeader(chunk.subarray(0, bytesRead), 0, bytesRead);
    if (!header) {
      this.offset = end + 1;
      return true;
    }
    this.long = { header, start: this.offset, next: this.offset + header.headerLength, end };
    return true;
  }

  private async readLongPiece(): Promise<LogRecord> {
    const long = this.long!;
    const length = Math.min(this.maxPayload, long.end - long.next);
    const payload = Buffer.allocUnsafe(length);
    const { bytesRead } = await this.file!.read(payload, 0, length, long.next);
    if (bytesRead !== length) throw new Error(`log file output.${this.index}.log shrank while it was read`);
    long.next += length;
    const last = long.next === long.end;
    const { timeMs, stream, tag } = long.header;
    const record: LogRecord = { position: { index: this.index, offset: long.start }, timeMs, stream, tag: last ? tag : 'P', payload };
    if (last) {
      this.offset = long.end + 1;
      this.long = undefined;
    }
    return record;
  }
}
