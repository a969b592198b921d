// Persisted runtime handles are versioned and checked: records written by the
// release before handle versions existed are read (and their tasks
// re-attached), a handle that cannot be read names the field and ends its
// task with a clear reason instead of a wrong pid, and such a task can be
// deleted. The decoding itself is tested in test/unit/handles.test.ts.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { shell, startTestExecutor, stateOf, tempDir, terminated } from '../support/executor.js';
import { isAlive, killTaskTrees } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

describe('runtime handles: executor restarts', () => {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  interface StoredRecord {
    version: number;
    task: { runtime: { runtime: string; handleVersion?: number; handle: Record<string, unknown> } };
  }
  const readStored = (file: string): StoredRecord => JSON.parse(readFileSync(file, 'utf8')) as StoredRecord;

  test('a task.json written before handle versions existed is re-attached: the running task is followed to its real exit', async () => {
    const dataDir = tempDir();
    const gate = join(tempDir('te-scratch-'), 'gate');
    cleanups.push(() => killTaskTrees(dataDir));
    const first = await startTestExecutor({}, dataDir);
    await first.api.createTask({ task: shell('old-record', `while [ ! -e ${gate} ]; do sleep 0.05; done; exit 5`) });
    await waitFor('the task to run', async () => stateOf((await first.api.getTask({ name: 'old-record' })).task)?.$case === 'running');
    await first.stop();

    const file = join(dataDir, 'old-record', 'task.json');
    const record = readStored(file);
    assert.equal(record.task.runtime.handleVersion, 1);
    // This release still writes version 1 exactly as the earlier one did: no field renamed, added or dropped.
    const earlierFields = ['bootId', 'cgroup', 'dir', 'pgid', 'pid', 'shimPid', 'shimStartTime', 'startTime', 'startedAt'];
    assert.deepEqual(Object.keys(record.task.runtime.handle).filter((key) => !earlierFields.includes(key)), []);
    delete record.task.runtime.handleVersion;
    writeFileSync(file, JSON.stringify(record, null, 2));

    const second = await startTestExecutor({}, dataDir);
    cleanups.push(() => second.close());
    const task = (await second.api.getTask({ name: 'old-record' })).task;
    assert.equal(stateOf(task)?.$case, 'running', JSON.stringify(task?.status));
    writeFileSync(gate, '');
    const end = await waitFor('the re-attached task to end', async () => terminated((await second.api.getTask({ name: 'old-record' })).task));
    assert.equal(end.exitCode, 5);
    assert.equal(end.reason, 'Failed');
  });

  test('a handle its backend cannot read ends the task with RuntimeHandleUnreadable naming the field, stops what it ran, and Delete removes it', async () => {
    const dataDir = tempDir();
    cleanups.push(() => killTaskTrees(dataDir));
    const first = await startTestExecutor({}, dataDir);
    await first.api.createTask({ task: shell('damaged', 'sleep 60') });
    await waitFor('the task to run', async () => stateOf((await first.api.getTask({ name: 'damaged' })).task)?.$case === 'running');
    await first.stop();
    const start = JSON.parse(readFileSync(join(dataDir, 'damaged', 'start.json'), 'utf8')) as { pid: number };
    assert.ok(isAlive(start.pid));

    const file = join(dataDir, 'damaged', 'task.json');
    const record = readStored(file);
    record.task.runtime.handle.shimPid = 'abc';
    writeFileSync(file, JSON.stringify(record, null, 2));

    const second = await startTestExecutor({}, dataDir);
    cleanups.push(() => second.close());
    const end = await waitFor('the task to end', async () => terminated((await second.api.getTask({ name: 'damaged' })).task));
    assert.equal(end.reason, 'RuntimeHandleUnreadable');
    assert.match(end.message ?? '', /field "shimPid" must be a non-negative integer, not the string "abc"/);
    assert.match(end.message ?? '', /the executor stopped what it still ran/);
    assert.equal(isAlive(start.pid), false, 'nothing the executor can no longer follow keeps running');

    await second.api.deleteTask({ name: 'damaged' });
    await waitFor('the task to be gone', () =>
      second.api.getTask({ name: 'damaged' }).then(
        () => false,
        (error: ServiceError) => error.code === status.NOT_FOUND,
      ),
    );
    // The executor goes on as usual.
    await second.api.createTask({ task: shell('after', 'exit 0') });
    const after = await waitFor('a new task to finish', async () => terminated((await second.api.getTask({ name: 'after' })).task));
    assert.equal(after.reason, 'Succeeded');
  });
});
