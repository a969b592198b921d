import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { LogsResponse, LogStream } from '../../gen/taskexecutor/v1/task_executor_service.js';
import type { LogLine } from '../../src/logs/lines.js';
import { LogReader } from '../../src/logs/reader.js';
import { DEFAULT_TIMINGS, streamLogs, type TaskLiveness } from '../../src/logs/stream-logs.js';
import { EncodedLogsResponse, encodeBatch, toLogEntry } from '../../src/api/log-entries.js';
import { TaskExecutorClient } from '../../src/client/index.js';
import { processTask, shell, startTestExecutor, terminated, type TestExecutor } from '../support/executor.js';
import { fileLines, logFiles, logsDir, outputComplete } from '../support/log-files.js';
import { bytesOf, linesOf, openLogs, readLogs, texts } from '../support/logs-rpc.js';
import { waitFor } from '../support/wait.js';

const { LOG_STREAM_UNSPECIFIED: BOTH, LOG_STREAM_STDOUT: STDOUT, LOG_STREAM_STDERR: STDERR } = LogStream;

function grpcError(error: ServiceError | undefined, code: status, pattern: RegExp) {
  assert.ok(error, `expected ${status[code]}, the stream ended OK`);
  assert.equal(error.code, code, `expected ${status[code]}, got ${status[error.code]}: ${error.details}`);
  assert.match(error.details, pattern);
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const f of readdirSync(dir)) {
    try {
      total += statSync(join(dir, f)).size;
    } catch {
      // deleted by rotation meanwhile
    }
  }
  return total;
}

