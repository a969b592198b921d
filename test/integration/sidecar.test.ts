// Sidecar mode against real namespaces: a fake main container made with
// unshare (test/support/main-container.ts), a real executor, the gRPC API.
// Needs root, nsenter and unshare (util-linux).
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { type Config, parseConfig } from '../../src/config.js';
import { SCRIPT, ScriptServer, sha256, withArtifacts } from '../support/artifact-server.js';
import { processTask, shell, startTestExecutor, stateOf, tempDir, terminated, type TestExecutor } from '../support/executor.js';
import { killAllMainContainers, type MainContainer, startMainContainer } from '../support/main-container.js';
import { waitFor } from '../support/wait.js';

const unique = (what: string) => `te-${what}-${process.pid}`;
const canRun = process.getuid?.() === 0 && ['/usr/bin/nsenter', '/usr/bin/unshare'].every(existsSync);
const skip = canRun ? false : 'sidecar tests need root and util-linux nsenter/unshare';

/** Payloads of a task's log records (all rotated files, oldest first). */
function logLines(dataDir: string, name: string): string[] {
  const dir = join(dataDir, name, 'logs');
  return readdirSync(dir)
    .filter((f) => /^output\.\d+\.log$/.test(f))
    .sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]))
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter(Boolean))
    .map((line) => line.split(' ').slice(3).join(' '));
}

const finished = (te: TestExecutor, name: string, timeoutMs = 10_000) =>
  waitFor(`task ${name} to terminate`, async () => terminated((await te.api.getTask({ name })).task), { timeoutMs });

const running = (te: TestExecutor, name: string) =>
  waitFor(`task ${name} to run`, async () => {
    const state = stateOf((await te.api.getTask({ name })).task);
    if (state?.$case === 'terminated') throw new Error(`task ${name} ended: ${JSON.stringify(state.value)}`);
    return state?.$case === 'running';
  });

const gone = (te: TestExecutor, name: string) =>
  waitFor(`task ${name} to be removed`, () =>
    te.api.getTask({ name }).then(
      () => false,
      (error: ServiceError) => error.code === status.NOT_FOUND,
    ),
  );

const sidecar = (overrides: Partial<Config>): Partial<Config> => ({ enableSidecarMode: true, stopGraceMs: 1000, ...overrides });

