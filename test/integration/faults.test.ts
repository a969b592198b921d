// Faults: a task that forks thousands of processes, two controllers racing
// SetTasks, a full disk under the task logs, and an executor killed with SIGKILL
// in the middle of a SetTasks. Nothing may be lost, leaked or left inconsistent.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { processTask, shell, startTestExecutor, stateOf, tempDir, terminated } from '../support/executor.js';
import { isAlive, isPooledShim, killTaskTrees, pooledShimsOfExecutor } from '../support/processes.js';
import { connect, spawnCommand, spawnExecutor } from '../support/subprocess.js';
import { mountTmpfs } from '../support/tmpfs.js';
import { waitFor } from '../support/wait.js';
import { shimsFor } from '../../src/runtime/process/stalled-shims.js';
import { CgroupManager, detectLayout, scopeOf } from '../../src/runtime/cgroups/index.js';
import { silent } from '../support/in-process.js';

const cgroupsUsable = process.getuid?.() === 0 && detectLayout().version !== 0;

interface StartJson {
  pid: number;
  pgid: number;
  shimPid: number;
}
const startJson = (dataDir: string, name: string) => JSON.parse(readFileSync(join(dataDir, name, 'start.json'), 'utf8')) as StartJson;

describe('faults', () => {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('deleting a task that forked two thousand processes leaves none behind', async () => {
    const te = await startTestExecutor({ stopGraceMs: 1000 });
    cleanups.push(() => te.close());
    const pids = join(te.dataDir, 'fork.pids');
    await te.api.createTask({
      task: shell('forker', `i=0; while [ $i -lt 2000 ]; do sleep 1000 & echo $! >> ${pids}; i=$((i+1)); done; wait`),
    });
    const all = await waitFor(
      'two thousand children',
      () => {
        try {
          const list = readFileSync(pids, 'utf8').trim().split(/\s+/).map(Number);
          return list.length === 2000 ? list : undefined;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 60_000 },
    );
    await te.api.deleteTask({ name: 'forker' });
    await waitFor('every forked process to be gone', () => all.every((pid) => !isAlive(pid)), { timeoutMs: 30_000 });
  });

  test('two controllers racing SetTasks leave one consistent set, never a mix or a duplicate', async () => {
    const te = await startTestExecutor({ stopGraceMs: 500 });
    cleanups.push(() => te.close());
    for (let round = 0; round < 8; round++) {
      // Fresh names each round: tasks deleted in an earlier round may still be stopping.
      const setA = ['a-1', 'a-2', 'a-3', 'shared'].map((n) => `${n}-r${round}`);
      const setB = ['b-1', 'b-2', 'shared'].map((n) => `${n}-r${round}`);
      const results = await Promise.allSettled([
        te.api.setTasks({ tasks: setA.map((n) => processTask(n, ['sleep', '30'])) }),
        te.api.setTasks({ tasks: setB.map((n) => processTask(n, ['sleep', '30'])) }),
      ]);
      for (const result of results) {
        if (result.status === 'rejected') assert.fail(`SetTasks failed: ${(result.reason as ServiceError).details}`);
      }
      const all = (await te.api.listTasks()).tasks;
      const live = all.filter((t) => !t.deletionTimestamp).map((t) => t.name).sort();
      const matches = (set: string[]) => JSON.stringify(live) === JSON.stringify([...set].sort());
      assert.ok(matches(setA) || matches(setB), `round ${round}: live tasks ${live} are neither set`);
      assert.equal(all.filter((t) => t.name === `shared-r${round}`).length, 1, 'one task per name');
    }
    await te.api.setTasks({ tasks: [] });
  });

  test('a full disk under the task logs neither blocks the task nor breaks the executor', async (t) => {
    const mount = tempDir('te-tmpfs-');
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', mount]);
    } catch (error) {
      assert.fail(`this test needs root to mount a small tmpfs: ${(error as Error).message}`);
    }
    cleanups.push(() => {
      execFileSync('umount', ['-l', mount]);
      rmSync(mount, { recursive: true, force: true });
    });
    const dataDir = join(mount, 'tasks');
    mkdirSync(dataDir);
    const te = await startTestExecutor({}, dataDir);
    cleanups.push(() => te.close());
    // 8 MiB of output into 512 KiB of disk, with rotation allowing far more than fits.
    await te.api.createTask({
      task: processTask('writer', ['sh', '-c', 'head -c 8388608 /dev/zero | tr "\\0" "x" | fold -w 100; echo done >&2; exit 3'], {}, {
        logs: { maxFileSizeBytes: 1024 * 1024, maxFiles: 10 },
      }),
    });
    const end = await waitFor('the writer to finish', async () => terminated((await te.api.getTask({ name: 'writer' })).task), {
      timeoutMs: 30_000,
    });
    t.diagnostic(`writer ended: ${JSON.stringify(end)}`);
    assert.ok(end.exitCode === 3 || end.reason === 'ProcessCrashed', `the exit was recorded or reported as lost: ${JSON.stringify(end)}`);
    assert.ok(Array.isArray((await te.api.listTasks()).tasks), 'the executor still answers');
    await assert.rejects(te.api.getTask({ name: 'nope' }), (e: ServiceError) => e.code === status.NOT_FOUND);
  });

  test('tasks that exit after another task filled the data dir keep their exit codes', async () => {
    const tmpfs = mountTmpfs('2m');
    cleanups.push(() => tmpfs.unmount());
    const dataDir = join(tmpfs.path, 'tasks');
    mkdirSync(dataDir);
    const te = await startTestExecutor({}, dataDir);
    cleanups.push(() => te.close());
    const gates = tempDir('te-gate-');
    const [fill, go] = [join(gates, 'fill'), join(gates, 'go')];
    const wait = (gate: string) => `while [ ! -e ${gate} ]; do sleep 0.01; done`;
    await te.api.createTask({ task: shell('fails', `${wait(go)}; exit 42`) });
    await te.api.createTask({ task: shell('succeeds', `${wait(go)}; exit 0`) });
    await te.api.createTask({ task: shell('filler', `${wait(fill)}; exec yes`, {}, { logs: { maxFileSizeBytes: 1 << 20, maxFiles: 100 } }) });
    writeFileSync(fill, '');
    await waitFor('the data dir to be full', () => tmpfs.free() === 0, { timeoutMs: 30_000 });
    writeFileSync(go, '');
    for (const [name, code] of [['fails', 42], ['succeeds', 0]] as const) {
      const end = await waitFor(`${name} to end`, async () => terminated((await te.api.getTask({ name })).task), { timeoutMs: 15_000 });
      assert.equal(end.exitCode, code, `${name}: ${JSON.stringify(end)}`);
      assert.notEqual(end.reason, 'ProcessCrashed');
    }
  });

  test('an exit status the supervisor cannot write is still reported with its real exit code', async () => {
    const te = await startTestExecutor();
    cleanups.push(() => te.close());
    const go = join(te.dataDir, 'go');
    await te.api.createTask({ task: shell('held', `while [ ! -e ${go} ]; do sleep 0.01; done; exit 7`) });
    await waitFor('held to run', async () => stateOf((await te.api.getTask({ name: 'held' })).task)?.$case === 'running');
    // A directory in the way: every rename onto exit.json fails, the supervisor keeps the status.
    mkdirSync(join(te.dataDir, 'held', 'exit.json'));
    writeFileSync(go, '');
    const end = await waitFor('held to end', async () => terminated((await te.api.getTask({ name: 'held' })).task));
    assert.equal(end.exitCode, 7, JSON.stringify(end));
    assert.match(end.message ?? '', /could not write exit\.json: Is a directory/);
    await te.api.deleteTask({ name: 'held' });
    await waitFor('held to be deleted', async () => (await te.api.listTasks()).tasks.length === 0);
  });

  test('a garbage exit.json does not keep Delete from stopping the task', async () => {
    const te = await startTestExecutor({ stopGraceMs: 500 });
    cleanups.push(() => te.close());
    await te.api.createTask({ task: shell('garbage', 'sleep 1000') });
    await waitFor('garbage to run', async () => stateOf((await te.api.getTask({ name: 'garbage' })).task)?.$case === 'running');
    const { pgid } = startJson(te.dataDir, 'garbage');
    writeFileSync(join(te.dataDir, 'garbage', 'exit.json'), '{{{');
    await te.api.deleteTask({ name: 'garbage' });
    await waitFor('garbage to be deleted', async () => (await te.api.listTasks()).tasks.length === 0, { timeoutMs: 15_000 });
    assert.ok(!isAlive(pgid), 'the task was stopped');
  });

  test('an exit.json that is not an exit record ends the task as ExitStatusUnreadable once its process is gone', async () => {
    const te = await startTestExecutor();
    cleanups.push(() => te.close());
    await te.api.createTask({ task: shell('unreadable', 'sleep 1000') });
    await waitFor('the task to run', async () => stateOf((await te.api.getTask({ name: 'unreadable' })).task)?.$case === 'running');
    const { pid, shimPid } = startJson(te.dataDir, 'unreadable');
    process.kill(shimPid, 'SIGKILL'); // nobody will replace the file below
    await waitFor('the supervisor to be gone', () => !isAlive(shimPid));
    const file = join(te.dataDir, 'unreadable', 'exit.json');
    writeFileSync(file, '{"exitCode":"x"}');
    assert.equal(stateOf((await te.api.getTask({ name: 'unreadable' })).task)?.$case, 'running', 'running while the process lives');
    process.kill(pid, 'SIGKILL');
    const end = await waitFor('the task to end', async () => terminated((await te.api.getTask({ name: 'unreadable' })).task));
    assert.equal(end.reason, 'ExitStatusUnreadable', JSON.stringify(end));
    assert.ok(end.message?.includes(file), end.message);
    await te.api.deleteTask({ name: 'unreadable' });
    await waitFor('the task to be deleted', async () => (await te.api.listTasks()).tasks.length === 0);
  });

  /** An executor whose shims stall before their task's exec (TASK_SHIM_TEST_STALL_MS); `stalled` shims are killed at cleanup. */
  async function stallingExecutor() {
    const dataDir = tempDir();
    const runs = join(tempDir('te-scratch-'), 'runs');
    const stalled: number[] = [];
    cleanups.push(() => {
      for (const pid of stalled) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
      killTaskTrees(dataDir);
    });
    const args = ['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0', '--reconcile-interval', '100ms', '--stop-grace-period', '1s'];
    const first = spawnExecutor(args, { ...process.env, TASK_SHIM_TEST_STALL_MS: '60000' });
    cleanups.push(() => first.child.kill('SIGKILL'));
    return { dataDir, runs, stalled, args, first, a: await connect(first) };
  }

  /** SIGKILLs the stalling executor, starts another on the same data dir, and waits until task "once" runs there. */
  async function crashAndRestartUntilOnceRuns({ first, a, args }: Awaited<ReturnType<typeof stallingExecutor>>) {
    first.child.kill('SIGKILL');
    await first.exited;
    a.client.close();

    const second = spawnExecutor(args);
    cleanups.push(() => second.child.kill('SIGKILL'));
    const b = await connect(second);
    await waitFor('the task to run', async () => stateOf((await b.api.getTask({ name: 'once' })).task)?.$case === 'running', { timeoutMs: 20_000 });
    return b;
  }

  test('a shim that stalled before exec when the executor crashed never lets the task run twice', async () => {
    const stalling = await stallingExecutor();
    const { dataDir, runs, stalled, a } = stalling;
    a.api.createTask({ task: shell('once', `echo run >> ${runs}; exec sleep 1000`) }).catch(() => undefined);
    // Its record first (the shim is started while the record is written, and a task
    // whose record never reached the disk is rightly forgotten), then the shim.
    await waitFor('the task to be admitted', () => existsSync(join(dataDir, 'once', 'task.json')));
    const shims = await waitFor('the stalled shim', () => {
      const found = shimsFor(join(dataDir, 'once'));
      return found.length > 0 && found;
    });
    stalled.push(...shims.map((s) => s.pid));
    const b = await crashAndRestartUntilOnceRuns(stalling);
    assert.ok(stalled.every((pid) => !isAlive(pid)), 'the stalled shim is gone');
    await waitFor('the task to have run', () => existsSync(runs));
    assert.equal(readFileSync(runs, 'utf8'), 'run\n');
    const { pgid, shimPid } = startJson(dataDir, 'once');
    await b.api.deleteTask({ name: 'once' });
    await waitFor('the task to be deleted', async () => (await b.api.listTasks()).tasks.length === 0, { timeoutMs: 15_000 });
    assert.ok(!isAlive(pgid) && !isAlive(shimPid), 'nothing of the task is left');
    assert.equal(readFileSync(runs, 'utf8'), 'run\n', 'it ran once');
    b.client.close();
  });

  test('a pre-started shim that took a start and stalled when the executor crashed is found by its --dir: the task runs once', async () => {
    const stalling = await stallingExecutor();
    const { dataDir, runs, stalled, first, a } = stalling;
    // The first start begins the spawner, whose pool then fills: the second start is handed to a pooled shim.
    a.api.createTask({ task: shell('warm', 'exec sleep 1000') }).catch(() => undefined);
    const pooled = await waitFor('two pooled shims', () => {
      const found = pooledShimsOfExecutor(first.child.pid ?? 0);
      return found.length === 2 && found;
    });
    a.api.createTask({ task: shell('once', `echo run >> ${runs}; exec sleep 1000`) }).catch(() => undefined);
    await waitFor('the task to be admitted', () => existsSync(join(dataDir, 'once', 'task.json')));
    const shims = await waitFor('the stalled shim', () => {
      const found = shimsFor(join(dataDir, 'once'));
      return found.length > 0 && found;
    });
    assert.ok(shims.every((shim) => pooled.includes(shim.pid)), 'a pooled shim took the start');
    stalled.push(...shims.map((s) => s.pid), ...shimsFor(join(dataDir, 'warm')).map((s) => s.pid));
    const b = await crashAndRestartUntilOnceRuns(stalling);
    assert.ok(shims.every((shim) => !isAlive(shim.pid)), 'the stalled shim is gone');
    await waitFor('the task to have run', () => existsSync(runs));
    assert.equal(readFileSync(runs, 'utf8'), 'run\n');
    await waitFor('the pooled shims of the dead executor to exit', () => pooled.every((pid) => !isAlive(pid) || !isPooledShim(pid)));
    await b.api.setTasks({ tasks: [] });
    await waitFor('the tasks to be deleted', async () => (await b.api.listTasks()).tasks.length === 0, { timeoutMs: 15_000 });
    assert.equal(readFileSync(runs, 'utf8'), 'run\n', 'it ran once');
    b.client.close();
  });

  test('an executor killed after showing a task running but before recording its start adopts the same run, with its cgroup', { skip: !cgroupsUsable && 'needs root and a cgroup filesystem' }, async () => {
    const dataDir = tempDir();
    const scratch = tempDir('te-scratch-');
    const runs = join(scratch, 'runs');
    const daemonPid = join(scratch, 'daemon.pid');
    const readPid = () => (existsSync(daemonPid) ? Number(readFileSync(daemonPid, 'utf8').trim()) || undefined : undefined);
    cleanups.push(() => {
      const daemon = readPid();
      if (daemon && isAlive(daemon)) process.kill(daemon, 'SIGKILL');
      killTaskTrees(dataDir);
    });
    // A daemon that leaves the task's process group (setsid) and, once the shim is gone, every tree.
    const script = `echo run >> ${runs}; (setsid sh -c 'trap "" TERM; echo $$ > ${daemonPid}; while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &); exec sleep 1000`;
    const first = spawnCommand([process.execPath, '--import', 'tsx', join(import.meta.dirname, '..', 'support', 'hung-write-start.ts'), 'start', dataDir, 'durable', script]);
    cleanups.push(() => first.child.kill('SIGKILL'));
    const shown = await waitFor('Create to answer', () => /^\{"phase":"[a-z]+"\}$/m.exec(first.output())?.[0], { timeoutMs: 20_000 });
    assert.equal(JSON.parse(shown).phase, 'running', 'Create answered with the task running');
    const onDisk = JSON.parse(readFileSync(join(dataDir, 'durable', 'task.json'), 'utf8')) as { record?: { runtime?: unknown; state: { phase: string } } };
    assert.equal(JSON.stringify(onDisk).includes('"runtime"'), false, "the executor's record of the start is not on disk");
    const started = startJson(dataDir, 'durable');
    const daemon = await waitFor('the daemon to start', readPid);
    first.child.kill('SIGKILL');
    await first.exited;

    const args = ['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0', '--reconcile-interval', '100ms', '--stop-grace-period', '1s'];
    const second = spawnExecutor(args);
    cleanups.push(() => second.child.kill('SIGKILL'));
    const b = await connect(second);
    await waitFor('the task to be listed running', async () => stateOf((await b.api.getTask({ name: 'durable' })).task)?.$case === 'running');
    assert.deepEqual(startJson(dataDir, 'durable'), started, 'the same run');
    assert.ok(isAlive(started.pid), 'its process still runs');
    assert.deepEqual(shimsFor(join(dataDir, 'durable')).map((shim) => shim.pid), [started.shimPid], 'no second supervisor');
    assert.equal(readFileSync(runs, 'utf8'), 'run\n', 'it ran once');
    // Only the task's cgroup still holds the daemon once the shim is gone.
    process.kill(started.shimPid, 'SIGKILL');
    await waitFor('the shim to die', () => !isAlive(started.shimPid));
    await b.api.deleteTask({ name: 'durable' });
    await waitFor('the task to be deleted', async () => (await b.api.listTasks()).tasks.length === 0, { timeoutMs: 15_000 });
    await waitFor('the daemon to be killed through the cgroup', () => !isAlive(daemon), { timeoutMs: 5000 });
    assert.ok(!isAlive(started.pid), 'the task is stopped');
    assert.equal(readFileSync(runs, 'utf8'), 'run\n', 'it ran once');
    const cgroups = new CgroupManager({ log: silent });
    await waitFor('its cgroup to be removed', () =>
      cgroups.scopeDirs(scopeOf(dataDir)).every((dir) => !existsSync(join(dir, 'durable'))),
    );
    b.client.close();
  });

  test('an executor killed after showing an exit but before recording it reports the same exit after the restart', async () => {
    const dataDir = tempDir('te-fault-exit-');
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const first = spawnCommand([process.execPath, '--import', 'tsx', join(import.meta.dirname, '..', 'support', 'hung-write-start.ts'), 'exit', dataDir, 'ends', 'exit 3']);
    cleanups.push(() => first.child.kill('SIGKILL'));
    const line = await waitFor('the exit to be shown', () => /^\{"terminated":.*\}$/m.exec(first.output())?.[0], { timeoutMs: 20_000 });
    const shown = (JSON.parse(line) as { terminated: { exitCode: number; reason: string; finishedAt: string } }).terminated;
    assert.deepEqual({ exitCode: shown.exitCode, reason: shown.reason }, { exitCode: 3, reason: 'Failed' });
    const onDisk = readFileSync(join(dataDir, 'ends', 'task.json'), 'utf8');
    assert.equal(onDisk.includes('"terminated"'), false, "the executor's record of the exit is not on disk");
    first.child.kill('SIGKILL');
    await first.exited;

    const second = spawnExecutor(['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0']);
    cleanups.push(() => second.child.kill('SIGKILL'));
    const b = await connect(second);
    const recovered = await waitFor('the exit to be reported again', async () => {
      const state = stateOf((await b.api.getTask({ name: 'ends' })).task);
      return state?.$case === 'terminated' ? state.value : undefined;
    });
    assert.deepEqual(
      { exitCode: recovered.exitCode, reason: recovered.reason, finishedAt: recovered.finishedAt?.getTime() },
      { exitCode: 3, reason: 'Failed', finishedAt: Math.floor(Date.parse(shown.finishedAt)) },
    );
    b.client.close();
  });

  test('an executor killed with SIGKILL during a large SetTasks recovers every admitted task exactly once', async () => {
    const dataDir = tempDir();
    const scratch = tempDir('te-scratch-');
    cleanups.push(() => killTaskTrees(dataDir));
    const args = ['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0', '--reconcile-interval', '100ms'];
    const first = spawnExecutor(args);
    cleanups.push(() => first.child.kill('SIGKILL'));
    const a = await connect(first);
    const runs = join(scratch, 'runs');
    const tasks = Array.from({ length: 150 }, (_, i) => shell(`t-${String(i).padStart(3, '0')}`, `echo $0 >> ${runs}; sleep 30`, { args: [`t-${i}`] }));
    const call = a.api.setTasks({ tasks }).catch(() => undefined);
    // A batch's directories are all made before its records are written: admitted means a record.
    const recorded = () => readdirSync(dataDir).filter((d) => !d.startsWith('.') && existsSync(join(dataDir, d, 'task.json')));
    await waitFor('some tasks to be admitted', () => recorded().length >= 40, { timeoutMs: 30_000, intervalMs: 2 });
    first.child.kill('SIGKILL');
    await first.exited;
    await call;
    a.client.close();
    const admitted = recorded().sort();

    const second = spawnExecutor(args);
    cleanups.push(() => second.child.kill('SIGKILL'));
    const b = await connect(second);
    const recovered = (await b.api.listTasks()).tasks;
    const quarantined = readdirSync(dataDir).includes('.quarantine') ? readdirSync(join(dataDir, '.quarantine')) : [];
    const remaining = readdirSync(dataDir).filter((d) => !d.startsWith('.'));
    // Directories of the batch whose first record was never written are removed
    // (no client was told about them); every task whose record exists is back.
    assert.deepEqual(quarantined, [], 'an interrupted admission is not corrupt state');
    assert.deepEqual(remaining, recovered.map((t) => t.name), 'exactly the recovered tasks keep a directory');
    assert.deepEqual(recovered.map((t) => t.name), admitted, 'every task whose record was written is back');
    for (const task of recovered) {
      assert.equal(stateOf(task)?.$case, 'running', `${task.name}: ${JSON.stringify(stateOf(task))}`);
    }
    // Let the controller finish its SetTasks: the rest are created, none twice.
    await b.api.setTasks({ tasks });
    await waitFor('every task to have run', () => readFileSync(runs, 'utf8').trim().split('\n').length >= 150, { timeoutMs: 30_000 });
    const lines = readFileSync(runs, 'utf8').trim().split('\n');
    assert.equal(new Set(lines).size, 150);
    assert.equal(lines.length, 150, 'no task may run twice');
    b.client.close();
  });
});
