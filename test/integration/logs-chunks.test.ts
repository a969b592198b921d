// LogsRequest.chunks through the real gRPC API: the output as text runs of
// one stream (as `kubectl logs` shows it), with the same line selection as
// the other response forms.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { type LogChunk, type LogsRequest, LogsResponse, LogStream } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { processTask, shell, startTestExecutor, type TestExecutor } from '../support/executor.js';
import { fileLines, logFiles, logsDir, outputComplete } from '../support/log-files.js';
import { bytesOf, openLogs, readLogs } from '../support/logs-rpc.js';
import { waitFor } from '../support/wait.js';

const { LOG_STREAM_STDOUT: STDOUT, LOG_STREAM_STDERR: STDERR } = LogStream;

const chunksOf = (messages: LogsResponse[]): LogChunk[] =>
  messages.map((m) => {
    assert.ok(m.chunk, 'every message carries a chunk');
    assert.ok(m.content === undefined && m.entries.length === 0 && m.stream === LogStream.LOG_STREAM_UNSPECIFIED && m.time === undefined, 'and nothing else');
    return m.chunk;
  });
const chunkBytes = (chunk: LogChunk): Buffer =>
  chunk.content?.$case === 'text' ? Buffer.from(chunk.content.value, 'utf8') : chunk.content?.$case === 'data' ? chunk.content.value : Buffer.alloc(0);
/** The output of the chunks (of one stream, if given) as one text. */
const outputOf = (chunks: LogChunk[], stream?: LogStream) =>
  Buffer.concat(chunks.filter((c) => stream === undefined || c.stream === stream).map(chunkBytes)).toString('utf8');
/** What the one-line-per-message form sends, written out as chunks would: each line with "\n" unless partial. */
const renderedLines = (messages: LogsResponse[]) => Buffer.concat(messages.flatMap((m) => [bytesOf(m), Buffer.from(m.partial ? '' : '\n')])).toString('utf8');

