// The pure rules that turn what a runtime observed into a task's state
// (src/manager/transitions.ts) and decide restarts (restart-policy.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { TaskRecord, TaskSpec, TaskState } from '../../src/model/task.js';
import { DEFAULT_MAX_RESTARTS, nextRestart } from '../../src/manager/restart-policy.js';
import { hasTimedOut, LOST_EXIT_CODE, remainingGraceMs, startFailedState, stateFromObservation, timeoutSeconds } from '../../src/manager/transitions.js';

const STARTED = '2026-01-02T03:04:05.000Z';
const FINISHED = '2026-01-02T03:04:15.000Z';

function record(overrides: Partial<TaskRecord> = {}, timeout?: number): TaskRecord {
  return {
    name: 't',
    spec: { process: { command: ['true'], args: [], env: [], ...(timeout === undefined ? {} : { timeoutSeconds: timeout }) } },
    state: { phase: 'running', startedAt: STARTED },
    createdAt: STARTED,
    ...overrides,
  };
}

const exited = (exitCode: number, extra: { reason?: string; message?: string } = {}) =>
  ({ state: 'exited', exitCode, signal: 0, startedAt: STARTED, finishedAt: FINISHED, ...extra }) as const;

describe('state from an observation', () => {
  test('running keeps the start time; an exit code of 0 is Succeeded and any other Failed', () => {
    assert.deepEqual(stateFromObservation(record(), { state: 'running', startedAt: STARTED }), { phase: 'running', startedAt: STARTED });
    const succeeded = stateFromObservation(record(), exited(0));
    assert.deepEqual(succeeded, { phase: 'terminated', exitCode: 0, signal: 0, reason: 'Succeeded', message: undefined, startedAt: STARTED, finishedAt: FINISHED });
    const failed = stateFromObservation(record(), exited(3));
    assert.equal(failed.phase === 'terminated' ? failed.reason : failed.phase, 'Failed');
  });

  test('a task that vanished without an exit status is ProcessCrashed with exit code 137 and the runtime message', () => {
    const state = stateFromObservation(record(), { state: 'lost', startedAt: STARTED, message: 'gone' });
    assert.equal(state.phase, 'terminated');
    assert.ok(state.phase === 'terminated');
    assert.equal(state.exitCode, LOST_EXIT_CODE);
    assert.equal(LOST_EXIT_CODE, 137);
    assert.equal(state.reason, 'ProcessCrashed');
    assert.equal(state.message, 'gone');
    assert.ok(!Number.isNaN(Date.parse(state.finishedAt)));
  });

  test('why the executor stopped a task decides its reason: a timeout names its seconds, a deletion says so', () => {
    const timedOut = stateFromObservation(record({ stop: { cause: 'timeout', requestedAt: FINISHED } }, 5), exited(143));
    assert.ok(timedOut.phase === 'terminated');
    assert.equal(timedOut.reason, 'TaskTimeout');
    assert.equal(timedOut.message, 'Task exceeded timeout of 5 seconds');
    const deleted = stateFromObservation(record({ stop: { cause: 'deletion', requestedAt: FINISHED } }), exited(0));
    assert.ok(deleted.phase === 'terminated');
    assert.equal(deleted.reason, 'Stopped');
    assert.match(deleted.message ?? '', /being deleted/);
  });

  test("the runtime's own reason and message win over the exit-code rules and the stop cause", () => {
    const oom = stateFromObservation(record({ stop: { cause: 'deletion', requestedAt: FINISHED } }), exited(137, { reason: 'OOMKilled', message: 'out of memory' }));
    assert.ok(oom.phase === 'terminated');
    assert.equal(oom.reason, 'OOMKilled');
    assert.equal(oom.message, 'out of memory');
  });

  test('a start failure is terminated with exit code 128, ProcessStartFailed and the message', () => {
    const state = startFailedState('no such file');
    assert.ok(state.phase === 'terminated');
    assert.deepEqual([state.exitCode, state.reason, state.message], [128, 'ProcessStartFailed', 'no such file']);
  });
});

