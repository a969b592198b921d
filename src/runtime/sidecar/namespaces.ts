// Facts about other processes' namespaces, read from /proc (as the executor
// sees it: every pid here is a pid of the executor's own PID namespace).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { readStat } from '../process/procfs.js';

export type NamespaceKind = 'pid' | 'pid_for_children' | 'mnt' | 'uts' | 'ipc' | 'net';

/** The namespace identity, e.g. "pid:[4026532281]"; undefined when the process is gone. Throws EACCES and the like. */
export function namespaceOf(pid: number | 'self', kind: NamespaceKind): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch (error) {
    if (gone(error)) return undefined;
    throw error;
  }
}

/** The process's pid in each PID namespace it belongs to, outermost (ours) first: the "NSpid:" line of its status. */
export function nsPids(pid: number): number[] | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const line = /^NSpid:\s*(.*)$/m.exec(text)?.[1];
  return line ? line.trim().split(/\s+/).map(Number) : [pid];
}

/** The environment the process was started with (NUL-separated /proc/<pid>/environ), as NAME=value strings. Throws when unreadable. */
export function initialEnvironUtf8(pid: number): string[] {
  return readFileSync(`/proc/${pid}/environ`, 'utf8')
    .split('\0')
    .filter((entry) => entry.length > 0);
}

export function commOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trimEnd();
  } catch {
    return undefined;
  }
}

export function exeOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

const PF_EXITING = 0x4;

/**
 * True when the process with this pid and start time exists and is neither a
 * zombie nor on its way out (PF_EXITING: a PID-namespace init that is killing
 * and reaping the namespace's processes is still there, but already dying).
 */
export function isLiveProcess(pid: number, startTime: string): boolean {
  const stat = readStat(pid);
  if (!stat) return false;
  return stat.startTime === startTime && stat.state !== 'Z' && stat.state !== 'X' && (stat.flags & PF_EXITING) === 0;
}

export interface ProcessEntry {
  pid: number;
  ppid: number;
  state: string;
}

/** Every process in /proc with its parent; zombies included (callers decide). */
export function processTable(): Map<number, ProcessEntry> {
  const table = new Map<number, ProcessEntry>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const stat = readStat(pid);
    if (stat) table.set(pid, { pid, ppid: stat.ppid, state: stat.state });
  }
  return table;
}

const gone = (error: unknown) => {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ESRCH';
};
