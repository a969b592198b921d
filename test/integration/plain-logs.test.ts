// The original task-executor's log layout for drop-in users: <data-dir>/<task>/stdout.log
// and stderr.log as plain text (task-shim --plain-logs 1, executor --plain-log-files),
// beside the rotated CRI files, bounded by the same limits (max files x max file size).
// Real shims, real executors, real processes; synchronisation by polling files and
// marker files with a deadline, never by a fixed sleep.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startExecutor } from '../../src/app.js';
import { parseConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { shell, startTestExecutor, terminated } from '../support/executor.js';
import { killTaskTrees } from '../support/processes.js';
import { mountTmpfs } from '../support/tmpfs.js';
import { waitFor } from '../support/wait.js';

const SHIM = fileURLToPath(new URL('../../build/task-shim', import.meta.url));
/** Waits for the file named by $1 to exist (a task's way to wait for the test). */
const waitMarker = 'while [ ! -e "$1" ]; do sleep 0.01; done';

/** `cat FILE`, as the original's end-to-end test reads the logs. */
const cat = (file: string): string => execFileSync('cat', [file], { encoding: 'latin1' });
const size = (file: string): number => (fs.existsSync(file) ? fs.statSync(file).size : -1);

/** Every CRI record still in DIR/logs, oldest file first. */
function criRecords(dir: string): string[] {
  const files = fs.readdirSync(path.join(dir, 'logs')).sort((a, b) => parseInt(a.slice(7), 10) - parseInt(b.slice(7), 10));
  return files.flatMap((f) => fs.readFileSync(path.join(dir, 'logs', f), 'latin1').split('\n').filter(Boolean));
}

interface Shim {
  /** Resolves with the shim's exit code once it has exited. */
  done: Promise<number | null>;
}

/** A task dir of its own; every process of the task is killed at the end and the dir removed. */
function taskDir(t: TestContext, base = os.tmpdir()): string {
  const dir = fs.mkdtempSync(path.join(base, 'plain-logs-'));
  t.after(() => {
    try {
      const start = JSON.parse(fs.readFileSync(path.join(dir, 'start.json'), 'utf8'));
      process.kill(-start.pgid, 'SIGKILL');
    } catch {
      // never started, or already gone
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

function runShim(dir: string, options: string[], program: string[]): Shim {
  const child = spawn(SHIM, ['--dir', dir, ...options, '--', ...program], { stdio: 'ignore' });
  return { done: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
}

test('with --plain-logs, stdout.log and stderr.log hold exactly what the task wrote, while it runs and after', async (t) => {
  const dir = taskDir(t);
  const go = path.join(dir, 'go');
  // Bytes of every kind: no trailing newline, a tab, a byte that is not UTF-8, an empty line.
  const script = `printf 'first line\\n\\tsecond\\377'; printf 'oops\\n' >&2; ${waitMarker}; printf '\\nlast'; printf '\\nmore\\n' >&2`;
  const shim = runShim(dir, ['--plain-logs', '1'], ['sh', '-c', script, 'sh', go]);
  const stdout = path.join(dir, 'stdout.log');
  const stderr = path.join(dir, 'stderr.log');

  await waitFor('the first output in both files', () => size(stdout) === 19 && size(stderr) === 5);
  assert.equal(cat(stdout), 'first line\n\tsecond\xff', 'readable with cat while the task runs');
  assert.equal(cat(stderr), 'oops\n');

  fs.writeFileSync(go, '');
  assert.equal(await shim.done, 0);
  assert.equal(cat(stdout), 'first line\n\tsecond\xff\nlast');
  assert.equal(cat(stderr), 'oops\n\nmore\n');
  // The CRI files still get everything too.
  const payloads = criRecords(dir).map((r) => r.split(' ').slice(1).join(' '));
  assert.ok(payloads.includes('stdout F first line'), JSON.stringify(payloads));
  assert.ok(payloads.includes('stderr F oops'), JSON.stringify(payloads));
});

test('with --plain-logs, both files exist before the task writes anything', async (t) => {
  const dir = taskDir(t);
  const shim = runShim(dir, ['--plain-logs', '1'], ['true']);
  assert.equal(await shim.done, 0);
  assert.equal(cat(path.join(dir, 'stdout.log')), '');
  assert.equal(cat(path.join(dir, 'stderr.log')), '');
});

test('a plain log file stops at max files x max file size, and the CRI log says so once', async (t) => {
  const dir = taskDir(t);
  const go = path.join(dir, 'go');
  const cap = 2 * 1024;
  // 2040 bytes, then (after the test saw them) 11 more: the cap falls inside the second write.
  const script = `head -c 2040 /dev/zero | tr '\\0' x; ${waitMarker}; printf '0123456789\\n'; head -c 5000 /dev/zero | tr '\\0' y`;
  const shim = runShim(dir, ['--plain-logs', '1', '--log-max-bytes', '1024', '--log-max-files', '2'], ['sh', '-c', script, 'sh', go]);
  const stdout = path.join(dir, 'stdout.log');
  await waitFor('the first 2040 bytes in stdout.log', () => size(stdout) === 2040);
  fs.writeFileSync(go, '');
  assert.equal(await shim.done, 0);

  assert.equal(cat(stdout), 'x'.repeat(2040) + '01234567', 'the file ends exactly at the cap');
  assert.equal(size(stdout), cap);
  assert.equal(cat(path.join(dir, 'stderr.log')), '', 'each stream has a file and a cap of its own');
  const notes = criRecords(dir).filter((r) => r.includes('[task-shim]'));
  assert.ok(notes.length <= 1, `at most one note: ${JSON.stringify(notes)}`);
  // The note comes before the output it concerns, which may have rotated it away; the CRI
  // files themselves stay within the same bound.
  for (const note of notes) assert.match(note, / stderr F \[task-shim\] stdout\.log reached its limit of 2048 bytes; the rest of stdout is only in logs\/$/);
  const criBytes = fs.readdirSync(path.join(dir, 'logs')).reduce((sum, f) => sum + size(path.join(dir, 'logs', f)), 0);
  assert.ok(criBytes <= cap, `CRI files hold ${criBytes} bytes`);
  assert.ok(criRecords(dir).at(-1)!.endsWith('y'), 'the CRI log kept the latest output');
});

test('the limit note reaches the CRI log when the cap is hit by a small write', async (t) => {
  const dir = taskDir(t);
  const go = path.join(dir, 'go');
  const script = `head -c 2040 /dev/zero | tr '\\0' x; ${waitMarker}; printf '0123456789\\n'`;
  const shim = runShim(dir, ['--plain-logs', '1', '--log-max-bytes', '1024', '--log-max-files', '2'], ['sh', '-c', script, 'sh', go]);
  await waitFor('the first 2040 bytes in stdout.log', () => size(path.join(dir, 'stdout.log')) === 2040);
  fs.writeFileSync(go, '');
  assert.equal(await shim.done, 0);
  const tail = criRecords(dir).slice(-2).map((r) => r.split(' ').slice(1).join(' '));
  assert.deepEqual(tail, [
    'stderr F [task-shim] stdout.log reached its limit of 2048 bytes; the rest of stdout is only in logs/',
    'stdout F 0123456789',
  ]);
});

test('a task restarted in the same dir appends to the plain files and the cap covers both runs', async (t) => {
  const dir = taskDir(t);
  const options = ['--plain-logs', '1', '--log-max-bytes', '1024', '--log-max-files', '1'];
  assert.equal(await runShim(dir, options, ['sh', '-c', 'head -c 1000 /dev/zero | tr "\\0" a']).done, 0);
  assert.equal(await runShim(dir, options, ['sh', '-c', 'head -c 1000 /dev/zero | tr "\\0" b']).done, 0);
  assert.equal(cat(path.join(dir, 'stdout.log')), 'a'.repeat(1000) + 'b'.repeat(24));
});

test('without --plain-logs there is no stdout.log or stderr.log', async (t) => {
  const dir = taskDir(t);
  assert.equal(await runShim(dir, [], ['sh', '-c', 'echo out; echo err >&2']).done, 0);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['exit.json', 'logs', 'start.json']);
  assert.equal(await runShim(dir, ['--plain-logs', '0'], ['sh', '-c', 'echo out; echo err >&2']).done, 0);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['exit.json', 'logs', 'start.json']);
});

test('a plain log file on a full disk drops output, never blocks the task, and reports what it dropped', async (t) => {
  const tmpfs = mountTmpfs('256k');
  t.after(() => tmpfs.unmount());
  const dir = taskDir(t, tmpfs.path);
  const go = path.join(os.tmpdir(), `plain-logs-go-${process.pid}-${Date.now()}`);
  const past = path.join(os.tmpdir(), `plain-logs-past-${process.pid}-${Date.now()}`);
  const again = path.join(os.tmpdir(), `plain-logs-again-${process.pid}-${Date.now()}`);
  t.after(() => [go, past, again].forEach((f) => fs.rmSync(f, { force: true })));
  // 64 KiB per write, so nothing fits in the few bytes a full tmpfs may still take.
  const big = `head -c 65536 /dev/zero | tr '\\0' z`;
  const script = `echo before; ${waitMarker}; ${big}; ${big}; : > "$3"; while [ ! -e "$2" ]; do sleep 0.01; done; echo after`;
  const shim = runShim(dir, ['--plain-logs', '1'], ['sh', '-c', script, 'sh', go, again, past]);
  const stdout = path.join(dir, 'stdout.log');
  await waitFor('the first line', () => size(stdout) === 7);
  tmpfs.fill();
  fs.writeFileSync(go, '');
  // The task goes on to wait for the second marker: the full disk did not block it.
  await waitFor('the task past its big writes', () => fs.existsSync(past));
  fs.rmSync(path.join(tmpfs.path, 'filler'));
  fs.writeFileSync(again, '');
  assert.equal(await shim.done, 0);
  assert.equal(cat(stdout), 'before\nafter\n', 'what could not be written is left out, not half-written');
  const notes = criRecords(dir).filter((r) => r.includes('of stdout.log'));
  assert.equal(notes.length, 1, JSON.stringify(notes));
  assert.match(notes[0]!, / stderr F \[task-shim\] dropped 131072 bytes of stdout\.log: No space left on device$/);
});

test('the executor keeps <data-dir>/<task>/stdout.log and stderr.log by default with --http-listen-addr, and delete removes them', async (t) => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'plain-logs-te-'));
  const config = parseConfig(['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0', '--http-listen-addr', '127.0.0.1:0', '--log-level', 'silent']);
  assert.equal(config.plainLogFiles, true);
  const executor = await startExecutor(config, createLogger('silent'));
  t.after(async () => {
    await executor.close();
    killTaskTrees(dataDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  const base = `http://${executor.restAddress}`;
  const post = await fetch(`${base}/tasks`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'plain', spec: { process: { command: ['sh', '-c', 'echo hello; echo warn >&2'] } } }),
  });
  assert.ok(post.ok, await post.clone().text());
  const taskDir = path.join(dataDir, 'plain');
  await waitFor('the task to finish', async () => {
    const task = (await (await fetch(`${base}/tasks/plain`)).json()) as { status?: { state?: { terminated?: object } } };
    return task.status?.state?.terminated !== undefined;
  });
  assert.equal(cat(path.join(taskDir, 'stdout.log')), 'hello\n');
  assert.equal(cat(path.join(taskDir, 'stderr.log')), 'warn\n');

  assert.ok((await fetch(`${base}/tasks/plain`, { method: 'DELETE' })).ok);
  await waitFor('the task dir to go', async () => (await fetch(`${base}/tasks/plain`)).status === 404 && !fs.existsSync(taskDir));
});

test('--plain-log-files follows --http-listen-addr unless set, by flag or PLAIN_LOG_FILES', () => {
  const cases: [string[], NodeJS.ProcessEnv, boolean][] = [
    [[], {}, false],
    [['--http-listen-addr', '127.0.0.1:0'], {}, true],
    [[], { HTTP_LISTEN_ADDR: '127.0.0.1:0' }, true],
    [['--http-listen-addr', '127.0.0.1:0', '--plain-log-files=false'], {}, false],
    [['--http-listen-addr', '127.0.0.1:0'], { PLAIN_LOG_FILES: 'no' }, false],
    [['--plain-log-files'], {}, true],
    [['-plain-log-files=true'], {}, true],
    [[], { PLAIN_LOG_FILES: '1' }, true],
  ];
  for (const [argv, env, expected] of cases) {
    assert.equal(parseConfig(argv, env).plainLogFiles, expected, `${argv.join(' ')} ${JSON.stringify(env)}`);
  }
});

test('without --http-listen-addr the executor leaves no plain log files', async () => {
  const te = await startTestExecutor();
  try {
    assert.equal(te.executor.restAddress, undefined);
    await te.api.createTask({ task: shell('quiet', 'echo hello; echo warn >&2') });
    await waitFor('the task to finish', async () => terminated((await te.api.getTask({ name: 'quiet' })).task));
    assert.deepEqual(fs.readdirSync(path.join(te.dataDir, 'quiet')).filter((f) => f.endsWith('.log')), []);
    assert.ok(fs.readdirSync(path.join(te.dataDir, 'quiet', 'logs')).length > 0, 'the CRI files are there');
  } finally {
    await te.close();
  }
});
