// Sidecar mode: process tasks run inside the main container's namespaces
// (mount, UTS, IPC, network, PID), entered with nsenter. The task is not run
// by a supervisor of its own: this runtime wraps a ProcessRuntime and hands it
// `nsenter --target <pid> ... -- <command> <args>` as the program, so the
// task-shim supervises nsenter exactly like a host task (detached, own session
// and process group, rotated logs, exit status written atomically, re-attach
// after an executor restart). nsenter forks the task into the target PID
// namespace, waits for it, exits with its exit code or re-raises its fatal
// signal, so the shim records the task's real status (128+N for signal N).
// With task privileges, nsenter's child is task-privs, which waits for the
// task in a child of its own the same way, blocking signals meanwhile, and
// reports a task killed before its exec so that the shim records a start
// failure (task-privs.c).
//
// What differs from a host task, and why this file exists:
// - the main container is looked up before every start (discovery.ts);
// - env, working directory, user/group and chroot are the main container's:
//   its initial environ plus the task's env, a working directory of its
//   filesystem (nsenter --wdns), ids from its /etc/passwd (nsenter -S/-G),
//   a chroot inside it (nsenter --root);
// - stop signals the task but not nsenter (a SIGTERM would kill nsenter
//   before the task could exit with a code of its own), then SIGKILLs
//   leaves first so their parents can reap them: orphans inside the target
//   PID namespace would be re-parented to its init, which may never reap.
//   The process runtime's stop does both (ProcessStopOptions), with the one
//   kill loop of ../process/task-tree.ts;
// - a task that died because the main container died reads as MainContainerExited;
// - its artifacts are copied into the main container (artifact-copy.ts) and
//   that copy is its default working directory, removed on release.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Logger } from 'pino';
import { resolveArtifact, topLevelNames } from '../../artifacts/source.js';
import type { EnvVar, ProcessSpec, TaskSpec } from '../../model/task.js';
import type { ProcessRuntime } from '../process/process-runtime.js';
import { isSameProcessAlive } from '../process/procfs.js';
import type { LogLocation, Observation, ResourceSample, Started, StartRequest, StopOptions, TaskRuntime } from '../runtime.js';
import { type MainContainer, MainContainerLocator, TASK_MARKER_ENV } from './discovery.js';
import { initialEnvironUtf8 } from './namespaces.js';
import { decodeSidecarHandle, SIDECAR_HANDLE_VERSION, type SidecarHandle } from './sidecar-handle.js';
import { ARTIFACTS_DIR_ENV, copyArtifactsIn, removeArtifactsCopy } from './artifact-copy.js';
import { directoryProblem, programProblem, resolveIdentity, resolveInRoot } from './target-fs.js';
import type { TaskPrivileges } from '../shim/task-privileges.js';

/** The fd task-shim hands task-privs down on (--privs-helper; TASK_PRIVS_FD in task-shim.c and task-privs.c). */
const TASK_PRIVS_FD = 200;

export type { SidecarHandle } from './sidecar-handle.js';

export const SidecarReason = {
  MainContainerNotFound: 'MainContainerNotFound',
  MainContainerExited: 'MainContainerExited',
} as const;

/** Exit code reported when a task could not start because of the main container (as for other runtime-side start failures). */
export const NOT_STARTED_EXIT_CODE = 128;

export interface SidecarRuntimeOptions {
  /** The process runtime that supervises nsenter (the plain process backend's instance: same shim, logs, cgroups). */
  processes: ProcessRuntime;
  /** The task-shim binary, so that discovery can tell task processes apart (besides their comm "task-shim"). */
  shimPath: string;
  /** --main-container-name: SANDBOX_MAIN_CONTAINER=<name> marks the main container. */
  mainContainerName: string;
  /** --main-container-pid */
  mainContainerPid?: number;
  /** --main-container-pid-file */
  mainContainerPidFile?: string;
  /** Absolute path of nsenter (util-linux); found in PATH when not given. */
  nsenterPath?: string;
  /** Least privilege for tasks, applied by task-privs after nsenter; absent: tasks keep the executor's privileges. */
  privileges?: TaskPrivileges;
  log: Logger;
}

type Exited = Extract<Observation, { state: 'exited' }>;

export class SidecarRuntime implements TaskRuntime<SidecarHandle> {
  readonly name = 'sidecar';
  readonly handleVersion = SIDECAR_HANDLE_VERSION;
  private readonly processes: ProcessRuntime;
  private readonly locator: MainContainerLocator;
  private readonly nsenter: string;
  private readonly log: Logger;
  private readonly privileges: TaskPrivileges | undefined;

