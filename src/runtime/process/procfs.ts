// Facts about processes read from /proc. A pid alone is not an identity (pids
// are reused), so every check pairs it with the process's start time.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { isErrno } from '../../util/errno.js';

let cachedBootId: string | undefined;

export function bootId(): string {
  cachedBootId ??= readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  return cachedBootId;
}

export interface StatFields {
  state: string;
  ppid: number;
  pgid: number;
  startTime: string;
  /** Kernel PF_* flags (field 9). */
  flags: number;
  /** CPU time in clock ticks: own user and system time, and that of waited-for (reaped) children. */
  utime: number;
  stime: number;
  cutime: number;
  cstime: number;
  /** Resident set size in pages. */
  rssPages: number;
}

/** Parses /proc/<pid>/stat; undefined when the process does not exist. */
export function readStat(pid: number): StatFields | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field N is rest[N - 3].
  return {
    state: rest[0] ?? '?',
    ppid: Number(rest[1]),
    pgid: Number(rest[2]),
    startTime: rest[19] ?? '',
    flags: Number(rest[6]),
    utime: Number(rest[11]),
    stime: Number(rest[12]),
    cutime: Number(rest[13]),
    cstime: Number(rest[14]),
    rssPages: Number(rest[21]),
  };
}

export function startTimeOf(pid: number): string | undefined {
  return readStat(pid)?.startTime;
}

/** Whether the process has exited: a zombie waiting to be reaped, or dead. */
export function hasExited(stat: StatFields): boolean {
  return stat.state === 'Z' || stat.state === 'X';
}

/** Kernel flag of a process inside exit() (PF_EXITING). */
const PF_EXITING = 0x4;

/**
 * The one liveness check of a process identity: true when the process that
 * had this pid and start time still exists and is neither a zombie nor on its
 * way out (PF_EXITING: a PID-namespace init that is killing and reaping its
 * namespace's processes is still there, but already dying; a process past
 * that point never runs its own code again).
 */
export function isSameProcessAlive(pid: number, startTime: string): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.startTime === startTime && !hasExited(stat) && (stat.flags & PF_EXITING) === 0;
}

/** The pids /proc lists now: the one scan of the process list that tables and searches build on. */
export function* pidsInProc(): Generator<number> {
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (Number.isInteger(pid) && pid > 0) yield pid;
  }
}

/**
 * A snapshot of every process that has not exited (zombies excluded), read
 * once for several tree walks. A process inside exit() is kept: until it is a
 * zombie its children are still its own, and a walk must reach them.
 */
export type ProcessTable = Map<number, StatFields>;

export function processTable(): ProcessTable {
  const table: ProcessTable = new Map();
  for (const pid of pidsInProc()) {
    const stat = readStat(pid);
    if (stat && !hasExited(stat)) table.set(pid, stat);
  }
  return table;
}

let cachedTable: { at: number; table: ProcessTable } | undefined;

/**
 * A process table at most `maxAgeMs` old, shared by callers that only need
 * membership (stats of many tasks sampled at the same moment); never use it to
 * decide what to kill.
 */
export function recentProcessTable(maxAgeMs: number): ProcessTable {
  const now = performance.now();
  if (!cachedTable || now - cachedTable.at > maxAgeMs) cachedTable = { at: now, table: processTable() };
  return cachedTable.table;
}

/** Every live descendant of pid (not pid itself), found through parent links. */
export function descendantsOf(pid: number, table: ProcessTable = processTable()): number[] {
  const children = new Map<number, number[]>();
  for (const [child, stat] of table) {
    const siblings = children.get(stat.ppid) ?? [];
    siblings.push(child);
    children.set(stat.ppid, siblings);
  }
  const result: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      result.push(child);
      queue.push(child);
    }
  }
  return result;
}

/**
 * Descendants of pid through /proc/<pid>/task/<tid>/children: costs the size of
 * the tree, not of the process table. The kernel documents these lists as
 * racy while the tree changes, so use it to measure, never to decide what to
 * kill. Undefined when the kernel lacks the files (CONFIG_PROC_CHILDREN).
 */
