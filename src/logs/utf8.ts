// Byte-level UTF-8 helpers, so that cutting output into pieces does not turn
// valid text into invalid bytes.

const isContinuation = (byte: number | undefined) => byte !== undefined && (byte & 0xc0) === 0x80;

/**
 * A cut position at or below `limit` (and above 0 when possible) that does not
 * split a UTF-8 character. Bytes that are not valid UTF-8 are cut at `limit`.
 */
export function utf8Cut(bytes: Uint8Array, limit: number): number {
  if (limit >= bytes.length) return bytes.length;
  if (limit <= 0) return 0;
  for (let cut = limit; cut > 0 && cut > limit - 4; cut--) {
    if (!isContinuation(bytes[cut])) return cut;
  }
  return limit;
}

/**
 * How many bytes at the end of `bytes` are the beginning of a character whose
 * remaining bytes have not arrived yet (0 to 3).
 */
export function incompleteTail(bytes: Uint8Array): number {
  const n = bytes.length;
  for (let back = 1; back <= Math.min(4, n); back++) {
    const byte = bytes[n - back]!;
    if (isContinuation(byte)) continue;
    const need = byte >= 0xf0 && byte <= 0xf7 ? 4 : byte >= 0xe0 ? (byte <= 0xef ? 3 : 0) : byte >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The bytes as a string when they are valid UTF-8, else undefined. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}
