// Chunked Logs output has a fast path for bulk reads: whole lines as places
// in the read buffer (LineRuns, src/logs/record-table.ts) encoded by
// ChunkEncoder.runResponses, with no LogLine per line. It must send exactly
// the messages the general path (LogLine objects through responses()) sends,
// for any log: P records, stream changes, rotated files, lines that are not
// UTF-8, lines longer than a piece, records that are not CRI records.
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { ChunkEncoder, EncodedChunkResponse } from '../../src/api/log-chunks.js';
import { ChunkWorkers } from '../../src/api/log-chunks-offload.js';
import { ENCODED } from '../../src/api/pre-encoded.js';
import type { StreamName } from '../../src/logs/cri.js';
import { logFilePath } from '../../src/logs/files.js';
import { DEFAULT_TIMINGS, isLines, type LogsQuery, type StreamOutcome, streamLogs, type TaskLiveness } from '../../src/logs/stream-logs.js';
import { waitFor } from '../support/wait.js';

interface Record {
  stream: StreamName;
  tag: 'F' | 'P';
  payload: Buffer;
  /** Not a CRI record at all (skipped by the reader). */
  garbage?: boolean;
}

const ended: TaskLiveness = { status: () => 'ended', onChange: () => () => {} };
const TIME = '2026-12-03T13:37:00.123456789Z';

const encodeRecord = (r: Record): Buffer =>
  r.garbage ? Buffer.from('not a record at all\n') : Buffer.concat([Buffer.from(`${TIME} ${r.stream} ${r.tag} `), r.payload, Buffer.from('\n')]);

/** Writes the records into output.<first>.log, output.<first+1>.log, ... cut at the given record counts. */
function writeLog(dir: string, records: readonly Record[], cuts: readonly number[], first: number): void {
  const bounds = [...new Set([0, ...cuts.map((c) => Math.min(c, records.length)), records.length])].sort((a, b) => a - b);
  for (let i = 0; i + 1 < bounds.length; i++) {
    writeFileSync(logFilePath(dir, first + i), Buffer.concat(records.slice(bounds[i], bounds[i + 1]).map(encodeRecord)));
  }
}

/** The encoded messages of one chunked read, and how many batches came as LineRuns. */
async function chunkMessages(query: LogsQuery & { runs: boolean }, maxPiece: number): Promise<{ messages: Buffer[]; runBatches: number }> {
  const encoder = new ChunkEncoder(false);
  const messages: Buffer[] = [];
  let runBatches = 0;
  for await (const batch of streamLogs(query, ended, new AbortController().signal, { ...DEFAULT_TIMINGS, maxPiece })) {
    if (!isLines(batch)) runBatches++;
    const responses = isLines(batch) ? encoder.responses(batch) : encoder.runResponses(batch);
    for (const response of responses) {
      assert.ok(response instanceof EncodedChunkResponse);
      messages.push(Buffer.from(response[ENCODED]));
    }
  }
  return { messages, runBatches };
}

const stream = fc.constantFrom<StreamName>('stdout', 'stderr');
const payload = fc.oneof(
  { weight: 6, arbitrary: fc.string({ maxLength: 150 }).map((s) => Buffer.from(s.replaceAll('\n', ' '))) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => Buffer.from(s.replaceAll('\n', ' '))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.from(b.map((x) => (x === 10 ? 0xff : x)))) },
  { weight: 1, arbitrary: fc.integer({ min: 400, max: 3000 }).map((n) => Buffer.alloc(n, 'é')) },
);
const record = fc.record({ stream, tag: fc.constantFrom<'F' | 'P'>('F', 'F', 'F', 'P'), payload, garbage: fc.nat({ max: 19 }).map((n) => n === 0) });
/** Many short whole lines of one stream: reads of up to the whole buffer, and chunks cut at CHUNK_BYTES. */
const bulk = fc.record({ stream, lines: fc.integer({ min: 0, max: 4000 }), at: fc.nat() });

