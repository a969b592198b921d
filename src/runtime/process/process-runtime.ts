// Runs a process task as the child of a small detached supervisor, task-shim
// (src/runtime/shim/task-shim.c). The shim, not the executor, owns the task's
// pipes and exit status, so the task neither dies nor blocks when the executor
// restarts, and its exit status is written atomically (exit.json).
//
// Where cgroups are writable every task also gets its own cgroup (see
// ../cgroups/): limits from spec.resources, OOM detection, a stop that reaches
// processes which left both the process group and the shim's tree, and exact
// accounting for stats. Without cgroups the task still runs; limits it asked
// for are reported as not enforced in Started.warnings.
import { setTimeout as delay, setImmediate as loopTurn } from 'node:timers/promises';
import { existsSync, type FSWatcher, watch } from 'node:fs';
import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { Semaphore } from 'async-mutex';
import type { Logger } from 'pino';
import type { ProcessSpec, TaskSpec } from '../../model/task.js';
import { type CgroupManager, scopeOf, type TaskCgroup } from '../cgroups/index.js';
import { AdmissionAbandoned, type LogLocation, type Observation, type ResourceSample, type Started, type StartRequest, type StopOptions, type TaskRuntime } from '../runtime.js';
import { exitObservation, type HeldExit, heldObservation, recordedExitObservation, unreadableObservation } from './observations.js';
import { bootId, isSameProcessAlive, sampleProcesses, signalQuietly, startTimeOf } from './procfs.js';
import { decodeProcessHandle, isRun, PROCESS_HANDLE_VERSION, type ProcessHandle, type ShimHandle } from './shim-handle.js';
import { parseEvent, readExitRecord, readStartRecord, type ShimEvent, type StartRecord } from './shim-protocol.js';
import { type SpawnedShim, SpawnerLost, type ShimSpawner } from './shim-spawner.js';
import type { TaskPrivileges } from '../shim/task-privileges.js';
import { deadlineIn } from '../../util/poll.js';
import { resolvedOk } from '../../util/settled.js';
import { freeze, killShimTree, scanShims, type ShimScan, shimAlive, shimsFor, thaw } from './stalled-shims.js';
import { KILL_BUDGET_MS, killTaskTree, measuredTree, type Pushes, signalTree, type TreeOrder, treeGone, waitForTree } from './task-tree.js';

export type { ProcessHandle, ShimHandle } from './shim-handle.js';

export interface ProcessRuntimeOptions {
  logMaxBytes: number;
  logMaxFiles: number;
  /** The shim also writes <task dir>/stdout.log and stderr.log as plain text (--plain-logs). */
  plainLogFiles?: boolean;
  log: Logger;
  /** The per-task cgroup service (app.ts creates it). */
  cgroups: CgroupManager;
  /** Starts the shims (app.ts creates it beside this runtime and closes it on shutdown). */
  spawner: ShimSpawner;
  /** Least privilege for tasks (securityContext and the executor's defaults); absent: tasks keep the executor's. */
  privileges?: TaskPrivileges;
}

/**
 * How the sidecar backend's program (nsenter, the task in the main container's
 * namespaces below it) must be stopped; the plain process backend uses none.
 */
export interface ProcessStopOptions extends StopOptions {
  /**
   * The task's own process only wraps its real work and reports how that
   * ended (nsenter exits with its child's code or signal): the stop signal
   * and the first SIGKILLs spare it, and it is killed once the rest is gone.
   */
  spareTaskProcess?: boolean;
  /**
   * What the task started lives in a PID namespace of its own, whose init
   * adopts orphans and may never reap them: SIGKILL goes to the leaves first,
   * so that each parent reaps its children (see TreeOrder.leavesFirst).
   */
  nestedPidNamespace?: boolean;
}

