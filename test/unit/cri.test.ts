// The CRI log record header (src/logs/cri.ts): what task-shim writes is read
// back exactly, and anything else is refused rather than misread.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { MAX_HEADER, parseHeader, parseTimestamp, subMillisecondNanos } from '../../src/logs/cri.js';

const bytes = (text: string) => Buffer.from(text, 'latin1');
const header = (record: string) => parseHeader(bytes(record), 0, record.length);
const timestamp = (text: string) => parseTimestamp(bytes(text), 0, text.length);

describe('CRI log records', () => {
  test('a full stdout line and a partial stderr line give their stream, tag, time and where the payload starts', () => {
    assert.deepEqual(header('2026-01-02T03:04:05.123456789Z stdout F hello'), {
      timeMs: Date.UTC(2026, 0, 2, 3, 4, 5, 123),
      stream: 'stdout',
      tag: 'F',
      headerLength: 40,
    });
    const partial = header('2026-01-02T03:04:06.5Z stderr P part');
    assert.deepEqual(partial, { timeMs: Date.UTC(2026, 0, 2, 3, 4, 6, 500), stream: 'stderr', tag: 'P', headerLength: 32 });
  });

  test('an empty payload may come without the space after the tag', () => {
    const record = '2026-01-02T03:04:05.000000000Z stdout F';
    assert.equal(header(record)?.headerLength, record.length);
    assert.equal(header(`${record} `)?.headerLength, record.length + 1);
  });

  test('a record in the middle of a buffer is read from its own start', () => {
    const first = '2026-01-02T03:04:05.100000000Z stdout F one\n';
    const second = '2027-06-07T08:09:10.200000000Z stderr F two';
    const all = bytes(first + second);
    const parsed = parseHeader(all, first.length, all.length);
    assert.equal(parsed?.timeMs, Date.UTC(2027, 5, 7, 8, 9, 10, 200));
    assert.equal(parsed?.stream, 'stderr');
    assert.equal(all.subarray(first.length + (parsed?.headerLength ?? 0)).toString(), 'two');
  });

  test('what is not a record is refused: other streams, tags, timestamps, or a header longer than any record has', () => {
    for (const record of [
      '2026-01-02T03:04:05.1Z stdin F x',
      '2026-01-02T03:04:05.1Z stdoux F x',
      '2026-01-02T03:04:05.1Z stdout X x',
      '2026-01-02T03:04:05.1Z stdout FF x',
      '2026-01-02T03:04:05.1 stdout F x', // no Z
      '2026-01-02 03:04:05.1Z stdout F x', // no T
      '2026-01-02T03:04:05.1aZ stdout F x', // a letter in the fraction
      '2026-01-02T03:04:05,1Z stdout F x', // a comma for the point
      '20x6-01-02T03:04:05.1Z stdout F x',
      `2026-01-02T03:04:05.${'1'.repeat(MAX_HEADER)}Z stdout F x`,
      'no header at all',
      '',
    ]) {
      assert.equal(header(record), undefined, JSON.stringify(record));
    }
  });

  test('timestamps: the fraction is floored to the millisecond and optional; seconds never come from an earlier call', () => {
    assert.equal(timestamp('2026-01-02T03:04:05Z'), Date.UTC(2026, 0, 2, 3, 4, 5));
    assert.equal(timestamp('2026-01-02T03:04:05.9999Z'), Date.UTC(2026, 0, 2, 3, 4, 5, 999));
    assert.equal(timestamp('2026-01-02T03:04:05.05Z'), Date.UTC(2026, 0, 2, 3, 4, 5, 50));
    // The parser caches the last second it saw: the next second, or the same second another day, must not reuse it.
    assert.equal(timestamp('2026-01-02T03:04:06.001Z'), Date.UTC(2026, 0, 2, 3, 4, 6, 1));
    assert.equal(timestamp('2026-01-03T03:04:06.001Z'), Date.UTC(2026, 0, 3, 3, 4, 6, 1));
    assert.ok(Number.isNaN(timestamp('2026-01-02T03:04:0xZ')));
  });

  test('any time written with 9 fractional digits reads back to its millisecond', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Date.UTC(9999, 11, 31) }), fc.integer({ min: 0, max: 999_999 }), (ms, extra) => {
        const text = `${new Date(ms).toISOString().slice(0, 23)}${String(extra).padStart(6, '0')}Z`;
        assert.equal(timestamp(text), ms, text);
      }),
    );
  });

  test('any time written with 9 fractional digits gives back the nanoseconds past its millisecond', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Date.UTC(9999, 11, 31) }), fc.integer({ min: 0, max: 999_999 }), (ms, extra) => {
        const text = `${new Date(ms).toISOString().slice(0, 23)}${String(extra).padStart(6, '0')}Z stdout F x`;
        assert.equal(subMillisecondNanos(bytes(text), 0), extra, text);
      }),
    );
    assert.equal(subMillisecondNanos(bytes('2026-01-02T03:04:05.1234Z'), 0), 400_000, 'missing digits are zeros');
    assert.equal(subMillisecondNanos(bytes('2026-01-02T03:04:05Z'), 0), 0);
  });

  test('without times a header is the same but for timeMs (NaN), and a timestamp out of shape is still refused', () => {
    const record = '2026-01-02T03:04:05.123456789Z stderr P part';
    assert.deepEqual(parseHeader(bytes(record), 0, record.length, false), { ...header(record), timeMs: NaN });
    for (const bad of ['2026-01-02 03:04:05.1Z stdout F x', '2026-01-02T03:04:05.1 stdout F x', '2026/01/02T03:04:05.1Z stdout F x', 'no header at all']) {
      assert.equal(parseHeader(bytes(bad), 0, bad.length, false), undefined, bad);
    }
  });
});
