// The container backend end to end: a private containerd (test/support/containerd.ts),
// a real executor in container mode talking CRI to it, and the gRPC API.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ServiceError, status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { LogsRequest, type LogsResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { Artifact, ContainerSpec, RestartPolicy, type Task, TaskSpec } from '../../gen/taskexecutor/v1/task.js';
import type { TaskEvent } from '../../src/manager/task-manager.js';
import { criAddress, unreachableReason } from '../../src/runtime/container/cri-client.js';
import { ContainerState, ContainerStats, ContainerStatus } from '../../gen/cri/runtime/v1/api.js';
import { type ContainerHandle, type ContainerRuntime, startContainerRuntime } from '../../src/runtime/container/container-runtime.js';
import type { TaskSpec as ModelTaskSpec } from '../../src/model/task.js';
import { TaskError } from '../../src/errors.js';
import { LABEL_TASK, linuxResources, observationFromStatus, resolveMounts, sampleFromStats } from '../../src/runtime/container/mapping.js';
import { startExecutor } from '../../src/app.js';
import { createLogger } from '../../src/logger.js';
import { requireContainerd, startPrivateContainerd, type PrivateContainerd } from '../support/containerd.js';
import { startTestExecutor, stateOf, terminated, testConfig, type TestExecutor } from '../support/executor.js';
import { openLogs, readLogs, texts } from '../support/logs-rpc.js';
import { waitFor } from '../support/wait.js';

type SpecExtra = Partial<Omit<TaskSpec, 'runtime'>>;

function ctask(name: string, image: string, container: Partial<ContainerSpec>, spec: SpecExtra = {}): Task {
  return {
    name,
    spec: TaskSpec.fromPartial({ ...spec, runtime: { $case: 'container', value: ContainerSpec.fromPartial({ ...container, image }) } }),
  };
}

/** The payloads of a task's CRI-format log files, oldest first. */
function logLines(dataDir: string, name: string): string[] {
  const dir = join(dataDir, name, 'logs');
  return readdirSync(dir)
    .filter((f) => /^output\.\d+\.log$/.test(f))
    .sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]))
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n'))
    .filter(Boolean)
    .map((line) => line.split(' ').slice(3).join(' '));
}

test('containerd, runc and busybox-static are installed (CI installs them with .ci/run)', () => {
  requireContainerd();
});