  constructor(options: SidecarRuntimeOptions) {
    this.log = options.log;
    this.processes = options.processes;
    this.privileges = options.privileges;
    this.nsenter = options.nsenterPath ?? findInPath('nsenter');
    this.locator = new MainContainerLocator({
      name: options.mainContainerName,
      pid: options.mainContainerPid,
      pidFile: options.mainContainerPidFile,
      shimPath: options.shimPath,
    });
  }

  /** How the main container is looked up, for the startup log line. */
  describeDiscovery(): string {
    return this.locator.describe();
  }

  decodeHandle(raw: unknown): SidecarHandle {
    return decodeSidecarHandle(raw, this.processes);
  }

  accepts(spec: TaskSpec): boolean {
    return spec.process !== undefined;
  }

  /** A LOCALHOST seccomp profile's file (TaskPrivileges.check), which task-privs applies. */
  async check(spec: TaskSpec, field: string): Promise<void> {
    await this.privileges?.check(spec.securityContext, `${field}.securityContext`);
  }

  async start(request: StartRequest): Promise<Started<SidecarHandle>> {
    const discovery = this.locator.locate();
    if ('notFound' in discovery) {
      return notStarted({}, NOT_STARTED_EXIT_CODE, SidecarReason.MainContainerNotFound, discovery.notFound);
    }
    const target = discovery.found;
    this.log.debug({ task: request.name, target }, 'entering the main container');
    const copied = await this.placeArtifacts(request, target);
    if (typeof copied === 'object') return notStarted({ target }, NOT_STARTED_EXIT_CODE, 'ProcessStartFailed', copied.error);
    const artifactsDir = copied;
    const prepared = this.prepare(request.name, request, target, artifactsDir);
    if ('exitCode' in prepared) {
      if (artifactsDir) await this.removeArtifacts({ target, artifactsDir });
      return notStarted({ target }, prepared.exitCode, 'ProcessStartFailed', prepared.message);
    }

    const started = await this.processes.start(
      { ...request, spec: { ...request.spec, process: prepared.spec } },
      prepared.privsHelper ? { privsHelper: prepared.privsHelper } : {},
    );
    if (prepared.warnings.length > 0) started.warnings = [...(started.warnings ?? []), ...prepared.warnings];
    const handle: SidecarHandle = { inner: started.handle, innerVersion: this.processes.handleVersion, target, ...(artifactsDir ? { artifactsDir } : {}) };
    if (started.observation.state === 'running' && !isSameProcessAlive(target.pid, target.startTime)) {
      // The main container went away between the lookup and nsenter: its pid may already name another process.
      await this.processes.stop(started.handle, { signal: 'SIGKILL', graceMs: 0 });
      return notStarted(
        handle,
        NOT_STARTED_EXIT_CODE,
        SidecarReason.MainContainerExited,
        `the main container (pid ${target.pid}) exited while the task was starting`,
      );
    }
    return { handle, observation: started.observation, warnings: started.warnings };
  }

  /**
   * Adopts a task whose start the executor did not live to record. Its
   * supervisor (running nsenter) left start.json like any process task's, so
   * the process runtime finds it, or makes sure none is still starting, and
   * the task never runs twice. The main container it entered is looked up
   * again (it is the one a start would have entered).
   */
  async recover(request: StartRequest): Promise<Started<SidecarHandle> | undefined> {
    const found = await this.processes.recover(request);
    if (!found) return undefined;
    const discovery = this.locator.locate();
    const target = 'found' in discovery ? discovery.found : undefined;
    const handle: SidecarHandle = { inner: found.handle, innerVersion: this.processes.handleVersion, ...(target ? { target } : {}) };
    return { handle, observation: found.observation, ...(found.warnings ? { warnings: found.warnings } : {}) };
  }

  async inspect(handle: SidecarHandle): Promise<Observation> {
    if (handle.failure) return handle.failure;
    if (!handle.inner) return { state: 'lost', message: 'the task never started' };
    const observation = await this.processes.inspect(handle.inner);
    if (observation.state === 'running' || !handle.target) return observation;
    // When a PID namespace's init dies, the kernel SIGKILLs every process in it: the task
    // ends by SIGKILL (or vanishes) and the main container's process is gone.
    const killed = observation.state === 'lost' || (observation.signal === 9 && observation.reason === undefined);
    if (!killed || isSameProcessAlive(handle.target.pid, handle.target.startTime)) return observation;
    return {
      state: 'exited',
      exitCode: 137,
      signal: 9,
      startedAt: observation.startedAt,
      finishedAt: observation.state === 'exited' ? observation.finishedAt : new Date().toISOString(),
      reason: SidecarReason.MainContainerExited,
      message: `the main container (pid ${handle.target.pid}, found by ${handle.target.foundBy}) exited while the task ran; the task was killed with it`,
    };
  }

