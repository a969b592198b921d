// RESTART_POLICY_ON_FAILURE: when and how often a failed task starts again.
import type { TaskSpec, TaskState } from '../model/task.js';

export const DEFAULT_MAX_RESTARTS = 3;
const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 5 * 60 * 1000;

export interface Restart {
  delayMs: number;
  attempt: number;
  of: number;
}

/** The next restart for a task that just terminated, or undefined when it stays terminated. */
export function nextRestart(spec: TaskSpec, state: Extract<TaskState, { phase: 'terminated' }>, restartCount: number): Restart | undefined {
  if (spec.restartPolicy !== 'OnFailure' || state.exitCode === 0) return undefined;
  // A task that cannot start will not start next time either; a timeout is a verdict, not a failure to retry.
  // Artifacts were already retried (transient errors) and a checksum or archive will not change.
  if (state.reason === 'ProcessStartFailed' || state.reason === 'TaskTimeout' || state.reason === 'ArtifactFetchFailed') return undefined;
  const max = spec.maxRestarts ?? DEFAULT_MAX_RESTARTS;
  if (restartCount >= max) return undefined;
  return { delayMs: Math.min(FIRST_DELAY_MS * 2 ** restartCount, MAX_DELAY_MS), attempt: restartCount + 1, of: max };
}
