// Finds the main container's process, whose namespaces sidecar tasks enter.
// Looked up again before every start (a restarted main container has a new
// pid), in this order: an explicit pid, a pid file, else a /proc scan for
// SANDBOX_MAIN_CONTAINER=<name> in a process's initial environment.
import { readFileSync, realpathSync } from 'node:fs';
import { errorMessage } from '../../errors.js';
import { hasExited, type ProcessTable, processTable, readStat } from '../process/procfs.js';
import { commOf, exeOf, namespaceOf, nsPids } from './namespaces.js';
import { isErrno } from '../../util/errno.js';

/** The environment variable that marks the main container (the original's convention). */
export const MAIN_CONTAINER_ENV = 'SANDBOX_MAIN_CONTAINER';
/** Set in every sidecar task's environment, so that discovery never mistakes a task process for the main container. */
export const TASK_MARKER_ENV = 'TASK_EXECUTOR_SIDECAR_TASK';

export interface DiscoveryConfig {
  /** Value of SANDBOX_MAIN_CONTAINER that marks the main container (--main-container-name). */
  name: string;
  /** --main-container-pid: used as is (after the checks below). */
  pid?: number;
  /** --main-container-pid-file: read again at every start. */
  pidFile?: string;
  /** The task supervisor; its descendants are task processes, never the main container (also recognised by comm "task-shim"). */
  shimPath?: string;
}

export interface MainContainer {
  /** Host pid (the executor's PID namespace) of a process inside the main container's namespaces. */
  pid: number;
  /** Field 22 of /proc/<pid>/stat: with the pid, the process's identity. */
  startTime: string;
  /** e.g. "pid:[4026532281]". */
  pidNamespace: string;
  /** How it was found, for messages and logs. */
  foundBy: string;
}

export type Discovery = { found: MainContainer } | { notFound: string };

export class MainContainerLocator {
  private readonly shimRealPath: string | undefined;

  constructor(private readonly config: DiscoveryConfig) {
    try {
      this.shimRealPath = config.shimPath ? realpathSync(config.shimPath) : undefined;
    } catch {
      this.shimRealPath = undefined;
    }
  }

  /** How discovery is configured, in words. */
  describe(): string {
    if (this.config.pid !== undefined) return `--main-container-pid ${this.config.pid}`;
    if (this.config.pidFile !== undefined) return `--main-container-pid-file ${this.config.pidFile}`;
    return `a process with ${MAIN_CONTAINER_ENV}=${this.config.name} in its environment (--main-container-name ${this.config.name})`;
  }

  locate(): Discovery {
    const { pid, pidFile } = this.config;
    if (pid !== undefined) return this.fromPid(pid, `--main-container-pid ${pid}`);
    if (pidFile !== undefined) {
      let text: string;
      try {
        text = readFileSync(pidFile, 'utf8');
      } catch (error) {
        return { notFound: `cannot read the main container's pid file ${pidFile} (--main-container-pid-file): ${errorMessage(error)}` };
      }
      const value = text.trim();
      if (!/^[1-9][0-9]{0,9}$/.test(value)) {
        return { notFound: `the main container's pid file ${pidFile} (--main-container-pid-file) holds ${JSON.stringify(value.slice(0, 40))}, not a pid` };
      }
      return this.fromPid(Number(value), `pid ${value} from --main-container-pid-file ${pidFile}`);
    }
    return this.fromEnvironment();
  }

  private fromPid(pid: number, source: string): Discovery {
    const stat = readStat(pid);
    if (!stat || hasExited(stat)) {
      return { notFound: `no main container: ${source}, but no such process is running` };
    }
    return this.describeTarget(this.insideNamespaces(pid, processTable()), source);
  }

