// Least privilege for tasks (TaskSpec.securityContext and the executor's
// defaults) against real processes: what a task can do is read from its own
// /proc/self/status and /proc/self/limits and tried with mount and unshare.
// The same checks run for the process backend and for the sidecar backend
// (task-privs inside a fake main container, test/support/main-container.ts).
// Needs root (tests run as root here) and util-linux.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { ContainerSpec, SeccompProfileType, type SecurityContext, TaskSpec } from '../../gen/taskexecutor/v1/task.js';
import type { Config } from '../../src/config.js';
import { DEFAULT_CAPABILITIES, ALL_CAPABILITIES } from '../../src/model/privileges.js';
import { shell, startTestExecutor, terminated, tempDir, type TestExecutor } from '../support/executor.js';
import { logText } from '../support/log-files.js';
import { requireContainerd, startPrivateContainerd, type PrivateContainerd } from '../support/containerd.js';
import { killAllMainContainers, startMainContainer } from '../support/main-container.js';
import { ROOT } from '../support/subprocess.js';
import { waitFor } from '../support/wait.js';

const isRoot = process.getuid?.() === 0;
const skip = isRoot && existsSync('/usr/bin/nsenter') ? false : 'least-privilege tests need root and util-linux';

/** The CapEff/CapBnd hex of a set of capability names. */
function mask(names: readonly string[]): string {
  let bits = 0n;
  for (const name of names) bits |= 1n << BigInt(ALL_CAPABILITIES.indexOf(name as (typeof ALL_CAPABILITIES)[number]));
  return bits.toString(16).padStart(16, '0');
}

/** A field of /proc/self/status, e.g. field(status, 'CapEff'). */
const field = (text: string, name: string) => new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(text)?.[1];

/** Runs a shell script as a task with this security context; its end state and its output. */
async function run(te: TestExecutor, name: string, script: string, securityContext?: Partial<SecurityContext>, user?: string) {
  await te.api.createTask({ task: shell(name, script, user ? { user } : {}, securityContext ? { securityContext: securityContext as SecurityContext } : {}) });
  const end = await waitFor(`task ${name} to end`, async () => terminated((await te.api.getTask({ name })).task), { timeoutMs: 15_000 });
  return { end, out: logText(te.dataDir, name) };
}

