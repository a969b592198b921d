// Persisted runtime handles are versioned and checked when they are decoded:
// records written by the release before handle versions existed are read, and
// a handle that cannot be read names the field. No process runs here (the
// executor restarts are in test/integration/handles.test.ts).
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createLogger } from '../../src/logger.js';
import { decodeContainerHandle } from '../../src/runtime/container/container-handle.js';
import { HandleDecodeError } from '../../src/runtime/handle-codec.js';
import type { ProcessRuntime } from '../../src/runtime/process/process-runtime.js';
import { decodeProcessHandle } from '../../src/runtime/process/shim-handle.js';
import { ShimSpawner } from '../../src/runtime/process/shim-spawner.js';
import { HANDLE_UNREADABLE } from '../../src/runtime/bound-task.js';
import { RuntimeRegistry } from '../../src/runtime/registry.js';
import { decodeSidecarHandle } from '../../src/runtime/sidecar/sidecar-handle.js';
import { TaskStore } from '../../src/store/task-store.js';
import { tempDir } from '../support/executor.js';
import { processRuntime } from '../support/in-process.js';

// Never run here (decoding, and ending a task whose handle is unreadable, start nothing): the
// runtime only checks at construction that the file exists, so these tests need no built shim.
const shimPath = '/bin/true';
const silent = createLogger('silent');

// Handles exactly as the release before handle versions wrote them (task.json's `task.runtime.handle`).
const mainProcessHandle = {
  dir: '/var/lib/sandbox/tasks/t',
  bootId: '5b6f7e0c-1d2a-4a38-9a41-0c1d2e3f4a5b',
  shimPid: 4242,
  shimStartTime: '123456',
  pid: 4243,
  pgid: 4243,
  startTime: '123457',
  startedAt: '2026-01-02T03:04:05.678Z',
  cgroup: { version: 2, dirs: { unified: '/sys/fs/cgroup/task-executor/abc/t' }, limits: { memoryBytes: 67108864, cpuMillicores: 500 } },
};
const mainContainerHandle = {
  task: 't',
  taskDir: '/var/lib/sandbox/tasks/t',
  uid: '0b1e6d1c-2f4a-4c0e-8b9a-7d6c5b4a3f2e',
  owner: 'abcdef0123456789',
  image: 'docker.io/library/busybox:1.36',
  limits: { cpuMillicores: 250, pids: 64 },
  sandboxId: 'a'.repeat(64),
  containerId: 'b'.repeat(64),
  startedAt: '2026-01-02T03:04:05.678Z',
};
const mainTarget = { pid: 99, startTime: '777', pidNamespace: 'pid:[4026532281]', foundBy: 'SANDBOX_MAIN_CONTAINER=main' };

function decodeError(decode: () => unknown): HandleDecodeError {
  try {
    decode();
  } catch (error) {
    if (error instanceof HandleDecodeError) return error;
    throw error;
  }
  return assert.fail('the handle was accepted');
}

function newProcessRuntime(): ProcessRuntime {
  return processRuntime(new ShimSpawner(shimPath, silent));
}

