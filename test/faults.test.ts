// Faults: a task that forks thousands of processes, two controllers racing
// SetTasks, a full disk under the task logs, and an executor killed with SIGKILL
// in the middle of a SetTasks. Nothing may be lost, leaked or left inconsistent.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { processTask, shell, startTestExecutor, stateOf, tempDir, terminated } from './support/executor.js';
import { isAlive, killTaskTrees } from './support/processes.js';
import { connect, spawnExecutor } from './support/subprocess.js';
import { waitFor } from './support/wait.js';

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
    await waitFor('some tasks to be admitted', () => readdirSync(dataDir).length >= 40, { timeoutMs: 30_000, intervalMs: 2 });
    first.child.kill('SIGKILL');
    await first.exited;
    await call;
    a.client.close();
    const admittedDirs = readdirSync(dataDir).filter((d) => !d.startsWith('.'));

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
    assert.ok(recovered.length >= admittedDirs.length - 32, `recovered ${recovered.length} of ${admittedDirs.length} admitted directories`);
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
