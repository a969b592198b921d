// Writes a stream of bytes to a file, never more than a limit, hashing it on
// the way: the one place where fetched bytes reach the disk (http and file://).
import { createHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Algorithm } from './source.js';
import { ArtifactError } from './errors.js';

export interface Written {
  bytes: number;
  /** Lowercase hex digest, when an algorithm was asked for. */
  digest?: string;
}

/**
 * Writes `chunks` to a new file at `path` (replacing one left by an earlier
 * attempt). More than `maxBytes` is an ArtifactError; the file is then left
 * for the caller's cleanup of its staging directory.
 */
export async function writeLimited(
  chunks: AsyncIterable<Uint8Array>,
  path: string,
  maxBytes: number,
  what: string,
  algorithm?: Algorithm,
): Promise<Written> {
  const hash: Hash | undefined = algorithm ? createHash(algorithm) : undefined;
  const file = await open(path, 'w', 0o644);
  let bytes = 0;
  try {
    for await (const chunk of chunks) {
      bytes += chunk.byteLength;
      if (bytes > maxBytes) throw new ArtifactError(`${what} is larger than ${maxBytes} bytes (--artifact-max-bytes)`);
      hash?.update(chunk);
      await file.write(chunk);
    }
  } finally {
    await file.close();
  }
  return { bytes, ...(hash ? { digest: hash.digest('hex') } : {}) };
}