/**
 * How a caller that wraps the task's program (the sidecar backend: nsenter) wants it started.
 * The wrapper needs the executor's privileges, so the shim applies none; privsHelper, when
 * given, is handed to the program as fd 200 (task-shim --privs-helper), for the wrapper to
 * exec the helper that drops them later.
 */
export interface WrapperLaunch {
  privsHelper?: string;
}

const POLL_MS = 25;
/** How long leaf-first killing (nestedPidNamespace) may take before the rest of the tree is SIGKILLed at once. */
const ORDERLY_KILL_BUDGET_MS = 1500;
/** How long one scan for shims serves the recoveries of an executor start (see recoveryScan). */
const RECOVERY_SCAN_MAX_AGE_MS = 2000;
/** The files one run of the shim leaves in the task directory. */
const EXIT_RECORD = 'exit.json';
const RUN_RECORDS = ['start.json', EXIT_RECORD];
const EXIT_RECORD_WAIT_MS = 5000;
/**
 * Empty cgroups of other executor instances (left by data dirs deleted without
 * deleting their tasks, as test runs do) are removed once this old. A live
 * executor notices a task's exit (and its OOM-kill counter) within a second.
 */
const FOREIGN_CGROUP_MIN_AGE_MS = 10 * 60 * 1000;
/** Stops that look at their trees at once; see ProcessRuntime.stopTurn. */
const STOP_TURNS = 2 * availableParallelism();
/**
 * The order in which waiting stop turns are served: a stop further along
 * first. A mass stop then ends task by task instead of every stop taking each
 * step in lockstep (all signals, then all looks, then all kills), which made
 * every task's end, and the releases after it, come in one burst at the end.
 */
const TURN_PRIORITY = { signal: 0, look: 1, kill: 2, release: 3 } as const;

export class ProcessRuntime implements TaskRuntime<ProcessHandle> {
  readonly name = 'process';
  readonly handleVersion = PROCESS_HANDLE_VERSION;
  private readonly listeners = new Map<number, Set<() => void>>();
  /** Shims whose event lines this runtime reads (it started them, and the spawner relays them). */
  private readonly followed = new Set<number>();
  private scan: { at: number; shims: ShimScan } | undefined;
  /** By task dir: exit statuses learned from a shim's events that it could not write to disk. */
  private readonly held = new Map<string, HeldExit>();
  private readonly cgroups: CgroupManager;
  /** Scopes (data dirs) whose leftover cgroups were swept since this runtime started. */
  private readonly swept = new Set<string>();
  private readonly stopTurns = new Semaphore(STOP_TURNS);

  constructor(private readonly options: ProcessRuntimeOptions) {
    this.cgroups = options.cgroups;
    options.log.info(this.cgroups.describe(), 'task cgroups');
  }

  decodeHandle(raw: unknown): ProcessHandle {
    return decodeProcessHandle(raw);
  }

  accepts(spec: TaskSpec): boolean {
    return spec.process !== undefined;
  }

  /** A LOCALHOST seccomp profile's file (TaskPrivileges.check). */
  async check(spec: TaskSpec, field: string): Promise<void> {
    await this.options.privileges?.check(spec.securityContext, `${field}.securityContext`);
  }

  /** The shim gets ready (exec, records reserved, logs opened) while the task's record is written; see launch. */
  readonly startsBeforeAdmitted = true;

