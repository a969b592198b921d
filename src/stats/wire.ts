// ResourceSample (+ rate) → StatsResponse. Unmeasured values stay absent, and
// a sub-message with nothing measured is left out.
import type { StatsResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import type { StatsPoint } from './sampler.js';

type Defined<T> = { [K in keyof T]: Exclude<T[K], undefined> };

function compact<T extends object>(fields: T): Partial<Defined<T>> | undefined {
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) result[key] = value;
  return Object.keys(result).length > 0 ? (result as Partial<Defined<T>>) : undefined;
}

const whole = (n: number | undefined) => (n === undefined ? undefined : Math.max(0, Math.round(n)));

export function statsToWire({ sample, cpuPercent }: StatsPoint): StatsResponse {
  return {
    time: new Date(sample.time),
    cpu: compact({
      usagePercent: cpuPercent === undefined ? undefined : Math.round(cpuPercent * 100) / 100,
      usageNanoseconds: whole(sample.cpuNanoseconds),
      limitMillicores: whole(sample.cpuLimitMillicores),
    }),
    memory: compact({
      rssBytes: whole(sample.rssBytes),
      usageBytes: whole(sample.memoryUsageBytes),
      limitBytes: whole(sample.memoryLimitBytes),
    }),
    io: compact({ readBytes: whole(sample.readBytes), writeBytes: whole(sample.writeBytes) }),
    pids: compact({ current: whole(sample.pids), limit: whole(sample.pidsLimit) }),
  };
}