/** What a task killed by its seccomp profile on execve ends as: a start failure, SIGSYS named, nothing run. */
function assertKilledBySeccompBeforeExec(end: Awaited<ReturnType<typeof run>>['end'], out: string): void {
  assert.equal(end.reason, 'ProcessStartFailed', end.message);
  assert.match(end.message, /^the task's process was killed by SIGSYS before it could exec sh: its seccomp profile kills a system call the start needs/);
  assert.equal(end.exitCode, 128 + 31);
  assert.equal(end.signal, 31);
  assert.equal(end.startedAt, undefined, 'it never started');
  assert.doesNotMatch(out, /never/);
}

const STATUS = 'cat /proc/self/status';

/** A profile root with these profile files (name -> the profile as JSON), for --seccomp-profile-root. */
function profileRoot(files: Record<string, unknown>): string {
  const root = join(tempDir('te-seccomp-'), 'profiles');
  mkdirSync(root);
  for (const [name, profile] of Object.entries(files)) writeFileSync(join(root, name), typeof profile === 'string' ? profile : JSON.stringify(profile));
  return root;
}
const localhost = (localhostProfile: string): Partial<SecurityContext> => ({
  seccompProfile: { type: SeccompProfileType.SECCOMP_PROFILE_TYPE_LOCALHOST, localhostProfile },
});
const DENY_MKDIR = {
  defaultAction: 'SCMP_ACT_ALLOW',
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
};
/** What sh, cat, echo and the supervisor's last steps (capset, prctl, execve) need, and mkdir does not get. */
const ALLOWED = [
  'read', 'write', 'open', 'openat', 'close', 'stat', 'fstat', 'lstat', 'newfstatat', 'statx', 'poll', 'ppoll', 'lseek',
  'mmap', 'mprotect', 'munmap', 'brk', 'rt_sigaction', 'rt_sigprocmask', 'rt_sigreturn', 'ioctl', 'pread64', 'pwrite64',
  'readv', 'writev', 'access', 'faccessat', 'faccessat2', 'pipe', 'pipe2', 'select', 'pselect6', 'sched_yield', 'mremap',
  'madvise', 'dup', 'dup2', 'dup3', 'nanosleep', 'clock_nanosleep', 'getpid', 'clone', 'fork', 'vfork', 'execve',
  'execveat', 'exit', 'exit_group', 'wait4', 'waitid', 'kill', 'uname', 'fcntl', 'flock', 'fsync', 'getcwd', 'chdir',
  'fchdir', 'readlink', 'readlinkat', 'umask', 'gettimeofday', 'getrlimit', 'prlimit64', 'getrusage', 'sysinfo', 'getuid',
  'getgid', 'geteuid', 'getegid', 'setuid', 'setgid', 'setgroups', 'getgroups', 'setpgid', 'getppid', 'getpgrp', 'setsid',
  'getpgid', 'getsid', 'capget', 'capset', 'prctl', 'arch_prctl', 'set_tid_address', 'set_robust_list', 'rseq', 'futex',
  'getrandom', 'clock_gettime', 'clock_getres', 'time', 'getdents', 'getdents64', 'sigaltstack', 'statfs', 'fstatfs',
  'getpriority', 'sched_getaffinity', 'tgkill', 'gettid', 'fadvise64', 'mincore', 'membarrier',
];
/** An allowlist (defaultAction ERRNO, EACCES) that lacks mkdir, and one that also lacks execve. */
const ALLOWLIST = (without: string[] = []) => ({
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: 13,
  syscalls: [
    { names: ALLOWED.filter((n) => !without.includes(n)), action: 'SCMP_ACT_ALLOW' },
    // As Docker's profile: ENOSYS, so that libc falls back to clone.
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
  ],
});
const DEFAULT_MASK = mask(DEFAULT_CAPABILITIES);

/** A static i386 program that exits with 7 (built with binutils), or undefined where that cannot run. */
let i386: string | undefined | null = null;
function i386Program(): string | undefined {
  if (i386 !== null) return i386;
  const dir = tempDir('te-i386-');
  const source = join(dir, 'exit7.s');
  writeFileSync(source, '.globl _start\n_start:\n mov $1, %eax\n mov $7, %ebx\n int $0x80\n');
  const built =
    spawnSync('as', ['--32', '-o', join(dir, 'exit7.o'), source]).status === 0 &&
    spawnSync('ld', ['-m', 'elf_i386', '-o', join(dir, 'exit7'), join(dir, 'exit7.o')]).status === 0 &&
    spawnSync(join(dir, 'exit7')).status === 7;
  i386 = built ? join(dir, 'exit7') : undefined;
  return i386;
}

function backendSuite(backend: 'process' | 'sidecar') {
  describe(`least privilege, ${backend} backend`, { skip }, () => {
    const mainName = `te-privs-main-${process.pid}`;
    const overrides = async (extra: Partial<Config>): Promise<Partial<Config>> => {
      if (backend === 'process') return extra;
      return { enableSidecarMode: true, mainContainerName: mainName, stopGraceMs: 1000, ...extra };
    };
    let te: TestExecutor;
    let full: TestExecutor;
    before(async () => {
      if (backend === 'sidecar') await startMainContainer({ name: mainName });
      te = await startTestExecutor(await overrides({ seccompProfileRoot: profileRoot({ 'deny-mkdir.json': DENY_MKDIR }) }));
      full = await startTestExecutor(await overrides({ taskCapabilities: 'all', taskSeccomp: 'unconfined' }));
    });
    after(async () => {
      await te?.close();
      await full?.close();
      if (backend === 'sidecar') await killAllMainContainers();
    });

    test("a root task keeps Docker's default capabilities and the default seccomp profile, and cannot mount or unshare", async () => {
      const { end, out } = await run(
        te,
        'defaults',
        `${STATUS}; mount -t tmpfs none /mnt && echo MOUNTED; unshare -n true && echo UNSHARED; echo done`,
      );
      assert.equal(end.reason, 'Succeeded', end.message);
      assert.equal(field(out, 'CapEff'), DEFAULT_MASK);
      assert.equal(field(out, 'CapPrm'), DEFAULT_MASK);
      assert.equal(field(out, 'CapBnd'), DEFAULT_MASK);
      assert.equal(field(out, 'CapInh'), '0000000000000000');
      assert.equal(field(out, 'CapAmb'), '0000000000000000');
      assert.equal(field(out, 'Seccomp'), '2', 'a seccomp filter is loaded');
      assert.equal(field(out, 'NoNewPrivs'), '0', 'no_new_privs only when asked');
      assert.doesNotMatch(out, /MOUNTED|UNSHARED/);
      assert.match(out, /^done$/m, 'the script went on after the refusals');
    });

    test('the default profile denies unshare with EPERM even to a task that has every capability; Unconfined lifts it', async () => {
      const all = { capabilities: { add: ['ALL'], drop: [] } };
      const filtered = await run(te, 'filtered', `grep CapEff /proc/self/status; unshare -n true; echo "rc=$?"`, all);
      // Every capability the executor has (this machine's may lack some, e.g. SYS_RESOURCE in a container).
      assert.equal(field(filtered.out, 'CapEff'), field(readFileSync('/proc/self/status', 'utf8'), 'CapEff'));
      // stdout and stderr are separate pipes: their lines may be logged in either order.
      assert.match(filtered.out, /unshare failed: Operation not permitted/);
      assert.match(filtered.out, /^rc=1$/m);
      const open = await run(te, 'unconfined', 'unshare -n true; echo "rc=$?"', {
        ...all,
        seccompProfile: { type: SeccompProfileType.SECCOMP_PROFILE_TYPE_UNCONFINED, localhostProfile: '' },
      });
      assert.match(open.out, /^rc=0$/m);
    });

    test('a 32-bit program runs under the default profile (its compat architecture is in the filter, not killed by SIGSYS)', async (t) => {
      const program = i386Program();
      if (!program) return t.skip('no as/ld for i386, or no IA32 emulation in this kernel');
      const { end } = await run(te, 'i386', program);
      assert.deepEqual([end.exitCode, end.signal], [7, 0], end.message);
    });

    test('a LOCALHOST profile file that denies mkdir with EPERM (errnoRet): mkdir fails, the rest of the task runs', async () => {
      const { end, out } = await run(
        te,
        'profile-mkdir',
        'd=/tmp/te-seccomp-$$; mkdir "$d" && echo MADE; echo "rc=$?"; grep Seccomp: /proc/self/status; rmdir "$d" 2>/dev/null; echo done',
        localhost('deny-mkdir.json'),
      );
      assert.equal(end.reason, 'Succeeded', end.message);
      assert.match(out, /mkdir: .*Operation not permitted/);
      assert.doesNotMatch(out, /MADE/);
      assert.match(out, /^rc=1$/m);
      assert.match(out, /^Seccomp:\s+2$/m);
      assert.match(out, /^done$/m);
    });

    test('noNewPrivileges sets NoNewPrivs', async () => {
      const { out } = await run(te, 'nnp', STATUS, { noNewPrivileges: true });
      assert.equal(field(out, 'NoNewPrivs'), '1');
    });

    test('rlimits are the task’s, as /proc/self/limits shows', async () => {
      const { end, out } = await run(te, 'limits', 'cat /proc/self/limits', {
        rlimits: [
          { name: 'nofile', soft: 123, hard: 456 },
          { name: 'core', soft: 0, hard: -1 },
          { name: 'nproc', soft: 777, hard: 888 },
        ],
      });
      assert.equal(end.reason, 'Succeeded', end.message);
      assert.match(out, /Max open files\s+123\s+456\s+files/);
      assert.match(out, /Max core file size\s+0\s+unlimited\s+bytes/);
      assert.match(out, /Max processes\s+777\s+888\s+processes/);
    });

    test('capabilities.add and drop change exactly what they name', async () => {
      const { out } = await run(te, 'add-drop', STATUS, { capabilities: { add: ['NET_ADMIN', 'cap_sys_time'], drop: ['CHOWN', 'KILL'] } });
      const expected = mask([...DEFAULT_CAPABILITIES.filter((c) => c !== 'CHOWN' && c !== 'KILL'), 'NET_ADMIN', 'SYS_TIME']);
      assert.equal(field(out, 'CapEff'), expected);
      assert.equal(field(out, 'CapBnd'), expected);
      const only = await run(te, 'drop-all', STATUS, { capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] } });
      assert.equal(field(only.out, 'CapEff'), mask(['NET_BIND_SERVICE']));
    });

    test('a non-root task has no capabilities; its bounding set is the default', async () => {
      const { end, out } = await run(te, 'nobody', STATUS, undefined, '65534');
      assert.equal(end.reason, 'Succeeded', end.message);
      assert.equal(field(out, 'Uid'), '65534');
      assert.equal(field(out, 'CapEff'), '0000000000000000');
      assert.equal(field(out, 'CapPrm'), '0000000000000000');
      assert.equal(field(out, 'CapBnd'), DEFAULT_MASK);
    });

    test('--task-capabilities all and --task-seccomp unconfined give tasks the executor’s privileges, as the original did', async () => {
      const own = readFileSync('/proc/self/status', 'utf8');
      const { end, out } = await run(full, 'full', `${STATUS}; unshare -n true && echo UNSHARED`);
      assert.equal(end.reason, 'Succeeded', end.message);
      assert.equal(field(out, 'CapEff'), field(own, 'CapEff'));
      assert.equal(field(out, 'CapBnd'), field(own, 'CapBnd'));
      assert.equal(field(out, 'Seccomp'), '0');
      assert.match(out, /UNSHARED/);
      // A task's own drop still applies there.
      const dropped = await run(full, 'full-drop', STATUS, { capabilities: { add: [], drop: ['SYS_ADMIN'] } });
      const expected = (BigInt(`0x${field(own, 'CapEff')}`) & ~(1n << 21n)).toString(16).padStart(16, '0');
      assert.equal(field(dropped.out, 'CapEff'), expected);
    });
  });
}

