// Runs a process task as the child of a small detached supervisor, task-shim
// (src/runtime/shim/task-shim.c). The shim, not the executor, owns the task's
// pipes and exit status, so the task neither dies nor blocks when the executor
// restarts, and its exit status is written atomically (exit.json).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import type { Logger } from 'pino';
import type { ProcessSpec, TaskSpec } from '../../model/task.js';
import type { LogLocation, Observation, RuntimeHandle, Started, StartRequest, StopOptions, TaskRuntime } from '../runtime.js';
import { bootId, descendantsOf, groupMembers, isSameProcessAlive, signalQuietly, startTimeOf } from './procfs.js';

export interface ProcessRuntimeOptions {
  shimPath: string;
  logMaxBytes: number;
  logMaxFiles: number;
  log: Logger;
  /** Environment the task inherits before its own env entries. */
  baseEnv?: NodeJS.ProcessEnv;
  /** Turns a spec into the argv the shim runs (the sidecar backend wraps it in nsenter). */
  command?: (spec: ProcessSpec) => string[];
  name?: string;
}

/** Persisted handle: enough to find the task again after an executor restart. */
export interface ShimHandle {
  [key: string]: unknown;
  dir: string;
  bootId: string;
  shimPid: number;
  shimStartTime: string;
  pid: number;
  pgid: number;
  startTime: string;
  startedAt: string;
}

interface ShimStarted {
  event: 'started';
  pid: number;
  pgid: number;
  shimPid: number;
  startTime: string;
  startedAt: string;
}

interface ShimStartFailed {
  event: 'start-failed';
  exitCode: number;
  startError: string;
  finishedAt: string;
}

interface ExitRecord {
  exitCode: number;
  signal: number;
  finishedAt: string;
  startError?: string;
}

const POLL_MS = 25;
const EXIT_RECORD_WAIT_MS = 5000;

export class ProcessRuntime implements TaskRuntime {
  readonly name: string;
  private readonly listeners = new Map<number, Set<() => void>>();

  constructor(private readonly options: ProcessRuntimeOptions) {
    this.name = options.name ?? 'process';
    if (!existsSync(options.shimPath)) {
      throw new Error(`task-shim not found at ${options.shimPath}: run "npm run build:shim" (needs a C compiler)`);
    }
  }

  accepts(spec: TaskSpec): boolean {
    return spec.process !== undefined;
  }

  async start(request: StartRequest): Promise<Started> {
    const spec = request.spec.process!;
    const argv = this.options.command?.(spec) ?? [...spec.command, ...spec.args];
    const logs = request.spec.logs;
    const args = ['--dir', request.taskDir, '--log-max-bytes', String(logs?.maxFileSizeBytes ?? this.options.logMaxBytes)];
    args.push('--log-max-files', String(logs?.maxFiles ?? this.options.logMaxFiles));
    if (spec.workingDir) args.push('--cwd', spec.workingDir);
    if (spec.user) args.push('--user', spec.user);
    if (spec.group) args.push('--group', spec.group);
    if (spec.chroot) args.push('--chroot', spec.chroot);
    args.push('--', ...argv);

    const shim = execa(this.options.shimPath, args, {
      env: taskEnvironment(this.options.baseEnv ?? process.env, spec),
      extendEnv: false,
      detached: true,
      cleanup: false, // the task must outlive the executor
      reject: false,
      buffer: false,
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
    });
    shim.unref();
    const shimPid = shim.pid;
    if (shimPid === undefined) throw new Error(`cannot start task-shim: ${(await shim).message}`);
    const shimStartTime = startTimeOf(shimPid) ?? '';

    const stderr: string[] = [];
    shim.stderr?.setEncoding('utf8').on('data', (chunk: string) => stderr.length < 20 && stderr.push(chunk));
    const lines = createInterface({ input: shim.stdout! });
    const first = await new Promise<string | undefined>((resolve) => {
      lines.once('line', resolve);
      lines.once('close', () => resolve(undefined));
    });
    if (first === undefined) {
      const result = await shim;
      throw new Error(`task-shim exited (${result.exitCode ?? result.signal}) before starting the task: ${stderr.join('').trim()}`);
    }
    const event = JSON.parse(first) as ShimStarted | ShimStartFailed;
    if (event.event === 'start-failed') {
      return {
        handle: { dir: request.taskDir },
        observation: {
          state: 'exited',
          exitCode: event.exitCode,
          signal: 0,
          finishedAt: event.finishedAt,
          reason: 'ProcessStartFailed',
          message: event.startError,
        },
      };
    }
    // Later lines announce the exit; tell watchers at once instead of waiting for a poll.
    lines.on('line', () => this.notify(shimPid));
    const handle: ShimHandle = {
      dir: request.taskDir,
      bootId: bootId(),
      shimPid,
      shimStartTime,
      pid: event.pid,
      pgid: event.pgid,
      startTime: event.startTime,
      startedAt: event.startedAt,
    };
    return { handle, observation: { state: 'running', startedAt: event.startedAt } };
  }

