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
    }
  /** The task is gone and left no exit status behind (e.g. killed along with its supervisor). */
  | { state: 'lost'; startedAt?: string; message: string };

/** A JSON-serialisable reference to a started task; persisted with the task record. */
export type RuntimeHandle = Record<string, unknown>;

export interface Started {
  handle: RuntimeHandle;
  observation: Observation;
  /** What the runtime could not do as the spec asked (e.g. limits without cgroups). */
  warnings?: string[];
}

export interface StopOptions {
  signal: NodeJS.Signals;
  /** How long the task may take to exit after the signal before everything it started is SIGKILLed. */
  graceMs: number;
}

export interface TaskRuntime {
  /** Stable name, persisted in records: "process", "sidecar", "container". */
  readonly name: string;
  accepts(spec: TaskSpec): boolean;
  /**
   * Starts the task. A task that cannot start for reasons of its own (missing
   * program, bad working directory) is reported as an exited observation with a
   * reason; a throw means the runtime itself failed. A TaskError of kind
   * 'Unavailable' means the runtime cannot be reached right now: the task
   * then waits (reason RuntimeUnavailable) and its start is tried again.
   */
  start(request: StartRequest): Promise<Started>;
  /**
   * Works for handles from an earlier executor process too. A TaskError of
   * kind 'Unavailable' (runtime unreachable) leaves the task's state as it was.
   */
  inspect(handle: RuntimeHandle): Promise<Observation>;
  /**
   * Finds a task this runtime started for `request` whose handle was never
   * recorded, because the executor died between starting it and saving the
   * handle. Undefined when it was never started, so starting it is safe.
   */
  recover?(request: StartRequest): Promise<Started | undefined>;
  /**
   * Stops and frees everything this runtime runs for a task whose record was
   * lost (unreadable): the executor cannot supervise it, and its name is about
   * to be free again, so nothing of it may keep running. Returns how many
   * runs it stopped (0 when it ran nothing for that task).
   */
  reclaim?(name: string, taskDir: string): Promise<number>;
  /** Resolves once the task and everything it started are gone. */
  stop(handle: RuntimeHandle, options: StopOptions): Promise<void>;
  /** Frees what the runtime keeps after the task ended; the task directory is removed afterwards. */
  release(handle: RuntimeHandle): Promise<void>;
  /**
   * For runtimes that can become unreachable (a CRI runtime): tells when it
   * goes away (false) and comes back (true), so waiting starts are retried at once.
   */
  onAvailabilityChange?(listener: (available: boolean) => void): () => void;
  /** Optional push notification of changes, so the manager need not wait for its next poll. */
  watch?(handle: RuntimeHandle, onChange: () => void): () => void;
  /** Where the task's output is captured; undefined when it has none. */
  logs?(handle: RuntimeHandle): LogLocation | undefined;
  /** Resource usage of the task's whole tree right now. */
  stats?(handle: RuntimeHandle): Promise<ResourceSample>;
}
