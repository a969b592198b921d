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

/** A process's argv ([] once it is gone). */
export function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

const processes = (): number[] =>
  readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number);

/** A task-shim started ahead that no start was handed to yet (`task-shim --pooled`, spawner.c). */
export const isPooledShim = (pid: number): boolean => argvOf(pid)[1] === '--pooled';

/** The pooled shims kept by the spawner `helper` (`task-shim --spawner`). */
export function pooledShimsOf(helper: number): number[] {
  return processes().filter((pid) => isPooledShim(pid) && readStat(pid)?.ppid === helper);
}

/** The pooled shims kept by the spawners of the executor process `executor`. */
export function pooledShimsOfExecutor(executor: number): number[] {
  const spawners = processes().filter((pid) => argvOf(pid)[1] === '--spawner' && readStat(pid)?.ppid === executor);
  return spawners.flatMap(pooledShimsOf);
}
