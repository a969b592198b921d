// The pieces of the protobuf wire format that the hand-made encodings of hot
// replies need (batched and chunked Logs in log-entries.ts and log-chunks.ts,
// List pages in paging.ts): varints and their lengths, and the Logs messages'
// field tags, which the client's Logs decoder (src/client/logs-decoding.ts)
// reads back. Everything else goes through the generated code.

// Field tags (field number << 3 | wire type) of LogEntry (1-5; LogsResponse's
// single-line fields and LogChunk's stream/text/data have the same numbers),
// LogsResponse.entries (6) and .chunk (7), and google.protobuf.Timestamp.
export const TAG_STREAM = 0x08;
export const TAG_TEXT = 0x12;
export const TAG_DATA = 0x1a;
export const TAG_PARTIAL = 0x20;
export const TAG_TIME = 0x2a;
export const TAG_ENTRIES = 0x32;
export const TAG_CHUNK = 0x3a;
export const TAG_SECONDS = 0x08;
export const TAG_NANOS = 0x10;

/** Bytes a non-negative integer below 2^53 takes as a varint. */
export function varintLength(value: number): number {
  let length = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    length++;
  }
  return length;
}

/** Writes a non-negative integer below 2^53 as a varint; returns the position after it. */
export function writeVarint(out: Uint8Array, pos: number, value: number): number {
  while (value >= 128) {
    out[pos++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  out[pos++] = value;
  return pos;
}

/** The tag and length that precede a length-delimited field (wire type 2) of `length` bytes. */
export function lengthDelimitedHeader(field: number, length: number): Uint8Array {
  const out = new Uint8Array(1 + varintLength(length));
  out[0] = (field << 3) | 2;
  writeVarint(out, 1, length);
  return out;
}
