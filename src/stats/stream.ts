// The Stats stream, independent of gRPC: samples a task every interval (the
// first message after two quick samples, so it already carries a CPU rate),
// one sample at a time with the sender's flow control, and ends when the task
// ends (after a last sample), when it is gone, or when the client cancels.
import { performance } from 'node:perf_hooks';
import type { ResourceSample } from '../runtime/runtime.js';
import { type StatsPoint, UsageSampler } from './sampler.js';

/** The gap between the two samples of the first message (and of a one-shot request). */
export const PRIME_MS = 100;

export interface TaskView {
  /** The task terminated: send a last sample and end. */
  ended: boolean;
  /** Reads a sample; undefined while the task has nothing to measure (not started). */
  read?: () => Promise<ResourceSample>;
  /** Identifies the run being measured (compared by identity); a new key (a restart) starts a new rate. */
  key?: unknown;
}

export interface StatsSource {
  /** The task as it is now; undefined once it is gone (deleted). */
  view(): TaskView | undefined;
  /** Calls back on every change of the task. Returns the unsubscribe function. */
  subscribe(onChange: () => void): () => void;
}

export interface StatsStreamOptions {
  source: StatsSource;
  /** Sends one message; resolves when the next one may follow (flow control). */
  send(point: StatsPoint): Promise<void>;
  intervalMs: number;
  oneShot: boolean;
  signal: AbortSignal;
}

export type StatsStreamEnd = 'ended' | 'gone' | 'cancelled';

/** Sleeps until a deadline, or until woken (a task change, a cancellation). */
class Wakeup {
  private wake: (() => void) | undefined;

  notify(): void {
    this.wake?.();
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      const wakeup = this;
      function done() {
        clearTimeout(timer);
        wakeup.wake = undefined;
        resolve();
      }
      this.wake = done;
    });
  }
}

export async function runStatsStream({ source, send, intervalMs, oneShot, signal }: StatsStreamOptions): Promise<StatsStreamEnd> {
  const wakeup = new Wakeup();
  const unsubscribe = source.subscribe(() => wakeup.notify());
  const onAbort = () => wakeup.notify();
  signal.addEventListener('abort', onAbort);
  try {
    let sampler: UsageSampler | undefined;
    let key: unknown;
    let next = performance.now();
    for (;;) {
      if (signal.aborted) return 'cancelled';
      let view = source.view();
      if (!view) return 'gone';
      let point: StatsPoint | undefined;
      if (view.read) {
        if (!sampler || view.key !== key) {
          sampler = new UsageSampler(view.read);
          key = view.key;
        }
        point = await sampler.take();
        if (point.cpuPercent === undefined && !view.ended) {
          // A rate needs two samples: take the second one shortly after.
          await wakeup.sleep(PRIME_MS);
          if (signal.aborted) return 'cancelled';
          view = source.view();
          if (!view) return 'gone';
          point = await sampler.take();
        }
      }
      if (signal.aborted) return 'cancelled';
      if (point) await send(point);
      if (view.ended || oneShot) return 'ended';
      next += intervalMs;
      // Sleep until the next tick; task changes only cut it short when the task ended or is gone.
      for (let now = performance.now(); now < next; now = performance.now()) {
        await wakeup.sleep(next - now);
        if (signal.aborted) return 'cancelled';
        const current = source.view();
        if (!current || current.ended) break;
      }
      if (performance.now() > next + intervalMs) next = performance.now(); // fell behind (slow client): do not burst
    }
  } finally {
    unsubscribe();
    signal.removeEventListener('abort', onAbort);
  }
}