  async start(request: StartRequest, wrapper?: WrapperLaunch): Promise<Started<ProcessHandle>> {
    const spec = request.spec.process!;
    const argv = [...spec.command, ...spec.args];
    const logs = request.spec.logs;
    const args = ['--dir', request.taskDir, '--log-max-bytes', String(logs?.maxFileSizeBytes ?? this.options.logMaxBytes)];
    args.push('--log-max-files', String(logs?.maxFiles ?? this.options.logMaxFiles));
    if (this.options.plainLogFiles) args.push('--plain-logs', '1');
    // Unset, a task starts in its own directory (ProcessSpec.working_dir), where its artifacts are;
    // a chrooted one in the root of its chroot.
    const cwd = spec.workingDir || (spec.chroot ? undefined : request.taskDir);
    if (cwd) args.push('--cwd', cwd);
    if (spec.user) args.push('--user', spec.user);
    if (spec.group) args.push('--group', spec.group);
    if (spec.chroot) args.push('--chroot', spec.chroot);
    if (request.admitted) args.push('--gate', '1');
    // A wrapper (nsenter) keeps the executor's privileges; the task's are applied after it (task-privs).
    const own = wrapper ? undefined : this.options.privileges?.args(request.spec.securityContext, { compiled: true });
    const privileges = own ?? { args: [], warnings: [] };
    args.push(...privileges.args);
    if (wrapper?.privsHelper) args.push('--privs-helper', wrapper.privsHelper);

    const dataDir = dirname(request.taskDir);
    const scope = scopeOf(dataDir);
    if (!this.swept.has(scope)) {
      this.swept.add(scope);
      // Housekeeping nobody waits for: leftovers may be thousands (a CI fault test timed
      // out behind other executors' once). Neither sweep takes a cgroup a start is using.
      this.cgroups
        .sweep(scope, liveTasksOf(dataDir))
        .catch((error: unknown) => this.options.log.warn({ err: error, scope }, 'cannot sweep leftover cgroups'));
      void this.cgroups.sweepForeignInBackground(scope, FOREIGN_CGROUP_MIN_AGE_MS);
    }
    const created = this.cgroups.create(scope, request.name, request.spec.resources);
    const { cgroup } = created;
    const warnings = [...created.warnings, ...privileges.warnings];
    if (warnings.length > 0) this.options.log.warn({ task: request.name, warnings }, 'task runs without some of the limits it asked for');
    for (const file of cgroup ? this.cgroups.procsFiles(cgroup) : []) args.push('--cgroup-procs', file);
    args.push('--', ...argv);
    try {
      const started = await this.launch(request, args, spec, cgroup);
      if (started.observation.state !== 'running' && cgroup) await this.cgroups.remove(cgroup);
      // Warnings live only in the executor's record (recover cannot tell them): such a start is not durable.
      return warnings.length > 0 ? { ...started, warnings, durable: false } : started;
    } catch (error) {
      if (cgroup) await this.cgroups.remove(cgroup);
      throw error;
    }
  }

  private async launch(
    request: StartRequest,
    args: string[],
    spec: ProcessSpec,
    cgroup: TaskCgroup | undefined,
    retried = false,
  ): Promise<Started<ProcessHandle>> {
    const again = retried ? undefined : () => this.launch(request, args, spec, cgroup, true);
    let shim: SpawnedShim;
    try {
      shim = await this.options.spawner.spawn(args, taskEnvironment(process.env, spec), { gated: request.admitted !== undefined });
    } catch (error) {
      if (!(error instanceof SpawnerLost)) throw error;
      return this.afterLostSpawner(request, error, again);
    }
    const shimPid = shim.pid;
    const shimStartTime = startTimeOf(shimPid) ?? '';
    if (request.admitted) {
      // The shim waits at its gate, ready; the task runs only once its record is on disk.
      if (!(await resolvedOk(request.admitted))) {
        shim.abort();
        await shim.exited;
        throw new AdmissionAbandoned();
      }
      shim.go();
    }
    const first = await shim.nextLine();
    if (first === undefined) {
      if (shim.lost) return this.afterLostSpawner(request, new SpawnerLost('while the shim started'), again);
      throw new Error(`task-shim exited (${await shim.exited}) before starting the task: ${shim.stderr.join('\n').trim()}`);
    }
    const event = parseEvent(first);
    if (event?.event === 'start-failed') {
      // With the cgroup: a process the OOM killer ended before it could exec is named so.
      const observation = exitObservation({ dir: request.taskDir, ...(cgroup ? { cgroup } : {}) }, event, this.cgroups);
      return { handle: { dir: request.taskDir }, observation };
    }
    if (event?.event !== 'started') {
      signalQuietly(shimPid, 'SIGKILL');
      throw new Error(`task-shim said ${JSON.stringify(first.slice(0, 200))} instead of announcing the start: ${shim.stderr.join('\n').trim()}`);
    }
    // Later lines announce the exit; tell watchers at once instead of waiting for a poll.
    shim.follow((line) => this.onEvent(request.taskDir, shimPid, parseEvent(line)));
    this.followed.add(shimPid);
    const handle: ShimHandle = {
      dir: request.taskDir,
      bootId: bootId(),
      shimPid,
      shimStartTime,
      pid: event.pid,
      pgid: event.pgid,
      startTime: event.startTime,
      startedAt: event.startedAt,
      ...(cgroup ? { cgroup } : {}),
    };
    // start.json is on disk (the shim fsyncs it before the line) unless the line says it is not:
    // recover would adopt this very run, so the start survives an executor crash.
    return { handle, observation: { state: 'running', startedAt: event.startedAt }, durable: event.recordError === undefined };
  }

