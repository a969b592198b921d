// Places a sidecar task's artifacts where the task can read them: a copy in
// the main container's filesystem, written from the executor through
// /proc/<pid>/root. That filesystem belongs to the main container, which may
// be hostile: a symlink it plants is resolved by the kernel against the
// *executor's* root when reached through /proc/<pid>/root, so one followed
// write could land anywhere on the node. Every step here therefore works
// relative to an open directory (`/proc/self/fd/<fd>/<name>` is openat(fd,
// name): the magic link is the open directory itself, never a path walked
// again) and never follows the last component: directories are opened with
// O_NOFOLLOW, files created with O_CREAT|O_EXCL (which fails on a symlink),
// and removal unlinks names without looking through them.
import { constants } from 'node:fs';
import { copyFile, type FileHandle, lstat, mkdir, mkdtemp, open, readdir, readlink, rmdir, symlink, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { isErrno } from '../../util/errno.js';

/** The directory of the main container under which each start gets a fresh directory of its own. */
export const TARGET_ARTIFACTS_BASE = '/tmp/task-executor';

/** Set in a sidecar task's environment to where its artifacts are (the copy), as the main container sees it. */
export const ARTIFACTS_DIR_ENV = 'TASK_EXECUTOR_ARTIFACTS_DIR';

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const at = (dir: FileHandle, name: string) => `/proc/self/fd/${dir.fd}/${name}`;

/** A symlink or a file where a directory must be: refused, never looked through. */
class NotADirectory extends Error {}

async function openDirectory(path: string, shown: string): Promise<FileHandle> {
  try {
    return await open(path, DIR_FLAGS);
  } catch (error) {
    if (isErrno(error, 'ELOOP', 'ENOTDIR')) {
      throw new NotADirectory(`${shown} in the main container is not a directory (a symbolic link or a file); it is not written through`);
    }
    throw error;
  }
}

/** Opens `name` below `parent`, making it (mode 0755) when missing. */
async function directoryIn(parent: FileHandle, name: string, shown: string): Promise<FileHandle> {
  let created = false;
  try {
    await mkdir(at(parent, name), { mode: 0o755 });
    created = true;
  } catch (error) {
    if (!isErrno(error, 'EEXIST')) throw error;
  }
  const dir = await openDirectory(at(parent, name), shown);
  // The executor's umask must not narrow what a task running as another user can read.
  if (created) await dir.chmod(0o755);
  return dir;
}

/** The executor's own base directory: a symlink or file there (planted, or left by anything) is replaced. */
async function baseIn(parent: FileHandle, name: string, shown: string): Promise<FileHandle> {
  try {
    return await directoryIn(parent, name, shown);
  } catch (error) {
    if (!(error instanceof NotADirectory)) throw error;
    await unlink(at(parent, name)); // removes the link itself, never what it points to
    return directoryIn(parent, name, shown);
  }
}

/** Opens the container path `path` (absolute, no `..`), component by component, without following a symlink. */
async function openPath(root: string, components: readonly string[], make: boolean): Promise<FileHandle> {
  let dir = await open(root, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    for (const [i, name] of components.entries()) {
      const shown = `/${components.slice(0, i + 1).join('/')}`;
      const last = i === components.length - 1;
      const next = !make ? await openDirectory(at(dir, name), shown) : last ? await baseIn(dir, name, shown) : await directoryIn(dir, name, shown);
      await dir.close();
      dir = next;
    }
    return dir;
  } catch (error) {
    await dir.close();
    throw error;
  }
}

/** Copies the host tree `source` to `name` below `parent`: modes kept, symlinks copied as symlinks. */
async function copyTree(source: string, parent: FileHandle, name: string): Promise<void> {
  const stat = await lstat(source);
  if (stat.isSymbolicLink()) {
    await symlink(await readlink(source), at(parent, name));
  } else if (stat.isFile()) {
    // O_CREAT|O_EXCL (libuv's copyfile with COPYFILE_EXCL): fails on any name already there, symlinks included; the mode is the source's.
    await copyFile(source, at(parent, name), constants.COPYFILE_EXCL);
  } else if (stat.isDirectory()) {
    await mkdir(at(parent, name), { mode: 0o700 });
    const dir = await openDirectory(at(parent, name), name);
    try {
      for (const entry of await readdir(source)) await copyTree(join(source, entry), dir, entry);
      await dir.chmod(stat.mode & 0o777);
    } finally {
      await dir.close();
    }
  }
  // Anything else (the fetcher lets no device, FIFO or socket through) is left out.
}

/** Removes `name` below `parent` and everything in it, unlinking names and never following one. */
async function removeIn(parent: FileHandle, name: string): Promise<void> {
  try {
    await unlink(at(parent, name));
    return;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return;
    if (!isErrno(error, 'EISDIR', 'EPERM')) throw error;
  }
  const dir = await openDirectory(at(parent, name), name);
  try {
    for (const entry of await readdir(`/proc/self/fd/${dir.fd}`)) await removeIn(dir, entry);
  } finally {
    await dir.close();
  }
  await rmdir(at(parent, name));
}

const splitPath = (path: string) => path.split('/').filter(Boolean);

/**
 * Copies the task directory's `names` (the first component of each artifact
 * destination) into a fresh directory `<TARGET_ARTIFACTS_BASE>/<task>.<random>`
 * of the filesystem under `root` (the main container's /proc/<pid>/root), and
 * answers that directory as the main container sees it. A partial copy is removed.
 */
export async function copyArtifactsIn(root: string, task: string, taskDir: string, names: readonly string[]): Promise<string> {
  const base = await openPath(root, splitPath(TARGET_ARTIFACTS_BASE), true);
  try {
    const fresh = basename(await mkdtemp(at(base, `${task}.`)));
    const path = `${TARGET_ARTIFACTS_BASE}/${fresh}`;
    try {
      const dir = await openDirectory(at(base, fresh), path);
      try {
        for (const name of names) await copyTree(join(taskDir, name), dir, name);
        await dir.chmod(0o755);
      } finally {
        await dir.close();
      }
      return path;
    } catch (error) {
      await removeIn(base, fresh).catch(() => {});
      throw error;
    }
  } finally {
    await base.close();
  }
}

/** Removes a copy made by copyArtifactsIn (`path` as it answered); nothing when it is gone already. */
export async function removeArtifactsCopy(root: string, path: string): Promise<void> {
  const components = splitPath(path);
  const name = components.pop();
  if (!name || components.some((c) => c === '..' || c === '.') || name === '..' || name === '.') return;
  let parent: FileHandle;
  try {
    parent = await openPath(root, components, false);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return;
    throw error;
  }
  try {
    await removeIn(parent, name);
  } finally {
    await parent.close();
  }
}
