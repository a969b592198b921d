// Damaged or hostile state around the manager: an executor killed while a
// restart starts, a record corrupted under a running task, a task directory
// removed from under the executor, a full or read-only data dir, and the
// --max-tasks limit. Each case was found failing by a hostile test pass.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { RestartPolicy } from '../../gen/taskexecutor/v1/task.js';
import { processTask, shell, startTestExecutor, stateOf, tempDir, terminated } from '../support/executor.js';
import { isAlive, killTaskTrees } from '../support/processes.js';
import { connect, spawnExecutor } from '../support/subprocess.js';
import { mountTmpfs } from '../support/tmpfs.js';
import { waitFor } from '../support/wait.js';

const pidsIn = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map(Number) : []);

describe('hostile state', () => {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('an executor killed while a restart is starting never runs the task more often than allowed, nor twice at once', async () => {
    const dataDir = tempDir();
    const scratch = tempDir('te-scratch-');
    cleanups.push(() => killTaskTrees(dataDir));
    const args = ['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0', '--reconcile-interval', '100ms'];
    const runs = join(scratch, 'runs');
    const live = join(scratch, 'live');
    // Each run logs its start, counts itself live for a while (a second concurrent copy would see 2), then fails.
    const script = `echo $$ >> ${runs}; n=$(ls ${live} 2>/dev/null | wc -l); echo $n > ${scratch}/seen.$$; touch ${live}/$$; sleep 0.5; rm ${live}/$$; exit 1`;
    mkdirSync(live);
    const first = spawnExecutor(args);
    cleanups.push(() => first.child.kill('SIGKILL'));
    const a = await connect(first);
    await a.api.createTask({ task: shell('flaky', script, {}, { restartPolicy: RestartPolicy.RESTART_POLICY_ON_FAILURE, maxRestarts: 2 }) });
    // The moment the first restart's process is up, kill the executor: its start may not be recorded yet.
    await waitFor('the first restart to begin', () => pidsIn(runs).length >= 2, { timeoutMs: 20_000, intervalMs: 1 });
    first.child.kill('SIGKILL');
    await first.exited;
    a.client.close();

    const second = spawnExecutor(args);
    cleanups.push(() => second.child.kill('SIGKILL'));
    const b = await connect(second);
    let last: unknown;
    const end = await waitFor(
      'the task to end for good',
      async () => {
        const task = (await b.api.getTask({ name: 'flaky' })).task;
        last = task?.status;
        return terminated(task) && task?.status?.restartCount === 2 ? terminated(task) : undefined;
      },
      { timeoutMs: 30_000 },
    ).catch((error: Error) => assert.fail(`${error.message}; last status ${JSON.stringify(last)}; runs ${pidsIn(runs)}; ${second.output().slice(-3000)}`));
    b.client.close();
    assert.equal(pidsIn(runs).length, 3, `one run and two restarts, no more: ${pidsIn(runs)}`);
    for (const file of readdirSync(scratch).filter((f) => f.startsWith('seen.'))) {
      assert.equal(readFileSync(join(scratch, file), 'utf8').trim(), '0', 'no two runs may overlap');
    }
    assert.equal(end.exitCode, 1);
    assert.equal(end.reason, 'Failed');
  });

  test("a running task whose record is unreadable is stopped before its name is freed, so re-creating it gives one copy", async () => {
    const dataDir = tempDir();
    const pids = join(dataDir, '..', `${join(dataDir).split('/').pop()}.pids`);
    cleanups.push(() => rmSync(pids, { force: true }));
    const first = await startTestExecutor({}, dataDir);
    await first.api.createTask({ task: shell('victim', `echo $$ >> ${pids}; sleep 300 & echo $! >> ${pids}; wait`) });
    await waitFor('the task and its child', () => pidsIn(pids).length === 2);
    await first.stop();
    writeFileSync(join(dataDir, 'victim', 'task.json'), '{ garbage');

    const second = await startTestExecutor({}, dataDir);
    cleanups.push(() => second.close());
    const [shellPid, childPid] = pidsIn(pids) as [number, number];
    assert.ok(!isAlive(shellPid) && !isAlive(childPid), 'what the unreadable record owned was stopped');
    assert.equal(readdirSync(join(dataDir, '.quarantine')).length, 1, 'the record was quarantined');
    await assert.rejects(second.api.getTask({ name: 'victim' }), (e: ServiceError) => e.code === status.NOT_FOUND);

    await second.api.createTask({ task: shell('victim', `echo $$ >> ${pids}; sleep 300`) });
    await waitFor('the new copy', () => pidsIn(pids).length === 3);
    assert.equal(pidsIn(pids).filter(isAlive).length, 1, 'exactly one copy runs');
  });

  test('a directory left under a new task\'s name is replaced by a fresh one on Create', async () => {
    const te = await startTestExecutor();
    cleanups.push(() => te.close());
    // Left by a crash between the directory and its first record, or put there by hand.
    mkdirSync(join(te.dataDir, 'leftover', 'logs'), { recursive: true });
    writeFileSync(join(te.dataDir, 'leftover', 'exit.json'), '{"exitCode":3,"signal":0,"finishedAt":"2020-01-01T00:00:00Z"}\n');
    writeFileSync(join(te.dataDir, 'leftover', 'logs', 'output.0.log'), '2020-01-01T00:00:00.000000000Z stdout F old\n');
    const { task } = await te.api.createTask({ task: processTask('leftover', ['sleep', '300']) });
    assert.equal(stateOf(task)?.$case, 'running');
    assert.deepEqual(readdirSync(join(te.dataDir, 'leftover', 'logs')).filter((file) => readFileSync(join(te.dataDir, 'leftover', 'logs', file), 'utf8').includes(' old')), [], 'nothing of the old directory is left');
  });

  test('a task directory removed from under the executor blocks neither that task nor the others', async () => {
    const te = await startTestExecutor({ stopGraceMs: 500 });
    cleanups.push(() => te.close());
    await te.api.setTasks({ tasks: ['d-1', 'd-2', 'd-3'].map((name) => processTask(name, ['sleep', '300'])) });
    rmSync(join(te.dataDir, 'd-2'), { recursive: true, force: true });

    await te.api.deleteTask({ name: 'd-1' });
    const { tasks } = await te.api.setTasks({ tasks: [] });
    assert.ok(tasks.every((t) => t.deletionTimestamp), 'every task is being deleted');
    await waitFor('every task to be gone', async () => (await te.api.listTasks()).tasks.length === 0, { timeoutMs: 20_000 });
  });

  test('on a full data dir, Delete and SetTasks([]) still remove tasks, including the one filling the disk', async () => {
    const tmpfs = mountTmpfs('2m');
    cleanups.push(() => tmpfs.unmount());
    const mount = tmpfs.path;
    const dataDir = join(mount, 'tasks');
    mkdirSync(dataDir);
    const te = await startTestExecutor({ stopGraceMs: 500 }, dataDir);
    cleanups.push(() => te.close());
    await te.api.setTasks({ tasks: [processTask('keeper', ['sleep', '300']), processTask('other', ['sleep', '300'])] });
    tmpfs.fill();

    await assert.rejects(
      te.api.createTask({ task: processTask('newcomer', ['true']) }),
      (e: ServiceError) => e.code === status.RESOURCE_EXHAUSTED && /no space left/.test(e.details) && !e.details.includes(mount),
    );
    const deleted = await te.api.deleteTask({ name: 'keeper' });
    assert.ok(deleted.task?.deletionTimestamp, 'Delete is accepted on a full disk');
    await te.api.setTasks({ tasks: [] });
    await waitFor('every task to be gone', async () => (await te.api.listTasks()).tasks.length === 0, { timeoutMs: 20_000 });
  });

  test('a read-only data dir answers UNAVAILABLE with a message that names no server path', async () => {
    const tmpfs = mountTmpfs('4m');
    cleanups.push(() => tmpfs.unmount());
    const mount = tmpfs.path;
    const dataDir = join(mount, 'tasks');
    mkdirSync(dataDir);
    const te = await startTestExecutor({}, dataDir);
    cleanups.push(() => te.close());
    execFileSync('mount', ['-o', 'remount,ro', mount]);
    cleanups.push(() => execFileSync('mount', ['-o', 'remount,rw', mount]));
    await assert.rejects(te.api.createTask({ task: processTask('ro', ['true']) }), (e: ServiceError) => {
      assert.equal(e.code, status.UNAVAILABLE, e.details);
      assert.match(e.details, /cannot write its data dir/);
      assert.ok(!e.details.includes(mount), `the message must not show the server's path: ${e.details}`);
      return true;
    });
  });

  test('--max-tasks refuses what would exceed it with RESOURCE_EXHAUSTED, and counts tasks being deleted', async () => {
    const te = await startTestExecutor({ maxTasks: 2, stopGraceMs: 5000 });
    cleanups.push(() => te.close());
    await te.api.setTasks({ tasks: [processTask('m-1', ['sleep', '300']), processTask('m-2', ['sleep', '300'])] });
    await assert.rejects(te.api.createTask({ task: processTask('m-3', ['true']) }), (e: ServiceError) => {
      assert.equal(e.code, status.RESOURCE_EXHAUSTED);
      assert.match(e.details, /at most 2 tasks \(--max-tasks\)/);
      return true;
    });
    await assert.rejects(
      te.api.setTasks({ tasks: ['m-1', 'm-2', 'm-3'].map((n) => processTask(n, ['sleep', '300'])) }),
      (e: ServiceError) => e.code === status.RESOURCE_EXHAUSTED,
    );
    assert.equal((await te.api.listTasks()).tasks.length, 2, 'a refused SetTasks changes nothing');
    await te.api.setTasks({ tasks: [] });
    await waitFor('room again', async () => (await te.api.listTasks()).tasks.length === 0, { timeoutMs: 20_000 });
    assert.equal(stateOf((await te.api.createTask({ task: processTask('m-3', ['sleep', '1']) })).task)?.$case, 'running');
  });
});
