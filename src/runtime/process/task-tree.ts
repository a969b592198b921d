// A process task's tree: everything it started, found through its cgroup,
// its process group and the shim (the subreaper of all its descendants), and
// the one place that signals, waits for and kills a tree of processes. The
// process backend's stop, the sidecar backend's (through ProcessRuntime.stop
// and its options) and the end of a stalled shim all go through killTree.
import { existsSync, readFileSync } from 'node:fs';
import { deadlineIn, pollUntil } from '../../util/poll.js';
import type { CgroupManager, TaskCgroup } from '../cgroups/index.js';
import { GRACE_POLL_MS, graceLookDelay, type TreeState } from './grace-looks.js';
import {
  bootId,
  descendantsByChildren,
  descendantsOf,
  groupMembers,
  hasExited,
  isSameProcessAlive,
  type ProcessTable,
  processTable,
  readStat,
  recentProcessTable,
  signalQuietly,
} from './procfs.js';
import type { ShimHandle } from './shim-handle.js';

/** How old the shared process table used to find a cgroup-less task's tree for stats may be (when the shim is gone). */
const STATS_TABLE_MAX_AGE_MS = 1000;
/** How long killTree keeps killing what is left before it gives up. */
export const KILL_BUDGET_MS = 2000;
/** How long one round of killTree waits for its victims to die (or, leaves first, to be reaped). */
const ROUND_WAIT_MS = 200;

/** How a stop treats a task's tree, beyond the plain default (everything at once). */
export interface TreeOrder {
  /**
   * Processes the stop signal and killTree never signal: a wrapper that must
   * outlive its children to report how they ended (nsenter). The caller kills
   * it afterwards.
   */
  exclude?: (pid: number) => boolean;
  /**
   * The tree lives in a PID namespace of its own, whose init adopts orphans
   * and may never reap them (a main container's entrypoint that is not an
   * init): members are looked for beyond the shim's tree (process group,
   * cgroup), and SIGKILL goes to the leaves first, each parent given a moment
   * to reap them before it is killed in turn.
   */
  leavesFirst?: boolean;
}

/**
 * How much of the task's cgroup a look at its tree reads: on cgroup v1 a task
 * is in one directory per hierarchy (six or more), and only root can move a
 * process out of some of them. 'membership' reads the one hierarchy that
 * lists the task's processes (a stop's signal: while the shim lives its tree
 * holds every descendant anyway; a grace-period look once the shim is gone),
 * 'all' every hierarchy (killTree's rounds),
 * 'none' leaves the cgroup to the caller (treeGone reads it whole).
 */
export type CgroupReach = 'membership' | 'all' | 'none';

/**
 * Everything the task started: its cgroup's processes, and its tree. While the
 * shim lives it is the subreaper of the whole tree, so walking its children
 * lists finds every descendant cheaply (many stops may run at once); once it
 * is gone, a /proc scan finds the process group and what the shim left.
 */
export function treeMembers(handle: ShimHandle, cgroups: CgroupManager, { leavesFirst }: TreeOrder = {}, reach: CgroupReach = 'all'): number[] {
  const members = new Set(handle.cgroup ? cgroupPids(handle.cgroup, cgroups, reach) : []);
  const viaShim = shimDescendants(handle);
  for (const pid of viaShim ?? []) members.add(pid);
  // Without a cgroup, only a scan of /proc finds the group and what the shim
  // left, and in a nested PID namespace (leavesFirst) the orphans its init
  // adopted. With one, the cgroup already holds every process of the tree (a
  // process never leaves it unless root moves it, setns does not), and a full
  // scan per stop would make a mass stop quadratic in the number of processes.
  if (!handle.cgroup && (!viaShim || leavesFirst)) for (const pid of scannedTree(handle, processTable())) members.add(pid);
  return [...members];
}

function cgroupPids(cgroup: TaskCgroup, cgroups: CgroupManager, reach: CgroupReach): number[] {
  switch (reach) {
    case 'membership':
      return cgroups.pids(cgroup) ?? cgroups.allPids(cgroup);
    case 'all':
      return cgroups.allPids(cgroup);
    case 'none':
      return [];
  }
}

/**
 * Whether nothing of the tree is left (zombies aside): its whole cgroup (every
 * hierarchy, nested cgroups included) is empty and no member of its tree
 * lives. Then killTaskTree and the cgroup's kill would find nothing to kill:
 * a stop whose tree ended during the grace period skips them (each reads the
 * tree afresh), and only SIGKILLs the process group, as killTaskTree does
 * first. Nothing is signalled while some of the tree lives: a wrapper that
 * killTaskTree must spare (TreeOrder.exclude) is in that group.
 */
