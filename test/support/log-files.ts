// Reads a process task's log files the way the Logs RPC does, for tests that
// only need the text: records in file order, and a line written in pieces
// (P records, as a program that writes its message in several write(2) calls
// produces when the supervisor reads them apart) joined with the rest of it.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LogStream } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { terminated, type TestExecutor } from './executor.js';
import { isAlive } from './processes.js';
import { waitFor } from './wait.js';

/** The task's output lines, stdout and stderr interleaved in write order. */
export function logText(dataDir: string, name: string): string {
  const dir = join(dataDir, name, 'logs');
  const lines: string[] = [];
  const partial = new Map<string, string>();
  const records = logFiles(dir).flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter(Boolean));
  for (const record of records) {
    const [, stream = '', tag, ...payload] = record.split(' ');
    const text = (partial.get(stream) ?? '') + payload.join(' ');
    if (tag === 'P') partial.set(stream, text);
    else {
      partial.delete(stream);
      lines.push(text);
    }
  }
  return [...lines, ...partial.values()].join('\n');
}

const { LOG_STREAM_STDOUT: STDOUT, LOG_STREAM_STDERR: STDERR } = LogStream;

export const logsDir = (te: TestExecutor, name: string) => join(te.dataDir, name, 'logs');

export function logFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => /^output\.\d+\.log$/.test(f))
    .sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]));
}

/** The lines as the files hold them (stream label + text), in the order their last record was written. */
export function fileLines(dir: string): { stream: LogStream; text: string }[] {
  const open = new Map<string, string>();
  const lines: { stream: LogStream; text: string }[] = [];
  for (const file of logFiles(dir)) {
    for (const record of readFileSync(join(dir, file), 'utf8').split('\n').filter(Boolean)) {
      const [, stream, tag] = record.split(' ');
      const payload = record.split(' ').slice(3).join(' ');
      const text = (open.get(stream!) ?? '') + payload;
      if (tag === 'P') open.set(stream!, text);
      else {
        open.delete(stream!);
        lines.push({ stream: stream === 'stdout' ? STDOUT : STDERR, text });
      }
    }
  }
  return lines;
}

/**
 * Waits until the task has terminated and its supervisor has written all of
 * its output: the task's exit is recorded before the supervisor has drained
 * the pipes, so a terminated task's logs may still grow for a moment.
 */
export async function outputComplete(te: TestExecutor, name: string): Promise<void> {
  await waitFor(`task ${name} to terminate`, async () => terminated((await te.api.getTask({ name })).task));
  const { shimPid } = JSON.parse(readFileSync(join(te.dataDir, name, 'start.json'), 'utf8')) as { shimPid: number };
  await waitFor(`the supervisor of ${name} to write its last output and exit`, () => !isAlive(shimPid));
}