describe('runtime handles: decoding', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  test('handles written before handle versions existed decode to the same values (process, container, sidecar)', () => {
    assert.deepEqual(decodeProcessHandle(mainProcessHandle), mainProcessHandle);
    assert.deepEqual(decodeProcessHandle({ dir: '/d' }), { dir: '/d' }, 'a start that failed keeps only its directory');
    const { cgroup: _, ...withoutCgroup } = mainProcessHandle;
    assert.deepEqual(decodeProcessHandle(withoutCgroup), withoutCgroup);
    assert.deepEqual(decodeContainerHandle(mainContainerHandle), mainContainerHandle);
    const { sandboxId: _s, containerId: _c, startedAt: _t, limits: _l, ...pulling } = mainContainerHandle;
    assert.deepEqual(decodeContainerHandle(pulling), pulling, 'a start that failed before the sandbox existed');
    const rotated = { ...mainContainerHandle, logs: { maxFileSizeBytes: 1024, maxFiles: 3 } };
    assert.deepEqual(decodeContainerHandle(rotated), rotated, 'a handle of a release that rotates container logs');

    const processes = newProcessRuntime();
    const running = { inner: mainProcessHandle, target: mainTarget };
    assert.deepEqual(decodeSidecarHandle(running, processes), running);
    const failure = { state: 'exited', exitCode: 128, signal: 0, finishedAt: '2026-01-02T03:04:05.678Z', reason: 'MainContainerNotFound', message: 'none' };
    assert.deepEqual(decodeSidecarHandle({ failure }, processes), { failure });
    const exitedWhileStarting = { inner: mainProcessHandle, target: mainTarget, failure: { ...failure, reason: 'MainContainerExited' } };
    assert.deepEqual(decodeSidecarHandle(exitedWhileStarting, processes), exitedWhileStarting);
  });

  test('a wrong type, a renamed field or a missing handle is an error naming the field', () => {
    assert.equal(
      decodeError(() => decodeProcessHandle({ ...mainProcessHandle, shimPid: 'abc' })).message,
      'field "shimPid" must be a non-negative integer, not the string "abc"',
    );
    const { pgid, ...renamed } = mainProcessHandle;
    assert.equal(decodeError(() => decodeProcessHandle({ ...renamed, processGroup: pgid })).message, 'field "pgid" is missing');
    assert.equal(decodeError(() => decodeProcessHandle(null)).message, 'the handle must be an object, not null');
    const badCgroup = { ...mainProcessHandle, cgroup: { version: 3, dirs: {} } };
    assert.equal(decodeError(() => decodeProcessHandle(badCgroup)).field, 'cgroup.version');
    const badDir = { ...mainProcessHandle, cgroup: { version: 2, dirs: { unified: 7 } } };
    assert.equal(decodeError(() => decodeProcessHandle(badDir)).message, 'field "cgroup.dirs.unified" must be a string, not the number 7');
    assert.equal(decodeError(() => decodeContainerHandle({ ...mainContainerHandle, uid: undefined })).field, 'uid');
    assert.equal(decodeError(() => decodeContainerHandle({ ...mainContainerHandle, logs: { maxFileSizeBytes: 1024 } })).field, 'logs.maxFiles');

    // The sidecar's nested process handle is read by the process backend, and the error says where it is nested.
    const processes = newProcessRuntime();
    const nested = { inner: { ...mainProcessHandle, cgroup: { version: 2, dirs: { unified: null } } }, target: mainTarget };
    assert.equal(decodeError(() => decodeSidecarHandle(nested, processes)).field, 'inner.cgroup.dirs.unified');
    assert.equal(decodeError(() => decodeSidecarHandle({ inner: mainProcessHandle, innerVersion: 9 }, processes)).field, 'innerVersion');
    assert.equal(decodeError(() => decodeSidecarHandle({ failure: { state: 'running' } }, processes)).field, 'failure.state');
  });

  test("a sidecar handle keeps where its artifacts' copy is in the main container (removed on release)", () => {
    const withCopy = { inner: mainProcessHandle, innerVersion: 1, target: mainTarget, artifactsDir: '/tmp/task-executor/t.AbC123' };
    assert.deepEqual(decodeSidecarHandle(withCopy, newProcessRuntime()), withCopy);
    assert.equal(decodeError(() => decodeSidecarHandle({ ...withCopy, artifactsDir: 7 }, newProcessRuntime())).field, 'artifactsDir');
  });

  test('a handle from a later release (higher handle version) binds to a task that reports it unreadable instead of guessing', async () => {
    const registry = new RuntimeRegistry([newProcessRuntime()]);
    const taskDir = tempDir();
    dirs.push(taskDir);
    const ref = { runtime: 'process', handleVersion: 2, handle: mainProcessHandle };
    const bound = registry.bind(ref, { name: 'later', taskDir });
    assert.ok(bound);
    const observation = await bound.inspect();
    assert.equal(observation.state, 'exited');
    assert.equal(observation.reason, HANDLE_UNREADABLE);
    assert.match(observation.message ?? '', /handle version 2 was written by a later executor release; this one reads versions 1 to 1/);
    assert.match(observation.message ?? '', /nothing of it was still running/);
    assert.equal(registry.bind(ref, { name: 'later', taskDir }), bound, 'one reference is decoded once');
    assert.equal(registry.bind({ runtime: 'no-such-backend', handle: {} }, { name: 'x', taskDir }), undefined);
  });

  test('a record whose runtime reference is not one is unreadable (quarantined), naming the problem', async () => {
    const root = tempDir();
    dirs.push(root);
    const write = (name: string, runtime: unknown) => {
      mkdirSync(join(root, name));
      const task = { name, spec: { process: { command: ['true'], args: [], env: [] } }, state: { phase: 'running', startedAt: '2026-01-02T03:04:05.678Z' }, createdAt: '2026-01-02T03:04:05.678Z', runtime };
      writeFileSync(join(root, name, 'task.json'), JSON.stringify({ version: 1, task }));
    };
    write('no-name', { handle: mainProcessHandle });
    write('bad-version', { runtime: 'process', handleVersion: '1', handle: mainProcessHandle });
    write('good', { runtime: 'process', handle: mainProcessHandle });
    const { records, unreadable } = await new TaskStore(root, silent).load();
    assert.deepEqual(records.map((r) => r.name), ['good']);
    const reasons = Object.fromEntries(unreadable.map((u) => [u.name, u.reason]));
    assert.match(reasons['no-name'] ?? '', /runtime\.runtime must name a backend/);
    assert.match(reasons['bad-version'] ?? '', /runtime\.handleVersion must be a positive integer/);
  });
});
