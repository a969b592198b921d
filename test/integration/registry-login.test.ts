// --image-pull-config against a real registry: Debian's docker-registry with
// htpasswd (basic) auth on 127.0.0.1 (test/support/registry.ts), the local
// busybox image pushed into it, a private containerd (test/support/containerd.ts)
// pulling from it over plain HTTP, and executors in container mode with the
// right credentials, wrong ones and none. Where image-pull-auth.test.ts checks
// what the executor hands the CRI, this checks that a registry takes it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import { TaskExecutorServiceClient } from '../../gen/taskexecutor/v1/task_executor_service.js';
import type { TaskEvent } from '../../src/manager/task-manager.js';
import { type Executor, startExecutor } from '../../src/app.js';
import { requireContainerd, startPrivateContainerd, type PrivateContainerd } from '../support/containerd.js';
import { type Api, apiFor, containerTask, tempDir, terminated, testConfig } from '../support/executor.js';
import { capturingLogger } from '../support/log-capture.js';
import { readLogs, texts } from '../support/logs-rpc.js';
import { buildBusyboxImage } from '../support/oci-image.js';
import { type PrivateRegistry, requireRegistry, startPrivateRegistry } from '../support/registry.js';
import { waitFor } from '../support/wait.js';

const USER = 'te-puller';
// Fresh each run: a match in a log can only be a leak.
const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
const WRONG_PASSWORD = `wrong-${randomBytes(12).toString('hex')}`;
const REPOSITORY = 'te-test/busybox';

test('docker-registry, containerd, runc and busybox-static are installed (CI installs them with .ci/run)', () => {
  requireRegistry();
  requireContainerd();
});

interface Started {
  executor: Executor;
  client: TaskExecutorServiceClient;
  api: Api;
  dataDir: string;
}

