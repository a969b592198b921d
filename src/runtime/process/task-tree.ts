// A process task's tree: everything it started, found through its cgroup,
// its process group and the shim (the subreaper of all its descendants), and
// how to signal, kill and measure it.
import type { CgroupManager } from '../cgroups/index.js';
import {
  bootId,
  descendantsByChildren,
  descendantsOf,
  groupMembers,
  isSameProcessAlive,
  processTable,
  recentProcessTable,
  signalQuietly,
} from './procfs.js';
import type { ShimHandle } from './shim-handle.js';

/** How often a stop checks whether the tree has exited during its grace period. */
export const GRACE_POLL_MS = 50;
/** How old the shared process table used to find a cgroup-less task's tree for stats may be (when the shim is gone). */
const STATS_TABLE_MAX_AGE_MS = 1000;

/**
 * Everything the task started: its cgroup's processes, and its tree. While the
 * shim lives it is the subreaper of the whole tree, so walking its children
 * lists finds every descendant cheaply (many stops may run at once); once it
 * is gone, a /proc scan finds the process group and what the shim left.
 */
export function treeMembers(handle: ShimHandle, cgroups: CgroupManager): number[] {
  const members = new Set(handle.cgroup ? cgroups.allPids(handle.cgroup) : []);
  const viaShim = isSameProcessAlive(handle.shimPid, handle.shimStartTime) ? descendantsByChildren(handle.shimPid) : undefined;
  if (viaShim) {
    for (const pid of viaShim) members.add(pid);
  } else if (!handle.cgroup) {
    // Without a cgroup, only a scan of /proc finds the group and what the shim
    // left. With one, the cgroup already holds every process of the tree (a
    // process never leaves it unless root moves it), and a full scan per stop
    // would make a mass stop quadratic in the number of processes.
    const table = processTable();
    for (const pid of groupMembers(handle.pgid, table)) members.add(pid);
    if (isSameProcessAlive(handle.shimPid, handle.shimStartTime)) for (const pid of descendantsOf(handle.shimPid, table)) members.add(pid);
  }
  return [...members];
}

/**
 * The tree for stats without a cgroup: the shim's descendants (the whole
 * process group is among them while the shim lives), walked cheaply through
 * the children lists; else a shared, at most 1 s old scan of /proc.
 */
export function measuredTree(handle: ShimHandle): number[] {
  if (isSameProcessAlive(handle.shimPid, handle.shimStartTime)) {
    const tree = descendantsByChildren(handle.shimPid);
    if (tree) return tree;
  }
  const table = recentProcessTable(STATS_TABLE_MAX_AGE_MS);
  const members = new Set(groupMembers(handle.pgid, table));
  if (isSameProcessAlive(handle.shimPid, handle.shimStartTime)) for (const pid of descendantsOf(handle.shimPid, table)) members.add(pid);
  return [...members];
}

/**
 * Whether to keep waiting for the tree to exit during the grace period. Cheap,
 * as many stops may wait at once: while the shim lives it is the subreaper of
 * the whole tree, so its children lists suffice; otherwise a shared, briefly
 * cached /proc scan. A wrong "gone" only ends the wait early: what is left is
 * then found by killTree's fresh scans.
 */
export function treeAlive(handle: ShimHandle, cgroups: CgroupManager): boolean {
  if (isSameProcessAlive(handle.pid, handle.startTime)) return true;
  const viaShim = isSameProcessAlive(handle.shimPid, handle.shimStartTime) ? descendantsByChildren(handle.shimPid) : undefined;
  if (viaShim) return viaShim.length > 0;
  if (handle.cgroup) return cgroups.allPids(handle.cgroup).length > 0;
  return groupMembers(handle.pgid, recentProcessTable(GRACE_POLL_MS)).length > 0;
}

export function signalTree(handle: ShimHandle, signal: NodeJS.Signals, cgroups: CgroupManager): void {
  signalQuietly(-handle.pgid, signal);
  for (const pid of treeMembers(handle, cgroups)) signalQuietly(pid, signal);
}

/**
 * SIGKILL until nothing of the tree is left (a forking tree may need a few
 * rounds); false when something survived 20 rounds.
 */
export function killTree(handle: ShimHandle, cgroups: CgroupManager): boolean {
  if (handle.pgid === undefined || handle.bootId !== bootId()) return true;
  for (let round = 0; round < 20; round++) {
    const members = treeMembers(handle, cgroups);
    signalQuietly(-handle.pgid, 'SIGKILL');
    if (members.length === 0) return true;
    for (const pid of members) signalQuietly(pid, 'SIGKILL');
  }
  return false;
}
