// Chooses the backend for a spec, and binds persisted runs to the backend
// that started them. main.ts decides which backends exist; the manager only
// asks this registry, so adding a backend touches neither.
import { failedPrecondition } from '../errors.js';
import type { RuntimeRef, TaskSpec } from '../model/task.js';
import { type Backend, backendOf, type BoundTask, type TaskLocation } from './bound-task.js';
import type { TaskRuntime } from './runtime.js';

export type { Backend, BoundTask, Launched, TaskLocation } from './bound-task.js';

export interface UnavailableRuntime {
  /** Which specs it would run. */
  accepts(spec: TaskSpec): boolean;
  /** Why it is not available and how to enable it. */
  reason: string;
}

export class RuntimeRegistry {
  private readonly backends: readonly Backend[];

  /**
   * Each runtime's handle type is erased here (TaskRuntime<unknown>) and
   * recovered by backendOf, which only ever gives a runtime handles that
   * runtime made or decoded itself.
   */
  constructor(
    runtimes: readonly TaskRuntime<unknown>[],
    private readonly unavailable: readonly UnavailableRuntime[] = [],
  ) {
    this.backends = runtimes.map((runtime) => backendOf(runtime));
  }

  /** The backend for a new task; FAILED_PRECONDITION when none is enabled. */
  forSpec(spec: TaskSpec): Backend {
    const backend = this.backends.find((b) => b.accepts(spec));
    if (backend) return backend;
    const hint = this.unavailable.find((u) => u.accepts(spec));
    const kind = spec.container ? 'container' : 'process';
    throw failedPrecondition(`this executor cannot run ${kind} tasks: ${hint?.reason ?? 'no backend accepts them'}`);
  }

  /**
   * The checks of the backend a new task would get (TaskRuntime.check), for
   * each spec with its field; none when no backend accepts it (forSpec says so).
   */
  async check(specs: readonly { spec: TaskSpec; field: string }[]): Promise<void> {
    for (const { spec, field } of specs) await this.backends.find((b) => b.accepts(spec))?.check(spec, field);
  }

  /** Every enabled backend. */
  all(): readonly Backend[] {
    return this.backends;
  }

  byName(name: string): Backend | undefined {
    return this.backends.find((b) => b.name === name);
  }

  /**
   * The run a task record names, bound to its decoded handle; undefined when
   * the backend that started it is not enabled in this executor. Never throws:
   * see Backend.bind for a handle that cannot be read.
   */
  bind(ref: RuntimeRef, task: TaskLocation): BoundTask | undefined {
    return this.byName(ref.runtime)?.bind(ref, task);
  }
}