describe('image pulls from a private registry with credentials (docker-registry)', () => {
  let registry: PrivateRegistry;
  let ctrd: PrivateContainerd;
  let dir: string;
  const started: Started[] = [];
  const events: TaskEvent[] = [];
  const logs = capturingLogger();

  before(async () => {
    dir = tempDir('te-registry-login-');
    const [r, c] = await Promise.all([startPrivateRegistry(USER, PASSWORD), startPrivateContainerd()]);
    registry = r;
    ctrd = c;
    // One tag per test: an image pulled once is in containerd and never asked for again.
    const parts = buildBusyboxImage().busyboxParts;
    for (const tag of ['right', 'wrong', 'none']) await registry.push(REPOSITORY, tag, parts);
  });

  after(async () => {
    try {
      for (const s of started) {
        await s.api.setTasks({ tasks: [] });
        await waitFor('every task to be deleted', async () => (await s.api.listTasks()).tasks.length === 0, { timeoutMs: 30_000 });
        s.client.close();
        await s.executor.close();
        rmSync(s.dataDir, { recursive: true, force: true });
      }
    } finally {
      const report = await ctrd?.stop();
      await registry?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (report) {
        assert.deepEqual(report.shims, [], 'containerd-shim processes of the private containerd survived teardown');
        assert.deepEqual(report.mounts, [], 'mounts under the private containerd dir survived teardown');
      }
    }
  });

  /** An executor in container mode on the private containerd, with this Docker config.json, or none. */
  async function executorWith(auths?: Record<string, unknown>): Promise<Started> {
    let imagePullConfig: string | undefined;
    if (auths) {
      imagePullConfig = join(dir, `config-${started.length}.json`);
      writeFileSync(imagePullConfig, JSON.stringify({ auths }), { mode: 0o600 });
    }
    const dataDir = tempDir();
    const config = testConfig(dataDir, {
      enableContainerMode: true,
      criSocket: ctrd.socket,
      containerCgroupParent: ctrd.cgroupParent,
      imagePullConfig,
      // Refused credentials must end the task at once; were they retried, the task would end
      // "gave up pulling" after this, and the message checks below would say so.
      imagePullTimeoutMs: 15_000,
    });
    const executor = await startExecutor(config, logs.log);
    executor.manager.subscribe((event) => events.push(event));
    const client = new TaskExecutorServiceClient(executor.address, credentials.createInsecure());
    const s = { executor, client, api: apiFor(client), dataDir };
    started.push(s);
    return s;
  }

  const finished = (s: Started, name: string) =>
    waitFor(`task ${name} to terminate`, async () => terminated((await s.api.getTask({ name })).task), { timeoutMs: 20_000 });
  /** The waiting reasons a task went through, from the manager's events. */
  const waitingReasons = (name: string) => events.filter((e) => e.task.name === name && e.task.state.phase === 'waiting').map((e) => (e.task.state.phase === 'waiting' ? e.task.state.reason : ''));

  test('with the right credentials the image is pulled from the registry and the container runs', async () => {
    const s = await executorWith({ [registry.host]: { username: USER, password: PASSWORD } });
    const image = `${registry.host}/${REPOSITORY}:right`;
    await s.api.createTask({ task: containerTask('right', image, { command: ['sh', '-c', 'echo pulled-from-the-private-registry'] }) });
    const end = await finished(s, 'right');
    assert.equal(end.reason, 'Succeeded', end.message);
    assert.deepEqual(texts(await readLogs(s, { name: 'right' })), ['pulled-from-the-private-registry']);
    assert.ok(await ctrd.cri.imageStatus(image), 'containerd does not hold the pulled image');
    // containerd had the manifest from the registry (its access log), which serves nothing without the password.
    assert.match(registry.log(), new RegExp(`"(HEAD|GET) /v2/${REPOSITORY}/manifests/right HTTP/1\\.1" 200 .*"containerd/`));
  });

  test('with a wrong password the task ends ImagePullFailed at once with the registry\'s refusal, without back-off', async () => {
    const s = await executorWith({ [`http://${registry.host}`]: { auth: Buffer.from(`${USER}:${WRONG_PASSWORD}`).toString('base64') } });
    const image = `${registry.host}/${REPOSITORY}:wrong`;
    await s.api.createTask({ task: containerTask('wrong', image, { command: ['true'] }) });
    const end = await finished(s, 'wrong');
    assert.equal(end.reason, 'ImagePullFailed');
    assert.match(end.message, new RegExp(`^cannot pull image "${image.replaceAll('.', '\\.')}": .*401 Unauthorized`));
    // One attempt: ImagePulling was seen, ImagePullBackOff never.
    assert.deepEqual([...new Set(waitingReasons('wrong'))].filter((r) => r.startsWith('ImagePull')), ['ImagePulling']);
    assert.ok(!end.message.includes(WRONG_PASSWORD), 'the task status holds the password');
    assert.equal(await ctrd.cri.imageStatus(image), undefined);
  });

  test('without --image-pull-config the pull is anonymous and the task ends ImagePullFailed at once', async () => {
    const s = await executorWith();
    const image = `${registry.host}/${REPOSITORY}:none`;
    await s.api.createTask({ task: containerTask('none', image, { command: ['true'] }) });
    const end = await finished(s, 'none');
    assert.equal(end.reason, 'ImagePullFailed');
    assert.match(end.message, new RegExp(`^cannot pull image "${image.replaceAll('.', '\\.')}": .*401 Unauthorized`));
    // One attempt: ImagePulling was seen, ImagePullBackOff never.
    assert.deepEqual([...new Set(waitingReasons('none'))].filter((r) => r.startsWith('ImagePull')), ['ImagePulling']);
  });

  test('neither password reaches the executors\' log, at trace level', () => {
    const log = logs.text();
    // The log is not empty, and names the registry whose credentials were used.
    assert.match(log, new RegExp(`"credentials":"${registry.host.replaceAll('.', '\\.')}"`));
    for (const secret of [PASSWORD, WRONG_PASSWORD, Buffer.from(`${USER}:${WRONG_PASSWORD}`).toString('base64')]) {
      assert.ok(!log.includes(secret), 'the executor log holds a password');
    }
  });
});
