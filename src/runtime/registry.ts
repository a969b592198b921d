// Chooses the backend for a spec. main.ts decides which backends exist; the
// manager only asks this registry, so adding a backend touches neither.
import { failedPrecondition } from '../errors.js';
import type { TaskSpec } from '../model/task.js';
import type { TaskRuntime } from './runtime.js';

export interface UnavailableRuntime {
  /** Which specs it would run. */
  accepts(spec: TaskSpec): boolean;
  /** Why it is not available and how to enable it. */
  reason: string;
}

export class RuntimeRegistry {
  constructor(
    private readonly runtimes: readonly TaskRuntime[],
    private readonly unavailable: readonly UnavailableRuntime[] = [],
  ) {}

  /** The runtime for a new task; FAILED_PRECONDITION when none is enabled. */
  forSpec(spec: TaskSpec): TaskRuntime {
    const runtime = this.runtimes.find((r) => r.accepts(spec));
    if (runtime) return runtime;
    const hint = this.unavailable.find((u) => u.accepts(spec));
    const kind = spec.container ? 'container' : 'process';
    throw failedPrecondition(`this executor cannot run ${kind} tasks: ${hint?.reason ?? 'no backend accepts them'}`);
  }

  /** Every enabled backend. */
  all(): readonly TaskRuntime[] {
    return this.runtimes;
  }

  byName(name: string): TaskRuntime | undefined {
    return this.runtimes.find((r) => r.name === name);
  }
}
