import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { isSameProcessAlive, startTimeOf } from '../../src/runtime/process/procfs.js';
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

  test('SIGTERM during the deletion of tasks that ignore SIGTERM exits long before their grace, and after a restart they are killed when the grace that began at the Delete ends', async () => {
    const GRACE_S = 20;
    const dataDir = tempDir();
    const scratch = tempDir('te-scratch-');
    cleanups.push(() => killTaskTrees(dataDir));
    const args = ['--data-dir', dataDir, '--listen-addr', `unix://${join(scratch, 'api.sock')}`, '--reconcile-interval', '100ms', '--log-level', 'info'];
    const names = Array.from({ length: 10 }, (_, i) => `stubborn-${i}`);
    const startOf = (name: string) => JSON.parse(readFileSync(join(dataDir, name, 'start.json'), 'utf8')) as { pid: number; startTime: string };

    const first = spawnExecutor(args);
    cleanups.push(() => first.child.kill('SIGKILL'));
    const a = await connect(first);
    for (const name of names) {
      await a.api.createTask({ task: shell(name, `trap "" TERM; echo ${name} >> ${join(scratch, 'runs')}; exec sleep 600`, {}, { terminationGracePeriodSeconds: GRACE_S }) });
    }
    await waitFor('every task to run', async () => (await a.api.listTasks()).tasks.every((t) => stateOf(t)?.$case === 'running'));
    // Running means the shell was exec'd, not that it has set its trap yet: a Delete's SIGTERM
    // before the trap ends it (seen in CI under load). Each task writes its line after the trap.
    await waitFor('every task to ignore SIGTERM', () => existsSync(join(scratch, 'runs')) && readFileSync(join(scratch, 'runs'), 'utf8').split('\n').filter(Boolean).length === names.length);
    const runs = Object.fromEntries(names.map((name) => [name, startOf(name)]));
    const deleted = await Promise.all(names.map((name) => a.api.deleteTask({ name })));
    const requestedAt = Math.min(...deleted.map((reply) => reply.task!.deletionTimestamp!.getTime()));
    // Every stop has begun (its signal is sent, its grace runs) before the executor is told to stop.
    await waitFor('every stop to begin', () => names.every((name) => first.output().includes(`"task":"${name}","cause":"deletion"`)));
    a.client.close();

    const sigterm = Date.now();
    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0);
    const shutdownMs = Date.now() - sigterm;
    assert.ok(shutdownMs < GRACE_S * 1000 / 2, `the executor exits without waiting for the stops' grace (took ${shutdownMs} ms)`);
    const died = names.filter((name) => !isSameProcessAlive(runs[name]!.pid, runs[name]!.startTime));
    assert.deepEqual(died, [], 'the tasks ignore SIGTERM and outlive the executor');

    // Half the grace passes while no executor runs: what is left of it is 10 s, not a new 20 s.
    await waitFor('half the grace to pass', () => Date.now() >= requestedAt + (GRACE_S * 1000) / 2, { timeoutMs: GRACE_S * 1000 });
    const second = spawnExecutor(args);
    cleanups.push(() => second.child.kill('SIGKILL'));
    const b = await connect(second);
    assert.ok(names.every((name) => isSameProcessAlive(runs[name]!.pid, runs[name]!.startTime)), 'no task is killed before its grace ends');
    assert.equal((await b.api.listTasks()).tasks.length, names.length, 'the deletions are still under way after the restart');
    // Before the fix the restart gave every stop a full grace again: gone at about restart + 20 s (~31 s after the Delete).
    const margin = 6000;
    await waitFor('the tasks to be deleted when the original grace ends', async () => (await b.api.listTasks()).tasks.length === 0, {
      timeoutMs: requestedAt + GRACE_S * 1000 + margin - Date.now(),
      intervalMs: 100,
    });
    const goneAt = Date.now();
    assert.ok(goneAt >= requestedAt + GRACE_S * 1000, 'the tasks were killed only once their grace had ended');
    assert.ok(names.every((name) => !isSameProcessAlive(runs[name]!.pid, runs[name]!.startTime)), 'every task was killed');
    assert.ok(names.every((name) => !existsSync(join(dataDir, name))), 'every record is removed');
    assert.deepEqual(readFileSync(join(scratch, 'runs'), 'utf8').split('\n').filter(Boolean).sort(), [...names].sort(), 'each task ran once, none again after the restart');
    b.client.close();
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0);
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