  /**
   * The spawner ended while this start was under way, so whether the shim
   * started the task is unknown: find out as after an executor restart
   * (start.json, exit.json, or a shim still starting for this directory).
   */
  private async afterLostSpawner(
    request: StartRequest,
    error: SpawnerLost,
    again: (() => Promise<Started<ProcessHandle>>) | undefined,
  ): Promise<Started<ProcessHandle>> {
    this.scan = undefined; // a scan taken before this start cannot show its shim
    const found = await this.recover(request);
    if (found) return found;
    // recover() left nothing that could still run the task (a stalled shim is killed), so the
    // start is made once more, by the next spawner: the helper's crash is not the task's failure.
    if (again) {
      this.options.log.warn({ dir: request.taskDir, reason: error.message }, 'the shim spawner ended before the task started; starting it again');
      return again();
    }
    throw new Error(`${error.message} before the task started; it was not started`);
  }

  /** A later event of a running shim: remember an exit it could not write, and tell watchers at once. */
  private onEvent(dir: string, shimPid: number, event: ShimEvent | undefined): void {
    if (event?.event === 'exited' && event.recordError !== undefined) {
      const { event: _, ...exit } = event;
      this.held.set(dir, { ...exit, recordError: event.recordError });
      this.options.log.warn({ dir, exit }, 'task-shim could not write the exit status to disk; it keeps it and retries');
    }
    this.notify(shimPid);
  }

  /**
   * Adopts a task whose start the executor did not live to record: the shim's
   * start.json (or a start failure in exit.json) says it started. A shim still
   * starting for this directory is waited for; one that has not started the
   * task by then (it stalled) is frozen and, unless it wrote start.json
   * meanwhile, killed with everything below it before this returns, so the
   * task never runs twice. The adopted handle has the task's cgroup when its
   * process is still in it (CgroupManager.find), so a stop reaches what left
   * the process group and the shim's tree; otherwise none (the cgroup is
   * swept once empty). A start the shim reported with start.json on disk is
   * adopted as it was started (Started.durable).
   */
  async recover(request: StartRequest): Promise<Started<ProcessHandle> | undefined> {
    const starting = shimsFor(request.taskDir, this.recoveryScan());
    const deadline = deadlineIn(EXIT_RECORD_WAIT_MS);
    for (;;) {
      const found = await this.recorded(request);
      if (found) return found;
      const live = starting.filter(shimAlive);
      if (live.length === 0) return undefined;
      if (deadline.passed()) break;
      await delay(POLL_MS);
    }
    const stalled = starting.filter(shimAlive);
    await Promise.all(stalled.map(freeze));
    const found = await this.recorded(request);
    if (found) {
      stalled.forEach(thaw);
      return found;
    }
    const gone = await Promise.all(stalled.map(killShimTree));
    this.options.log.warn({ dir: request.taskDir, shims: stalled.map((s) => s.pid) }, 'killed a task-shim that stalled before starting the task');
    if (gone.includes(false)) {
      throw new Error(`a task-shim for ${request.taskDir} stalled before starting the task and survived SIGKILL; not starting the task again`);
    }
    return this.recorded(request);
  }

