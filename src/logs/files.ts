// The rotated file set: `<dir>/output.<N>.log`, N a canonical decimal that only
// grows; the highest is being written, lower ones are complete and are deleted
// oldest first by rotation. Positions name a byte in one file of the set.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno } from '../util/errno.js';

export interface LogPosition {
  /** The N of output.<N>.log. */
  index: number;
  /** Byte offset in that file. */
  offset: number;
}

/** Before every file: reading from here starts at the oldest existing file. */
export const BEGINNING: LogPosition = Object.freeze({ index: -1, offset: 0 });

export function comparePositions(a: LogPosition, b: LogPosition): number {
  return a.index !== b.index ? a.index - b.index : a.offset - b.offset;
}

export const maxPosition = (a: LogPosition, b: LogPosition): LogPosition => (comparePositions(a, b) >= 0 ? a : b);
export const minPosition = (a: LogPosition, b: LogPosition): LogPosition => (comparePositions(a, b) <= 0 ? a : b);

export function logFilePath(dir: string, index: number): string {
  return join(dir, `output.${index}.log`);
}

const NAME = /^output\.(0|[1-9][0-9]{0,14})\.log$/;

/** The indices of the existing log files, ascending; empty when the directory does not exist (yet). */
export async function listLogFiles(dir: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if (isMissing(error)) return [];
    throw error;
  }
  const indices: number[] = [];
  for (const name of names) {
    const match = NAME.exec(name);
    if (match) indices.push(Number(match[1]));
  }
  return indices.sort((a, b) => a - b);
}

export function isMissing(error: unknown): boolean {
  return isErrno(error, 'ENOENT', 'ENOTDIR');
}
