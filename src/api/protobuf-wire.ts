// The two pieces of the protobuf wire format that the hand-made encodings of
// hot replies need (batched Logs in log-entries.ts, List pages in paging.ts):
// varints and their lengths. Everything else goes through the generated code.

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