backendSuite('process');
backendSuite('sidecar');

describe('seccomp profile files, process backend', { skip }, () => {
  let te: TestExecutor;
  let root: string;
  before(async () => {
    root = profileRoot({
      'allowlist.json': ALLOWLIST(['mkdir', 'mkdirat']),
      'no-execve.json': ALLOWLIST(['mkdir', 'mkdirat', 'execve', 'execveat']),
      'kill-execve.json': { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['execve', 'execveat'], action: 'SCMP_ACT_KILL_PROCESS' }] },
      'kill-thread-execve.json': { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['execve', 'execveat'], action: 'SCMP_ACT_KILL' }] },
      'bad.json': '{"defaultAction": "SCMP_ACT_ALLOW", ',
      'bad-action.json': { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_DENY' }] },
      'bad-name.json': { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdri'], action: 'SCMP_ACT_ERRNO' }] },
      'args.json': { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }] }] },
    });
    writeFileSync(join(root, '..', 'outside.json'), JSON.stringify(DENY_MKDIR));
    te = await startTestExecutor({ seccompProfileRoot: root });
  });
  after(async () => {
    await te?.close();
  });

  test('an allowlist (defaultAction SCMP_ACT_ERRNO) runs the program; what it lacks fails with defaultErrnoRet', async () => {
    const { end, out } = await run(te, 'allowlist', 'echo hello; mkdir /tmp/te-seccomp-$$ && echo MADE; echo "rc=$?"', localhost('allowlist.json'));
    assert.equal(end.reason, 'Succeeded', end.message);
    assert.match(out, /^hello$/m);
    assert.match(out, /mkdir: .*Permission denied/, 'errno 13 (EACCES), the profile\'s defaultErrnoRet');
    assert.match(out, /^rc=1$/m);
  });

  test('an allowlist without execve: the start fails, saying the program could not be executed', async () => {
    const { end } = await run(te, 'no-execve', 'echo never', localhost('no-execve.json'));
    assert.equal(end.reason, 'ProcessStartFailed');
    assert.match(end.message, /exec sh: Permission denied/);
  });

  // The filter kills the task's process in its execve: the program never ran, so this is a
  // start failure saying so, not an exit "killed by signal 31" as if the program had run.
  for (const profile of ['kill-execve.json', 'kill-thread-execve.json']) {
    test(`a profile that kills on execve (${profile}): a start failure naming SIGSYS and the seccomp profile, not a run`, async () => {
      const name = profile.replace('.json', '');
      const { end, out } = await run(te, name, 'echo never', localhost(profile));
      assertKilledBySeccompBeforeExec(end, out);
    });
  }

  test('a program that execs and is then killed by a signal is an ordinary run, not a start failure', async () => {
    const { end } = await run(te, 'killed-after-exec', 'kill -SYS $$', localhost('allowlist.json'));
    assert.equal(end.reason, 'Failed', end.message);
    assert.equal(end.exitCode, 128 + 31);
    assert.equal(end.signal, 31);
    assert.ok(end.startedAt, 'it ran');
  });

  test('a bad profile file is INVALID_ARGUMENT at Create, naming the field, the file and the problem', async () => {
    const field = /^task\.spec\.securityContext\.seccompProfile\.localhostProfile/;
    const cases: [string, RegExp][] = [
      ['missing.json', /cannot read seccomp profile .*\/profiles\/missing\.json: no such file/],
      ['bad.json', /seccomp profile .*bad\.json: is not valid JSON/],
      ['bad-action.json', /syscalls\[0\] \(mkdir\)\.action: "SCMP_ACT_DENY" is not a supported action; use one of SCMP_ACT_ALLOW/],
      ['bad-name.json', /unknown syscall "mkdri" \(this node's libseccomp knows no such name\)/],
      ['args.json', /syscalls\[0\] \(personality\): has "args" conditions, which process and sidecar tasks do not support/],
      ['../outside.json', /"\.\.\/outside\.json" is outside the seccomp profile root .*--seccomp-profile-root/],
    ];
    for (const [file, message] of cases) {
      await assert.rejects(te.api.createTask({ task: shell(`bad-${cases.findIndex((c) => c[0] === file)}`, 'true', {}, { securityContext: localhost(file) as SecurityContext }) }), (error: ServiceError) => {
        assert.equal(error.code, status.INVALID_ARGUMENT, `${file}: ${error.details}`);
        assert.match(error.details, field);
        assert.match(error.details, message);
        return true;
      });
    }
    const names = (await te.api.listTasks()).tasks.map((t) => t.name);
    assert.deepEqual(names.filter((n) => n.startsWith('bad-')), [], 'nothing was created for the bad ones');
  });
});


