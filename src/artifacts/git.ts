// A git:: artifact: a shallow fetch (depth 1) of one ref with the node's git,
// checked out into a directory of its own; .git is removed afterwards, so the
// task gets the work tree only, held to the limits and link rules of an
// archive. `git init` + `fetch <ref>` rather than
// `clone --branch`, because it also takes a commit id.
import { execFile } from 'node:child_process';
import { lstat, readdir, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type ArchiveLimits, EntryChecker } from './entries.js';
import { ArtifactError } from './errors.js';
import { errorMessage } from '../errors.js';
import { isErrno } from '../util/errno.js';

const run = promisify(execFile);

export async function fetchGit(url: string, ref: string | undefined, directory: string, limits: ArchiveLimits, signal: AbortSignal): Promise<void> {
  const env = {
    ...process.env,
    // Never wait for a password on a terminal that is not there.
    GIT_TERMINAL_PROMPT: '0',
    GIT_ASKPASS: 'true',
    GIT_SSH_COMMAND: 'ssh -o BatchMode=yes',
  };
  const git = async (...args: string[]) => {
    try {
      await run('git', args, { env, signal, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024 });
    } catch (error) {
      signal.throwIfAborted();
      if (isErrno(error, 'ENOENT')) throw new ArtifactError('git sources need git on the executor\'s node, and there is none in its PATH');
      const detail = (stderrOf(error) ?? errorMessage(error)).trim().split('\n').slice(-3).join('; ');
      throw new ArtifactError(`git ${args[0] === '-C' ? args[2] : args[0]} of ${url}${ref ? ` at ${ref}` : ''} failed: ${detail}`);
    }
  };
  await git('init', '-q', directory);
  await git('-C', directory, 'fetch', '-q', '--depth', '1', '--no-tags', '--', url, ref ?? 'HEAD');
  await git('-C', directory, '-c', 'advice.detachedHead=false', 'checkout', '-q', 'FETCH_HEAD');
  await rm(join(directory, '.git'), { recursive: true, force: true });
  await checkTree(directory, new EntryChecker(limits));
}

/**
 * Holds a work tree to the rules of an archive (entries.ts): its size and
 * entry count within the limits, and no symlink pointing out of it, since a
 * repository can hold any symlink it likes.
 */
async function checkTree(root: string, checker: EntryChecker, relative = ''): Promise<void> {
  for (const entry of await readdir(join(root, relative), { withFileTypes: true })) {
    const path = relative ? `${relative}/${entry.name}` : entry.name;
    const full = join(root, path);
    const kind = entry.isDirectory() ? 'directory' : entry.isSymbolicLink() ? 'symlink' : entry.isFile() ? 'file' : 'other';
    const size = kind === 'file' ? (await lstat(full)).size : 0;
    const problem = checker.check({ path, kind, size, ...(kind === 'symlink' ? { linkpath: await readlink(full) } : {}) });
    if (problem) throw new ArtifactError(`the checkout was refused: ${problem}`);
    if (kind === 'directory') await checkTree(root, checker, path);
  }
}

/** What a failed execFile captured on stderr, when the error carries it. */
function stderrOf(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'stderr' in error && typeof error.stderr === 'string' ? error.stderr : undefined;
}
