// Tests for the per-task supervisor build/task-shim (src/runtime/shim/task-shim.c).
// Every test runs the real binary in a fresh temp dir. Synchronisation is done by
// waiting (with a deadline) for event lines on the shim's stdout, for files, or for
// marker files the test creates to let a task proceed; never by a fixed sleep.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { mountTmpfs } from '../support/tmpfs.js';

const SHIM = fileURLToPath(new URL('../../build/task-shim', import.meta.url));
const TS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/;
const WAIT_MS = 10_000;

type Event = { event: string; [key: string]: unknown };

async function waitFor<T>(probe: () => T | undefined | null | false, what: string, ms = WAIT_MS): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(10);
  }
}

async function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const pidAlive = (pid: number): boolean => {
  try {
    return procStat(pid)[0] !== 'Z';
  } catch {
    return false;
  }
};

/** Fields 3.. of /proc/PID/stat (index 0 = field 3 "state"), parsed after the last ')'. */
function procStat(pid: number): string[] {
  const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).trim().split(' ');
}
const statField = (pid: number, field: number): string => procStat(pid)[field - 3] ?? '';

/** Children of `ppid` as [pid, state] pairs. */
function childrenOf(ppid: number): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const fields = procStat(Number(name));
      if (Number(fields[1]) === ppid) out.push([Number(name), fields[0] ?? '']);
    } catch {
      // the process went away while we looked
    }
  }
  return out;
}

class ShimRun {
  readonly proc: ChildProcessByStdio<null, Readable, Readable>;
  readonly events: Event[] = [];
  stderr = '';
  /** Resolves once the shim has exited and its stdout/stderr are closed. */
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(args: string[], env?: NodeJS.ProcessEnv, command = SHIM) {
    this.proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    let pending = '';
    this.proc.stdout.setEncoding('utf8');
    this.proc.stdout.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        this.events.push(JSON.parse(pending.slice(0, nl)) as Event);
        pending = pending.slice(nl + 1);
      }
    });
    this.proc.stderr.setEncoding('utf8');
    this.proc.stderr.on('data', (chunk: string) => (this.stderr += chunk));
    this.closed = new Promise((resolve) => this.proc.on('close', (code, signal) => resolve({ code, signal })));
  }

  event(name: string): Promise<Event> {
    return waitFor(() => this.events.find((e) => e.event === name), `event "${name}" (got ${JSON.stringify(this.events)})`);
  }

  async finish(): Promise<number | null> {
    const { code } = await within(this.closed, 'the shim to exit');
    return code;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }
}

interface Env {
  dir: string;
  shim(args: string[], program: string[], env?: NodeJS.ProcessEnv): ShimRun;
  /** Creates a marker file in DIR (used to let a waiting task go on). */
  touch(name: string): void;
}

/** A fresh task dir per test; processes still running at the end are killed, the dir removed. */
function setup(t: TestContext, base = os.tmpdir()): Env {
  const dir = fs.mkdtempSync(path.join(base, 'task-shim-test-'));
  const runs: ShimRun[] = [];
  t.after(() => {
    const kill = (pid: number) => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    for (const run of runs) {
      const started = run.events.find((e) => e.event === 'started');
      if (started) kill(-Number(started.pgid));
      if (run.running) kill(run.proc.pid!);
    }
    try {
      const start = JSON.parse(fs.readFileSync(path.join(dir, 'start.json'), 'utf8'));
      kill(-start.pgid);
      if (!fs.existsSync(path.join(dir, 'exit.json'))) kill(start.shimPid);
    } catch {
      // no start.json
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    shim(args, program, env) {
      const run = new ShimRun(['--dir', dir, ...args, '--', ...program], env);
      runs.push(run);
      return run;
    },
    touch(name) {
      fs.writeFileSync(path.join(dir, name), '');
    },
  };
}

const readJson = (dir: string, name: string) => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));

interface LogRecord {
  ts: string;
  stream: string;
  tag: string;
  payload: Buffer;
  length: number;
}

