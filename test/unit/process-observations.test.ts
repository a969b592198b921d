// How the shim's exit records read as observations (src/runtime/process/observations.ts):
// start failures, including a task process killed before it could exec, and OOM kills.
// No process runs here; the cgroup's OOM counter is given as a number.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { TaskCgroup } from '../../src/runtime/cgroups/index.js';
import { exitObservation } from '../../src/runtime/process/observations.js';

const cgroup: TaskCgroup = { version: 2, dirs: { unified: '/sys/fs/cgroup/te/t' }, limits: { memoryBytes: 2 * 1024 * 1024 } };
const oomKills = (count: number) => ({ oomKills: () => count });
const finishedAt = '2026-12-03T08:35:47.043518380Z';

describe('exit records as observations', () => {
  test('a task process killed before exec is a start failure that keeps its signal and says so', () => {
    const startError = "the task's process was killed by SIGSYS before it could exec sh: its seccomp profile kills a system call the start needs";
    const observation = exitObservation({ dir: '/d', cgroup }, { exitCode: 159, signal: 31, finishedAt, startError }, oomKills(0));
    assert.deepEqual(observation, { state: 'exited', exitCode: 159, signal: 31, finishedAt, reason: 'ProcessStartFailed', message: startError });
  });

  test('one the OOM killer ended before exec is still a start failure, naming the memory limit', () => {
    const startError = "the task's process was killed by SIGKILL before it could exec sh";
    const observation = exitObservation({ dir: '/d', cgroup }, { exitCode: 137, signal: 9, finishedAt, startError }, oomKills(1));
    assert.deepEqual(observation, { state: 'exited', exitCode: 137, signal: 9, finishedAt, reason: 'ProcessStartFailed', message: `${startError}: memory limit of 2 MiB exceeded` });
  });

  test('one SIGKILLed before exec without an OOM kill is not blamed on memory', () => {
    const startError = "the task's process was killed by SIGKILL before it could exec sh";
    const observation = exitObservation({ dir: '/d', cgroup }, { exitCode: 137, signal: 9, finishedAt, startError }, oomKills(0));
    assert.deepEqual(observation, { state: 'exited', exitCode: 137, signal: 9, finishedAt, reason: 'ProcessStartFailed', message: startError });
  });

  test('a program that ran and was OOM-killed is OOMKilled, with its start time', () => {
    const startedAt = '2026-12-03T08:35:46.000000000Z';
    const observation = exitObservation({ dir: '/d', cgroup, startedAt }, { exitCode: 137, signal: 9, finishedAt }, oomKills(1));
    assert.deepEqual(observation, { state: 'exited', exitCode: 137, signal: 9, startedAt, finishedAt, reason: 'OOMKilled', message: 'memory limit of 2 MiB exceeded' });
  });
});