describe('sidecar mode', { skip }, () => {
  const name = unique('main');
  let mc: MainContainer;
  let te: TestExecutor;
  before(async () => {
    mc = await startMainContainer({ name, hostname: 'main-ctr', env: { SHARED: 'from-target' } });
    te = await startTestExecutor(sidecar({ mainContainerName: name }));
  });
  after(async () => {
    await te?.close();
    await killAllMainContainers();
  });

  test("a task runs in the main container's UTS, mount and PID namespaces, its output in the task's logs", async () => {
    await te.api.createTask({
      task: shell('inside', 'hostname; echo "pid=$$"; cat /proc/1/comm; ls /proc | grep -c "^[0-9]"; echo to-stderr >&2'),
    });
    const end = await finished(te, 'inside');
    assert.equal(end.reason, 'Succeeded', end.message);
    const lines = logLines(te.dataDir, 'inside');
    assert.equal(lines[0], 'main-ctr');
    const pid = Number(/^pid=(\d+)$/.exec(lines[1] ?? '')?.[1]);
    assert.ok(pid > 1 && pid < 50, `the task's pid is one of the main container's PID namespace, got ${lines[1]}`);
    assert.equal(lines[2], 'sleep', "PID 1 is the main container's init");
    assert.ok(Number(lines[3]) < 10, `only the main container's processes are visible, got ${lines[3]}`);
    assert.equal(lines[4], 'to-stderr');
    const raw = readFileSync(join(te.dataDir, 'inside', 'logs', 'output.0.log'), 'utf8');
    assert.match(raw, / stdout F main-ctr\n/);
    assert.match(raw, / stderr F to-stderr\n/);
  });

  test('exit codes and signals are the task’s own', async () => {
    await te.api.createTask({ task: shell('exit-42', 'exit 42') });
    await te.api.createTask({ task: shell('by-term', 'kill -TERM $$') });
    await te.api.createTask({ task: shell('by-kill', 'kill -KILL $$') });
    const e42 = await finished(te, 'exit-42');
    assert.deepEqual([e42.exitCode, e42.signal, e42.reason], [42, 0, 'Failed']);
    const term = await finished(te, 'by-term');
    assert.deepEqual([term.exitCode, term.signal, term.reason], [143, 15, 'Failed']);
    const kill = await finished(te, 'by-kill');
    // SIGKILL while the main container lives is the task's own doing, not MainContainerExited.
    assert.deepEqual([kill.exitCode, kill.signal, kill.reason], [137, 9, 'Failed']);
  });

  test("workingDir, programs and files are the main container's", async () => {
    await te.api.createTask({ task: processTask('in-work', ['sh', '-c', 'pwd; cat marker'], { workingDir: '/mnt/work' }) });
    const end = await finished(te, 'in-work');
    assert.equal(end.reason, 'Succeeded', end.message);
    assert.deepEqual(logLines(te.dataDir, 'in-work'), ['/mnt/work', 'target-only']);
    assert.ok(!existsSync('/mnt/work/marker'), 'the marker exists only in the main container');

    const { task: noDir } = await te.api.createTask({ task: processTask('no-dir', ['true'], { workingDir: '/mnt/nope' }) });
    assert.equal(terminated(noDir)?.reason, 'ProcessStartFailed');
    assert.match(terminated(noDir)?.message ?? '', /chdir \/mnt\/nope: No such file or directory \(in the main container\)/);

    const { task: noProgram } = await te.api.createTask({ task: processTask('no-program', ['no-such-program-here']) });
    assert.deepEqual([terminated(noProgram)?.exitCode, terminated(noProgram)?.reason], [127, 'ProcessStartFailed']);
    assert.match(terminated(noProgram)?.message ?? '', /exec no-such-program-here: No such file or directory \(in the main container/);
  });

  test("the environment is the main container's plus the task's own, the task winning", async () => {
    process.env.TE_EXECUTOR_ONLY = 'must-not-leak';
    try {
      await te.api.createTask({
        task: processTask('env', ['env'], { env: [{ name: 'SHARED', value: 'from-task' }, { name: 'OWN', value: 'task-only' }] }),
      });
      await finished(te, 'env');
    } finally {
      delete process.env.TE_EXECUTOR_ONLY;
    }
    const env = logLines(te.dataDir, 'env');
    assert.ok(env.includes('TARGET_VAR=hello-from-target'), env.join('\n'));
    assert.ok(env.includes('SHARED=from-task'));
    assert.ok(!env.includes('SHARED=from-target'));
    assert.ok(env.includes('OWN=task-only'));
    assert.ok(!env.some((e) => e.startsWith('TE_EXECUTOR_ONLY=')), "the executor's environment is not the task's");
  });

  test("user and chroot are applied inside the main container, with its accounts", async () => {
    await te.api.createTask({ task: processTask('as-nobody', ['sh', '-c', 'echo "$(id -u):$(id -g):$USER:$HOME"'], { user: 'nobody' }) });
    const asNobody = await finished(te, 'as-nobody');
    assert.equal(asNobody.reason, 'Succeeded', asNobody.message);
    assert.deepEqual(logLines(te.dataDir, 'as-nobody'), ['65534:65534:nobody:/nonexistent']);

    // A numeric uid beyond 2^31 without an account runs with gid 0, as on the host.
    await te.api.createTask({ task: processTask('big-uid', ['sh', '-c', 'echo "$(id -u):$(id -g)"'], { user: '3000000000' }) });
    const bigUid = await finished(te, 'big-uid');
    assert.equal(bigUid.reason, 'Succeeded', bigUid.message);
    assert.deepEqual(logLines(te.dataDir, 'big-uid'), ['3000000000:0']);

    // A root that exists only in the main container's filesystem.
    mkdirSync(join(mc.root, 'mnt/jail/bin'), { recursive: true });
    mkdirSync(join(mc.root, 'mnt/jail/data'));
    copyFileSync('/bin/busybox', join(mc.root, 'mnt/jail/bin/busybox'));
    await te.api.createTask({
      task: processTask('chrooted', ['/bin/busybox', 'sh', '-c', 'pwd; /bin/busybox ls /'], { chroot: '/mnt/jail', workingDir: '/data' }),
    });
    const chrooted = await finished(te, 'chrooted');
    assert.equal(chrooted.exitCode, 0, chrooted.message);
    assert.deepEqual(logLines(te.dataDir, 'chrooted'), ['/data', 'bin', 'data']);
  });

  test("a timeout's stop ends the task with its own status: 143 when it obeys SIGTERM, 137 when it had to be SIGKILLed", async () => {
    // task-privs waits for the program with every signal blocked: the stop's SIGTERM, pending
    // there, must not replace how the program ended.
    await te.api.createTask({ task: shell('obeys-term', 'sleep 1000 & wait', { timeoutSeconds: 1 }) });
    await te.api.createTask({ task: shell('ignores-term', "trap '' TERM; exec sleep 1000", { timeoutSeconds: 1 }) });
    const obeys = await finished(te, 'obeys-term');
    assert.deepEqual([obeys.reason, obeys.exitCode, obeys.signal], ['TaskTimeout', 143, 15], obeys.message);
    const ignores = await finished(te, 'ignores-term');
    assert.deepEqual([ignores.reason, ignores.exitCode, ignores.signal], ['TaskTimeout', 137, 9], ignores.message);
  });

  test('delete stops a SIGTERM-ignoring tree inside the main container and leaves no zombies there', async () => {
    // Both processes ignore SIGTERM (an ignored signal stays ignored across fork and exec).
    await te.api.createTask({ task: shell('stubborn', "trap '' TERM; sleep 1000 & echo $$ $! > /mnt/work/stubborn.pids; wait") });
    const pidsFile = join(mc.root, 'mnt/work/stubborn.pids');
    const pids = await waitFor('the tree to start', () =>
      existsSync(pidsFile) ? readFileSync(pidsFile, 'utf8').trim().split(' ').map(Number) : undefined,
    );
    assert.equal(pids.length, 2);
    // The main container's own /proc shows its PID namespace: these are the task's pids in there.
    const visible = (pid: number) => existsSync(join(mc.root, 'proc', String(pid)));
    assert.ok(pids.every(visible));
    const started = Date.now();
    await te.api.deleteTask({ name: 'stubborn' });
    await gone(te, 'stubborn');
    assert.ok(Date.now() - started >= 900, 'SIGKILL came only after the grace period');
    await waitFor('both processes to be gone from the main container (reaped, not zombies)', () => !pids.some(visible));
  });

  test("a task process orphaned inside the main container (adopted by its PID 1) is stopped through the task's cgroup", async (t) => {
    // setsid + orphaned: out of the task's process group and, inside the target PID namespace,
    // adopted by the main container's PID 1 instead of the shim (a subreaper of another namespace).
    await te.api.createTask({ task: shell('orphaner', "sh -c 'setsid sleep 1000 & echo $! > /mnt/work/orphan.pid'; sleep 1000") });
    const pidFile = join(mc.root, 'mnt/work/orphan.pid');
    const orphan = await waitFor('the orphan to start', () => (existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) || undefined : undefined));
    const stat = () => {
      try {
        return readFileSync(join(mc.root, 'proc', String(orphan), 'stat'), 'utf8').split(') ')[1]?.split(' ');
      } catch {
        return undefined;
      }
    };
    await waitFor('the orphan to be adopted by PID 1 of the main container', () => stat()?.[1] === '1');
    type Stored = { runtime?: { handle?: { inner?: { cgroup?: unknown } } } };
    const file = JSON.parse(readFileSync(join(te.dataDir, 'orphaner', 'task.json'), 'utf8')) as Stored & { task?: Stored };
    const record = file.task ?? file;
    await te.api.deleteTask({ name: 'orphaner' });
    await gone(te, 'orphaner');
    if (record.runtime?.handle?.inner?.cgroup === undefined) {
      // Without a per-task cgroup nothing ties the orphan to the task; it dies with the main container.
      t.skip('no per-task cgroups on this machine: such an orphan escapes the stop');
      return;
    }
    // Killed; PID 1 (`sleep infinity`) never reaps, so a zombie may remain until the container exits.
    await waitFor('the orphan to be killed', () => stat() === undefined || stat()![0] === 'Z');
  });

  test('the stop signal reaches the task itself, and its own exit code is reported (timeout)', async () => {
    await te.api.createTask({
      task: shell('graceful', "trap 'echo got-term; exit 7' TERM; while :; do sleep 0.05; done", { timeoutSeconds: 1 }),
    });
    const end = await finished(te, 'graceful');
    assert.deepEqual([end.exitCode, end.signal, end.reason], [7, 0, 'TaskTimeout']);
    assert.ok(logLines(te.dataDir, 'graceful').includes('got-term'), 'the trap ran');
  });

  test('an executor restart re-attaches to a task running in the main container and reports its exit code', async () => {
    const first = await startTestExecutor(sidecar({ mainContainerName: name }));
    let second: TestExecutor | undefined;
    try {
      await first.api.createTask({ task: shell('survivor', 'while [ ! -e /mnt/work/go ]; do sleep 0.02; done; echo done; exit 7') });
      await running(first, 'survivor');
      await first.stop();
      second = await startTestExecutor(sidecar({ mainContainerName: name }), first.dataDir);
      await running(second, 'survivor');
      writeFileSync(join(mc.root, 'mnt/work/go'), '');
      const end = await finished(second, 'survivor');
      assert.deepEqual([end.exitCode, end.reason], [7, 'Failed']);
      assert.deepEqual(logLines(second.dataDir, 'survivor'), ['done']);
    } finally {
      await (second ?? first).close();
    }
  });
});

