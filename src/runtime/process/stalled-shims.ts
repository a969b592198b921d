// Finding and ending task-shims that an executor spawned but did not live to
// hear from: after a restart, a shim still running for a task directory
// without having written start.json must be either adopted or gone before the
// task may be started again, or the task would run twice.
import { readFileSync } from 'node:fs';
import { pollUntil } from '../../util/poll.js';
import { descendantsOf, isSameProcessAlive, pidsInProc, readStat, signalQuietly } from './procfs.js';
import { killTree } from './task-tree.js';

export interface ShimProcess {
  pid: number;
  startTime: string;
}

/** How long a shim may take to stop (SIGSTOP) or to vanish (SIGKILL) before giving up on it. */
const SIGNAL_WAIT_MS = 2000;

/** Live task-shims started for this task directory (found by their command line), from `scan` or a fresh scan. */
export function shimsFor(taskDir: string, scan: ShimScan = scanShims()): ShimProcess[] {
  return (scan.get(taskDir) ?? []).filter(shimAlive);
}

/** Every task-shim that was alive at the scan, by the task directory it serves. */
export type ShimScan = ReadonlyMap<string, ShimProcess[]>;

/** One scan of /proc (every process's command line) for task-shims. */
export function scanShims(): ShimScan {
  const byDir = new Map<string, ShimProcess[]>();
  for (const pid of pidsInProc()) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (!argv[0]?.endsWith('task-shim')) continue;
      // A pooled shim (`task-shim --pooled`, not handed a start yet) serves no task; handed one, it
      // writes "--dir DIR" over its command line before its task may start (spawner.c).
      const at = argv.indexOf('--dir');
      if (at < 1) continue;
      const dir = argv[at + 1];
      const stat = readStat(pid);
      if (dir && stat) byDir.set(dir, [...(byDir.get(dir) ?? []), { pid, startTime: stat.startTime }]);
    } catch {
      // gone meanwhile
    }
  }
  return byDir;
}

export const shimAlive = (shim: ShimProcess): boolean => isSameProcessAlive(shim.pid, shim.startTime);

/**
 * Freezes a shim (SIGSTOP) so it can neither fork nor write a record while the
 * caller decides; false when it did not stop (then it is gone, or stuck in the kernel).
 */
export async function freeze(shim: ShimProcess): Promise<boolean> {
  signalQuietly(shim.pid, 'SIGSTOP');
  return pollUntil(() => !shimAlive(shim) || readStat(shim.pid)?.state === 'T', SIGNAL_WAIT_MS);
}

export function thaw(shim: ShimProcess): void {
  if (shimAlive(shim)) signalQuietly(shim.pid, 'SIGCONT');
}

/**
 * SIGKILLs a (frozen) shim and everything below it, children first: while the
 * shim exists it is the parent or subreaper of all of them, so nothing escapes
 * the walk. Resolves true once the shim is gone.
 */
export async function killShimTree(shim: ShimProcess): Promise<boolean> {
  await killTree({ members: () => (shimAlive(shim) ? descendantsOf(shim.pid) : []) });
  if (shimAlive(shim)) signalQuietly(shim.pid, 'SIGKILL');
  return pollUntil(() => !shimAlive(shim), SIGNAL_WAIT_MS);
}
