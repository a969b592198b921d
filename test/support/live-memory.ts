// An executor as a child process whose live memory can be measured: started
// with --expose-gc and gc-on-signal.ts preloaded, it collects garbage and
// reports process.memoryUsage() on SIGUSR2 (RSS alone would count garbage).
import { waitFor } from './wait.js';
import { type ExecutorProcess, MAIN, spawnCommand } from './subprocess.js';

const GC_HOOK = new URL('./gc-on-signal.ts', import.meta.url).pathname;

export interface Memory {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

export function spawnMeasuredExecutor(args: string[]): ExecutorProcess {
  return spawnCommand([process.execPath, '--expose-gc', '--import', 'tsx', '--import', GC_HOOK, MAIN, ...args]);
}

/** The executor's memory after a full GC. */
export async function liveMemory(executor: ExecutorProcess): Promise<Memory> {
  const seen = executor.output().length;
  executor.child.kill('SIGUSR2');
  const line = await waitFor('the memory report', () => /memory (\{.*\})/.exec(executor.output().slice(seen))?.[1], { timeoutMs: 30_000 });
  return JSON.parse(line) as Memory;
}

/** Live memory once it has stopped growing (by more than 2% in a second), e.g. once streams have stalled. */
export async function settledMemory(executor: ExecutorProcess, timeoutMs = 60_000): Promise<Memory> {
  let last = await liveMemory(executor);
  const live = (m: Memory) => m.heapUsed + m.external;
  return waitFor(
    'the memory to stop growing',
    async () => {
      const now = await liveMemory(executor);
      const settled = live(now) <= live(last) * 1.02;
      last = now;
      return settled ? now : undefined;
    },
    { timeoutMs, intervalMs: 1000 },
  );
}