describe('sidecar mode: a start the executor did not live to record', { skip }, () => {
  const name = unique('main');
  after(async () => killAllMainContainers());

  test('is adopted after a restart, never started a second time', async () => {
    const mc = await startMainContainer({ name, hostname: 'main-ctr' });
    const first = await startTestExecutor(sidecar({ mainContainerName: name }));
    let second: TestExecutor | undefined;
    try {
      await first.api.createTask({ task: shell('once', 'echo run >> /mnt/work/runs; while [ ! -e /mnt/work/end ]; do sleep 0.02; done; exit 3') });
      await running(first, 'once');
      await first.stop();
      // As an executor killed between starting the task and saving its start would have left the record.
      const file = join(first.dataDir, 'once', 'task.json');
      const saved = JSON.parse(readFileSync(file, 'utf8')) as { task: Record<string, unknown> };
      delete saved.task.runtime;
      saved.task.state = { phase: 'waiting', reason: 'Pending' };
      writeFileSync(file, JSON.stringify(saved));

      second = await startTestExecutor(sidecar({ mainContainerName: name }), first.dataDir);
      await running(second, 'once');
      writeFileSync(join(mc.root, 'mnt/work/end'), '');
      const end = await finished(second, 'once');
      assert.equal(end.exitCode, 3, JSON.stringify(end));
      assert.equal(readFileSync(join(mc.root, 'mnt/work/runs'), 'utf8'), 'run\n', 'the task ran once');
    } finally {
      await (second ?? first).close();
    }
  });
});