  /**
   * The shims alive when this runtime began recovering tasks. Every task
   * without a recorded start is recovered at once after a restart, and only
   * an earlier executor can have started a shim for such a task (this one
   * starts none before its recovery is done), so one scan of /proc serves
   * them all instead of one scan each.
   */
  private recoveryScan(): ShimScan {
    if (!this.scan || performance.now() - this.scan.at > RECOVERY_SCAN_MAX_AGE_MS) this.scan = { at: performance.now(), shims: scanShims() };
    return this.scan.shims;
  }

  /** What start.json or exit.json say about a start the executor did not record. */
  private async recorded(request: StartRequest): Promise<Started<ProcessHandle> | undefined> {
    const dir = request.taskDir;
    const start = await readStartRecord(dir);
    if (start) {
      const cgroup = this.cgroups.find(scopeOf(dirname(dir)), request.name, start.pid, request.spec.resources);
      const handle = handleFromStart(dir, start, cgroup);
      return { handle, observation: await this.inspect(handle) };
    }
    const exit = await readExitRecord(dir);
    if (exit.state === 'absent') return undefined;
    return { handle: { dir }, observation: exit.state === 'valid' ? exitObservation({ dir }, exit.record, this.cgroups) : unreadableObservation(dir, exit) };
  }

  /**
   * Stops everything run for a task directory whose record is lost: the
   * shims started for it (found by their command line, even one that has not
   * exec'd its task yet) and the task's tree as start.json names it.
   */
  async reclaim(name: string, taskDir: string): Promise<number> {
    const shims = shimsFor(taskDir);
    // Frozen first, so that no shim starts its task while the tree is killed.
    await Promise.all(shims.map(freeze));
    const start = await readStartRecord(taskDir);
    const running = start !== undefined && isSameProcessAlive(start.pid, start.startTime);
    const cgroup = start && this.cgroups.find(scopeOf(dirname(taskDir)), name, start.pid, undefined);
    if (start && !(await killTaskTree(handleFromStart(taskDir, start, cgroup), this.cgroups))) {
      this.options.log.warn({ dir: taskDir }, `processes of a task with an unreadable record survived ${KILL_BUDGET_MS} ms of SIGKILL`);
    }
    await Promise.all(shims.map(killShimTree));
    return shims.length > 0 || running ? Math.max(shims.length, 1) : 0;
  }

  async inspect(handle: ProcessHandle): Promise<Observation> {
    const exit = await readExitRecord(handle.dir);
    if (exit.state === 'valid') return recordedExitObservation(handle, exit.record, this.cgroups);
    const held = this.held.get(handle.dir);
    if (held) return heldObservation(handle, held, this.cgroups);
    if (!isRun(handle)) {
      if (exit.state === 'unreadable') return unreadableObservation(handle.dir, exit);
      return { state: 'lost', message: 'the task never started and left no exit status' };
    }
    const running: Observation = { state: 'running', startedAt: handle.startedAt };
    const sameBoot = handle.bootId === bootId();
    if (exit.state === 'unreadable') {
      // While the task (or its shim, which replaces the file when the task exits) lives, it runs.
      const live = sameBoot && (isSameProcessAlive(handle.pid, handle.startTime) || isSameProcessAlive(handle.shimPid, handle.shimStartTime));
      return live ? running : unreadableObservation(handle.dir, exit);
    }
    if (!sameBoot) {
      return { state: 'lost', startedAt: handle.startedAt, message: 'the machine restarted while the task ran' };
    }
    if (isSameProcessAlive(handle.pid, handle.startTime)) return running;
    // The shim writes exit.json right after reaping the task, and keeps an exit status it
    // could not write (full data dir) while it retries: while it lives, the status is not lost.
    if (isSameProcessAlive(handle.shimPid, handle.shimStartTime)) return running;
    // The shim may have written the record and exited since the first read above.
    const last = await readExitRecord(handle.dir);
    if (last.state === 'valid') return recordedExitObservation(handle, last.record, this.cgroups);
    if (last.state === 'unreadable') return unreadableObservation(handle.dir, last);
    return {
      state: 'lost',
      startedAt: handle.startedAt,
      message: 'the process exited without recording an exit status (its supervisor was killed, or the data dir was full)',
    };
  }

