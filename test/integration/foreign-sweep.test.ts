// The sweep of other executor instances' leftover cgroups (CgroupManager.sweepForeign,
// started on an executor's first start) is housekeeping: a start never waits for it,
// however many leftovers there are. Real cgroups (the executor's own subtree in every
// hierarchy), a real manager, process runtime and shims.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { specFromWire } from '../../src/api/convert.js';
import { CgroupManager, detectLayout, scopeOf } from '../../src/runtime/cgroups/index.js';
import { TaskStore } from '../../src/store/task-store.js';
import { shell, tempDir } from '../support/executor.js';
import { silent, startManager } from '../support/in-process.js';
import { waitFor } from '../support/wait.js';

const cgroupsUsable = process.getuid?.() === 0 && detectLayout().version !== 0;

/** A cgroup service whose foreign sweep waits until the test lets it go. */
class HeldForeignSweep extends CgroupManager {
  asked = false;
  done: Promise<void> | undefined;
  private release!: () => void;
  private readonly held = new Promise<void>((resolve) => {
    this.release = resolve;
  });

  override sweepForeign(ownScope: string, minAgeMs: number): Promise<void> {
    this.asked = true;
    this.done = this.held.then(() => super.sweepForeign(ownScope, minAgeMs));
    return this.done;
  }

  letGo(): Promise<void> {
    this.release();
    return this.done!;
  }
}

describe('the sweep of other executors\' leftover cgroups', { skip: !cgroupsUsable && 'needs root and a cgroup filesystem' }, () => {
  const closers: (() => unknown)[] = [];
  after(async () => {
    for (const close of closers.reverse()) await close();
  });

  test('the first start after an executor start does not wait for the sweep of many leftovers, which removes them afterwards', async () => {
    const cgroups = new HeldForeignSweep({ log: silent });
    // 300 leftover cgroups of a data dir that is gone, in every hierarchy, an hour old.
    const foreign = cgroups.scopeDirs(scopeOf(tempDir('te-foreign-')));
    const hourAgo = new Date(Date.now() - 3600_000);
    const leftovers = foreign.flatMap((scopeDir) => Array.from({ length: 300 }, (_, i) => join(scopeDir, `gone-${i}`)));
    // Hygiene: whatever is left of them (the scopes themselves, younger now than the sweep's minimum age).
    closers.push(() => {
      for (const dir of [...leftovers, ...foreign]) {
        try {
          rmdirSync(dir);
        } catch {
          // gone already
        }
      }
    });
    for (const dir of leftovers) mkdirSync(dir, { recursive: true });
    for (const dir of [...leftovers, ...foreign]) utimesSync(dir, hourAgo, hourAgo);

    const { manager, close } = await startManager(new TaskStore(tempDir(), silent), { cgroups });
    closers.push(close);
    await manager.create('quick', specFromWire(shell('quick', 'echo ran').spec)!);
    const end = await waitFor('the task to end', () => {
      const { state } = manager.get('quick');
      return state.phase === 'terminated' && state;
    });
    assert.equal(end.reason, 'Succeeded', end.message);
    // It ended while the sweep it asked for was held (not begun): the start did not wait for it.
    // (Whether the leftovers are all still here is not asserted: on a shared machine another
    // executor's sweep may take them.)
    assert.ok(cgroups.asked, 'the start asked for the foreign sweep');

    await cgroups.letGo();
    assert.deepEqual(leftovers.filter((dir) => existsSync(dir)), [], 'the sweep removed every leftover');
  });
});
