// One Logs request from start to end, independent of gRPC: plans where to
// start, reads records, selects and reassembles lines, honours limitBytes, and
// with `follow` waits for more output until the task has ended and its last
// output has been read (or the task is gone, or the receiver cancels).
//
// A bulk read for a consumer that takes LineRuns (LogsQuery.runs) skips the
// objects per record and per line where a read is whole lines (runsOf).
//
// Flow control: an async generator of lines, so nothing is read until the
// consumer asks for the next line. At most one read buffer and one line piece
// per stream are held, however slow the receiver.
import { setImmediate as loopTurn } from 'node:timers/promises';
import type { StreamName } from './cri.js';
import { DirectoryWatch } from './dir-watch.js';
import { type LogLine, LineAssembler } from './lines.js';
import { LogReader } from './reader.js';
import { type LineRuns, RecordTable, STDERR, STDOUT } from './record-table.js';
import { LineSelector } from './select.js';
import { planStart } from './start.js';
import { utf8Cut } from './utf8.js';
import { Wakeup } from '../util/wakeup.js';

export interface LogsQuery {
  /** The directory with output.<N>.log files. */
  directory: string;
  streams: readonly StreamName[];
  tailLines?: number;
  limitBytes?: number;
  sinceMs?: number;
  follow: boolean;
  /** The lines' write times are wanted (timestamps); without them (and without sinceMs) no time is parsed and LogLine.timeMs is NaN. */
  times?: boolean;
  /**
   * The consumer takes LineRuns batches: whole lines as places in the read
   * buffer, for a bulk read that would otherwise make an object per record
   * and per line. Used only where the lines are exactly the same either way:
   * no times, no limitBytes, and a read whose records are whole lines (each
   * F record with the P records of its stream right before it, none longer
   * than a piece) with no line open before it and every stream past its start.
   */
  runs?: boolean;
  /** The caller has a thread of its own (a worker): read synchronously (ReaderOptions.blocking). */
  blocking?: boolean;
  /**
   * Tells when the receiver has stalled (taken nothing for a while): the
   * reader then gives back its read-ahead and buffers (LogReader.release).
   */
  onStall?: (listener: () => void) => void;
  /** Most records made into objects per read (ReaderOptions.maxRecords); a batch has about as many lines at most. */
  maxRecords?: number;
}

/** What streamLogs yields: lines, or (with LogsQuery.runs) LineRuns. */
export type LogBatch = readonly LogLine[] | LineRuns;

export const isLines = (batch: LogBatch): batch is readonly LogLine[] => Array.isArray(batch);

