// A backend as the manager uses it: persisted handles are decoded here, once,
// by the backend that wrote them, and the manager gets a task bound to its
// decoded handle (in the spirit of containerd's runtime.Task), so it never
// sees a handle's type and no backend ever gets a handle it did not check.
import { errorMessage } from '../errors.js';
import { resolvedOk } from '../util/settled.js';
import type { RuntimeRef, TaskSpec } from '../model/task.js';
import { AdmissionAbandoned, type LogLocation, type Observation, type ResourceSample, type Started, type StartRequest, type StopOptions, type TaskRuntime } from './runtime.js';

/** Reason of a task whose persisted handle its backend cannot read. */
export const HANDLE_UNREADABLE = 'RuntimeHandleUnreadable';
/** The version of handles in records written before handle versions existed. */
export const UNVERSIONED_HANDLE = 1;
/** Exit code reported for a run whose exit status is unknown (as for a lost one). */
const UNKNOWN_EXIT_CODE = 137;

/** One run of a task, bound to the backend that started it. */
export interface BoundTask {
  /** The backend's name. */
  readonly runtime: string;
  inspect(): Promise<Observation>;
  stop(options: StopOptions): Promise<void>;
  release(): Promise<void>;
  watch?(onChange: () => void): () => void;
  logs(): LogLocation | undefined;
  /** Absent when the backend does not measure usage. */
  stats?(): Promise<ResourceSample>;
}

/** A started (or recovered) run: `ref` is what the task record persists. */
export interface Launched {
  ref: RuntimeRef;
  observation: Observation;
  warnings?: string[];
  /** See Started.durable. */
  durable?: boolean;
}

/** Which task a persisted handle belongs to, for a backend that must reclaim a run it cannot read. */
export interface TaskLocation {
  name: string;
  taskDir: string;
}

export interface Backend {
  readonly name: string;
  accepts(spec: TaskSpec): boolean;
  /** See TaskRuntime.check; resolves at once for a backend without one. */
  check(spec: TaskSpec, field: string): Promise<void>;
  start(request: StartRequest): Promise<Launched>;
  /** See TaskRuntime.recover; undefined when the backend cannot recover unrecorded starts. */
  recover(request: StartRequest): Promise<Launched | undefined>;
  /** See TaskRuntime.reclaim; 0 when the backend has nothing to reclaim. */
  reclaim(name: string, taskDir: string): Promise<number>;
  onAvailabilityChange?(listener: (available: boolean) => void): () => void;
  /**
   * The run a persisted reference names (which must name this backend). A
   * handle the backend cannot read does not throw: the task it binds to
   * reports the run as ended with reason RuntimeHandleUnreadable, after
   * stopping whatever the backend still runs for the task (TaskRuntime.reclaim),
   * since nothing could supervise or stop it later.
   */
  bind(ref: RuntimeRef, task: TaskLocation): BoundTask;
}

/**
 * Wraps a runtime typed by its handle H into a Backend, which is not: H
 * exists only inside this closure, where every handle given to the runtime
 * comes from its own start/recover or its own decodeHandle.
 */
export function backendOf<H>(runtime: TaskRuntime<H>): Backend {
  /** Tasks by reference: a record keeps its reference object across updates, so a handle is decoded once per load. */
  const bound = new WeakMap<RuntimeRef, BoundTask>();

  const bindHandle = (handle: H): BoundTask => ({
    runtime: runtime.name,
    inspect: () => runtime.inspect(handle),
    stop: (options) => runtime.stop(handle, options),
    release: () => runtime.release(handle),
    ...(runtime.watch && { watch: (onChange: () => void) => runtime.watch!(handle, onChange) }),
    logs: () => runtime.logs?.(handle),
    ...(runtime.stats && { stats: () => runtime.stats!(handle) }),
  });

  const launched = (started: Started<H>): Launched => {
    const ref: RuntimeRef = { runtime: runtime.name, handleVersion: runtime.handleVersion, handle: started.handle };
    bound.set(ref, bindHandle(started.handle));
    return {
      ref,
      observation: started.observation,
      ...(started.warnings ? { warnings: started.warnings } : {}),
      ...(started.durable ? { durable: true } : {}),
    };
  };

  const decode = (ref: RuntimeRef): H => {
    const version = ref.handleVersion ?? UNVERSIONED_HANDLE;
    if (version > runtime.handleVersion) {
      throw new Error(
        `its handle version ${version} was written by a later executor release; this one reads versions 1 to ${runtime.handleVersion}`,
      );
    }
    return runtime.decodeHandle(ref.handle, version);
  };

  return {
    name: runtime.name,
    accepts: (spec) => runtime.accepts(spec),
    check: async (spec, field) => runtime.check?.(spec, field),
    start: async ({ admitted, ...request }) => {
      if (admitted && !runtime.startsBeforeAdmitted) {
        // This runtime cannot hold a prepared task back: it starts once the record is written.
        if (!(await resolvedOk(admitted))) throw new AdmissionAbandoned();
        return launched(await runtime.start(request));
      }
      return launched(await runtime.start(admitted ? { ...request, admitted } : request));
    },
    recover: async (request) => {
      const started = await runtime.recover?.(request);
      return started && launched(started);
    },
    reclaim: async (name, taskDir) => (await runtime.reclaim?.(name, taskDir)) ?? 0,
    ...(runtime.onAvailabilityChange && { onAvailabilityChange: (listener: (available: boolean) => void) => runtime.onAvailabilityChange!(listener) }),
    bind: (ref, task) => {
      let found = bound.get(ref);
      if (!found) {
        try {
          found = bindHandle(decode(ref));
        } catch (error) {
          found = unreadable(runtime, task, errorMessage(error));
        }
        bound.set(ref, found);
      }
      return found;
    },
  };
}

/**
 * A run whose handle cannot be read: it is reclaimed (stopped and freed, as
 * for an unreadable record) once, and reads as ended with a reason that says
 * why. stop and release reclaim again if the first attempt failed (e.g. the
 * container runtime was unreachable), so a Delete never leaves it running.
 */
function unreadable<H>(runtime: TaskRuntime<H>, task: TaskLocation, problem: string): BoundTask {
  let ended: Observation | undefined;
  const reclaim = async (): Promise<Observation> => {
    if (ended) return ended;
    const stopped = (await runtime.reclaim?.(task.name, task.taskDir)) ?? 0;
    const what = !runtime.reclaim
      ? 'this executor cannot tell whether it still runs'
      : stopped > 0
        ? 'the executor stopped what it still ran'
        : 'nothing of it was still running';
    ended = {
      state: 'exited',
      exitCode: UNKNOWN_EXIT_CODE,
      signal: 0,
      finishedAt: new Date().toISOString(),
      reason: HANDLE_UNREADABLE,
      message:
        `the ${runtime.name} backend cannot read this task's runtime handle (${problem}), so the executor can no longer ` +
        `follow the task: it counts as ended with an unknown exit status (${what})`,
    };
    return ended;
  };
  return {
    runtime: runtime.name,
    inspect: reclaim,
    stop: async () => void (await reclaim()),
    release: async () => void (await reclaim()),
    logs: () => undefined,
  };
}
