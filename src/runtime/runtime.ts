// The plugin interface every backend implements (process, sidecar, container).
// The manager depends on this file alone; backends never import the manager.
import type { TaskSpec } from '../model/task.js';

export interface StartRequest {
  name: string;
  /** The task's own directory (exists); the runtime may keep files in it. */
  taskDir: string;
  spec: TaskSpec;
  /**
   * Reports a slow step of the start (e.g. an image pull) while it runs; the
   * task shows `waiting {reason, message}` until start() returns.
   */
  progress?(reason: string, message?: string): void;
  /**
   * Aborted when the task is deleted while it starts: a slow start (an image
   * pull and its back-off) gives up at once and returns a terminated
   * observation (reason Stopped) instead of running the task. Also aborted
   * when the executor shuts down: the manager then records nothing of a start
   * that gave up (not running), and the next executor starts the task.
   */
  signal?: AbortSignal;
  /**
   * Settles once the task's first record is on disk (a Create writes it while
   * the start gets ready). Only a runtime with `startsBeforeAdmitted` gets it:
   * it may prepare the run meanwhile, but the task must not run before this
   * resolves, and when it rejects start() throws AdmissionAbandoned, leaving
   * nothing behind. Other runtimes are started once the record is written.
   */
  admitted?: Promise<void>;
}

/** The task's first record could not be written: the start was given up before the task ran. */
export class AdmissionAbandoned extends Error {
  constructor() {
    super('the task was not admitted (its record could not be written); it was not started');
    this.name = 'AdmissionAbandoned';
  }
}

/**
 * Where a task's captured output lives: files `output.<N>.log` in `directory`,
 * N ascending with age (the highest is being written), each line in the CRI
 * log format `<RFC3339Nano> <stdout|stderr> <F|P> <payload>`.
 */
export interface LogLocation {
  directory: string;
}

/** One measurement of a task's whole tree; absent fields could not be measured. */
export interface ResourceSample {
  /** Milliseconds since the epoch. */
  time: number;
  /** Cumulative CPU time (user + system) since the task started. */
  cpuNanoseconds?: number;
  cpuLimitMillicores?: number;
  /** Sum of the resident set sizes of the tree's processes. */
  rssBytes?: number;
  /** cgroup memory usage and limit, where the task has a cgroup. */
  memoryUsageBytes?: number;
  memoryLimitBytes?: number;
  readBytes?: number;
  writeBytes?: number;
  pids?: number;
  pidsLimit?: number;
}

/** What a runtime sees of a task at one moment. */
export type Observation =
  | { state: 'running'; startedAt: string }
  | {
      state: 'exited';
      /** 128+signal when killed by a signal. */
      exitCode: number;
      signal: number;
      startedAt?: string;
      finishedAt: string;
      /** Set when the runtime knows better than exit-code rules (e.g. OOMKilled, ProcessStartFailed). */
      reason?: string;
      message?: string;
      /**
       * True when the runtime keeps this exit status across a crash of the
       * executor: `inspect` with the same handle finds it again (the process
       * runtime: the shim's exit.json, fsynced before it reported the exit).
       * The manager may then show the exit before its own record of it is on
       * disk, as with Started.durable.
       */
      durable?: boolean;
    }
  /** The task is gone and left no exit status behind (e.g. killed along with its supervisor). */
  | { state: 'lost'; startedAt?: string; message: string };

export interface Started<H> {
  /**
   * What the runtime needs to find the run again, even from a later executor
   * process: plain JSON data, persisted with the task record next to the
   * runtime's handleVersion and read back with its decodeHandle.
   */
  handle: H;
  observation: Observation;
  /** What the runtime could not do as the spec asked (e.g. limits without cgroups). */
  warnings?: string[];
  /**
   * True when this start survives a crash of the executor without the
   * executor's own record: after a restart, `recover` for the same request
   * finds the run and returns this handle and observation again (the process
   * runtime: the shim's start.json, fsynced before it reported the start). The
   * manager may then show the start before its record is on disk. Absent or
   * false: the start exists only once the executor has recorded it.
   */
  durable?: boolean;
}