function logFiles(dir: string): Array<{ index: number; file: string }> {
  if (!fs.existsSync(path.join(dir, 'logs'))) return []; // the shim has not created it yet
  return fs
    .readdirSync(path.join(dir, 'logs'))
    .map((name) => ({ name, m: /^output\.(\d+)\.log$/.exec(name) }))
    .filter((x) => x.m)
    .map((x) => ({ index: Number(x.m![1]), file: path.join(dir, 'logs', x.name) }))
    .sort((a, b) => a.index - b.index);
}

/** Parses one log file strictly (every record well-formed, file ends with '\n'). */
function parseLog(data: Buffer): LogRecord[] {
  const records: LogRecord[] = [];
  let start = 0;
  while (start < data.length) {
    const end = data.indexOf(0x0a, start);
    assert.ok(end >= 0, 'log file ends with a complete record');
    const line = data.subarray(start, end);
    const ts = line.subarray(0, 30).toString('latin1');
    assert.match(ts, TS);
    const head = /^ (stdout|stderr) ([FP]) /.exec(line.subarray(30, 41).toString('latin1'));
    assert.ok(head, `record header: ${line.subarray(0, 50).toString('latin1')}`);
    const payload = line.subarray(30 + head[0].length);
    assert.ok(payload.length <= 16384, 'payload is at most 16384 bytes');
    records.push({ ts, stream: head[1]!, tag: head[2]!, payload, length: end + 1 - start });
    start = end + 1;
  }
  return records;
}

function readRecords(dir: string): LogRecord[] {
  return logFiles(dir).flatMap(({ file }) => parseLog(fs.readFileSync(file)));
}

/** Reassembles lines per stream: P payloads are concatenated up to and including the next F. */
function reassemble(records: LogRecord[], stream = 'stdout'): { lines: Buffer[]; partial: Buffer } {
  const lines: Buffer[] = [];
  let parts: Buffer[] = [];
  for (const r of records.filter((x) => x.stream === stream)) {
    parts.push(r.payload);
    if (r.tag === 'F') {
      lines.push(Buffer.concat(parts));
      parts = [];
    }
  }
  return { lines, partial: Buffer.concat(parts) };
}

const textLines = (dir: string, stream = 'stdout') => reassemble(readRecords(dir), stream).lines.map(String);
const hasLine = (dir: string, text: string, stream = 'stdout') => textLines(dir, stream).includes(text);
const waitMarker = 'while [ ! -e "$1" ]; do sleep 0.01; done';

test('exit codes 0 and 3 are recorded in exit.json and the exited event', async (t) => {
  for (const code of [0, 3]) {
    await t.test(`exit ${code}`, async (t) => {
      const env = setup(t);
      const run = env.shim([], ['sh', '-c', `exit ${code}`]);
      const exited = await run.event('exited');
      assert.equal(await run.finish(), 0);
      const exit = readJson(env.dir, 'exit.json');
      assert.deepEqual(exit, { exitCode: code, signal: 0, finishedAt: exit.finishedAt });
      assert.match(exit.finishedAt, TS);
      assert.deepEqual(exited, { event: 'exited', ...exit });
    });
  }
});

test('a task killed by SIGKILL records exitCode 137 and signal 9', async (t) => {
  const env = setup(t);
  const run = env.shim([], ['sh', '-c', 'kill -9 $$']);
  const exited = await run.event('exited');
  assert.equal(await run.finish(), 0);
  const exit = readJson(env.dir, 'exit.json');
  assert.equal(exit.exitCode, 137);
  assert.equal(exit.signal, 9);
  assert.deepEqual(exited, { event: 'exited', ...exit });
});

test('start.json matches /proc/<pid>/stat and the task leads its own process group', async (t) => {
  const env = setup(t);
  const run = env.shim([], ['sh', '-c', waitMarker, 'sh', path.join(env.dir, 'go')]);
  const started = await run.event('started');
  const start = readJson(env.dir, 'start.json');
  assert.deepEqual(started, { event: 'started', ...start });
  assert.deepEqual(Object.keys(start), ['pid', 'pgid', 'shimPid', 'startTime', 'startedAt']);
  assert.equal(start.shimPid, run.proc.pid);
  assert.equal(start.pgid, start.pid);
  assert.match(start.startedAt, TS);
  assert.equal(start.startTime, statField(start.pid, 22));
  assert.equal(Number(statField(start.pid, 4)), run.proc.pid, 'the task is the shim child');
  assert.equal(Number(statField(start.pid, 5)), start.pid, 'own process group');
  assert.equal(Number(statField(start.pid, 6)), start.pid, 'own session');
  assert.ok(!fs.existsSync(path.join(env.dir, 'exit.json')));
  env.touch('go');
  assert.equal((await run.event('exited')).exitCode, 0);
  assert.equal(await run.finish(), 0);
});

