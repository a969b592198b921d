// Facts about other processes' namespaces, read from /proc (as the executor
// sees it: every pid here is a pid of the executor's own PID namespace).
import { readFileSync, readlinkSync } from 'node:fs';
import { isErrno } from '../../util/errno.js';

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

const gone = (error: unknown) => isErrno(error, 'ENOENT', 'ESRCH');