export function treeGone(handle: ShimHandle, cgroups: CgroupManager): boolean {
  if (handle.bootId !== bootId()) return true;
  if (handle.cgroup && !cgroups.isEmpty(handle.cgroup)) return false;
  if (parentsOf(treeMembers(handle, cgroups, {}, 'none')).size > 0) return false;
  signalQuietly(-handle.pgid, 'SIGKILL');
  return true;
}

/**
 * The tree for stats without a cgroup: the shim's descendants (the whole
 * process group is among them while the shim lives), walked cheaply through
 * the children lists; else a shared, at most 1 s old scan of /proc.
 */
export function measuredTree(handle: ShimHandle): number[] {
  return shimDescendants(handle) ?? [...scannedTree(handle, recentProcessTable(STATS_TABLE_MAX_AGE_MS))];
}

/** The shim's descendants through the children lists; undefined when the shim is gone or the kernel lacks the lists. */
function shimDescendants(handle: ShimHandle): number[] | undefined {
  return isSameProcessAlive(handle.shimPid, handle.shimStartTime) ? descendantsByChildren(handle.shimPid) : undefined;
}

/** The process group and the shim's descendants (while it lives), from a scan of /proc. */
function scannedTree(handle: ShimHandle, table: ProcessTable): Set<number> {
  const members = new Set(groupMembers(handle.pgid, table));
  if (isSameProcessAlive(handle.shimPid, handle.shimStartTime)) for (const pid of descendantsOf(handle.shimPid, table)) members.add(pid);
  return members;
}

/**
 * How much of the tree is left during the grace period: 'task' while the
 * task's own process lives (its end is pushed, see waitForTree), 'tree' while
 * only what it started does, 'gone' after. Cheap, as many stops may look at
 * once: while the shim lives it is the subreaper of the whole tree, so its
 * children lists suffice; otherwise a shared, briefly cached /proc scan. A
 * wrong "gone" only ends the wait early: what is left is then found by
 * killTree's fresh scans.
 */
export function treeState(handle: ShimHandle, cgroups: CgroupManager, order: TreeOrder = {}): TreeState {
  if (isSameProcessAlive(handle.pid, handle.startTime)) return 'task';
  return treeAliveBesidesTask(handle, cgroups, order) ? 'tree' : 'gone';
}

function treeAliveBesidesTask(handle: ShimHandle, cgroups: CgroupManager, order: TreeOrder): boolean {
  if (order.leavesFirst) return parentsOf(treeMembers(handle, cgroups, order)).size > 0;
  const viaShim = shimDescendants(handle);
  if (viaShim) return viaShim.length > 0;
  // One hierarchy suffices here (a wrong "gone" ends the wait early): treeGone reads them all.
  if (handle.cgroup) return cgroupPids(handle.cgroup, cgroups, 'membership').length > 0;
  return groupMembers(handle.pgid, recentProcessTable(GRACE_POLL_MS)).length > 0;
}

/**
 * The stop signal to the process group and every member of the tree. With an
 * exclude hook the group is left alone (it holds the excluded process), unless
 * no other member exists yet: then the wrapper has not started its child, and
 * the signal stops it before it does.
 */
export function signalTree(handle: ShimHandle, signal: NodeJS.Signals, cgroups: CgroupManager, order: TreeOrder = {}): void {
  if (!order.exclude) signalQuietly(-handle.pgid, signal);
  const members = treeMembers(handle, cgroups, order, 'membership').filter((pid) => !order.exclude?.(pid));
  if (order.exclude && members.length === 0) signalQuietly(-handle.pgid, signal);
  for (const pid of members) signalQuietly(pid, signal);
}

/**
 * Runs a piece of a stop's synchronous work (listing a tree in /proc and the
 * cgroups) when its turn comes; see ProcessRuntime's stop turns.
 */
export type Turn = <T>(work: () => T | Promise<T>) => Promise<T>;
const atOnce: Turn = async (work) => work();

/**
 * Subscribes to pushes about the task's process (its shim's event lines): the
 * callback runs on each; returns the unsubscribe function.
 */
export type Pushes = (onPush: () => void) => () => void;

/**
 * Waits until the tree is gone or `graceMs` have passed; each look at the
 * tree takes a `turn`. With `pushes`, no look is taken while the task's own
 * process is known to live (see graceLookDelay): a push ends each pause.
 */
export async function waitForTree(handle: ShimHandle, cgroups: CgroupManager, graceMs: number, order: TreeOrder = {}, turn: Turn = atOnce, pushes?: Pushes): Promise<void> {
  const deadline = deadlineIn(graceMs);
  let pushed = false;
  let wake: (() => void) | undefined;
  const unsubscribe = pushes?.(() => {
    pushed = true;
    wake?.();
  });
  // A task that ended before the subscription was pushed already: look at once.
  if (pushes && !isSameProcessAlive(handle.pid, handle.startTime)) pushed = true;
  try {
    let last: TreeState | undefined;
    for (;;) {
      const pause = graceLookDelay(last, pushes !== undefined, deadline.left());
      if (pause > 0 && !pushed) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, pause);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
      pushed = false;
      last = await turn(() => treeState(handle, cgroups, order));
      if (last === 'gone' || deadline.left() <= 0) return;
    }
  } finally {
    unsubscribe?.();
  }
}

