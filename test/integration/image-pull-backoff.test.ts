// ImagePullBackOff end to end: an executor on a stand-in CRI runtime
// (test/support/fake-cri.ts) whose PullImage fails as a registry in trouble
// makes it fail. Transient failures are tried again after a back-off, the
// task showing ImagePullBackOff and ImagePulling through Watch and Get; final
// ones end it ImagePullFailed at once; --image-pull-timeout bounds it all;
// a delete during the back-off ends it at once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import type { WatchResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { pino } from 'pino';
import { specFromWire } from '../../src/api/convert.js';
import { ContainerRuntime } from '../../src/runtime/container/container-runtime.js';
import { TaskStore } from '../../src/store/task-store.js';
import { containerTask, openSubscribedWatch, processTask, startTestExecutor, stateOf, type TestExecutor, terminated, tempDir } from '../support/executor.js';
import { type FakeCri, startFakeCri } from '../support/fake-cri.js';
import { silent, startManager } from '../support/in-process.js';
import { waitFor } from '../support/wait.js';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/** The waiting reasons (and messages) one task went through, as a Watch stream showed them, repeats folded. */
function waitingSeen(events: WatchResponse[], name: string): { reason: string; message: string }[] {
  const seen: { reason: string; message: string }[] = [];
  for (const event of events) {
    const state = stateOf(event.task);
    if (event.task?.name !== name || state?.$case !== 'waiting') continue;
    const last = seen[seen.length - 1];
    if (last?.reason === state.value.reason && last.message === state.value.message) continue;
    seen.push({ reason: state.value.reason, message: state.value.message });
  }
  return seen;
}