describe('sidecar mode: the main container comes and goes', { skip }, () => {
  const executors: TestExecutor[] = [];
  const scratch = tempDir('te-sidecar-');
  const executor = async (overrides: Partial<Config>) => {
    const te = await startTestExecutor(sidecar(overrides));
    executors.push(te);
    return te;
  };
  after(async () => {
    for (const te of executors) await te.close();
    await killAllMainContainers();
    rmSync(scratch, { recursive: true, force: true });
  });

  test('no main container: the task ends MainContainerNotFound, saying what was looked for, and the executor carries on', async () => {
    const name = unique('absent');
    const te = await executor({ mainContainerName: name });
    const { task } = await te.api.createTask({ task: shell('orphan', 'true') });
    const end = terminated(task);
    assert.equal(end?.reason, 'MainContainerNotFound');
    assert.match(end?.message ?? '', new RegExp(`SANDBOX_MAIN_CONTAINER=${name}`));
    assert.match(end?.message ?? '', /--main-container-pid/);
    const { tasks } = await te.api.listTasks();
    assert.deepEqual(tasks.map((t) => t.name), ['orphan']);
    // Once the main container is there, the next task runs in it.
    await startMainContainer({ name, hostname: 'late-ctr' });
    await te.api.createTask({ task: shell('late', 'hostname') });
    assert.equal((await finished(te, 'late')).reason, 'Succeeded');
    assert.deepEqual(logLines(te.dataDir, 'late'), ['late-ctr']);
  });

  test('a main container that dies while a task runs ends the task with MainContainerExited', async () => {
    const name = unique('dies');
    const mc = await startMainContainer({ name, hostname: 'doomed' });
    const te = await executor({ mainContainerName: name });
    await te.api.createTask({ task: shell('doomed-task', 'sleep 1000') });
    await running(te, 'doomed-task');
    await mc.kill();
    const end = await finished(te, 'doomed-task');
    assert.deepEqual([end.exitCode, end.reason], [137, 'MainContainerExited']);
    assert.match(end.message, /main container \(pid \d+.*\) exited while the task ran/);
  });

  test('discovery ignores task processes that inherited SANDBOX_MAIN_CONTAINER and finds a restarted main container', async () => {
    const name = unique('restarts');
    // No PID namespace of their own (a pod sharing one): task processes outlive the container they entered.
    const one = await startMainContainer({ name, hostname: 'ctr-one', pidNamespace: false });
    const te = await executor({ mainContainerName: name });
    await te.api.createTask({ task: shell('lingering', 'sleep 1000') });
    await running(te, 'lingering');
    await one.kill();
    const two = await startMainContainer({ name, hostname: 'ctr-two', pidNamespace: false });

    // The lingering task's processes carry the variable and have lower pids than the new main container.
    const start = JSON.parse(readFileSync(join(te.dataDir, 'lingering', 'start.json'), 'utf8')) as { pid: number };
    assert.ok(start.pid < two.pid);
    assert.ok(readFileSync(`/proc/${start.pid}/environ`, 'utf8').split('\0').includes(`SANDBOX_MAIN_CONTAINER=${name}`));

    await te.api.createTask({ task: shell('after-restart', 'hostname') });
    assert.equal((await finished(te, 'after-restart')).reason, 'Succeeded');
    assert.deepEqual(logLines(te.dataDir, 'after-restart'), ['ctr-two']);
    assert.equal(stateOf((await te.api.getTask({ name: 'lingering' })).task)?.$case, 'running');
  });

  test('--main-container-pid names the main container; a pid that does not run is MainContainerNotFound', async () => {
    const config = parseConfig(['--main-container-pid', '4242'], { MAIN_CONTAINER_PID_FILE: '/run/main.pid' });
    assert.deepEqual([config.mainContainerPid, config.mainContainerPidFile], [4242, '/run/main.pid']);

    const mc = await startMainContainer({ hostname: 'by-pid' });
    const te = await executor({ mainContainerName: unique('unused'), mainContainerPid: mc.pid });
    await te.api.createTask({ task: shell('by-pid', 'hostname') });
    assert.equal((await finished(te, 'by-pid')).reason, 'Succeeded');
    assert.deepEqual(logLines(te.dataDir, 'by-pid'), ['by-pid']);
    await mc.kill();
    const { task } = await te.api.createTask({ task: shell('by-dead-pid', 'true') });
    assert.equal(terminated(task)?.reason, 'MainContainerNotFound');
    assert.match(terminated(task)?.message ?? '', new RegExp(`--main-container-pid ${mc.pid}, but no such process is running`));
  });

  test('--main-container-pid-file names the main container and is read again at every start', async () => {
    const pidFile = join(scratch, 'main.pid');
    const te = await executor({ mainContainerName: unique('unused'), mainContainerPidFile: pidFile });
    // No SANDBOX_MAIN_CONTAINER: only the pid file points at these.
    const a = await startMainContainer({ hostname: 'pidfile-a' });
    // The unshare process stays in the host PID namespace; the executor must enter its child's.
    writeFileSync(pidFile, `${a.unsharePid}\n`);
    await te.api.createTask({ task: shell('via-file-a', 'hostname; echo $$') });
    assert.equal((await finished(te, 'via-file-a')).reason, 'Succeeded');
    const [host, pid] = logLines(te.dataDir, 'via-file-a');
    assert.equal(host, 'pidfile-a');
    assert.ok(Number(pid) < 50, `pid ${pid} must be one of the main container's PID namespace`);

    await a.kill();
    const b = await startMainContainer({ hostname: 'pidfile-b' });
    writeFileSync(pidFile, `${b.pid}\n`);
    await te.api.createTask({ task: shell('via-file-b', 'hostname') });
    assert.equal((await finished(te, 'via-file-b')).reason, 'Succeeded');
    assert.deepEqual(logLines(te.dataDir, 'via-file-b'), ['pidfile-b']);

    rmSync(pidFile);
    const { task } = await te.api.createTask({ task: shell('via-no-file', 'true') });
    assert.equal(terminated(task)?.reason, 'MainContainerNotFound');
    assert.ok(terminated(task)?.message.includes(pidFile), terminated(task)?.message);
  });

  test("a pid file naming a process in the executor's own namespaces (a stale pid, reused on the host) is MainContainerNotFound: the task never runs on the host", async (t) => {
    const pidFile = join(scratch, 'stale.pid');
    const te = await executor({ mainContainerName: unique('unused'), mainContainerPidFile: pidFile });
    // What a stale pid file's number can name once the main container is gone: any host process.
    const host = spawn('sleep', ['1000'], { stdio: 'ignore' });
    t.after(() => host.kill('SIGKILL'));
    writeFileSync(pidFile, `${host.pid}\n`);
    const created = terminated((await te.api.createTask({ task: shell('stale-pid', 'touch /tmp/te-ran-on-host-$PPID; hostname') })).task);
    const end = created ?? (await finished(te, 'stale-pid'));
    const ran = end.reason === 'MainContainerNotFound' ? [] : logLines(te.dataDir, 'stale-pid');
    assert.equal(end.reason, 'MainContainerNotFound', `${end.reason}: ${end.message} (it ran, printing ${ran.join(' | ')})`);
    assert.match(end.message, new RegExp(`pid ${host.pid} from --main-container-pid-file .*the executor's own mount namespace`));
  });
});

