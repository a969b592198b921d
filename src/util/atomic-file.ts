// Crash-safe file replacement: a reader sees the old content or the new one,
// never a mix, and after a power loss the rename itself is durable too (the
// directory is fsynced, which write-file-atomic does not do).
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

export const TEMP_MARKER = '.tmp-';

/**
 * `syncDirectory: false` leaves the fsync of the directory to the caller, who
 * must do it before relying on the new file: a batch of files then shares
 * one round of directory fsyncs, issued together.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, { syncDirectory = true } = {}): Promise<void> {
  const temp = `${path}${TEMP_MARKER}${randomBytes(6).toString('hex')}`;
  try {
    const file = await open(temp, 'wx', 0o644);
    try {
      await file.writeFile(data);
      await file.sync();
    } catch (error) {
      await file.close();
      throw error;
    }
    // The content is durable: the rename need not wait for the close (each is a trip to libuv's threads).
    await Promise.all([file.close(), rename(temp, path)]);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  if (syncDirectory) await fsyncDirectory(dirname(path));
}

/**
 * writeFileAtomic's synchronous twin, the same steps in the same order, for a
 * thread whose job is to block on them (the store's admission writer): one
 * trip there instead of one through libuv's pool per step.
 */
export function writeFileAtomicSync(path: string, data: string | Uint8Array, { syncDirectory = true } = {}): void {
  const temp = `${path}${TEMP_MARKER}${randomBytes(6).toString('hex')}`;
  try {
    const fd = openSync(temp, 'wx', 0o644);
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
  if (syncDirectory) fsyncDirectorySync(dirname(path));
}

export function fsyncDirectorySync(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * fsyncs each directory once `changed` (the renames in them) has settled, and
 * rejects with its error if it failed. The directories are opened meanwhile,
 * so that each fsync follows at once; they are closed without being waited for.
 */
export async function fsyncDirectoriesAfter(paths: readonly string[], changed: Promise<unknown>): Promise<void> {
  const dirs = paths.map((path) => open(path, 'r'));
  // An open that fails while `changed` is pending must not be an unhandled rejection
  // (that ends the process); its error is thrown by the sync below instead.
  for (const dir of dirs) dir.catch(() => undefined);
  try {
    await changed;
    await Promise.all(dirs.map(async (dir) => (await dir).sync()));
  } finally {
    for (const dir of dirs) dir.then((handle) => handle.close()).catch(() => undefined);
  }
}

export async function fsyncDirectory(path: string): Promise<void> {
  const dir = await open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
