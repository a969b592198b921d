// A small admission (a Create, a SetTasks of a few tasks) writes its records
// in one trip to the store's admission writer thread (src/store/
// admission-writer.ts). What must hold as on the async path: a failure
// answers the same status and leaves nothing of the task in the data dir,
// and a thread that dies fails the write it had (never hangs it) and the
// next Create works.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { TaskError } from '../../src/errors.js';
import { Reason, type TaskSpec } from '../../src/model/task.js';
import { TaskStore } from '../../src/store/task-store.js';
import { tempDir } from '../support/executor.js';
import { silent, startManager } from '../support/in-process.js';
import { killTaskTrees } from '../support/processes.js';
import { mountTmpfs } from '../support/tmpfs.js';

const sleeper: TaskSpec = { process: { command: ['sleep'], args: ['300'], env: [] } };
/** The task directories in the data dir (the executor's own entries start with a dot). */
const taskDirs = (dataDir: string) => readdirSync(dataDir).filter((name) => !name.startsWith('.'));
const taskErrorOf = (kind: TaskError['kind'], pattern: RegExp) => (error: unknown) => {
  assert.ok(error instanceof TaskError, `a TaskError, not ${String(error)}`);
  assert.equal(error.kind, kind, error.message);
  assert.match(error.message, pattern);
  return true;
};

