// Container task logs rotate by size (src/runtime/container/log-rotation.ts)
// and read through the Logs RPC as process task logs do: the executor runs a
// container on the stand-in CRI runtime (test/support/fake-cri.ts), whose
// log file the test writes as the container's output, and which reopens it on
// ReopenContainerLog as containerd does. (With a real containerd:
// test/integration/container.test.ts.)
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { containerTask, startTestExecutor, stateOf, terminated, type TestExecutor } from '../support/executor.js';
import { type FakeCri, startFakeCri } from '../support/fake-cri.js';
import { openLogs, readLogs, texts } from '../support/logs-rpc.js';
import { waitFor } from '../support/wait.js';

const IMAGE = 'fake.local/logger:1';
const MAX_FILE = 1024;
const MAX_FILES = 3;

const logFiles = (dir: string): string[] => readdirSync(dir).filter((f) => /^output\.\d+\.log$/.test(f));
const linkTarget = (dir: string): string => readlinkSync(join(dir, 'container.log'));
const numbered = (from: number, count: number): string[] =>
  Array.from({ length: count }, (_, i) => `line ${String(from + i).padStart(5, '0')} ${'x'.repeat(40)}`);

describe('container logs: rotation and the Logs RPC', () => {
  let cri: FakeCri;
  let te: TestExecutor;

  before(async () => {
    cri = await startFakeCri();
    cri.images.add(IMAGE);
    te = await startTestExecutor({ enableContainerMode: true, criSocket: cri.socket });
  });

  after(async () => {
    await te?.close();
    await cri?.close();
  });

  test('a container writing more than maxFiles × maxFileSize keeps at most maxFiles files; tail, since and follow read across the rotations without loss or repeat', async () => {
    const name = 'chatty';
    const task = containerTask(name, IMAGE);
    task.spec!.logs = { maxFileSizeBytes: MAX_FILE, maxFiles: MAX_FILES };
    await te.api.createTask({ task });
    await waitFor('the container to run', async () => stateOf((await te.api.getTask({ name })).task)?.$case === 'running');
    const dir = join(te.dataDir, name, 'logs');

    const follower = openLogs(te, { name, follow: true });
    const written: string[] = [];
    let bytes = 0;
    const rounds = 6;
    for (let round = 0; round < rounds; round++) {
      const lines = numbered(round * 25, 25);
      // All rounds but the last are written "an hour ago": sinceSeconds must pick the last one out of the rotated files.
      cri.write(name, lines, { time: round < rounds - 1 ? new Date(Date.now() - 3600_000) : new Date() });
      written.push(...lines);
      bytes += statSync(join(dir, `output.${round}.log`)).size;
      // The link names the file being written; during a rotation it names the pending file.
      await waitFor(`rotation ${round + 1}`, () => linkTarget(dir) === `output.${round + 1}.log`);
      const files = logFiles(dir);
      assert.ok(files.length <= MAX_FILES, `round ${round}: ${files.join(' ')}`);
    }
    assert.ok(bytes > MAX_FILES * MAX_FILE, `wrote only ${bytes} bytes`);
    assert.deepEqual(logFiles(dir).sort(), ['output.4.log', 'output.5.log', 'output.6.log']);
    assert.equal(cri.reopens.length, rounds);

    cri.write(name, ['last']);
    written.push('last');
    // The follower, there from the start, got every line once, in order, across six rotations.
    await waitFor('the follower to get the last line', () => texts(follower.messages).at(-1) === 'last');
    assert.deepEqual(texts(follower.messages), written);

    // What is left on disk: the last two rounds and the line after them.
    const kept = written.slice(-51);
    assert.deepEqual(texts(await readLogs(te, { name })), kept);
    assert.deepEqual(texts(await readLogs(te, { name, tailLines: 30 })), written.slice(-30));
    assert.deepEqual(texts(await readLogs(te, { name, sinceSeconds: 600 })), written.slice(-26));

    // The container ends: the follower ends with it, having missed nothing.
    cri.exit(name, 0);
    const { error } = await follower.done;
    assert.equal(error, undefined, `follow failed: ${error?.details}`);
    assert.deepEqual(texts(follower.messages), written);
    assert.equal(terminated((await te.api.getTask({ name })).task)?.exitCode, 0);
  });
});