describe('Logs over gRPC', () => {
  let te: TestExecutor;
  let scratch: string;
  before(async () => {
    te = await startTestExecutor();
    scratch = mkdtempSync(join(tmpdir(), 'te-logs-'));
  });
  after(async () => {
    await te.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  const finished = (name: string) => outputComplete(te, name);
  /** A file the test creates to let a task go on (tasks wait for it; no fixed sleeps). */
  const gate = (name: string) => join(scratch, `${name}.go`);
  const waitGate = (name: string) => `while [ ! -e ${gate(name)} ]; do sleep 0.01; done`;

  test('both streams come interleaved in write order, each message labelled with its stream', async () => {
    await te.api.createTask({ task: shell('both', 'for i in 1 2 3 4 5 6; do echo out$i; echo err$i >&2; done') });
    await finished('both');
    const messages = await readLogs(te, { name: 'both' });
    const lines = linesOf(messages);
    assert.deepEqual(lines, fileLines(logsDir(te, 'both')), 'RPC order = order in the log files');
    assert.equal(lines.length, 12);
    for (const line of lines) assert.equal(line.stream, line.text.startsWith('out') ? STDOUT : STDERR, line.text);
    assert.deepEqual(lines.filter((l) => l.stream === STDOUT).map((l) => l.text), ['out1', 'out2', 'out3', 'out4', 'out5', 'out6']);
    assert.ok(messages.every((m) => m.content?.$case === 'text' && !m.partial && m.time === undefined));
  });

  test('stream STDOUT or STDERR selects that stream only', async () => {
    await te.api.createTask({ task: shell('pick', 'for i in 1 2 3; do echo out$i; echo err$i >&2; done') });
    await finished('pick');
    const out = await readLogs(te, { name: 'pick', stream: STDOUT });
    assert.deepEqual(texts(out), ['out1', 'out2', 'out3']);
    assert.ok(out.every((m) => m.stream === STDOUT));
    const err = await readLogs(te, { name: 'pick', stream: STDERR });
    assert.deepEqual(texts(err), ['err1', 'err2', 'err3']);
    assert.ok(err.every((m) => m.stream === STDERR));
  });

  test('tailLines gives the last N lines of the selected streams, across rotated files', async () => {
    const script = 'i=1; while [ $i -le 400 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done';
    await te.api.createTask({ task: processTask('tail', ['sh', '-c', script], {}, { logs: { maxFileSizeBytes: 1024, maxFiles: 50 } }) });
    await finished('tail');
    const dir = logsDir(te, 'tail');
    assert.ok(logFiles(dir).length >= 20, `expected many rotated files, got ${logFiles(dir).length}`);
    assert.equal(fileLines(dir).length, 800, 'rotation kept every file');
    const seq = (prefix: string, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => `${prefix} ${from + k}`);

    assert.deepEqual(texts(await readLogs(te, { name: 'tail', stream: STDOUT, tailLines: 5 })), seq('out', 396, 400));
    assert.deepEqual(texts(await readLogs(te, { name: 'tail', stream: STDERR, tailLines: 150 })), seq('err', 251, 400));
    assert.deepEqual(texts(await readLogs(te, { name: 'tail', stream: STDOUT, tailLines: 100_000 })), seq('out', 1, 400));
    assert.deepEqual(await readLogs(te, { name: 'tail', tailLines: 0 }), []);
    const both = linesOf(await readLogs(te, { name: 'tail', tailLines: 7 }));
    assert.deepEqual(both, fileLines(dir).slice(-7));
  });

  test('follow streams new lines across dozens of rotations without losing or repeating any', async () => {
    const n = 6000;
    // Each line is two writes (number, then newline), so the supervisor often
    // logs a P record and its F separately; every 1000th line is 20 KB, longer
    // than one record, so it is always split into P records.
    const long = 'y'.repeat(20_000);
    const expected = Array.from({ length: n }, (_, k) => ((k + 1) % 1000 === 0 ? `${k + 1}:${long}` : String(k + 1)));
    const script =
      `echo ready; ${waitGate('rot')}; i=1; while [ $i -le ${n} ]; do ` +
      `if [ $((i % 1000)) -eq 0 ]; then printf '%s:' $i; head -c 20000 /dev/zero | tr '\\0' y; else printf %s $i; fi; ` +
      `echo; i=$((i+1)); done`;
    await te.api.createTask({ task: processTask('rot', ['sh', '-c', script], {}, { logs: { maxFileSizeBytes: 1024, maxFiles: 1000 } }) });
    const { done } = openLogs(te, { name: 'rot', follow: true }, (m) => {
      if (m.content?.$case === 'text' && m.content.value === 'ready') writeFileSync(gate('rot'), '');
    });
    const { messages, error } = await done;
    assert.equal(error, undefined, error?.details);
    const lines = texts(messages);
    assert.equal(lines[0], 'ready');
    assert.equal(lines.length, n + 1);
    const wrong = lines.slice(1).findIndex((line, k) => line !== expected[k]);
    assert.equal(wrong, -1, `line ${wrong + 1} is ${lines[wrong + 1]?.slice(0, 40)}`);
    const dir = logsDir(te, 'rot');
    assert.ok(logFiles(dir).length >= 50, `expected dozens of rotated files, got ${logFiles(dir).length}`);
    assert.ok(logFiles(dir).some((f) => readFileSync(join(dir, f), 'utf8').includes(' stdout P ')), 'lines were split into P records');
  });

  test('a task writing fast keeps its logs within maxFiles × maxFileSize on disk, and a follower keeps up or skips ahead', async () => {
    const maxFile = 4096;
    const bound = 3 * maxFile; // byte-accurate: a record that does not fit is split across files
    const script = `${waitGate('disk')}; for i in $(seq 1 20); do yes "$(printf '%0100d' $i)" | head -n 1500; done`;
    await te.api.createTask({ task: processTask('disk', ['sh', '-c', script], {}, { logs: { maxFileSizeBytes: maxFile, maxFiles: 3 } }) });
    const follower = openLogs(te, { name: 'disk', follow: true });
    await waitFor('the logs dir', () => existsSync(logsDir(te, 'disk')));
    writeFileSync(gate('disk'), '');
    const samples: number[] = [];
    while (!terminated((await te.api.getTask({ name: 'disk' })).task)) {
      samples.push(dirBytes(logsDir(te, 'disk')));
      await new Promise((resolve) => setImmediate(resolve));
    }
    samples.push(dirBytes(logsDir(te, 'disk')));
    assert.ok(samples.length >= 3, `sampled ${samples.length} times`);
    assert.ok(Math.max(...samples) <= bound, `logs dir grew to ${Math.max(...samples)} bytes (bound ${bound})`);
    assert.ok(logFiles(logsDir(te, 'disk')).length <= 3);

    const { messages, error } = await follower.done;
    assert.equal(error, undefined, error?.details);
    const lines = texts(messages);
    assert.ok(lines.length > 0);
    // What the follower missed was skipped: never invented, and never glued to
    // another line (a line cut by a gap may arrive as a shorter piece).
    for (const line of lines) assert.match(line, /^\d{1,100}$/);
    assert.ok(lines.filter((l) => l.length === 100).length > lines.length / 2, 'most lines arrive whole');
    assert.equal(lines.at(-1), '0'.repeat(98) + '20');
  });

  test('a line longer than a whole log file is split across files, stays within the cap and reads back whole', async () => {
    const long = 'L'.repeat(1500) + 'M'.repeat(1500);
    await te.api.createTask({
      task: shell('split', `printf '%s\\n' short ${long} end`, {}, { logs: { maxFileSizeBytes: 1024, maxFiles: 4 } }),
    });
    await finished('split');
    const files = logFiles(logsDir(te, 'split'));
    const sizes = files.map((f) => statSync(join(logsDir(te, 'split'), f)).size);
    assert.ok(files.length >= 3 && files.length <= 4, `files ${files}`);
    assert.ok(sizes.every((size) => size <= 1024), `file sizes ${sizes}`);
    assert.ok(dirBytes(logsDir(te, 'split')) <= 4 * 1024);
    assert.deepEqual(texts(await readLogs(te, { name: 'split' })), ['short', long, 'end']);
    assert.deepEqual(texts(await readLogs(te, { name: 'split', tailLines: 2 })), [long, 'end']);
  });

  test('follow ends with OK once the task has ended and its last output was sent', async () => {
    await te.api.createTask({ task: shell('ends', `echo first; ${waitGate('ends')}; echo last`) });
    const { done } = openLogs(te, { name: 'ends', follow: true }, (m) => {
      if (m.content?.$case === 'text' && m.content.value === 'first') writeFileSync(gate('ends'), '');
    });
    const { messages, error } = await done;
    assert.equal(error, undefined, error?.details);
    assert.deepEqual(texts(messages), ['first', 'last']);
  });

  test('tailLines with follow sends the last lines, then new output', async () => {
    await te.api.createTask({ task: shell('tailf', `echo old1; echo old2; ${waitGate('tailf')}; echo new`) });
    await waitFor('the old lines', () => existsSync(logsDir(te, 'tailf')) && fileLines(logsDir(te, 'tailf')).length === 2);
    const { done } = openLogs(te, { name: 'tailf', tailLines: 1, follow: true }, (m) => {
      if (m.content?.$case === 'text' && m.content.value === 'old2') writeFileSync(gate('tailf'), '');
    });
    const { messages, error } = await done;
    assert.equal(error, undefined, error?.details);
    assert.deepEqual(texts(messages), ['old2', 'new']);
  });

  test('while following, a line still being written is sent as a partial piece and then completed', async () => {
    await te.api.createTask({ task: shell('prompt', `printf 'name? '; ${waitGate('prompt')}; echo bob`) });
    const { done } = openLogs(te, { name: 'prompt', follow: true }, (m) => {
      if (m.partial) writeFileSync(gate('prompt'), '');
    });
    const { messages, error } = await done;
    assert.equal(error, undefined, error?.details);
    assert.deepEqual(
      messages.map((m) => [bytesOf(m).toString(), m.partial]),
      [
        ['name? ', true],
        ['bob', false],
      ],
    );
    assert.deepEqual(texts(messages), ['name? bob']);
  });

  test('following a task that gets deleted ends with NOT_FOUND after the output read so far', async () => {
    await te.api.createTask({ task: shell('doomed', 'echo before; exec sleep 60') });
    const { done } = openLogs(te, { name: 'doomed', follow: true }, (m) => {
      if (m.content?.$case === 'text' && m.content.value === 'before') void te.api.deleteTask({ name: 'doomed' });
    });
    const { messages, error } = await done;
    grpcError(error, status.NOT_FOUND, /task "doomed" was deleted while its logs were followed/);
    assert.deepEqual(texts(messages), ['before']);
  });

  test('sinceTime and sinceSeconds keep lines written at or after that time; both together is INVALID_ARGUMENT', async () => {
    await te.api.createTask({ task: shell('since', `echo early; echo early-err >&2; ${waitGate('since')}; echo late`) });
    await waitFor('the early line', () => existsSync(logsDir(te, 'since')) && fileLines(logsDir(te, 'since')).length === 2);
    const cut = new Date(Date.now() + 2);
    await waitFor('the clock to pass the cut', () => Date.now() > cut.getTime());
    writeFileSync(gate('since'), '');
    await finished('since');

    assert.deepEqual(texts(await readLogs(te, { name: 'since', sinceTime: cut })), ['late']);
    assert.deepEqual(texts(await readLogs(te, { name: 'since', sinceTime: new Date(0) })).sort(), ['early', 'early-err', 'late']);
    assert.deepEqual(await readLogs(te, { name: 'since', sinceTime: new Date(Date.now() + 60_000) }), []);
    assert.deepEqual(texts(await readLogs(te, { name: 'since', sinceSeconds: 3600, stream: STDOUT })), ['early', 'late']);
    assert.deepEqual(await readLogs(te, { name: 'since', sinceSeconds: 0 }), []);

    const { error } = await openLogs(te, { name: 'since', sinceTime: new Date(0), sinceSeconds: 10 }).done;
    grpcError(error, status.INVALID_ARGUMENT, /sinceTime and sinceSeconds are mutually exclusive/);
  });

  test('negative tailLines, limitBytes or sinceSeconds and an unknown stream are INVALID_ARGUMENT naming the field', async () => {
    await te.api.createTask({ task: shell('args', 'echo x') });
    for (const [field, pattern] of [
      ['tailLines', /tailLines must not be negative .*got -1/],
      ['limitBytes', /limitBytes must not be negative .*got -1/],
      ['sinceSeconds', /sinceSeconds must not be negative .*got -1/],
    ] as const) {
      const { error, messages } = await openLogs(te, { name: 'args', [field]: -1 }).done;
      grpcError(error, status.INVALID_ARGUMENT, pattern);
      assert.equal(messages.length, 0);
    }
    const { error } = await openLogs(te, { name: 'args', stream: 7 as LogStream }).done;
    grpcError(error, status.INVALID_ARGUMENT, /stream 7 is not a LogStream/);
  });

  test('timestamps fills each message with the time it was written, and only when asked', async () => {
    const start = Date.now();
    await te.api.createTask({ task: shell('stamps', 'echo one; echo two >&2') });
    await finished('stamps');
    const end = Date.now();
    const stamped = await readLogs(te, { name: 'stamps', timestamps: true });
    assert.equal(stamped.length, 2);
    for (const m of stamped) {
      assert.ok(m.time instanceof Date, 'time is set');
      assert.ok(m.time.getTime() >= start - 1 && m.time.getTime() <= end, `${m.time.toISOString()} within the run`);
    }
    const plain = await readLogs(te, { name: 'stamps', timestamps: false });
    assert.equal(plain.length, 2);
    assert.ok(plain.every((m) => m.time === undefined));
  });

  test('limitBytes stops after that many bytes of output, cutting the last line', async () => {
    await te.api.createTask({ task: shell('limit', 'echo 0123456789; echo abcdefghij; echo KLMNOPQRST') });
    await finished('limit');
    const messages = await readLogs(te, { name: 'limit', limitBytes: 15 });
    assert.deepEqual(
      messages.map((m) => [bytesOf(m).toString(), m.partial]),
      [
        ['0123456789', false],
        ['abcde', true],
      ],
    );
    assert.deepEqual(texts(await readLogs(te, { name: 'limit', limitBytes: 20 })), ['0123456789', 'abcdefghij']);
    assert.deepEqual(await readLogs(te, { name: 'limit', limitBytes: 0 }), []);
    assert.deepEqual(texts(await readLogs(te, { name: 'limit', limitBytes: 10, tailLines: 1 })), ['KLMNOPQRST']);
  });

  test('a 200 KB line without a newline until its end arrives in partial pieces that reassemble exactly', async () => {
    const size = 200_000;
    await te.api.createTask({ task: shell('huge', `head -c ${size} /dev/zero | tr '\\0' 'a'; echo; echo after`) });
    await finished('huge');
    for (const follow of [false, true]) {
      const messages = await readLogs(te, { name: 'huge', follow });
      assert.ok(messages.length >= 4, `${messages.length} messages`);
      assert.ok(messages.every((m) => bytesOf(m).length <= 64 * 1024), 'pieces are bounded');
      assert.ok(messages.slice(0, -2).every((m) => m.partial));
      assert.deepEqual(texts(messages), ['a'.repeat(size), 'after']);
    }
  });

  test('binary output that is not UTF-8 arrives byte-exact as data', async () => {
    const bytes = Array.from({ length: 256 }, (_, b) => b).filter((b) => b !== 10);
    const octal = bytes.map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('');
    await te.api.createTask({ task: processTask('binary', ['sh', '-c', `printf '${octal}\\n'; echo plain`]) });
    await finished('binary');
    const messages = await readLogs(te, { name: 'binary' });
    assert.equal(messages.length, 2);
    assert.equal(messages[0]!.content?.$case, 'data');
    assert.deepEqual([...bytesOf(messages[0]!)], bytes);
    assert.deepEqual(messages[1]!.content, { $case: 'text', value: 'plain' });
  });

  test('batch packs the lines into few messages of entries: the same lines, pieces, bytes and times as one message per line', async () => {
    // 3000 lines on both streams, a 200 KB line (partial pieces), a line that is not UTF-8, multi-byte text, an empty line.
    const script =
      `i=1; while [ $i -le 1500 ]; do echo "out $i ${'x'.repeat(80)}"; echo "err $i" >&2; i=$((i+1)); done; ` +
      `head -c 200000 /dev/zero | tr '\\0' a; echo; printf '\\377\\376 not utf-8\\n'; echo 'grüße ✓'; echo`;
    await te.api.createTask({ task: shell('batched', script) });
    await finished('batched');
    for (const timestamps of [false, true]) {
      const single = await readLogs(te, { name: 'batched', timestamps });
      const batched = await readLogs(te, { name: 'batched', timestamps, batch: true });
      assert.ok(single.every((m) => m.entries.length === 0), 'without batch, entries stay empty');
      const entries = batched.flatMap((m) => m.entries);
      assert.deepEqual(entries, single.map(({ entries: _, chunk: __, ...line }) => line), 'the same lines in the same order');
      assert.ok(batched.every((m) => m.entries.length > 0 && m.content === undefined && m.stream === BOTH && !m.partial && m.time === undefined));
      assert.ok(batched.length * 20 < single.length, `${batched.length} batched messages for ${single.length} lines`);
      const outputBytes = (m: LogsResponse) => m.entries.reduce((sum, e) => sum + (e.content?.value.length ?? 0), 0);
      assert.ok(batched.every((m) => outputBytes(m) < 64 * 1024 + 64 * 1024), 'messages are bounded');
    }
    const lines = texts(await readLogs(te, { name: 'batched', batch: true, tailLines: 3 }).then((ms) => ms.flatMap((m) => m.entries.map((e) => ({ ...e, entries: [] })))));
    assert.deepEqual(lines, ['\ufffd\ufffd not utf-8', 'grüße ✓', '']);
  });

  test('the task-executor/client reads batched logs as the same entries as the generated client, text, data, pieces and times', async () => {
    const script = `i=1; while [ $i -le 2000 ]; do echo "line $i ✓"; echo "err $i" >&2; i=$((i+1)); done; head -c 100000 /dev/zero | tr '\\0' a; echo; printf '\\377 raw\\n'`;
    await te.api.createTask({ task: shell('client-batch', script) });
    await finished('client-batch');
    const client = new TaskExecutorClient(te.executor.address);
    try {
      for (const timestamps of [false, true]) {
        const expected = await readLogs(te, { name: 'client-batch', batch: true, timestamps });
        const got: LogsResponse[] = [];
        for await (const message of client.logs({ name: 'client-batch', batch: true, timestamps })) got.push(message);
        assert.deepEqual(got, expected);
        assert.ok(got.flatMap((m) => m.entries).some((e) => e.content?.$case === 'data'), 'the raw line is data');
      }
    } finally {
      client.close();
    }
  });

  test('a batched follower gets each line as soon as it is written, not once a batch has filled up', async () => {
    await te.api.createTask({ task: shell('batch-follow', `echo first; ${waitGate('batch-follow')}; echo second`) });
    const { done } = openLogs(te, { name: 'batch-follow', follow: true, batch: true }, (m) => {
      if (m.entries.some((e) => e.content?.$case === 'text' && e.content.value === 'first')) writeFileSync(gate('batch-follow'), '');
    });
    const { messages, error } = await done;
    assert.equal(error, undefined, error?.details);
    assert.deepEqual(
      messages.flatMap((m) => m.entries.map((e) => e.content?.value)),
      ['first', 'second'],
    );
  });

  test('a paused client does not make the executor buffer output in memory; after resuming the stream goes on', async () => {
    const lineBytes = 4000;
    const lines = 12_500; // 50 MB
    const script =
      `yes "$(head -c ${lineBytes - 1} /dev/zero | tr '\\0' x)" | head -n ${lines}; ` +
      `touch ${gate('slow')}.written; ${waitGate('slow')}; echo done-after-resume`;
    // Rotation keeps all of it, so an executor that ignored flow control would read and buffer every byte.
    await te.api.createTask({ task: processTask('slow', ['sh', '-c', script], {}, { logs: { maxFileSizeBytes: 8 << 20, maxFiles: 10 } }) });
    const baseline = process.memoryUsage().rss;
    let paused = false;
    const { call, done } = openLogs(te, { name: 'slow', follow: true }, (_m, c) => {
      if (!paused) {
        paused = true;
        c.pause();
      }
    });
    let peak = baseline;
    const sample = () => {
      peak = Math.max(peak, process.memoryUsage().rss);
    };
    await waitFor(
      'the task to write 50 MB',
      () => {
        sample();
        return existsSync(`${gate('slow')}.written`);
      },
      { timeoutMs: 30_000, intervalMs: 10 },
    );
    // Keep measuring while still paused: an executor that ignored flow control
    // would now be reading (and buffering) what the task wrote.
    const until = Date.now() + 2000;
    await waitFor(
      'the measuring window to pass',
      () => {
        sample();
        return Date.now() > until;
      },
      { timeoutMs: 5000, intervalMs: 10 },
    );
    assert.ok(paused, 'the client got data and paused');
    // With flow control the executor holds about one read buffer (growth here
    // is ~1 MiB); one that buffered what the task wrote grows by ~70 MiB.
    const growth = (peak - baseline) / 2 ** 20;
    assert.ok(growth < 40, `rss grew by ${growth.toFixed(1)} MiB while the client was paused`);

    call.resume();
    writeFileSync(gate('slow'), '');
    const { messages, error } = await done;
    assert.equal(error, undefined, error?.details);
    const got = texts(messages);
    assert.equal(got.at(-1), 'done-after-resume');
    assert.equal(got.length, lines + 1);
    assert.ok(got.slice(0, -1).every((l) => l === 'x'.repeat(lineBytes - 1)), 'every line arrived whole');
  });

  test('cancelled follow streams leave no open files, watchers or timers behind', async () => {
    await te.api.createTask({ task: shell('cancel', 'echo hello; exec sleep 60') });
    const openAndCancel = async (count: number) => {
      const calls = Array.from({ length: count }, () => {
        let first!: () => void;
        const got = new Promise<void>((resolve) => (first = resolve));
        const opened = openLogs(te, { name: 'cancel', follow: true }, () => first());
        return { ...opened, got };
      });
      await Promise.all(calls.map((c) => c.got));
      for (const c of calls) c.call.cancel();
      for (const c of calls) grpcError((await c.done).error, status.CANCELLED, /Cancelled/);
    };
    // Followers watch the task's log directory; the executor also watches the task's own directory for its
    // exit record, from a moment after Create answered, so only watches of the log directory are counted.
    const logsInode = `ino:${statSync(join(te.dataDir, 'cancel', 'logs')).ino.toString(16)} `;
    /** Open fds, inotify watches (fs.watch) of the log directory and pending timers of this process, which hosts the executor. */
    const resources = () => {
      let watches = 0;
      for (const fd of readdirSync('/proc/self/fdinfo')) {
        try {
          const lines = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').split('\n');
          watches += lines.filter((l) => l.startsWith('inotify wd:') && l.includes(logsInode)).length;
        } catch {
          // closed meanwhile
        }
      }
      const timers = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      return { fds: readdirSync('/proc/self/fd').length, watches, timers };
    };
    const watchesBefore = resources().watches;
    await openAndCancel(1); // warms up what is created once (e.g. the inotify descriptor)
    const base = { ...resources(), watches: watchesBefore };
    await openAndCancel(40);
    await waitFor('fds, watchers and timers to be released', () => {
      const now = resources();
      return now.fds <= base.fds && now.watches <= base.watches && now.timers <= base.timers;
    });
    await te.api.deleteTask({ name: 'cancel' });
  });

  test('an unknown task is NOT_FOUND and a malformed name INVALID_ARGUMENT', async () => {
    grpcError((await openLogs(te, { name: 'no-such-task' }).done).error, status.NOT_FOUND, /task "no-such-task" not found/);
    grpcError((await openLogs(te, { name: 'no-such-task', follow: true }).done).error, status.NOT_FOUND, /not found/);
    grpcError((await openLogs(te, { name: 'Bad_Name' }).done).error, status.INVALID_ARGUMENT, /name/);
  });
});

// The reader and line logic on hand-written log files: cases the shim never produces.
describe('log files read directly', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'te-logfiles-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const ts = (s: number) => `2026-01-01T00:00:${String(s).padStart(2, '0')}.000000000Z`;
  const record = (s: number, stream: string, tag: string, payload: string | Buffer) =>
    Buffer.concat([Buffer.from(`${ts(s)} ${stream} ${tag} `), Buffer.from(payload), Buffer.from('\n')]);
  const fresh = (name: string) => mkdtempSync(join(dir, `${name}-`));
  const never: TaskLiveness = { status: () => 'ended', onChange: () => () => {} };
  async function collect(directory: string, query: { tailLines?: number; sinceMs?: number; streams?: ('stdout' | 'stderr')[] } = {}) {
    const lines: LogLine[] = [];
    const stream = streamLogs(
      { directory, streams: query.streams ?? ['stdout', 'stderr'], follow: false, tailLines: query.tailLines, sinceMs: query.sinceMs },
      never,
      new AbortController().signal,
    );
    let next;
    while (!(next = await stream.next()).done) for (const line of next.value) lines.push({ ...line, bytes: Buffer.from(line.bytes) });
    assert.equal(next.value, 'complete');
    return lines.map((l) => `${l.stream}${l.partial ? '~' : ':'}${l.bytes.toString()}`);
  }

  test('a record still being written is held back until its newline arrives', async () => {
    const d = fresh('incomplete');
    const file = join(d, 'output.0.log');
    writeFileSync(file, Buffer.concat([record(1, 'stdout', 'F', 'one'), Buffer.from(`${ts(2)} stdout F tw`)]));
    const reader = new LogReader(d, { index: -1, offset: 0 });
    const first = await reader.read();
    assert.deepEqual(first?.records.map((r) => r.payload.toString()), ['one']);
    assert.equal(await reader.read(), undefined, 'nothing complete yet');
    appendFileSync(file, 'o\n');
    assert.deepEqual((await reader.read())?.records.map((r) => r.payload.toString()), ['two']);
    await reader.close();
  });

  test('a record longer than the read buffer is handed out in bounded pieces', async () => {
    const d = fresh('long');
    const payload = Buffer.alloc(1_000_000, 'z');
    writeFileSync(join(d, 'output.0.log'), Buffer.concat([record(1, 'stderr', 'F', payload), record(2, 'stdout', 'F', 'next')]));
    const reader = new LogReader(d, { index: -1, offset: 0 }, { bufferSize: 64 * 1024, maxPayload: 16 * 1024 });
    const pieces: Buffer[] = [];
    let tags = '';
    for (let batch = await reader.read(); batch; batch = await reader.read()) {
      for (const r of batch.records) {
        assert.ok(r.payload.length <= 16 * 1024);
        if (r.stream === 'stderr') pieces.push(Buffer.from(r.payload));
        tags += r.tag;
      }
    }
    await reader.close();
    assert.ok(Buffer.concat(pieces).equals(payload));
    assert.match(tags, /^P+FF$/);
  });

  test('a reader that fell behind rotation goes on with the lowest existing file and reports the gap', async () => {
    const d = fresh('gap');
    writeFileSync(join(d, 'output.3.log'), record(1, 'stdout', 'F', 'three'));
    const reader = new LogReader(d, { index: 3, offset: 0 });
    assert.deepEqual((await reader.read())?.records.map((r) => r.payload.toString()), ['three']);
    writeFileSync(join(d, 'output.7.log'), record(2, 'stdout', 'F', 'seven'));
    const batch = await reader.read();
    assert.equal(batch?.gap, true);
    assert.deepEqual(batch?.records.map((r) => r.payload.toString()), ['seven']);
    assert.equal(await reader.read(), undefined);
    await reader.close();
  });

  test('a log file removed and created again under the same name is followed to the new file', async () => {
    const d = fresh('recreated');
    const file = join(d, 'output.0.log');
    writeFileSync(file, record(1, 'stdout', 'F', 'first run'));
    const reader = new LogReader(d, { index: -1, offset: 0 });
    assert.deepEqual((await reader.read())?.records.map((r) => r.payload.toString()), ['first run']);
    assert.equal(await reader.read(), undefined);
    rmSync(file);
    writeFileSync(file, record(2, 'stdout', 'F', 'second run'));
    const batch = await reader.read();
    assert.deepEqual(batch?.records.map((r) => r.payload.toString()), ['second run']);
    assert.equal(batch?.gap, false);
    await reader.close();
  });

  test('a batch encoded straight from the line bytes is byte for byte what the generated encoder makes of the same entries', () => {
    const lines: LogLine[] = [
      { stream: 'stdout', bytes: Buffer.from('plain'), partial: false, timeMs: Date.parse('2026-01-01T00:00:01.250Z') },
      { stream: 'stderr', bytes: Buffer.from('grüße ✓ '.repeat(40)), partial: true, timeMs: Date.parse('2026-01-01T00:00:02Z') },
      { stream: 'stdout', bytes: Buffer.from([0xff, 0xfe, 0x41, 0xe2, 0x9c]), partial: false, timeMs: 999 },
      { stream: 'stderr', bytes: Buffer.alloc(0), partial: false, timeMs: 0 },
      { stream: 'stdout', bytes: Buffer.alloc(70_000, 'z'), partial: true, timeMs: 2 ** 41 + 7 },
    ];
    for (const timestamps of [false, true]) {
      const generic = LogsResponse.encode(LogsResponse.fromPartial({ entries: lines.map((line) => toLogEntry(line, timestamps)) })).finish();
      assert.ok(encodeBatch(lines, timestamps).equals(generic), `timestamps: ${timestamps}`);
    }
    assert.deepEqual(new EncodedLogsResponse(lines, true).entries, lines.map((line) => toLogEntry(line, true)), 'its entries read back');
  });

  test('a follower is woken by the write itself: it needs no polling to see a new line', async () => {
    const d = fresh('wake');
    const file = join(d, 'output.0.log');
    writeFileSync(file, record(1, 'stdout', 'F', 'before'));
    const controller = new AbortController();
    const active: TaskLiveness = { status: () => 'active', onChange: () => () => {} };
    // A poll interval far beyond the test's deadline: only a change notification can wake the follower.
    const stream = streamLogs({ directory: d, streams: ['stdout'], follow: true }, active, controller.signal, { ...DEFAULT_TIMINGS, pollMs: 3_600_000 });
    const first = await stream.next();
    assert.deepEqual(first.done ? [] : first.value.map((l) => l.bytes.toString()), ['before']);
    const next = stream.next();
    appendFileSync(file, record(2, 'stdout', 'F', 'after'));
    const woken = await Promise.race([next, new Promise<'timeout'>((resolve) => setTimeout(resolve, 10_000, 'timeout').unref())]);
    assert.notEqual(woken, 'timeout', 'the follower was not woken by the write');
    assert.deepEqual(woken !== 'timeout' && !woken.done ? woken.value.map((l) => l.bytes.toString()) : [], ['after']);
    controller.abort();
    await stream.return('cancelled');
  });

  test('a bulk read over many full read buffers and files gives every line exactly once, pieces joined, with or without times', async () => {
    // ~3 MB in 3 files: many reads of a whole (reused) buffer, records cut at
    // every buffer position, lines in P pieces spanning buffers and files.
    const d = fresh('bulk');
    const expected: string[] = [];
    const files: Buffer[][] = [[], [], []];
    for (let i = 0; i < 24_000; i++) {
      const stream = i % 3 === 0 ? 'stderr' : 'stdout';
      const text = `${i} ${'z'.repeat(i % 251)}`;
      const file = files[Math.floor((i * files.length) / 24_000)]!;
      if (i % 97 === 0) {
        file.push(record(1, stream, 'P', text.slice(0, 5)), record(1, stream, 'P', text.slice(5, 9)), record(1, stream, 'F', text.slice(9)));
      } else {
        file.push(record(1, stream, 'F', text));
      }
      expected.push(`${stream}:${text}`);
    }
    files.forEach((records, index) => writeFileSync(join(d, `output.${index}.log`), Buffer.concat(records)));
    assert.deepEqual(await collect(d), expected);
    assert.deepEqual(await collect(d, { sinceMs: Date.parse(ts(1)) }), expected, 'the same lines when times are parsed');
  });

  test('a follower lets the event loop turn after handing out lines, before it reads the file again', async () => {
    // What the consumer set off with the lines it took (gRPC sends a written
    // message in an immediate) happens before the follower's next read: here
    // that is a third line, which the next read therefore finds with the second.
    const d = fresh('turn');
    const file = join(d, 'output.0.log');
    writeFileSync(file, record(1, 'stdout', 'F', 'one'));
    const controller = new AbortController();
    const active: TaskLiveness = { status: () => 'active', onChange: () => () => {} };
    const stream = streamLogs({ directory: d, streams: ['stdout'], follow: true }, active, controller.signal);
    const text = (r: IteratorResult<readonly LogLine[], unknown>) => (r.done ? [] : r.value.map((l) => l.bytes.toString()));
    assert.deepEqual(text(await stream.next()), ['one']);
    appendFileSync(file, record(2, 'stdout', 'F', 'two'));
    setImmediate(() => appendFileSync(file, record(3, 'stdout', 'F', 'three')));
    assert.deepEqual(text(await stream.next()), ['two', 'three']);
    controller.abort();
    await stream.return('cancelled');
  });

  test('tail and since never start in the middle of a line of either stream', async () => {
    const d = fresh('interleaved');
    // stdout's line "ab" spans files 0 and 1, with stderr lines in between.
    writeFileSync(join(d, 'output.0.log'), Buffer.concat([record(1, 'stdout', 'F', 'o1'), record(2, 'stdout', 'P', 'a'), record(3, 'stderr', 'F', 'e1')]));
    writeFileSync(join(d, 'output.1.log'), Buffer.concat([record(4, 'stderr', 'F', 'e2'), record(5, 'stdout', 'F', 'b'), record(6, 'stderr', 'F', 'e3'), record(7, 'stdout', 'P', 'tr')]));
    assert.deepEqual(await collect(d), ['stdout:o1', 'stderr:e1', 'stderr:e2', 'stdout:ab', 'stderr:e3', 'stdout~tr']);
    assert.deepEqual(await collect(d, { tailLines: 2 }), ['stdout:ab', 'stderr:e3', 'stdout~tr']);
    assert.deepEqual(await collect(d, { tailLines: 3 }), ['stderr:e2', 'stdout:ab', 'stderr:e3', 'stdout~tr']);
    assert.deepEqual(await collect(d, { tailLines: 1, streams: ['stdout'] }), ['stdout:ab', 'stdout~tr']);
    // Since second 4: file 1 is chosen; stdout's open line began at second 2, so it is left out.
    const since4 = Date.parse(ts(4));
    assert.deepEqual(await collect(d, { sinceMs: since4 }), ['stderr:e2', 'stderr:e3', 'stdout~tr']);
    assert.deepEqual(await collect(d, { sinceMs: Date.parse(ts(2)) }), ['stderr:e1', 'stderr:e2', 'stdout:ab', 'stderr:e3', 'stdout~tr']);
  });
});