  /**
   * The process runtime's stop, told what nsenter is: a wrapper that must
   * outlive the task to report how it ended (spared by the signal), above a
   * PID namespace whose init may never reap orphans (leaves killed first).
   */
  async stop({ inner }: SidecarHandle, options: StopOptions): Promise<void> {
    if (inner) await this.processes.stop(inner, { ...options, spareTaskProcess: true, nestedPidNamespace: true });
  }

  /** What the shims started for the task directory ran (nsenter and the task below it), as for a process task. */
  reclaim(name: string, taskDir: string): Promise<number> {
    return this.processes.reclaim(name, taskDir);
  }

  async release(handle: SidecarHandle): Promise<void> {
    if (handle.inner) await this.processes.release(handle.inner);
    await this.removeArtifacts(handle);
  }

  /**
   * Copies the task's artifacts (fetched into its task directory, which the
   * main container does not see) into the main container: the copy's path
   * there, undefined for a task without artifacts, or why they could not be placed.
   */
  private async placeArtifacts(request: StartRequest, target: MainContainer): Promise<string | undefined | { error: string }> {
    const artifacts = request.spec.artifacts ?? [];
    if (artifacts.length === 0) return undefined;
    try {
      const names = topLevelNames(artifacts.map((artifact, i) => resolveArtifact(artifact, `artifacts[${i}]`)));
      return await copyArtifactsIn(`/proc/${target.pid}/root`, request.name, request.taskDir, names);
    } catch (error) {
      return { error: `cannot place the artifacts in the main container: ${(error as Error).message}` };
    }
  }

  /**
   * Best effort: the copy goes with the task. Only in the main container it
   * was made in: a pid that now names another process is not touched, and a
   * main container that exited took its copy with it (or keeps it, restarted,
   * where the executor no longer reaches it).
   */
  private async removeArtifacts({ target, artifactsDir }: Pick<SidecarHandle, 'target' | 'artifactsDir'>): Promise<void> {
    if (!artifactsDir || !target || !isSameProcessAlive(target.pid, target.startTime)) return;
    try {
      await removeArtifactsCopy(`/proc/${target.pid}/root`, artifactsDir);
    } catch (error) {
      this.log.warn({ err: error, artifactsDir, target: target.pid }, "could not remove a task's artifacts from the main container");
    }
  }

  logs({ inner }: SidecarHandle): LogLocation | undefined {
    return inner ? this.processes.logs(inner) : undefined;
  }

  watch({ inner }: SidecarHandle, onChange: () => void): () => void {
    return inner ? this.processes.watch(inner, onChange) : () => {};
  }

  /** Usage of the nsenter tree under the shim (host pids): the wrapped runtime's answer holds. */
  async stats({ inner }: SidecarHandle): Promise<ResourceSample> {
    return inner ? this.processes.stats(inner) : { time: Date.now(), pids: 0, rssBytes: 0 };
  }

