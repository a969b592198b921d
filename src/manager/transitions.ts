// Pure rules that turn what a runtime observed into the task's state.
import { Reason, type StopCause, type TaskRecord, type TaskState } from '../model/task.js';
import type { Observation } from '../runtime/runtime.js';

/** Exit status used when a task vanished without one, as the original does. */
export const LOST_EXIT_CODE = 137;

export function stateFromObservation(record: TaskRecord, observation: Observation): TaskState {
  switch (observation.state) {
    case 'running':
      return { phase: 'running', startedAt: observation.startedAt };
    case 'lost':
      return {
        phase: 'terminated',
        exitCode: LOST_EXIT_CODE,
        signal: 0,
        reason: Reason.ProcessCrashed,
        message: observation.message,
        startedAt: observation.startedAt,
        finishedAt: new Date().toISOString(),
      };
    case 'exited': {
      const stopped = stoppedReason(record, record.stop?.cause);
      return {
        phase: 'terminated',
        exitCode: observation.exitCode,
        signal: observation.signal,
        reason: observation.reason ?? stopped?.reason ?? (observation.exitCode === 0 ? Reason.Succeeded : Reason.Failed),
        message: observation.message ?? stopped?.message,
        startedAt: observation.startedAt,
        finishedAt: observation.finishedAt,
      };
    }
  }
}

function stoppedReason(record: TaskRecord, cause: StopCause | undefined): { reason: string; message: string } | undefined {
  if (cause === 'timeout') {
    return { reason: Reason.TaskTimeout, message: `Task exceeded timeout of ${timeoutSeconds(record)} seconds` };
  }
  if (cause === 'deletion') return { reason: Reason.Stopped, message: 'Task was stopped because it is being deleted' };
  return undefined;
}

export function timeoutSeconds(record: TaskRecord): number | undefined {
  const seconds = record.spec.process?.timeoutSeconds ?? record.spec.container?.timeoutSeconds;
  return seconds && seconds > 0 ? seconds : undefined;
}

export function hasTimedOut(record: TaskRecord, now: number): boolean {
  const seconds = timeoutSeconds(record);
  if (seconds === undefined || record.state.phase !== 'running') return false;
  return now - Date.parse(record.state.startedAt) > seconds * 1000;
}

/**
 * How much of a stop's grace period is left `now` (ms since the epoch): the
 * grace runs from the stop's request (TaskRecord.stop.requestedAt, persisted),
 * not from when this executor began the stop, so a stop interrupted by an
 * executor restart still SIGKILLs at about requestedAt + grace. Only the
 * wall clock survives a restart, so elapsed time is measured on it; the result
 * is clamped to [0, graceMs]: a clock stepped back can never stretch the grace
 * beyond what the task was given, and one stepped forward at worst ends it
 * early (SIGKILL sooner). A missing or unreadable requestedAt
 * gives the full grace.
 */
export function remainingGraceMs(graceMs: number, requestedAt: string | undefined, now: number): number {
  const since = requestedAt === undefined ? Number.NaN : Date.parse(requestedAt);
  if (!Number.isFinite(since)) return graceMs;
  return Math.min(graceMs, Math.max(0, graceMs - (now - since)));
}

export function startFailedState(message: string): TaskState {
  return {
    phase: 'terminated',
    exitCode: 128,
    signal: 0,
    reason: Reason.ProcessStartFailed,
    message,
    finishedAt: new Date().toISOString(),
  };
}
