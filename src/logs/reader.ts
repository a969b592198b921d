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
// - Reads start small and grow while they come back full, so a follower woken
//   for one new line reads a few KiB, and a bulk read soon reads whole buffers.
//   The small reads are synchronous: they fetch what the writer has just
//   written (so it is in the page cache), where a read on the thread pool
//   would add two thread hand-offs to every followed line.
// - A bulk read reads ahead: once a read comes back full, the next one (from
//   the end of its last whole record) starts on the thread pool at once, into
//   a second buffer, while the caller works through this one; the file read
//   and the records' handling then overlap instead of taking turns.
import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open, stat } from 'node:fs/promises';
import { parseHeader, parseHeaderInto, type RecordHeader, type RecordTag, type StreamName, subMillisecondNanos } from './cri.js';
import { isMissing, listLogFiles, type LogPosition, logFilePath } from './files.js';
import { pushRecord, type RecordTable } from './record-table.js';

/** The first read after reaching the end of a file; reads grow from here while they come back full. */
const SMALL_READ = 16 * 1024;

export interface LogRecord {
  /** Where the record starts (all pieces of a split record share it): the file's index... */
  index: number;
  /** ...and the offset in it. */
  offset: number;
  /** When the record was written (epoch ms, floored); NaN unless the reader was asked for times. */
  timeMs: number;
  /** Nanoseconds past timeMs (0 to 999999); 0 unless the reader was asked for times. */
  nanos: number;
  stream: StreamName;
  tag: RecordTag;
  /** Valid until the next read (it may share the read buffer). */
  payload: Buffer;
}

export interface ReadBatch {
  /** Empty when the records are in `table`. */
  records: LogRecord[];
  /** The table passed to read(), when it holds this batch's records (they are not in `records` then). */
  table?: RecordTable;
  /** Output was lost before these records (deleted by rotation before it was read). */
  gap: boolean;
}

export interface ReaderOptions {
  /** Bytes read at once; also the longest record handed out whole. */
  bufferSize?: number;
  /** Longest payload of one returned record; longer ones are split. */
  maxPayload?: number;
  /**
   * Most records one read() hands out as objects (default: a whole buffer's);
   * the rest of the buffer comes with the next read(), without a new file
   * read. A whole 256 KiB buffer of short lines is thousands of objects
   * (about 0.6 MiB of heap), all held by a consumer that stalls on them (a
   * client that does not read). Records in a RecordTable are not counted.
   */
  maxRecords?: number;
  /**
   * Parse the records' times (default true). Without, timeMs is NaN and a
   * header's timestamp is only checked for its shape: a bulk read that
   * needs no times (no `since`, no timestamps) saves most of a header's cost.
   */
  times?: boolean;
  /**
   * Every read synchronous, none ahead: for a reader on a thread of its own
   * (a bulk read in a worker, see src/api/log-chunks-offload.ts), where
   * blocking holds up nobody and a read on the thread pool would only add
   * two thread hand-offs per buffer. Each read then goes into a buffer of
   * its own, never reused: the caller may keep what it was handed out (and
   * transfer it to another thread).
   */
  blocking?: boolean;
}

interface ReadAhead {
  /** Where it reads: the offset of the next record after the last read, and how many bytes. */
  offset: number;
  size: number;
  buffer: Buffer;
  bytesRead: Promise<number>;
}

interface LongRecord {
  header: RecordHeader;
  nanos: number;
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
  private readonly maxRecords: number;
  private readonly times: boolean;
  private readonly blocking: boolean;
  /** Bytes to ask for in the next read: SMALL_READ after reaching the end, growing up to bufferSize while reads come back full. */
  private readSize: number;
  /** The current file has been read to its end at least once. */
  private reachedEnd = false;
  /**
   * Read buffers, reused (a fresh buffer per read costs an allocation and
   * page faults, on a followed line's way too). A read goes into the first;
   * while reads come back full (a bulk read), a read ahead goes into the one
   * not holding the records handed out. Once a read finds the end, buffers
   * larger than SMALL_READ are dropped: a follower that has caught up holds
   * one small buffer.
   */
  private readonly buffers: [Buffer | undefined, Buffer | undefined] = [undefined, undefined];
  /** The read under way ahead of the caller (see the top of the file); it belongs to `file`. */
  private ahead: ReadAhead | undefined;
  /** What is left of the last read's bytes (from `offset`, at least one whole record) after maxRecords records. */
  private rest: Buffer | undefined;
  /** Filled in for each record of a read (one object, not one per record). */
  private readonly header: RecordHeader = { timeMs: NaN, stream: 'stdout', tag: 'F', headerLength: 0 };

