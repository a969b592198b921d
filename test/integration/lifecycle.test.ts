import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { RestartPolicy } from '../../gen/taskexecutor/v1/task.js';
import { openSubscribedWatch, processTask, shell, startTestExecutor, tempDir, terminated, type TestExecutor } from '../support/executor.js';
import { waitFor } from '../support/wait.js';

function logLines(dataDir: string, name: string): string[] {
  const dir = join(dataDir, name, 'logs');
  return readFileSync(join(dir, 'output.0.log'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ').slice(3).join(' '));
}

describe('task lifecycle settings', () => {
  let te: TestExecutor;
  const scratch = tempDir('te-scratch-');
  before(async () => {
    te = await startTestExecutor({ stopGraceMs: 30_000 });
  });
  after(async () => {
    await te.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  const finished = (name: string, timeoutMs = 10_000) =>
    waitFor(`task ${name} to terminate`, async () => terminated((await te.api.getTask({ name })).task), { timeoutMs });
  const gone = (name: string) =>
    waitFor(`task ${name} to be removed`, () =>
      te.api.getTask({ name }).then(
        () => false,
        (error: ServiceError) => error.code === status.NOT_FOUND,
      ),
    );

  test('a task runs as the requested user and group, with that user’s HOME, USER and supplementary groups', async () => {
    await te.api.createTask({ task: processTask('as-nobody', ['sh', '-c', 'echo "$(id -u):$(id -g):$(id -G):$USER:$HOME"'], { user: 'nobody' }) });
    await finished('as-nobody');
    assert.deepEqual(logLines(te.dataDir, 'as-nobody'), ['65534:65534:65534:nobody:/nonexistent']);

    await te.api.createTask({ task: processTask('numeric-ids', ['sh', '-c', 'echo "$(id -u):$(id -g):$(id -G)"'], { user: '4321', group: '8765' }) });
    await finished('numeric-ids');
    assert.deepEqual(logLines(te.dataDir, 'numeric-ids'), ['4321:8765:8765']);
  });

  test('an unknown user is INVALID_ARGUMENT when malformed and ProcessStartFailed when it does not exist', async () => {
    await assert.rejects(
      te.api.createTask({ task: processTask('bad-user', ['true'], { user: 'no body' }) }),
      (error: ServiceError) => error.code === status.INVALID_ARGUMENT && /user "no body"/.test(error.details),
    );
    const { task } = await te.api.createTask({ task: processTask('missing-user', ['true'], { user: 'no-such-user' }) });
    assert.equal(terminated(task)?.reason, 'ProcessStartFailed');
    assert.match(terminated(task)?.message ?? '', /user no-such-user: no such user/);
  });

  test('cleanEnv starts from an empty environment plus the task’s own entries', async () => {
    process.env.TE_TEST_INHERITED = 'leaks';
    try {
      await te.api.createTask({ task: processTask('clean-env', ['/usr/bin/env'], { cleanEnv: true, env: [{ name: 'ONLY', value: 'this' }] }) });
      await te.api.createTask({ task: processTask('inherited-env', ['/usr/bin/env']) });
      await finished('clean-env');
      await finished('inherited-env');
    } finally {
      delete process.env.TE_TEST_INHERITED;
    }
    assert.deepEqual(logLines(te.dataDir, 'clean-env'), ['ONLY=this']);
    assert.ok(logLines(te.dataDir, 'inherited-env').includes('TE_TEST_INHERITED=leaks'));
  });

  test('chroot runs the task inside the given root', async () => {
    const root = join(scratch, 'root');
    mkdirSync(join(root, 'bin'), { recursive: true });
    mkdirSync(join(root, 'data'));
    copyFileSync('/bin/busybox', join(root, 'bin', 'busybox'));
    await te.api.createTask({ task: processTask('chrooted', ['/bin/busybox', 'sh', '-c', 'pwd; /bin/busybox ls /'], { chroot: root, workingDir: '/data' }) });
    const end = await finished('chrooted');
    assert.equal(end.exitCode, 0, end.message);
    assert.deepEqual(logLines(te.dataDir, 'chrooted'), ['/data', 'bin', 'data']);
  });

  test('a per-task stop signal is what deletion sends', async () => {
    const marker = join(scratch, 'got-int');
    await te.api.createTask({
      task: shell('int-handler', `trap 'echo int > ${marker}; exit 7' INT; while :; do sleep 0.05; done`, {}, { stopSignal: 'SIGINT' }),
    });
    const { call: stream, events: seen } = await openSubscribedWatch(te);
    await te.api.deleteTask({ name: 'int-handler' });
    await gone('int-handler');
    const ends = () =>
      seen.flatMap((e) => {
        const end = terminated(e.task);
        return e.task?.name === 'int-handler' && end ? [end.exitCode ?? -1] : [];
      });
    // Removal follows the end, but the watch's copy of the event may still be on its way.
    const events = await waitFor('the watch to see the end', () => ends().length > 0 && ends());
    stream.cancel();
    assert.equal(readFileSync(marker, 'utf8'), 'int\n');
    assert.deepEqual([...new Set(events)], [7], "the task saw SIGINT and exited through its trap");
  });

  test('a per-task grace period bounds how long a task that ignores the stop signal lives', async () => {
    await te.api.createTask({ task: shell('stubborn', "trap '' TERM; while :; do sleep 0.05; done", {}, { terminationGracePeriodSeconds: 1 }) });
    const started = Date.now();
    await te.api.deleteTask({ name: 'stubborn' });
    await gone('stubborn');
    const took = Date.now() - started;
    assert.ok(took >= 900, `SIGKILL must wait for the grace period (took ${took} ms)`);
    // Far below the executor's default (30 s here): a loaded machine may add seconds, not tens of them.
    assert.ok(took < 15_000, `the executor default of 30 s must not apply (took ${took} ms)`);
  });

  test('RESTART_POLICY_ON_FAILURE restarts a failing task with backoff up to maxRestarts, then it stays terminated', async () => {
    const runs = join(scratch, 'restart-runs');
    // Every BackOff from the manager's own events: a poll of Get can miss the first (1 s) one under load.
    const backoffs: string[] = [];
    const unsubscribe = te.executor.manager.subscribe(({ task: { name, state } }) => {
      if (name === 'flaky' && state.phase === 'waiting' && state.reason === 'BackOff') backoffs.push(state.message ?? '');
    });
    await te.api.createTask({
      task: shell('flaky', `echo run >> ${runs}; exit 4`, {}, { restartPolicy: RestartPolicy.RESTART_POLICY_ON_FAILURE, maxRestarts: 2 }),
    });
    const backoff = await waitFor('a BackOff state', () => backoffs[0]);
    assert.match(backoff, /exited with code 4 \(Failed\); restart 1 of 2 in 1s/);
    const end = await waitFor(
      'the last run to end',
      async () => {
        const { task } = await te.api.getTask({ name: 'flaky' });
        return task?.status?.restartCount === 2 && terminated(task);
      },
      { timeoutMs: 15_000 },
    );
    assert.equal(end.exitCode, 4);
    assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\nrun\n');
    unsubscribe();
    assert.match(backoffs.at(-1) ?? '', /restart 2 of 2 in 2s/);
  });

  test('RESTART_POLICY_ON_FAILURE does not restart a task that succeeds', async () => {
    await te.api.createTask({ task: shell('fine', 'exit 0', {}, { restartPolicy: RestartPolicy.RESTART_POLICY_ON_FAILURE }) });
    const end = await finished('fine');
    assert.equal(end.reason, 'Succeeded');
    assert.equal((await te.api.getTask({ name: 'fine' })).task?.status?.restartCount, 0);
  });

  test('bad task settings are INVALID_ARGUMENT naming the field', async () => {
    const cases: [Parameters<typeof processTask>[3], RegExp][] = [
      [{ stopSignal: 'SIGNOPE' }, /stopSignal "SIGNOPE" is not a signal name/],
      [{ terminationGracePeriodSeconds: -1 }, /terminationGracePeriodSeconds must be a whole number/],
      [{ maxRestarts: 5000 }, /maxRestarts must be a whole number from 0 to 1000/],
      [{ resources: { memoryBytes: 10 } }, /resources.memoryBytes must be a whole number/],
      [{ logs: { maxFiles: 0 } }, /logs.maxFiles must be a whole number/],
      [{ restartPolicy: 42 as RestartPolicy }, /restartPolicy has an unknown value/],
    ];
    for (const [spec, pattern] of cases) {
      await assert.rejects(te.api.createTask({ task: processTask('bad-settings', ['true'], {}, spec) }), (error: ServiceError) => {
        assert.equal(error.code, status.INVALID_ARGUMENT);
        assert.match(error.details, pattern);
        return true;
      });
    }
  });
});