  /** The spec the wrapped process runtime runs: nsenter with the task's settings as nsenter options. */
  private prepare(
    taskName: string,
    request: StartRequest,
    target: MainContainer,
    artifactsDir: string | undefined,
  ): { spec: ProcessSpec; privsHelper?: string; warnings: string[] } | { exitCode: number; message: string } {
    const asked = request.spec.process!;
    // The artifacts' copy is the default working directory (as the task directory is for a process task), so that
    // `artifacts/script.sh` works; not under a chroot, which it is outside of.
    const spec = artifactsDir && !asked.workingDir && !asked.chroot ? { ...asked, workingDir: artifactsDir } : asked;
    const root = `/proc/${target.pid}/root`;
    let fsRoot = root;
    let chroot: string | undefined;
    if (spec.chroot) {
      const resolved = resolveInRoot(root, spec.chroot);
      const problem = 'error' in resolved ? resolved.error : directoryProblem(root, resolved.path);
      if (problem !== undefined || 'error' in resolved) {
        return { exitCode: 1, message: `chroot ${spec.chroot}: ${problem} (in the main container)` };
      }
      chroot = resolved.path;
      fsRoot = `${root}${chroot === '/' ? '' : chroot}`;
    }
    if (spec.workingDir) {
      const problem = directoryProblem(fsRoot, spec.workingDir);
      if (problem) return { exitCode: 1, message: `chdir ${spec.workingDir}: ${problem} (in the main container)` };
    }
    // Accounts are the main container's, looked up before the chroot (as the process runtime does on the host).
    const identity = resolveIdentity(root, spec.user, spec.group);
    if ('error' in identity) return { exitCode: 1, message: identity.error };

    const env: EnvVar[] = [];
    if (!spec.cleanEnv) {
      let environ: string[];
      try {
        environ = initialEnvironUtf8(target.pid);
      } catch (error) {
        return { exitCode: 1, message: `cannot read the main container's environment: ${(error as Error).message}` };
      }
      for (const entry of environ) {
        const eq = entry.indexOf('=');
        if (eq > 0) env.push({ name: entry.slice(0, eq), value: entry.slice(eq + 1) });
      }
    }
    for (const [name, value] of Object.entries(identity.env)) env.push({ name, value });
    env.push({ name: TASK_MARKER_ENV, value: taskName });
    if (artifactsDir) env.push({ name: ARTIFACTS_DIR_ENV, value: artifactsDir });
    env.push(...spec.env);

    const program = spec.command[0]!;
    const path = [...env].reverse().find((e) => e.name === 'PATH')?.value;
    const missing = programProblem(fsRoot, program, path, spec.workingDir ?? '/');
    if (missing) return missing;

    const argv = [this.nsenter, `--target=${target.pid}`, '--mount', '--uts', '--ipc', '--net', '--pid'];
    const privileges = this.privileges?.args(request.spec.securityContext) ?? { args: [], warnings: [] };
    const helper = privileges.args.length > 0 ? this.privileges?.options.helperPath : undefined;
    const warnings = [...privileges.warnings];
    if (privileges.args.length > 0 && !helper) {
      warnings.push('the task keeps the executor\'s privileges: build/task-privs, which applies them inside the main container, was not built');
    }
    if (helper) {
      // nsenter needs CAP_SYS_ADMIN to enter the namespaces (and the default seccomp profile
      // denies setns), so the privileges are dropped after it, by task-privs: the shim hands
      // the binary down as an fd, which works in any mount namespace (the main container need
      // not have it, nor setpriv). The chroot and the identity change move to task-privs, as
      // they must come between its steps (and /proc/self must still be reachable to exec it).
      if (spec.workingDir && chroot === undefined) argv.push(`--wdns=${spec.workingDir}`);
      argv.push('--', `/proc/self/fd/${TASK_PRIVS_FD}`, ...privileges.args);
      if (chroot !== undefined) argv.push('--chroot', chroot, '--cwd', spec.workingDir ?? '/');
      if (identity.gid !== undefined) argv.push('--gid', String(identity.gid));
      if (identity.uid !== undefined) argv.push('--uid', String(identity.uid));
    } else {
      if (chroot !== undefined) {
        // --root opens its path in the executor's mount namespace: reach the target's through /proc/<pid>/root.
        // Without --wdns, nsenter would keep the executor's working directory, outside the new root.
        argv.push(`--root=${fsRoot}`, `--wdns=${spec.workingDir ?? '/'}`);
      } else if (spec.workingDir) {
        argv.push(`--wdns=${spec.workingDir}`);
      }
      if (identity.gid !== undefined) argv.push(`--setgid=${identity.gid}`);
      if (identity.uid !== undefined) argv.push(`--setuid=${identity.uid}`);
    }
    argv.push('--', ...spec.command, ...spec.args);
    return {
      ...(helper ? { privsHelper: helper } : {}),
      warnings,
      spec: {
        ...spec,
        command: argv,
        args: [],
        env,
        cleanEnv: true,
        // Applied inside the main container by nsenter, never by the shim on the host.
        workingDir: undefined,
        user: undefined,
        group: undefined,
        chroot: undefined,
      },
    };
  }
}

/**
 * A runtime that keeps following tasks it started earlier but takes no new
 * ones: the plain process backend in sidecar mode, for tasks an executor
 * started before sidecar mode was switched on.
 */
export function attachOnly<H>(runtime: TaskRuntime<H>): TaskRuntime<H> {
  return {
    name: runtime.name,
    handleVersion: runtime.handleVersion,
    decodeHandle: (raw, version) => runtime.decodeHandle(raw, version),
    accepts: () => false,
    start: (request) => runtime.start(request),
    inspect: (handle) => runtime.inspect(handle),
    stop: (handle, options) => runtime.stop(handle, options),
    release: (handle) => runtime.release(handle),
    ...(runtime.reclaim && { reclaim: (name: string, taskDir: string) => runtime.reclaim!(name, taskDir) }),
    ...(runtime.watch && { watch: (handle: H, onChange: () => void) => runtime.watch!(handle, onChange) }),
    ...(runtime.logs && { logs: (handle: H) => runtime.logs!(handle) }),
    ...(runtime.stats && { stats: (handle: H) => runtime.stats!(handle) }),
  };
}

function notStarted(handle: SidecarHandle, exitCode: number, reason: string, message: string): Started<SidecarHandle> {
  const failure: Exited = { state: 'exited', exitCode, signal: 0, finishedAt: new Date().toISOString(), reason, message };
  return { handle: { ...handle, failure }, observation: failure };
}

export function findInPath(program: string): string {
  for (const dir of (process.env.PATH || '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, program);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  throw new Error(`sidecar mode needs ${program} (util-linux) in PATH; install it or put it in the executor's PATH`);
}