  /**
   * Stops the task's tree: the stop signal, the grace period, SIGKILL to what
   * is left (task-tree.ts), then the cgroup; then waits for the shim to
   * record the exit. A task that already exited gets no signal: only what it
   * left is killed. The sidecar backend passes ProcessStopOptions.
   */
  async stop(handle: ProcessHandle, options: ProcessStopOptions): Promise<void> {
    if (!isRun(handle) || handle.bootId !== bootId()) return;
    const order: TreeOrder = {
      ...(options.spareTaskProcess ? { exclude: (pid: number) => pid === handle.pid } : {}),
      ...(options.nestedPidNamespace ? { leavesFirst: true } : {}),
    };
    // An exit record that cannot be read says nothing about the tree: stop it all the same.
    const exited = (await readExitRecord(handle.dir)).state === 'valid' || this.held.has(handle.dir);
    if (!exited) {
      // The shim's lines tell of the task's end: no look at the tree is needed before.
      const pushes: Pushes | undefined = this.followed.has(handle.shimPid) ? (onPush) => this.listen(handle.shimPid, onPush) : undefined;
      await this.stopTurn(() => signalTree(handle, options.signal, this.cgroups, order), TURN_PRIORITY.signal);
      await waitForTree(handle, this.cgroups, options.graceMs, order, (work) => this.stopTurn(work, TURN_PRIORITY.look), pushes);
    }
    await this.stopTurn(async () => {
      // One complete look first: a tree that ended in its grace period (most do) needs no
      // SIGKILL rounds and no cgroup kill, each of which would read it all again.
      if (treeGone(handle, this.cgroups)) return;
      if (order.leavesFirst && !(await killTaskTree(handle, this.cgroups, order, ORDERLY_KILL_BUDGET_MS))) {
        this.options.log.debug({ pgid: handle.pgid }, 'task tree still growing after leaf-first SIGKILL; killing the rest at once');
      }
      // Everything at once now, the spared wrapper included.
      if (!(await killTaskTree(handle, this.cgroups))) {
        this.options.log.warn({ pgid: handle.pgid }, `processes of a stopped task survived ${KILL_BUDGET_MS} ms of SIGKILL`);
      }
      // Whatever escaped both the process group and the shim's tree (e.g. a daemon
      // reparented elsewhere after the shim died) is still in the task's cgroup.
      if (!exited && handle.cgroup && !(await this.cgroups.kill(handle.cgroup))) {
        this.options.log.warn({ cgroup: handle.cgroup.dirs }, "processes in a stopped task's cgroup survived SIGKILL");
      }
    }, TURN_PRIORITY.kill);
    if (exited) return;
    await waitForExitRecord(handle.dir, () => isSameProcessAlive(handle.shimPid, handle.shimStartTime));
  }

  /**
   * Runs a piece of a stop's synchronous work (listing the tree in /proc and
   * the cgroups, signalling it: a few milliseconds each) in its turn: at most
   * STOP_TURNS at once, each after a turn of the event loop. Without turns, a
   * mass delete of 1000 tasks ran every stop's look at its tree in one go (all
   * their grace-poll timers fire together), and a Get waited behind all of
   * them, up to 2 s. Waits between looks (the grace period, the exit record)
   * hold no turn.
   */
  private readonly stopTurn = async <T>(work: () => T | Promise<T>, priority: number): Promise<T> => {
    const [, release] = await this.stopTurns.acquire(1, priority);
    try {
      await loopTurn(); // I/O that arrived meanwhile (a Get) is served before this work
      return await work();
    } finally {
      release();
    }
  };

