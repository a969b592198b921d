// One executor per data dir: a second one on the same data dir would take the
// first one's tasks as its own (a Create of a name the first one runs wrote
// over that task's directory while its processes kept running).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createLogger } from '../../src/logger.js';
import { DataDirInUseError, type DataDirLock, LOCK_NAME, lockDataDir } from '../../src/store/data-dir-lock.js';
import { packageRoot } from '../../src/util/package-root.js';
import { socketAnswers } from '../../src/util/unix-socket.js';
import { capturingLogger } from '../support/log-capture.js';
import { processTask, startTestExecutor, stateOf, tempDir } from '../support/executor.js';
import { killTaskTrees } from '../support/processes.js';
import { connect, spawnExecutor } from '../support/subprocess.js';
import { waitFor } from '../support/wait.js';

const SHIM = join(packageRoot(), 'build', 'task-shim');

/** Leaves at `path` what a kill -9 leaves: the socket file of a process that listened on it and died. */
async function leaveStaleSocket(path: string): Promise<void> {
  const script = `require('node:net').createServer().listen(${JSON.stringify(path)}, () => console.log('listening'))`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => void (output += chunk.toString()));
  await waitFor('the soon-dead process to listen', () => output.includes('listening'));
  child.kill('SIGKILL');
  await once(child, 'exit');
  assert.ok(lstatSync(path).isSocket(), 'a socket file is left behind');
  assert.equal(await socketAnswers(path), false, 'and nothing answers on it');
}

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

  test('executors racing to take over a lock left by a killed one: exactly one gets it, every other is told the data dir is in use', async () => {
    const dataDir = tempDir();
    const path = join(dataDir, LOCK_NAME);
    const log = createLogger('silent');
    for (let round = 0; round < 5; round++) {
      await leaveStaleSocket(path);
      const attempts = await Promise.allSettled(Array.from({ length: 8 }, () => lockDataDir(dataDir, SHIM, log)));
      const winners = attempts.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
      const refusals = attempts.flatMap((a) => (a.status === 'rejected' ? [a.reason as unknown] : []));
      try {
        assert.equal(winners.length, 1, `round ${round}: ${winners.length} of 8 contenders got the lock`);
        for (const refusal of refusals) {
          assert.ok(refusal instanceof DataDirInUseError, `round ${round}: a contender failed with ${String(refusal)} instead of "in use"`);
        }
        assert.equal(await socketAnswers(path), true, "the winner's socket is in place");
      } finally {
        await Promise.all(winners.map((w: DataDirLock) => w.release()));
      }
      assert.ok(!existsSync(path), 'the release removes the lock');
    }
  });

  test('a shim that cannot flock (built before --lock-dir) still lets the executor take the lock, with a warning', async () => {
    const dataDir = tempDir();
    const { log, text } = capturingLogger();
    const lock = await lockDataDir(dataDir, '/bin/false', log);
    try {
      assert.equal(await socketAnswers(join(dataDir, LOCK_NAME)), true);
      assert.match(text(), /cannot flock the data dir: two executors starting at the same moment after a crash could both take its lock/);
    } finally {
      await lock.release();
    }
  });
});
