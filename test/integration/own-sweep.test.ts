// The sweep of the executor's own leftover cgroups (CgroupManager.sweep, asked for by the
// first start after an executor start) is housekeeping too: a start never waits for it,
// however many leftovers there are, and it never removes a cgroup a start created and its
// task has not released, even before the task's directory exists (a start prepares its
// supervisor, cgroup included, while the task's record is written). Real cgroups, a real
// manager, process runtime and shims.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { specFromWire } from '../../src/api/convert.js';
import { CgroupManager, detectLayout, scopeOf } from '../../src/runtime/cgroups/index.js';
import { TaskStore } from '../../src/store/task-store.js';
import { shell, tempDir } from '../support/executor.js';
import { silent, startManager } from '../support/in-process.js';
import { waitFor } from '../support/wait.js';

const cgroupsUsable = process.getuid?.() === 0 && detectLayout().version !== 0;

/** A cgroup service whose sweeps wait until the test lets them go. */
class HeldSweep extends CgroupManager {
  asked = 0;
  private readonly done: Promise<void>[] = [];
  private release!: () => void;
  private readonly held = new Promise<void>((resolve) => {
    this.release = resolve;
  });

  override sweep(scope: string, isLive: (taskName: string) => boolean): Promise<void> {
    this.asked++;
    const done = this.held.then(() => super.sweep(scope, isLive));
    this.done.push(done);
    return done;
  }

  async letGo(): Promise<void> {
    this.release();
    await Promise.all(this.done);
  }
}

/** Removes these directories, deepest first, whatever is left of them. */
function removeAll(dirs: string[]): void {
  for (const dir of [...dirs].reverse()) {
    try {
      rmdirSync(dir);
    } catch {
      // gone already
    }
  }
}

describe("the sweep of the executor's own leftover cgroups", { skip: !cgroupsUsable && 'needs root and a cgroup filesystem' }, () => {
  const closers: (() => unknown)[] = [];
  after(async () => {
    for (const close of closers.reverse()) await close();
  });

  test('the first start after an executor start does not wait for the sweep of many leftovers, which removes them afterwards', async () => {
    const cgroups = new HeldSweep({ log: silent });
    const dataDir = tempDir('te-own-sweep-');
    // 300 leftover cgroups of deleted tasks of this data dir, in every hierarchy.
    const own = cgroups.scopeDirs(scopeOf(dataDir));
    const leftovers = own.flatMap((scopeDir) => Array.from({ length: 300 }, (_, i) => join(scopeDir, `gone-${i}`)));
    closers.push(() => removeAll([...own, ...leftovers]));
    for (const dir of leftovers) mkdirSync(dir, { recursive: true });

    const { manager, close } = await startManager(new TaskStore(dataDir, silent), { cgroups });
    closers.push(close);
    await manager.create('quick', specFromWire(shell('quick', 'echo ran').spec)!);
    const end = await waitFor('the task to end', () => {
      const { state } = manager.get('quick');
      return state.phase === 'terminated' && state;
    });
    assert.equal(end.reason, 'Succeeded', end.message);
    // It ended while the sweep it asked for was held (not begun): the start did not wait for it.
    assert.ok(cgroups.asked > 0, 'the start asked for the sweep');

    await cgroups.letGo();
    assert.deepEqual(leftovers.filter((dir) => existsSync(dir)), [], 'the sweep removed every leftover');
  });

  test('a sweep leaves the empty cgroup of a start whose task has no directory yet, until the task releases it', async () => {
    const cgroups = new CgroupManager({ log: silent });
    const scope = scopeOf(tempDir('te-own-sweep-'));
    closers.push(() => removeAll(cgroups.scopeDirs(scope)));
    const { cgroup } = cgroups.create(scope, 'starting', undefined);
    assert.ok(cgroup, 'a cgroup was created');
    const dirs = Object.values(cgroup.dirs);
    closers.push(() => removeAll(dirs));

    // No task of the scope has a directory (isLive: false for every name), and the cgroup is empty.
    await cgroups.sweep(scope, () => false);
    assert.deepEqual(dirs.filter((dir) => !existsSync(dir)), [], 'the cgroup of the start is still there');

    // Released while a process it left behind is still in it, it is a leftover like any other once that ends.
    const straggler = spawn('sleep', ['1000'], { stdio: 'ignore' });
    closers.push(() => straggler.kill('SIGKILL'));
    for (const file of cgroups.procsFiles(cgroup)) writeFileSync(file, String(straggler.pid));
    const { busy } = await cgroups.remove(cgroup);
    assert.notDeepEqual(busy, [], 'the straggler keeps it');
    const exited = new Promise((resolve) => straggler.once('exit', resolve));
    straggler.kill('SIGKILL');
    await exited;
    await waitFor('the cgroup to empty', () => cgroups.isEmpty(cgroup));
    await cgroups.sweep(scope, () => false);
    assert.deepEqual(dirs.filter((dir) => existsSync(dir)), [], 'the sweep removed the released cgroup');
  });
});
