// The safety-net resync (--reconcile-interval) is set to ten minutes here, so
// every change these tests wait for must come from a push (the shim's pipe, an
// inotify watch on the task directory) or a per-task timer (timeout, restart
// backoff), never from a periodic pass over all tasks.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { RestartPolicy } from '../../gen/taskexecutor/v1/task.js';
import { shell, startTestExecutor, tempDir, terminated, type TestExecutor } from '../support/executor.js';
import { waitFor } from '../support/wait.js';

const NO_RESYNC = { reconcileIntervalMs: 10 * 60 * 1000, stopGraceMs: 1000 };
/** Far below the resync interval: only a pushed change can arrive this soon. */
const SOON = { timeoutMs: 10_000 };

describe('changes are pushed, not polled', () => {
  const executors: TestExecutor[] = [];
  after(async () => {
    for (const te of executors.reverse()) await te.close();
  });
  const start = async (dataDir?: string) => {
    const te = await startTestExecutor(NO_RESYNC, dataDir);
    executors.push(te);
    return te;
  };
  const endOf = (te: TestExecutor, name: string) => async () => terminated((await te.api.getTask({ name })).task);

  test('a task that ends right after it starts is seen ending without a resync', async () => {
    const te = await start();
    await te.api.createTask({ task: shell('quick', 'exit 4') });
    assert.equal((await waitFor('the exit', endOf(te, 'quick'), SOON)).exitCode, 4);
  });

  test('a task re-attached after an executor restart is seen ending without a resync', async () => {
    const first = await start();
    const gate = join(tempDir('te-gate-'), 'open');
    await first.api.createTask({ task: shell('survivor', `while [ ! -e ${gate} ]; do sleep 0.05; done; exit 6`) });
    await first.stop();
    const second = await start(first.dataDir);
    writeFileSync(gate, '');
    assert.equal((await waitFor('the exit', endOf(second, 'survivor'), SOON)).exitCode, 6);
    assert.ok(existsSync(join(first.dataDir, 'survivor', 'exit.json')));
  });

  test('the end of a task whose supervisor was killed is seen without a resync, also after a restart', async () => {
    const first = await start();
    const gates = tempDir('te-gate-');
    const shimOf = (te: TestExecutor, name: string) =>
      (JSON.parse(readFileSync(join(te.dataDir, name, 'start.json'), 'utf8')) as { shimPid: number }).shimPid;
    const waitGate = (name: string) => shell(name, `while [ ! -e ${join(gates, name)} ]; do sleep 0.05; done; exit 6`);
    await first.api.createTask({ task: waitGate('orphan-before') });
    await first.api.createTask({ task: waitGate('orphan-after') });

    // Killed under this executor: its task runs on, then ends with nobody to record it.
    process.kill(shimOf(first, 'orphan-before'), 'SIGKILL');
    writeFileSync(join(gates, 'orphan-before'), '');
    const lost = await waitFor('the orphan to be seen ending', endOf(first, 'orphan-before'), SOON);
    assert.match(lost.message ?? '', /without recording an exit status/);

    // Killed while a later executor runs, which re-attached the task.
    await first.stop();
    const second = await start(first.dataDir);
    process.kill(shimOf(second, 'orphan-after'), 'SIGKILL');
    writeFileSync(join(gates, 'orphan-after'), '');
    const lostAfter = await waitFor('the re-attached orphan to be seen ending', endOf(second, 'orphan-after'), SOON);
    assert.match(lostAfter.message ?? '', /without recording an exit status/);
  });

  test('a timeout is acted on by its own timer', async () => {
    const te = await start();
    await te.api.createTask({ task: shell('slow', 'sleep 60', { timeoutSeconds: 1 }) });
    assert.equal((await waitFor('the timeout', endOf(te, 'slow'), SOON)).reason, 'TaskTimeout');
  });

  test('a restart under the restart policy is started by its backoff timer', async () => {
    const te = await start();
    await te.api.createTask({
      task: shell('again', 'exit 3', {}, { restartPolicy: RestartPolicy.RESTART_POLICY_ON_FAILURE, maxRestarts: 1 }),
    });
    await waitFor(
      'the restart to run and end',
      async () => {
        const task = (await te.api.getTask({ name: 'again' })).task;
        return task?.status?.restartCount === 1 && terminated(task);
      },
      SOON,
    );
  });

  test('a deleted task is removed without a resync', async () => {
    const te = await start();
    await te.api.createTask({ task: shell('doomed', 'sleep 60') });
    await te.api.deleteTask({ name: 'doomed' });
    await waitFor('the task to be gone', async () => (await te.api.listTasks()).tasks.length === 0, SOON);
  });
});