export interface StopOptions {
  signal: NodeJS.Signals;
  /**
   * How long the task may take to exit after the signal before everything it
   * started is SIGKILLed; 0: the kill follows the signal at once. The manager
   * passes what is left of the grace since the stop was requested.
   */
  graceMs: number;
}

/**
 * A backend, typed by its handle H. Callers other than the backend itself
 * never see H: the registry (bound-task.ts) decodes persisted handles with
 * decodeHandle and hands out tasks bound to their decoded handle.
 */
export interface TaskRuntime<H = unknown> {
  /** Stable name, persisted in records: "process", "sidecar", "container". */
  readonly name: string;
  /**
   * The version of the handles this runtime writes, persisted next to each
   * one. Raise it whenever a handle field is renamed, retyped or given a new
   * meaning, and teach decodeHandle to read the older versions (as Nomad's
   * TaskHandle.Version lets a driver read the state of an earlier release).
   */
  readonly handleVersion: number;
  /**
   * Checks a persisted handle of `version` (1 to handleVersion; records from
   * before versions existed are version 1) and returns it typed. Throws a
   * HandleDecodeError naming the field when it is not a handle it can use.
   */
  decodeHandle(raw: unknown, version: number): H;
  accepts(spec: TaskSpec): boolean;
  /**
   * Checks, before a task is admitted, what only this backend on this node can
   * (e.g. that a file the spec names is there and readable): throws
   * INVALID_ARGUMENT naming the field under `field` (the spec's). Optional.
   */
  check?(spec: TaskSpec, field: string): Promise<void>;
  /**
   * start() honours StartRequest.admitted: it gets ready while the task's
   * record is written (so a Create's two slow steps overlap) and lets the
   * task run only once it is.
   */
  readonly startsBeforeAdmitted?: boolean;
  /**
   * Starts the task. A task that cannot start for reasons of its own (missing
   * program, bad working directory) is reported as an exited observation with a
   * reason; a throw means the runtime itself failed. A TaskError of kind
   * 'Unavailable' means the runtime cannot be reached right now: the task
   * then waits (reason RuntimeUnavailable) and its start is tried again.
   */
  start(request: StartRequest): Promise<Started<H>>;
  /**
   * Works for handles from an earlier executor process too. A TaskError of
   * kind 'Unavailable' (runtime unreachable) leaves the task's state as it was.
   */
  inspect(handle: H): Promise<Observation>;
  /**
   * Finds a task this runtime started for `request` whose handle was never
   * recorded, because the executor died between starting it and saving the
   * handle. Undefined when it was never started, so starting it is safe.
   */
  recover?(request: StartRequest): Promise<Started<H> | undefined>;
  /**
   * Stops and frees everything this runtime runs for a task whose record or
   * handle was lost (unreadable): the executor cannot supervise it, and its
   * name is about to be free again, so nothing of it may keep running. Returns how many
   * runs it stopped (0 when it ran nothing for that task).
   */
  reclaim?(name: string, taskDir: string): Promise<number>;
  /** Resolves once the task and everything it started are gone. */
  stop(handle: H, options: StopOptions): Promise<void>;
  /** Frees what the runtime keeps after the task ended; the task directory is removed afterwards. */
  release(handle: H): Promise<void>;
  /**
   * For runtimes that can become unreachable (a CRI runtime): tells when it
   * goes away (false) and comes back (true), so waiting starts are retried at once.
   */
  onAvailabilityChange?(listener: (available: boolean) => void): () => void;
  /** Optional push notification of changes, so the manager need not wait for its next poll. */
  watch?(handle: H, onChange: () => void): () => void;
  /** Where the task's output is captured; undefined when it has none. */
  logs?(handle: H): LogLocation | undefined;
  /** Resource usage of the task's whole tree right now. */
  stats?(handle: H): Promise<ResourceSample>;
}
