// cgroup support shared by the process and sidecar backends.
export { CGROUP_ROOT_ENV, CgroupDriver, type CgroupDriverOptions, type CreatedCgroup, scopeOf } from './driver.js';
export { type CgroupLayout, detectLayout, layoutFromProc, layoutFromRoot } from './layout.js';
export {
  allCgroupPids,
  type CgroupUsage,
  cgroupPids,
  killCgroup,
  oomKillCount,
  procsFiles,
  readCgroupUsage,
  removeCgroup,
  type TaskCgroup,
} from './task-cgroup.js';