test('a missing program fails to start with exit code 127 and a message naming it', async (t) => {
  const env = setup(t);
  const run = env.shim([], ['no-such-program-xyz', 'arg']);
  const failed = await run.event('start-failed');
  assert.equal(await run.finish(), 0);
  const exit = readJson(env.dir, 'exit.json');
  assert.equal(exit.exitCode, 127);
  assert.equal(exit.signal, 0);
  assert.equal(exit.startError, 'exec no-such-program-xyz: No such file or directory');
  assert.match(exit.finishedAt, TS);
  assert.deepEqual(failed, { event: 'start-failed', ...exit });
  assert.ok(!fs.existsSync(path.join(env.dir, 'start.json')));
  assert.deepEqual(readRecords(env.dir), []);
});

test('start errors are JSON-escaped and a non-executable program exits 126', async (t) => {
  const env = setup(t);
  const odd = 'no "such"\\prog\u0001\t\u00e9';
  const run = env.shim([], [odd]);
  const failed = await run.event('start-failed');
  assert.equal(await run.finish(), 0);
  assert.equal(failed.startError, `exec ${odd}: No such file or directory`);
  assert.equal(readJson(env.dir, 'exit.json').startError, failed.startError);

  const script = path.join(env.dir, 'not-executable.sh');
  fs.writeFileSync(script, 'echo hi\n', { mode: 0o644 });
  const run2 = env.shim([], [script]);
  const failed2 = await run2.event('start-failed');
  assert.equal(await run2.finish(), 0);
  assert.equal(failed2.exitCode, 126);
  assert.equal(failed2.startError, `exec ${script}: Permission denied`);
});

test('--cgroup-procs files receive the task pid before it runs; a failing one aborts the start', async (t) => {
  const env = setup(t);
  const procs = [path.join(env.dir, 'procs-a'), path.join(env.dir, 'procs-b')];
  for (const file of procs) fs.writeFileSync(file, '');
  const run = env.shim(
    procs.flatMap((file) => ['--cgroup-procs', file]),
    ['sh', '-c', 'cat "$1"; echo $$', 'sh', procs[0]!],
  );
  const started = await run.event('started');
  assert.equal(await run.finish(), 0);
  for (const file of procs) assert.equal(fs.readFileSync(file, 'utf8'), `${started.pid}\n`);
  assert.deepEqual(textLines(env.dir), [String(started.pid), String(started.pid)]);

  const missing = path.join(env.dir, 'no-such-cgroup', 'cgroup.procs');
  const marker = path.join(env.dir, 'ran');
  const run2 = env.shim(['--cgroup-procs', missing], ['touch', marker]);
  const failed = await run2.event('start-failed');
  assert.equal(await run2.finish(), 0);
  assert.equal(failed.exitCode, 1);
  assert.equal(failed.startError, `cgroup ${missing}: No such file or directory`);
  assert.ok(!fs.existsSync(marker), 'the program did not run');
});

test('a missing --cwd fails to start with a message naming the directory', async (t) => {
  const env = setup(t);
  const missing = path.join(env.dir, 'no', 'such dir');
  const run = env.shim(['--cwd', missing], ['true']);
  const failed = await run.event('start-failed');
  assert.equal(await run.finish(), 0);
  assert.equal(failed.exitCode, 1);
  assert.equal(failed.startError, `chdir ${missing}: No such file or directory`);
  assert.equal(readJson(env.dir, 'exit.json').startError, failed.startError);
});

test('--cwd is honoured', async (t) => {
  const env = setup(t);
  const sub = path.join(env.dir, 'work dir');
  fs.mkdirSync(sub);
  const run = env.shim(['--cwd', sub], ['pwd']);
  assert.equal(await run.finish(), 0);
  assert.deepEqual(textLines(env.dir), [fs.realpathSync(sub)]);
});