  private fromEnvironment(): Discovery {
    const needle = `${MAIN_CONTAINER_ENV}=${this.config.name}`;
    const table = processTable();
    const shims = new Map<number, boolean>();
    const candidates: { pid: number; depth: number; init: boolean }[] = [];
    let unreadable = 0;
    let taskProcesses = 0;
    for (const pid of table.keys()) {
      if (pid === process.pid) continue;
      let environ: string[];
      try {
        environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      } catch (error) {
        if (isErrno(error, 'EACCES')) unreadable++;
        continue;
      }
      if (!environ.includes(needle)) continue;
      if (environ.some((e) => e.startsWith(`${TASK_MARKER_ENV}=`)) || this.descendsFromShim(pid, table, shims)) {
        taskProcesses++;
        continue;
      }
      const levels = nsPids(pid) ?? [pid];
      candidates.push({ pid, depth: levels.length, init: levels[levels.length - 1] === 1 });
    }
    // Deepest PID namespace first (the unshare-style parent stays in ours), then a namespace's
    // init, then the oldest-looking (lowest) pid: a main container's entrypoint before its children.
    candidates.sort((a, b) => b.depth - a.depth || Number(b.init) - Number(a.init) || a.pid - b.pid);
    const best = candidates[0];
    if (!best) {
      const notes = [
        taskProcesses > 0 ? `${taskProcesses} task process(es) that inherited it were ignored` : '',
        unreadable > 0 ? `${unreadable} process environment(s) could not be read (the executor needs root or CAP_SYS_PTRACE)` : '',
      ].filter(Boolean);
      return {
        notFound:
          `no main container: no running process has ${needle} in its environment (--main-container-name ${this.config.name}` +
          `${notes.length ? `; ${notes.join('; ')}` : ''}). Set ${needle} in the main container's environment, or name its ` +
          'process with --main-container-pid or --main-container-pid-file',
      };
    }
    return this.describeTarget(this.insideNamespaces(best.pid, table), `${needle} in the environment of pid ${best.pid}`);
  }

  /** A process started by a task-shim (or the shim itself) is a task process, whatever its environment says. */
  private descendsFromShim(pid: number, table: ProcessTable, cache: Map<number, boolean>): boolean {
    const chain: number[] = [];
    let current: number | undefined = pid;
    let result = false;
    for (let steps = 0; current !== undefined && current > 1 && steps < 128; steps++) {
      const known = cache.get(current);
      if (known !== undefined) {
        result = known;
        break;
      }
      chain.push(current);
      if (this.isShim(current)) {
        result = true;
        break;
      }
      current = table.get(current)?.ppid;
    }
    for (const pid of chain) cache.set(pid, result);
    return result;
  }

  private isShim(pid: number): boolean {
    if (commOf(pid) === 'task-shim') return true;
    const exe = exeOf(pid);
    return exe !== undefined && exe === this.shimRealPath;
  }

  /**
   * `unshare --pid --fork` and the like stay in the outer PID namespace and
   * only create the new one for their children: nsenter --target <them> would
   * enter the wrong PID namespace. Use the child that lives in it instead.
   */
  private insideNamespaces(pid: number, table: ProcessTable): { pid: number; note?: string } {
    const own = namespaceOf(pid, 'pid');
    const forChildren = namespaceOf(pid, 'pid_for_children');
    if (!own || !forChildren || own === forChildren) return { pid };
    const children = [...table]
      .filter(([child, stat]) => stat.ppid === pid && namespaceOf(child, 'pid') === forChildren)
      .map(([child]) => child)
      .sort((a, b) => a - b);
    const child = children[0];
    if (child === undefined) return { pid };
    return {
      pid: child,
      note: `pid ${pid} stays in the outer PID namespace (it created a new one for its children only, like unshare --fork), so its child ${child} is used`,
    };
  }

  private describeTarget(choice: { pid: number; note?: string }, source: string): Discovery {
    const { pid } = choice;
    const stat = readStat(pid);
    let pidNamespace: string | undefined;
    let mountNamespace: string | undefined;
    try {
      pidNamespace = namespaceOf(pid, 'pid');
      mountNamespace = namespaceOf(pid, 'mnt');
    } catch (error) {
      throw new Error(
        `cannot read the namespaces of the main container's process ${pid} (${errorMessage(error)}): ` +
          'sidecar mode needs root (CAP_SYS_ADMIN and CAP_SYS_PTRACE) and a shared PID namespace with the main container',
      );
    }
    if (!stat || !pidNamespace || hasExited(stat)) {
      return { notFound: `no main container: ${source}, but process ${pid} exited while it was being looked up` };
    }
    // A main container has a filesystem of its own. A process in the executor's (a pid file that
    // outlived its container, whose number now names a process of the host or of the executor's
    // own container) would run the task beside the executor, with its privileges.
    if (mountNamespace !== undefined && mountNamespace === namespaceOf('self', 'mnt')) {
      return {
        notFound:
          `no main container: ${source}, but process ${pid} (${commOf(pid) ?? 'gone'}) is in the executor's own mount namespace, ` +
          'so it is not a main container (a stale pid file, or a pid reused by another process?)',
      };
    }
    return { found: { pid, startTime: stat.startTime, pidNamespace, foundBy: choice.note ? `${source}; ${choice.note}` : source } };
  }
}
