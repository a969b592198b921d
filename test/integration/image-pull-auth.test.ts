// --image-pull-config end to end: the executor, on a stand-in CRI runtime
// (test/support/fake-cri.ts), sends each pull the credentials of the image's
// registry, none to other registries, and never a secret to its log or the
// task's status; a bad file stops it at startup naming the file.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import { pino } from 'pino';
import { TaskExecutorServiceClient } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { type Executor, StartupError, startExecutor } from '../../src/app.js';
import { apiFor, containerTask, tempDir, terminated, testConfig } from '../support/executor.js';
import { type FakeCri, startFakeCri } from '../support/fake-cri.js';
import { capturingLogger } from '../support/log-capture.js';
import { waitFor } from '../support/wait.js';

const SECRET = 'hunter2-Pa55w0rd';
const TOKEN = 'id-token-0123456789';
const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('registry credentials for image pulls (--image-pull-config)', () => {
  let cri: FakeCri;
  let dir: string;
  let executor: Executor;
  let client: TaskExecutorServiceClient;
  const logs = capturingLogger();

  before(async () => {
    cri = await startFakeCri();
    cri.pullError = 'pull access denied (fake registry)';
    dir = tempDir('te-pull-auth-');
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: b64(`hubuser:${SECRET}`) },
          'registry.local:5000': { username: 'alice', password: SECRET },
          'tokens.example': { identitytoken: TOKEN },
        },
      }),
    );
    const config = testConfig(join(dir, 'data'), {
      enableContainerMode: true,
      criSocket: cri.socket,
      imagePullConfig: join(dir, 'config.json'),
    });
    executor = await startExecutor(config, logs.log);
    client = new TaskExecutorServiceClient(executor.address, credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    await executor?.close();
    await cri?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Starts a container task, waits for its pull, returns the request and the task's failure message. */
  async function pull(name: string, image: string) {
    const api = apiFor(client);
    const before = cri.pulls.length;
    await api.createTask({ task: containerTask(name, image) });
    const request = await waitFor(`a PullImage for ${image}`, () => cri.pulls.length > before && cri.pulls[cri.pulls.length - 1]);
    const failed = await waitFor(`task ${name} to fail`, async () => terminated((await api.getTask({ name })).task));
    return { request, failed };
  }

  test('a Docker Hub image given by its short name gets the credentials of the "https://index.docker.io/v1/" key', async () => {
    const { request } = await pull('hub', 'busybox:1.36');
    assert.equal(request.image?.image, 'busybox:1.36');
    assert.equal(request.auth?.username, 'hubuser');
    assert.equal(request.auth?.password, SECRET);
    assert.equal(request.auth?.serverAddress, '');
  });

  test('an image on a registry with a port gets that registry\'s username and password, and a token registry its token', async () => {
    const { request } = await pull('ported', 'registry.local:5000/team/app:v1');
    assert.deepEqual(
      { username: request.auth?.username, password: request.auth?.password, server: request.auth?.serverAddress },
      { username: 'alice', password: SECRET, server: '' },
    );
    const tokens = await pull('token', 'tokens.example/app');
    assert.equal(tokens.request.auth?.identityToken, TOKEN);
    assert.equal(tokens.request.auth?.username, '');
  });

  test('an image on a registry without credentials is pulled anonymously, and the same host on another port is another registry', async () => {
    for (const [name, image] of [
      ['anon', 'quay.io/org/app:1'],
      ['otherport', 'registry.local:5001/team/app:v1'],
    ] as const) {
      const { request } = await pull(name, image);
      assert.equal(request.auth, undefined, image);
    }
  });

  test('no secret reaches the executor log or a task status, though the runtime\'s refusal does', async () => {
    const { failed } = await pull('denied', 'registry.local:5000/private/app');
    const task = JSON.stringify(failed);
    assert.match(task, /pull access denied \(fake registry\)/);
    const log = logs.text();
    assert.match(log, /registry credentials loaded/);
    assert.match(log, /"credentials":"registry.local:5000"/);
    for (const secret of [SECRET, TOKEN, b64(`hubuser:${SECRET}`)]) {
      assert.ok(!log.includes(secret), `the log holds a secret`);
      assert.ok(!task.includes(secret), `the task status holds a secret`);
    }
  });

  test('a bad config file stops the executor at startup, naming the file and the problem but not the secret', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ auths: { 'registry.local:5000': { auth: b64(SECRET) } } }));
    const config = testConfig(join(dir, 'data2'), { enableContainerMode: true, criSocket: cri.socket, imagePullConfig: bad });
    await assert.rejects(startExecutor(config, pino({ level: 'silent' })), (error: unknown) => {
      assert.ok(error instanceof StartupError);
      assert.equal(
        error.message,
        `--image-pull-config: image pull config ${bad}: "auths" entry "registry.local:5000": "auth" is not base64 of "username:password"`,
      );
      return true;
    });
    const missing = testConfig(join(dir, 'data3'), { enableContainerMode: true, criSocket: cri.socket, imagePullConfig: join(dir, 'absent.json') });
    await assert.rejects(startExecutor(missing, pino({ level: 'silent' })), /--image-pull-config: image pull config .*absent\.json: no such file/);
    const noContainers = testConfig(join(dir, 'data4'), { imagePullConfig: join(dir, 'config.json') });
    await assert.rejects(startExecutor(noContainers, pino({ level: 'silent' })), /--image-pull-config is for container tasks: give --enable-container-mode too/);
  });
});