test('stdout and stderr lines become F records on the right stream, in write order', async (t) => {
  const env = setup(t);
  // Both streams are separate pipes, so the shim cannot order writes that land in
  // both pipes at the same instant; the task waits until each line is logged.
  const script =
    'L=$1; w() { until grep -q "$1" "$L" 2>/dev/null; do sleep 0.005; done; }; ' +
    'echo a; w " stdout F a$"; echo b >&2; w " stderr F b$"; echo c';
  const run = env.shim([], ['sh', '-c', script, 'sh', path.join(env.dir, 'logs', 'output.0.log')]);
  assert.equal((await run.event('exited')).exitCode, 0);
  assert.equal(await run.finish(), 0);
  const records = readRecords(env.dir).map((r) => [r.stream, r.tag, r.payload.toString()]);
  assert.deepEqual(records, [
    ['stdout', 'F', 'a'],
    ['stderr', 'F', 'b'],
    ['stdout', 'F', 'c'],
  ]);
});

test('output without a trailing newline shows up at once as a P record', async (t) => {
  const env = setup(t);
  const run = env.shim([], ['sh', '-c', `printf 'prompt> '; ${waitMarker}; echo done`, 'sh', path.join(env.dir, 'go')]);
  await waitFor(
    () => readRecords(env.dir).some((r) => r.tag === 'P' && r.payload.toString() === 'prompt> '),
    'the P record while the task still runs',
  );
  assert.ok(!run.events.some((e) => e.event === 'exited'));
  env.touch('go');
  assert.equal(await run.finish(), 0);
  const records = readRecords(env.dir);
  assert.deepEqual(
    records.map((r) => [r.stream, r.tag, r.payload.toString()]),
    [
      ['stdout', 'P', 'prompt> '],
      ['stdout', 'F', 'done'],
    ],
  );
  assert.deepEqual(textLines(env.dir), ['prompt> done']);
});

test('a 40000-byte line is split into P records that reassemble to the original', async (t) => {
  const env = setup(t);
  const line = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz'.repeat(1200).slice(0, 40000));
  fs.writeFileSync(path.join(env.dir, 'long.txt'), Buffer.concat([line, Buffer.from('\nafter\n')]));
  const run = env.shim(['--cwd', env.dir], ['cat', 'long.txt']);
  assert.equal(await run.finish(), 0);
  const records = readRecords(env.dir);
  assert.ok(records.filter((r) => r.tag === 'P').length >= 2, 'at least two P records');
  assert.ok(records.every((r) => r.payload.length <= 16384));
  const { lines, partial } = reassemble(records);
  assert.equal(lines.length, 2);
  assert.ok(lines[0]!.equals(line), 'reassembled line equals the original');
  assert.equal(lines[1]!.toString(), 'after');
  assert.equal(partial.length, 0);
});

test('binary bytes (all but newline) survive byte-exactly', async (t) => {
  const env = setup(t);
  const bytes = Buffer.from(
    Array.from({ length: 4 * 256 }, (_, i) => i % 256).filter((b) => b !== 0x0a),
  );
  fs.writeFileSync(path.join(env.dir, 'bin.dat'), bytes);
  const run = env.shim(['--cwd', env.dir], ['cat', 'bin.dat']);
  assert.equal(await run.finish(), 0);
  const records = readRecords(env.dir);
  assert.ok(records.length > 0 && records.every((r) => r.tag === 'P' && r.stream === 'stdout'));
  const { lines, partial } = reassemble(records);
  assert.equal(lines.length, 0);
  assert.ok(partial.equals(bytes), 'payload bytes equal the task output');
});