describe('container backend over CRI', () => {
  let ctrd: PrivateContainerd;
  let te: TestExecutor;
  let volume: string;
  let busybox: string;
  const events: TaskEvent[] = [];

  const startExecutorOn = async (dataDir?: string) => {
    const started = await startTestExecutor(
      {
        enableContainerMode: true,
        criSocket: ctrd.socket,
        containerCgroupParent: ctrd.cgroupParent,
        volumes: { data: volume },
        // No test here pulls from a registry that answers: a pull that keeps failing gives up soon.
        imagePullTimeoutMs: 3000,
        // Slow or failing CRI calls and reconcile errors show up in the test output.
        logLevel: process.env.TEST_LOG_LEVEL ?? 'warn',
      },
      dataDir,
    );
    started.executor.manager.subscribe((event) => events.push(event));
    return started;
  };

  before(async () => {
    ctrd = await startPrivateContainerd();
    busybox = ctrd.images.busybox;
    volume = mkdtempSync(join(tmpdir(), 'te-volume-'));
    te = await startExecutorOn();
  });

  after(async () => {
    let leftovers;
    try {
      if (te) {
        // Deleting every task must remove every sandbox and container it made.
        await te.api.setTasks({ tasks: [] });
        await waitFor('every task to be deleted', async () => (await te.api.listTasks()).tasks.length === 0, { timeoutMs: 30_000 });
        leftovers = { sandboxes: await ctrd.cri.listPodSandbox({}), containers: await ctrd.cri.listContainers({}) };
      }
    } finally {
      await te?.close();
      if (volume) rmSync(volume, { recursive: true, force: true });
    }
    if (!ctrd) return;
    const report = await ctrd.stop();
    if (process.env.TEST_LOG_LEVEL) console.log('private containerd teardown:', report);
    assert.deepEqual(leftovers, { sandboxes: [], containers: [] }, 'deleting the tasks left CRI objects behind');
    assert.deepEqual(report.shims, [], 'containerd-shim processes of the private containerd survived teardown');
    assert.deepEqual(report.mounts, [], 'mounts under the private containerd dir survived teardown');
    assert.deepEqual(report.cgroups, [], 'cgroups of the test containers survived teardown');
    assert.deepEqual(report.leftovers, [], 'deleted tasks left cgroups or runtime state behind');
    assert.deepEqual(report.forced, [], 'teardown had to clean up after the executor');
  });

  const finished = (name: string, timeoutMs = 20_000) =>
    waitFor(`task ${name} to terminate`, async () => terminated((await te.api.getTask({ name })).task), { timeoutMs });
  const running = (name: string) =>
    waitFor(`task ${name} to run`, async () => stateOf((await te.api.getTask({ name })).task)?.$case === 'running');
  const gone = (name: string) =>
    waitFor(
      `task ${name} to be deleted`,
      async () => {
        try {
          await te.api.getTask({ name });
          return false;
        } catch (error) {
          return (error as ServiceError).code === status.NOT_FOUND;
        }
      },
      { timeoutMs: 20_000 },
    );
  const criObjects = async (name: string) => ({
    sandboxes: await ctrd.cri.listPodSandbox({ [LABEL_TASK]: name }),
    containers: await ctrd.cri.listContainers({ labelSelector: { [LABEL_TASK]: name } }),
  });

  test('the executor refuses to start when the CRI socket is unreachable', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'te-test-'));
    try {
      const config = testConfig(dataDir, { enableContainerMode: true, criSocket: join(dataDir, 'no-such.sock') });
      await assert.rejects(
        startExecutor(config, createLogger('silent')),
        /--enable-container-mode: cannot reach the CRI runtime at unix:\/\/.*no-such\.sock.*--cri-socket/,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a failing container ends Failed with its exit code, and its output is in the log files and the Logs RPC', async () => {
    const { task } = await te.api.createTask({ task: ctask('fails', busybox, { command: ['sh', '-c', 'echo hi; echo oops >&2; exit 3'] }) });
    assert.ok(['running', 'terminated'].includes(stateOf(task)?.$case ?? ''), `state ${JSON.stringify(stateOf(task))}`);
    const end = await finished('fails');
    assert.equal(end.exitCode, 3);
    assert.equal(end.reason, 'Failed');
    assert.ok(end.startedAt && end.finishedAt && end.finishedAt >= end.startedAt);
    assert.deepEqual(logLines(te.dataDir, 'fails').sort(), ['hi', 'oops']);

    const messages: LogsResponse[] = await new Promise((resolve, reject) => {
      const got: LogsResponse[] = [];
      const call = te.client.logs(LogsRequest.fromPartial({ name: 'fails' }));
      call.on('data', (m: LogsResponse) => got.push(m));
      call.on('error', reject);
      call.on('end', () => resolve(got));
    });
    const text = messages.map((m) => (m.content?.$case === 'text' ? m.content.value : m.content?.$case === 'data' ? m.content.value.toString() : ''));
    assert.deepEqual(text.map((t) => t.replace(/\n$/, '')).sort(), ['hi', 'oops']);
  });

  test('a container that exits 0 ends Succeeded', async () => {
    await te.api.createTask({ task: ctask('succeeds', busybox, { command: ['true'] }) });
    const end = await finished('succeeds');
    assert.equal(end.exitCode, 0);
    assert.equal(end.reason, 'Succeeded');
    assert.equal((await te.executor.manager.sample('succeeds'))?.sample.cpuNanoseconds, undefined, 'an ended container has no cpu sample');
  });

  test('a failed container restarts under RESTART_POLICY_ON_FAILURE in a fresh sandbox; the earlier run is removed', async () => {
    await te.api.createTask({
      task: ctask('flaky', busybox, { command: ['sh', '-c', 'echo run; exit 1'] }, { restartPolicy: RestartPolicy.RESTART_POLICY_ON_FAILURE, maxRestarts: 1 }),
    });
    const end = await waitFor(
      'the restarted run to end',
      async () => {
        const { task } = await te.api.getTask({ name: 'flaky' });
        return task?.status?.restartCount === 1 && terminated(task);
      },
      { timeoutMs: 20_000 },
    );
    assert.equal(end.exitCode, 1);
    assert.deepEqual(logLines(te.dataDir, 'flaky'), ['run', 'run']);
    const objects = await criObjects('flaky');
    assert.equal(objects.sandboxes.length, 1, 'one sandbox per task: the first run was removed');
    assert.equal(objects.containers.length, 1);
  });

  test("a chatty container's log rotates by size (ReopenContainerLog) within maxFiles, and Logs follows it across the rotations", async () => {
    // 30 bursts of 20 lines (about 2 KB each), 0.2 s apart: several rotations of 1 KiB files, checked every second.
    const script = 'i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo "line $i ........................................"; ' +
      'if [ $((i % 20)) -eq 0 ]; then usleep 200000; fi; done; echo done';
    await te.api.createTask({ task: ctask('chatty', busybox, { command: ['sh', '-c', script] }, { logs: { maxFileSizeBytes: 1024, maxFiles: 3 } }) });
    const follower = openLogs(te, { name: 'chatty', follow: true });
    const dir = join(te.dataDir, 'chatty', 'logs');
    let mostFiles = 0;
    let highest = 0;
    await waitFor(
      'the chatty task to end',
      async () => {
        const files = existsSync(dir) ? readdirSync(dir).filter((f) => /^output\.\d+\.log$/.test(f)) : [];
        mostFiles = Math.max(mostFiles, files.length);
        highest = Math.max(highest, ...files.map((f) => Number(f.split('.')[1])));
        return terminated((await te.api.getTask({ name: 'chatty' })).task);
      },
      { timeoutMs: 30_000 },
    );
    const expected = [...Array.from({ length: 600 }, (_, i) => `line ${i + 1} ${'.'.repeat(40)}`), 'done'];
    const { error } = await follower.done;
    assert.equal(error, undefined, `follow failed: ${error?.details}`);
    assert.deepEqual(texts(follower.messages), expected, 'the follower got every line once, in order');
    assert.ok(highest >= 3, `only ${highest} rotations in about 6 s`);
    assert.ok(mostFiles <= 3, `${mostFiles} log files at once (maxFiles 3)`);
    assert.deepEqual(texts(await readLogs(te, { name: 'chatty', tailLines: 5 })), expected.slice(-5));
    const kept = texts(await readLogs(te, { name: 'chatty' }));
    assert.deepEqual(kept, expected.slice(-kept.length), 'what is kept is the end of the output, in order');
  });

  test('env (last entry wins), workingDir and volume mounts from the volume map work', async () => {
    await te.api.createTask({
      task: ctask('mounts', busybox, {
        command: ['sh', '-c'],
        args: ['echo "$GREETING|$(pwd)" > /data/out.txt; touch /ro/x 2>/dev/null && echo writable || echo read-only'],
        env: [
          { name: 'GREETING', value: 'first' },
          { name: 'GREETING', value: 'hi there' },
        ],
        workingDir: '/etc',
        volumeMounts: [
          { name: 'data', mountPath: '/data', readOnly: false },
          { name: 'data', mountPath: '/ro', readOnly: true },
        ],
      }),
    });
    const end = await finished('mounts');
    assert.equal(end.reason, 'Succeeded', end.message);
    assert.equal(readFileSync(join(volume, 'out.txt'), 'utf8'), 'hi there|/etc\n');
    assert.deepEqual(logLines(te.dataDir, 'mounts'), ['read-only']);
  });

  test('artifacts are fetched before the container starts and mounted read-only at /<destination>', async () => {
    const script = join(volume, 'hello.sh');
    writeFileSync(script, 'echo hello from an artifact\n');
    const task = ctask('with-artifacts', busybox, {
      command: ['sh', '-c'],
      args: ['sh /artifacts/hello.sh; touch /artifacts/x 2>/dev/null && echo writable || echo read-only'],
    });
    task.spec!.artifacts = [Artifact.fromPartial({ source: `file://${script}` })];
    await te.api.createTask({ task });
    const end = await finished('with-artifacts');
    assert.equal(end.reason, 'Succeeded', end.message);
    assert.deepEqual(logLines(te.dataDir, 'with-artifacts'), ['hello from an artifact', 'read-only']);
  });

  test('a volume the executor does not know ends the task VolumeNotFound', async () => {
    const { task } = await te.api.createTask({
      task: ctask('no-volume', busybox, { command: ['true'], volumeMounts: [{ name: 'nope', mountPath: '/x', readOnly: false }] }),
    });
    const end = terminated(task);
    assert.equal(end?.reason, 'VolumeNotFound');
    assert.match(end?.message ?? '', /volume "nope".*known: data.*--volume NAME=HOSTPATH/);
    assert.deepEqual(await criObjects('no-volume'), { sandboxes: [], containers: [] });
  });

  test('a program missing from the image ends the task ProcessStartFailed', async () => {
    const { task } = await te.api.createTask({ task: ctask('no-program', busybox, { command: ['/nonexistent/prog'] }) });
    const end = terminated(task) ?? (await finished('no-program'));
    assert.equal(end.reason, 'ProcessStartFailed');
    assert.match(end.message, /\/nonexistent\/prog/);
  });

  test('a container over its memory limit is OOMKilled with exit code 137', async () => {
    await te.api.createTask({
      task: ctask(
        'oom',
        busybox,
        { command: ['sh', '-c', 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived ${#x}'] },
        { resources: { memoryBytes: 32 * 1024 * 1024 } },
      ),
    });
    const end = await finished('oom');
    assert.equal(end.reason, 'OOMKilled');
    assert.equal(end.exitCode, 137);
    assert.ok(!logLines(te.dataDir, 'oom').some((l) => l.startsWith('survived')));
  });

  test('a registry that refuses connections is retried with back-off (ImagePullBackOff, containerd\'s words) until --image-pull-timeout, then ImagePullFailed', async () => {
    const image = '127.0.0.1:1/te-test/absent:latest';
    await te.api.createTask({ task: ctask('no-image', image, { command: ['true'] }) });
    const end = await waitFor('the pull to give up', async () => terminated((await te.api.getTask({ name: 'no-image' })).task));
    assert.equal(end.reason, 'ImagePullFailed');
    assert.match(end.message, /^gave up pulling image "127\.0\.0\.1:1\/te-test\/absent:latest" after \d+ attempts in 3s \(--image-pull-timeout\); last error: .*connection refused/);
    // Every back-off the task went through, from the manager's own events (a
    // poll of Get can miss the 1 s one under load): each in containerd's
    // words, each but the last followed by another attempt; the last one,
    // cut to what is left of the budget, says the pull gives up after it.
    const seen = events.flatMap(({ task: { name, state } }) =>
      name === 'no-image' && state.phase === 'waiting' && state.reason === 'ImagePullBackOff' ? [state.message ?? ''] : [],
    );
    assert.ok(seen.length > 0, 'ImagePullBackOff was never seen');
    const then = seen.map((message, i) => {
      const match = /^cannot pull image "127\.0\.0\.1:1\/te-test\/absent:latest" \(attempt (\d+)\): .*connection refused.*; (trying again|giving up) in [\d.]+s( \(--image-pull-timeout\))?$/.exec(message);
      assert.ok(match, `back-off ${i + 1}: ${message}`);
      return `${match[1]} ${match[2]}`;
    });
    const distinct = [...new Set(then)]; // an event may show the same state again
    assert.ok(distinct.every((t, i) => i === 0 || Number.parseInt(t, 10) > Number.parseInt(distinct[i - 1]!, 10)), `one back-off per attempt: ${then.join(', ')}`);
    assert.ok(distinct.slice(0, -1).every((t) => t.endsWith('trying again')), then.join(', '));
    assert.deepEqual(await criObjects('no-image'), { sandboxes: [], containers: [] });
  });

  test('an invalid image reference ends the task ImagePullFailed at once, with containerd\'s words', async () => {
    const { task } = await te.api.createTask({ task: ctask('bad-ref', 'te-test/UPPER:latest', { command: ['true'] }) });
    const end = terminated(task);
    assert.equal(end?.reason, 'ImagePullFailed', JSON.stringify(task?.status?.state));
    assert.match(end?.message ?? '', /^cannot pull image "te-test\/UPPER:latest": .*invalid reference format/);
  });

  test('stats report cpu and memory of a running container; limits the CRI cannot set are warnings', async () => {
    const { task } = await te.api.createTask({
      task: ctask(
        'busy',
        busybox,
        { command: ['sh', '-c', 'while :; do :; done'] },
        { resources: { cpuMillicores: 200, memoryBytes: 64 * 1024 * 1024, pids: 50 }, terminationGracePeriodSeconds: 0 },
      ),
    });
    await running('busy');
    const handle = te.executor.manager.find('busy')?.runtime?.handle;
    assert.ok(handle);
    const sample = await waitFor('cpu time to be counted', async () => {
      const s = (await te.executor.manager.sample('busy'))?.sample;
      return (s?.cpuNanoseconds ?? 0) > 0 && s;
    });
    assert.ok((sample.memoryUsageBytes ?? 0) > 0, `memory ${sample.memoryUsageBytes}`);
    assert.equal(sample.cpuLimitMillicores, 200);
    assert.equal(sample.memoryLimitBytes, 64 * 1024 * 1024);
    // The limits are the container's cgroup's, under the executor's --container-cgroup-parent.
    const id = (handle as { containerId: string }).containerId;
    const cgroupV2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
    const memoryLimit = cgroupV2
      ? join('/sys/fs/cgroup', ctrd.cgroupParent, id, 'memory.max')
      : join('/sys/fs/cgroup/memory', ctrd.cgroupParent, id, 'memory.limit_in_bytes');
    assert.equal(readFileSync(memoryLimit, 'utf8').trim(), String(64 * 1024 * 1024));
    if (!cgroupV2) assert.ok(task?.status?.warnings.some((w) => /resources\.pids is not enforced/.test(w)), String(task?.status?.warnings));
    await te.api.deleteTask({ name: 'busy' });
    await gone('busy');
  });

  test('delete stops a TERM-ignoring container after its grace period and removes container and sandbox', async () => {
    await te.api.createTask({
      task: ctask('stubborn', busybox, { command: ['sh', '-c', 'trap "" TERM; echo ready; while :; do sleep 0.1; done'] }, { terminationGracePeriodSeconds: 1 }),
    });
    await running('stubborn');
    await waitFor('the trap to be set', () => logLines(te.dataDir, 'stubborn').includes('ready'));
    const before = await criObjects('stubborn');
    assert.equal(before.sandboxes.length, 1);
    assert.equal(before.containers.length, 1);
    const t0 = Date.now();
    await te.api.deleteTask({ name: 'stubborn' });
    await gone('stubborn');
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 900 && elapsed < 8000, `stopping took ${elapsed} ms with a 1 s grace period`);
    const last = events.filter((e) => e.task.name === 'stubborn' && e.task.state.phase === 'terminated').at(-1)?.task.state;
    assert.equal(last?.phase === 'terminated' && last.reason, 'Stopped');
    assert.equal(last?.phase === 'terminated' && last.exitCode, 137);
    assert.deepEqual(await criObjects('stubborn'), { sandboxes: [], containers: [] });
  });

  test('a restarted executor re-attaches to running containers (also by label when the handle is stale) and reports their exit codes', async () => {
    const waiter = (name: string, code: number) =>
      ctask(name, busybox, {
        command: ['sh', '-c', `while [ ! -e /data/go-${name} ]; do sleep 0.05; done; exit ${code}`],
        volumeMounts: [{ name: 'data', mountPath: '/data', readOnly: false }],
      });
    await te.api.createTask({ task: waiter('survivor', 7) });
    await te.api.createTask({ task: waiter('stale', 8) });
    await te.api.createTask({ task: waiter('unrecorded', 9) });
    for (const name of ['survivor', 'stale', 'unrecorded']) await running(name);

    await te.stop();
    const edit = (name: string, change: (task: Record<string, unknown> & { runtime: { handle: Record<string, unknown> } }) => void) => {
      const file = join(te.dataDir, name, 'task.json');
      const record = JSON.parse(readFileSync(file, 'utf8'));
      change(record.task);
      writeFileSync(file, JSON.stringify(record));
    };
    // A persisted handle naming a container the runtime does not know...
    edit('stale', (task) => (task.runtime.handle.containerId = 'f'.repeat(64)));
    // ...and a start the executor died before recording.
    edit('unrecorded', (task) => {
      delete (task as { runtime?: unknown }).runtime;
      task.state = { phase: 'waiting', reason: 'Pending' };
    });
    te = await startExecutorOn(te.dataDir);

    for (const name of ['survivor', 'stale', 'unrecorded']) {
      assert.equal(stateOf((await te.api.getTask({ name })).task)?.$case, 'running', name);
    }
    assert.equal((await criObjects('unrecorded')).containers.length, 1, 'the unrecorded start was adopted, not repeated');
    for (const name of ['survivor', 'stale', 'unrecorded']) writeFileSync(join(volume, `go-${name}`), '');
    const [a, b, c] = await Promise.all([finished('survivor'), finished('stale'), finished('unrecorded')]);
    assert.deepEqual([a.exitCode, b.exitCode, c.exitCode], [7, 8, 9]);
    assert.deepEqual([a.reason, b.reason, c.reason], ['Failed', 'Failed', 'Failed']);

    await te.api.deleteTask({ name: 'stale' });
    await gone('stale');
    assert.deepEqual(await criObjects('stale'), { sandboxes: [], containers: [] });
  });

  test('a container handle the backend cannot read ends the task as RuntimeHandleUnreadable naming the field, and its container is removed', async () => {
    await te.api.createTask({ task: ctask('garbled', busybox, { command: ['sleep', '60'] }) });
    await running('garbled');
    assert.equal((await criObjects('garbled')).containers.length, 1);
    await te.stop();
    const file = join(te.dataDir, 'garbled', 'task.json');
    const record = JSON.parse(readFileSync(file, 'utf8'));
    record.task.runtime.handle.uid = 42;
    writeFileSync(file, JSON.stringify(record));
    te = await startExecutorOn(te.dataDir);

    const end = await waitFor('the task to end', async () => terminated((await te.api.getTask({ name: 'garbled' })).task));
    assert.equal(end.reason, 'RuntimeHandleUnreadable');
    assert.match(end.message ?? '', /field "uid" must be a string, not the number 42/);
    assert.match(end.message ?? '', /the executor stopped what it still ran/);
    assert.deepEqual(await criObjects('garbled'), { sandboxes: [], containers: [] }, 'no container is left that nothing follows');
    await te.api.deleteTask({ name: 'garbled' });
    await gone('garbled');
  });
});

describe('CRI mapping (pure)', () => {
  const statusOf = (over: Partial<ContainerStatus>): ContainerStatus =>
    ContainerStatus.fromPartial({
      id: 'c1',
      state: ContainerState.CONTAINER_EXITED,
      startedAt: 1700000000000000000n,
      finishedAt: 1700000001000000000n,
      exitCode: 0,
      reason: 'Completed',
      ...over,
    });

  test('resources become CFS quota, memory limit and (cgroup v2 only) pids.max', () => {
    const v1 = linuxResources({ cpuMillicores: 250, memoryBytes: 64 << 20, pids: 10 }, false);
    assert.deepEqual(v1.resources, { cpuPeriod: 100_000, cpuQuota: 25_000, memoryLimitInBytes: 64 << 20 });
    assert.match(v1.warnings.join(), /resources\.pids is not enforced/);
    const v2 = linuxResources({ pids: 10 }, true);
    assert.deepEqual(v2.resources, { unified: { 'pids.max': '10' } });
    assert.deepEqual(v2.warnings, []);
    const tiny = linuxResources({ cpuMillicores: 1 }, true);
    assert.equal(tiny.resources?.cpuQuota, 1000);
    assert.equal(tiny.applied.cpuMillicores, 10);
    assert.match(tiny.warnings.join(), /smallest CFS quota/);
    assert.deepEqual(linuxResources(undefined, false), { resources: undefined, applied: {}, warnings: [] });
  });

  test('container status becomes an observation; only informative reasons are kept', () => {
    assert.deepEqual(observationFromStatus(statusOf({ exitCode: 0 })), {
      state: 'exited',
      exitCode: 0,
      signal: 0,
      startedAt: '2023-11-14T22:13:20.000Z',
      finishedAt: '2023-11-14T22:13:21.000Z',
    });
    const error = observationFromStatus(statusOf({ exitCode: 3, reason: 'Error' }));
    assert.equal(error.state === 'exited' && error.reason, undefined);
    const oom = observationFromStatus(statusOf({ exitCode: 137, reason: 'OOMKilled' }));
    assert.ok(oom.state === 'exited' && oom.reason === 'OOMKilled' && oom.signal === 9 && /memory limit/.test(oom.message ?? ''));
    const early = observationFromStatus(statusOf({ startedAt: 1700000002000000000n }));
    assert.ok(early.state === 'exited' && early.startedAt === early.finishedAt, 'start clamped to the finish');
    assert.equal(observationFromStatus(statusOf({ state: ContainerState.CONTAINER_RUNNING })).state, 'running');
    assert.equal(observationFromStatus(statusOf({ state: ContainerState.CONTAINER_UNKNOWN })).state, 'lost');
    const created = observationFromStatus(statusOf({ state: ContainerState.CONTAINER_CREATED }));
    assert.ok(created.state === 'exited' && created.reason === 'ProcessStartFailed');
  });

  test('stats keep absent values absent', () => {
    assert.deepEqual(sampleFromStats(undefined, {}, 5), { time: 5 });
    const sample = sampleFromStats(
      ContainerStats.fromPartial({
        cpu: { timestamp: 2_000_000, usageCoreNanoSeconds: { value: 1234 } },
        memory: { timestamp: 0, usageBytes: { value: 4096 } },
      }),
      { memoryBytes: 8192 },
    );
    assert.deepEqual(sample, { time: 2, cpuNanoseconds: 1234, memoryUsageBytes: 4096, memoryLimitBytes: 8192 });
  });

  test('volume mounts resolve through the volume map', () => {
    const volumes = new Map([['data', '/srv/data']]);
    assert.deepEqual(resolveMounts([{ name: 'data', mountPath: '/d', readOnly: true }], volumes), {
      mounts: [{ containerPath: '/d', hostPath: '/srv/data', readonly: true }],
    });
    assert.deepEqual(resolveMounts([{ name: 'data', mountPath: '/d', readOnly: false }, { name: 'x', mountPath: '/x', readOnly: false }], volumes), {
      missing: { index: 1, name: 'x' },
    });
  });

  test("grpc-js connection errors become a reason a person can act on, keeping the runtime's own words otherwise", () => {
    const raw = (error: string) => `No connection established. Last error: Error: ${error}. Resolution note: `;
    assert.equal(unreachableReason(raw('connect ENOENT /run/c.sock')), 'its socket does not exist (is it running?)');
    assert.equal(unreachableReason(raw('connect ECONNREFUSED /run/c.sock')), 'connection refused');
    assert.equal(unreachableReason(raw('connect EACCES /run/c.sock')), 'permission denied on its socket');
    assert.equal(unreachableReason('Connection dropped'), 'the connection was lost');
    assert.equal(unreachableReason('server is not initialized yet'), 'it is still starting up');
    assert.equal(unreachableReason(raw('something new (2025-01-01T00:00:00.000Z)')), 'something new');
    assert.equal(unreachableReason('No connection established'), 'no connection');
  });

  test('the CRI socket may be a path or a unix:// address', () => {
    assert.equal(criAddress('/run/containerd/containerd.sock'), 'unix:///run/containerd/containerd.sock');
    assert.equal(criAddress('unix:///run/c.sock'), 'unix:///run/c.sock');
  });
});

/** A pino logger whose lines are kept, parsed, for assertions. */
function capturingLogger() {
  const lines: { level: number; msg: string; [key: string]: unknown }[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}

const WARN = 40;
const INFO = 30;

describe('container tasks while containerd is down', () => {
  let ctrd: PrivateContainerd;
  let volume: string;
  let dataDir: string;
  /** False while a test has containerd stopped: the tests start it again whatever happens. */
  let daemonUp = true;

  const stopContainerd = async () => {
    daemonUp = false;
    await ctrd.stopDaemon();
  };
  const startContainerd = async () => {
    await ctrd.startDaemon();
    daemonUp = true;
  };

  before(async () => {
    ctrd = await startPrivateContainerd();
    volume = mkdtempSync(join(tmpdir(), 'te-volume-'));
    dataDir = mkdtempSync(join(tmpdir(), 'te-outage-'));
  });

  after(async () => {
    if (volume) rmSync(volume, { recursive: true, force: true });
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    if (!ctrd) return;
    if (!daemonUp) await ctrd.startDaemon();
    const leftovers = { sandboxes: await ctrd.cri.listPodSandbox({}), containers: await ctrd.cri.listContainers({}) };
    const report = await ctrd.stop();
    assert.deepEqual(leftovers, { sandboxes: [], containers: [] }, 'the tests left CRI objects behind');
    assert.deepEqual(report.forced, [], 'teardown had to clean up after the tests');
    assert.deepEqual(report.leftovers, [], 'removed runs left cgroups or runtime state behind');
  });

  /** A container that waits for /data/go-<name> in the volume, then exits with `code`. */
  const waiterSpec = (name: string, code: number): ModelTaskSpec => ({
    container: {
      image: ctrd.images.busybox,
      command: ['sh', '-c', `while [ ! -e /data/go-${name} ]; do sleep 0.05; done; exit ${code}`],
      args: [],
      env: [],
      volumeMounts: [{ name: 'data', mountPath: '/data', readOnly: false }],
    },
  });
  const startRequest = (name: string, spec: ModelTaskSpec) => {
    const taskDir = join(dataDir, name);
    mkdirSync(taskDir, { recursive: true });
    return { name, taskDir, spec };
  };

  test('while containerd is down every runtime call throws Unavailable at once and the outage is logged once; calls work again within seconds of its return', async (t) => {
    const { log, lines } = capturingLogger();
    const runtime: ContainerRuntime = await startContainerRuntime({
      criSocket: ctrd.socket,
      volumes: new Map([['data', volume]]),
      cgroupParent: ctrd.cgroupParent,
      logMaxBytes: 1024 * 1024,
      logMaxFiles: 2,
      log,
    });
    const changes: boolean[] = [];
    runtime.onAvailabilityChange((available) => changes.push(available));
    let handle: ContainerHandle | undefined;
    try {
      const started = await runtime.start(startRequest('survivor', waiterSpec('survivor', 5)));
      handle = started.handle;
      assert.equal(started.observation.state, 'running');
      assert.equal(runtime.available(), true);

      await stopContainerd();
      const running = handle;
      const calls: [string, () => Promise<unknown>][] = [
        ['start', () => runtime.start(startRequest('newcomer', waiterSpec('newcomer', 0)))],
        ['inspect', () => runtime.inspect(running)],
        ['stats', () => runtime.stats(running)],
        ['stop', () => runtime.stop(running, { signal: 'SIGTERM', graceMs: 1000 })],
        ['release', () => runtime.release(running)],
        ['inspect again', () => runtime.inspect(running)],
      ];
      for (const [what, call] of calls) {
        const t0 = Date.now();
        const error = await call().then(
          () => assert.fail(`${what} succeeded while containerd was down`),
          (e: unknown) => e,
        );
        const ms = Date.now() - t0;
        assert.ok(error instanceof TaskError && error.kind === 'Unavailable', `${what}: ${String(error)}`);
        assert.match(
          error.message,
          /^the container runtime at unix:\/\/.*containerd\.sock is unreachable: its socket does not exist \(is it running\?\); tasks wait until it is back$/,
          what,
        );
        // The ordinary call deadline is 30 s: an unreachable runtime must not wait for it.
        assert.ok(ms < 10_000, `${what} took ${ms} ms to fail`);
      }
      assert.equal(runtime.available(), false);
      assert.deepEqual(changes, [false]);

      await startContainerd();
      const returned = Date.now();
      await waitFor('the runtime to notice containerd is back', () => runtime.available(), { timeoutMs: 5000, intervalMs: 10 });
      t.diagnostic(`available again ${Date.now() - returned} ms after containerd answered the harness`);
      assert.deepEqual(changes, [false, true]);
      assert.equal((await runtime.inspect(running)).state, 'running', 'the container outlived the containerd restart');

      writeFileSync(join(volume, 'go-survivor'), '');
      const end = await waitFor('the container to exit', async () => {
        const observation = await runtime.inspect(running);
        return observation.state === 'exited' && observation;
      });
      assert.equal(end.exitCode, 5);

      const outage = lines.filter((l) => /unreachable/.test(l.msg));
      assert.equal(outage.length, 1, `one line for the outage, got ${JSON.stringify(outage)}`);
      assert.equal(outage[0]!.level, WARN);
      const back = lines.filter((l) => /reachable again/.test(l.msg));
      assert.equal(back.length, 1, `one line for the return, got ${JSON.stringify(back)}`);
      assert.equal(back[0]!.level, INFO);
      const noisy = lines.filter((l) => l.level >= WARN && /stack|UNAVAILABLE|No connection established/.test(JSON.stringify(l)));
      assert.deepEqual(noisy, [], 'no stack traces or raw grpc-js text in the log');
    } finally {
      if (!daemonUp) await startContainerd();
      if (handle) await runtime.release(handle);
      runtime.close();
    }
  });

  // Needs the manager to treat TaskError('Unavailable') from start() as "wait and retry"
  // (waiting/RuntimeUnavailable) and from inspect() as "keep the last known state".
  test('e2e: a container task created while containerd is down waits as RuntimeUnavailable and runs once it is back; a running task keeps its state', async () => {
    const te = await startTestExecutor({
      enableContainerMode: true,
      criSocket: ctrd.socket,
      containerCgroupParent: ctrd.cgroupParent,
      volumes: { data: volume },
      logLevel: process.env.TEST_LOG_LEVEL ?? 'silent',
    });
    const state = async (name: string) => stateOf((await te.api.getTask({ name })).task);
    try {
      await te.api.createTask({
        task: ctask('early', ctrd.images.busybox, {
          command: ['sh', '-c', 'while [ ! -e /data/go-early ]; do sleep 0.05; done; exit 7'],
          volumeMounts: [{ name: 'data', mountPath: '/data', readOnly: false }],
        }),
      });
      await waitFor('task early to run', async () => (await state('early'))?.$case === 'running');

      await stopContainerd();
      const { task } = await te.api.createTask({ task: ctask('late', ctrd.images.busybox, { command: ['true'] }) });
      assert.notEqual(stateOf(task)?.$case, 'terminated', `Create answered ${JSON.stringify(stateOf(task))}`);
      const waiting = await waitFor('task late to wait for the runtime', async () => {
        const s = await state('late');
        assert.notEqual(s?.$case, 'terminated', `task late ended while containerd was down: ${JSON.stringify(s)}`);
        return s?.$case === 'waiting' && s.value.reason === 'RuntimeUnavailable' && s.value;
      });
      assert.match(waiting.message, /container runtime at unix:\/\/.* is unreachable/);
      assert.doesNotMatch(waiting.message, /UNAVAILABLE|No connection established/);
      // Its inspections fail meanwhile: the manager keeps what it last knew.
      assert.equal((await state('early'))?.$case, 'running');

      await startContainerd();
      const late = await waitFor(
        'task late to run once containerd is back',
        async () => terminated((await te.api.getTask({ name: 'late' })).task),
        { timeoutMs: 20_000 },
      );
      assert.equal(late.reason, 'Succeeded', late.message);
      writeFileSync(join(volume, 'go-early'), '');
      const early = await waitFor('task early to end', async () => terminated((await te.api.getTask({ name: 'early' })).task), { timeoutMs: 20_000 });
      assert.deepEqual([early.exitCode, early.reason], [7, 'Failed']);
    } finally {
      if (!daemonUp) await startContainerd();
      await te.api.setTasks({ tasks: [] });
      await waitFor('every task to be deleted', async () => (await te.api.listTasks()).tasks.length === 0, { timeoutMs: 30_000 }).catch(() => undefined);
      await te.close();
    }
  });
});
