// When a stop looks at its task's tree during the grace period. A look (a
// few /proc reads, in a stop turn) only matters once the task's own process
// has ended: until then the tree is alive by definition. That end is pushed
// (the shim's "exited" line, after it reaped the task), so a stop that gets
// pushes waits for one instead of looking every GRACE_POLL_MS; what the task
// started is not pushed when it ends, so once the task is gone and its tree
// is not, looks come every GRACE_POLL_MS again.

/** How often a stop looks at a tree whose task has ended but whose children have not (or without pushes). */
export const GRACE_POLL_MS = 50;
/**
 * How often a stop with pushes looks while the task's process lives: only
 * against a push that never comes (the spawner ended), so slow.
 */
export const PUSHED_FALLBACK_MS = 500;

/** What the last look found: the task's process alive, only what it started alive, or nothing. */
export type TreeState = 'task' | 'tree' | 'gone';

/**
 * How long to wait before the next look (a push cuts the wait short), given
 * the last look (undefined before the first), whether the task's end is
 * pushed, and the time left of the grace period (the last look is at its end).
 */
export function graceLookDelay(last: TreeState | undefined, pushed: boolean, leftMs: number): number {
  let pause: number;
  if (last === 'tree') pause = GRACE_POLL_MS;
  else if (pushed) pause = PUSHED_FALLBACK_MS; // the stop signal was just sent, or the task still ran
  else pause = last === undefined ? 0 : GRACE_POLL_MS;
  return Math.max(0, Math.min(pause, leftMs));
}
