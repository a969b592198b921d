// Turns successive cumulative samples of a task into rates: CPU usage in
// percent of one core over the time between two samples (100 = one core busy,
// 200 = two), as Docker and Nomad report it.
import { performance } from 'node:perf_hooks';
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
  private previous: Taken | undefined;

  constructor(private readonly read: () => Promise<ResourceSample>) {}

  /** Whether a sample was taken already, so the next one comes with a rate. */
  get primed(): boolean {
    return this.previous !== undefined;
  }

  async take(): Promise<StatsPoint> {
    const at = performance.now();
    const sample = await this.read();
    const taken = { sample, at };
    const point: StatsPoint = { sample };
    const cpuPercent = this.previous && cpuPercentBetween(this.previous, taken);
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