describe('Logs in chunks over gRPC', () => {
  let te: TestExecutor;
  let scratch: string;
  before(async () => {
    te = await startTestExecutor();
    scratch = mkdtempSync(join(tmpdir(), 'te-chunks-'));
  });
  after(async () => {
    await te.close();
    rmSync(scratch, { recursive: true, force: true });
  });
  const gate = (name: string) => join(scratch, `${name}.go`);
  const waitGate = (name: string) => `while [ ! -e ${gate(name)} ]; do sleep 0.01; done`;
  const chunks = async (request: Partial<LogsRequest>) => chunksOf(await readLogs(te, { ...request, chunks: true }));

  test('chunks hold the lines of one stream each with its newline, in write order across rotated files; a stream change starts a new chunk', async () => {
    const script = 'i=1; while [ $i -le 300 ]; do echo "out $i"; echo "out $i b"; echo "err $i" >&2; i=$((i+1)); done';
    await te.api.createTask({ task: processTask('rotated', ['sh', '-c', script], {}, { logs: { maxFileSizeBytes: 1024, maxFiles: 100 } }) });
    await outputComplete(te, 'rotated');
    const dir = logsDir(te, 'rotated');
    assert.ok(logFiles(dir).length >= 10, `expected rotated files, got ${logFiles(dir).length}`);
    const expected = fileLines(dir);
    assert.equal(expected.length, 900);

    const all = await chunks({ name: 'rotated' });
    const lines = all.flatMap((c) => {
      assert.equal(c.content?.$case, 'text');
      assert.ok(outputOf([c]).endsWith('\n'), 'a chunk ends with a whole line here');
      return outputOf([c]).slice(0, -1).split('\n').map((text) => ({ stream: c.stream, text }));
    });
    assert.deepEqual(lines, expected, 'the lines of the files, in order, each in a chunk of its own stream');
    const changes = expected.filter((l, i) => i > 0 && l.stream !== expected[i - 1]!.stream).length;
    assert.ok(all.length >= changes + 1 && all.length < expected.length, `${all.length} chunks for ${changes} stream changes`);

    const errOnly = await chunks({ name: 'rotated', stream: STDERR });
    assert.ok(errOnly.length <= logFiles(dir).length, `${errOnly.length} chunks: short lines of one stream share a chunk per read`);
    assert.equal(outputOf(errOnly), expected.filter((l) => l.stream === STDERR).map((l) => `${l.text}\n`).join(''));
  });

  test('a long stream of output comes in chunks of at most about 64 KiB, and a line longer than that is joined back whole', async () => {
    const script = `i=1; while [ $i -le 3000 ]; do echo "line $i ${'x'.repeat(100)}"; i=$((i+1)); done; head -c 200000 /dev/zero | tr '\\0' a; echo; echo after`;
    await te.api.createTask({ task: shell('long', script) });
    await outputComplete(te, 'long');
    const all = await chunks({ name: 'long' });
    const expected = `${fileLines(logsDir(te, 'long')).map((l) => `${l.text}\n`).join('')}`;
    assert.equal(outputOf(all), expected);
    assert.ok(expected.includes(`\n${'a'.repeat(200_000)}\nafter\n`));
    assert.ok(all.length >= 8, `${all.length} chunks`);
    assert.ok(all.every((c) => chunkBytes(c).length <= 64 * 1024 + 64), 'chunks are bounded');
  });

  test('a line that is not valid UTF-8 goes out as data in a chunk of its own; the text around it stays text', async () => {
    await te.api.createTask({ task: shell('binary', `echo before; printf '\\377\\376 raw\\n'; echo 'grüße ✓'; printf 'no newline'`) });
    await outputComplete(te, 'binary');
    const all = await chunks({ name: 'binary' });
    assert.deepEqual(
      all.map((c) => [c.content?.$case, chunkBytes(c)]),
      [
        ['text', Buffer.from('before\n')],
        ['data', Buffer.from([0xff, 0xfe, ...Buffer.from(' raw\n')])],
        ['text', Buffer.from('grüße ✓\n')],
        ['text', Buffer.from('no newline')],
      ],
      'the last line, still open at the end of the output, comes without a newline',
    );
  });

  test('tailLines, sinceTime, limitBytes and stream select the same output as one message per line', async () => {
    await te.api.createTask({ task: shell('select', `echo early; echo early-err >&2; ${waitGate('select')}; for i in 1 2 3 4 5; do echo "out $i"; echo "err $i" >&2; done`) });
    await waitFor('the early lines', () => fileLines(logsDir(te, 'select')).length === 2);
    const cut = new Date(Date.now() + 2);
    await waitFor('the clock to pass the cut', () => Date.now() > cut.getTime());
    writeFileSync(gate('select'), '');
    await outputComplete(te, 'select');

    const requests: Partial<LogsRequest>[] = [
      { name: 'select' },
      { name: 'select', tailLines: 3 },
      { name: 'select', tailLines: 4, stream: STDOUT },
      { name: 'select', sinceTime: cut },
      { name: 'select', sinceTime: cut, stream: STDERR },
      { name: 'select', limitBytes: 13 },
      { name: 'select', tailLines: 2, limitBytes: 7 },
      { name: 'select', tailLines: 0 },
    ];
    for (const request of requests) {
      const expected = renderedLines(await readLogs(te, request));
      assert.equal(outputOf(await chunks(request)), expected, JSON.stringify(request));
    }
    assert.equal(outputOf(await chunks({ name: 'select', sinceTime: cut, stream: STDOUT })), 'out 1\nout 2\nout 3\nout 4\nout 5\n');
    assert.equal(outputOf(await chunks({ name: 'select', limitBytes: 13 })), 'early\nearly-er', 'limitBytes counts output without newlines and cuts the last line');
  });

  test('with --logs-read-workers, a bulk read of a big log is done by a worker thread: the same chunks as on the main thread; a call cancelled mid-read frees the worker and closes the files', { timeout: 120_000 }, async () => {
    const own = await startTestExecutor({ logsReadWorkers: 1 });
    const chunks = async (request: Partial<LogsRequest>) => chunksOf(await readLogs(own, { ...request, chunks: true }));
    const workers = own.executor.logReadWorkers;
    assert.ok(workers, 'the executor has read workers');
    try {
      // ~3 MB (over the 1 MiB from which a worker reads) in files of 512 KiB: both streams, lines written in pieces, bytes that are not UTF-8.
      const script =
        `i=1; while [ $i -le 5000 ]; do echo "out $i ${'o'.repeat(600)}"; if [ $((i % 7)) = 0 ]; then echo "err $i" >&2; fi; ` +
        'if [ $((i % 500)) = 0 ]; then head -c 20000 /dev/zero | tr "\\0" y; echo; printf "\\377 raw %s\\n" $i >&2; fi; i=$((i+1)); done; printf "open end"';
      await own.api.createTask({ task: processTask('worker', ['sh', '-c', script], {}, { logs: { maxFileSizeBytes: 512 * 1024, maxFiles: 100 } }) });
      await outputComplete(own, 'worker');
      const dir = logsDir(own, 'worker');
      assert.ok(logFiles(dir).length >= 4, `expected rotated files, got ${logFiles(dir).length}`);
      const general = await chunks({ name: 'worker', limitBytes: 1e12 }); // a byte limit keeps a read on the main thread
      // The first big read starts a worker (and is done in place while it loads); a later one goes to it.
      const before = workers.reads;
      await waitFor('a read done by a worker', async () => {
        assert.deepEqual(await chunks({ name: 'worker' }), general);
        return workers.reads > before;
      }, { timeoutMs: 90_000, intervalMs: 200 });
      assert.ok(general.some((c) => c.content?.$case === 'data') && general.length > 40, `${general.length} chunks`);

      const openFds = () =>
        readdirSync('/proc/self/fd').filter((fd) => {
          try {
            return readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir);
          } catch {
            return false;
          }
        }).length;
      const reads = workers.reads;
      const { call, done } = openLogs(own, { name: 'worker', chunks: true }, (_m, c) => c.cancel());
      const { error } = await done;
      assert.equal(error?.code, status.CANCELLED);
      call.cancel();
      assert.equal(workers.reads, reads + 1, 'the cancelled read was done by the worker');
      await waitFor('the worker to be free again', () => workers.busy === 0);
      await waitFor('the log files closed', () => openFds() === 0);
    } finally {
      await own.close();
    }
    assert.equal(workers.workers, 0, 'no worker left after the executor closed');
  });

  test('one read worker by default; --logs-read-workers 0 reads everything on the main thread', async () => {
    assert.ok(te.executor.logReadWorkers, 'a pool by default');
    assert.equal(te.executor.logReadWorkers.workers, 0, 'no worker before a big read');
    const off = await startTestExecutor({ logsReadWorkers: 0 });
    try {
      assert.equal(off.executor.logReadWorkers, undefined);
    } finally {
      await off.close();
    }
  });

  test('a bulk read sends the same chunks as the general path (forced by a limitBytes that is never reached): pieces, stream changes, rotation, bytes that are not UTF-8', async () => {
    // Lines of 20000 bytes reach the log as a P record and an F record (or more P records where a file ends); the files rotate every 64 KiB.
    const script =
      'i=1; while [ $i -le 1500 ]; do echo "out $i"; echo "err $i" >&2; ' +
      'if [ $((i % 100)) = 0 ]; then head -c 20000 /dev/zero | tr "\\0" y; echo; printf "\\377 raw %s\\n" $i >&2; fi; i=$((i+1)); done; printf "open end"';
    await te.api.createTask({ task: processTask('bulk', ['sh', '-c', script], {}, { logs: { maxFileSizeBytes: 65536, maxFiles: 1000 } }) });
    await outputComplete(te, 'bulk');
    const dir = logsDir(te, 'bulk');
    assert.ok(logFiles(dir).length >= 3, `expected rotated files, got ${logFiles(dir).length}`);
    const records = logFiles(dir).flatMap((f) => readFileSync(join(dir, f), 'latin1').split('\n'));
    assert.ok(records.some((r) => / stdout P y/.test(r)), 'some lines were written in pieces');

    for (const stream of [undefined, STDOUT, STDERR]) {
      const fast = await chunks({ name: 'bulk', stream });
      const general = await chunks({ name: 'bulk', stream, limitBytes: 1e12 });
      assert.deepEqual(fast, general, `stream ${stream}`);
    }
    const all = await chunks({ name: 'bulk' });
    assert.ok(all.some((c) => c.content?.$case === 'data'), 'the lines that are not UTF-8 went out as data');
    assert.ok(outputOf(all, STDOUT).includes(`${'y'.repeat(20000)}\n`), 'a line written in pieces is whole');
    assert.ok(outputOf(all, STDOUT).endsWith(`out 1500\n${'y'.repeat(20000)}\nopen end`), 'and the last line, open at the end, has no newline');
  });

  test('timestamps put each line’s write time, RFC 3339 with nanoseconds as the log file has it, and a space in front of the line', async () => {
    await te.api.createTask({ task: shell('stamps', `echo one; echo two >&2; printf 'three '; ${waitGate('stamps')}; echo end`) });
    await waitFor('the partial line', () => readFileSync(join(logsDir(te, 'stamps'), 'output.0.log'), 'utf8').includes(' P three '));
    writeFileSync(gate('stamps'), '');
    await outputComplete(te, 'stamps');
    // The write time of each line is the time of its first record.
    const records = readFileSync(join(logsDir(te, 'stamps'), 'output.0.log'), 'utf8').split('\n').filter(Boolean);
    const time = (payload: string) => records.find((r) => r.endsWith(` ${payload}`))!.split(' ')[0]!;
    assert.match(time('one'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);

    const all = await chunks({ name: 'stamps', timestamps: true });
    assert.deepEqual(
      all.map((c) => [c.stream, outputOf([c])]),
      [
        [STDOUT, `${time('one')} one\n`],
        [STDERR, `${time('two')} two\n`],
        [STDOUT, `${time('three ')} three end\n`],
      ],
      'a line written in pieces has one time, its first',
    );
    assert.equal(outputOf(await chunks({ name: 'stamps' })), 'one\ntwo\nthree end\n', 'no times unless asked');
  });

  test('a chunked follower gets a line as soon as it is written, and a line still being written as its first piece', async () => {
    await te.api.createTask({ task: shell('follow', `echo first; printf 'name? '; ${waitGate('follow')}; echo bob; echo last`) });
    const received: string[] = [];
    const { done } = openLogs(te, { name: 'follow', follow: true, chunks: true }, (m) => {
      received.push(outputOf(chunksOf([m])));
      if (received.join('') === 'first\nname? ') writeFileSync(gate('follow'), '');
    });
    const { messages, error } = await done;
    assert.equal(error, undefined, error?.details);
    assert.equal(outputOf(chunksOf(messages)), 'first\nname? bob\nlast\n');
    assert.ok(received.includes('name? ') || received.includes('first\nname? '), `the open line came before the rest was written: ${JSON.stringify(received)}`);
  });

  test('batch and chunks together are INVALID_ARGUMENT naming both', async () => {
    await te.api.createTask({ task: shell('both-forms', 'echo hi') });
    const { error, messages } = await openLogs(te, { name: 'both-forms', batch: true, chunks: true }).done;
    assert.equal(error?.code, status.INVALID_ARGUMENT, `got ${error ? status[error.code] : 'OK'}`);
    assert.match(error.details, /batch and chunks are mutually exclusive/);
    assert.deepEqual(messages, []);
  });

  test('a chunked response reads as JSON with the output as a plain string (as grpcurl shows it)', async () => {
    await te.api.createTask({ task: shell('json', 'echo hello; echo world') });
    await outputComplete(te, 'json');
    const [message] = await readLogs(te, { name: 'json', chunks: true });
    assert.deepEqual(LogsResponse.toJSON(message!), { chunk: { stream: 'LOG_STREAM_STDOUT', text: 'hello\nworld\n' } });
  });
});
