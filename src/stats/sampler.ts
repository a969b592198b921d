// Turns successive cumulative samples of a task into rates: CPU usage in
// percent of one core over the time between two samples (100 = one core busy,
// 200 = two), as Docker and Nomad report it.
import { performance } from 'node:perf_hooks';
import type { RunSample } from '../manager/task-manager.js';
import type { ResourceSample } from '../runtime/runtime.js';

export interface StatsPoint {
  sample: ResourceSample;
  /** Undefined for the first sample, or when CPU time could not be measured in both. */
  cpuPercent?: number;
}

interface Taken {
  sample: ResourceSample;
  /** Monotonic time (ms) just before the sample was read. */
  at: number;
}

export class UsageSampler {
  private previous: (Taken & { run: number }) | undefined;

  /** `read` measures the task's current run; undefined while there is nothing to measure. */
  constructor(private readonly read: () => Promise<RunSample | undefined>) {}

  /** A sample, with a rate when the previous one was of the same run; undefined when nothing could be measured. */
  async take(): Promise<StatsPoint | undefined> {
    const at = performance.now();
    const read = await this.read();
    if (!read) return undefined;
    const taken = { sample: read.sample, at, run: read.run };
    const point: StatsPoint = { sample: read.sample };
    // A restart starts a new rate: the CPU time of the earlier run says nothing about this one.
    const cpuPercent = this.previous?.run === read.run ? cpuPercentBetween(this.previous, taken) : undefined;
    if (cpuPercent !== undefined) point.cpuPercent = cpuPercent;
    this.previous = taken;
    return point;
  }
}

/**
 * Δcpu / Δwall × 100. Undefined without CPU time in both samples, for windows
 * too short to mean anything, and when the counter went backwards (a
 * /proc-summed tree loses the time of processes that exited unreaped).
 */
export function cpuPercentBetween(a: Taken, b: Taken): number | undefined {
  const cpuA = a.sample.cpuNanoseconds;
  const cpuB = b.sample.cpuNanoseconds;
  const wallNs = (b.at - a.at) * 1e6;
  if (cpuA === undefined || cpuB === undefined || wallNs < 1e6 || cpuB < cpuA) return undefined;
  return ((cpuB - cpuA) / wallNs) * 100;
}
