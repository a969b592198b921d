// Tasks with artifacts through a real executor: the original note's example
// (download a script, run `/bin/bash artifacts/script.sh`), the waiting
// state while fetching, a failed fetch, Delete during a fetch, and an
// executor killed (SIGKILL) in the middle of a download.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { startTestExecutor, stateOf, tempDir, type TestExecutor, terminated } from '../support/executor.js';
import { killTaskTrees } from '../support/processes.js';
import { SCRIPT, ScriptServer, sha256, withArtifacts } from '../support/artifact-server.js';
import { connect, spawnExecutor } from '../support/subprocess.js';
import { waitFor } from '../support/wait.js';

function logText(dataDir: string, name: string): string {
  const dir = join(dataDir, name, 'logs');
  return existsSync(dir) ? readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8')).join('') : '';
}

describe('tasks with artifacts', () => {
  const server = new ScriptServer();
  let te: TestExecutor;
  before(async () => {
    await server.start();
    te = await startTestExecutor();
  });
  after(async () => {
    await te.close();
    server.close();
  });

  test("the original note's example: a downloaded script runs as /bin/bash artifacts/script.sh", async () => {
    await te.api.createTask({
      task: withArtifacts('run-script', ['/bin/bash', 'artifacts/script.sh'], [{ source: `${server.url}/script.sh`, checksum: sha256(SCRIPT) }]),
    });
    const end = await waitFor('the script to finish', async () => terminated((await te.api.getTask({ name: 'run-script' })).task));
    assert.equal(end.reason, 'Succeeded', end.message);
    await waitFor('its output in the log', () => logText(te.dataDir, 'run-script').includes('hello from the downloaded script'));
  });

  test('while fetching the task waits with reason FetchingArtifacts, and starts once the download is complete', async () => {
    const gated = new ScriptServer();
    await gated.start();
    try {
      const created = await te.api.createTask({
        task: withArtifacts('gated', ['/bin/bash', 'artifacts/script.sh'], [{ source: `${gated.url}/gated/script.sh` }]),
      });
      const waiting = stateOf(created.task);
      assert.equal(waiting?.$case, 'waiting');
      assert.equal(waiting?.$case === 'waiting' && waiting.value.reason, 'FetchingArtifacts');
      assert.ok(!existsSync(join(te.dataDir, 'gated', 'artifacts')), 'nothing is in place before the download is complete');
      gated.open();
      const end = await waitFor('the task to run', async () => terminated((await te.api.getTask({ name: 'gated' })).task));
      assert.equal(end.reason, 'Succeeded', end.message);
    } finally {
      gated.close();
    }
  });

  test('a failed fetch ends the task ArtifactFetchFailed with exit code 128 and nothing runs', async () => {
    const ran = join(te.dataDir, 'ran-marker');
    await te.api.createTask({ task: withArtifacts('missing', ['touch', ran], [{ source: `${server.url}/missing.sh` }]) });
    const end = await waitFor('the task to end', async () => terminated((await te.api.getTask({ name: 'missing' })).task));
    assert.equal(end.reason, 'ArtifactFetchFailed');
    assert.equal(end.exitCode, 128);
    assert.match(end.message, /artifacts\[0\] .*missing\.sh.*HTTP 404/);
    assert.ok(!existsSync(ran), 'the command must not run');
    await te.api.deleteTask({ name: 'missing' });
  });

  test('a wrong checksum ends the task ArtifactFetchFailed', async () => {
    await te.api.createTask({
      task: withArtifacts('bad-sum', ['/bin/bash', 'artifacts/script.sh'], [{ source: `${server.url}/script.sh`, checksum: `sha256:${'1'.repeat(64)}` }]),
    });
    const end = await waitFor('the task to end', async () => terminated((await te.api.getTask({ name: 'bad-sum' })).task));
    assert.equal(end.reason, 'ArtifactFetchFailed');
    assert.match(end.message, /checksum mismatch/);
    assert.equal(logText(te.dataDir, 'bad-sum'), '', 'nothing ran, so nothing was logged');
  });

  test('a bad artifact is INVALID_ARGUMENT naming the field, before anything is created', async () => {
    const bad = withArtifacts('bad-source', ['true'], [{ source: `${server.url}/script.sh` }, { source: 'ftp://example.com/x' }]);
    await assert.rejects(te.api.createTask({ task: bad }), (error: ServiceError) => {
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.match(error.details, /task\.spec\.artifacts\[1\]\.source "ftp:\/\/example\.com\/x" is not a supported source/);
      return true;
    });
  });

  test('Delete during a fetch stops the download and leaves nothing behind', async () => {
    const gated = new ScriptServer();
    await gated.start();
    try {
      await te.api.createTask({ task: withArtifacts('deleted-while-fetching', ['/bin/bash', 'artifacts/script.sh'], [{ source: `${gated.url}/gated/script.sh` }]) });
      await waitFor('the download to begin', () => gated.requests > 0);
      await te.api.deleteTask({ name: 'deleted-while-fetching' });
      await waitFor('the task to be gone', async () => {
        try {
          await te.api.getTask({ name: 'deleted-while-fetching' });
          return false;
        } catch (error) {
          return (error as ServiceError).code === status.NOT_FOUND;
        }
      });
      assert.ok(!existsSync(join(te.dataDir, 'deleted-while-fetching')), 'the task directory is removed');
      await waitFor('the download to be abandoned', () => gated.abandoned === 1);
    } finally {
      gated.close();
    }
  });
});