// In sidecar mode task-privs loads the filter and execs the program after nsenter has
// exec'ed: the death in execve is seen by task-privs (the program's parent), not by the shim.
describe('seccomp profile files, sidecar backend', { skip }, () => {
  const mainName = `te-privs-kill-main-${process.pid}`;
  let te: TestExecutor;
  before(async () => {
    await startMainContainer({ name: mainName });
    te = await startTestExecutor({
      enableSidecarMode: true,
      mainContainerName: mainName,
      stopGraceMs: 1000,
      seccompProfileRoot: profileRoot({
        'kill-execve.json': { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['execve', 'execveat'], action: 'SCMP_ACT_KILL_PROCESS' }] },
        'allowlist.json': ALLOWLIST(['mkdir', 'mkdirat']),
      }),
    });
  });
  after(async () => {
    await te?.close();
    await killAllMainContainers();
  });

  test('a profile that kills on execve: a start failure naming SIGSYS and the seccomp profile, as for a process task', async () => {
    const { end, out } = await run(te, 'sidecar-kill-execve', 'echo never', localhost('kill-execve.json'));
    assertKilledBySeccompBeforeExec(end, out);
  });

  test('a program that execs and is then killed by a signal is an ordinary run; its exit code is the task\'s', async () => {
    const killed = await run(te, 'sidecar-killed-after-exec', 'kill -SYS $$', localhost('allowlist.json'));
    assert.equal(killed.end.reason, 'Failed', killed.end.message);
    assert.deepEqual([killed.end.exitCode, killed.end.signal], [128 + 31, 31]);
    assert.ok(killed.end.startedAt, 'it ran');
    const exited = await run(te, 'sidecar-exit-3', 'exit 3', localhost('allowlist.json'));
    assert.deepEqual([exited.end.reason, exited.end.exitCode, exited.end.signal], ['Failed', 3, 0]);
  });
});
describe("the task's rlimits, process backend", { skip }, () => {
  let te: TestExecutor;
  before(async () => {
    te = await startTestExecutor();
  });
  after(async () => {
    await te?.close();
  });

  // The supervisor's own set-up before exec (compiling the seccomp filter, reading the user
  // database) needs file descriptors of its own; the task's nofile limit is not for it.
  test('a task with a small open-file limit starts under the default seccomp profile, as a named user', async () => {
    const { end, out } = await run(te, 'few-files', 'grep -E "^(Seccomp|Uid):" /proc/self/status; ulimit -n', { rlimits: [{ name: 'nofile', soft: 8, hard: 8 }] }, 'nobody');
    assert.equal(end.reason, 'Succeeded', end.message);
    assert.match(out, /^Seccomp:\s+2$/m, 'the default profile is loaded');
    assert.match(out, /^Uid:\s+65534\s/m);
    assert.match(out, /^8$/m, 'the task has its limit');
  });
});

