// Per-task cgroups, shared by the process and sidecar backends: one service
// (CgroupManager) over two implementations of CgroupHierarchy (v1, v2).
export { CGROUP_ROOT_ENV, CgroupManager, type CgroupManagerOptions, type CreatedCgroup, scopeOf } from './manager.js';
export type { CgroupHierarchy } from './hierarchy.js';
export { type CgroupLayout, detectLayout, layoutFromProc, layoutFromRoot } from './layout.js';
export type { CgroupUsage, TaskCgroup } from './task-cgroup.js';
