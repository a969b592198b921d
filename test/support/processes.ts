import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isSameProcessAlive, readStat } from '../../src/runtime/process/procfs.js';

export function isAlive(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X';
}

/**
 * SIGKILLs the shims and process groups of every task under a data dir, and
 * leaves no exit record of a task that was still running (test hygiene, and
 * the crash that tests of lost tasks need).
 *
 * The shim goes first: it writes exit.json as soon as it reaps its task, so a
 * task killed before its shim could be recorded as exiting by SIGKILL. Once
 * the shim has a SIGKILL pending it never runs its own code again, so no exit
 * record can follow.
 */
export function killTaskTrees(dataDir: string): void {
  if (!existsSync(dataDir)) return;
  for (const name of readdirSync(dataDir)) {
    const file = join(dataDir, name, 'start.json');
    if (!existsSync(file)) continue;
    try {
      const start = JSON.parse(readFileSync(file, 'utf8')) as { pgid: number; pid: number; startTime: string; shimPid: number };
      if (readStat(start.shimPid)) process.kill(start.shimPid, 'SIGKILL');
      if (isSameProcessAlive(start.pid, start.startTime) || existsSync(`/proc/${start.pgid}`)) {
        try {
          process.kill(-start.pgid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    } catch {
      // best effort
    }
  }
}