describe('the supervisor names the privilege a start lacked', { skip }, () => {
  test('raising a hard rlimit without CAP_SYS_RESOURCE fails the start with a message saying so', () => {
    const dir = tempDir('te-privs-shim-');
    spawnSync('chown', ['65534', dir]);
    const shim = join(ROOT, 'build', 'task-shim');
    // An unprivileged supervisor (as an executor that is not root): its hard limit cannot grow.
    const result = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', shim, '--dir', dir, '--rlimit', 'nofile=1:unlimited', '--', 'true'], {
      encoding: 'utf8',
    });
    assert.equal(result.status, 0, result.stderr);
    const exit = JSON.parse(readFileSync(join(dir, 'exit.json'), 'utf8'));
    assert.equal(exit.exitCode, 1);
    assert.match(exit.startError, /rlimit nofile: Operation not permitted \(raising a hard limit needs CAP_SYS_RESOURCE\)/);
  });

  test('a profile rule naming a syscall libseccomp does not know fails the start, naming it (a file that went bad after Create)', () => {
    const dir = tempDir('te-privs-shim-');
    const shim = join(ROOT, 'build', 'task-shim');
    const result = spawnSync(shim, ['--dir', dir, '--seccomp-default', 'allow', '--seccomp-rule', 'errno=1:mkdir,mkdri', '--', 'true'], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    const exit = JSON.parse(readFileSync(join(dir, 'exit.json'), 'utf8'));
    assert.match(exit.startError, /seccomp profile: unknown syscall "mkdri"/);
  });

  test('a bounding set the supervisor cannot drop (no CAP_SETPCAP) fails the start with a message saying so', () => {
    const dir = tempDir('te-privs-shim-');
    spawnSync('chown', ['65534', dir]);
    const shim = join(ROOT, 'build', 'task-shim');
    const result = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', shim, '--dir', dir, '--caps', 'CHOWN', '--', 'true'], {
      encoding: 'utf8',
    });
    assert.equal(result.status, 0, result.stderr);
    const exit = JSON.parse(readFileSync(join(dir, 'exit.json'), 'utf8'));
    assert.match(exit.startError, /bounding set: Operation not permitted \(needs CAP_SETPCAP\)/);
  });
});

