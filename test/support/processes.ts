import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isSameProcessAlive, readStat } from '../../src/runtime/process/procfs.js';

export function isAlive(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X';
}

/** Test hygiene: SIGKILLs the process groups and shims of every task under a data dir. */
export function killTaskTrees(dataDir: string): void {
  if (!existsSync(dataDir)) return;
  for (const name of readdirSync(dataDir)) {
    const file = join(dataDir, name, 'start.json');
    if (!existsSync(file)) continue;
    try {
      const start = JSON.parse(readFileSync(file, 'utf8')) as { pgid: number; pid: number; startTime: string; shimPid: number };
      if (isSameProcessAlive(start.pid, start.startTime) || existsSync(`/proc/${start.pgid}`)) {
        try {
          process.kill(-start.pgid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      if (readStat(start.shimPid)) process.kill(start.shimPid, 'SIGKILL');
    } catch {
      // best effort
    }
  }
}
