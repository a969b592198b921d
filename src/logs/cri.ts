// The CRI log record format written by task-shim (and by CRI runtimes):
//   "<RFC3339 UTC timestamp, 9 fractional digits> <stdout|stderr> <F|P> <payload>\n"
// F: the payload is a whole line (its '\n' removed). P: a piece of a line; the
// pieces of one stream up to and including its next F make the line. The
// payload is raw bytes and never contains '\n'.

export type StreamName = 'stdout' | 'stderr';
export type RecordTag = 'F' | 'P';

/** The part of a record before its payload. */
export interface RecordHeader {
  /** Milliseconds since the epoch (the timestamp floored to the millisecond); NaN when times were not asked for. */
  timeMs: number;
  stream: StreamName;
  tag: RecordTag;
  /** Bytes from the record start to the first payload byte. */
  headerLength: number;
}

const SPACE = 0x20;
const ZERO = 0x30;
/** Longest header we accept: a 35-character timestamp plus " stdout P ". */
export const MAX_HEADER = 48;

/**
 * One-entry cache: records written together share the timestamp down to the
 * second. Compared byte by byte, so the common case allocates nothing (this
 * runs once per record of a bulk read).
 */
const cachedPrefix = new Uint8Array(19);
let cachedSeconds = NaN;

function samePrefix(bytes: Uint8Array, start: number): boolean {
  for (let i = 18; i >= 0; i--) if (bytes[start + i] !== cachedPrefix[i]) return false;
  return true;
}

function digits(bytes: Uint8Array, start: number, end: number): number {
  let value = 0;
  for (let i = start; i < end; i++) {
    const d = bytes[i]! - ZERO;
    if (d < 0 || d > 9) return NaN;
    value = value * 10 + d;
  }
  return value;
}

/**
 * Parses "YYYY-MM-DDTHH:MM:SS[.fraction]Z" in bytes[start, end) to epoch
 * milliseconds (floored), or NaN when it is not in that form.
 */
export function parseTimestamp(bytes: Uint8Array, start: number, end: number): number {
  if (end - start < 20 || bytes[end - 1] !== 0x5a /* Z */ || bytes[start + 10] !== 0x54 /* T */) return NaN;
  let seconds: number;
  if (!Number.isNaN(cachedSeconds) && samePrefix(bytes, start)) {
    seconds = cachedSeconds;
  } else {
    const ms = Date.UTC(
      digits(bytes, start, start + 4),
      digits(bytes, start + 5, start + 7) - 1,
      digits(bytes, start + 8, start + 10),
      digits(bytes, start + 11, start + 13),
      digits(bytes, start + 14, start + 16),
      digits(bytes, start + 17, start + 19),
    );
    if (!Number.isFinite(ms)) return NaN;
    seconds = ms / 1000;
    cachedPrefix.set(bytes.subarray(start, start + 19));
    cachedSeconds = seconds;
  }
  // The fraction: its first three digits are the milliseconds; every one must be a digit.
  let millis = 0;
  const fraction = start + 19;
  if (end - 1 > fraction) {
    if (bytes[fraction] !== 0x2e /* . */) return NaN;
    let scale = 100;
    for (let i = fraction + 1; i < end - 1; i++) {
      const d = bytes[i]! - ZERO;
      if (d < 0 || d > 9) return NaN;
      millis += d * scale;
      scale = scale > 1 ? scale / 10 : 0;
    }
  }
  return seconds * 1000 + millis;
}

/**
 * The nanoseconds past the millisecond (0 to 999999) of the timestamp that
 * starts at bytes[start], which parseTimestamp floors away: fraction digits 4
 * to 9. Only for a timestamp parseTimestamp accepted.
 */
export function subMillisecondNanos(bytes: Uint8Array, start: number): number {
  let nanos = 0;
  let scale = 100_000;
  for (let i = start + 23; scale >= 1; i++) {
    const d = bytes[i]! - ZERO;
    if (!(d >= 0 && d <= 9)) break;
    nanos += d * scale;
    scale /= 10;
  }
  return nanos;
}

/**
 * Whether bytes[start, end) is shaped like a timestamp parseTimestamp takes
 * (its separators where they belong), without computing the time: the check
 * a reader that needs no times makes instead.
 */
function timestampShape(bytes: Uint8Array, start: number, end: number): boolean {
  return (
    end - start >= 20 &&
    bytes[end - 1] === 0x5a /* Z */ &&
    bytes[start + 10] === 0x54 /* T */ &&
    bytes[start + 4] === 0x2d /* - */ &&
    bytes[start + 7] === 0x2d &&
    bytes[start + 13] === 0x3a /* : */ &&
    bytes[start + 16] === 0x3a
  );
}

/**
 * Parses the header of the record starting at bytes[start]; `end` is the
 * record's end (its '\n', or the end of the available bytes). Undefined when
 * the bytes are not a CRI record. Without `times` the timestamp is only
 * checked for its shape and timeMs is NaN (a bulk read that needs no times
 * skips most of the cost of a header that way).
 */
export function parseHeader(bytes: Uint8Array, start: number, end: number, times = true): RecordHeader | undefined {
  const header: RecordHeader = { timeMs: NaN, stream: 'stdout', tag: 'F', headerLength: 0 };
  return parseHeaderInto(header, bytes, start, end, times) ? header : undefined;
}

/** parseHeader into an existing header (a bulk read reuses one for every record); false when the bytes are not a record. */
export function parseHeaderInto(header: RecordHeader, bytes: Uint8Array, start: number, end: number, times: boolean): boolean {
  const limit = Math.min(end, start + MAX_HEADER);
  // The first space ends the timestamp (a loop: cheaper than indexOf for a few bytes).
  let s1 = start + 20;
  while (s1 < limit && bytes[s1] !== SPACE) s1++;
  if (s1 >= limit) return false;
  const s2 = s1 + 7;
  const s3 = s2 + 2;
  // " stdout " and " stderr " both have 6 letters; the tag is one letter. An
  // empty payload may come without the space after the tag.
  if (s3 > end || bytes[s2] !== SPACE || (s3 < end && bytes[s3] !== SPACE)) return false;
  let stream: StreamName;
  if (bytes[s1 + 4] === 0x6f /* o */ && bytes[s1 + 1] === 0x73 && bytes[s1 + 2] === 0x74 && bytes[s1 + 3] === 0x64 && bytes[s1 + 5] === 0x75 && bytes[s1 + 6] === 0x74) {
    stream = 'stdout';
  } else if (bytes[s1 + 4] === 0x65 /* e */ && bytes[s1 + 1] === 0x73 && bytes[s1 + 2] === 0x74 && bytes[s1 + 3] === 0x64 && bytes[s1 + 5] === 0x72 && bytes[s1 + 6] === 0x72) {
    stream = 'stderr';
  } else {
    return false;
  }
  const t = bytes[s2 + 1];
  const tag: RecordTag | undefined = t === 0x46 ? 'F' : t === 0x50 ? 'P' : undefined;
  if (!tag) return false;
  let timeMs = NaN;
  if (times) {
    timeMs = parseTimestamp(bytes, start, s1);
    if (Number.isNaN(timeMs)) return false;
  } else if (!timestampShape(bytes, start, s1)) {
    return false;
  }
  header.timeMs = timeMs;
  header.stream = stream;
  header.tag = tag;
  header.headerLength = Math.min(s3 + 1, end) - start;
  return true;
}
