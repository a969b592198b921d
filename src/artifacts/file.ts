// A file:// artifact: a regular file on the executor's node, copied (and
// hashed) like a download, so that the same limit and checksum apply.
import { constants } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { ArtifactError } from './errors.js';
import { type Written, writeLimited } from './sink.js';
import type { Algorithm } from './source.js';

export async function copyLocalFile(source: string, path: string, maxBytes: number, signal: AbortSignal, algorithm?: Algorithm): Promise<Written> {
  let handle: FileHandle;
  try {
    // Opened first, and the stream made from the handle: a stream of a missing file would report its error before anyone listens.
    // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, holding one of libuv's four
    // threads past the fetch timeout and Delete (four such tasks stalled every file operation of the executor).
    // It changes nothing for the regular file read below.
    handle = await open(source, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw new ArtifactError(`file://${source}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw new ArtifactError(`file://${source} is not a regular file`);
  }
  if (info.size > maxBytes) {
    await handle.close();
    throw new ArtifactError(`file://${source} has ${info.size} bytes, more than ${maxBytes} (--artifact-max-bytes)`);
  }
  return writeLimited(handle.createReadStream({ signal }), path, maxBytes, `file://${source}`, algorithm);
}

/** Whether a file:// source is executable by its owner, so that a copied script keeps being one. */
export async function isExecutable(source: string): Promise<boolean> {
  return ((await stat(source)).mode & 0o100) !== 0;
}
