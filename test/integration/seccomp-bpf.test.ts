// Seccomp filters compiled once per executor (src/runtime/shim/compiled-filters.ts):
// task-shim --seccomp-export writes a filter's program, --seccomp-bpf loads it
// instead of building the filter, and a file that is missing, damaged or not
// private to the supervisor's user means the filter is built in place. What a task can do is read from its own
// /proc/self/status and tried with mkdir and unshare, as in least-privilege.test.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { DEFAULT_PRIVILEGES } from '../../src/model/privileges.js';
import { CompiledFilters, FILTERS_DIR } from '../../src/runtime/shim/compiled-filters.js';
import { TaskPrivileges } from '../../src/runtime/shim/task-privileges.js';
import { shell, startTestExecutor, tempDir, terminated } from '../support/executor.js';
import { logText } from '../support/log-files.js';
import { ROOT } from '../support/subprocess.js';
import { waitFor } from '../support/wait.js';

const SHIM = join(ROOT, 'build', 'task-shim');
const isRoot = process.getuid?.() === 0;
const skip = isRoot && existsSync('/usr/bin/unshare') && existsSync('/usr/bin/setpriv') ? false : 'these tests need root and util-linux';

/** What a task sees: its seccomp mode and no_new_privs, whether mkdir and unshare work. */
const PROBE = 'grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status; mkdir "$0/made" && echo mkdir=ok; unshare -U true && echo unshare=ok; echo end';