describe('executor restart during a fetch', () => {
  test('an executor killed (SIGKILL) mid-download neither loses the task nor runs it before its artifacts are complete', async () => {
    const gated = new ScriptServer();
    await gated.start();
    const dataDir = tempDir();
    const socket = join(tempDir('te-scratch-'), 'api.sock');
    const args = ['--data-dir', dataDir, '--listen-addr', `unix://${socket}`, '--reconcile-interval', '100ms', '--log-level', 'info'];
    const first = spawnExecutor(args);
    let second: ReturnType<typeof spawnExecutor> | undefined;
    try {
      const a = await connect(first).catch((error: unknown) => {
        throw new Error(`${String(error)}\n${first.output()}`);
      });
      const runs = join(dataDir, 'runs');
      const command = ['/bin/bash', '-c', `echo run >> ${runs}; /bin/bash artifacts/script.sh`];
      await a.api.createTask({ task: withArtifacts('survives', command, [{ source: `${gated.url}/gated/script.sh` }]) });
      await waitFor('the download to begin', () => gated.requests === 1);
      a.client.close();
      first.child.kill('SIGKILL');
      await first.exited;
      assert.ok(!existsSync(runs), 'the task must not have run');

      second = spawnExecutor(args);
      const b = await connect(second);
      // The new executor fetches again from the start; the task still waits for it.
      await waitFor('the second download to begin', () => gated.requests === 2);
      const waiting = stateOf((await b.api.getTask({ name: 'survives' })).task);
      assert.equal(waiting?.$case === 'waiting' && waiting.value.reason, 'FetchingArtifacts');
      assert.ok(!existsSync(runs), 'the task must not run before its artifacts are complete');
      gated.open();
      const end = await waitFor('the task to run', async () => terminated((await b.api.getTask({ name: 'survives' })).task));
      assert.equal(end.reason, 'Succeeded', end.message);
      assert.equal(readFileSync(runs, 'utf8'), 'run\n', 'the task ran exactly once');
      await waitFor('its output', () => logText(dataDir, 'survives').includes('hello from the downloaded script'));
      b.client.close();
    } finally {
      first.child.kill('SIGKILL');
      second?.child.kill('SIGKILL');
      gated.close();
      killTaskTrees(dataDir);
    }
  });
});
