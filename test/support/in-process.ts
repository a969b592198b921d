// A manager and process runtime wired in the test's own process, for tests
// that need a part app.ts does not let them choose (a store that refuses
// writes, one start slot, a second backend beside the process one).
import { join } from 'node:path';
import { pino } from 'pino';
import { type ManagerOptions, TaskManager } from '../../src/manager/task-manager.js';
import { CgroupManager } from '../../src/runtime/cgroups/index.js';
import { ProcessRuntime } from '../../src/runtime/process/process-runtime.js';
import { ShimSpawner } from '../../src/runtime/process/shim-spawner.js';
import { RuntimeRegistry } from '../../src/runtime/registry.js';
import type { TaskRuntime } from '../../src/runtime/runtime.js';
import type { TaskStore } from '../../src/store/task-store.js';

/** The shim `npm run build:shim` builds. */
export const SHIM = join(import.meta.dirname, '..', '..', 'build', 'task-shim');
export const silent = pino({ level: 'silent' });

/** A process runtime starting shims through `spawner`, without cgroups unless given `cgroups`. */
export function processRuntime(spawner: ShimSpawner, cgroups = new CgroupManager({ root: 'off', log: silent })): ProcessRuntime {
  return new ProcessRuntime({ spawner, logMaxBytes: 1 << 20, logMaxFiles: 2, log: silent, cgroups });
}

/**
 * A started manager over `store` with a process runtime of its own (with
 * `cgroups` when given, plus any `others`); `close` ends the manager and then its spawner.
 */
export async function startManager(
  store: TaskStore,
  { others = [], cgroups, ...options }: { others?: TaskRuntime[]; cgroups?: CgroupManager } & Partial<Omit<ManagerOptions, 'store' | 'runtimes' | 'log'>> = {},
): Promise<{ manager: TaskManager; close: () => Promise<void> }> {
  const spawner = new ShimSpawner(SHIM, silent);
  const manager = new TaskManager({
    store,
    runtimes: new RuntimeRegistry([processRuntime(spawner, cgroups), ...others]),
    log: silent,
    reconcileIntervalMs: 60_000,
    stopSignal: 'SIGTERM',
    stopGraceMs: 1000,
    ...options,
  });
  await manager.start();
  return {
    manager,
    close: async () => {
      await manager.close();
      spawner.close();
    },
  };
}
