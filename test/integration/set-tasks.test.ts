import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { WatchEventType, type WatchResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { processTask, shell, startTestExecutor, stateOf, type TestExecutor } from '../support/executor.js';
import { waitFor } from '../support/wait.js';

describe('SetTasks', () => {
  let te: TestExecutor;
  before(async () => {
    te = await startTestExecutor({ stopGraceMs: 500 });
  });
  after(async () => te.close());

  const names = async () => (await te.api.listTasks()).tasks.map((t) => t.name);

  test('creates new names and returns the current list, as the original README example does', async () => {
    const { tasks } = await te.api.setTasks({
      tasks: [processTask('task-alpha', ['sleep', '10']), processTask('task-beta', ['ls', '-l', '/tmp'])],
    });
    assert.deepEqual(
      tasks.map((t) => t.name),
      ['task-alpha', 'task-beta'],
    );
    assert.equal(stateOf(tasks[0])?.$case, 'running');
  });

  test('sending the same set again changes nothing (idempotent, no restart)', async () => {
    const before = (await te.api.getTask({ name: 'task-alpha' })).task;
    const { tasks } = await te.api.setTasks({
      tasks: [processTask('task-alpha', ['sleep', '10']), processTask('task-beta', ['ls', '-l', '/tmp'])],
    });
    const alpha = tasks.find((t) => t.name === 'task-alpha');
    assert.deepEqual(stateOf(alpha), stateOf(before));
    assert.equal(alpha?.deletionTimestamp, undefined);
  });

  test('a changed spec for an existing name is FAILED_PRECONDITION and changes nothing', async () => {
    await assert.rejects(
      te.api.setTasks({ tasks: [processTask('task-alpha', ['sleep', '11']), processTask('task-gamma', ['true'])] }),
      (error: ServiceError) => {
        assert.equal(error.code, status.FAILED_PRECONDITION);
        assert.match(error.details, /"task-alpha".*cannot change/);
        return true;
      },
    );
    const current = await names();
    assert.ok(!current.includes('task-gamma'), 'nothing may be created when the call is rejected');
    assert.equal((await te.api.getTask({ name: 'task-beta' })).task?.deletionTimestamp, undefined);
  });

  test('duplicate names in one request are INVALID_ARGUMENT', async () => {
    await assert.rejects(
      te.api.setTasks({ tasks: [processTask('twice', ['true']), processTask('twice', ['true'])] }),
      (error: ServiceError) => error.code === status.INVALID_ARGUMENT && /appears more than once/.test(error.details),
    );
  });

  test('names left out are marked for deletion and then removed', async () => {
    const { tasks } = await te.api.setTasks({ tasks: [processTask('task-beta', ['ls', '-l', '/tmp'])] });
    const alpha = tasks.find((t) => t.name === 'task-alpha');
    assert.ok(alpha?.deletionTimestamp instanceof Date, 'a task being deleted stays visible with its deletion mark');
    await waitFor('task-alpha to be removed', async () => !(await names()).includes('task-alpha'));
  });

  test('an empty list deletes every task', async () => {
    await te.api.setTasks({ tasks: [] });
    await waitFor('every task to be removed', async () => (await names()).length === 0);
  });

  test('Watch streams added, modified and deleted events', async () => {
    const events: WatchResponse[] = [];
    const stream = te.client.watch({ sendInitial: true });
    stream.on('data', (event: WatchResponse) => events.push(event));
    stream.on('error', () => {});
    await te.api.setTasks({ tasks: [shell('watched', 'exit 0')] });
    await waitFor('a terminated event', () => events.some((e) => stateOf(e.task)?.$case === 'terminated'));
    await te.api.setTasks({ tasks: [] });
    await waitFor('a deleted event', () => events.some((e) => e.type === WatchEventType.WATCH_EVENT_TYPE_DELETED));
    stream.cancel();
    const types = events.filter((e) => e.task?.name === 'watched').map((e) => e.type);
    assert.equal(types[0], WatchEventType.WATCH_EVENT_TYPE_ADDED);
    assert.equal(types.at(-1), WatchEventType.WATCH_EVENT_TYPE_DELETED);
    assert.ok(types.includes(WatchEventType.WATCH_EVENT_TYPE_MODIFIED));
  });

  test('the reply lists a task it deleted even when that deletion finished while new tasks were still starting', async () => {
    await te.api.createTask({ task: shell('finished', 'exit 0') });
    await waitFor('finished to end', async () => stateOf((await te.api.getTask({ name: 'finished' })).task)?.$case === 'terminated');
    // The new task's supervisor waits 1.5 s before exec (a test hook), far longer than removing an ended task takes.
    const slow = processTask('slow-start', ['sleep', '30'], { env: [{ name: 'TASK_SHIM_TEST_STALL_MS', value: '1500' }] });
    const { tasks } = await te.api.setTasks({ tasks: [slow] });
    const finished = tasks.find((t) => t.name === 'finished');
    assert.ok(finished?.deletionTimestamp, `the deleted task is in the reply with its deletion mark: ${tasks.map((t) => t.name)}`);
    assert.deepEqual(tasks.map((t) => t.name), ['finished', 'slow-start']);
    await te.api.setTasks({ tasks: [] });
  });
});