  async inspect(raw: RuntimeHandle): Promise<Observation> {
    const handle = raw as ShimHandle;
    const exit = await readExitRecord(handle.dir);
    if (exit) return exitObservation(handle, exit);
    if (handle.pid === undefined) {
      return { state: 'lost', message: 'the task never started and left no exit status' };
    }
    if (handle.bootId !== bootId()) {
      return { state: 'lost', startedAt: handle.startedAt, message: 'the machine restarted while the task ran' };
    }
    if (isSameProcessAlive(handle.pid, handle.startTime)) return { state: 'running', startedAt: handle.startedAt };
    // The shim writes exit.json right after reaping the task: while it lives, the record is on its way.
    if (isSameProcessAlive(handle.shimPid, handle.shimStartTime)) {
      const late = await waitForExitRecord(handle.dir, () => isSameProcessAlive(handle.shimPid, handle.shimStartTime));
      if (late) return exitObservation(handle, late);
    }
    return {
      state: 'lost',
      startedAt: handle.startedAt,
      message: 'the process exited without recording an exit status (its supervisor was killed)',
    };
  }

  async stop(raw: RuntimeHandle, options: StopOptions): Promise<void> {
    const handle = raw as ShimHandle;
    if (handle.pid === undefined || (await readExitRecord(handle.dir))) return this.killLeftovers(handle);
    if (handle.bootId !== bootId()) return;
    this.signalTree(handle, options.signal);
    const deadline = Date.now() + options.graceMs;
    while (Date.now() < deadline && this.treeAlive(handle)) await delay(POLL_MS);
    this.killLeftovers(handle);
    await waitForExitRecord(handle.dir, () => isSameProcessAlive(handle.shimPid, handle.shimStartTime));
  }

  async release(raw: RuntimeHandle): Promise<void> {
    const handle = raw as ShimHandle;
    if (handle.shimPid !== undefined && handle.bootId === bootId() && isSameProcessAlive(handle.shimPid, handle.shimStartTime)) {
      // SIGTERM tells the shim to stop logging and leave once the pipes close.
      signalQuietly(handle.shimPid, 'SIGTERM');
    }
    this.listeners.delete(handle.shimPid);
  }

  logs(raw: RuntimeHandle): LogLocation | undefined {
    const { dir } = raw as ShimHandle;
    return dir ? { directory: join(dir, 'logs') } : undefined;
  }

  watch(raw: RuntimeHandle, onChange: () => void): () => void {
    const { shimPid } = raw as ShimHandle;
    if (shimPid === undefined) return () => {};
    const set = this.listeners.get(shimPid) ?? new Set();
    set.add(onChange);
    this.listeners.set(shimPid, set);
    return () => set.delete(onChange);
  }

  private notify(shimPid: number): void {
    for (const listener of this.listeners.get(shimPid) ?? []) listener();
  }

  /** The task's process group plus descendants that left it (setsid daemons), which the shim adopts as subreaper. */
  private treeMembers(handle: ShimHandle): number[] {
    const members = new Set(groupMembers(handle.pgid));
    if (isSameProcessAlive(handle.shimPid, handle.shimStartTime)) {
      for (const pid of descendantsOf(handle.shimPid)) members.add(pid);
    }
    return [...members];
  }

  private treeAlive(handle: ShimHandle): boolean {
    return isSameProcessAlive(handle.pid, handle.startTime) || this.treeMembers(handle).length > 0;
  }

  private signalTree(handle: ShimHandle, signal: NodeJS.Signals): void {
    signalQuietly(-handle.pgid, signal);
    for (const pid of this.treeMembers(handle)) signalQuietly(pid, signal);
  }

  /** SIGKILL until nothing of the tree is left (a forking tree may need a few rounds). */
  private killLeftovers(handle: ShimHandle): void {
    if (handle.pgid === undefined || handle.bootId !== bootId()) return;
    for (let round = 0; round < 20; round++) {
      const members = this.treeMembers(handle);
      signalQuietly(-handle.pgid, 'SIGKILL');
      if (members.length === 0) return;
      for (const pid of members) signalQuietly(pid, 'SIGKILL');
    }
    this.options.log.warn({ pgid: handle.pgid }, 'processes of a stopped task survived 20 rounds of SIGKILL');
  }
}

/** The executor's environment (none with cleanEnv), then the task's entries; the last entry for a name wins. */
export function taskEnvironment(base: NodeJS.ProcessEnv, spec: ProcessSpec): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = spec.cleanEnv ? {} : { ...base };
  for (const { name, value } of spec.env) env[name] = value;
  return env;
}

function exitObservation(handle: ShimHandle, exit: ExitRecord): Observation {
  if (exit.startError !== undefined) {
    return {
      state: 'exited',
      exitCode: exit.exitCode,
      signal: 0,
      finishedAt: exit.finishedAt,
      reason: 'ProcessStartFailed',
      message: exit.startError,
    };
  }
  return { state: 'exited', exitCode: exit.exitCode, signal: exit.signal, startedAt: handle.startedAt, finishedAt: exit.finishedAt };
}

async function readExitRecord(dir: string): Promise<ExitRecord | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, 'exit.json'), 'utf8');
  } catch {
    return undefined;
  }
  // The shim renames a complete file into place, so a parse failure means
  // corruption, never a half-written record: report it rather than guess.
  const record = JSON.parse(text) as ExitRecord;
  if (!Number.isInteger(record.exitCode)) throw new Error(`${join(dir, 'exit.json')} has no valid exitCode`);
  return record;
}

async function waitForExitRecord(dir: string, stillWorthWaiting: () => boolean): Promise<ExitRecord | undefined> {
  const deadline = Date.now() + EXIT_RECORD_WAIT_MS;
  for (;;) {
    const record = await readExitRecord(dir);
    if (record || Date.now() > deadline || !stillWorthWaiting()) return record;
    await delay(POLL_MS);
  }
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