describe('image pulls that fail: ImagePullBackOff, ImagePullFailed', () => {
  let cri: FakeCri;
  let te: TestExecutor;
  /** Same runtime, but --image-pull-timeout 2.5s. */
  let short: TestExecutor;
  const events: WatchResponse[] = [];

  before(async () => {
    cri = await startFakeCri();
    te = await startTestExecutor({ enableContainerMode: true, criSocket: cri.socket });
    short = await startTestExecutor({ enableContainerMode: true, criSocket: cri.socket, imagePullTimeoutMs: 2500 });
    // Subscribed before the first test creates a task: the tests compare every state the watch saw.
    await openSubscribedWatch(te, events);
  });

  after(async () => {
    await te?.close();
    await short?.close();
    await cri?.close();
  });

  test('a pull that fails UNAVAILABLE twice is tried again after a back-off and goes on once it succeeds', async () => {
    const image = 'registry.local/flaky:1';
    cri.scriptPulls(image, { times: 2, code: status.UNAVAILABLE, details: 'registry is having a moment' });
    await te.api.createTask({ task: containerTask('flaky', image) });
    // Get shows the back-off while it lasts, with the runtime's words.
    const backingOff = await waitFor('Get to show ImagePullBackOff', async () => {
      const state = stateOf((await te.api.getTask({ name: 'flaky' })).task);
      return state?.$case === 'waiting' && state.value.reason === 'ImagePullBackOff' && state.value;
    });
    assert.match(backingOff.message, /cannot pull image "registry\.local\/flaky:1" \(attempt \d\): registry is having a moment/);
    // The pull succeeded on the third attempt: the start went on, and the container runs.
    await waitFor('the task to run', async () => stateOf((await te.api.getTask({ name: 'flaky' })).task)?.$case === 'running');
    assert.equal(cri.pullsOf(image).length, 3);
    const times = cri.pullTimes.filter((_, i) => cri.pulls[i]?.image?.image === image);
    // The back-off is at least 1 s, then at least 2 s (a lower bound only: a loaded machine waits longer).
    assert.ok(times[1]! - times[0]! >= 900, `second attempt ${times[1]! - times[0]!} ms after the first`);
    assert.ok(times[2]! - times[1]! >= 1900, `third attempt ${times[2]! - times[1]!} ms after the second`);
    await waitFor('the watch to see it run', () => events.some((e) => e.task?.name === 'flaky' && stateOf(e.task)?.$case === 'running'));
    const seen = waitingSeen(events, 'flaky').filter((w) => w.reason !== 'Pending');
    assert.deepEqual(
      seen.map((w) => w.reason),
      ['ImagePulling', 'ImagePullBackOff', 'ImagePulling', 'ImagePullBackOff', 'ImagePulling'],
    );
    assert.match(seen.find((w) => w.reason === 'ImagePullBackOff')!.message, /attempt 1\): registry is having a moment \(PullImage: UNAVAILABLE\); trying again in 1s/);
    assert.match(seen.filter((w) => w.reason === 'ImagePullBackOff')[1]!.message, /attempt 2\).*trying again in 2s/);
    assert.equal(seen[seen.length - 1]!.message, 'pulling image "registry.local/flaky:1" (attempt 3)');
  });

  test('registry 5xx answers in the runtime\'s message are transient too', async () => {
    const image = 'registry.local/busy:1';
    cri.scriptPulls(image, {
      times: 1,
      code: status.UNKNOWN,
      details: `failed to pull and unpack image "${image}": unexpected status from HEAD request: 503 Service Unavailable`,
    });
    await te.api.createTask({ task: containerTask('busy', image) });
    await waitFor('the task to run', async () => stateOf((await te.api.getTask({ name: 'busy' })).task)?.$case === 'running');
    assert.equal(cri.pullsOf(image).length, 2);
    assert.ok(waitingSeen(events, 'busy').some((w) => w.reason === 'ImagePullBackOff' && /503 Service Unavailable/.test(w.message)));
  });

  test('an image that does not exist ends ImagePullFailed after one attempt, without a back-off', async () => {
    for (const [name, code, details] of [
      ['missing', status.NOT_FOUND, 'failed to resolve reference "registry.local/missing:1": not found'],
      ['denied', status.UNKNOWN, 'failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized'],
    ] as const) {
      const image = `registry.local/${name}:1`;
      cri.scriptPulls(image, { times: Infinity, code, details });
      const { task } = await te.api.createTask({ task: containerTask(name, image) });
      const end = terminated(task) ?? (await waitFor(`${name} to end`, async () => terminated((await te.api.getTask({ name })).task)));
      assert.equal(end.reason, 'ImagePullFailed');
      assert.equal(end.message.startsWith(`cannot pull image "${image}": ${details}`), true, end.message);
      assert.equal(cri.pullsOf(image).length, 1);
      await waitFor('the watch to see the end', () => events.some((e) => e.task?.name === name && terminated(e.task)));
      assert.ok(!waitingSeen(events, name).some((w) => w.reason === 'ImagePullBackOff'));
    }
  });

  test('--image-pull-timeout bounds the attempts and back-offs together, then the task ends ImagePullFailed saying so', async () => {
    const image = 'registry.local/down:1';
    cri.scriptPulls(image, { times: Infinity, code: status.UNKNOWN, details: 'dial tcp 10.0.0.9:443: connect: connection refused' });
    await short.api.createTask({ task: containerTask('down', image) });
    const end = await waitFor('the task to give up', async () => terminated((await short.api.getTask({ name: 'down' })).task));
    assert.equal(end.reason, 'ImagePullFailed');
    const attempts = cri.pullsOf(image).length;
    assert.ok(attempts >= 2, `${attempts} attempts`);
    assert.equal(
      end.message,
      `gave up pulling image "${image}" after ${attempts} attempts in 2.5s (--image-pull-timeout); last error: dial tcp 10.0.0.9:443: connect: connection refused`,
    );
  });

  test('a task deleted during its back-off is gone without waiting for it, and its image is not pulled again', async () => {
    const image = 'registry.local/forever:1';
    cri.scriptPulls(image, { times: Infinity, code: status.RESOURCE_EXHAUSTED, details: 'too many pulls' });
    await te.api.createTask({ task: containerTask('forever', image) });
    await waitFor('ImagePullBackOff', async () => {
      const state = stateOf((await te.api.getTask({ name: 'forever' })).task);
      return state?.$case === 'waiting' && state.value.reason === 'ImagePullBackOff';
    });
    await te.api.deleteTask({ name: 'forever' });
    // Without the start being stopped, it would go on trying for the default 5 minutes.
    await waitFor('the task to be gone', async () => !(await te.api.listTasks()).tasks.some((t) => t.name === 'forever'));
    const pulls = cri.pullsOf(image).length;
    const last = events.filter((e) => e.task?.name === 'forever').at(-2);
    assert.equal(terminated(last?.task)?.message, `deleted while its image "${image}" was being pulled`);
    await te.api.createTask({ task: containerTask('after-forever', 'registry.local/missing:1') });
    await waitFor('a later task to end', async () => terminated((await te.api.getTask({ name: 'after-forever' })).task));
    assert.equal(cri.pullsOf(image).length, pulls);
  });
});