  constructor(
    private readonly dir: string,
    start: LogPosition,
    options: ReaderOptions = {},
  ) {
    this.index = start.index;
    this.offset = start.offset;
    this.bufferSize = options.bufferSize ?? 256 * 1024;
    this.maxPayload = options.maxPayload ?? 64 * 1024;
    this.maxRecords = options.maxRecords ?? Number.POSITIVE_INFINITY;
    this.times = options.times ?? true;
    this.blocking = options.blocking ?? false;
    this.readSize = Math.min(SMALL_READ, this.bufferSize);
  }

  /** The position of the next record to be read. */
  get position(): LogPosition {
    return { index: this.index, offset: this.offset };
  }

  /**
   * The next records, or undefined when everything written so far (and
   * complete) has been read. With a `table` (only for a reader without
   * times), the records of a buffer read go there instead of into objects;
   * the pieces of a record longer than the buffer still come as records.
   */
  async read(table?: RecordTable): Promise<ReadBatch | undefined> {
    if (table && this.times) throw new Error('a record table holds no times: read it with a reader made with times: false');
    for (;;) {
      if (this.closed) return undefined;
      if (!this.file && !(await this.openCurrent())) return undefined;
      if (this.long) return this.batch([await this.readLongPiece()]);

      const { records, consumed, stuck, again } = await this.readRecords(table);
      if (records.length > 0) return this.batch(records);
      if (table && table.count > 0) return { ...this.batch(records), table };
      if (consumed > 0 || again) continue; // only unparseable records (skipped), or a record longer than the read
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

  /**
   * The consumer has stopped taking records for now (a client that does not
   * read): gives back what is held only for speed, the read ahead and the
   * read buffers (512 KiB in a bulk read), so a stalled reader holds no more
   * than the records it handed out. Reads start small again afterwards and
   * grow while they come back full, as after reaching the end. Nothing is
   * lost or repeated: the read ahead is only a guess of the next read.
   */
  release(): void {
    this.ahead = undefined; // its buffer is not reused (dropped below); the read may finish: its result goes unused
    this.buffers[0] = undefined;
    this.buffers[1] = undefined;
    if (!this.blocking) this.readSize = Math.min(SMALL_READ, this.bufferSize);
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
    this.reachedEnd = false;
    this.long = undefined;
    this.longScan = undefined;
    this.rest = undefined;
    await this.dropAhead();
    await file?.close();
  }

  /** Waits for a read ahead that will not be used (its buffer must not be reused before it is done); its error is moot. */
  private async dropAhead(): Promise<void> {
    const ahead = this.ahead;
    this.ahead = undefined;
    await ahead?.bytesRead.catch(() => 0);
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

  /**
   * Reads up to readSize bytes at the position. Synchronous only for a small
   * read of a file already read to its end once: then it fetches what the
   * writer has just written, which is in the page cache (see the top of the file).
   */
  private async readChunk(): Promise<{ bytes: Buffer; full: boolean; size: number }> {
    const size = this.readSize;
    let ahead = this.ahead;
    if (ahead !== undefined && (ahead.offset !== this.offset || ahead.size !== size)) {
      await this.dropAhead(); // the records did not end where expected (e.g. an over-long one): read afresh
      ahead = undefined;
    }
    this.ahead = undefined;
    let buffer: Buffer;
    let bytesRead: number;
    if (ahead !== undefined) {
      ({ buffer } = ahead);
      bytesRead = await ahead.bytesRead;
    } else {
      buffer = this.buffer(0, size);
      if (this.blocking) this.buffers[0] = undefined; // the caller's to keep (see ReaderOptions.blocking)
      bytesRead =
        this.blocking || (this.reachedEnd && size <= SMALL_READ)
          ? readSync(this.file!.fd, buffer, 0, size, this.offset)
          : (await this.file!.read(buffer, 0, size, this.offset)).bytesRead;
    }
    const full = bytesRead === size;
    this.readSize = full ? Math.min(this.bufferSize, size * 4) : Math.min(SMALL_READ, this.bufferSize);
    if (full) {
      if (!this.blocking) this.readAhead(buffer, bytesRead);
    } else {
      this.reachedEnd = true;
      this.buffers[1] = undefined;
      if (this.buffers[0] !== undefined && this.buffers[0].length > SMALL_READ) this.buffers[0] = undefined;
    }
    return { bytes: buffer.subarray(0, bytesRead), full, size };
  }

  /** buffers[slot], (re)allocated to hold at least `size` bytes. */
  private buffer(slot: 0 | 1, size: number): Buffer {
    const buffer = this.buffers[slot];
    if (buffer !== undefined && buffer.length >= size) return buffer;
    const fresh = Buffer.allocUnsafe(size);
    this.buffers[slot] = fresh;
    return fresh;
  }

  /**
   * After a full read of `length` bytes into `read`: starts the next read,
   * from the end of its last whole record, which is where the caller will go
   * on once it has handled this one's records (if it does not, readChunk
   * drops it), into the other buffer.
   */
  private readAhead(read: Buffer, length: number): void {
    const last = read.lastIndexOf(10, length - 1);
    if (last < 0 || this.file === undefined) return; // no whole record (an over-long one, read by other means), or closed meanwhile
    const offset = this.offset + last + 1;
    const size = this.readSize;
    const buffer = this.buffer(read === this.buffers[0] ? 1 : 0, size);
    const bytesRead = this.file.read(buffer, 0, size, offset).then((result) => result.bytesRead);
    bytesRead.catch(() => {}); // handled when it is used; dropped, its error is moot
    this.ahead = { offset, size, buffer, bytesRead };
  }

  private async readRecords(table: RecordTable | undefined): Promise<{ records: LogRecord[]; consumed: number; stuck: boolean; again: boolean }> {
    const rest = this.rest;
    this.rest = undefined;
    const { bytes, full, size } = rest !== undefined ? { bytes: rest, full: false, size: rest.length } : await this.readChunk();
    table?.reset(bytes, this.index, this.offset);
    if (bytes.length === 0) return { records: [], consumed: 0, stuck: false, again: false };
    const records: LogRecord[] = [];
    const header = this.header;
    let pos = 0;
    for (;;) {
      const nl = bytes.indexOf(10, pos);
      if (nl < 0) break;
      if (table) {
        // Into the table: no object per record (see record-table.ts).
        if (parseHeaderInto(header, bytes, pos, nl, false)) table.add(pos, pos + header.headerLength, nl, header.stream, header.tag, this.maxPayload);
      } else if (parseHeaderInto(header, bytes, pos, nl, this.times)) {
        const nanos = this.times ? subMillisecondNanos(bytes, pos) : 0;
        const payloadStart = pos + header.headerLength;
        if (nl - payloadStart <= this.maxPayload) {
          // The common case, inline: one record for one line.
          const { timeMs, stream, tag } = header;
          records.push({ index: this.index, offset: this.offset + pos, timeMs, nanos, stream, tag, payload: bytes.subarray(payloadStart, nl) });
        } else {
          pushRecord(records, this.index, this.offset + pos, header.timeMs, nanos, header.stream, header.tag, bytes.subarray(payloadStart, nl), this.maxPayload);
        }
      }
      pos = nl + 1;
      if (records.length >= this.maxRecords) {
        if (bytes.indexOf(10, pos) >= 0) this.rest = bytes.subarray(pos); // else only a record still being written: read it afresh
        break;
      }
    }
    this.offset += pos;
    // No '\n' in a full read: a record longer than the read. Read more at once (again), up to a whole buffer (stuck).
    const noNewline = pos === 0 && full;
    return { records, consumed: pos, stuck: noNewline && size === this.bufferSize, again: noNewline && size < this.bufferSize };
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
    const header = parseHeader(chunk.subarray(0, bytesRead), 0, bytesRead, this.times);
    if (!header) {
      this.offset = end + 1;
      return true;
    }
    const nanos = this.times ? subMillisecondNanos(chunk, 0) : 0;
    this.long = { header, nanos, start: this.offset, next: this.offset + header.headerLength, end };
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
    const record: LogRecord = { index: this.index, offset: long.start, timeMs, nanos: long.nanos, stream, tag: last ? tag : 'P', payload };
    if (last) {
      this.offset = long.end + 1;
      this.long = undefined;
    }
    return record;
  }
}