/** Runs PROBE under a shim with these options (prefix: a command to run the shim with); its output lines. */
function probe(options: string[], prefix: string[] = []): string[] {
  const dir = tempDir('te-bpf-task-');
  if (prefix.length > 0) chownSync(dir, 65534, 65534);
  const argv = [...prefix, SHIM, '--dir', dir, ...options, '--', 'sh', '-c', PROBE, dir];
  const result = spawnSync(argv[0] ?? '', argv.slice(1), { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  const exit = JSON.parse(readFileSync(join(dir, 'exit.json'), 'utf8'));
  assert.equal(exit.startError, undefined, `the task started: ${exit.startError}`);
  const out = spawnSync('sh', ['-c', `cat "${dir}"/logs/*`], { encoding: 'utf8' }).stdout;
  return out
    .split('\n')
    .filter((line) => / stdout F /.test(line))
    .map((line) => line.slice(line.indexOf(' stdout F ') + 10));
}

/** A filter that the default profile's options do not describe: a task under it cannot mkdir. */
const DENY_MKDIR = ['--seccomp-default', 'allow', '--seccomp-rule', 'errno=1:mkdir'];
/** What PROBE prints under the default profile built by a root shim. */
const BUILT = ['NoNewPrivs:\t0', 'Seccomp:\t2', 'mkdir=ok', 'end'];

function exportFilter(file: string, filter: string[]): void {
  const result = spawnSync(SHIM, ['--seccomp-export', file, ...filter], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
}

describe('seccomp filters compiled once', { skip }, () => {
  test('a task given --seccomp-bpf runs under that program, not a filter the shim builds', () => {
    const file = join(tempDir('te-bpf-'), 'deny-mkdir.bpf');
    exportFilter(file, DENY_MKDIR);
    assert.equal(statSync(file).mode & 0o777, 0o600, 'the program is private');
    // The options say the default profile (which allows mkdir); the program denies mkdir only.
    const out = probe(['--seccomp', 'default', '--seccomp-bpf', file]);
    assert.ok(out.includes('Seccomp:\t2'), out.join('\n'));
    assert.ok(!out.includes('mkdir=ok'), `mkdir was denied by the program: ${out.join('\n')}`);
    assert.ok(out.includes('unshare=ok'), `unshare was allowed by the program: ${out.join('\n')}`);
  });

  test('the default profile from its exported program works as the one built in place, for root and non-root supervisors', () => {
    const dir = tempDir('te-bpf-');
    const file = join(dir, 'default.bpf');
    exportFilter(file, ['--seccomp', 'default']);
    const built = probe(['--seccomp', 'default']);
    assert.deepEqual(built, ['NoNewPrivs:\t0', 'Seccomp:\t2', 'mkdir=ok', 'end']);
    assert.deepEqual(probe(['--seccomp', 'default', '--seccomp-bpf', file]), built);
    // Without CAP_SYS_ADMIN the kernel takes the program only with no_new_privs, as libseccomp's load.
    chownSync(dir, 65534, 65534);
    chownSync(file, 65534, 65534);
    const nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--'];
    const builtAsNobody = probe(['--seccomp', 'default'], nobody);
    assert.deepEqual(builtAsNobody, ['NoNewPrivs:\t1', 'Seccomp:\t2', 'mkdir=ok', 'end']);
    assert.deepEqual(probe(['--seccomp', 'default', '--seccomp-bpf', file], nobody), builtAsNobody);
  });

  test('a missing, unreadable or broken program file means the filter is built in place', () => {
    const dir = tempDir('te-bpf-');
    const broken = join(dir, 'broken.bpf');
    writeFileSync(broken, 'not a program'); // 13 bytes: not whole instructions
    const unreadable = join(dir, 'unreadable.bpf');
    exportFilter(unreadable, DENY_MKDIR);
    chmodSync(unreadable, 0o000);
    chownSync(dir, 65534, 65534);
    const nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--'];
    for (const file of [join(dir, 'missing.bpf'), broken]) {
      assert.deepEqual(probe(['--seccomp', 'default', '--seccomp-bpf', file]), BUILT, file);
    }
    assert.deepEqual(probe(['--seccomp', 'default', '--seccomp-bpf', unreadable], nobody), ['NoNewPrivs:\t1', 'Seccomp:\t2', 'mkdir=ok', 'end']);
  });

  // Each file below holds (or points at) the deny-mkdir program: a task that could mkdir ran
  // under the default profile the shim compiled itself, i.e. the file was refused.
  test('a program cut short or damaged is not loaded: the filter is built in place', () => {
    const dir = tempDir('te-bpf-');
    const short = join(dir, 'short.bpf');
    exportFilter(short, DENY_MKDIR);
    truncateSync(short, statSync(short).size - 8); // whole instructions, one fewer than written
    const damaged = join(dir, 'damaged.bpf');
    exportFilter(damaged, DENY_MKDIR);
    const bytes = readFileSync(damaged);
    bytes[bytes.length - 3] = (bytes[bytes.length - 3] ?? 0) ^ 0xff;
    writeFileSync(damaged, bytes);
    for (const file of [short, damaged]) assert.deepEqual(probe(['--seccomp', 'default', '--seccomp-bpf', file]), BUILT, file);
  });

  test('a program that others could have written, or reached through a symlink, is not loaded', () => {
    const cases: Record<string, string> = {};
    const add = (name: string, prepare: (file: string, dir: string) => string | undefined): void => {
      const dir = tempDir('te-bpf-');
      const file = join(dir, 'p.bpf');
      exportFilter(file, DENY_MKDIR);
      cases[name] = prepare(file, dir) ?? file;
    };
    add('a symlink to a private program', (file, dir) => {
      symlinkSync(file, join(dir, 'link.bpf'));
      return join(dir, 'link.bpf');
    });
    add('a directory others can write', (_file, dir) => void chmodSync(dir, 0o777));
    add('a sticky world-writable directory', (_file, dir) => void chmodSync(dir, 0o1777));
    add('a directory owned by another user', (_file, dir) => void chownSync(dir, 65534, 65534));
    add('a directory reached through a symlink', (file, dir) => {
      const real = join(dir, 'real');
      mkdirSync(real, { mode: 0o700 });
      copyFileSync(file, join(real, 'p.bpf'));
      chmodSync(join(real, 'p.bpf'), 0o600);
      symlinkSync(real, join(dir, 'via'));
      return join(dir, 'via', 'p.bpf');
    });
    add('a file owned by another user', (file) => void chownSync(file, 65534, 65534));
    add('a group-writable file', (file) => void chmodSync(file, 0o620));
    add('a FIFO (no hang)', (_file, dir) => {
      assert.equal(spawnSync('mkfifo', ['-m', '600', join(dir, 'fifo')]).status, 0);
      return join(dir, 'fifo');
    });
    const loaded = Object.entries(cases).filter(([, file]) => probe(['--seccomp', 'default', '--seccomp-bpf', file]).join('\n') !== BUILT.join('\n'));
    assert.deepEqual(loaded.map(([name]) => name), [], 'these were loaded, not built in place');
    // The same program from a private place is loaded (mkdir denied): the refusals above are the checks'.
    const ok = join(tempDir('te-bpf-'), 'p.bpf');
    exportFilter(ok, DENY_MKDIR);
    assert.ok(!probe(['--seccomp', 'default', '--seccomp-bpf', ok]).includes('mkdir=ok'));
  });

  test('a task with a small open-file limit starts under a program read from its file', () => {
    const file = join(tempDir('te-bpf-'), 'deny-mkdir.bpf');
    exportFilter(file, DENY_MKDIR);
    const out = probe(['--seccomp', 'default', '--seccomp-bpf', file, '--rlimit', 'nofile=8:8']);
    assert.ok(out.includes('Seccomp:\t2') && !out.includes('mkdir=ok'), `the program was loaded: ${out.join('\n')}`);
  });

  test('--seccomp-export refuses options other than a filter\'s, and an existing file', () => {
    const file = join(tempDir('te-bpf-'), 'p.bpf');
    const cwd = spawnSync(SHIM, ['--seccomp-export', file, '--seccomp', 'default', '--cwd', '/'], { encoding: 'utf8' });
    assert.equal(cwd.status, 1);
    assert.match(cwd.stderr, /--seccomp-export takes only --seccomp, --seccomp-default and --seccomp-rule, got "--cwd"/);
    assert.ok(!existsSync(file));
    exportFilter(file, DENY_MKDIR);
    const again = spawnSync(SHIM, ['--seccomp-export', file, '--seccomp', 'default'], { encoding: 'utf8' });
    assert.equal(again.status, 1);
    assert.match(again.stderr, /File exists/);
  });

  test('an export that fails leaves nothing in the filters directory, and its tasks build the filter in place', async () => {
    // A shim whose export writes part of the program and fails (as one killed by the export's timeout would).
    const failing = join(tempDir('te-bpf-shim-'), 'failing-shim');
    writeFileSync(failing, '#!/bin/sh\nprintf partial > "$2"\nexit 1\n', { mode: 0o755 });
    const dir = join(tempDir('te-bpf-'), FILTERS_DIR);
    const filters = new CompiledFilters(failing, dir);
    assert.equal(filters.fileFor(['--seccomp', 'default']), undefined);
    await filters.settled();
    assert.equal(filters.fileFor(['--seccomp', 'default']), undefined, 'no program: the filter is built in place');
    assert.deepEqual(readdirSync(dir), [], 'no partial program left behind');
  });

  test('the executor passes a process task the program once exported, in a private directory, and never to task-privs', async () => {
    const privileges = TaskPrivileges.forShim(SHIM, DEFAULT_PRIVILEGES);
    const first = privileges.args(undefined, { compiled: true }).args;
    assert.deepEqual(first.slice(first.indexOf('--seccomp'), first.indexOf('--seccomp') + 2), ['--seccomp', 'default']);
    await privileges.compiledFilters?.settled();
    const later = privileges.args(undefined, { compiled: true }).args;
    const at = later.indexOf('--seccomp-bpf');
    assert.ok(at > 0, `--seccomp-bpf once exported: ${later.join(' ')}`);
    const file = later[at + 1] ?? '';
    assert.equal((statSync(file).size - 16) % 8, 0, 'a header and whole instructions');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(dirname(file)).mode & 0o777, 0o700, 'in a private directory');
    assert.ok(!privileges.args(undefined).args.includes('--seccomp-bpf'), 'not for task-privs (sidecar tasks)');
  });

  test('a process task of a running executor is started with the default filter compiled once, and is under it', async () => {
    const dataDir = tempDir();
    // A previous executor's file: the directory is emptied when this one starts.
    mkdirSync(join(dataDir, FILTERS_DIR), { mode: 0o700 });
    writeFileSync(join(dataDir, FILTERS_DIR, 'stale.bpf'), 'old');
    const te = await startTestExecutor({}, dataDir);
    try {
      let n = 0;
      // The export runs beside the executor's start-up: a task started before it ends builds its
      // filter in place, so tasks are started until one is given the file.
      const out = await waitFor(
        'a task whose shim was given --seccomp-bpf',
        async () => {
          const name = `bpf-${n++}`;
          // The task's parent is its shim: its argv says what it was given.
          await te.api.createTask({ task: shell(name, 'tr "\\0" "\\n" < /proc/$PPID/cmdline; grep ^Seccomp: /proc/self/status; unshare -U true || echo unshare=denied') });
          await waitFor(`task ${name} to end`, async () => terminated((await te.api.getTask({ name })).task));
          const text = logText(te.dataDir, name);
          return text.includes('--seccomp-bpf') ? text : undefined;
        },
        { timeoutMs: 20_000 },
      );
      const file = out.split('\n')[out.split('\n').indexOf('--seccomp-bpf') + 1] ?? '';
      assert.equal(dirname(file), join(dataDir, FILTERS_DIR), 'kept in the data dir');
      assert.equal(statSync(dirname(file)).mode & 0o777, 0o700, `${file} is in a private directory`);
      assert.ok(!existsSync(join(dataDir, FILTERS_DIR, 'stale.bpf')), 'a previous executor\'s files are removed');
      assert.match(out, /^Seccomp:\s+2$/m);
      assert.match(out, /^unshare=denied$/m, 'the default profile denies unshare');
    } finally {
      await te.close();
    }
  });

  test('the executor\'s default filter is compiled at start-up, before any task asks for it', async () => {
    const privileges = TaskPrivileges.forShim(SHIM, DEFAULT_PRIVILEGES);
    privileges.precompileDefault();
    await privileges.compiledFilters?.settled();
    assert.ok(privileges.args(undefined, { compiled: true }).args.includes('--seccomp-bpf'));
  });
});
