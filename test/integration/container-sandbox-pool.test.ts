// --container-sandbox-pool end to end on a private containerd
// (test/support/containerd.ts): container tasks start in sandboxes made ahead
// of time, one task per sandbox, logs in the task's own directory; the pool
// refills; delete removes the task's sandbox; the executor's close removes
// the idle ones, and its next start removes idle ones an earlier run left but
// never a sandbox that holds a task's container.
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { StartupError, startExecutor } from '../../src/app.js';
import { LABEL_OWNER, LABEL_POOL, ownerOf, sandboxConfig } from '../../src/runtime/container/mapping.js';
import { requireContainerd, startPrivateContainerd, type PrivateContainerd } from '../support/containerd.js';
import { containerTask, startTestExecutor, stateOf, tempDir, testConfig, type TestExecutor } from '../support/executor.js';
import { waitFor } from '../support/wait.js';

test('containerd, runc and busybox-static are installed (CI installs them with .ci/run)', () => {
  requireContainerd();
});

describe('a pool of pod sandboxes made ahead of time (--container-sandbox-pool)', () => {
  let ctrd: PrivateContainerd;
  let dataDir: string;
  let te: TestExecutor | undefined;

  const start = () =>
    startTestExecutor(
      {
        enableContainerMode: true,
        criSocket: ctrd.socket,
        containerCgroupParent: ctrd.cgroupParent,
        containerSandboxPool: 2,
        logLevel: process.env.TEST_LOG_LEVEL ?? 'warn',
      },
      dataDir,
    );
  const owner = () => ownerOf(realpathSync(dataDir));
  const pooled = () => ctrd.cri.listPodSandbox({ [LABEL_OWNER]: owner(), [LABEL_POOL]: 'true' });
  /** Pooled sandboxes holding no container. */
  const idle = async () => {
    const ids = [];
    for (const sandbox of await pooled()) {
      if ((await ctrd.cri.listContainers({ podSandboxId: sandbox.id })).length === 0) ids.push(sandbox.id);
    }
    return ids;
  };
  const gone = (name: string) =>
    waitFor(`task ${name} to be deleted`, async () => {
      try {
        await te!.api.getTask({ name });
        return false;
      } catch (error) {
        return (error as ServiceError).code === status.NOT_FOUND;
      }
    }, { timeoutMs: 20_000 });

  before(async () => {
    ctrd = await startPrivateContainerd();
    dataDir = tempDir('te-pool-');
  });

  after(async () => {
    await te?.close();
    if (!ctrd) return;
    const left = { sandboxes: await ctrd.cri.listPodSandbox({}), containers: await ctrd.cri.listContainers({}) };
    const report = await ctrd.stop();
    assert.deepEqual(left, { sandboxes: [], containers: [] }, 'the pool or its tasks left CRI objects behind');
    assert.deepEqual(report.shims, [], 'containerd-shim processes survived teardown');
    assert.deepEqual(report.leftovers, [], 'deleted tasks left cgroups or runtime state behind');
  });

  test('an idle sandbox an earlier run left is removed at startup, and the pool fills up to its size', async () => {
    // What an executor that was killed leaves: a pooled sandbox nobody took.
    const uid = randomUUID();
    const leftover = await ctrd.cri.runPodSandbox(
      sandboxConfig({ task: 'pool-left', uid, labels: { [LABEL_OWNER]: owner(), [LABEL_POOL]: 'true' }, logDirectory: '', cgroupParent: ctrd.cgroupParent }),
    );
    te = await start();
    const ready = await waitFor('two idle pooled sandboxes', async () => {
      const ids = await idle();
      return ids.length === 2 && ids;
    });
    assert.ok(!ready.includes(leftover), 'the leftover sandbox was adopted instead of removed');
    assert.equal((await pooled()).length, 2);
  });

  test('a container task starts in a pooled sandbox, logs to its own directory, and the pool refills', async () => {
    const before = await idle();
    await te!.api.createTask({ task: containerTask('pooled', ctrd.images.busybox, { command: ['sh', '-c', 'echo from-a-pooled-sandbox; exec sleep 300'] }) });
    // Create's reply shows the start only if it took under 2 s (CREATE_REPLY_WAIT_MS); under load it may show Pending.
    await waitFor('the task to run', async () => {
      const state = stateOf((await te!.api.getTask({ name: 'pooled' })).task);
      assert.notEqual(state?.$case, 'terminated', JSON.stringify(state));
      return state?.$case === 'running';
    });
    const handle = te!.executor.manager.find('pooled')?.runtime?.handle as { sandboxId?: string } | undefined;
    assert.ok(handle?.sandboxId && before.includes(handle.sandboxId), 'the task did not get one of the idle pooled sandboxes');
    await waitFor('the output in the task\'s own log directory', () => {
      try {
        return readFileSync(join(dataDir, 'pooled', 'logs', 'output.0.log'), 'utf8').includes('from-a-pooled-sandbox');
      } catch {
        return false;
      }
    });
    await waitFor('the pool to be refilled', async () => (await idle()).length === 2);
    await te!.api.deleteTask({ name: 'pooled' });
    await gone('pooled');
    const left = (await ctrd.cri.listPodSandbox({})).map((s) => s.id);
    assert.ok(!left.includes(handle.sandboxId), 'the deleted task\'s pooled sandbox is still there');
  });

  test('a restart keeps the sandbox of a running task, removes the idle ones on close, and delete removes the task\'s', async () => {
    await te!.api.createTask({ task: containerTask('survivor', ctrd.images.busybox, { command: ['sleep', '300'] }) });
    const sandboxId = (te!.executor.manager.find('survivor')?.runtime?.handle as { sandboxId?: string } | undefined)?.sandboxId;
    assert.ok(sandboxId);
    await te!.stop();
    // Closing removed the idle sandboxes; the task's sandbox and container run on.
    assert.deepEqual(await idle(), []);
    assert.deepEqual((await pooled()).map((s) => s.id), [sandboxId]);
    te = await start();
    await waitFor('the pool to be refilled', async () => (await idle()).length === 2);
    const state = stateOf((await te.api.getTask({ name: 'survivor' })).task);
    assert.equal(state?.$case, 'running');
    assert.ok((await pooled()).some((s) => s.id === sandboxId), 'the restart removed the sandbox of a running task');
    await te.api.deleteTask({ name: 'survivor' });
    await gone('survivor');
    assert.ok(!(await ctrd.cri.listPodSandbox({})).some((s) => s.id === sandboxId));
    await te.stop();
    assert.deepEqual(await pooled(), [], 'the executor\'s close left idle pooled sandboxes');
  });

  test('the flag without container mode is refused at startup', async () => {
    const dir = tempDir('te-pool-flag-');
    await assert.rejects(
      startExecutor(testConfig(dir, { containerSandboxPool: 2 }), pino({ level: 'silent' })),
      (error: unknown) => error instanceof StartupError && /--container-sandbox-pool is for container tasks: give --enable-container-mode too/.test(error.message),
    );
    rmSync(dir, { recursive: true, force: true });
  });
});
