import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { startTimeOf } from '../../src/runtime/process/procfs.js';
import { shell, startTestExecutor, stateOf, tempDir, terminated } from '../support/executor.js';
import { isAlive, killTaskTrees } from '../support/processes.js';
import { connect, spawnExecutor } from '../support/subprocess.js';
import { waitFor } from '../support/wait.js';

describe('executor restart', () => {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('an executor killed with SIGKILL finds every task again: finished ones with their real exit code, running ones re-attached, nothing re-run', async () => {
    const dataDir = tempDir();
    const scratch = tempDir('te-scratch-');
    const socket = join(scratch, 'api.sock');
    cleanups.push(() => killTaskTrees(dataDir));
    const args = ['--data-dir', dataDir, '--listen-addr', `unix://${socket}`, '--reconcile-interval', '100ms', '--log-level', 'info'];

    const first = spawnExecutor(args);
    cleanups.push(() => first.child.kill('SIGKILL'));
    const a = await connect(first);
    const runs = join(scratch, 'runs');
    const gate = join(scratch, 'gate');
    // ends-while-down exits 7 once the gate file exists; runs-on keeps running across the restart.
    await a.api.createTask({ task: shell('ends-while-down', `echo run >> ${runs}; while [ ! -e ${gate} ]; do sleep 0.05; done; exit 7`) });
    await a.api.createTask({ task: shell('runs-on', `echo run >> ${runs}; while [ ! -e ${gate}.2 ]; do sleep 0.05; done; exit 5`) });
    await a.api.createTask({ task: shell('done-before', `echo run >> ${runs}; exit 3`) });
    await waitFor('done-before to finish', async () => terminated((await a.api.getTask({ name: 'done-before' })).task));
    a.client.close();

    first.child.kill('SIGKILL');
    await first.exited;
    writeFileSync(gate, '');
    await waitFor('the task to exit while the executor is down', () => existsSync(join(dataDir, 'ends-while-down', 'exit.json')));

    const second = spawnExecutor(args);
    cleanups.push(() => second.child.kill('SIGKILL'));
    const b = await connect(second);
    const byName = Object.fromEntries((await b.api.listTasks()).tasks.map((t) => [t.name, t]));
    assert.deepEqual(Object.keys(byName), ['done-before', 'ends-while-down', 'runs-on']);
    assert.equal(terminated(byName['done-before'])?.exitCode, 3);
    assert.equal(terminated(byName['ends-while-down'])?.exitCode, 7);
    assert.equal(terminated(byName['ends-while-down'])?.reason, 'Failed');
    assert.equal(stateOf(byName['runs-on'])?.$case, 'running');

    writeFileSync(`${gate}.2`, '');
    const end = await waitFor('runs-on to end', async () => terminated((await b.api.getTask({ name: 'runs-on' })).task));
    assert.equal(end.exitCode, 5);
    assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\nrun\n', 'no task may run twice');

    // SIGTERM: graceful shutdown that leaves tasks alone.
    await b.api.createTask({ task: shell('survivor', 'sleep 30') });
    b.client.close();
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0);
    const start = JSON.parse(readFileSync(join(dataDir, 'survivor', 'start.json'), 'utf8')) as { pid: number };
    assert.ok(startTimeOf(start.pid), 'tasks keep running when the executor shuts down');
    assert.match(second.output(), /shutting down; running tasks keep running/);
  });

  test('a recorded pid that now belongs to another process is not mistaken for the task (pid reuse)', async () => {
    const dataDir = tempDir();
    const first = await startTestExecutor({}, dataDir);
    await first.api.createTask({ task: shell('reused', 'sleep 30') });
    await first.stop();
    const start = JSON.parse(readFileSync(join(dataDir, 'reused', 'start.json'), 'utf8')) as { pid: number; shimPid: number };
    killTaskTrees(dataDir); // task and shim die without an exit record
    // SIGKILL is sent, not yet done: a shim still dying would read as a live supervisor holding the status.
    await waitFor('the task and its shim to be gone', () => !isAlive(start.pid) && !isAlive(start.shimPid));
    assert.equal(existsSync(join(dataDir, 'reused', 'exit.json')), false, 'the crash left no exit record');
    const file = join(dataDir, 'reused', 'task.json');
    const record = JSON.parse(readFileSync(file, 'utf8'));
    record.task.runtime.handle.pid = process.pid; // alive, but started at another time
    writeFileSync(file, JSON.stringify(record));

    const second = await startTestExecutor({}, dataDir);
    cleanups.push(() => second.close());
    const end = terminated((await second.api.getTask({ name: 'reused' })).task);
    assert.equal(end?.reason, 'ProcessCrashed');
    assert.equal(end?.exitCode, 137);
  });

  test('an unreadable task record is quarantined and reported, and its name can be used again', async () => {
    const dataDir = tempDir();
    const first = await startTestExecutor({}, dataDir);
    await first.api.createTask({ task: shell('corrupt', 'exit 0') });
    await first.api.createTask({ task: shell('healthy', 'exit 0') });
    await first.stop();
    writeFileSync(join(dataDir, 'corrupt', 'task.json'), '{"version":1,"task":{"name":"corr');
    appendFileSync(join(dataDir, 'healthy', 'task.json.tmp-deadbeef'), 'stale temp file');

    const second = await startTestExecutor({}, dataDir);
    cleanups.push(() => second.close());
    assert.deepEqual(
      (await second.api.listTasks()).tasks.map((t) => t.name),
      ['healthy'],
    );
    const quarantine = readdirSync(join(dataDir, '.quarantine'));
    assert.equal(quarantine.length, 1);
    assert.match(quarantine[0]!, /^corrupt\./);
    assert.ok(!readdirSync(join(dataDir, 'healthy')).some((f) => f.includes('.tmp-')), 'stale temp files are removed');
    await second.api.createTask({ task: shell('corrupt', 'exit 0') });
    await assert.rejects(second.api.getTask({ name: 'missing' }), (e: ServiceError) => e.code === status.NOT_FOUND);
  });
});
