// The process backend's persisted handle of a task, and its checked reading.
import type { TaskCgroup } from '../cgroups/index.js';
import { definedOnly, Fields } from '../handle-codec.js';

/** The handle of a run the shim started: enough to find the task again after an executor restart. */
export interface ShimHandle {
  dir: string;
  bootId: string;
  shimPid: number;
  /** Empty when the shim was gone before its start time could be read. */
  shimStartTime: string;
  pid: number;
  pgid: number;
  startTime: string;
  startedAt: string;
  /** The task's cgroup, when it has one. */
  cgroup?: TaskCgroup;
}

/** The handle of a start that failed before the task ran: only where its records are. */
export interface UnstartedHandle {
  dir: string;
}

/** What the process backend persists per task. */
export type ProcessHandle = ShimHandle | UnstartedHandle;

/** Handle format version the process backend writes (see TaskRuntime.handleVersion). */
export const PROCESS_HANDLE_VERSION = 1;

export function isRun(handle: ProcessHandle): handle is ShimHandle {
  return 'pid' in handle;
}

/**
 * Reads a persisted process handle. Version 1 (also every record written
 * before handle versions existed): `{dir}` for a start that failed, else
 * every ShimHandle field, `cgroup` optional.
 */
export function decodeProcessHandle(raw: unknown): ProcessHandle {
  const fields = Fields.of(raw);
  const dir = fields.string('dir');
  if (!fields.has('pid')) return { dir };
  const cgroup = fields.optionalObject('cgroup', decodeCgroup);
  return {
    dir,
    bootId: fields.string('bootId'),
    shimPid: fields.integer('shimPid'),
    shimStartTime: fields.string('shimStartTime'),
    pid: fields.integer('pid'),
    pgid: fields.integer('pgid'),
    startTime: fields.string('startTime'),
    startedAt: fields.string('startedAt'),
    ...(cgroup ? { cgroup } : {}),
  };
}

function decodeCgroup(fields: Fields): TaskCgroup {
  const limits = fields.optionalObject('limits', (l) => definedOnly({
    memoryBytes: l.optionalInteger('memoryBytes'),
    cpuMillicores: l.optionalNumber('cpuMillicores'),
    pids: l.optionalInteger('pids'),
  }));
  return { version: fields.oneOf('version', [1, 2]), dirs: fields.stringMap('dirs'), ...(limits ? { limits } : {}) };
}
