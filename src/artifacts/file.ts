// A file:// artifact: a regular file on the executor's node, copied (and
// hashed) like a download, so that the same limit and checksum apply.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { ArtifactError } from './errors.js';
import { type Written, writeLimited } from './sink.js';
import type { Algorithm } from './source.js';

export async function copyLocalFile(source: string, path: string, maxBytes: number, signal: AbortSignal, algorithm?: Algorithm): Promise<Written> {
  let info;
  try {
    info = await stat(source);
  } catch (error) {
    throw new ArtifactError(`file://${source}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
  if (!info.isFile()) throw new ArtifactError(`file://${source} is not a regular file`);
  if (info.size > maxBytes) throw new ArtifactError(`file://${source} has ${info.size} bytes, more than ${maxBytes} (--artifact-max-bytes)`);
  return writeLimited(createReadStream(source, { signal }), path, maxBytes, `file://${source}`, algorithm);
}

/** Whether a file:// source is executable by its owner, so that a copied script keeps being one. */
export async function isExecutable(source: string): Promise<boolean> {
  return ((await stat(source)).mode & 0o100) !== 0;
}