describe('sidecar mode: artifacts are copied into the main container', { skip }, () => {
  const name = unique('artifacts');
  const server = new ScriptServer();
  let mc: MainContainer;
  let te: TestExecutor;
  // The main container's /tmp is its own: what lands there is not on the host.
  const base = () => join(mc.root, 'tmp/task-executor');
  const copiesOf = (task: string) => (existsSync(base()) ? readdirSync(base()).filter((entry) => entry.startsWith(`${task}.`)) : []);
  before(async () => {
    await server.start();
    mc = await startMainContainer({ name, hostname: 'art-ctr', privateTmp: true });
    te = await startTestExecutor(sidecar({ mainContainerName: name }));
  });
  after(async () => {
    await te?.close();
    server.close();
    await killAllMainContainers();
  });

  test('sh artifacts/script.sh runs in the main container; the copy goes when the task is deleted', async () => {
    await te.api.createTask({
      task: withArtifacts('art-script', ['sh', 'artifacts/script.sh'], [{ source: `${server.url}/script.sh`, checksum: sha256(SCRIPT) }]),
    });
    const end = await finished(te, 'art-script');
    assert.equal(end.reason, 'Succeeded', end.message);
    assert.deepEqual(logLines(te.dataDir, 'art-script'), ['hello from the downloaded script']);
    const copies = copiesOf('art-script');
    assert.equal(copies.length, 1, `one copy in the main container's /tmp/task-executor, got ${copies.join(', ')}`);
    assert.equal(readFileSync(join(base(), copies[0]!, 'artifacts/script.sh'), 'utf8'), SCRIPT);
    assert.ok(!existsSync(join('/tmp/task-executor', copies[0]!)), "the copy is in the main container's filesystem, not the host's");

    await te.api.deleteTask({ name: 'art-script' });
    await gone(te, 'art-script');
    assert.deepEqual(copiesOf('art-script'), [], 'the copy is removed with the task');
  });

  test('file modes are kept, another user can read and run them, and TASK_EXECUTOR_ARTIFACTS_DIR names the copy', async () => {
    const scratch = tempDir('te-tool-');
    const tool = join(scratch, 'tool.sh');
    writeFileSync(tool, '#!/bin/sh\necho "$(id -u) $(pwd) $TASK_EXECUTOR_ARTIFACTS_DIR"\n', { mode: 0o755 });
    await te.api.createTask({
      task: withArtifacts('art-tool', ['./tools/tool.sh'], [{ source: `file://${tool}`, destination: 'tools' }], { user: 'nobody' }),
    });
    const end = await finished(te, 'art-tool');
    rmSync(scratch, { recursive: true, force: true });
    assert.equal(end.reason, 'Succeeded', end.message);
    const [copy] = copiesOf('art-tool');
    assert.ok(copy);
    assert.deepEqual(logLines(te.dataDir, 'art-tool'), [`65534 /tmp/task-executor/${copy} /tmp/task-executor/${copy}`]);
    assert.equal(statSync(join(base(), copy, 'tools/tool.sh')).mode & 0o777, 0o755);
    await te.api.deleteTask({ name: 'art-tool' });
    await gone(te, 'art-tool');
  });

  test('a symlink the main container planted at /tmp/task-executor does not redirect the copy out of it', async () => {
    // Reached through /proc/<pid>/root, an absolute link target is the executor's path, not the container's.
    const outside = tempDir('te-outside-');
    rmSync(base(), { recursive: true, force: true });
    symlinkSync(outside, base());
    await te.api.createTask({
      task: withArtifacts('art-link', ['sh', 'artifacts/script.sh'], [{ source: `${server.url}/script.sh`, checksum: sha256(SCRIPT) }]),
    });
    const end = await finished(te, 'art-link');
    const leaked = readdirSync(outside);
    rmSync(outside, { recursive: true, force: true });
    assert.deepEqual(leaked, [], 'nothing was written where the link pointed');
    assert.equal(end.reason, 'Succeeded', end.message);
    assert.deepEqual(logLines(te.dataDir, 'art-link'), ['hello from the downloaded script']);
    assert.ok(lstatSync(base()).isDirectory(), 'the link was replaced by a directory');
    assert.equal(copiesOf('art-link').length, 1);
  });
});