const log = fc.record({
  records: fc.array(record, { maxLength: 80, size: 'medium' }),
  bulk: fc.array(bulk, { maxLength: 3 }),
  cuts: fc.array(fc.nat({ max: 6000 }), { maxLength: 4 }),
  first: fc.nat({ max: 3 }),
});

/** The records with the bulk lines inserted. */
function records(l: { records: readonly Record[]; bulk: readonly { stream: StreamName; lines: number; at: number }[] }): Record[] {
  const all = [...l.records];
  for (const b of l.bulk) {
    const lines = Array.from({ length: b.lines }, (_, i) => ({ stream: b.stream, tag: 'F' as const, payload: Buffer.from(`line ${i} ${'x'.repeat(i % 150)}`) }));
    all.splice(b.at % (all.length + 1), 0, ...lines);
  }
  return all;
}

describe('chunked Logs: the bulk fast path and the general path', () => {
  test('give the same messages for any log, any stream selection and tail, with any piece size', async () => {
    let usedRuns = 0;
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(
        log,
        fc.constantFrom<readonly StreamName[]>(['stdout', 'stderr'], ['stdout'], ['stderr']),
        fc.option(fc.nat({ max: 300 }), { nil: undefined }),
        fc.constantFrom(64 * 1024, 1000),
        async (l, streams, tailLines, maxPiece) => {
          const dir = mkdtempSync(join(tmpdir(), 'te-chunk-runs-'));
          try {
            writeLog(dir, records(l), l.cuts, l.first);
            const query = { directory: dir, streams, tailLines, follow: false };
            const general = await chunkMessages({ ...query, runs: false }, maxPiece);
            const fast = await chunkMessages({ ...query, runs: true }, maxPiece);
            assert.equal(general.runBatches, 0);
            assert.deepEqual(fast.messages, general.messages);
            cases++;
            if (fast.runBatches > 0) usedRuns++;
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 100 },
    );
    assert.ok(usedRuns >= cases / 10, `the fast path was used in ${usedRuns} of ${cases} cases`);
  });

  test('pieces that make exactly a piece, a line one byte longer than a piece, and pieces across files give the same messages', async () => {
    const maxPiece = 1000;
    // A P record's payload begins with a byte that is not UTF-8: where the general path cuts a line into pieces, only some are then data.
    const piece = (stream: StreamName, n: number, tag: 'F' | 'P'): Record => {
      const payload = Buffer.alloc(n, stream === 'stdout' ? 'o' : 'e');
      if (tag === 'P' && n > 0) payload[0] = 0xff;
      return { stream, tag, payload };
    };
    const cases: Record[][] = [
      [piece('stdout', 600, 'P'), piece('stdout', 400, 'P'), piece('stdout', 5, 'F')],
      [piece('stdout', 1000, 'P'), piece('stdout', 0, 'F')],
      [piece('stdout', 600, 'P'), piece('stdout', 400, 'F'), piece('stderr', 1001, 'F')],
      [piece('stdout', 600, 'P'), piece('stdout', 401, 'F'), piece('stdout', 3, 'F')],
      [piece('stderr', 10, 'P'), piece('stdout', 10, 'F'), piece('stderr', 10, 'F')],
    ];
    for (const [i, all] of cases.entries()) {
      for (const cuts of [[], [1], [2]]) {
        const dir = mkdtempSync(join(tmpdir(), 'te-chunk-runs-'));
        try {
          writeLog(dir, [...all, piece('stdout', 7, 'F')], cuts, 0);
          const query = { directory: dir, streams: ['stdout', 'stderr'] as const, follow: false };
          const general = await chunkMessages({ ...query, runs: false }, maxPiece);
          assert.deepEqual((await chunkMessages({ ...query, runs: true }, maxPiece)).messages, general.messages, `case ${i}, files cut at ${cuts}`);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }
    }
  });

  test('a follower gets the same messages either way as records are appended, a line written in pieces across appends included', { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'te-chunk-runs-'));
    const controller = new AbortController();
    const active: TaskLiveness = { status: () => 'active', onChange: () => () => {} };
    const line = (stream: StreamName, text: string, tag: 'F' | 'P' = 'F'): Record => ({ stream, tag, payload: Buffer.from(text) });
    const bulk = Array.from({ length: 3000 }, (_, i) => line(i % 7 === 0 ? 'stderr' : 'stdout', `line ${i} ${'z'.repeat(i % 90)}`));
    const steps: Record[][] = [
      bulk,
      [line('stdout', 'typed so far: ', 'P')],
      [line('stdout', 'more ', 'P'), line('stderr', 'meanwhile')],
      [line('stdout', 'and the end'), ...bulk.slice(0, 500)],
      [line('stderr', 'half', 'P'), line('stderr', ' and half'), line('stdout', 'last')],
    ];
    const query = { directory: dir, streams: ['stdout', 'stderr'] as const, follow: true };
    const followers = [false, true].map((runs) => ({
      lines: streamLogs({ ...query, runs }, active, controller.signal),
      encoder: new ChunkEncoder(false),
      received: 0,
      runBatches: 0,
    }));
    try {
      writeFileSync(logFilePath(dir, 0), '');
      let written = 0;
      for (const [i, step] of steps.entries()) {
        appendFileSync(logFilePath(dir, 0), Buffer.concat(step.map(encodeRecord)));
        written += step.reduce((n, r) => n + r.payload.length + (r.tag === 'F' ? 1 : 0), 0);
        const messages: Buffer[][] = [];
        for (const follower of followers) {
          const got: Buffer[] = [];
          // Everything written so far arrives: whole lines, and what there is of a line still open.
          while (follower.received < written) {
            const next = await follower.lines.next();
            assert.ok(!next.done, 'the follower goes on');
            if (!isLines(next.value)) follower.runBatches++;
            for (const response of isLines(next.value) ? follower.encoder.responses(next.value) : follower.encoder.runResponses(next.value)) {
              assert.ok(response instanceof EncodedChunkResponse);
              const content = response.chunk?.content;
              follower.received += content?.$case === 'text' ? Buffer.byteLength(content.value) : (content?.value.length ?? 0);
              got.push(Buffer.from(response[ENCODED]));
            }
          }
          assert.equal(follower.received, written, `step ${i}: no more than was written`);
          messages.push(got);
        }
        assert.deepEqual(messages[1], messages[0], `step ${i}`);
      }
      assert.ok(followers[1]!.runBatches >= 2, `${followers[1]!.runBatches} batches as line runs`);
    } finally {
      controller.abort();
      for (const follower of followers) await follower.lines.return('cancelled');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const runs of [false, true]) {
    test(`a follower lets the event loop turn after handing out ${runs ? 'line runs' : 'lines'} before it reads on (so what the consumer wrote leaves first)`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'te-chunk-runs-'));
      const controller = new AbortController();
      const active: TaskLiveness = { status: () => 'active', onChange: () => () => {} };
      const follower = streamLogs({ directory: dir, streams: ['stdout', 'stderr'], follow: true, runs }, active, controller.signal);
      try {
        writeFileSync(logFilePath(dir, 0), encodeRecord({ stream: 'stdout', tag: 'F', payload: Buffer.from('first') }));
        const first = await follower.next();
        assert.ok(!first.done && (runs ? !isLines(first.value) : isLines(first.value)));
        // The consumer has written what it made of the batch (HTTP/2 sends it in an immediate) and asks for more.
        const order: string[] = [];
        setImmediate(() => order.push('turn'));
        appendFileSync(logFilePath(dir, 0), encodeRecord({ stream: 'stdout', tag: 'F', payload: Buffer.from('second') }));
        const second = await follower.next();
        order.push('next batch');
        assert.ok(!second.done);
        assert.deepEqual(order, ['turn', 'next batch']);
      } finally {
        controller.abort();
        await follower.return('cancelled');
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test('a bulk read with P records, stream changes, rotation and a line that is not UTF-8 goes through the fast path and gives the same messages', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'te-chunk-runs-'));
    try {
      const line = (stream: StreamName, text: string | Buffer, tag: 'F' | 'P' = 'F'): Record => ({ stream, tag, payload: Buffer.from(text) });
      const many = (stream: StreamName, n: number) => Array.from({ length: n }, (_, i) => line(stream, `${stream} ${i} ${'y'.repeat(100)}`));
      const all: Record[] = [
        ...many('stdout', 1500),
        line('stdout', 'a line in '),
        line('stdout', 'three ', 'P'),
        line('stdout', 'pieces'),
        ...many('stderr', 20),
        line('stderr', Buffer.from([0xff, 0xfe, 0x20, 0x72, 0x61, 0x77])),
        line('stderr', 'grüße ✓'),
        ...many('stdout', 3000),
        line('stdout', 'open at the end of a file ', 'P'),
        line('stdout', 'and closed in the next'),
        ...many('stdout', 100),
      ];
      writeLog(dir, all, [1600, 4524], 0);
      const query = { directory: dir, streams: ['stdout', 'stderr'] as const, follow: false };
      const general = await chunkMessages({ ...query, runs: false }, 64 * 1024);
      const fast = await chunkMessages({ ...query, runs: true }, 64 * 1024);
      assert.ok(fast.runBatches >= 3, `${fast.runBatches} batches as line runs`);
      assert.deepEqual(fast.messages, general.messages);
      assert.ok(general.messages.length > 10);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('chunked Logs in a worker thread (bulk reads, src/api/log-chunks-offload.ts)', () => {
  const workers = new ChunkWorkers({ maxWorkers: 1, minBytes: 0, idleMs: 60_000 });
  /** The worker's messages for the read, once a worker is ready to take it. */
  async function workerMessages(query: { directory: string; streams: readonly StreamName[]; tailLines?: number }): Promise<{ messages: Buffer[]; outcome: StreamOutcome }> {
    const read = await waitFor('a worker to take the read', () => workers.offload(query, new AbortController().signal), { timeoutMs: 60_000 });
    const messages: Buffer[] = [];
    for (;;) {
      const next = await read.next();
      if (next.done) return { messages, outcome: next.value };
      assert.ok(next.value instanceof EncodedChunkResponse);
      messages.push(Buffer.from(next.value[ENCODED]));
    }
  }
  after(() => workers.close());

  test('gives the same messages as the read on the main thread for any log, stream selection and tail', { timeout: 120_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(log, fc.constantFrom<readonly StreamName[]>(['stdout', 'stderr'], ['stdout'], ['stderr']), fc.option(fc.nat({ max: 300 }), { nil: undefined }), async (l, streams, tailLines) => {
        const dir = mkdtempSync(join(tmpdir(), 'te-chunk-worker-'));
        try {
          writeLog(dir, records(l), l.cuts, l.first);
          const query = { directory: dir, streams, tailLines };
          const inPlace = await chunkMessages({ ...query, follow: false, runs: true }, DEFAULT_TIMINGS.maxPiece);
          const worker = await workerMessages(query);
          assert.equal(worker.outcome, 'complete');
          assert.deepEqual(worker.messages, inPlace.messages);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 40 },
    );
  });

  test('gives the same messages over rotated files of more than one read each, P records, both streams and lines that are not UTF-8', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'te-chunk-worker-'));
    try {
      const line = (stream: StreamName, text: string | Buffer, tag: 'F' | 'P' = 'F'): Record => ({ stream, tag, payload: Buffer.from(text) });
      const many = (stream: StreamName, n: number) => Array.from({ length: n }, (_, i) => line(stream, `${stream} ${i} ${'w'.repeat(i % 200)}`));
      const all: Record[] = [
        ...many('stdout', 20_000),
        line('stdout', 'a line in '),
        line('stdout', 'three ', 'P'),
        line('stdout', 'pieces'),
        ...many('stderr', 3000),
        line('stderr', Buffer.from([0xff, 0xfe, 0x20, 0x72, 0x61, 0x77])),
        line('stdout', Buffer.alloc(100_000, 'L')), // longer than a piece
        ...many('stdout', 15_000),
        line('stdout', 'open at the end of a file ', 'P'),
        line('stdout', 'and closed in the next'),
        ...many('stderr', 10_000),
      ];
      writeLog(dir, all, [9000, 23_005, 38_009], 4); // files of ~1.5 to 2.5 MB: more than one blocking read each
      const query = { directory: dir, streams: ['stdout', 'stderr'] as const };
      const inPlace = await chunkMessages({ ...query, follow: false, runs: true }, DEFAULT_TIMINGS.maxPiece);
      const worker = await workerMessages(query);
      assert.ok(inPlace.messages.length > 50, `${inPlace.messages.length} messages`);
      assert.deepEqual(worker.messages, inPlace.messages);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a read left early (or aborted) stops the worker: its files are closed and it is free for the next read', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'te-chunk-worker-'));
    /** This process's descriptors open on the log's files (the worker's included: threads share them). */
    const openLogFds = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir);
        } catch {
          return false; // closed meanwhile
        }
      }).length;
    try {
      const many = Array.from({ length: 200_000 }, (_, i): Record => ({ stream: i % 3 ? 'stdout' : 'stderr', tag: 'F', payload: Buffer.from(`line ${i} ${'v'.repeat(80)}`) }));
      writeLog(dir, many, [100_000], 0); // ~25 MB in two files
      for (const leave of ['return', 'abort'] as const) {
        const controller = new AbortController();
        const read = await waitFor('a worker to take the read', () => workers.offload({ directory: dir, streams: ['stdout', 'stderr'] }, controller.signal), { timeoutMs: 60_000 });
        const first = await read.next();
        assert.ok(!first.done);
        assert.equal(workers.busy, 1);
        assert.ok(openLogFds() >= 1, 'the worker reads the log');
        if (leave === 'return') {
          await read.return('cancelled');
        } else {
          controller.abort();
          assert.deepEqual(await read.next(), { done: true, value: 'cancelled' });
        }
        await waitFor(`the worker to be free again (${leave})`, () => workers.busy === 0);
        assert.equal(openLogFds(), 0, `no file left open (${leave})`);
        assert.equal(workers.workers, 1, 'the worker stays for the next read');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a worker without reads ends after idleMs, and close() ends them all; a small log is read in place', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'te-chunk-worker-'));
    const idle = new ChunkWorkers({ maxWorkers: 1, minBytes: 0, idleMs: 100 });
    const closing = new ChunkWorkers({ maxWorkers: 1, minBytes: 0, idleMs: 60_000 });
    const small = new ChunkWorkers({ maxWorkers: 1, minBytes: 1 << 20, idleMs: 60_000 });
    try {
      writeLog(dir, [{ stream: 'stdout', tag: 'F', payload: Buffer.from('one line') }], [], 0);
      const query = { directory: dir, streams: ['stdout', 'stderr'] as const };
      for (const pool of [idle, closing]) {
        const read = await waitFor('a worker to take the read', () => pool.offload(query, new AbortController().signal), { timeoutMs: 60_000 });
        while (!(await read.next()).done);
      }
      await waitFor('the idle worker to end', () => idle.workers === 0);
      assert.equal(closing.workers, 1);
      await closing.close();
      assert.equal(closing.workers, 0);
      assert.equal(await closing.offload(query, new AbortController().signal), undefined, 'no read after close');
      assert.equal(await small.offload(query, new AbortController().signal), undefined);
      assert.equal(small.workers, 0, 'no worker started for a small log');
    } finally {
      await Promise.all([idle.close(), closing.close(), small.close()]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