test('rotation keeps at most max-files bounded files holding a contiguous run of the output', async (t) => {
  const env = setup(t);
  const N = 3000;
  const run = env.shim(
    ['--log-max-bytes', '4096', '--log-max-files', '3'],
    ['sh', '-c', `i=1; while [ $i -le ${N} ]; do echo $i; i=$((i+1)); done`],
  );
  assert.equal((await run.event('exited')).exitCode, 0);
  assert.equal(await run.finish(), 0);
  const files = logFiles(env.dir);
  assert.equal(files.length, 3);
  const last = files[2]!.index;
  assert.ok(last >= 20, `many rotations happened (last index ${last})`);
  assert.deepEqual(files.map((f) => f.index), [last - 2, last - 1, last]);
  const perFile = files.map(({ file }) => parseLog(fs.readFileSync(file)));
  perFile.forEach((records, i) => {
    const size = fs.statSync(files[i]!.file).size;
    assert.equal(size, records.reduce((sum, r) => sum + r.length, 0));
    // a record is only appended to a non-empty file if it still fits
    assert.ok(size <= 4096 || records.length === 1, `file ${files[i]!.index} is bounded (${size} bytes)`);
    if (i < perFile.length - 1) {
      assert.ok(size + perFile[i + 1]![0]!.length > 4096, 'rotated only when the next record did not fit');
    }
  });
  const lines = reassemble(perFile.flat()).lines.map(String);
  assert.ok(lines.length > 150, `retained ${lines.length} lines`);
  // The first retained record may complete a line whose start was in a deleted file.
  lines.forEach((text, i) => {
    const expected = String(N - (lines.length - 1 - i));
    if (i === 0) assert.ok(expected.endsWith(text), `first line ${text} is (a suffix of) ${expected}`);
    else assert.equal(text, expected);
  });
});

test('a restarted shim appends to the highest existing log file', async (t) => {
  const env = setup(t);
  assert.equal(await env.shim([], ['echo', 'one']).finish(), 0);
  assert.equal(await env.shim([], ['echo', 'two']).finish(), 0);
  assert.deepEqual(logFiles(env.dir).map((f) => f.index), [0]);
  assert.deepEqual(textLines(env.dir), ['one', 'two']);

  const seven = path.join(env.dir, 'logs', 'output.7.log');
  fs.writeFileSync(seven, '2026-01-01T00:00:00.000000000Z stdout F seven\n');
  fs.writeFileSync(path.join(env.dir, 'logs', 'output.07.log.bak'), 'not a log file\n');
  assert.equal(await env.shim([], ['echo', 'three']).finish(), 0);
  assert.deepEqual(logFiles(env.dir).map((f) => f.index), [0, 7]);
  assert.deepEqual(parseLog(fs.readFileSync(seven)).map((r) => r.payload.toString()), ['seven', 'three']);

  // With fewer files allowed, a restart prunes old files beyond the limit.
  assert.equal(await env.shim(['--log-max-files', '2'], ['echo', 'four']).finish(), 0);
  assert.deepEqual(logFiles(env.dir).map((f) => f.index), [7]);
  assert.deepEqual(textLines(env.dir), ['seven', 'three', 'four']);
});

test('output of a background process that outlives the task is logged after the exited event', async (t) => {
  const env = setup(t);
  const script = `(${waitMarker}; echo late) & echo early`;
  const run = env.shim([], ['sh', '-c', script, 'sh', path.join(env.dir, 'go')]);
  assert.equal((await run.event('exited')).exitCode, 0);
  await waitFor(() => hasLine(env.dir, 'early'), 'the "early" record');
  assert.ok(run.running, 'the shim waits for the background process');
  assert.ok(!hasLine(env.dir, 'late'));
  env.touch('go');
  assert.equal(await run.finish(), 0);
  assert.deepEqual(textLines(env.dir), ['early', 'late']);
  assert.equal(readJson(env.dir, 'exit.json').exitCode, 0);
});

test('the shim adopts and reaps orphaned descendants (child subreaper)', async (t) => {
  const env = setup(t);
  const script =
    'for i in 1 2 3 4 5; do ( sh -c "echo orphan" & ); done; ' + `( ${waitMarker}; echo late ) & echo main`;
  const run = env.shim([], ['sh', '-c', script, 'sh', path.join(env.dir, 'go')]);
  const shimPid = run.proc.pid!;
  assert.equal((await run.event('exited')).exitCode, 0);
  await waitFor(() => textLines(env.dir).filter((l) => l === 'orphan').length === 5, 'five orphan records');
  // While the shim still waits for the background process (adopted after the task
  // exited), none of its children may stay a zombie.
  const children = await waitFor(() => {
    const kids = childrenOf(shimPid);
    return kids.length > 0 && kids.every(([, state]) => state !== 'Z') && kids;
  }, 'the shim children to be live (no zombies)');
  assert.ok(children.length >= 1, 'the orphaned background process was adopted by the shim');
  assert.ok(run.running);
  env.touch('go');
  assert.equal(await run.finish(), 0);
  assert.ok(hasLine(env.dir, 'late'));
});

