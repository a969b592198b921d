// The one kill loop (src/runtime/process/task-tree.ts, killTree) on real
// processes, leaves first (a sidecar task: its PID namespace's init may never
// reap an orphan, so every parent must reap its children before it is killed).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { readStat } from '../../src/runtime/process/procfs.js';
import { killTree, zombieChildren } from '../../src/runtime/process/task-tree.js';
import { tempDir } from '../support/executor.js';
import { waitFor } from '../support/wait.js';

describe('killTree, leaves first', () => {
  test('a parent whose child has exited but is not reaped yet is given a round to reap it before it is killed', async () => {
    const dir = tempDir();
    const reaped = join(dir, 'reaped');
    // The parent (a stand-in for task-privs, or a shell in `wait`) reaps its child a little
    // after the child ended, as a parent does that is not scheduled at once on a busy machine;
    // it then stays alive until it is killed.
    const script = [
      'import os, sys, time',
      'child = os.fork()',
      'if child == 0: os._exit(0)',
      'print(child, flush=True)',
      'time.sleep(0.05)',
      'os.waitpid(child, 0)',
      `open(${JSON.stringify(reaped)}, "w").close()`,
      'time.sleep(1000)',
    ].join('\n');
    const parent = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const child = await new Promise<number>((resolve) => parent.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
      await waitFor('the child to be a zombie', () => readStat(child)?.state === 'Z');
      assert.deepEqual(zombieChildren([parent.pid!]), [[child, parent.pid!]]);
      // A zombie is no member (as in a cgroup or the process table): the parent alone is listed.
      const done = await killTree({ members: () => (existsSync(`/proc/${parent.pid}`) ? [parent.pid!] : []), leavesFirst: true });
      assert.equal(done, true);
      assert.ok(existsSync(reaped), 'the parent was killed before it reaped its child: the zombie would go to the namespace init');
      assert.ok(!existsSync(`/proc/${child}`));
    } finally {
      parent.kill('SIGKILL');
    }
  });

  test('a parent that never reaps its exited child is killed after one round', async () => {
    // `exec sleep`: the shell's exited child is inherited by sleep, which never waits.
    const parent = spawn('sh', ['-c', 'true & exec sleep 1000'], { stdio: 'ignore' });
    const child = await waitFor('the exited child', () => zombieChildren([parent.pid!])[0]?.[0]);
    const done = await killTree({ members: () => (existsSync(`/proc/${parent.pid}`) ? [parent.pid!] : []), leavesFirst: true });
    assert.equal(done, true);
    await waitFor('the parent to be reaped by this process', () => parent.exitCode !== null || parent.signalCode !== null);
    assert.equal(parent.signalCode, 'SIGKILL');
    assert.ok(child > 0);
  });
});
