// Container log rotation (src/runtime/container/log-rotation.ts) against a
// stand-in for the runtime's log writer that behaves as containerd's does: it
// appends through the `container.log` link, ReopenContainerLog opens the link
// again, and the old writer may finish a line it already held after the
// reopen returned. The files are read back with the executor's own log reader.
// (End to end through the executor and a CRI runtime: test/integration/container-logs.test.ts.)
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createLogger } from '../../src/logger.js';
import { BEGINNING, listLogFiles } from '../../src/logs/files.js';
import { LogReader } from '../../src/logs/reader.js';
import { LOG_LINK, PENDING_FILE, prepareLogLink, type RotatedLog, rotateIfDue } from '../../src/runtime/container/log-rotation.js';
import { tempDir } from '../support/executor.js';

const log = createLogger('silent');
const root = tempDir('te-ctr-rotation-');
after(() => rmSync(root, { recursive: true, force: true }));

let dirs = 0;
async function logDir(): Promise<string> {
  const dir = join(root, `logs-${dirs++}`);
  mkdirSync(dir);
  await prepareLogLink(dir);
  return dir;
}

const record = (line: string): string => `2026-01-02T03:04:05.000000000Z stdout F ${line}\n`;

/** The runtime's side: one open file behind the link, as containerd's CRI logger keeps it. */
class Writer {
  fd: number;
  constructor(private readonly dir: string) {
    this.fd = openSync(join(dir, LOG_LINK), 'a');
  }
  write(lines: readonly string[]): void {
    writeSync(this.fd, lines.map(record).join(''));
  }
  /**
   * ReopenContainerLog: the new file first; the old writer ends a moment
   * later (10 ms: a timer that expires before the rotation's first settle
   * step of 25 ms, so it always runs before that) with a line it held (`late`).
   */
  reopen(late?: string): void {
    const old = this.fd;
    this.fd = openSync(join(this.dir, LOG_LINK), 'a');
    setTimeout(() => {
      if (late !== undefined) writeSync(old, record(late));
      closeSync(old);
    }, 10);
  }
  close(): void {
    closeSync(this.fd);
  }
}

function rotated(dir: string, overrides: Partial<RotatedLog> = {}): RotatedLog {
  return { directory: dir, containerId: () => 'c1', maxFileSizeBytes: 1024, maxFiles: 3, ...overrides };
}

/** Everything the reader hands out until it has caught up. */
async function drain(reader: LogReader): Promise<string[]> {
  const lines: string[] = [];
  for (;;) {
    const batch = await reader.read();
    if (!batch) return lines;
    assert.equal(batch.gap, false, 'the reader reports lost output');
    for (const r of batch.records) lines.push(r.payload.toString());
  }
}

const numbered = (from: number, count: number, width = 40): string[] =>
  Array.from({ length: count }, (_, i) => `line ${String(from + i).padStart(6, '0')} ${'x'.repeat(width)}`);