/** SIGKILLs a task's tree (see killTree); true when nothing of it is left, or it ran in an earlier boot. */
export function killTaskTree(handle: ShimHandle, cgroups: CgroupManager, order: TreeOrder = {}, budgetMs = KILL_BUDGET_MS): Promise<boolean> {
  if (handle.bootId !== bootId()) return Promise.resolve(true);
  return killTree({ members: () => treeMembers(handle, cgroups, order), ...(order.exclude ? {} : { group: handle.pgid }), ...order }, budgetMs);
}

/** A tree to kill. */
export interface KillTarget extends TreeOrder {
  /** The tree's processes, listed afresh before every round (exited ones are skipped). */
  members: () => Iterable<number>;
  /**
   * A process group each round also SIGKILLs: it reaches what forked since the
   * members were listed. Not with an exclude hook (the group holds the excluded).
   */
  group?: number;
}

/**
 * The one kill loop: SIGKILL in rounds until nothing of the tree but the
 * excluded is left (a forking tree may need a few), each round waiting for
 * its victims to die, or with leavesFirst to be reaped by their parents.
 * False when something was still alive after `budgetMs`.
 */
export async function killTree(target: KillTarget, budgetMs = KILL_BUDGET_MS): Promise<boolean> {
  const deadline = deadlineIn(budgetMs);
  const gone = (pid: number) => !existsSync(`/proc/${pid}`);
  const settled = target.leavesFirst ? gone : exited;
  // Leaves first: zombies whose parent has already been given a round to reap them.
  const waitedFor = new Set<number>();
  for (;;) {
    if (target.group !== undefined) signalQuietly(-target.group, 'SIGKILL');
    const parents = parentsOf(target.members());
    // A child that has exited but is not reaped yet (one that ended as its own child was
    // killed) makes its parent no leaf for one round: killed before it reaps, the parent
    // would hand the zombie to the PID namespace's init, which may never reap it.
    const unreaped = target.leavesFirst ? zombieChildren(parents.keys()).filter(([zombie]) => !waitedFor.has(zombie)) : [];
    const reaping = new Set(unreaped.map(([, parent]) => parent));
    const round = victims(parents, target).filter((pid) => !reaping.has(pid));
    if (round.length === 0 && unreaped.length === 0) return true;
    const left = deadline.left();
    if (left < 0) return false;
    for (const pid of round) signalQuietly(pid, 'SIGKILL');
    for (const [zombie] of unreaped) waitedFor.add(zombie);
    await pollUntil(() => round.every(settled) && unreaped.every(([zombie]) => gone(zombie)), Math.min(ROUND_WAIT_MS, left), 5);
  }
}

/**
 * [zombie, parent] for every child of `pids` that has exited and is not reaped
 * yet (/proc/<pid>/task/<pid>/children lists a thread's children, zombies
 * included; a member whose children cannot be read counts as having none).
 */
export function zombieChildren(pids: Iterable<number>): [number, number][] {
  const found: [number, number][] = [];
  for (const pid of pids) {
    let children: string;
    try {
      children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const child of children.split(' ')) {
      if (child === '') continue;
      const stat = readStat(Number(child));
      if (stat?.state === 'Z' && stat.ppid === pid) found.push([Number(child), pid]);
    }
  }
  return found;
}

/**
 * Whom one round of killTree kills, from the live members and their parents
 * (pid -> ppid): every member but the excluded, or with leavesFirst only the
 * leaves among them (members no other member names as its parent).
 */
export function victims(parents: ReadonlyMap<number, number>, order: TreeOrder): number[] {
  const candidates = [...parents.keys()].filter((pid) => !order.exclude?.(pid));
  if (!order.leavesFirst) return candidates;
  // Only children that are themselves killed count: a parent whose one child is excluded is a leaf.
  const hasChildren = new Set(candidates.map((pid) => parents.get(pid)));
  return candidates.filter((pid) => !hasChildren.has(pid));
}

/** The members that have not exited, each with its parent. */
function parentsOf(pids: Iterable<number>): Map<number, number> {
  const parents = new Map<number, number>();
  for (const pid of pids) {
    const stat = readStat(pid);
    if (stat && !hasExited(stat)) parents.set(pid, stat.ppid);
  }
  return parents;
}

/** Dead or a zombie: the SIGKILL took (this pid only, no identity: it is checked right after the kill). */
function exited(pid: number): boolean {
  const stat = readStat(pid);
  return stat === undefined || hasExited(stat);
}