describe('least privilege, container backend (private containerd)', { skip }, () => {
  let ctrd: PrivateContainerd;
  let te: TestExecutor;
  before(async () => {
    requireContainerd();
    ctrd = await startPrivateContainerd();
    te = await startTestExecutor({ enableContainerMode: true, criSocket: ctrd.socket, containerCgroupParent: ctrd.cgroupParent });
  });
  after(async () => {
    try {
      if (te) {
        await te.api.setTasks({ tasks: [] });
        await waitFor('every task to be deleted', async () => (await te.api.listTasks()).tasks.length === 0, { timeoutMs: 30_000 });
      }
    } finally {
      await te?.close();
      await ctrd?.stop();
    }
  });

  test('the securityContext reaches the container: capabilities added and dropped, NoNewPrivs, the runtime default profile', async () => {
    const name = 'ctr-privs';
    await te.api.createTask({
      task: {
        name,
        spec: TaskSpec.fromPartial({
          runtime: { $case: 'container', value: ContainerSpec.fromPartial({ image: ctrd.images.busybox, command: ['cat', '/proc/self/status'] }) },
          securityContext: { capabilities: { add: ['NET_ADMIN'], drop: ['CHOWN'] }, noNewPrivileges: true },
        }),
      },
    });
    const end = await waitFor('the container task to end', async () => terminated((await te.api.getTask({ name })).task), { timeoutMs: 60_000 });
    assert.equal(end.reason, 'Succeeded', end.message);
    const out = logText(te.dataDir, name);
    assert.equal(field(out, 'CapEff'), mask([...DEFAULT_CAPABILITIES.filter((c) => c !== 'CHOWN'), 'NET_ADMIN']));
    assert.equal(field(out, 'NoNewPrivs'), '1');
    assert.equal(field(out, 'Seccomp'), '2', "the runtime's default profile");
  });
});
