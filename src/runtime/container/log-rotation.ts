// Size-based rotation of container logs, after the kubelet's container log
// manager (pkg/kubelet/logs/container_log_manager.go, rotateLatestLog): when
// the file a running container writes is over its size limit, move it aside
// and ask the runtime to reopen its log path (CRI ReopenContainerLog), and
// delete the oldest files beyond the limit on their number.
//
// The difference from the kubelet is the naming, which must be the one the
// log reader (src/logs) understands: `output.<N>.log`, N only growing, the
// highest being written, and a file complete once a higher one exists (the
// reader reads it to its end once more and then moves on, for good). The
// runtime writes to one fixed path for the container's whole life, so that
// path, `container.log`, is a symlink to the file being written:
//
//   1. `container.log` is pointed at `container.next.log` (not a reader name);
//   2. ReopenContainerLog: the runtime opens `container.log` again, which
//      creates `container.next.log`; its old writer finishes the lines it
//      holds into `output.<N>.log` and closes it;
//   3. once `output.<N>.log` has stopped growing, the files beyond maxFiles
//      are deleted, `container.next.log` is renamed to `output.<N+1>.log`
//      and `container.log` pointed at it.
//
// So no reader sees `output.<N+1>.log` before `output.<N>.log` is complete,
// and no line is lost or read twice (the kubelet's rename-then-reopen leaves
// the old file growing after the new one exists). A follower sees the lines
// written during the rotation when step 3 is done (tens of milliseconds).
//
// When the reopen fails the link goes back to `output.<N>.log` (the kubelet
// renames the file back): an exited container writes no more, a running one
// still writes to its open file and the next check tries again. A reopen that
// failed on our side (a deadline) but was done by the runtime shows as an
// existing `container.next.log` and is completed as if it had succeeded.
//
// Limits hold as in the kubelet: files are checked every CHECK_INTERVAL_MS,
// so a file can exceed the size limit by what the container writes in one
// interval, and the last file of a container that exits is not rotated.
// One timer serves every container; a check is a stat per container.
import { lstat, readlink, rename, stat, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { errorMessage } from '../../errors.js';
import { isMissing, listLogFiles, logFilePath } from '../../logs/files.js';
import { deadlineIn } from '../../util/poll.js';

/** The CRI LogPath of every container (relative to the sandbox's log directory): a symlink to the file being written. */
export const LOG_LINK = 'container.log';
/** Where the runtime writes during a rotation, until the old file is complete. */
export const PENDING_FILE = 'container.next.log';

/** How often the size of each running container's log is looked at. */
export const CHECK_INTERVAL_MS = 1000;
/** How often, and how long at most, the old file is watched for the runtime's last writes after a reopen. */
const SETTLE_STEP_MS = 25;
const SETTLE_MAX_MS = 2000;

export interface RotatedLog {
  /** The sandbox's log directory. */
  directory: string;
  /** The container's current id (it may change when the runtime re-attaches by label); undefined: not created. */
  containerId(): string | undefined;
  maxFileSizeBytes: number;
  maxFiles: number;
}

export interface LogRotationOptions {
  /** CRI ReopenContainerLog (with its deadline). */
  reopen(containerId: string): Promise<void>;
  log: Logger;
  intervalMs?: number;
}

export type RotationOutcome = 'rotated' | 'not-due' | 'not-rotatable' | 'reopen-failed';

/**
 * Creates the log link of a container about to be created: `container.log` ->
 * `output.<N>.log`, N one above any file already there (a restarted task's
 * earlier run keeps its lines before the new run's).
 */
export async function prepareLogLink(directory: string): Promise<void> {
  const files = await listLogFiles(directory);
  const next = files.length > 0 ? files[files.length - 1]! + 1 : 0;
  await pointLink(directory, logFileName(next));
}

/** Every running container's log, checked on one timer. */
export class LogRotation {
  private readonly tracked = new Map<string, RotatedLog>();
  private timer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(private readonly options: LogRotationOptions) {}

  /** Rotates this container's log while it runs; returns the function that stops that. */
  track(key: string, log: RotatedLog): () => void {
    this.tracked.set(key, log);
    if (!this.timer) {
      this.timer = setInterval(() => void this.checkAll(), this.options.intervalMs ?? CHECK_INTERVAL_MS);
      this.timer.unref();
    }
    return () => {
      if (this.tracked.get(key) !== log) return;
      this.tracked.delete(key);
      if (this.tracked.size === 0) this.stopTimer();
    };
  }

  close(): void {
    this.tracked.clear();
    this.stopTimer();
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async checkAll(): Promise<void> {
    if (this.checking) return; // a slow pass (an unanswering runtime) is not stacked
    this.checking = true;
    try {
      for (const log of [...this.tracked.values()]) {
        try {
          await rotateIfDue(log, this.options);
        } catch (error) {
          this.options.log.warn({ directory: log.directory, err: errorMessage(error) }, 'cannot rotate the container log; will try again');
        }
      }
    } finally {
      this.checking = false;
    }
  }
}

/**
 * One check of one container's log (exported for tests, which drive it
 * without the timer): rotates it if it is over its size limit, and finishes a
 * rotation an executor restart interrupted.
 */
export async function rotateIfDue(log: RotatedLog, options: Pick<LogRotationOptions, 'reopen' | 'log'>): Promise<RotationOutcome> {
  const { directory } = log;
  const target = await linkTarget(directory);
  // No link: a container created before logs were rotated writes to output.0.log directly.
  if (target === undefined) return 'not-rotatable';
  if (target === PENDING_FILE) {
    // Interrupted between pointing the link aside and completing.
    // The pending file exists: the runtime reopened (and writes there); else it still writes to the highest file.
    const highest = await currentIndex(directory);
    if (await exists(join(directory, PENDING_FILE))) return complete(log, highest);
    await pointLink(directory, logFileName(Math.max(0, highest)));
    return 'not-due';
  }
  const index = indexOf(target);
  if (index === undefined) return 'not-rotatable';
  let size: number;
  try {
    size = (await stat(logFilePath(directory, index))).size;
  } catch (error) {
    if (isMissing(error)) return 'not-due'; // nothing written yet
    throw error;
  }
  if (size < log.maxFileSizeBytes) return 'not-due';
  const id = log.containerId();
  if (!id) return 'not-rotatable';

  await pointLink(directory, PENDING_FILE);
  try {
    await options.reopen(id);
  } catch (error) {
    await pointLink(directory, target);
    // A reopen the runtime did although the call failed (e.g. its deadline passed) created the pending file.
    if (!(await exists(join(directory, PENDING_FILE)))) {
      options.log.debug({ directory, containerId: id, err: errorMessage(error) }, 'cannot reopen the container log; not rotated');
      return 'reopen-failed';
    }
  }
  return complete(log, index);
}

/** Step 3 and the deletion: the old file complete, the oldest deleted, the pending one joins the set. */
async function complete(log: RotatedLog, index: number): Promise<RotationOutcome> {
  const { directory } = log;
  await settled(logFilePath(directory, index));
  const next = index + 1;
  // The oldest go first, so there are never more than maxFiles (readers that have one open read on).
  for (const old of await listLogFiles(directory)) {
    if (old > next - log.maxFiles) break;
    await unlink(logFilePath(directory, old)).catch((error: unknown) => {
      if (!isMissing(error)) throw error;
    });
  }
  await rename(join(directory, PENDING_FILE), logFilePath(directory, next));
  await pointLink(directory, logFileName(next));
  return 'rotated';
}

/**
 * Resolves once the runtime's old writer is done with the file: it finishes
 * the lines it already took from the container after the reopen returned,
 * which shows as the file growing a little longer. The CRI gives no signal
 * for it, so: until two looks SETTLE_STEP_MS apart see the same size.
 */
async function settled(path: string): Promise<void> {
  const deadline = deadlineIn(SETTLE_MAX_MS);
  let last = await sizeOf(path);
  while (deadline.left() > 0) {
    await delay(SETTLE_STEP_MS);
    const size = await sizeOf(path);
    if (size === last) return;
    last = size;
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (error) {
    if (isMissing(error)) return -1;
    throw error;
  }
}

/** The index the link pointed at before an interrupted rotation: the highest file (or -1 when none). */
async function currentIndex(directory: string): Promise<number> {
  const files = await listLogFiles(directory);
  return files.length > 0 ? files[files.length - 1]! : -1;
}

const logFileName = (index: number): string => `output.${index}.log`;

function indexOf(name: string): number | undefined {
  const match = /^output\.(0|[1-9][0-9]{0,14})\.log$/.exec(name);
  return match ? Number(match[1]) : undefined;
}

/** What the link names, or undefined when there is no link (or a plain file in its place). */
async function linkTarget(directory: string): Promise<string | undefined> {
  const path = join(directory, LOG_LINK);
  try {
    if (!(await lstat(path)).isSymbolicLink()) return undefined;
    return await readlink(path);
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

/** Points the link at `name` (relative, in the same directory) in one step: the runtime never finds it missing. */
async function pointLink(directory: string, name: string): Promise<void> {
  const temporary = join(directory, `${LOG_LINK}.tmp`);
  await unlink(temporary).catch((error: unknown) => {
    if (!isMissing(error)) throw error;
  });
  await symlink(name, temporary);
  await rename(temporary, join(directory, LOG_LINK));
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if (isMissing(error)) return false;
    throw error;
  }
}
