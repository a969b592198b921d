import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { containerTask, shell, processTask, startTestExecutor, stateOf, terminated, type TestExecutor } from '../support/executor.js';
import { logText } from '../support/log-files.js';
import { waitFor } from '../support/wait.js';

function grpcError(code: status, pattern: RegExp) {
  return (error: ServiceError) => {
    assert.equal(error.code, code, `expected code ${status[code]}, got ${status[error.code]}: ${error.details}`);
    assert.match(error.details, pattern);
    return true;
  };
}

describe('task API over gRPC', () => {
  let te: TestExecutor;
  before(async () => {
    te = await startTestExecutor();
  });
  after(async () => te.close());

  const finished = (name: string) =>
    waitFor(`task ${name} to terminate`, async () => terminated((await te.api.getTask({ name })).task));

  test('create starts a process task and reports it running, then succeeded', async () => {
    const { task } = await te.api.createTask({ task: shell('hello', 'echo hello; sleep 0.3') });
    assert.equal(task?.name, 'hello');
    assert.equal(stateOf(task)?.$case, 'running');
    assert.ok(task?.creationTimestamp instanceof Date);
    const end = await finished('hello');
    assert.equal(end.exitCode, 0);
    assert.equal(end.reason, 'Succeeded');
    assert.ok(end.startedAt && end.finishedAt && end.finishedAt >= end.startedAt);
    assert.equal(logText(te.dataDir, 'hello'), 'hello');
  });

  test('a failing task terminates with its exit code and reason Failed', async () => {
    await te.api.createTask({ task: shell('fails', 'exit 3') });
    const end = await finished('fails');
    assert.equal(end.exitCode, 3);
    assert.equal(end.reason, 'Failed');
  });

  test('a task killed by a signal reports 128+signal and the signal', async () => {
    await te.api.createTask({ task: shell('killed', 'kill -KILL $$') });
    const end = await finished('killed');
    assert.equal(end.exitCode, 137);
    assert.equal(end.signal, 9);
  });

  test('command and args are passed without a shell; env and workingDir are honoured', async () => {
    await te.api.createTask({
      task: processTask('argv', ['sh', '-c'], {
        args: ['printf "%s|%s|%s" "$0" "$GREETING" "$(pwd)"', '$not-expanded;'],
        env: [
          { name: 'GREETING', value: 'first' },
          { name: 'GREETING', value: 'hi there' },
        ],
        workingDir: '/tmp',
      }),
    });
    await finished('argv');
    assert.equal(logText(te.dataDir, 'argv'), '$not-expanded;|hi there|/tmp');
  });

  test('a task without workingDir starts in its task directory, as the proto says', async () => {
    await te.api.createTask({ task: processTask('where', ['pwd']) });
    await waitFor('where to end', async () => terminated((await te.api.getTask({ name: 'where' })).task));
    assert.equal(logText(te.dataDir, 'where'), join(te.dataDir, 'where'));
  });

  test('a missing program or working directory ends the task with ProcessStartFailed and a clear message', async () => {
    const { task } = await te.api.createTask({ task: processTask('no-such-program', ['/nonexistent/prog']) });
    const end = terminated(task);
    assert.equal(end?.reason, 'ProcessStartFailed');
    assert.equal(end?.exitCode, 127);
    assert.match(end?.message ?? '', /\/nonexistent\/prog/);

    const { task: t2 } = await te.api.createTask({ task: processTask('bad-dir', ['true'], { workingDir: '/nonexistent/dir' }) });
    assert.equal(terminated(t2)?.reason, 'ProcessStartFailed');
    assert.match(terminated(t2)?.message ?? '', /\/nonexistent\/dir/);
  });

  test('create of an existing name is ALREADY_EXISTS', async () => {
    await te.api.createTask({ task: shell('dup', 'sleep 5') });
    await assert.rejects(te.api.createTask({ task: shell('dup', 'sleep 5') }), grpcError(status.ALREADY_EXISTS, /"dup" already exists/));
    await te.api.deleteTask({ name: 'dup' });
  });

  test('get and delete of an unknown name are NOT_FOUND', async () => {
    await assert.rejects(te.api.getTask({ name: 'nope' }), grpcError(status.NOT_FOUND, /task "nope" not found/));
    await assert.rejects(te.api.deleteTask({ name: 'nope' }), grpcError(status.NOT_FOUND, /task "nope" not found/));
  });

  test('bad names are INVALID_ARGUMENT with a message naming the rule', async () => {
    for (const name of ['', 'Upper', '../etc', 'a/b', '.', '..', '-x', 'x'.repeat(254), 'sp ace', 'nul\0']) {
      await assert.rejects(
        te.api.createTask({ task: shell(name, 'true') }),
        grpcError(status.INVALID_ARGUMENT, name === '' ? /task.name is required/ : /task.name/),
        `name ${JSON.stringify(name)}`,
      );
    }
    await assert.rejects(te.api.getTask({ name: '../../etc/passwd' }), grpcError(status.INVALID_ARGUMENT, /DNS-1123/));
  });

  test('bad specs are INVALID_ARGUMENT with the offending field', async () => {
    const cases: [object, RegExp][] = [
      [{ name: 'no-spec' }, /exactly one of process or container/],
      [processTask('empty-command', []), /command is empty/],
      [processTask('nul-arg', ['echo', 'a\0b']), /command\[1\] contains a NUL byte/],
      [processTask('relative-dir', ['true'], { workingDir: 'tmp' }), /workingDir "tmp" must be an absolute path/],
      [processTask('neg-timeout', ['true'], { timeoutSeconds: -1 }), /timeoutSeconds/],
      [{ ...processTask('bad-env', ['true'], { env: [{ name: 'A=B', value: '' }] }) }, /env\[0\]\.name "A=B"/],
    ];
    for (const [task, pattern] of cases) {
      await assert.rejects(te.api.createTask({ task: task as never }), grpcError(status.INVALID_ARGUMENT, pattern));
    }
    await assert.rejects(te.api.createTask({}), grpcError(status.INVALID_ARGUMENT, /task is required/));
  });

  test('a container task without container mode is FAILED_PRECONDITION', async () => {
    await assert.rejects(
      te.api.createTask({
        task: containerTask('ctr', 'busybox'),
      }),
      grpcError(status.FAILED_PRECONDITION, /--enable-container-mode/),
    );
    await assert.rejects(te.api.getTask({ name: 'ctr' }), grpcError(status.NOT_FOUND, /not found/));
  });

  test('list returns every task sorted by name', async () => {
    await te.api.createTask({ task: shell('zz-last', 'true') });
    await te.api.createTask({ task: shell('aa-first', 'true') });
    const names = (await te.api.listTasks()).tasks.map((t) => t.name);
    assert.deepEqual(names, [...names].sort());
    assert.ok(names.includes('aa-first') && names.includes('zz-last'));
  });

  test('a task that exceeds its timeout is stopped and reports TaskTimeout', async () => {
    await te.api.createTask({ task: shell('slow', 'sleep 30', { timeoutSeconds: 1 }) });
    const end = await finished('slow');
    assert.equal(end.reason, 'TaskTimeout');
    assert.equal(end.exitCode, 143);
    assert.match(end.message, /timeout of 1 seconds/);
  });

  test('the service keeps serving after bad requests', async () => {
    await assert.rejects(te.api.createTask({ task: processTask('x'.repeat(300), ['true']) }));
    assert.ok(Array.isArray((await te.api.listTasks()).tasks));
  });
});
