// A container start that the runtime's outage interrupts (UNAVAILABLE from
// CreateContainer or StartContainer, as when containerd is killed mid-start),
// on a stand-in CRI runtime (test/support/fake-cri.ts): what the start made is
// removed once the runtime answers again, a sandbox taken from the pool
// (--container-sandbox-pool), which carries no label of the run, included.
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { TaskError } from '../../src/errors.js';
import { type ContainerRuntime, startContainerRuntime } from '../../src/runtime/container/container-runtime.js';
import { CriClient } from '../../src/runtime/container/cri-client.js';
import { tempDir } from '../support/executor.js';
import { type FakeCri, startFakeCri } from '../support/fake-cri.js';
import { waitFor } from '../support/wait.js';

const IMAGE = 'registry.local/app:1';

describe('a container start interrupted by a runtime outage', () => {
  let cri: FakeCri;
  let client: CriClient;
  let runtime: ContainerRuntime;
  let dataDir: string;

  before(async () => {
    cri = await startFakeCri();
    cri.images.add(IMAGE);
    client = new CriClient(cri.socket, { timeoutMs: 5000 });
    dataDir = tempDir('te-start-outage-');
    runtime = await startContainerRuntime({
      criSocket: cri.socket,
      volumes: new Map(),
      sandboxPool: 1,
      dataDir,
      logMaxBytes: 1024 * 1024,
      logMaxFiles: 2,
      log: pino({ level: 'silent' }),
    });
  });

  after(async () => {
    await runtime?.close();
    client?.close();
    await cri?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  for (const rpc of ['startContainer', 'createContainer'] as const) {
    test(`${rpc} fails as the runtime restarts: the pooled sandbox the start took is removed once the runtime answers again`, async () => {
      await waitFor('the pool to fill', () => runtime.pool?.ready === 1);
      const name = `outage-${rpc}`;
      const taskDir = join(dataDir, name);
      mkdirSync(taskDir, { recursive: true });
      // containerd's answer while it restarts.
      cri.failNext(rpc, status.UNKNOWN, 'server is not initialized yet');
      const error = await runtime
        .start({ name, taskDir, spec: { container: { image: IMAGE, command: ['true'], args: [], env: [], volumeMounts: [] } } })
        .then(
          () => assert.fail('the start succeeded'),
          (e: unknown) => e,
        );
      assert.ok(error instanceof TaskError && error.kind === 'Unavailable', String(error));
      // The runtime answers again at once: the probe finds it back, and the run's remains go.
      await waitFor(
        'the taken sandbox and any container of the run to be removed, only the idle pool left',
        async () => {
          const sandboxes = await client.listPodSandbox({});
          const containers = await client.listContainers({});
          return sandboxes.length === runtime.pool?.ready && containers.length === 0;
        },
        { timeoutMs: 5000 },
      );
    });
  }

  test('a pool refill whose RunPodSandbox answer is lost in an outage: the sandbox it made is removed once the runtime answers again', async () => {
    await waitFor('the pool to fill', () => runtime.pool?.ready === 1);
    // A start takes the idle sandbox; the refill after it is the call whose answer is lost.
    const name = 'refill-lost';
    const taskDir = join(dataDir, name);
    mkdirSync(taskDir, { recursive: true });
    cri.failNext('runPodSandbox', status.UNKNOWN, 'server is not initialized yet');
    const started = await runtime.start({ name, taskDir, spec: { container: { image: IMAGE, command: ['true'], args: [], env: [], volumeMounts: [] } } });
    await runtime.release(started.handle);
    await waitFor(
      'only the idle pool to be left',
      async () => {
        const sandboxes = await client.listPodSandbox({});
        return runtime.pool?.ready === 1 && sandboxes.length === 1;
      },
      { timeoutMs: 5000 },
    );
  });
});
