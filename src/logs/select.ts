// Decides, record by record, which records belong to wanted lines: the
// selected streams, from the per-stream start chosen by planStart, skipping
// the rest of a line that began before it, and (with `since`) only lines
// whose first record was written at or after `sinceMs`.
import type { StreamName } from './cri.js';
import { comparePositions, type LogPosition } from './files.js';
import type { LogRecord } from './reader.js';
import type { StartPlan } from './start.js';

interface StreamState {
  /** Undefined once passed. */
  from: LogPosition | undefined;
  skipOpenLine: boolean;
  inLine: boolean;
  included: boolean;
}

export class LineSelector {
  private readonly streams = new Map<StreamName, StreamState>();

  constructor(
    plan: StartPlan,
    private readonly sinceMs: number | undefined,
  ) {
    for (const [stream, start] of plan.streams) {
      this.streams.set(stream, { from: start.from, skipOpenLine: start.skipOpenLine, inLine: false, included: false });
    }
  }

  accept(record: LogRecord): boolean {
    const state = this.streams.get(record.stream);
    if (!state) return false;
    const from = state.from;
    if (from) {
      if (comparePositions(record, from) < 0) return false;
      state.from = undefined;
    }
    if (state.skipOpenLine) {
      if (record.tag === 'F') state.skipOpenLine = false;
      return false;
    }
    if (!state.inLine) {
      state.inLine = true;
      state.included = this.sinceMs === undefined || record.timeMs >= this.sinceMs;
    }
    if (record.tag === 'F') state.inLine = false;
    return state.included;
  }

  /**
   * Whether every record at or after `position` is accepted exactly when its
   * stream is selected (no start still ahead, no line to skip or being
   * selected): then a batch from there can skip accept(). Starts at or
   * before `position` count as passed (records come in order).
   */
  acceptsAllFrom(position: LogPosition): boolean {
    if (this.sinceMs !== undefined) return false;
    for (const state of this.streams.values()) {
      const from = state.from;
      if (from && comparePositions(from, position) <= 0) state.from = undefined;
      if (state.from || state.skipOpenLine || state.inLine) return false;
    }
    return true;
  }

  /** After a gap in the output nothing is known about open lines: start afresh. */
  reset(): void {
    for (const state of this.streams.values()) {
      state.from = undefined;
      state.skipOpenLine = false;
      state.inLine = false;
    }
  }
}
