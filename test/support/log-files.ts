// Reads a process task's log files the way the Logs RPC does, for tests that
// only need the text: records in file order, and a line written in pieces
// (P records, as a program that writes its message in several write(2) calls
// produces when the supervisor reads them apart) joined with the rest of it.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The task's output lines, stdout and stderr interleaved in write order. */
export function logText(dataDir: string, name: string): string {
  const dir = join(dataDir, name, 'logs');
  const lines: string[] = [];
  const partial = new Map<string, string>();
  const records = readdirSync(dir)
    .filter((f) => /^output\.\d+\.log$/.test(f))
    .sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]))
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter(Boolean));
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
