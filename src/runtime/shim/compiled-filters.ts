// Seccomp filters compiled once per executor rather than once per task.
// libseccomp takes about 1 ms to compile the default profile's program (native
// and compat architectures) in every task's process, between fork and the
// gate, on the path from Create to running. The executor has the shim export
// each distinct filter once (`task-shim --seccomp-export FILE <filter
// options>`) and then passes `--seccomp-bpf FILE` with the same options: the
// shim reads the program instead of compiling it, and compiles the filter
// itself whenever FILE is missing, damaged or not private (privileges.c,
// read_exported), so a lost file costs time, never the filter.
//
// The files live in a private directory, the executor's own and mode 0700
// (checked here, and again by every shim): an executor keeps them in
// `<data-dir>/.seccomp-filters` (FILTERS_DIR), emptied at its start-up
// (the data dir's lock makes it this executor's alone), so an executor that
// was killed leaves nothing behind for long; without a data dir (tests,
// tools) a mkdtemp directory under the temp dir, removed when the process
// exits. A program anyone else could write would be the task's sandbox.
// Only process tasks use them; a sidecar task's filter is loaded by
// task-privs inside the main container's mount namespace, where this path
// names the container's own files (see TaskPrivileges.args).
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/** The directory under the data dir that holds an executor's compiled filters. */
export const FILTERS_DIR = '.seccomp-filters';

/** Distinct filters kept at most (each a file of a few KiB); beyond, tasks build theirs in place. */
export const MAX_COMPILED_FILTERS = 64;

/** The temporary directories of instances without a data dir, removed at exit (one hook for all). */
const dirs = new Set<string>();
let hooked = false;
const removeDirs = (): void => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
};

/** The next executor empties the directory anyway; a removal that fails must not fail anything now. */
const removeQuietly = (path: string): void => {
  try {
    rmSync(path, { force: true });
  } catch {
    // left for the next start-up
  }
};

export class CompiledFilters {
  /** Filter options (joined) -> the exported file once written, null if the export failed, or a pending export. */
  private readonly files = new Map<string, string | null | Promise<void>>();
  private dir: string | undefined;

  /** dir: where to keep the files (emptied at the first export); default a temporary directory. */
  constructor(
    private readonly shimPath: string,
    private readonly ownDir?: string,
  ) {}

  /**
   * The compiled program of the filter these shim options describe
   * (`--seccomp default`, or `--seccomp-default` and `--seccomp-rule`s), when
   * it has been exported; otherwise undefined, and the export is started (once)
   * so that later tasks with the same filter get it.
   */
  fileFor(filterArgs: readonly string[]): string | undefined {
    const key = filterArgs.join('\0');
    const known = this.files.get(key);
    if (typeof known === 'string') return known;
    if (known === undefined && this.files.size < MAX_COMPILED_FILTERS) this.files.set(key, this.export(key, filterArgs));
    return undefined;
  }

  /**
   * Makes the directory now (an executor's: emptied of a previous executor's
   * files) rather than at the first export; a failure here is the exports'.
   */
  prepare(): void {
    try {
      this.privateDir();
    } catch {
      // Each export tries again, and its task compiles the filter in place.
    }
  }

  /** Settles once every export started so far has ended (for tests and the benchmark's warm-up). */
  async settled(): Promise<void> {
    await Promise.all([...this.files.values()].filter((v): v is Promise<void> => v instanceof Promise));
  }

  private async export(key: string, filterArgs: readonly string[]): Promise<void> {
    let partial: string | undefined;
    try {
      const dir = this.privateDir();
      const file = join(dir, `${createHash('sha256').update(key).digest('hex').slice(0, 32)}.bpf`);
      // Written under a temporary name and renamed: a shim never reads half a program.
      partial = `${file}.${randomBytes(6).toString('hex')}.tmp`;
      await promisify(execFile)(this.shimPath, ['--seccomp-export', partial, ...filterArgs], { timeout: 10_000 });
      renameSync(partial, file);
      this.files.set(key, file);
    } catch {
      this.files.set(key, null); // Tasks build this filter in place, as without this cache.
      // An export that failed or was killed by its timeout may have written part of the program.
      if (partial) removeQuietly(partial);
    }
  }

  private privateDir(): string {
    if (!this.dir) {
      const dir = this.ownDir ?? mkdtempSync(join(tmpdir(), 'task-executor-seccomp-'));
      if (this.ownDir) {
        rmSync(dir, { recursive: true, force: true }); // a previous executor's: it held the lock this one holds now
        mkdirSync(dir, { mode: 0o700 });
      } else {
        dirs.add(dir);
        if (!hooked) {
          hooked = true;
          process.once('exit', removeDirs);
        }
      }
      // 0700 and ours: a shim takes no program from anywhere else.
      const st = lstatSync(dir);
      if (!st.isDirectory() || (st.mode & 0o077) !== 0 || st.uid !== process.geteuid?.()) throw new Error(`${dir} is not private`);
      this.dir = dir;
    }
    return this.dir;
  }
}
