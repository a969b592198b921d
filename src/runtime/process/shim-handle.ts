// The process backend's persisted handle of a task.
import type { TaskCgroup } from '../cgroups/index.js';

/** Persisted handle: enough to find the task again after an executor restart. */
export interface ShimHandle {
  [key: string]: unknown;
  dir: string;
  bootId: string;
  shimPid: number;
  shimStartTime: string;
  pid: number;
  pgid: number;
  startTime: string;
  startedAt: string;
  /** The task's cgroup, when it has one. */
  cgroup?: TaskCgroup;
}
