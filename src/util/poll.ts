// Waiting for a condition that nothing announces (a process exiting, a cgroup
// freezing): checked now, then every `intervalMs` until it holds or time is up.
import { setTimeout as delay } from 'node:timers/promises';

/** True as soon as `check()` holds; false when it still did not after `timeoutMs`. */
export async function pollUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await delay(intervalMs);
  }
}