describe('container log rotation', () => {
  test('a new container writes through container.log to output.0.log; an earlier run’s files come first', async () => {
    const dir = await logDir();
    assert.equal(readlinkSync(join(dir, LOG_LINK)), 'output.0.log');
    writeFileSync(join(dir, 'output.3.log'), record('old run'));
    await prepareLogLink(dir);
    assert.equal(readlinkSync(join(dir, LOG_LINK)), 'output.4.log');
  });

  test('a log under its size limit is left alone; a directory without the link (an older container) is not rotated', async () => {
    const dir = await logDir();
    const writer = new Writer(dir);
    writer.write(['short']);
    const reopen = async () => assert.fail('no reopen expected');
    assert.equal(await rotateIfDue(rotated(dir), { reopen, log }), 'not-due');
    writer.close();
    const legacy = join(root, 'legacy');
    mkdirSync(legacy);
    writeFileSync(join(legacy, 'output.0.log'), record('x'.repeat(4096)));
    assert.equal(await rotateIfDue(rotated(legacy), { reopen, log }), 'not-rotatable');
    assert.deepEqual(readdirSync(legacy), ['output.0.log']);
  });

  test('a log over its size moves on to the next file; a follower gets every line once and in order, including the one the old writer finished after the reopen', async () => {
    const dir = await logDir();
    const writer = new Writer(dir);
    const reader = new LogReader(dir, BEGINNING);
    const first = numbered(0, 30);
    writer.write(first);
    assert.deepEqual(await drain(reader), first, 'the follower has caught up before the rotation');
    assert.ok(statSync(join(dir, 'output.0.log')).size >= 1024);

    const reopened: string[] = [];
    const outcome = await rotateIfDue(rotated(dir), {
      reopen: async (id) => {
        reopened.push(id);
        writer.reopen('held by the old writer');
        writer.write(['written after the reopen']);
      },
      log,
    });
    assert.equal(outcome, 'rotated');
    assert.deepEqual(reopened, ['c1']);
    assert.equal(readlinkSync(join(dir, LOG_LINK)), 'output.1.log');
    assert.equal(existsSync(join(dir, PENDING_FILE)), false);
    writer.write(['and on']);
    assert.deepEqual(await drain(reader), ['held by the old writer', 'written after the reopen', 'and on']);
    assert.deepEqual(await listLogFiles(dir), [0, 1]);
    await reader.close();
    writer.close();
  });

  test('rotation keeps at most maxFiles files, deleting the oldest; what remains reads back in order', async () => {
    const dir = await logDir();
    const writer = new Writer(dir);
    const reopen = async () => writer.reopen();
    const written: string[] = [];
    for (let round = 0; round < 6; round++) {
      const lines = numbered(round * 30, 30);
      writer.write(lines);
      written.push(...lines);
      assert.equal(await rotateIfDue(rotated(dir), { reopen, log }), 'rotated');
      assert.ok((await listLogFiles(dir)).length <= 3, `round ${round}: ${readdirSync(dir).join(' ')}`);
    }
    assert.deepEqual(await listLogFiles(dir), [4, 5, 6]);
    const kept = await drain(new LogReader(dir, BEGINNING));
    // Files 4 and 5 hold the last two rounds; 6 (being written) is empty.
    assert.deepEqual(kept, written.slice(-60));
    writer.close();
  });

  test('a reopen the runtime refuses (the container exited) leaves the log where it was, and a later check rotates it', async () => {
    const dir = await logDir();
    const writer = new Writer(dir);
    writer.write(numbered(0, 30));
    const refused = async () => {
      throw new Error('container is not running');
    };
    assert.equal(await rotateIfDue(rotated(dir), { reopen: refused, log }), 'reopen-failed');
    assert.equal(readlinkSync(join(dir, LOG_LINK)), 'output.0.log');
    assert.equal(existsSync(join(dir, PENDING_FILE)), false);
    assert.deepEqual(await listLogFiles(dir), [0]);
    // Still running after all (e.g. the runtime was briefly unreachable): the next check rotates.
    assert.equal(await rotateIfDue(rotated(dir), { reopen: async () => writer.reopen(), log }), 'rotated');
    assert.deepEqual(await listLogFiles(dir), [0, 1]);
    writer.close();
  });

  test('a reopen the runtime did although the call failed (its deadline passed) is completed', async () => {
    const dir = await logDir();
    const writer = new Writer(dir);
    writer.write(numbered(0, 30));
    const outcome = await rotateIfDue(rotated(dir), {
      reopen: async () => {
        writer.reopen();
        writer.write(['after the late reopen']);
        throw new Error('deadline exceeded');
      },
      log,
    });
    assert.equal(outcome, 'rotated');
    assert.equal(readlinkSync(join(dir, LOG_LINK)), 'output.1.log');
    assert.deepEqual(await drain(new LogReader(dir, { index: 1, offset: 0 })), ['after the late reopen']);
    writer.close();
  });

  test('a rotation interrupted after the link was pointed aside is finished by the next check', async () => {
    // The runtime reopened into the pending file, then the executor died.
    const dir = await logDir();
    writeFileSync(join(dir, 'output.0.log'), record('before'));
    writeFileSync(join(dir, PENDING_FILE), record('after'));
    rmSync(join(dir, LOG_LINK));
    symlinkSync(PENDING_FILE, join(dir, LOG_LINK));
    const reopen = async () => assert.fail('no reopen expected');
    assert.equal(await rotateIfDue(rotated(dir), { reopen, log }), 'rotated');
    assert.equal(readlinkSync(join(dir, LOG_LINK)), 'output.1.log');
    assert.deepEqual(await drain(new LogReader(dir, BEGINNING)), ['before', 'after']);

    // It died before the reopen: the runtime still writes to the highest file, so the link goes back to it.
    const early = await logDir();
    writeFileSync(join(early, 'output.0.log'), record('before'));
    rmSync(join(early, LOG_LINK));
    symlinkSync(PENDING_FILE, join(early, LOG_LINK));
    assert.equal(await rotateIfDue(rotated(early), { reopen, log }), 'not-due');
    assert.equal(readlinkSync(join(early, LOG_LINK)), 'output.0.log');
  });
});