  async release(handle: ProcessHandle): Promise<void> {
    const run = isRun(handle) ? handle : undefined;
    const sameBoot = run?.bootId === bootId();
    if (run && sameBoot && isSameProcessAlive(run.shimPid, run.shimStartTime)) {
      // SIGTERM tells the shim to stop logging and leave once the pipes close.
      signalQuietly(run.shimPid, 'SIGTERM');
    }
    if (run) {
      this.listeners.delete(run.shimPid);
      this.followed.delete(run.shimPid);
    }
    if (handle.dir) this.held.delete(handle.dir);
    const cgroup = run?.cgroup;
    if (cgroup && sameBoot) {
      // Never kills: a task that ended may have left processes running on
      // purpose (the original's `bootstrap.sh &`); their cgroup then stays
      // until they are gone (a later sweep removes it).
      // In a turn: a mass delete releases its tasks as their stops end, each a few rmdirs.
      const { busy } = await this.stopTurn(() => this.cgroups.remove(cgroup), TURN_PRIORITY.release);
      if (busy.length > 0) this.options.log.debug({ cgroups: busy }, 'the task left processes running; keeping its cgroup until they exit');
    }
    if (handle.dir) {
      // The run's records go with it: a restart recorded next must never find
      // (and adopt) this run's start.json after an executor crash.
      await Promise.all(RUN_RECORDS.map((file) => rm(join(handle.dir, file), { force: true, recursive: true })));
      // The last task of a data dir takes the scope with it at once; leftovers wait for the sweep.
      const dataDir = dirname(handle.dir);
      this.cgroups.removeScopeIfEmpty(scopeOf(dataDir), { untilBusy: true });
      this.cgroups.sweepSoon(scopeOf(dataDir), liveTasksOf(dataDir));
    }
  }

  /**
   * Resource usage of the task's whole tree. With a cgroup: its processes,
   * CPU time (cpuacct.usage / cpu.stat, which keeps the time of exited
   * processes), memory usage and limit, pids and I/O (v2 io.stat). Without:
   * the process group plus the shim's descendants, summed from /proc.
   * RSS is always the sum over the live processes (/proc/<pid>/stat), and I/O
   * without v2 io.stat the sum of /proc/<pid>/io read_bytes/write_bytes
   * (storage I/O, not rchar/wchar, which count pipes and terminals too).
   */
  async stats(handle: ProcessHandle): Promise<ResourceSample> {
    const time = Date.now();
    if (!isRun(handle) || handle.bootId !== bootId()) return { time, pids: 0, rssBytes: 0 };
    const cgroup = handle.cgroup;
    const usage = cgroup ? this.cgroups.usage(cgroup) : {};
    const pids = (cgroup && this.cgroups.pids(cgroup)) ?? measuredTree(handle);
    const processes = sampleProcesses(pids);
    const sample: ResourceSample = {
      time,
      cpuNanoseconds: usage.cpuNanoseconds ?? (processes.count > 0 ? processes.cpuNanoseconds : undefined),
      cpuLimitMillicores: usage.cpuLimitMillicores,
      rssBytes: processes.rssBytes,
      memoryUsageBytes: usage.memoryUsageBytes,
      memoryLimitBytes: usage.memoryLimitBytes,
      readBytes: usage.readBytes ?? processes.readBytes,
      writeBytes: usage.writeBytes ?? processes.writeBytes,
      pids: usage.pids ?? processes.count,
      pidsLimit: usage.pidsLimit,
    };
    for (const key of Object.keys(sample) as (keyof ResourceSample)[]) if (sample[key] === undefined) delete sample[key];
    return sample;
  }

