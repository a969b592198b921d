// Walks the records of a rotated log file set backwards, newest first, reading
// each file from its end in fixed-size chunks (never a whole file), and hands
// out headers and positions only: what `tail` and `since` need to choose where
// forward reading starts.
import { open } from 'node:fs/promises';
import { MAX_HEADER, parseHeader, type RecordTag, type StreamName } from './cri.js';
import { isMissing, listLogFiles, type LogPosition, logFilePath } from './files.js';

export interface RecordSpan {
  index: number;
  /** Offset of the record's first byte. */
  start: number;
  /** Offset just past its '\n'. */
  end: number;
  timeMs: number;
  stream: StreamName;
  tag: RecordTag;
}

const CHUNK = 64 * 1024;

/**
 * Complete records strictly before `before` (default: the end of the newest
 * file), newest first. Stops at the oldest file, or at the first older file
 * that no longer exists (deleted by rotation meanwhile). A visitor returning
 * false stops the walk.
 */
export async function scanBackward(dir: string, visit: (record: RecordSpan) => boolean, before?: LogPosition): Promise<void> {
  const files = (await listLogFiles(dir)).filter((i) => before === undefined || i <= before.index).reverse();
  for (const index of files) {
    const limit = before && index === before.index ? before.offset : Infinity;
    const go = await scanFile(dir, index, limit, visit);
    if (go === 'stop' || go === 'missing') return;
  }
}

async function scanFile(dir: string, index: number, limit: number, visit: (record: RecordSpan) => boolean): Promise<'stop' | 'missing' | 'done'> {
  let file;
  try {
    file = await open(logFilePath(dir, index), 'r');
  } catch (error) {
    if (isMissing(error)) return 'missing';
    throw error;
  }
  try {
    const size = Math.min(limit, (await file.stat()).size);
    const buffer = Buffer.allocUnsafe(CHUNK);
    // The chunk holds file bytes [chunkStart, chunkEnd).
    let chunkStart = size;
    let chunkEnd = size;
    const load = async (end: number) => {
      chunkStart = Math.max(0, end - CHUNK);
      chunkEnd = end;
      const { bytesRead } = await file.read(buffer, 0, chunkEnd - chunkStart, chunkStart);
      if (bytesRead !== chunkEnd - chunkStart) throw new Error(`log file output.${index}.log shrank while it was read`);
    };
    /** Offset of the last '\n' before `pos`, or -1. */
    const newlineBefore = async (pos: number): Promise<number> => {
      let searchEnd = pos;
      while (searchEnd > 0) {
        if (searchEnd <= chunkStart || searchEnd > chunkEnd) await load(searchEnd);
        const found = buffer.subarray(0, searchEnd - chunkStart).lastIndexOf(10);
        if (found >= 0) return chunkStart + found;
        searchEnd = chunkStart;
      }
      return -1;
    };
    const header = async (start: number, end: number) => {
      const stop = Math.min(end, start + MAX_HEADER);
      if (start >= chunkStart && stop <= chunkEnd) return parseHeader(buffer, start - chunkStart, end - chunkStart);
      const small = Buffer.allocUnsafe(stop - start);
      const { bytesRead } = await file.read(small, 0, stop - start, start);
      return parseHeader(small.subarray(0, bytesRead), 0, bytesRead);
    };

    // Whatever follows the last '\n' is a record still being written.
    let recordEnd = (await newlineBefore(size)) + 1;
    while (recordEnd > 0) {
      const start = (await newlineBefore(recordEnd - 1)) + 1;
      const parsed = await header(start, recordEnd - 1);
      if (parsed) {
        const { timeMs, stream, tag } = parsed;
        if (!visit({ index, start, end: recordEnd, timeMs, stream, tag })) return 'stop';
      }
      recordEnd = start;
    }
    return 'done';
  } finally {
    await file.close();
  }
}

/** The time of the first complete record of a file; undefined if it has none (or is gone). */
export async function firstRecordTime(dir: string, index: number): Promise<number | undefined> {
  let file;
  try {
    file = await open(logFilePath(dir, index), 'r');
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  try {
    const buffer = Buffer.allocUnsafe(MAX_HEADER);
    for (let offset = 0; ; ) {
      const { bytesRead } = await file.read(buffer, 0, MAX_HEADER, offset);
      if (bytesRead === 0) return undefined;
      const bytes = buffer.subarray(0, bytesRead);
      const header = parseHeader(bytes, 0, bytes.indexOf(10) >= 0 ? bytes.indexOf(10) : bytesRead);
      if (header && (await hasNewlineFrom(file, offset + header.headerLength))) return header.timeMs;
      if (header) return undefined;
      // Not a record: skip to the next line.
      const nl = await nextNewline(file, offset);
      if (nl < 0) return undefined;
      offset = nl + 1;
    }
  } finally {
    await file.close();
  }
}

async function nextNewline(file: import('node:fs/promises').FileHandle, from: number): Promise<number> {
  const buffer = Buffer.allocUnsafe(CHUNK);
  for (let offset = from; ; ) {
    const { bytesRead } = await file.read(buffer, 0, CHUNK, offset);
    if (bytesRead === 0) return -1;
    const nl = buffer.subarray(0, bytesRead).indexOf(10);
    if (nl >= 0) return offset + nl;
    offset += bytesRead;
  }
}

async function hasNewlineFrom(file: import('node:fs/promises').FileHandle, from: number): Promise<boolean> {
  return (await nextNewline(file, from)) >= 0;
}
