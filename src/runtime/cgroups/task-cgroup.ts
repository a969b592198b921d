// Operations on one task's cgroup, given only its persisted description
// (TaskCgroup), so they work for tasks started by an earlier executor process
// too: the files the task-shim joins, the processes inside, the OOM-kill
// counter, usage and limits, killing everything inside, removal.
//
// Reads are synchronous on purpose: cgroupfs and procfs files are generated in
// memory, and a sync read costs a fraction of an async one (no thread-pool
// round trip), which matters when many Stats streams sample every second.
import { setTimeout as delay } from 'node:timers/promises';
import { existsSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

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

export const CPU_PERIOD_US = 100_000;
/** The kernel refuses CFS quotas below 1 ms. */
export const MIN_CPU_QUOTA_US = 1000;
/** v1 reports "no limit" as a huge page-aligned number (LONG_MAX rounded down). */
const V1_UNLIMITED = 2 ** 60;

export function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function readInteger(path: string): number | undefined {
  const text = readText(path)?.trim();
  if (text === undefined || !/^-?\d+$/.test(text)) return undefined;
  return Number(text);
}

/** "key value" lines (memory.events, memory.oom_control, cpu.stat...). */
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

export const uniqueDirs = (cgroup: TaskCgroup): string[] => [...new Set(Object.values(cgroup.dirs))];

/** The cgroup.procs files the task-shim writes the task's pid into before exec. */
export const procsFiles = (cgroup: TaskCgroup): string[] => uniqueDirs(cgroup).map((dir) => join(dir, 'cgroup.procs'));

function parsePids(text: string): number[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}

/** The directory whose cgroup.procs lists the task's processes (v1: freezer first, as Nomad does). */
function membershipDir(cgroup: TaskCgroup): string | undefined {
  const d = cgroup.dirs;
  return cgroup.version === 2 ? d.unified : (d.freezer ?? d.pids ?? d.memory ?? d.cpuacct ?? d.cpu ?? Object.values(d)[0]);
}

/** Processes in the task's cgroup; undefined when it cannot be read (e.g. already removed). */
export function cgroupPids(cgroup: TaskCgroup): number[] | undefined {
  const dir = membershipDir(cgroup);
  const text = dir === undefined ? undefined : readText(join(dir, 'cgroup.procs'));
  return text === undefined ? undefined : parsePids(text);
}

/** Processes in any of the task's hierarchies (a root process could have moved itself out of one). */
export function allCgroupPids(cgroup: TaskCgroup): number[] {
  const pids = new Set<number>();
  for (const file of procsFiles(cgroup)) for (const pid of parsePids(readText(file) ?? '')) pids.add(pid);
  return [...pids];
}

/** How often the kernel's OOM killer killed a process of this cgroup; undefined without a memory cgroup. */
export function oomKillCount(cgroup: TaskCgroup): number | undefined {
  const file =
    cgroup.version === 2
      ? cgroup.dirs.unified && join(cgroup.dirs.unified, 'memory.events')
      : cgroup.dirs.memory && join(cgroup.dirs.memory, 'memory.oom_control');
  if (!file) return undefined;
  return keyedValues(readText(file)).get('oom_kill');
}

export function readCgroupUsage(cgroup: TaskCgroup): CgroupUsage {
  return cgroup.version === 2 ? readV2Usage(cgroup.dirs.unified) : readV1Usage(cgroup.dirs);
}

function readV1Usage(dirs: Record<string, string>): CgroupUsage {
  const usage: CgroupUsage = {};
  if (dirs.cpuacct) usage.cpuNanoseconds = readInteger(join(dirs.cpuacct, 'cpuacct.usage'));
  if (dirs.cpu) {
    const quota = readInteger(join(dirs.cpu, 'cpu.cfs_quota_us'));
    const period = readInteger(join(dirs.cpu, 'cpu.cfs_period_us'));
    if (quota !== undefined && quota > 0 && period) usage.cpuLimitMillicores = Math.round((quota / period) * 1000);
  }
  if (dirs.memory) {
    usage.memoryUsageBytes = readInteger(join(dirs.memory, 'memory.usage_in_bytes'));
    const limit = readInteger(join(dirs.memory, 'memory.limit_in_bytes'));
    if (limit !== undefined && limit < V1_UNLIMITED) usage.memoryLimitBytes = limit;
  }
  if (dirs.pids) readPids(dirs.pids, usage);
  return usage;
}

function readV2Usage(dir: string | undefined): CgroupUsage {
  const usage: CgroupUsage = {};
  if (!dir) return usage;
  // cpu.stat's usage_usec is kept by the core for every cgroup, with or without the cpu controller.
  const usec = keyedValues(readText(join(dir, 'cpu.stat'))).get('usage_usec');
  if (usec !== undefined) usage.cpuNanoseconds = usec * 1000;
  const cpuMax = readText(join(dir, 'cpu.max'))?.trim().split(/\s+/);
  if (cpuMax && cpuMax[0] !== 'max' && cpuMax[1]) usage.cpuLimitMillicores = Math.round((Number(cpuMax[0]) / Number(cpuMax[1])) * 1000);
  usage.memoryUsageBytes = readInteger(join(dir, 'memory.current'));
  usage.memoryLimitBytes = readInteger(join(dir, 'memory.max'));
  readPids(dir, usage);
  const io = readText(join(dir, 'io.stat'));
  if (io !== undefined) {
    let read = 0;
    let write = 0;
    for (const match of io.matchAll(/\brbytes=(\d+)/g)) read += Number(match[1]);
    for (const match of io.matchAll(/\bwbytes=(\d+)/g)) write += Number(match[1]);
    usage.readBytes = read;
    usage.writeBytes = write;
  }
  return usage;
}

function readPids(dir: string, usage: CgroupUsage): void {
  usage.pids = readInteger(join(dir, 'pids.current'));
  usage.pidsLimit = readInteger(join(dir, 'pids.max')); // "max" (no limit) is not an integer: stays absent
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already, or not ours to kill
  }
}


