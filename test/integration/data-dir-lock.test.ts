// One executor per data dir: a second one on the same data dir would take the
// first one's tasks as its own (a Create of a name the first one runs wrote
// over that task's directory while its processes kept running).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { LOCK_NAME } from '../../src/store/data-dir-lock.js';
import { processTask, startTestExecutor, stateOf, tempDir } from '../support/executor.js';
import { killTaskTrees } from '../support/processes.js';
import { connect, spawnExecutor } from '../support/subprocess.js';
import { waitFor } from '../support/wait.js';

describe('the data dir lock', () => {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('a second executor on a data dir in use refuses to start, saying why, and the first one keeps its task', async () => {
    const te = await startTestExecutor();
    cleanups.push(() => te.close());
    const created = (await te.api.createTask({ task: processTask('first-owner', ['sleep', '60']) })).task;
    const second = spawnExecutor(['--data-dir', te.dataDir, '--listen-addr', '127.0.0.1:0']);
    cleanups.push(() => second.child.kill('SIGKILL'));
    const code = await waitFor('the second executor to exit', () => second.child.exitCode ?? (/task-executor listening/.test(second.output()) && 'listening'), {
      timeoutMs: 30_000,
    });
    assert.equal(code, 1, `the second executor should refuse to start: ${second.output().slice(-1500)}`);
    assert.match(second.output(), /data dir .* is in use by another executor.*give this one its own --data-dir/);
    const task = (await te.api.getTask({ name: 'first-owner' })).task;
    assert.equal(stateOf(task)?.$case, 'running');
    assert.deepEqual(stateOf(task), stateOf(created), 'the task was not touched');
  });

  test('the lock goes with its executor: after a clean stop and after SIGKILL the next executor starts', async () => {
    const dataDir = tempDir();
    cleanups.push(() => killTaskTrees(dataDir));
    const args = ['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0'];
    const te = await startTestExecutor({}, dataDir);
    assert.ok(existsSync(join(dataDir, LOCK_NAME)));
    await te.stop();
    assert.ok(!existsSync(join(dataDir, LOCK_NAME)), 'a clean stop removes the lock');

    const killed = spawnExecutor(args);
    cleanups.push(() => killed.child.kill('SIGKILL'));
    (await connect(killed)).client.close();
    killed.child.kill('SIGKILL');
    await killed.exited;
    assert.ok(existsSync(join(dataDir, LOCK_NAME)), 'SIGKILL leaves the socket file');

    const next = spawnExecutor(args);
    cleanups.push(() => next.child.kill('SIGKILL'));
    const { client } = await connect(next);
    client.close();
    assert.match(next.output(), /removed the lock of an executor that is gone/);
  });
});
