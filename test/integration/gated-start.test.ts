// A Create writes the task's first record while the backend gets its start
// ready (StartRequest.admitted): the supervisor waits at a gate and the task
// runs only once the record is on disk. These tests check that nothing runs
// when the record is never written: a refused write, or an executor that dies.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { TaskError } from '../../src/errors.js';
import type { TaskRecord, TaskSpec } from '../../src/model/task.js';
import { specFromWire } from '../../src/api/convert.js';
import { CgroupManager, detectLayout, scopeOf } from '../../src/runtime/cgroups/index.js';
import { ShimSpawner } from '../../src/runtime/process/shim-spawner.js';
import { descendantsOf } from '../../src/runtime/process/procfs.js';
import { shimsFor } from '../../src/runtime/process/stalled-shims.js';
import { TaskStore } from '../../src/store/task-store.js';
import { shell, tempDir } from '../support/executor.js';
import { isAlive } from '../support/processes.js';
import { SHIM, silent, startManager } from '../support/in-process.js';
import { connect, spawnCommand, spawnExecutor } from '../support/subprocess.js';
import { mountTmpfs } from '../support/tmpfs.js';
import { waitFor } from '../support/wait.js';

/** A store whose first-record writes fail once the task's supervisor is ready and waiting. */
class RefusingStore extends TaskStore {
  override async commitNew(records: readonly TaskRecord[]): Promise<void> {
    for (const record of records) await waitFor('the supervisor to wait at its gate', () => shimsFor(this.taskDir(record.name)).length > 0);
    throw new TaskError('ResourceExhausted', 'no space left on the device (injected)');
  }
}

const cgroupsUsable = process.getuid?.() === 0 && detectLayout().version !== 0;

/** The pids in a cgroup.procs file; none when it is not there. */
function pidsIn(file: string): number[] {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * A store whose first-record writes fail once the task's own process is
 * forked and waits at its gate: it is in the task's cgroup (which it joins
 * before the gate) and not yet exec'ed.
 */
class RefusingAfterForkStore extends TaskStore {
  readonly waiting: number[] = [];
  constructor(
    dataDir: string,
    private readonly cgroups: CgroupManager,
  ) {
    super(dataDir, silent);
  }

  cgroupDirs(name: string): string[] {
    return this.cgroups.scopeDirs(scopeOf(dirname(this.taskDir(name)))).map((dir) => join(dir, name));
  }

  override async commitNew(records: readonly TaskRecord[]): Promise<void> {
    for (const record of records) {
      const procs = this.cgroupDirs(record.name).map((dir) => join(dir, 'cgroup.procs'));
      const pids = await waitFor('the task process to wait at its gate, in its cgroup', () => {
        const found = [...new Set(procs.flatMap(pidsIn))];
        return found.length > 0 && found;
      });
      this.waiting.push(...pids);
    }
    throw new TaskError('ResourceExhausted', 'no space left on the device (injected)');
  }
}

const touching = (marker: string): TaskSpec => specFromWire(shell('refused', `touch ${marker}`).spec)!;

