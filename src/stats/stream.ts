// The Stats stream, independent of gRPC: samples a task every interval (the
// first message after two quick samples, so it already carries a CPU rate),
// one sample at a time with the sender's flow control, and ends when the task
// ends (after a last sample), when it is gone, or when the client cancels.
import { performance } from 'node:perf_hooks';
import type { RunSample } from '../manager/task-manager.js';
import { Wakeup } from '../util/wakeup.js';
import { type StatsPoint, UsageSampler } from './sampler.js';

/** The gap between the two samples of the first message (and of a one-shot request). */
export const PRIME_MS = 100;

export interface TaskView {
  /** The task terminated: send a last sample and end. */
  ended: boolean;
}

export interface StatsSource {
  /** The task as it is now; undefined once it is gone (deleted). */
  view(): TaskView | undefined;
  /** Measures the task's current run; undefined while it has nothing to measure (not started). */
  sample(): Promise<RunSample | undefined>;
  /** Calls back on every change of the task. Returns the unsubscribe function. */
  subscribe(onChange: () => void): () => void;
}

export interface StatsStreamOptions {
  source: StatsSource;
  intervalMs: number;
  oneShot: boolean;
  signal: AbortSignal;
}

export type StatsStreamEnd = 'ended' | 'gone' | 'cancelled';

/** Yields one point per interval, each only once the consumer asked for it (flow control); returns how the stream ended. */
export async function* statsStream({ source, intervalMs, oneShot, signal }: StatsStreamOptions): AsyncGenerator<StatsPoint, StatsStreamEnd, undefined> {
  const wakeup = new Wakeup(signal); // woken by task changes; closed by cancellation
  const unsubscribe = source.subscribe(wakeup.wake);
  /** Sleeps until `deadline` (monotonic ms); task changes cut it short only when the task ended or is gone. */
  const sleepUntil = async (deadline: number) => {
    for (let now = performance.now(); now < deadline; now = performance.now()) {
      await wakeup.wait(deadline - now);
      if (signal.aborted) return;
      const current = source.view();
      if (!current || current.ended) return;
    }
  };
  try {
    const sampler = new UsageSampler(() => source.sample());
    let next = performance.now();
    for (;;) {
      if (signal.aborted) return 'cancelled';
      let view = source.view();
      if (!view) return 'gone';
      let point = await sampler.take();
      if (point && point.cpuPercent === undefined && !view.ended) {
        // A rate needs two samples: take the second one shortly after.
        await sleepUntil(performance.now() + PRIME_MS);
        if (signal.aborted) return 'cancelled';
        view = source.view();
        if (!view) return 'gone';
        point = (await sampler.take()) ?? point;
      }
      if (signal.aborted) return 'cancelled';
      if (point) yield point;
      if (view.ended || oneShot) return 'ended';
      next += intervalMs;
      // Sleep until the next tick, or until the task ended or is gone.
      await sleepUntil(next);
      if (performance.now() > next + intervalMs) next = performance.now(); // fell behind (slow client): do not burst
    }
  } finally {
    unsubscribe();
    wakeup.close();
  }
}
