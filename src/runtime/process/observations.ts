// How what the shim recorded (or could not record) reads as an Observation.
import type { CgroupManager } from '../cgroups/index.js';
import type { Observation } from '../runtime.js';
import type { ProcessHandle, ShimHandle } from './shim-handle.js';
import { type ExitRecord, type ExitRecordRead, exitRecordPath, ProcessReason } from './shim-protocol.js';

/** An exit status the shim announced on its stdout but could not write to exit.json (yet). */
export interface HeldExit extends ExitRecord {
  recordError: string;
}

type ExitedObservation = Extract<Observation, { state: 'exited' }>;

/** Reported for a task whose exit status is unknown (as the manager does for a lost one). */
const UNKNOWN_EXIT_CODE = 137;

export function exitObservation(
  handle: Pick<ShimHandle, 'dir'> & Partial<ShimHandle>,
  exit: ExitRecord,
  cgroups: Pick<CgroupManager, 'oomKills'>,
): ExitedObservation {
  const oomKilled = exit.exitCode === 137 && handle.cgroup !== undefined && (cgroups.oomKills(handle.cgroup) ?? 0) > 0;
  const limit = handle.cgroup?.limits?.memoryBytes;
  const oomMessage = limit !== undefined ? `memory limit of ${formatBytes(limit)} exceeded` : 'killed by the kernel because its cgroup ran out of memory';
  if (exit.startError !== undefined) {
    // The task's process may have been killed before it could exec (signal set): its
    // program never ran, so this stays a start failure; the OOM killer is named when it struck.
    const oom = exit.signal === 9 && oomKilled ? `: ${oomMessage}` : '';
    return {
      state: 'exited',
      exitCode: exit.exitCode,
      signal: exit.signal,
      finishedAt: exit.finishedAt,
      reason: exit.reason ?? ProcessReason.ProcessStartFailed,
      message: exit.startError + oom,
    };
  }
  const observation: ExitedObservation = {
    state: 'exited',
    exitCode: exit.exitCode,
    signal: exit.signal,
    startedAt: handle.startedAt,
    finishedAt: exit.finishedAt,
  };
  // SIGKILLed (directly, or a shell reporting its last command's 128+9) while
  // the kernel's OOM killer was at work in the task's memory cgroup.
  if (oomKilled) return { ...observation, reason: 'OOMKilled', message: oomMessage };
  return observation;
}

/**
 * An exit read from the shim's exit.json: durable, as the shim fsyncs it
 * before it reports the exit, so it survives a crash of the executor.
 */
export function recordedExitObservation(handle: ProcessHandle, exit: ExitRecord, cgroups: Pick<CgroupManager, 'oomKills'>): ExitedObservation {
  return { ...exitObservation(handle, exit, cgroups), durable: true };
}

/** The real exit status, known only from the shim's event: exit.json could not be written. */
export function heldObservation(handle: ProcessHandle, held: HeldExit, cgroups: Pick<CgroupManager, 'oomKills'>): Observation {
  const observation = exitObservation(handle, held, cgroups);
  if (observation.reason !== undefined) return observation;
  const message = `the exit status comes from the task's supervisor, which ${held.recordError.replace(/^cannot/, 'could not')} (is the data dir full?) and keeps retrying`;
  return { ...observation, message };
}

/** exit.json is there but is not an exit record: the task ended (its process is gone) with an unknown status. */
export function unreadableObservation(dir: string, read: Extract<ExitRecordRead, { state: 'unreadable' }>): Observation {
  return {
    state: 'exited',
    exitCode: UNKNOWN_EXIT_CODE,
    signal: 0,
    finishedAt: read.modifiedAt,
    reason: ProcessReason.ExitStatusUnreadable,
    message: `${exitRecordPath(dir)} is not a valid exit record (${read.problem}); the task's exit status is unknown`,
  };
}

/** 67108864 → "64 MiB"; sizes that are not a whole number of a unit keep their bytes. */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`;
  }
  return `${bytes} bytes`;
}
