// Waiting for a condition that nothing announces (a process exiting, a cgroup
// freezing): checked now, then every `intervalMs` until it holds or time is up.
//
// Every wait bounded by a duration measures it on the monotonic clock
// (performance.now()): the wall clock (Date.now()) can be stepped by NTP or an
// operator, and a step back of an hour turned a 5 s grace period into an hour
// and ten minutes. Wall-clock times are for what is shown or stored.
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';

/** A point `ms` from now on the monotonic clock. */
export interface Deadline {
  /** Milliseconds until the deadline; 0 or less once it passed. */
  left(): number;
  /** True once the deadline passed (strictly after it, like a look that comes late). */
  passed(): boolean;
}

export function deadlineIn(ms: number): Deadline {
  const at = performance.now() + ms;
  return {
    left: () => at - performance.now(),
    passed: () => performance.now() > at,
  };
}

/** True as soon as `check()` holds; false when it still did not after `timeoutMs`. */
export async function pollUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 10): Promise<boolean> {
  const deadline = deadlineIn(timeoutMs);
  for (;;) {
    if (await check()) return true;
    if (deadline.passed()) return false;
    await delay(intervalMs);
  }
}
