// The sampling interval of a Stats request.
import { invalidArgument } from '../errors.js';

export const DEFAULT_INTERVAL_MS = 1000;
export const MIN_INTERVAL_MS = 100;
/** A day: long enough for any sensible stream, short enough for timers (setTimeout caps at ~24.8 days). */
export const MAX_INTERVAL_MS = 24 * 60 * 60 * 1000;

/** A google.protobuf.Duration as ts-proto decodes it. */
export interface DurationLike {
  seconds: number;
  nanos: number;
}

/** Milliseconds between samples: the default when unset, INVALID_ARGUMENT below the minimum. */
export function intervalMs(interval: DurationLike | undefined): number {
  if (!interval || (interval.seconds === 0 && interval.nanos === 0)) return DEFAULT_INTERVAL_MS;
  const ms = interval.seconds * 1000 + interval.nanos / 1e6;
  if (!Number.isFinite(ms) || ms < MIN_INTERVAL_MS) {
    throw invalidArgument(`interval must be at least ${MIN_INTERVAL_MS}ms (or unset for ${DEFAULT_INTERVAL_MS / 1000}s), got ${formatMs(ms)}`);
  }
  if (ms > MAX_INTERVAL_MS) throw invalidArgument(`interval must be at most 24h, got ${formatMs(ms)}`);
  return ms;
}

function formatMs(ms: number): string {
  return Number.isFinite(ms) ? `${Math.round(ms * 1000) / 1000}ms` : 'an invalid duration';
}
