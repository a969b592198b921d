// One task's cgroup as persisted in its runtime handle (TaskCgroup), and the
// file operations that are the same on cgroup v1 and v2: reading and writing
// control files, the processes listed, removal. What differs between the
// versions is in v1.ts and v2.ts.
//
// Reads are synchronous on purpose: cgroupfs and procfs files are generated in
// memory, and a sync read costs a fraction of an async one (no thread-pool
// round trip), which matters when many Stats streams sample every second.
import { setTimeout as delay } from 'node:timers/promises';
import { readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errnoText } from '../../util/errno.js';
import { pollUntil } from '../../util/poll.js';

/** Persisted in the task's runtime handle (plain JSON). */
export interface TaskCgroup {
  [key: string]: unknown;
  version: 1 | 2;
  /** v1: controller → the task's directory in that hierarchy (co-mounted controllers share one); v2: { unified: directory }. */
  dirs: Record<string, string>;
  /** Limits as applied (for messages); the files are the truth for stats. */
  limits?: { memoryBytes?: number; cpuMillicores?: number; pids?: number };
}

/** What a cgroup measures; absent fields could not be read. */
export interface CgroupUsage {
  cpuNanoseconds?: number;
  cpuLimitMillicores?: number;
  memoryUsageBytes?: number;
  memoryLimitBytes?: number;
  pids?: number;
  pidsLimit?: number;
  readBytes?: number;
  writeBytes?: number;
}

export function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function readInteger(path: string): number | undefined {
  const text = readText(path)?.trim();
  if (text === undefined || !/^-?\d+$/.test(text)) return undefined;
  return Number(text);
}

/** "key value" lines (memory.events, memory.oom_control, cpu.stat, cgroup.events...). */
export function keyedValues(text: string | undefined): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && /^\d+$/.test(value)) values.set(key, Number(value));
  }
  return values;
}

export function writeControl(dir: string, file: string, value: string): void {
  writeFileSync(join(dir, file), value);
}

/** For optional refinements (swap accounting may be off): the main setting holds without them. */
export function writeOptional(dir: string, file: string, value: string): void {
  try {
    writeControl(dir, file, value);
  } catch {
    // not supported here
  }
}

export const uniqueDirs = (cgroup: TaskCgroup): string[] => [...new Set(Object.values(cgroup.dirs))];

/** The cgroup.procs files the task-shim writes the task's pid into before exec. */
export const procsFiles = (cgroup: TaskCgroup): string[] => uniqueDirs(cgroup).map((dir) => join(dir, 'cgroup.procs'));

export function parsePids(text: string): number[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}

/** Processes listed in one cgroup directory; undefined when it cannot be read (e.g. already removed). */
export function pidsIn(dir: string): number[] | undefined {
  const text = readText(join(dir, 'cgroup.procs'));
  return text === undefined ? undefined : parsePids(text);
}

/** Processes in any of the task's hierarchies (a root process could have moved itself out of one). */
export function allCgroupPids(cgroup: TaskCgroup): number[] {
  const pids = new Set<number>();
  for (const dir of uniqueDirs(cgroup)) for (const pid of pidsIn(dir) ?? []) pids.add(pid);
  return [...pids];
}

/**
 * The cgroups right below a cgroup directory (its other entries are control
 * files). cgroupfs (kernfs) counts a directory's links as 2 + its
 * subdirectories, so a stat tells that there are none without listing the
 * control files (a mass delete asks for every hierarchy of every task);
 * fewer than 2 links (a file system that does not count them) mean unknown.
 */
function childDirs(dir: string): string[] {
  try {
    if (statSync(dir).nlink === 2) return [];
    return readdirSync(dir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => join(dir, entry.name));
  } catch {
    return [];
  }
}

/** The cgroups a task (running as root) created below its own, at any depth. */
export function nestedDirs(dir: string): string[] {
  return childDirs(dir).flatMap((child) => [child, ...nestedDirs(child)]);
}

/** Processes of the task's hierarchies and of the cgroups nested in them: what a kill must reach. */
export function subtreePids(cgroup: TaskCgroup): number[] {
  const pids = new Set(allCgroupPids(cgroup));
  for (const dir of uniqueDirs(cgroup)) for (const nested of nestedDirs(dir)) for (const pid of pidsIn(nested) ?? []) pids.add(pid);
  return [...pids];
}

export function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already, or not ours to kill
  }
}

/** SIGKILLs whatever the cgroup still holds until `empty()` says it is empty: stragglers of a fork racing the first strike. */
export function killUntilEmpty(cgroup: TaskCgroup, empty: () => boolean, timeoutMs: number): Promise<boolean> {
  return pollUntil(
    () => {
      if (empty()) return true;
      for (const pid of subtreePids(cgroup)) killQuietly(pid);
      return false;
    },
    timeoutMs,
    20,
  );
}

/**
 * Removes the task's directories (and cgroups the task nested in them). A
 * cgroup that still has processes (e.g. ones a finished task left running on
 * purpose) cannot be removed and is left alone: its directories are returned
 * as busy.
 */
export async function removeCgroup(cgroup: TaskCgroup): Promise<{ busy: string[] }> {
  const busy: string[] = [];
  for (const dir of uniqueDirs(cgroup)) {
    if (!(await removeDir(dir))) busy.push(dir);
  }
  return { busy };
}

/**
 * One try at removing a cgroup directory, nested cgroups first: undefined once
 * it is gone, else the directory that stayed and why. The rmdir is tried
 * before the directory is listed for nested cgroups: almost every task has
 * none, and a mass delete would otherwise list every hierarchy's directory of
 * every task (a cgroup directory lists all its control files).
 */
function removeTree(dir: string): { dir: string; code: string } | undefined {
  const first = tryRmdir(dir);
  if (!first || (first.code !== 'EBUSY' && first.code !== 'ENOTEMPTY')) return first;
  const nested = childDirs(dir);
  if (nested.length === 0) return first; // busy with processes
  for (const child of nested) {
    const stayed = removeTree(child);
    if (stayed) return stayed;
  }
  return tryRmdir(dir);
}

function tryRmdir(dir: string): { dir: string; code: string } | undefined {
  try {
    rmdirSync(dir);
    return undefined;
  } catch (error) {
    const code = errnoText(error);
    return code === 'ENOENT' ? undefined : { dir, code };
  }
}

/**
 * rmdir of one cgroup directory, nested cgroups first, in one synchronous go
 * (nothing else of this process runs in between); true when it is gone.
 */
export function removeDirNow(dir: string): boolean {
  return removeTree(dir) === undefined;
}

/**
 * rmdir of one cgroup directory, nested cgroups first; true when it is gone.
 * Retries briefly while the last processes finish exiting.
 */
export async function removeDir(dir: string, retries = 10): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    const stayed = removeTree(dir);
    if (!stayed) return true;
    const empty = (pidsIn(stayed.dir) ?? []).length === 0;
    if (stayed.code !== 'EBUSY' || !empty || attempt >= retries) return false;
    await delay(20);
  }
}
