// The log reader (src/logs/reader.ts) against a model of what it must hand
// out: every CRI record of the rotated files, in order, once, a payload longer
// than maxPayload as P pieces, anything that is not a record skipped. Small
// buffers make a bulk read read ahead many times, across rotated files, with
// records longer than the buffer and records cut at a read's end, and with the
// file growing between reads (a follower's reads).
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { StreamName } from '../../src/logs/cri.js';
import { BEGINNING, logFilePath } from '../../src/logs/files.js';
import { LogReader } from '../../src/logs/reader.js';
import { RecordTable } from '../../src/logs/record-table.js';

interface Written {
  stream: StreamName;
  tag: 'F' | 'P';
  payload: Buffer;
  /** Not a CRI record (skipped by the reader). */
  garbage?: boolean;
}

const TIME = '2026-12-03T13:37:00.123456789Z';
const encode = (r: Written): Buffer =>
  r.garbage ? Buffer.from('not a record\n') : Buffer.concat([Buffer.from(`${TIME} ${r.stream} ${r.tag} `), r.payload, Buffer.from('\n')]);

/** What the reader must hand out for the records: stream, tag and payload of each record or piece. */
function model(records: readonly Written[], maxPayload: number): string[] {
  const out: string[] = [];
  for (const r of records) {
    if (r.garbage) continue;
    let at = 0;
    while (r.payload.length - at > maxPayload) {
      out.push(`${r.stream} P ${r.payload.subarray(at, at + maxPayload).toString('hex')}`);
      at += maxPayload;
    }
    out.push(`${r.stream} ${r.tag} ${r.payload.subarray(at).toString('hex')}`);
  }
  return out;
}

/**
 * Everything the reader hands out until it has caught up, with or without a
 * record table; `release`: after every how many batches the consumer stalls
 * (LogReader.release: the read ahead and buffers are given back), 0: never.
 */
async function drain(reader: LogReader, withTable: boolean, maxPayload: number, into: string[], release = 0): Promise<void> {
  const table = withTable ? new RecordTable() : undefined;
  let batches = 0;
  for (let batch = await reader.read(table); batch; batch = await reader.read(table)) {
    const records = batch.table ? batch.table.toRecords(maxPayload) : batch.records;
    if (release > 0 && ++batches % release === 0) reader.release(); // the records in hand stay valid
    for (const r of records) into.push(`${r.stream} ${r.tag} ${r.payload.toString('hex')}`);
  }
}

const maxRecords = fc.constantFrom(undefined, 1, 7, 512);
const releaseEvery = fc.constantFrom(0, 1, 3);

const written = fc.record({
  stream: fc.constantFrom<StreamName>('stdout', 'stderr'),
  tag: fc.constantFrom<'F' | 'P'>('F', 'F', 'P'),
  payload: fc.oneof(
    { weight: 8, arbitrary: fc.uint8Array({ maxLength: 120 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 200, maxLength: 3000 }) },
  ).map((b) => Buffer.from(b.map((x) => (x === 10 ? 0x20 : x)))),
  garbage: fc.nat({ max: 29 }).map((n) => n === 0),
});

describe('the log reader', () => {
  test('hands out every record of rotated files once and in order, whatever the buffer size, with or without a record table, blocking or not, records per read capped or not, stalls or not', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(written, { maxLength: 400 }),
        fc.array(fc.nat({ max: 400 }), { maxLength: 4 }),
        fc.constantFrom(64, 256, 1024, 4096, 256 * 1024),
        fc.boolean(),
        fc.boolean(),
        maxRecords,
        releaseEvery,
        async (records, cuts, bufferSize, withTable, blocking, maxRecords, release) => {
          const dir = mkdtempSync(join(tmpdir(), 'te-reader-'));
          try {
            const bounds = [...new Set([0, ...cuts.map((c) => Math.min(c, records.length)), records.length])].sort((a, b) => a - b);
            for (let i = 0; i + 1 < bounds.length; i++) {
              writeFileSync(logFilePath(dir, i), Buffer.concat(records.slice(bounds[i], bounds[i + 1]).map(encode)));
            }
            // maxPayload: what a record table's lines are split at (a piece), at most a buffer.
            const maxPayload = Math.min(bufferSize, 1000);
            const reader = new LogReader(dir, BEGINNING, { bufferSize, maxPayload, times: false, blocking, maxRecords });
            const got: string[] = [];
            await drain(reader, withTable, maxPayload, got, release);
            await reader.close();
            assert.deepEqual(got, model(records, maxPayload));
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  test('a reader that catches up, then finds the file grown and a newer file, hands out each record once (blocking or not, capped or not, stalls or not)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(written, { maxLength: 60 }), { minLength: 1, maxLength: 6 }), fc.constantFrom(256, 4096, 256 * 1024), fc.boolean(), maxRecords, releaseEvery, async (appends, bufferSize, blocking, maxRecords, release) => {
        const dir = mkdtempSync(join(tmpdir(), 'te-reader-follow-'));
        try {
          const maxPayload = Math.min(bufferSize, 1000);
          const reader = new LogReader(dir, BEGINNING, { bufferSize, maxPayload, times: false, blocking, maxRecords });
          const got: string[] = [];
          for (const [i, batch] of appends.entries()) {
            // Every other append goes to a new file, as a rotation would.
            appendFileSync(logFilePath(dir, Math.floor(i / 2)), Buffer.concat(batch.map(encode)));
            await drain(reader, i % 3 === 0, maxPayload, got, release);
          }
          await reader.close();
          assert.deepEqual(got, model(appends.flat(), maxPayload));
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 100 },
    );
  });

  test('with maxRecords, a read of a buffer of short lines hands out at most that many records, the rest with the next reads', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'te-reader-cap-'));
    try {
      const lines = Array.from({ length: 5000 }, (_, i) => `line ${i}`);
      writeFileSync(logFilePath(dir, 0), Buffer.concat(lines.map((line) => encode({ stream: 'stdout', tag: 'F', payload: Buffer.from(line) }))));
      const reader = new LogReader(dir, BEGINNING, { times: false, maxRecords: 100 });
      const got: string[] = [];
      let largest = 0;
      for (let batch = await reader.read(); batch; batch = await reader.read()) {
        largest = Math.max(largest, batch.records.length);
        for (const r of batch.records) got.push(r.payload.toString());
      }
      await reader.close();
      assert.equal(largest, 100);
      assert.deepEqual(got, lines);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a reader closed in the middle of a bulk read (a read ahead under way) leaves no file open', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'te-reader-close-'));
    const openInDir = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir);
        } catch {
          return false; // closed meanwhile
        }
      });
    try {
      writeFileSync(logFilePath(dir, 0), Buffer.concat(Array.from({ length: 20_000 }, (_, i) => encode({ stream: 'stdout', tag: 'F', payload: Buffer.from(`line ${i}`) }))));
      const reader = new LogReader(dir, BEGINNING, { bufferSize: 4096, times: false });
      const table = new RecordTable();
      for (let i = 0; i < 5; i++) assert.ok(await reader.read(table));
      assert.equal(openInDir().length, 1);
      await reader.close();
      assert.deepEqual(openInDir(), []);
      assert.equal(await reader.read(table), undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
