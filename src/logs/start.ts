// Chooses where forward reading starts for `tailLines` and `since`, per stream,
// so that only whole lines are handed out:
// - tail N: the last N complete lines (by the position of their final F
//   record) of the selected streams. Per stream, reading starts right after
//   that stream's last line that is not wanted, so lines that interleave with
//   the other stream are neither cut nor duplicated. A line still being written
//   at the end (P records without their F yet) comes along: it is not a
//   complete line, but it is the start of the output that follows.
// - since T: every file whose first record is older than T except the newest
//   such is skipped; reading starts at that file. A line of a stream that
//   began before that point (its P records are in an older file) is skipped up
//   to and including its F. Lines at or after the start are filtered by the
//   time of their first record while reading (lines are in time order).
import { scanBackward, firstRecordTime } from './backward.js';
import type { StreamName } from './cri.js';
import { BEGINNING, comparePositions, listLogFiles, type LogPosition, minPosition } from './files.js';

export interface StreamStart {
  /** Records of this stream before this position are not wanted. */
  from: LogPosition;
  /** The first records of this stream at `from` continue a line that began earlier: skip them up to and including its F. */
  skipOpenLine: boolean;
}

export interface StartPlan {
  /** Where forward reading begins: the lowest `from`. */
  position: LogPosition;
  streams: Map<StreamName, StreamStart>;
}

export interface StartOptions {
  streams: readonly StreamName[];
  tailLines?: number;
  sinceMs?: number;
}

export async function planStart(dir: string, options: StartOptions): Promise<StartPlan> {
  const streams = new Map<StreamName, StreamStart>(options.streams.map((s) => [s, { from: BEGINNING, skipOpenLine: false }]));
  if (options.tailLines !== undefined) {
    for (const [stream, from] of await tailStarts(dir, options.streams, options.tailLines)) streams.get(stream)!.from = from;
  }
  if (options.sinceMs !== undefined) {
    const since = await sinceStart(dir, options.streams, options.sinceMs);
    if (since) {
      for (const [stream, start] of streams) {
        if (comparePositions(since.from, start.from) > 0) {
          start.from = since.from;
          start.skipOpenLine = since.openLines.has(stream);
        }
      }
    }
  }
  let position: LogPosition | undefined;
  for (const start of streams.values()) position = position ? minPosition(position, start.from) : start.from;
  return { position: position ?? BEGINNING, streams };
}

/** Per stream, the position just after the last complete line that is not among the last `lines`. */
async function tailStarts(dir: string, streams: readonly StreamName[], lines: number): Promise<Map<StreamName, LogPosition>> {
  const starts = new Map<StreamName, LogPosition>();
  let counted = 0;
  await scanBackward(dir, (record) => {
    if (!streams.includes(record.stream) || starts.has(record.stream) || record.tag !== 'F') return true;
    if (counted < lines) counted++;
    else starts.set(record.stream, { index: record.index, offset: record.end });
    return starts.size < streams.length;
  });
  return starts;
}

/** The start of the newest file that begins before `sinceMs`, and which streams have a line open there. */
async function sinceStart(
  dir: string,
  streams: readonly StreamName[],
  sinceMs: number,
): Promise<{ from: LogPosition; openLines: Set<StreamName> } | undefined> {
  const files = await listLogFiles(dir);
  // Binary search over files by the time of their first record (lines are in
  // time order within and across files); files without a complete record yet
  // can only be the newest.
  let lo = 0;
  let hi = files.length - 1;
  let found: number | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const time = await firstRecordTime(dir, files[mid]!);
    if (time !== undefined && time < sinceMs) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  if (found === undefined || found === 0) return undefined; // start at the beginning
  const from = { index: files[found]!, offset: 0 };
  const openLines = new Set<StreamName>();
  const seen = new Set<StreamName>();
  await scanBackward(
    dir,
    (record) => {
      if (!streams.includes(record.stream) || seen.has(record.stream)) return true;
      seen.add(record.stream);
      if (record.tag === 'P') openLines.add(record.stream);
      return seen.size < streams.length;
    },
    from,
  );
  return { from, openLines };
}