/** What a follower needs to know about the task: is it still running? */
export interface TaskLiveness {
  /** 'ended': no new output is expected (apart from a last flush); 'gone': the task was deleted. */
  status(): 'active' | 'ended' | 'gone';
  /** Calls `listener` whenever the status may have changed; returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/** complete: all output sent (follow: the task ended); limit: limitBytes reached; gone: the task was deleted while followed. */
export type StreamOutcome = 'complete' | 'limit' | 'gone' | 'cancelled';

export interface FollowTimings {
  /** Longest sleep between checks for new output when no change notification arrives. */
  pollMs: number;
  /** After the task ended: end once no new output has arrived for this long... */
  settleMs: number;
  /** ...or this long after the end was seen, whichever comes first. */
  maxDrainMs: number;
  /** Longest piece of one line that is sent (and held) at once. */
  maxPiece: number;
}

export const DEFAULT_TIMINGS: FollowTimings = { pollMs: 50, settleMs: 200, maxDrainMs: 3000, maxPiece: 64 * 1024 };

/**
 * Yields the requested lines in batches: each batch is every line that is
 * ready (complete, or a piece of one still being written) at that moment, in
 * order, so a bulk read hands out one read buffer's worth at a time and a
 * follower gets a line as soon as it is read. Returns how the stream ended.
 * A line may be a view of a read buffer: the consumer copies what it keeps
 * before asking for the next batch. Returning early (the consumer's
 * `return()`) releases files, watches and timers.
 */
export function streamLogs(
  query: LogsQuery & { runs: true },
  liveness: TaskLiveness,
  signal: AbortSignal,
  timings?: FollowTimings,
): AsyncGenerator<LogBatch, StreamOutcome, undefined>;
export function streamLogs(
  query: LogsQuery & { runs?: false },
  liveness: TaskLiveness,
  signal: AbortSignal,
  timings?: FollowTimings,
): AsyncGenerator<readonly LogLine[], StreamOutcome, undefined>;
export function streamLogs(
  query: LogsQuery,
  liveness: TaskLiveness,
  signal: AbortSignal,
  timings?: FollowTimings,
): AsyncGenerator<LogBatch, StreamOutcome, undefined>;
export async function* streamLogs(
  query: LogsQuery,
  liveness: TaskLiveness,
  signal: AbortSignal,
  timings: FollowTimings = DEFAULT_TIMINGS,
): AsyncGenerator<LogBatch, StreamOutcome, undefined> {
  const { directory, follow, limitBytes } = query;
  if (limitBytes === 0 || (query.tailLines === 0 && !follow)) return 'complete';

  const plan = await planStart(directory, { streams: query.streams, tailLines: query.tailLines, sinceMs: query.sinceMs });
  if (signal.aborted) return 'cancelled';
  const times = query.times === true || query.sinceMs !== undefined;
  const reader = new LogReader(directory, plan.position, { maxPayload: timings.maxPiece, times, blocking: query.blocking, maxRecords: query.maxRecords });
  query.onStall?.(() => reader.release());
  const selector = new LineSelector(plan, query.sinceMs);
  const assembler = new LineAssembler(timings.maxPiece);
  // Bulk reads of whole lines skip records, selector and assembler (see runsOf).
  const table = query.runs && !times && limitBytes === undefined ? new RecordTable() : undefined;
  const keep: [boolean, boolean] = [query.streams.includes('stdout'), query.streams.includes('stderr')];
  /** The table's records as LineRuns when they are exactly the lines the general path would make of them, else undefined. */
  const runsOf = (table: RecordTable): LineRuns | undefined => {
    if (!table.wholeLines() || !assembler.idle() || out.length > 0) return undefined;
    if (!selector.acceptsAllFrom({ index: table.index, offset: table.offset + table.recordStarts[0]! })) return undefined;
    if (!(keep[STDOUT] && keep[STDERR])) table.keepStreams(keep);
    table.joinPieces();
    if (table.has(STDOUT)) assembler.wholeLinesOut('stdout');
    if (table.has(STDERR)) assembler.wholeLinesOut('stderr');
    return table;
  };
  // Woken by writes in the directory (inotify), task changes and cancellation.
  // Polls (every pollMs) only while the directory cannot be watched.
  const wakeup = follow ? new Wakeup(signal) : undefined;
  const directoryWatch = wakeup && new DirectoryWatch(directory, wakeup.wake);
  const unsubscribe = wakeup && liveness.onChange(wakeup.wake);
  const sleep = (wakeup: Wakeup, ms?: number): Promise<void> => {
    const watch = directoryWatch!.retry(); // the directory may exist by now
    // Just started watching: what was written before the watch began is not announced, so look again first.
    if (watch === 'started') return Promise.resolve();
    if (watch === 'unavailable') return wakeup.wait(Math.min(ms ?? timings.pollMs, timings.pollMs));
    return wakeup.wait(ms);
  };

  let out: LogLine[] = [];
  let sent = 0;
  let limitReached = false;
  /** Yields what `out` holds (cut at limitBytes); false when the stream must end (cancelled or limit reached). */
  async function* deliver(): AsyncGenerator<readonly LogLine[], boolean, undefined> {
    if (signal.aborted) return false;
    let batch = out;
    out = [];
    if (limitBytes !== undefined) batch = cutAtLimit(batch);
    if (batch.length > 0) yield batch;
    return !limitReached && !signal.aborted;
  }
  function cutAtLimit(lines: LogLine[]): LogLine[] {
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line.bytes.length < limitBytes! - sent) {
        sent += line.bytes.length;
        continue;
      }
      limitReached = true;
      const cut = utf8Cut(line.bytes, limitBytes! - sent);
      sent += cut;
      const kept = lines.slice(0, i);
      if (cut === line.bytes.length) kept.push(line);
      else if (cut > 0) kept.push({ ...line, bytes: line.bytes.subarray(0, cut), partial: true });
      return kept;
    }
    return lines;
  }
  async function* finish(outcome: StreamOutcome): AsyncGenerator<readonly LogLine[], StreamOutcome, undefined> {
    assembler.flush(out, true);
    if (!(yield* deliver())) return signal.aborted ? 'cancelled' : 'limit';
    return outcome;
  }
  const stopped = (): StreamOutcome => (signal.aborted ? 'cancelled' : 'limit');

  try {
    let endedAt: number | undefined;
    let lastDataAt = performance.now(); // monotonic, like endedAt: only their distances count
    for (;;) {
      if (signal.aborted) return 'cancelled';
      if (follow && liveness.status() === 'gone') return yield* finish('gone');
      const batch = await reader.read(table);
      if (signal.aborted) return 'cancelled';
      if (batch?.table) {
        const runs = batch.gap ? undefined : runsOf(batch.table);
        if (runs) {
          if (runs.count > 0) yield runs;
          if (signal.aborted) return 'cancelled';
          lastDataAt = performance.now();
          if (follow) await loopTurn(); // as below, after lines
          continue;
        }
        batch.records = batch.table.toRecords(timings.maxPiece);
      }
      if (batch) {
        if (batch.gap) {
          assembler.breakLines(out, batch.records[0]?.timeMs ?? Date.now());
          selector.reset();
        }
        for (const record of batch.records) if (selector.accept(record)) assembler.push(record, out);
        if (!(yield* deliver())) return stopped();
        lastDataAt = performance.now();
        // The consumer has taken the lines: let the event loop turn once so
        // they leave before we read on. Node's HTTP/2 sends what grpc-js
        // queued in a native immediate, which runs before JavaScript ones;
        // a follower's next read (usually finding nothing, then checking for
        // a newer file) would otherwise run first and delay the line in hand.
        // One turn per read, not per line: a follower's backlog is read as
        // fast as before. The same after LineRuns above.
        if (follow) await loopTurn();
        continue;
      }
      // Everything written so far has been read.
      if (!wakeup) return yield* finish('complete');
      assembler.flush(out, false); // a line still being written: send what there is
      if (!(yield* deliver())) return stopped();
      const status = liveness.status();
      if (status === 'gone') return yield* finish('gone');
      if (status === 'active') {
        endedAt = undefined;
        await sleep(wakeup);
        continue;
      }
      // Ended: its supervisor may still write the last output; wait until it has been quiet for a while.
      const now = performance.now();
      endedAt ??= now;
      const quietMs = now - Math.max(lastDataAt, endedAt);
      if (quietMs >= timings.settleMs || now - endedAt >= timings.maxDrainMs) return yield* finish('complete');
      await sleep(wakeup, timings.settleMs - quietMs);
    }
  } finally {
    unsubscribe?.();
    directoryWatch?.close();
    wakeup?.close();
    await reader.close();
  }
}