test('the exit is recorded when the process that spawned the shim is gone', async (t) => {
  const env = setup(t);
  // The spawner starts the shim in the background and exits at once, like an executor
  // killed with SIGKILL; the pipe it shared with the shim is then closed (EPIPE).
  const spawner = spawn(
    'sh',
    ['-c', '"$0" "$@" & exit 0', SHIM, '--dir', env.dir, '--', 'sh', '-c', `${waitMarker}; echo bye`, 'sh', path.join(env.dir, 'go')],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const spawnerExit = new Promise<number | null>((resolve) => spawner.on('exit', (code) => resolve(code)));
  let out = '';
  spawner.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const started = await waitFor(() => out.includes('\n') && JSON.parse(out.slice(0, out.indexOf('\n'))), 'started event');
  assert.equal(started.event, 'started');
  assert.equal(await within(spawnerExit, 'the spawner to exit'), 0);
  spawner.stdout.destroy();
  spawner.stderr.destroy();
  assert.ok(pidAlive(started.pid) && pidAlive(started.shimPid), 'task and shim survive the spawner');
  env.touch('go');
  const exit = await waitFor(() => fs.existsSync(path.join(env.dir, 'exit.json')) && readJson(env.dir, 'exit.json'), 'exit.json');
  assert.equal(exit.exitCode, 0);
  await waitFor(() => !pidAlive(started.shimPid), 'the shim to exit');
  assert.deepEqual(textLines(env.dir), ['bye']);
});

test('SIGTERM releases the shim: output is drained but discarded and writers are not killed', async (t) => {
  const env = setup(t);
  // 350 KB after release: more than a pipe holds, so an undrained pipe would block the
  // writer, and a closed one would kill it with SIGPIPE; either way no "done" marker.
  const script = `( ${waitMarker}; yes bgline | head -n 50000 && touch "$2" ) & echo main`;
  const run = env.shim([], ['sh', '-c', script, 'sh', path.join(env.dir, 'go'), path.join(env.dir, 'done')]);
  assert.equal((await run.event('exited')).exitCode, 0);
  await waitFor(() => hasLine(env.dir, 'main'), 'the "main" record');
  run.proc.kill('SIGTERM');
  await run.event('released');
  const before = logFiles(env.dir).map(({ file }) => fs.readFileSync(file));
  env.touch('go');
  await waitFor(() => fs.existsSync(path.join(env.dir, 'done')), 'the background writer to finish');
  assert.equal(await run.finish(), 0);
  assert.deepEqual(logFiles(env.dir).map(({ file }) => fs.readFileSync(file)), before, 'no records after release');
  assert.deepEqual(textLines(env.dir), ['main']);
  assert.equal(readJson(env.dir, 'exit.json').exitCode, 0);
});

test('SIGTERM before the task exits still records its exit status', async (t) => {
  const env = setup(t);
  const run = env.shim([], ['sh', '-c', `echo before; ${waitMarker}; echo after; exit 5`, 'sh', path.join(env.dir, 'go')]);
  await waitFor(() => hasLine(env.dir, 'before'), 'the "before" record');
  run.proc.kill('SIGTERM');
  await run.event('released');
  assert.ok(run.running);
  env.touch('go');
  assert.equal((await run.event('exited')).exitCode, 5);
  assert.equal(await run.finish(), 0);
  assert.equal(readJson(env.dir, 'exit.json').exitCode, 5);
  assert.deepEqual(textLines(env.dir), ['before']);
});

test('the shim works when started with SIGCHLD and SIGTERM ignored', async (t) => {
  const env = setup(t);
  // An ignored SIGCHLD would make the kernel auto-reap the task (no exit status) and an
  // ignored SIGTERM would never reach the shim; perl passes SIG_IGN on through exec.
  const run = new ShimRun([
    '-e', '$SIG{CHLD} = $SIG{TERM} = "IGNORE"; exec @ARGV or die', SHIM, '--dir', env.dir, '--',
    'sh', '-c', `echo x; ${waitMarker}; exit 4`, 'sh', path.join(env.dir, 'go'),
  ], undefined, 'perl');
  t.after(() => run.proc.kill('SIGKILL'));
  const started = await run.event('started');
  assert.equal(started.startTime, statField(Number(started.pid), 22));
  await waitFor(() => hasLine(env.dir, 'x'), 'the "x" record');
  run.proc.kill('SIGTERM');
  await run.event('released');
  env.touch('go');
  assert.equal((await run.event('exited')).exitCode, 4);
  assert.equal(await run.finish(), 0);
  assert.equal(readJson(env.dir, 'exit.json').exitCode, 4);
});

test('the task gets exactly the shim environment', async (t) => {
  const env = setup(t);
  const run = env.shim([], ['sh', '-c', 'printf "%s|%s\\n" "$FOO" "${UNSET_VAR-unset}"'], {
    PATH: process.env.PATH,
    FOO: 'hello $world "x"',
  });
  assert.equal(await run.finish(), 0);
  assert.deepEqual(textLines(env.dir), ['hello $world "x"|unset']);
});

test('usage errors exit 2 with a one-line message and start nothing', async (t) => {
  const env = setup(t);
  const marker = path.join(env.dir, 'started');
  const program = ['--', 'touch', marker];
  const cases: Array<[string[], RegExp]> = [
    [[], /--dir is required/],
    [program, /--dir is required/],
    [['--dir', 'relative/dir', ...program], /absolute/],
    [['--dir', env.dir], /no program/],
    [['--dir', env.dir, '--'], /no program/],
    [['--dir', env.dir, 'touch', marker], /unexpected argument/],
    [['--dir', env.dir, '--log-max-bytes', '1023', ...program], /--log-max-bytes/],
    [['--dir', env.dir, '--log-max-bytes', '12abc', ...program], /--log-max-bytes/],
    [['--dir', env.dir, '--log-max-files', '0', ...program], /--log-max-files/],
    [['--dir', env.dir, '--log-max-files'], /needs a value/],
    [['--dir', env.dir, '--bogus', 'x', ...program], /unknown option --bogus/],
  ];
  for (const [args, message] of cases) {
    const result = spawnSync(SHIM, args, { encoding: 'utf8', timeout: WAIT_MS });
    assert.equal(result.status, 2, `exit status for ${JSON.stringify(args)}`);
    assert.match(result.stderr, message);
    assert.match(result.stderr, /^task-shim: [^\n]*\n$/, 'one line on stderr');
    assert.equal(result.stdout, '');
    assert.deepEqual(fs.readdirSync(env.dir), [], 'nothing was created or started');
  }
});

test('a data dir without room for the exit status refuses the start as DataDirFull', async (t) => {
  const tmpfs = mountTmpfs('64k');
  t.after(() => tmpfs.unmount());
  const env = setup(t, tmpfs.path);
  tmpfs.fill();
  const marker = path.join(os.tmpdir(), `shim-ran-${process.pid}-${Date.now()}`);
  const run = env.shim([], ['touch', marker]);
  const failed = await run.event('start-failed');
  assert.equal(await run.finish(), 1);
  assert.equal(failed.reason, 'DataDirFull');
  assert.match(String(failed.startError), /No space left on device \(the data dir is full: the task was not started\)/);
  assert.ok(!fs.existsSync(marker), 'the program did not run');
  assert.match(run.stderr, /data dir is full/);
});

test('a task that exits after the data dir filled up still gets its exit status recorded', async (t) => {
  const tmpfs = mountTmpfs('256k');
  t.after(() => tmpfs.unmount());
  const env = setup(t, tmpfs.path);
  const go = path.join(os.tmpdir(), `shim-go-${process.pid}-${Date.now()}`);
  t.after(() => fs.rmSync(go, { force: true }));
  const run = env.shim([], ['sh', '-c', `${waitMarker}; exit 42`, 'sh', go]);
  await run.event('started');
  tmpfs.fill();
  assert.equal(tmpfs.free(), 0);
  fs.writeFileSync(go, '');
  const exited = await run.event('exited');
  assert.equal(await run.finish(), 0);
  assert.equal(exited.exitCode, 42);
  assert.equal(exited.recordError, undefined, 'written into the space reserved at start');
  assert.equal(readJson(env.dir, 'exit.json').exitCode, 42);
  assert.ok(!fs.existsSync(path.join(env.dir, 'exit.json.tmp')));
});

test('an exit status that cannot be written is reported, held, and written once it can be', async (t) => {
  const env = setup(t);
  const run = env.shim([], ['sh', '-c', `${waitMarker}; exit 7`, 'sh', path.join(env.dir, 'go')]);
  await run.event('started');
  // A directory in the way makes every rename onto exit.json fail until it is removed.
  fs.mkdirSync(path.join(env.dir, 'exit.json'));
  env.touch('go');
  const exited = await run.event('exited');
  assert.equal(exited.exitCode, 7);
  assert.match(String(exited.recordError), /^cannot write exit\.json: Is a directory$/);
  await waitFor(() => run.stderr.includes('cannot write exit.json: Is a directory; keeping it and retrying'), 'the failure on stderr');
  assert.ok(run.running, 'the shim stays alive holding the status');
  fs.rmdirSync(path.join(env.dir, 'exit.json'));
  assert.equal(await run.finish(), 0);
  assert.equal(readJson(env.dir, 'exit.json').exitCode, 7);
  assert.match(run.stderr, /wrote exit\.json after earlier failures/);
});

test('a numeric user above 2^31 without a passwd entry runs with that uid and gid 0', async (t) => {
  const env = setup(t);
  const run = env.shim(['--user', '3000000000'], ['sh', '-c', 'id -u; id -g; id -G']);
  assert.equal((await run.event('exited')).exitCode, 0, JSON.stringify(run.events));
  assert.equal(await run.finish(), 0);
  assert.deepEqual(textLines(env.dir), ['3000000000', '0', '0']);

  const run2 = env.shim(['--user', '4294967294', '--group', '4000000000'], ['sh', '-c', 'id -u; id -g']);
  assert.equal(await run2.finish(), 0);
  assert.deepEqual(textLines(env.dir).slice(3), ['4294967294', '4000000000']);
});

test('numeric ids above 4294967294 fail to start with a message saying so', async (t) => {
  for (const [option, value, message] of [
    ['--user', '4294967295', 'user 4294967295: a numeric uid must be at most 4294967294'],
    ['--user', '99999999999999999999999', 'user 99999999999999999999999: a numeric uid must be at most 4294967294'],
    ['--group', '4294967295', 'group 4294967295: a numeric gid must be at most 4294967294'],
  ] as const) {
    const env = setup(t);
    const run = env.shim([option, value], ['true']);
    const failed = await run.event('start-failed');
    assert.equal(await run.finish(), 0);
    assert.equal(failed.startError, message);
  }
});

test('no log file ever exceeds --log-max-bytes: lines longer than a file are split across files', async (t) => {
  const lengths = [5000, 10, 3000, 1500, 0, 20000, 981, 982, 983, 7];
  const script = lengths.map((n) => `head -c ${n} /dev/zero | tr '\\0' x; echo`).join('; ');
  for (const maxFiles of [1000, 2]) {
    const env = setup(t);
    const run = env.shim(['--log-max-bytes', '1024', '--log-max-files', String(maxFiles)], ['sh', '-c', script]);
    assert.equal((await run.event('exited')).exitCode, 0);
    assert.equal(await run.finish(), 0);
    const files = logFiles(env.dir);
    const sizes = files.map(({ file }) => fs.statSync(file).size);
    assert.ok(sizes.every((size) => size <= 1024), `file sizes ${sizes}`);
    assert.ok(files.length <= maxFiles);
    if (maxFiles === 2) {
      assert.ok(sizes.reduce((a, b) => a + b, 0) <= 2048);
      assert.equal(textLines(env.dir).at(-1), 'xxxxxxx');
    } else {
      assert.deepEqual(textLines(env.dir).map((line) => line.length), lengths);
      assert.ok(textLines(env.dir).every((line) => /^x*$/.test(line)));
    }
  }
});