  logs({ dir }: ProcessHandle): LogLocation | undefined {
    return dir ? { directory: join(dir, 'logs') } : undefined;
  }

  /**
   * Pushes a task's end: at once through the shim's event pipe for shims this
   * executor started, and through an inotify watch on the task directory for
   * any shim (also one adopted after an executor restart, whose pipe is gone),
   * which renames exit.json into place when the task ends.
   */
  /**
   * Pushes a run's changes: the shim's event lines (shims this runtime
   * started), inotify on the task directory (exit.json), and a pidfd on the
   * task's process, whose end is all there is to see when its shim was
   * killed (nothing writes exit.json then, and nothing else would tell).
   */
  watch(handle: ProcessHandle, onChange: () => void): () => void {
    if (!isRun(handle)) return () => {};
    const { shimPid, pid, startTime, dir } = handle;
    const unlisten = this.listen(shimPid, onChange);
    const records = watchExitRecord(dir, onChange);
    const taskEnd = this.options.spawner.watchPid(pid, () => isSameProcessAlive(pid, startTime), onChange);
    return () => {
      unlisten();
      records?.close();
      taskEnd();
    };
  }

  /** Calls `listener` on each later event line of the shim; returns the function that stops it. */
  private listen(shimPid: number, listener: () => void): () => void {
    const set = this.listeners.get(shimPid) ?? new Set();
    set.add(listener);
    this.listeners.set(shimPid, set);
    return () => set.delete(listener);
  }

  private notify(shimPid: number): void {
    for (const listener of this.listeners.get(shimPid) ?? []) listener();
  }

}

/** The executor's environment (none with cleanEnv), then the task's entries; the last entry for a name wins. */
export function taskEnvironment(base: NodeJS.ProcessEnv, spec: ProcessSpec): NodeJS.ProcessEnv {
  // No prototype: on a plain object, env["__proto__"] = value would not add a variable.
  const env: NodeJS.ProcessEnv = Object.assign(Object.create(null) as NodeJS.ProcessEnv, spec.cleanEnv ? {} : base);
  for (const { name, value } of spec.env) env[name] = value;
  return env;
}

/** Waits while the shim lives for exit.json to appear (valid or not). */
async function waitForExitRecord(dir: string, stillWorthWaiting: () => boolean): Promise<void> {
  const deadline = deadlineIn(EXIT_RECORD_WAIT_MS);
  while ((await readExitRecord(dir)).state === 'absent' && !deadline.passed() && stillWorthWaiting()) await delay(POLL_MS);
}

/** The handle of a run that start.json describes, with the cgroup its task is in, if any. */
function handleFromStart(dir: string, start: StartRecord, cgroup: TaskCgroup | undefined): ShimHandle {
  return {
    dir,
    bootId: bootId(),
    shimPid: start.shimPid,
    shimStartTime: startTimeOf(start.shimPid) ?? '',
    pid: start.pid,
    pgid: start.pgid,
    startTime: start.startTime,
    startedAt: start.startedAt,
    ...(cgroup ? { cgroup } : {}),
  };
}

/** Calls `onChange` when exit.json appears in a task directory; undefined when the directory cannot be watched. */
function watchExitRecord(dir: string, onChange: () => void): FSWatcher | undefined {
  try {
    const watcher = watch(dir, { persistent: false }, (_event, file) => {
      if (file === EXIT_RECORD) onChange();
    });
    // A removed directory or an exhausted inotify limit only costs promptness: the safety-net resync still sees the exit.
    watcher.on('error', () => watcher.close());
    return watcher;
  } catch {
    return undefined;
  }
}

/** Whether a task of the data dir still exists (its directory does): the sweeps' test for a leftover cgroup. */
function liveTasksOf(dataDir: string): (taskName: string) => boolean {
  return (taskName) => existsSync(join(dataDir, taskName));
}
