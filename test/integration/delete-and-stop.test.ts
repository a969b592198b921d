import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { openSubscribedWatch, shell, startTestExecutor, stateOf, tempDir, terminated, type TestExecutor } from '../support/executor.js';
import { isAlive } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

const readPids = (file: string) =>
  readFileSync(file, 'utf8')
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);

describe('delete', () => {
  let te: TestExecutor;
  const scratch = tempDir('te-scratch-');
  before(async () => {
    te = await startTestExecutor({ stopGraceMs: 500 });
  });
  after(async () => te.close());

  const gone = (name: string) =>
    waitFor(`task ${name} to be removed`, () =>
      te.api.getTask({ name }).then(
        () => false,
        (error: ServiceError) => error.code === status.NOT_FOUND,
      ),
    );

  test('delete returns at once with the deletion mark, then the task disappears', async () => {
    // The task notes the stop signal but exits only when the test opens its
    // gate (its grace period, 60 s, outlasts the test): a delete that waited
    // for the stop would not return before the gate opens.
    const termed = join(scratch, 'to-delete.term');
    const gate = join(scratch, 'to-delete.gate');
    const script = `trap 'echo > ${termed}' TERM; echo > ${scratch}/to-delete.up; while [ ! -e ${gate} ]; do sleep 0.05; done`;
    await te.api.createTask({ task: shell('to-delete', script, {}, { terminationGracePeriodSeconds: 60 }) });
    await waitFor('the trap to be set', () => existsSync(join(scratch, 'to-delete.up')));
    const { task } = await te.api.deleteTask({ name: 'to-delete' });
    assert.ok(task?.deletionTimestamp instanceof Date);
    await waitFor('the stop signal to reach the task', () => existsSync(termed));
    const { task: again } = await te.api.getTask({ name: 'to-delete' });
    assert.ok(again?.deletionTimestamp instanceof Date, 'the task stays visible, marked, while it stops');
    assert.equal(stateOf(again)?.$case, 'running', 'delete returned while the task was still stopping');
    writeFileSync(gate, '');
    await gone('to-delete');
  });

  test('delete of a running task stops its whole process tree, including children that ignore SIGTERM', async () => {
    const pids = join(scratch, 'tree.pids');
    // A child that ignores SIGTERM, a grandchild, and a daemon that left the process group.
    const script = `
      sh -c 'trap "" TERM; sleep 1000 & echo $! >> ${pids}; wait' &
      echo $! >> ${pids}
      setsid sh -c 'sleep 1000 & echo $! >> ${pids}; wait' &
      sleep 1000 & echo $! >> ${pids}
      wait`;
    await te.api.createTask({ task: shell('tree', script) });
    const all = await waitFor('all processes to start', () => {
      try {
        const list = readPids(pids);
        return list.length === 4 ? list : undefined;
      } catch {
        return undefined;
      }
    });
    assert.ok(all.every(isAlive));
    await te.api.deleteTask({ name: 'tree' });
    await gone('tree');
    await waitFor('every process of the tree to be gone', () => all.every((pid) => !isAlive(pid)), { timeoutMs: 5000 });
  });

  test('delete of a task that already exited leaves the processes it left in the background running', async () => {
    // The original's pooled-sandbox bootstrap pattern: `sh -c "bootstrap.sh &"` exits 0 at once.
    const pidFile = join(scratch, 'background.pid');
    await te.api.createTask({ task: shell('bootstrap', `sleep 1000 >/dev/null 2>&1 & echo $! > ${pidFile}`) });
    const end = await waitFor('bootstrap to exit', async () => terminated((await te.api.getTask({ name: 'bootstrap' })).task));
    assert.equal(end.exitCode, 0);
    const [background] = readPids(pidFile);
    assert.ok(background && isAlive(background));
    await te.api.deleteTask({ name: 'bootstrap' });
    await gone('bootstrap');
    assert.ok(isAlive(background!), 'the background workload must survive deletion of its finished task');
    process.kill(background!, 'SIGKILL');
  });

  test('a task stopped by deletion reports reason Stopped while it is still visible', async () => {
    const { call: stream, events: seen } = await openSubscribedWatch(te);
    const events = () =>
      seen
        .filter((e) => e.task?.name === 'stopped')
        .map((e) => {
          const s = stateOf(e.task);
          return s?.$case === 'terminated' ? `terminated:${s.value.reason}:${s.value.exitCode}` : String(e.type);
        });
    await te.api.createTask({ task: shell('stopped', 'sleep 30') });
    await te.api.deleteTask({ name: 'stopped' });
    await gone('stopped');
    await waitFor('the terminated event', () => events().some((e) => e.startsWith('terminated:')));
    stream.cancel();
    assert.ok(events().includes('terminated:Stopped:143'), events().join(','));
  });
});