async function pollUntil(check: () => boolean, timeoutMs: number, intervalMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (check()) return true;
    if (Date.now() > deadline) return false;
    await delay(intervalMs);
  }
}

/**
 * SIGKILLs every process in the cgroup, including ones that left the task's
 * process group and process tree: v2 writes cgroup.kill (or freezes, kills,
 * thaws on kernels before 5.14); v1 freezes the freezer cgroup so nothing can
 * fork meanwhile, SIGKILLs every pid, thaws. Resolves true once the cgroup is
 * empty, false if processes remain after `timeoutMs`.
 */
export async function killCgroup(cgroup: TaskCgroup, timeoutMs = 5000): Promise<boolean> {
  const dir = membershipDir(cgroup);
  if (!dir || !existsSync(dir)) return true;
  if (allCgroupPids(cgroup).length === 0) return true;
  if (cgroup.version === 2 && existsSync(join(dir, 'cgroup.kill'))) {
    try {
      writeControl(dir, 'cgroup.kill', '1');
    } catch {
      // fall back to signalling every pid below
    }
  } else {
    await freezeAndKill(cgroup, dir);
  }
  // Stragglers (no freezer, a fork racing the freeze): SIGKILL whatever is still listed until the cgroup is empty.
  return pollUntil(
    () => {
      const pids = allCgroupPids(cgroup);
      for (const pid of pids) killQuietly(pid);
      return pids.length === 0;
    },
    timeoutMs,
    20,
  );
}

async function freezeAndKill(cgroup: TaskCgroup, dir: string): Promise<void> {
  const v2 = cgroup.version === 2;
  const freezer = v2 ? (existsSync(join(dir, 'cgroup.freeze')) ? dir : undefined) : cgroup.dirs.freezer;
  let frozen = false;
  if (freezer) {
    try {
      writeControl(freezer, v2 ? 'cgroup.freeze' : 'freezer.state', v2 ? '1' : 'FROZEN');
      frozen = true;
      // A task in uninterruptible sleep can keep the cgroup FREEZING; kill anyway after a while.
      await pollUntil(
        () =>
          v2
            ? keyedValues(readText(join(freezer, 'cgroup.events'))).get('frozen') === 1
            : readText(join(freezer, 'freezer.state'))?.trim() === 'FROZEN',
        1000,
      );
    } catch {
      // not freezable: plain rounds of SIGKILL
    }
  }
  for (const pid of allCgroupPids(cgroup)) killQuietly(pid);
  if (frozen && freezer) {
    try {
      writeControl(freezer, v2 ? 'cgroup.freeze' : 'freezer.state', v2 ? '0' : 'THAWED'); // SIGKILL takes effect on thaw
    } catch {
      // removed meanwhile
    }
  }
}

/**
 * Removes the task's directories. A cgroup that still has processes (e.g.
 * ones a finished task left running on purpose) cannot be removed and is left
 * alone: its directories are returned as busy.
 */
export async function removeCgroup(cgroup: TaskCgroup): Promise<{ busy: string[] }> {
  const busy: string[] = [];
  for (const dir of uniqueDirs(cgroup)) {
    if (!(await removeDir(dir))) busy.push(dir);
  }
  return { busy };
}

/** rmdir of one cgroup directory; true when it is gone. Retries briefly while the last processes finish exiting. */
export async function removeDir(dir: string, retries = 10): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    try {
      rmdirSync(dir);
      return true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      const empty = parsePids(readText(join(dir, 'cgroup.procs')) ?? '').length === 0;
      if (code !== 'EBUSY' || !empty || attempt >= retries) return false;
      await delay(20);
    }
  }
}