describe('the container runtime\'s pull back-off on its own', () => {
  let cri: FakeCri;
  let dir: string;
  before(async () => {
    cri = await startFakeCri();
    dir = tempDir('te-pull-backoff-');
  });
  after(async () => {
    await cri?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('aborting a start during a minute-long back-off ends it at once as Stopped', async () => {
    const image = 'registry.local/slow:1';
    cri.scriptPulls(image, { times: Infinity, code: status.DEADLINE_EXCEEDED, details: 'registry too slow' });
    const runtime = new ContainerRuntime({
      criSocket: cri.socket,
      volumes: new Map(),
      logMaxBytes: 1 << 20,
      logMaxFiles: 2,
      log: pino({ level: 'silent' }),
      pullBackoff: { initialMs: 60_000, maxMs: 60_000 },
    });
    const taskDir = join(dir, 'slow');
    mkdirSync(taskDir);
    const abort = new AbortController();
    const progress: string[] = [];
    const started = runtime.start({
      name: 'slow',
      taskDir,
      spec: { container: { image, command: [], args: [], env: [], volumeMounts: [] } },
      progress: (reason) => progress.push(reason),
      signal: abort.signal,
    });
    await waitFor('the back-off', () => progress.includes('ImagePullBackOff'));
    abort.abort();
    // The test's own timeout is far below the minute the back-off would take.
    const { observation } = await started;
    runtime.close();
    assert.deepEqual(progress, ['ImagePulling', 'ImagePullBackOff']);
    assert.equal(observation.state, 'exited');
    assert.equal(observation.state === 'exited' && observation.reason, 'Stopped');
    assert.equal(cri.pullsOf(image).length, 1);
  });
});

describe('a start waiting for an image holds no start slot', () => {
  const closers: (() => unknown)[] = [];
  after(async () => {
    for (const close of closers.reverse()) await close();
  });

  test('with one start slot, a process task starts while a container task is in ImagePullBackOff', async () => {
    const cri = await startFakeCri();
    closers.push(() => cri.close());
    const image = 'registry.local/down:1';
    cri.scriptPulls(image, { times: Infinity, code: status.UNAVAILABLE, details: 'registry down' });
    const containers = new ContainerRuntime({ criSocket: cri.socket, volumes: new Map(), logMaxBytes: 1 << 20, logMaxFiles: 2, log: silent });
    closers.push(() => containers.close());
    const { manager, close } = await startManager(new TaskStore(tempDir(), silent), { others: [containers], startConcurrency: 1 });
    closers.push(async () => {
      await manager.setTasks([]);
      await waitFor('every task to be gone', () => manager.list().length === 0);
      await close();
    });
    await manager.create('stuck', specFromWire(containerTask('stuck', image).spec)!);
    await waitFor('the pull to back off', () => {
      const state = manager.get('stuck').state;
      return state.phase === 'waiting' && state.reason === 'ImagePullBackOff';
    });
    const started = await manager.create('free', specFromWire(processTask('free', ['sleep', '60']).spec)!);
    assert.equal(started.state.phase, 'running', `the process task's Create answered ${JSON.stringify(started.state)}`);
  });
});

describe('a shutdown during an image pull', () => {
  const closers: (() => unknown)[] = [];
  after(async () => {
    for (const close of closers.reverse()) await close();
  });

  test('is not held up by the pull and its back-off, records nothing of the start, and the next executor starts the task', async () => {
    const cri = await startFakeCri();
    closers.push(() => cri.close());
    const image = 'registry.local/shutdown:1';
    cri.scriptPulls(image, { times: Infinity, code: status.UNAVAILABLE, details: 'registry down' });
    const dataDir = tempDir();
    // A pull may take ten minutes: the shutdown must not wait for it.
    const options = { enableContainerMode: true, criSocket: cri.socket, imagePullTimeoutMs: 600_000 };
    const first = await startTestExecutor(options, dataDir);
    closers.push(() => first.close());
    await first.api.createTask({ task: containerTask('pulling', image) });
    await waitFor('the pull to back off', async () => {
      const state = stateOf((await first.api.getTask({ name: 'pulling' })).task);
      return state?.$case === 'waiting' && state.value.reason === 'ImagePullBackOff';
    });
    let closed = false;
    void first.stop().then(() => (closed = true));
    await waitFor('the executor to close during the back-off', () => closed, { timeoutMs: 15_000 });

    cri.scriptPulls(image, { times: 0, code: status.UNAVAILABLE, details: 'registry down', afterwards: 'succeed' });
    const second = await startTestExecutor(options, dataDir);
    closers.push(() => second.close());
    const state = await waitFor('the task to start after the restart', async () => {
      const current = stateOf((await second.api.getTask({ name: 'pulling' })).task);
      return current?.$case === 'running' || current?.$case === 'terminated' ? current : undefined;
    });
    assert.equal(state.$case, 'running', `the task runs once the image can be pulled, not ${JSON.stringify(state)}`);
    await second.api.deleteTask({ name: 'pulling' });
    await waitFor('the task to be gone', async () => (await second.api.listTasks()).tasks.length === 0);
  });
});