describe('a start waits for its record', () => {
  const closers: (() => unknown)[] = [];
  after(async () => {
    for (const close of closers.reverse()) await close();
  });

  test('a Create whose record cannot be written runs nothing and leaves nothing behind', async () => {
    const dataDir = tempDir();
    const scratch = tempDir('te-gate-');
    const { manager, close } = await startManager(new RefusingStore(dataDir, silent));
    closers.push(close);
    const marker = join(scratch, 'ran');
    await assert.rejects(manager.create('refused', touching(marker)), (e: TaskError) => e.kind === 'ResourceExhausted');
    const shims = shimsFor(join(dataDir, 'refused'));
    assert.ok(shims.every((shim) => !isAlive(shim.pid)), 'the waiting supervisor is gone');
    assert.ok(!existsSync(marker), 'the task never ran');
    assert.deepEqual(readdirSync(dataDir), [], 'its directory is gone');
    assert.deepEqual(manager.list(), [], 'no task is listed');
  });

  test('a gate that closes after the task process was forked leaves no process, no record and no cgroup', { skip: !cgroupsUsable && 'needs root and a cgroup filesystem' }, async () => {
    const dataDir = tempDir();
    const marker = join(tempDir('te-gate-'), 'ran');
    const cgroups = new CgroupManager({ log: silent });
    const store = new RefusingAfterForkStore(dataDir, cgroups);
    const { manager, close } = await startManager(store, { cgroups });
    closers.push(close);
    await assert.rejects(manager.create('refused', touching(marker)), (e: TaskError) => e.kind === 'ResourceExhausted');
    assert.ok(store.waiting.length > 0);
    assert.ok(store.waiting.every((pid) => !isAlive(pid)), 'the task process waiting at the gate is gone');
    assert.ok(!existsSync(marker), 'the task never ran');
    assert.deepEqual(readdirSync(dataDir), [], 'its directory (and so any record) is gone');
    assert.deepEqual(store.cgroupDirs('refused').filter((dir) => existsSync(dir)), [], 'its cgroup is removed');
    assert.deepEqual(manager.list(), [], 'no task is listed');
  });

  test('a task process that cannot be set up writes no record when its gate closes, and reports the failure after go', async () => {
    const spawner = new ShimSpawner(SHIM, silent);
    closers.push(() => spawner.close());
    const start = (dir: string) =>
      spawner.spawn(['--dir', dir, '--gate', '1', '--user', 'no-such-user-here', '--', 'true'], { PATH: process.env.PATH }, { gated: true });
    const closed = tempDir('te-gated-');
    const refused = await start(closed);
    refused.abort();
    assert.equal(await refused.nextLine(), undefined, 'nothing was announced');
    assert.equal(await refused.exited, '0');
    assert.ok(!existsSync(join(closed, 'start.json')) && !existsSync(join(closed, 'exit.json')), 'no record was written');

    const opened = tempDir('te-gated-');
    const admitted = await start(opened);
    admitted.go();
    const event = JSON.parse((await admitted.nextLine())!) as { event: string; startError: string };
    assert.equal(event.event, 'start-failed');
    assert.match(event.startError, /no-such-user-here: no such user/);
    assert.ok(existsSync(join(opened, 'exit.json')), 'the start failure is recorded');
  });

  test('a task process killed while it waits at its gate is a start failure once the gate opens, and leaves nothing when it closes', async () => {
    const spawner = new ShimSpawner(SHIM, silent);
    closers.push(() => spawner.close());
    const marker = join(tempDir('te-gate-'), 'ran');
    /** A gated supervisor whose task process was SIGKILLed before its gate opened (e.g. by the OOM killer). */
    const killedAtGate = async (dir: string) => {
      const shim = await spawner.spawn(['--dir', dir, '--gate', '1', '--', 'sh', '-c', `touch ${marker}`], { PATH: process.env.PATH }, { gated: true });
      const [task] = await waitFor('the task process to be forked', () => {
        const found = descendantsOf(shim.pid);
        return found.length > 0 && found;
      });
      process.kill(task!, 'SIGKILL');
      await waitFor('the task process to be gone', () => !isAlive(task!));
      return shim;
    };

    const closed = tempDir('te-gated-');
    const refused = await killedAtGate(closed);
    refused.abort();
    assert.equal(await refused.nextLine(), undefined, 'nothing was announced');
    assert.equal(await refused.exited, '0');
    assert.ok(!existsSync(join(closed, 'start.json')) && !existsSync(join(closed, 'exit.json')), 'no record was written');

    const opened = tempDir('te-gated-');
    const admitted = await killedAtGate(opened);
    admitted.go();
    const event = JSON.parse((await admitted.nextLine())!) as { event: string; startError: string; exitCode: number; signal: number };
    assert.equal(event.event, 'start-failed');
    assert.equal(event.startError, "the task's process was killed by SIGKILL before it could exec sh");
    assert.equal(event.exitCode, 137);
    assert.equal(event.signal, 9);
    assert.equal(JSON.parse(readFileSync(join(opened, 'exit.json'), 'utf8')).startError, event.startError, 'the start failure is recorded');
    assert.ok(!existsSync(join(opened, 'start.json')), 'no start was recorded');
    assert.ok(!existsSync(marker), 'the program never ran');
  });

  test('a supervisor waiting at its gate leaves without running the task when the executor goes away', async () => {
    const dir = tempDir('te-gated-');
    const marker = join(tempDir('te-gate-'), 'ran');
    const spawner = new ShimSpawner(SHIM, silent);
    const shim = await spawner.spawn(['--dir', dir, '--gate', '1', '--', 'sh', '-c', `touch ${marker}`], { PATH: process.env.PATH }, { gated: true });
    // The executor's end closes the spawner's stdin; the spawner's end closes every gate.
    spawner.close();
    assert.equal(await shim.nextLine(), undefined, 'no start was announced');
    await waitFor('the supervisor to leave', () => !isAlive(shim.pid));
    assert.ok(!existsSync(marker), 'the task never ran');
    assert.ok(!existsSync(join(dir, 'start.json')) && !existsSync(join(dir, 'exit.json')), 'no record was written');
  });

  test('an executor killed while the task process waits at its gate leaves, after the next start of the executor, no process, no record and no cgroup', { skip: !cgroupsUsable && 'needs root and a cgroup filesystem' }, async () => {
    const dataDir = tempDir();
    const marker = join(tempDir('te-gate-'), 'ran');
    const cgroups = new CgroupManager({ log: silent });
    const cgroupDirs = () => cgroups.scopeDirs(scopeOf(dataDir)).map((dir) => join(dir, 'crashed'));
    const first = spawnCommand([process.execPath, '--import', 'tsx', join(import.meta.dirname, '..', 'support', 'hung-write-start.ts'), 'admission', dataDir, 'crashed', `touch ${marker}`]);
    closers.push(() => first.child.kill('SIGKILL'));
    const waiting = await waitFor('the task process to wait at its gate, in its cgroup', () => {
      const found = [...new Set(cgroupDirs().flatMap((dir) => pidsIn(join(dir, 'cgroup.procs'))))];
      return found.length > 0 && found;
    }, { timeoutMs: 20_000 });
    const shims = shimsFor(join(dataDir, 'crashed'));
    first.child.kill('SIGKILL');
    await first.exited;
    await waitFor('the task process and its supervisor to leave', () => [...waiting, ...shims.map((shim) => shim.pid)].every((pid) => !isAlive(pid)));
    assert.ok(!existsSync(join(dataDir, 'crashed', 'start.json')) && !existsSync(join(dataDir, 'crashed', 'exit.json')), 'no record was written');

    const second = spawnExecutor(['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0', '--reconcile-interval', '100ms']);
    closers.push(() => second.child.kill('SIGKILL'));
    const b = await connect(second);
    closers.push(() => b.client.close());
    assert.deepEqual((await b.api.listTasks()).tasks, [], 'the task was never admitted');
    assert.deepEqual(readdirSync(dataDir).filter((entry) => !entry.startsWith('.')), [], 'its directory is gone');
    await waitFor('its cgroup to be removed', () => cgroupDirs().every((dir) => !existsSync(dir)));
    assert.ok(!existsSync(marker), 'the task never ran');
  });

  test('a data dir without room refuses a gated start as DataDirFull at once, and its forked task process never runs, even on go', { skip: !cgroupsUsable && 'needs root and a cgroup filesystem' }, async () => {
    // The supervisor forks the task's process (which joins its cgroup) before it reserves the
    // records' room, so that both take place at once: the process must go when that fails.
    const tmpfs = mountTmpfs('64k');
    closers.push(() => tmpfs.unmount());
    const dir = join(tmpfs.path, 'full');
    mkdirSync(dir);
    tmpfs.fill();
    const marker = join(tempDir('te-gate-'), 'ran');
    const cgroups = new CgroupManager({ log: silent });
    const { cgroup } = cgroups.create(scopeOf(tmpfs.path), 'full', undefined);
    assert.ok(cgroup, 'a task cgroup');
    closers.push(() => cgroups.remove(cgroup));
    const cgroupArgs = cgroups.procsFiles(cgroup).flatMap((file) => ['--cgroup-procs', file]);
    const spawner = new ShimSpawner(SHIM, silent);
    closers.push(() => spawner.close());
    const shim = await spawner.spawn(['--dir', dir, '--gate', '1', ...cgroupArgs, '--', 'sh', '-c', `touch ${marker}`], { PATH: process.env.PATH }, { gated: true });
    const event = JSON.parse((await shim.nextLine())!) as { event: string; reason?: string };
    assert.deepEqual([event.event, event.reason], ['start-failed', 'DataDirFull'], 'the start failure is announced before go');
    shim.go();
    assert.equal(await shim.exited, '1');
    assert.ok(!existsSync(marker), 'the task never ran');
    const left = cgroups.procsFiles(cgroup).flatMap(pidsIn);
    assert.deepEqual(left, [], 'no process is left in its cgroup');
  });

  test('a gated supervisor starts the task on go', async () => {
    const dir = tempDir('te-gated-');
    const marker = join(tempDir('te-gate-'), 'ran');
    const spawner = new ShimSpawner(SHIM, silent);
    closers.push(() => spawner.close());
    const shim = await spawner.spawn(['--dir', dir, '--gate', '1', '--', 'sh', '-c', `touch ${marker}`], { PATH: process.env.PATH }, { gated: true });
    shim.go();
    assert.equal(JSON.parse((await shim.nextLine())!).event, 'started');
    await waitFor('the task to run', () => existsSync(marker));
  });
});
