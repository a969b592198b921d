// What task-shim (src/runtime/shim/task-shim.c) writes: start.json and exit.json
// in the task directory, and one JSON event per line on its stdout. Everything
// read from the shim is validated here; nothing else parses its output.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno } from '../../util/errno.js';

/** Reasons of the process backend that the exit-code rules cannot tell. */
export const ProcessReason = {
  ProcessStartFailed: 'ProcessStartFailed',
  /** The data dir had no room for the task's records: the task was not started. */
  DataDirFull: 'DataDirFull',
  /** exit.json exists but is not a valid exit record. */
  ExitStatusUnreadable: 'ExitStatusUnreadable',
} as const;

/** start.json, and the "started" event. */
export interface StartRecord {
  pid: number;
  pgid: number;
  shimPid: number;
  startTime: string;
  startedAt: string;
}

/** exit.json, and the "exited" / "start-failed" events. */
export interface ExitRecord {
  exitCode: number;
  signal: number;
  finishedAt: string;
  /** Set when the program could not be started. */
  startError?: string;
  /** Why it could not be started, when the shim knows (DataDirFull). */
  reason?: string;
}

export type ShimEvent =
  /** recordError: start.json could not be written to disk (the shim keeps retrying). */
  | ({ event: 'started'; recordError?: string } & StartRecord)
  | ({ event: 'start-failed' | 'exited'; /** The record could not be written to disk (events only). */ recordError?: string } & ExitRecord)
  | { event: 'released' };

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const isInt = (value: unknown): value is number => Number.isInteger(value);
const isString = (value: unknown): value is string => typeof value === 'string';
const optionalString = (value: unknown): value is string | undefined => value === undefined || isString(value);

function toStartRecord(json: Json): StartRecord | undefined {
  const { pid, pgid, shimPid, startTime, startedAt } = json;
  if (!isInt(pid) || !isInt(pgid) || !isInt(shimPid) || !isString(startTime) || !isString(startedAt)) return undefined;
  return { pid, pgid, shimPid, startTime, startedAt };
}

/** The problem with an exit record, or the record. */
function toExitRecord(json: Json): ExitRecord | string {
  const { exitCode, signal, finishedAt, startError, reason } = json;
  if (!isInt(exitCode) || exitCode < 0 || exitCode > 255) return `exitCode ${JSON.stringify(exitCode)} is not an integer from 0 to 255`;
  if (!isInt(signal) || signal < 0) return `signal ${JSON.stringify(signal)} is not a non-negative integer`;
  if (!isString(finishedAt)) return 'finishedAt is missing';
  if (!optionalString(startError) || !optionalString(reason)) return 'startError and reason must be strings';
  return {
    exitCode,
    signal,
    finishedAt,
    ...(startError !== undefined ? { startError } : {}),
    ...(reason !== undefined ? { reason } : {}),
  };
}

function parseObject(text: string): Json | string {
  try {
    const value: unknown = JSON.parse(text);
    return isObject(value) ? value : 'not a JSON object';
  } catch (error) {
    return `not JSON: ${(error as Error).message}`;
  }
}

/** One line of the shim's stdout; undefined when it is not an event this executor knows. */
export function parseEvent(line: string): ShimEvent | undefined {
  const json = parseObject(line);
  if (typeof json === 'string') return undefined;
  switch (json.event) {
    case 'started': {
      const start = toStartRecord(json);
      if (!start || !optionalString(json.recordError)) return undefined;
      return { event: 'started', ...start, ...(json.recordError !== undefined ? { recordError: json.recordError } : {}) };
    }
    case 'start-failed':
    case 'exited': {
      const exit = toExitRecord(json);
      if (typeof exit === 'string' || !optionalString(json.recordError)) return undefined;
      return { event: json.event, ...exit, ...(json.recordError !== undefined ? { recordError: json.recordError } : {}) };
    }
    case 'released':
      return { event: 'released' };
    default:
      return undefined;
  }
}

export const exitRecordPath = (dir: string): string => join(dir, 'exit.json');

export type ExitRecordRead =
  | { state: 'absent' }
  | { state: 'valid'; record: ExitRecord }
  /** Present but not an exit record: `problem` says why, `modifiedAt` is the file's mtime. */
  | { state: 'unreadable'; problem: string; modifiedAt: string };

/**
 * exit.json of a task directory. The shim renames a complete file into place,
 * so anything that does not parse is corruption (or tampering), never a
 * half-written record: it is reported, not guessed at and not thrown.
 */
export async function readExitRecord(dir: string): Promise<ExitRecordRead> {
  const path = exitRecordPath(dir);
  let text: string;
  let modifiedAt: string;
  try {
    [text, modifiedAt] = await Promise.all([readFile(path, 'utf8'), stat(path).then((s) => s.mtime.toISOString())]);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return { state: 'absent' };
    return { state: 'unreadable', problem: `cannot read it: ${(error as Error).message}`, modifiedAt: new Date().toISOString() };
  }
  const json = parseObject(text);
  const record = typeof json === 'string' ? json : toExitRecord(json);
  return typeof record === 'string' ? { state: 'unreadable', problem: record, modifiedAt } : { state: 'valid', record };
}

/** start.json of a task directory; undefined when absent or not a start record. */
export async function readStartRecord(dir: string): Promise<StartRecord | undefined> {
  try {
    const json = parseObject(await readFile(join(dir, 'start.json'), 'utf8'));
    return typeof json === 'string' ? undefined : toStartRecord(json);
  } catch {
    return undefined;
  }
}
