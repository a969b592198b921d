// What app.ts needs to switch sidecar mode on: a startup check and the list of
// backends for process specs.
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { ProcessRuntime } from '../process/process-runtime.js';
import type { TaskPrivileges } from '../shim/task-privileges.js';
import type { TaskRuntime } from '../runtime.js';
import { attachOnly, findInPath, SidecarRuntime } from './sidecar-runtime.js';

export { SidecarReason, SidecarRuntime } from './sidecar-runtime.js';

/** Why sidecar mode cannot work on this machine, or undefined. */
export function sidecarModeProblem(): string | undefined {
  try {
    findInPath('nsenter');
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * The backends for process specs. In sidecar mode new process tasks go to the
 * sidecar runtime (which supervises nsenter with `processes`); `processes`
 * itself stays registered under its own name, taking no new tasks, so tasks
 * started before sidecar mode was switched on are still followed and stopped.
 */
export function processBackends(
  config: Config,
  log: Logger,
  shimPath: string,
  processes: ProcessRuntime,
  privileges?: TaskPrivileges,
): TaskRuntime[] {
  if (!config.enableSidecarMode) return [processes];
  const sidecar = new SidecarRuntime({
    processes,
    shimPath,
    ...(privileges ? { privileges } : {}),
    mainContainerName: config.mainContainerName,
    mainContainerPid: config.mainContainerPid,
    mainContainerPidFile: config.mainContainerPidFile,
    log: log.child({ component: 'sidecar-runtime' }),
  });
  if (config.mainContainerPid !== undefined && config.mainContainerPidFile !== undefined) {
    log.warn('both --main-container-pid and --main-container-pid-file are set; --main-container-pid wins');
  }
  if (process.getuid?.() !== 0) {
    log.warn('sidecar mode needs root (CAP_SYS_ADMIN to enter namespaces, CAP_SYS_PTRACE to read other processes) and this executor is not root');
  }
  log.info({ mainContainer: sidecar.describeDiscovery() }, "sidecar mode: process tasks run in the main container's namespaces");
  return [sidecar, attachOnly(processes)];
}
