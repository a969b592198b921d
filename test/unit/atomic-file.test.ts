// The store's durable-write helpers (src/util/atomic-file.ts), on real files.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as loopTurn } from 'node:timers/promises';
import { test } from 'node:test';
import { fsyncDirectoriesAfter } from '../../src/util/atomic-file.js';
import { tempDir } from '../support/executor.js';

test('a directory that cannot be opened while the change is pending fails the fsync, and is not an unhandled rejection', async () => {
  const dir = tempDir('te-atomic-');
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    // The change settles only after the failed open has been seen by the event loop.
    const changed = (async () => {
      for (let i = 0; i < 20; i++) await loopTurn();
    })();
    await assert.rejects(fsyncDirectoriesAfter([dir, join(dir, 'missing')], changed), { code: 'ENOENT' });
    for (let i = 0; i < 5; i++) await loopTurn();
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the directories are fsynced once the change has settled', async () => {
  const dir = tempDir('te-atomic-');
  try {
    let settled = false;
    const changed = (async () => {
      await loopTurn();
      settled = true;
    })();
    await fsyncDirectoriesAfter([dir], changed);
    assert.equal(settled, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
