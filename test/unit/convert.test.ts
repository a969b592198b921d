// Wire <-> model conversion (src/api/convert.ts): total, loss-free both ways,
// and unset wire fields stay unset so that equal specs compare equal.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as wire from '../../gen/taskexecutor/v1/task.js';
import { specFromWire, taskToWire } from '../../src/api/convert.js';
import type { TaskRecord, TaskSpec } from '../../src/model/task.js';
import { canonicalSpec, validateSpec } from '../../src/model/validation.js';

const CREATED = '2026-01-02T03:04:05.678Z';

const fullProcess: TaskSpec = {
  process: {
    command: ['sh', '-c'],
    args: ['echo hi'],
    env: [{ name: 'A', value: '1' }],
    workingDir: '/tmp',
    timeoutSeconds: 30,
    user: 'nobody',
    group: '65534',
    cleanEnv: true,
    chroot: '/srv/root',
  },
  stopSignal: 'SIGINT',
  terminationGracePeriodSeconds: 0,
  restartPolicy: 'OnFailure',
  maxRestarts: 2,
  resources: { cpuMillicores: 500, memoryBytes: 64 * 1024 * 1024, pids: 10 },
  logs: { maxFileSizeBytes: 4096, maxFiles: 2 },
  securityContext: {
    capabilities: { add: ['NET_ADMIN'], drop: ['ALL'] },
    noNewPrivileges: false,
    seccompProfile: { type: 'Unconfined' },
    rlimits: [{ name: 'nofile', soft: 1024, hard: -1 }],
  },
  artifacts: [
    { source: 'https://example.com/script.sh', destination: 'bin', checksum: `sha256:${'a'.repeat(64)}`, mode: 'file', headers: { Authorization: 'Bearer x' } },
    { source: 'https://example.com/tools.tgz', mode: 'archive' },
    { source: 'git::https://example.com/repo.git' },
  ],
};

const fullContainer: TaskSpec = {
  container: {
    image: 'docker.io/library/busybox:1.36',
    command: ['sleep'],
    args: ['1'],
    env: [],
    volumeMounts: [{ name: 'data', mountPath: '/data', readOnly: true }],
    workingDir: '/data',
    timeoutSeconds: 0,
  },
  restartPolicy: 'Never',
  securityContext: { noNewPrivileges: true, seccompProfile: { type: 'Localhost', localhostProfile: '/var/lib/seccomp/p.json' } },
};

const recordOf = (spec: TaskSpec, overrides: Partial<TaskRecord> = {}): TaskRecord => ({
  name: 't',
  spec,
  state: { phase: 'waiting', reason: 'Pending' },
  createdAt: CREATED,
  ...overrides,
});

/** What a client gets back, read as a request again. */
const roundTrip = (spec: TaskSpec) => specFromWire(wire.TaskSpec.decode(wire.TaskSpec.encode(taskToWire(recordOf(spec)).spec!).finish()));

describe('wire conversion', () => {
  test('a process spec and a container spec with every field set come back unchanged through the wire', () => {
    assert.deepEqual(roundTrip(fullProcess), fullProcess);
    assert.deepEqual(roundTrip(fullContainer), fullContainer);
  });

  test('a minimal spec stays minimal: no defaults are filled in, so it compares equal to itself after a round trip', () => {
    const minimal: TaskSpec = { process: { command: ['true'], args: [], env: [] } };
    assert.deepEqual(roundTrip(minimal), minimal);
    assert.equal(canonicalSpec(roundTrip(minimal)!), canonicalSpec(minimal));
  });

  test('an empty or missing spec converts to nothing; task-level fields alone keep them for validation to refuse', () => {
    assert.equal(specFromWire(undefined), undefined);
    assert.equal(specFromWire(wire.TaskSpec.fromPartial({})), undefined);
    const settingsOnly = specFromWire(wire.TaskSpec.fromPartial({ maxRestarts: 1 }));
    assert.deepEqual(settingsOnly, { maxRestarts: 1 });
    assert.throws(() => validateSpec(settingsOnly), /must set exactly one of process or container/);
  });

  test('a restart policy this executor does not know is kept so that validation names it', () => {
    const spec = specFromWire(wire.TaskSpec.fromPartial({ runtime: { $case: 'process', value: { command: ['true'] } }, restartPolicy: 42 as wire.RestartPolicy }));
    assert.equal(spec?.restartPolicy, 'unknown(42)');
    assert.throws(() => validateSpec(spec), /restartPolicy has an unknown value/);
  });

  test('an artifact mode this executor does not know is kept so that validation names it', () => {
    const spec = specFromWire(
      wire.TaskSpec.fromPartial({ runtime: { $case: 'process', value: { command: ['true'] } }, artifacts: [{ source: 'https://e.x/a', mode: 9 as wire.ArtifactMode }] }),
    );
    assert.equal(spec?.artifacts?.[0]?.mode, 'unknown(9)');
    assert.throws(() => validateSpec(spec), /artifacts\[0\]\.mode has an unknown value/);
  });

  test('the compact view leaves the spec out and keeps the rest', () => {
    const record = recordOf(fullProcess, { restartCount: 2, warnings: ['no cgroups'], deletionRequestedAt: CREATED });
    const compact = taskToWire(record, 'compact');
    assert.equal(compact.spec, undefined);
    assert.equal(compact.status?.restartCount, 2);
    assert.deepEqual(compact.status?.warnings, ['no cgroups']);
    assert.equal(compact.deletionTimestamp?.toISOString(), CREATED);
    assert.ok(taskToWire(record, 'full').spec);
  });

  test('states carry their times and messages; a record converts once, a changed record again', () => {
    const record = recordOf(fullProcess, {
      state: { phase: 'terminated', exitCode: 137, signal: 9, reason: 'OOMKilled', startedAt: CREATED, finishedAt: '2026-01-02T03:04:06.000Z' },
    });
    const task = taskToWire(record);
    assert.equal(task.status?.state?.state?.$case, 'terminated');
    const terminated = task.status?.state?.state?.$case === 'terminated' ? task.status.state.state.value : undefined;
    assert.deepEqual(
      { ...terminated, startedAt: terminated?.startedAt?.toISOString(), finishedAt: terminated?.finishedAt?.toISOString() },
      { exitCode: 137, signal: 9, reason: 'OOMKilled', message: '', startedAt: CREATED, finishedAt: '2026-01-02T03:04:06.000Z' },
    );
    assert.equal(taskToWire(record), task, 'the same record converts once');
    const running = taskToWire({ ...record, state: { phase: 'running', startedAt: CREATED } });
    assert.equal(running.status?.state?.state?.$case, 'running');
    const waiting = taskToWire({ ...record, state: { phase: 'waiting', reason: 'BackOff', message: 'restarting in 1s' } });
    assert.deepEqual(waiting.status?.state?.state, { $case: 'waiting', value: { reason: 'BackOff', message: 'restarting in 1s' } });
  });
});
