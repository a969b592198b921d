// A file:// artifact: a regular file on the executor's node, copied (and
// hashed) like a download, so that the same limit and checksum apply.
import { constants } from 'node:fs';
import { type FileHandle, open, stat, statfs } from 'node:fs/promises';
import { ArtifactError } from './errors.js';
import { type Written, writeLimited } from './sink.js';
import type { Algorithm } from './source.js';
import { isErrno } from '../util/errno.js';

export async function copyLocalFile(source: string, path: string, maxBytes: number, signal: AbortSignal, algorithm?: Algorithm): Promise<Written> {
  let handle: FileHandle;
  try {
    // Opened first, and the stream made from the handle: a stream of a missing file would report its error before anyone listens.
    // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, holding one of libuv's four
    // threads past the fetch timeout and Delete (four such tasks stalled every file operation of the executor).
    // It changes nothing for the regular file read below.
    handle = await open(source, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw new ArtifactError(`file://${source}: ${isErrno(error, 'ENOENT') ? 'no such file' : (error as Error).message}`);
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw new ArtifactError(`file://${source} is not a regular file`);
  }
  // The kernel's own file systems make up their "regular" files as they are read: some never end,
  // some block (/proc/kmsg) past any timeout. None is an input anyone means to pin with a checksum.
  const pseudo = PSEUDO_FILE_SYSTEMS.get((await statfs(`/proc/self/fd/${handle.fd}`)).type);
  if (pseudo) {
    await handle.close();
    throw new ArtifactError(`file://${source} is on the kernel's ${pseudo} file system, whose files are generated as they are read: copy it to a regular file first`);
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

/** statfs(2) f_type of the kernel's pseudo file systems (linux/magic.h). */
const PSEUDO_FILE_SYSTEMS = new Map<number, string>([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0x62656570, 'configfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0xcafe4a11, 'bpf'],
  [0xde5e81e4, 'efivarfs'],
  [0x6165676c, 'pstore'],
]);