export function descendantsByChildren(pid: number): number[] | undefined {
  const result: number[] = [];
  const seen = new Set<number>([pid]);
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    let threads: string[];
    try {
      threads = readdirSync(`/proc/${parent}/task`);
    } catch {
      continue; // exited meanwhile
    }
    for (const tid of threads) {
      let text: string;
      try {
        text = readFileSync(`/proc/${parent}/task/${tid}/children`, 'utf8');
      } catch (error) {
        if (parent === pid && isErrno(error, 'ENOENT') && tid === String(pid)) return undefined;
        continue;
      }
      for (const word of text.split(' ')) {
        const child = Number(word);
        if (!word || !Number.isInteger(child) || seen.has(child)) continue;
        seen.add(child);
        result.push(child);
        queue.push(child);
      }
    }
  }
  return result;
}

/** Live members of a process group. */
export function groupMembers(pgid: number, table: ProcessTable = processTable()): number[] {
  const members: number[] = [];
  for (const [pid, stat] of table) if (stat.pgid === pgid) members.push(pid);
  return members;
}

let cachedClockTicks: number | undefined;
let cachedPageSize: number | undefined;

function getconf(name: string, fallback: number): number {
  try {
    const value = Number(execFileSync('getconf', [name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return Number.isInteger(value) && value > 0 ? value : fallback;
  } catch {
    return fallback;
  }
}

/** Clock ticks per second (USER_HZ) of the times in /proc/<pid>/stat; 100 almost everywhere. */
export function clockTicks(): number {
  cachedClockTicks ??= getconf('CLK_TCK', 100);
  return cachedClockTicks;
}

export function pageSize(): number {
  cachedPageSize ??= getconf('PAGESIZE', 4096);
  return cachedPageSize;
}

/** Storage I/O of a process (read_bytes/write_bytes of /proc/<pid>/io); undefined when not readable. */
export function readIo(pid: number): { readBytes: number; writeBytes: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/io`, 'utf8');
  } catch {
    return undefined;
  }
  const read = /^read_bytes:\s*(\d+)/m.exec(text);
  const write = /^write_bytes:\s*(\d+)/m.exec(text);
  if (!read || !write) return undefined;
  return { readBytes: Number(read[1]), writeBytes: Number(write[1]) };
}

export interface ProcessesUsage {
  /** Processes measured (those still alive when read). */
  count: number;
  /**
   * utime+stime+cutime+cstime of the processes: includes children they reaped,
   * misses exited processes reaped outside the set (orphans reaped by the shim).
   */
  cpuNanoseconds: number;
  rssBytes: number;
  /** Sums of /proc/<pid>/io read_bytes/write_bytes; undefined when no process's io file was readable. */
  readBytes?: number;
  writeBytes?: number;
}

/** Sums the CPU time, RSS and storage I/O of a set of processes, read fresh from /proc. */
export function sampleProcesses(pids: Iterable<number>): ProcessesUsage {
  const usage: ProcessesUsage = { count: 0, cpuNanoseconds: 0, rssBytes: 0 };
  let ticks = 0;
  for (const pid of pids) {
    const stat = readStat(pid);
    if (!stat || hasExited(stat)) continue;
    usage.count++;
    ticks += stat.utime + stat.stime + stat.cutime + stat.cstime;
    usage.rssBytes += stat.rssPages * pageSize();
    const io = readIo(pid);
    if (io) {
      usage.readBytes = (usage.readBytes ?? 0) + io.readBytes;
      usage.writeBytes = (usage.writeBytes ?? 0) + io.writeBytes;
    }
  }
  usage.cpuNanoseconds = Math.round((ticks * 1e9) / clockTicks());
  return usage;
}

/** kill(2) that treats "no such process" as done. */
export function signalQuietly(target: number, signal: NodeJS.Signals): void {
  try {
    process.kill(target, signal);
  } catch (error) {
    if (!isErrno(error, 'ESRCH')) throw error;
  }
}