describe('timeouts', () => {
  const startedMs = Date.parse(STARTED);
  test('a running task times out only once more than its timeout has passed since it started', () => {
    assert.equal(hasTimedOut(record({}, 5), startedMs + 5000), false);
    assert.equal(hasTimedOut(record({}, 5), startedMs + 5001), true);
  });

  test('no timeout, a timeout of 0 or a task that is not running never times out', () => {
    assert.equal(hasTimedOut(record(), startedMs + 1e9), false);
    assert.equal(hasTimedOut(record({}, 0), startedMs + 1e9), false);
    assert.equal(timeoutSeconds(record({}, 0)), undefined);
    const waiting: TaskState = { phase: 'waiting', reason: 'Pending' };
    assert.equal(hasTimedOut(record({ state: waiting }, 5), startedMs + 1e9), false);
  });

  test("a container task's timeout counts too", () => {
    const spec: TaskSpec = { container: { image: 'busybox', command: [], args: [], env: [], volumeMounts: [], timeoutSeconds: 7 } };
    assert.equal(timeoutSeconds(record({ spec })), 7);
  });
});

describe('restart policy', () => {
  const onFailure: TaskSpec = { process: { command: ['false'], args: [], env: [] }, restartPolicy: 'OnFailure', maxRestarts: 3 };
  const ended = (exitCode: number, reason = exitCode === 0 ? 'Succeeded' : 'Failed') =>
    ({ phase: 'terminated', exitCode, signal: 0, reason, finishedAt: FINISHED }) as const;

  test('a failed OnFailure task restarts with a delay that doubles per attempt, up to maxRestarts', () => {
    assert.deepEqual(nextRestart(onFailure, ended(1), 0), { delayMs: 1000, attempt: 1, of: 3 });
    assert.deepEqual(nextRestart(onFailure, ended(1), 1), { delayMs: 2000, attempt: 2, of: 3 });
    assert.deepEqual(nextRestart(onFailure, ended(1), 2), { delayMs: 4000, attempt: 3, of: 3 });
    assert.equal(nextRestart(onFailure, ended(1), 3), undefined);
  });

  test('the delay is capped at five minutes', () => {
    const many = { ...onFailure, maxRestarts: 1000 };
    assert.equal(nextRestart(many, ended(1), 8)?.delayMs, 256_000);
    assert.equal(nextRestart(many, ended(1), 9)?.delayMs, 300_000);
    assert.equal(nextRestart(many, ended(1), 999)?.delayMs, 300_000);
  });

  test('success, Never, no policy, a start failure, a failed artifact fetch and a timeout are final', () => {
    assert.equal(nextRestart(onFailure, ended(0), 0), undefined);
    assert.equal(nextRestart({ ...onFailure, restartPolicy: 'Never' }, ended(1), 0), undefined);
    const { restartPolicy: _, ...noPolicy } = onFailure;
    assert.equal(nextRestart(noPolicy, ended(1), 0), undefined);
    assert.equal(nextRestart(onFailure, ended(128, 'ProcessStartFailed'), 0), undefined);
    assert.equal(nextRestart(onFailure, ended(143, 'TaskTimeout'), 0), undefined);
    // Its transient errors were retried already, and a task without a run cannot be restarted.
    assert.equal(nextRestart(onFailure, ended(128, 'ArtifactFetchFailed'), 0), undefined);
  });

  test(`without maxRestarts a task restarts ${DEFAULT_MAX_RESTARTS} times`, () => {
    const { maxRestarts: _, ...spec } = onFailure;
    assert.equal(nextRestart(spec, ended(1), DEFAULT_MAX_RESTARTS - 1)?.of, DEFAULT_MAX_RESTARTS);
    assert.equal(nextRestart(spec, ended(1), DEFAULT_MAX_RESTARTS), undefined);
  });
});

describe('remaining stop grace', () => {
  const requestedAt = '2026-01-02T03:04:05.000Z';
  const at = (secondsAfterRequest: number) => Date.parse(requestedAt) + secondsAfterRequest * 1000;

  test('the grace runs from the request: a stop begun later (after an executor restart) gets only what is left', () => {
    assert.equal(remainingGraceMs(30_000, requestedAt, at(0)), 30_000);
    assert.equal(remainingGraceMs(30_000, requestedAt, at(12)), 18_000);
  });

  test('a grace already over leaves 0 (straight to the kill), never a negative time', () => {
    assert.equal(remainingGraceMs(30_000, requestedAt, at(30)), 0);
    assert.equal(remainingGraceMs(30_000, requestedAt, at(3600)), 0);
    assert.equal(remainingGraceMs(0, requestedAt, at(0)), 0);
  });

  test('a wall clock stepped back (a request in the future) never stretches the grace beyond the full period', () => {
    assert.equal(remainingGraceMs(30_000, requestedAt, at(-3600)), 30_000);
  });

  test('a missing or unreadable request time gives the full grace', () => {
    assert.equal(remainingGraceMs(8_000, undefined, at(100)), 8_000);
    assert.equal(remainingGraceMs(8_000, 'not a time', at(100)), 8_000);
  });
});