describe('admission writer', () => {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  async function managerOn(dataDir: string, store = new TaskStore(dataDir, silent)) {
    const started = await startManager(store);
    cleanups.push(async () => {
      await started.close();
      await store.close();
      killTaskTrees(dataDir);
    });
    return started.manager;
  }

  /** A manager whose store's admission writer runs test/support/`worker`; `lines`: what it logs. */
  async function managerWithWorker(worker: string) {
    const dataDir = tempDir('te-admission-');
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    const store = new TaskStore(dataDir, log, { admissionWorker: new URL(`../support/${worker}`, import.meta.url) });
    return { dataDir, lines, manager: await managerOn(dataDir, store) };
  }

  /** A manager whose data dir is on a small tmpfs, filled up. */
  async function managerOnFullDisk() {
    const tmpfs = mountTmpfs('2m');
    cleanups.push(() => tmpfs.unmount());
    const dataDir = join(tmpfs.path, 'tasks');
    mkdirSync(dataDir);
    const manager = await managerOn(dataDir);
    tmpfs.fill();
    return { tmpfs, dataDir, manager };
  }

  test('a Create on a full data dir fails RESOURCE_EXHAUSTED and leaves no directory behind; the next one works once there is space', async () => {
    const { tmpfs, dataDir, manager } = await managerOnFullDisk();

    await assert.rejects(manager.create('newcomer', sleeper), taskErrorOf('ResourceExhausted', /no space left/));
    assert.deepEqual(taskDirs(dataDir), []);
    execFileSync('rm', [join(tmpfs.path, 'filler')]);
    assert.equal((await manager.create('newcomer', sleeper)).state.phase, 'running');
  });

  test('a SetTasks of a few tasks on a full data dir fails RESOURCE_EXHAUSTED and admits none of them', async () => {
    const { dataDir, manager } = await managerOnFullDisk();

    const desired = ['few-1', 'few-2', 'few-3'].map((name) => ({ name, spec: sleeper }));
    await assert.rejects(manager.setTasks(desired), taskErrorOf('ResourceExhausted', /no space left/));
    assert.deepEqual(taskDirs(dataDir), []);
    assert.deepEqual(manager.list(), []);
  });

  test('a data dir that turns read-only between the directory and the record fails the admission UNAVAILABLE', async () => {
    const tmpfs = mountTmpfs('4m');
    cleanups.push(() => tmpfs.unmount());
    const dataDir = join(tmpfs.path, 'tasks');
    mkdirSync(dataDir);
    const store = new TaskStore(dataDir, silent);
    cleanups.push(() => store.close());
    const record = { name: 'ro', spec: sleeper, state: { phase: 'waiting' as const, reason: Reason.Pending }, createdAt: new Date().toISOString() };
    await store.prepareNew([record]);
    execFileSync('mount', ['-o', 'remount,ro', tmpfs.path]);
    cleanups.push(() => execFileSync('mount', ['-o', 'remount,rw', tmpfs.path]));

    await assert.rejects(store.commitNew([record]), taskErrorOf('Unavailable', /cannot write its data dir \(EROFS\)/));
  });

  test('a store closed while an admission is being written fails it UNAVAILABLE (shutting down), at once, leaving nothing of it', async () => {
    const dataDir = tempDir('te-admission-');
    const store = new TaskStore(dataDir, silent, { admissionWorker: new URL('../support/stuck-admission-worker.ts', import.meta.url) });
    cleanups.push(() => store.close());
    const record = { name: 'late', spec: sleeper, state: { phase: 'waiting' as const, reason: Reason.Pending }, createdAt: new Date().toISOString() };
    await store.prepareNew([record]);
    const committing = store.commitNew([record]);
    committing.catch(() => undefined);
    await store.close();
    await assert.rejects(committing, taskErrorOf('Unavailable', /the executor is shutting down/));
    assert.deepEqual(taskDirs(dataDir), []);
  });

  test('a store that never admitted anything does not keep its process alive', () => {
    const script = new URL('../support/idle-store.ts', import.meta.url).pathname;
    const result = spawnSync(process.execPath, ['--import', 'tsx', script, tempDir('te-idle-store-')], { timeout: 30_000, encoding: 'utf8' });
    assert.equal(result.signal, null, `the process had to be killed: it did not end by itself (${result.stderr})`);
    assert.equal(result.status, 0, result.stderr);
  });

  test('an admission writer thread that dies mid-write fails that Create, leaves nothing of it, and the next Create works', async () => {
    const { dataDir, lines, manager } = await managerWithWorker('dying-admission-worker.ts');

    await assert.rejects(manager.create('crash-1', sleeper), taskErrorOf('Internal', /admission writer thread ended \(admission writer killed mid-write \(test\)\)/));
    assert.deepEqual(taskDirs(dataDir), [], 'the directory and its temporary file are gone');
    assert.ok(
      lines.some((line) => line.includes('the admission writer thread ended')),
      'the log says the thread ended',
    );
    assert.equal((await manager.create('after', sleeper)).state.phase, 'running');
    assert.deepEqual(taskDirs(dataDir), ['after']);
    // And again: each death is met by a new thread.
    await assert.rejects(manager.create('crash-2', sleeper), taskErrorOf('Internal', /admission writer thread ended/));
    assert.equal((await manager.create('after-2', sleeper)).state.phase, 'running');
  });

  test('an admission writer thread that cannot start fails no Create: the records take the async path, and the log says why', async () => {
    const { dataDir, lines, manager } = await managerWithWorker('broken-admission-worker.ts');

    for (const name of ['first', 'second']) {
      assert.equal((await manager.create(name, sleeper)).state.phase, 'running');
    }
    const few = ['few-1', 'few-2'].map((name) => ({ name, spec: sleeper }));
    await manager.setTasks([...manager.list().map(({ name, spec }) => ({ name, spec })), ...few]);
    assert.deepEqual(taskDirs(dataDir).sort(), ['few-1', 'few-2', 'first', 'second']);
    const reader = new TaskStore(dataDir, silent);
    cleanups.push(() => reader.close());
    const reloaded = await reader.load();
    assert.deepEqual(
      reloaded.records.map((record) => record.name),
      ['few-1', 'few-2', 'first', 'second'],
      'every record is on disk',
    );
    assert.ok(
      lines.some((line) => line.includes('could not start') && line.includes('admission writer module failed to load (test)')),
      'the log says the thread could not start, and why',
    );
  });
});
